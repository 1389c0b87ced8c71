//! `percentile(value, q)`: the exact q-quantile of a column.
//!
//! DataFusion's own `percentile_cont` rounds the interpolation weight to six
//! decimals (`INTERPOLATION_PRECISION` in datafusion-functions-aggregate 55), so
//! it is close to but not exactly the textbook value. This one keeps every
//! value and interpolates linearly between the closest ranks exactly as numpy's
//! default `method="linear"` does (Hyndman & Fan type 7), so results can be
//! checked against numpy bit for bit.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::args::{DOC_SECTION, list_scalar, literal_quantile};

/// The function, ready to register.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(Percentile::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Percentile {
    signature: Signature,
}

impl Percentile {
    pub fn new() -> Self {
        Percentile {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for Percentile {
    fn default() -> Self {
        Self::new()
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The exact q-quantile of the values, interpolating linearly between the two \
         closest ranks (numpy's default method, Hyndman & Fan type 7). Keeps every \
         value of a group in memory.",
        "percentile(expression, q)",
    )
    .with_sql_example(
        "```sql\n> SELECT step, percentile(latency_ms, 0.99) AS p99 FROM requests GROUP BY step;\n```",
    )
    .with_standard_argument("expression", Some("Numeric"))
    .with_argument("q", "The quantile, a literal between 0 and 1 (0.99 for p99).")
    .build()
});

impl AggregateUDFImpl for Percentile {
    fn name(&self) -> &str {
        "percentile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, q] = arg_types else {
            return plan_err!(
                "percentile takes two arguments, a numeric column and a quantile such as 0.99; got {}",
                arg_types.len()
            );
        };
        if !(value.is_numeric() || value.is_null()) {
            return plan_err!("percentile needs a numeric column, got {value}; cast it first");
        }
        if !(q.is_numeric() || q.is_null()) {
            return plan_err!("percentile's quantile must be a number between 0 and 1, got {q}");
        }
        Ok(vec![DataType::Float64, DataType::Float64])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "values"),
            DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PercentileAccumulator {
            q: literal_quantile(self.name(), &args)?,
            values: Vec::new(),
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[derive(Debug)]
struct PercentileAccumulator {
    q: f64,
    values: Vec<f64>,
}

impl Accumulator for PercentileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let array = values[0].as_primitive::<Float64Type>();
        self.values.reserve(array.len() - array.null_count());
        self.values.extend(array.iter().flatten());
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for list in lists.iter().flatten() {
            self.values
                .extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = Float64Array::from(std::mem::take(&mut self.values));
        Ok(vec![list_scalar(values)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(quantile_linear(
            &mut self.values,
            self.q,
        )))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.values.capacity() * size_of::<f64>()
    }
}

/// numpy's `quantile(values, q, method="linear")`, NaN-free input assumed;
/// reorders `values`. `None` for no values.
///
/// The rank is computed with numpy's own floating-point steps
/// (`n·q + (α + q·(1 − α − β)) − 1` with α = β = 1, then floor and clip), so the
/// result is bit-for-bit numpy's, not merely close. Only the two neighbouring
/// order statistics are found (a selection, O(n)), not a full sort.
pub fn quantile_linear(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    // With α = β = 1, numpy's α + q·(1 − α − β) is 1 + (−q), which IEEE
    // arithmetic rounds exactly as 1 − q.
    let virtual_index = n as f64 * q + (1.0 - q) - 1.0;
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let lo = (below.max(0.0) as usize).min(n - 1);
    let hi = (below + 1.0).clamp(0.0, (n - 1) as f64) as usize;
    let (_, &mut a, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let b = if hi == lo {
        a
    } else {
        // The next order statistic is the smallest value above position lo.
        above.iter().copied().min_by(f64::total_cmp).unwrap_or(a)
    };
    Some(lerp(a, b, gamma))
}

/// numpy's `_lerp`: a + (b - a)·t, computed from the upper end when t ≥ 0.5 so
/// the result is exact at both ends and monotonic.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_reference_values() {
        // numpy.quantile([1, 2, 3, 4, 10], q) for the q below.
        let data = [10.0, 1.0, 3.0, 2.0, 4.0];
        let cases = [
            (0.0, 1.0),
            (0.5, 3.0),
            (0.9, 7.6),
            (0.99, 9.76),
            (1.0, 10.0),
            (0.25, 2.0),
        ];
        for (q, expected) in cases {
            let got = quantile_linear(&mut data.clone(), q).unwrap();
            assert!((got - expected).abs() < 1e-12, "q={q}: {got} != {expected}");
        }
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(quantile_linear(&mut [], 0.5), None);
        assert_eq!(quantile_linear(&mut [4.0], 0.99), Some(4.0));
    }

    #[test]
    fn lerp_is_exact_at_the_ends() {
        assert_eq!(lerp(0.1, 0.7, 1.0), 0.7);
        assert_eq!(lerp(0.1, 0.7, 0.0), 0.1);
    }
}
