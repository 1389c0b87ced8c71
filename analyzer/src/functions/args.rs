//! Argument checks and readers shared by the loadlens functions.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, ListArray, PrimitiveArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{ColumnarValue, DocSection};

/// The section every loadlens function is documented under.
pub(crate) const DOC_SECTION: DocSection = DocSection {
    include: true,
    label: "loadlens functions",
    description: None,
};

/// `List<Float64>` with nullable items, the type list arguments are coerced to.
pub(crate) fn float_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

/// The item type of a List, LargeList or FixedSizeList.
pub(crate) fn list_item(data_type: &DataType) -> Option<&DataType> {
    match data_type {
        DataType::List(field) | DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            Some(field.data_type())
        }
        _ => None,
    }
}

/// Checks that `argument` of `function` is a list of numbers; the type to cast it to.
pub(crate) fn coerce_float_list(
    function: &str,
    argument: &str,
    data_type: &DataType,
) -> Result<DataType> {
    match list_item(data_type) {
        Some(item) if item.is_numeric() || item.is_null() => Ok(float_list()),
        _ if data_type.is_null() => Ok(float_list()),
        _ => plan_err!(
            "{function}'s {argument} must be a list of numbers such as [0.1, 0.5, 1.0], got {data_type}"
        ),
    }
}

/// Checks that `argument` of `function` is a number; the type to cast it to.
pub(crate) fn coerce_float(
    function: &str,
    argument: &str,
    data_type: &DataType,
) -> Result<DataType> {
    if data_type.is_numeric() || data_type.is_null() {
        Ok(DataType::Float64)
    } else {
        plan_err!("{function}'s {argument} must be a number, got {data_type}")
    }
}

/// Checks that `argument` of `function` is an integer; the type to cast it to.
pub(crate) fn coerce_int32(
    function: &str,
    argument: &str,
    data_type: &DataType,
) -> Result<DataType> {
    if data_type.is_integer() || data_type.is_null() {
        Ok(DataType::Int32)
    } else {
        plan_err!("{function}'s {argument} must be an integer, got {data_type}")
    }
}

/// The quantile argument of an aggregate: a literal between 0 and 1, checked
/// when the plan is built.
pub(crate) fn literal_quantile(function: &str, args: &AccumulatorArgs) -> Result<f64> {
    // A constant evaluates on an empty batch; a column reference does not.
    let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
    let q = args.exprs.get(1).and_then(|e| match e.evaluate(&empty) {
        Ok(ColumnarValue::Scalar(value)) => Some(value),
        _ => None,
    });
    let q = match q {
        Some(ScalarValue::Float64(Some(q))) => q,
        Some(other) => {
            return plan_err!(
                "{function}'s quantile must be a number between 0 and 1, got {other}"
            );
        }
        None => return plan_err!("{function}'s quantile must be a literal such as 0.99"),
    };
    if !(0.0..=1.0).contains(&q) {
        return plan_err!(
            "{function}'s quantile must be between 0 and 1, got {q}; write 0.99 for p99"
        );
    }
    Ok(q)
}

/// Row `row` of a `List<Float64>`; `None` if the row or any of its items is NULL.
pub(crate) fn float_list_row(list: &ListArray, row: usize) -> Option<&[f64]> {
    if list.is_null(row) {
        return None;
    }
    let offsets = list.value_offsets();
    let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
    let values = list.values().as_primitive::<Float64Type>();
    if values.null_count() > 0 && (start..end).any(|i| values.is_null(i)) {
        return None;
    }
    Some(&values.values()[start..end])
}

/// Whether every argument is a constant, so the result is one too.
pub(crate) fn all_scalar(args: &[ColumnarValue]) -> bool {
    args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)))
}

/// `result` as a scalar when it was computed from constants only (one row).
pub(crate) fn columnar(result: ArrayRef, all_scalar: bool) -> Result<ColumnarValue> {
    if all_scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &result, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(result))
    }
}

/// A one-row `List<T>` scalar holding `values` (items nullable, named "item").
pub(crate) fn list_scalar<T: ArrowPrimitiveType>(values: PrimitiveArray<T>) -> ScalarValue {
    ScalarValue::List(Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(T::DATA_TYPE, true)),
        OffsetBuffer::from_lengths([values.len()]),
        Arc::new(values),
        None,
    )))
}
