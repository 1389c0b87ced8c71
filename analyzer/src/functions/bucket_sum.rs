//! `bucket_sum(counts)`: adds bucket-count lists element by element, the SQL
//! counterpart of PromQL's `sum by (le)`, so that
//! `histogram_quantile(bounds, bucket_sum(counts), q)` is the quantile of all
//! the histograms of a group.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, ArrowNativeTypeOp, AsArray, PrimitiveArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, FieldRef, Float64Type, Int64Type, UInt64Type,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::args::{DOC_SECTION, list_item, list_scalar};

/// The function, ready to register.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(BucketSum::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BucketSum {
    signature: Signature,
}

impl BucketSum {
    pub fn new() -> Self {
        BucketSum {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for BucketSum {
    fn default() -> Self {
        Self::new()
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Adds lists of bucket counts element by element: the i-th entry of the result is \
         the sum of the i-th entries of the group's lists, as PromQL's sum by (le) adds \
         buckets. All lists of a group must have the same length; group by the bucket \
         layout (explicit_bounds, or scale and offsets) to ensure it. NULL lists are \
         skipped and NULL entries count as 0; a group without lists gives NULL. Unsigned \
         counts are summed as UInt64, signed as Int64, floats as Float64; an integer \
         overflow is an error.",
        "bucket_sum(counts)",
    )
    .with_sql_example(
        "```sql\n> SELECT service_name,\n         histogram_quantile(explicit_bounds, bucket_sum(bucket_counts), 0.99) AS p99\n  FROM metrics_histogram WHERE metric_name = 'http.server.request.duration'\n  GROUP BY service_name, explicit_bounds;\n```",
    )
    .with_argument("counts", "A list of bucket counts, such as bucket_counts.")
    .build()
});

impl AggregateUDFImpl for BucketSum {
    fn name(&self) -> &str {
        "bucket_sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [counts] = arg_types else {
            return plan_err!(
                "bucket_sum takes one argument, a list of bucket counts such as bucket_counts; \
                 got {}",
                arg_types.len()
            );
        };
        let item = match list_item(counts) {
            Some(item) if item.is_unsigned_integer() => DataType::UInt64,
            Some(item) if item.is_signed_integer() || item.is_null() => DataType::Int64,
            Some(item) if item.is_floating() => DataType::Float64,
            None if counts.is_null() => DataType::UInt64,
            _ => {
                return plan_err!(
                    "bucket_sum needs a list of numbers such as bucket_counts, got {counts}"
                );
            }
        };
        Ok(vec![list_of(item)])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [counts] => Ok(counts.clone()),
            _ => plan_err!("bucket_sum takes one argument"),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "sums"),
            args.return_type().clone(),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match list_item(args.return_type()) {
            Some(DataType::UInt64) => Ok(Box::new(BucketSumAccumulator::<UInt64Type>::new())),
            Some(DataType::Int64) => Ok(Box::new(BucketSumAccumulator::<Int64Type>::new())),
            Some(DataType::Float64) => Ok(Box::new(BucketSumAccumulator::<Float64Type>::new())),
            _ => plan_err!(
                "bucket_sum needs a list of numbers, got {}",
                args.return_type()
            ),
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// The element-wise sums of a group's lists; `None` before the first list.
#[derive(Debug)]
struct BucketSumAccumulator<T: ArrowPrimitiveType> {
    sums: Option<Vec<T::Native>>,
    item: PhantomData<fn() -> T>,
}

impl<T: ArrowPrimitiveType> BucketSumAccumulator<T> {
    fn new() -> Self {
        BucketSumAccumulator {
            sums: None,
            item: PhantomData,
        }
    }

    /// Adds every non-NULL list of `lists` (a `List<T>`).
    fn add_lists(&mut self, lists: &ArrayRef) -> Result<()> {
        let lists = lists.as_list::<i32>();
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                self.add(lists.value(row).as_primitive::<T>())?;
            }
        }
        Ok(())
    }

    fn add(&mut self, counts: &PrimitiveArray<T>) -> Result<()> {
        let Some(sums) = &mut self.sums else {
            self.sums = Some(counts.iter().map(Option::unwrap_or_default).collect());
            return Ok(());
        };
        if sums.len() != counts.len() {
            return exec_err!(
                "bucket_sum: histograms in one group have different numbers of buckets ({} and \
                 {}); add the bucket layout (explicit_bounds, or scale and offsets) to GROUP BY \
                 so that only histograms with the same buckets are added",
                sums.len(),
                counts.len()
            );
        }
        for (sum, count) in sums.iter_mut().zip(counts.iter()) {
            if let Some(count) = count {
                *sum = sum.add_checked(count).or_else(|_| {
                    exec_err!("bucket_sum: a bucket's sum overflows {}", T::DATA_TYPE)
                })?;
            }
        }
        Ok(())
    }
}

impl<T: ArrowPrimitiveType + Debug> Accumulator for BucketSumAccumulator<T> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add_lists(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        // The state is the partial sum, a list like the input.
        self.add_lists(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let Some(sums) = &self.sums else {
            return ScalarValue::try_from(&list_of(T::DATA_TYPE));
        };
        Ok(list_scalar(PrimitiveArray::<T>::from_iter_values(
            sums.iter().copied(),
        )))
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self
                .sums
                .as_ref()
                .map_or(0, |s| s.capacity() * size_of::<T::Native>())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::ListArray;

    use super::*;

    fn lists(rows: Vec<Option<Vec<Option<u64>>>>) -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<UInt64Type, _, _>(rows))
    }

    fn sums(acc: &mut BucketSumAccumulator<UInt64Type>) -> Option<Vec<u64>> {
        match acc.evaluate().unwrap() {
            ScalarValue::List(list) if list.is_null(0) => None,
            ScalarValue::List(list) => {
                Some(list.value(0).as_primitive::<UInt64Type>().values().to_vec())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn adds_element_by_element_skipping_nulls() {
        let mut acc = BucketSumAccumulator::<UInt64Type>::new();
        acc.update_batch(&[lists(vec![
            Some(vec![Some(1), Some(2), Some(3)]),
            None,
            Some(vec![Some(10), None, Some(30)]),
        ])])
        .unwrap();
        assert_eq!(sums(&mut acc), Some(vec![11, 2, 33]));
    }

    #[test]
    fn no_lists_give_null() {
        let mut acc = BucketSumAccumulator::<UInt64Type>::new();
        acc.update_batch(&[lists(vec![None])]).unwrap();
        assert_eq!(sums(&mut acc), None);
    }

    #[test]
    fn merging_states_adds_partial_sums() {
        let mut left = BucketSumAccumulator::<UInt64Type>::new();
        left.update_batch(&[lists(vec![Some(vec![Some(1), Some(2)])])])
            .unwrap();
        let mut right = BucketSumAccumulator::<UInt64Type>::new();
        right
            .update_batch(&[lists(vec![
                Some(vec![Some(100), Some(200)]),
                Some(vec![Some(1000), Some(2000)]),
            ])])
            .unwrap();
        let state = right.state().unwrap()[0].to_array().unwrap();
        left.merge_batch(&[state]).unwrap();
        assert_eq!(sums(&mut left), Some(vec![1101, 2202]));
        // An empty partial state changes nothing.
        let empty = BucketSumAccumulator::<UInt64Type>::new().state().unwrap()[0]
            .to_array()
            .unwrap();
        left.merge_batch(&[empty]).unwrap();
        assert_eq!(sums(&mut left), Some(vec![1101, 2202]));
    }

    #[test]
    fn different_lengths_are_an_error() {
        let mut acc = BucketSumAccumulator::<UInt64Type>::new();
        let message = acc
            .update_batch(&[lists(vec![
                Some(vec![Some(1), Some(2)]),
                Some(vec![Some(1), Some(2), Some(3)]),
            ])])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("different numbers of buckets (2 and 3)"),
            "{message}"
        );
    }

    #[test]
    fn overflow_is_an_error() {
        let mut acc = BucketSumAccumulator::<UInt64Type>::new();
        let message = acc
            .update_batch(&[lists(vec![Some(vec![Some(u64::MAX)]), Some(vec![Some(1)])])])
            .unwrap_err()
            .to_string();
        assert!(message.contains("overflows UInt64"), "{message}");
    }

    #[test]
    fn coerces_by_signedness() {
        let f = BucketSum::new();
        let list = |t| DataType::List(Arc::new(Field::new("item", t, false)));
        assert_eq!(
            f.coerce_types(&[list(DataType::UInt32)]).unwrap(),
            [list_of(DataType::UInt64)]
        );
        assert_eq!(
            f.coerce_types(&[list(DataType::Int8)]).unwrap(),
            [list_of(DataType::Int64)]
        );
        assert_eq!(
            f.coerce_types(&[list(DataType::Float32)]).unwrap(),
            [list_of(DataType::Float64)]
        );
        let message = f.coerce_types(&[DataType::Utf8]).unwrap_err().to_string();
        assert!(message.contains("got Utf8"), "{message}");
    }
}
