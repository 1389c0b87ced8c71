//! Argument checks and readers shared by the loadlens functions.

use arrow::array::ArrayRef;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, DocSection};

/// The section every loadlens function is documented under.
pub(crate) const DOC_SECTION: DocSection = DocSection {
    include: true,
    label: "loadlens functions",
    description: None,
};

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
