//! `histogram_quantile(bounds, counts, q)`: Prometheus's `histogram_quantile`
//! over one OTLP explicit-bucket histogram per row.
//!
//! Bucket i holds the observations in (bounds[i-1], bounds[i]], the first one
//! everything up to bounds[0] and the last one everything above the last bound,
//! so `counts` has one entry more than `bounds`; counts are per bucket, not
//! cumulative. The result is the one Prometheus computes for the same histogram
//! exported as cumulative `le` buckets: `BucketQuantile` in
//! prometheus/prometheus `promql/quantile.go` as of Prometheus 3 (with the
//! float-rounding tolerance of PR #13153, `ensureMonotonicAndIgnoreSmallDeltas`),
//! that is
//!
//! - q NaN gives NaN, q < 0 gives -Inf and q > 1 gives +Inf;
//! - bounds are sorted with their cumulative counts and equal bounds merged;
//!   cumulative counts within a relative 1e-12 of the previous one are taken as
//!   equal (float rounding), and any decrease is raised to the previous count;
//! - with no bound at all (only the +Inf bucket) the result is NaN;
//! - rank = q · total, and the bucket is the first whose cumulative count is
//!   ≥ rank, so a rank landing exactly on a bucket boundary stays in the lower
//!   bucket and gives its upper bound;
//! - in the +Inf bucket the result is the highest finite bound; in the first
//!   bucket the lower bound is 0 if its upper bound is > 0, and its upper bound
//!   is the result if that is ≤ 0; elsewhere the value is interpolated
//!   linearly within the bucket. As in Prometheus, q = 0 with an empty first
//!   bucket is 0/0, NaN.
//!
//! One deliberate difference: a histogram with no observations gives NULL, not
//! Prometheus's NaN, so `avg`, `max` and friends skip it. Integer counts, as
//! OTLP stores them, never decrease cumulatively, so only the tolerance can
//! apply to them, from about 5·10^11 observations on (as in Prometheus); the
//! monotonicity fix matters for float counts such as computed rates.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray, Float64Builder};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::args::{
    DOC_SECTION, all_scalar, coerce_float, coerce_float_list, columnar, float_list_row, list_item,
};

/// Relative difference between cumulative counts that Prometheus ignores as
/// float rounding (`smallDeltaTolerance`).
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// The function, ready to register.
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(HistogramQuantile::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HistogramQuantile {
    signature: Signature,
}

impl HistogramQuantile {
    pub fn new() -> Self {
        HistogramQuantile {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for HistogramQuantile {
    fn default() -> Self {
        Self::new()
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The q-quantile of an OTLP explicit-bucket histogram, computed exactly as \
         Prometheus's histogram_quantile computes it for classic histograms: linear \
         interpolation within the bucket that holds rank q·total, 0 as the lower bound of \
         the first bucket, and the highest finite bound when the rank is in the last \
         (+Inf) bucket. q < 0 gives -Inf, q > 1 gives +Inf, q NaN gives NaN; a histogram \
         with no observations gives NULL (Prometheus: NaN). Sum bucket counts with \
         bucket_sum first to get the quantile of several histograms.",
        "histogram_quantile(bounds, counts, q)",
    )
    .with_sql_example(
        "```sql\n> SELECT service_name, histogram_quantile(explicit_bounds, bucket_sum(bucket_counts), 0.99) AS p99\n  FROM metrics_histogram WHERE metric_name = 'http.server.request.duration'\n  GROUP BY service_name, explicit_bounds;\n```",
    )
    .with_argument(
        "bounds",
        "The explicit bounds, a list of numbers in increasing order (explicit_bounds).",
    )
    .with_argument(
        "counts",
        "Observations per bucket, one more entry than bounds (bucket_counts).",
    )
    .with_argument("q", "The quantile, between 0 and 1 (0.99 for p99).")
    .build()
});

impl ScalarUDFImpl for HistogramQuantile {
    fn name(&self) -> &str {
        "histogram_quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [bounds, counts, q] = arg_types else {
            return plan_err!(
                "histogram_quantile takes three arguments (bounds, counts, q), as in \
                 histogram_quantile(explicit_bounds, bucket_counts, 0.99); got {}",
                arg_types.len()
            );
        };
        if list_item(bounds).is_none() && list_item(q).is_some() {
            return plan_err!(
                "histogram_quantile takes the quantile last, unlike PromQL: write \
                 histogram_quantile(explicit_bounds, bucket_counts, 0.99)"
            );
        }
        Ok(vec![
            coerce_float_list(self.name(), "bounds", bounds)?,
            coerce_float_list(self.name(), "counts", counts)?,
            coerce_float(self.name(), "q (the quantile, such as 0.99)", q)?,
        ])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = all_scalar(&args.args);
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [bounds, counts, q] = arrays.as_slice() else {
            return exec_err!(
                "histogram_quantile takes three arguments, got {}",
                arrays.len()
            );
        };
        let (bounds, counts, q) = (
            bounds.as_list::<i32>(),
            counts.as_list::<i32>(),
            q.as_primitive::<Float64Type>(),
        );
        let mut out = Float64Builder::with_capacity(q.len());
        let mut scratch = Vec::new();
        for row in 0..q.len() {
            let (Some(bounds), Some(counts), true) = (
                float_list_row(bounds, row),
                float_list_row(counts, row),
                q.is_valid(row),
            ) else {
                out.append_null();
                continue;
            };
            match bucket_quantile(q.value(row), bounds, counts, &mut scratch) {
                Ok(value) => out.append_option(value),
                Err(LengthMismatch { bounds, counts }) => {
                    return exec_err!(
                        "histogram_quantile: a histogram has {counts} bucket counts for {bounds} \
                         bounds, but needs {} (one more than bounds, for the bucket above the \
                         last bound); check that bounds and counts come from the same row and \
                         that bucket_sum only summed histograms with the same bounds",
                        bounds + 1
                    );
                }
            }
        }
        columnar(Arc::new(out.finish()), all_scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// `counts` does not have one entry more than `bounds`.
#[derive(Debug, PartialEq)]
pub struct LengthMismatch {
    pub bounds: usize,
    pub counts: usize,
}

/// Prometheus's `BucketQuantile` over one OTLP histogram (see the module
/// doc); `None` when it has no observations. `scratch` is reused between rows.
pub fn bucket_quantile(
    q: f64,
    bounds: &[f64],
    counts: &[f64],
    scratch: &mut Vec<(f64, f64)>,
) -> Result<Option<f64>, LengthMismatch> {
    if counts.len() != bounds.len() + 1 {
        return Err(LengthMismatch {
            bounds: bounds.len(),
            counts: counts.len(),
        });
    }
    if q.is_nan() {
        return Ok(Some(f64::NAN));
    }
    if q < 0.0 {
        return Ok(Some(f64::NEG_INFINITY));
    }
    if q > 1.0 {
        return Ok(Some(f64::INFINITY));
    }
    if bounds.iter().any(|b| b.is_nan()) {
        // Prometheus does not expect NaN bounds; there is no sensible answer.
        return Ok(Some(f64::NAN));
    }

    // (upper bound, cumulative count), as Prometheus sees the `le` series.
    let buckets = scratch;
    buckets.clear();
    let mut cumulative = 0.0;
    for (&upper, &count) in bounds.iter().chain([&f64::INFINITY]).zip(counts) {
        cumulative += count;
        buckets.push((upper, cumulative));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    coalesce(buckets);
    ensure_monotonic_and_ignore_small_deltas(buckets, SMALL_DELTA_TOLERANCE);

    let n = buckets.len();
    if n < 2 {
        return Ok(Some(f64::NAN));
    }
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return Ok(None);
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|&(_, cumulative)| cumulative < rank);
    if b == n - 1 {
        return Ok(Some(buckets[n - 2].0));
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return Ok(Some(buckets[0].0));
    }
    let (end, mut count) = buckets[b];
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    Ok(Some(start + (end - start) * (rank / count)))
}

/// Merges buckets with the same upper bound, adding their counts (Prometheus's
/// `coalesceBuckets`); `buckets` must be sorted.
fn coalesce(buckets: &mut Vec<(f64, f64)>) {
    buckets.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 += next.1;
        }
        same
    });
}

/// Prometheus's `ensureMonotonicAndIgnoreSmallDeltas`: a cumulative count
/// within `tolerance` (relative) of the previous one takes its value, and one
/// below it is raised to it.
fn ensure_monotonic_and_ignore_small_deltas(buckets: &mut [(f64, f64)], tolerance: f64) {
    let Some(&(_, mut previous)) = buckets.first() else {
        return;
    };
    for bucket in &mut buckets[1..] {
        let current = bucket.1;
        if current == previous {
            continue;
        }
        if almost_equal(previous, current, tolerance) || current < previous {
            bucket.1 = previous;
            continue;
        }
        previous = current;
    }
}

/// Prometheus's `almost.Equal`: `a` and `b` differ by less than `epsilon`
/// times their magnitude.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantile(q: f64, bounds: &[f64], counts: &[f64]) -> Option<f64> {
        bucket_quantile(q, bounds, counts, &mut Vec::new()).unwrap()
    }

    fn close(got: Option<f64>, expected: f64) -> bool {
        got.is_some_and(|got| (got - expected).abs() <= 1e-12 * expected.abs().max(1.0))
    }

    #[test]
    fn interpolates_linearly_within_the_bucket() {
        // Buckets (-inf,1]:2, (1,2]:2, (2,4]:4, (4,+inf):0; cumulative 2, 4, 8, 8.
        let (bounds, counts) = ([1.0, 2.0, 4.0], [2.0, 2.0, 4.0, 0.0]);
        // rank 1 in the first bucket, lower bound 0: 0 + 1·(1/2).
        assert_eq!(quantile(0.125, &bounds, &counts), Some(0.5));
        // rank 2 is the first bucket's cumulative count: its upper bound.
        assert_eq!(quantile(0.25, &bounds, &counts), Some(1.0));
        // rank 4 lands exactly on the (1,2] boundary: stays in (1,2], gives 2.
        assert_eq!(quantile(0.5, &bounds, &counts), Some(2.0));
        // rank 6: 2 of the 4 observations of (2,4]: 2 + 2·(2/4).
        assert_eq!(quantile(0.75, &bounds, &counts), Some(3.0));
        // rank 8 is reached in (2,4] already, the empty +Inf bucket is not used.
        assert_eq!(quantile(1.0, &bounds, &counts), Some(4.0));
        assert_eq!(quantile(0.0, &bounds, &counts), Some(0.0));
    }

    #[test]
    fn the_inf_bucket_gives_the_highest_finite_bound() {
        // Cumulative 1, 2, 4: rank 3.6 is only reached in (2,+inf).
        assert_eq!(quantile(0.9, &[1.0, 2.0], &[1.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn first_bucket_at_or_below_zero_gives_its_upper_bound() {
        assert_eq!(
            quantile(0.5, &[-1.0, 0.0, 1.0], &[4.0, 0.0, 0.0, 0.0]),
            Some(-1.0)
        );
        // Negative bounds elsewhere interpolate as usual: rank 1 fills (-2,-1];
        // rank 3 is halfway through (-1,1].
        let (bounds, counts) = ([-2.0, -1.0, 1.0], [1.0, 1.0, 2.0, 0.0]);
        assert_eq!(quantile(0.5, &bounds, &counts), Some(-1.0));
        assert_eq!(quantile(0.75, &bounds, &counts), Some(0.0));
    }

    #[test]
    fn special_quantiles_and_empty_histograms() {
        let (bounds, counts) = ([1.0], [1.0, 1.0]);
        assert!(quantile(f64::NAN, &bounds, &counts).unwrap().is_nan());
        assert_eq!(quantile(-0.1, &bounds, &counts), Some(f64::NEG_INFINITY));
        assert_eq!(quantile(1.1, &bounds, &counts), Some(f64::INFINITY));
        assert_eq!(quantile(0.5, &bounds, &[0.0, 0.0]), None);
        // Only the +Inf bucket: NaN, as in Prometheus.
        assert!(quantile(0.5, &[], &[3.0]).unwrap().is_nan());
        // q = 0 with an empty first bucket: 0 + 1·(0/0), NaN as in Prometheus.
        assert!(
            quantile(0.0, &[1.0, 2.0], &[0.0, 3.0, 1.0])
                .unwrap()
                .is_nan()
        );
        assert!(quantile(0.5, &[f64::NAN], &[1.0, 1.0]).unwrap().is_nan());
    }

    #[test]
    fn lengths_must_match() {
        assert_eq!(
            bucket_quantile(0.5, &[1.0, 2.0], &[1.0, 2.0], &mut Vec::new()),
            Err(LengthMismatch {
                bounds: 2,
                counts: 2
            })
        );
    }

    #[test]
    fn decreasing_cumulative_counts_are_raised() {
        // A negative (float) count makes cumulative 2, 1, 3, 3; Prometheus uses
        // 2, 2, 3, 3. Rank 2.7 is 0.7 into (2,3] holding 1: 2.7 (2.85 unfixed).
        let got = quantile(0.9, &[1.0, 2.0, 3.0], &[2.0, -1.0, 2.0, 0.0]);
        assert!(close(got, 2.7), "{got:?}");
    }

    #[test]
    fn tiny_relative_differences_are_ignored() {
        // Cumulative 1e13, 1e13+1, 1e13+1: within 1e-12, all 1e13. q = 1 then
        // ends in the first bucket (1.0); taken literally it would reach (1,2].
        let got = quantile(1.0, &[1.0, 2.0], &[1e13, 1.0, 0.0]);
        assert_eq!(got, Some(1.0));
        assert!(almost_equal(1e13, 1e13 + 1.0, 1e-12));
        assert!(!almost_equal(1e11, 1e11 + 1.0, 1e-12));
        assert!(!almost_equal(0.0, 1e-300, 1e-12));
    }

    #[test]
    fn unsorted_and_repeated_bounds_follow_prometheus() {
        // Bounds [2, 1] with counts [1, 1, 0]: cumulative le=2:1, le=1:2,
        // le=+Inf:2, sorted le=1:2, le=2:1→2, +Inf:2. Rank 1 is half of le=1.
        assert_eq!(quantile(0.5, &[2.0, 1.0], &[1.0, 1.0, 0.0]), Some(0.5));
        // Repeated bound 1: le=1 series 1 and 2 merge to 3; +Inf (2) is raised to 3.
        assert_eq!(quantile(1.0, &[1.0, 1.0], &[1.0, 1.0, 0.0]), Some(1.0));
    }
}
