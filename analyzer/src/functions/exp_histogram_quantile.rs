//! `exp_histogram_quantile(...)`: Prometheus's `histogram_quantile` over one
//! OTLP exponential histogram per row.
//!
//! In OpenTelemetry's layout, with base = 2^(2^-scale), positive bucket i
//! holds (base^i, base^(i+1)], negative bucket i holds [-base^(i+1), -base^i),
//! and the zero bucket [-zero_threshold, zero_threshold]. That is a Prometheus
//! native histogram with a standard schema (schema = scale, Prometheus index =
//! OTLP index + 1), and the quantile is the one `HistogramQuantile` in
//! prometheus/prometheus `promql/quantile.go` computes for it since Prometheus
//! 3.0 (exponential interpolation, PR #14677):
//!
//! - q < 0 gives -Inf, q > 1 gives +Inf, q NaN gives NaN;
//! - buckets are ordered negative (most negative first), zero, positive; the
//!   zero bucket takes part only if it holds observations, and a positive
//!   bucket's lower bound below zero_threshold is raised to it (negative:
//!   mirrored);
//! - for q < 0.5 the buckets are walked upwards with rank q·count until the
//!   running count reaches it; for q ≥ 0.5 downwards with rank (1−q)·count.
//!   Empty buckets are skipped, so a rank landing exactly between two buckets
//!   gives the upper bound of the lower one for q < 0.5 and the lower bound of
//!   the upper one for q ≥ 0.5, which differ when empty buckets lie between;
//! - within a positive or negative bucket the value is interpolated
//!   exponentially: the fraction f of the bucket's observations below the rank
//!   gives 2^(log2 lower + (log2 upper − log2 lower)·f) (mirrored for negative
//!   buckets), as if the bucket were split uniformly into finer exponential
//!   buckets;
//! - within the zero bucket the interpolation is linear, from 0 instead of
//!   -zero_threshold if the histogram has only positive buckets (up to 0 if
//!   only negative ones).
//!
//! Differences, all deliberate: an empty histogram gives NULL where Prometheus
//! gives NaN; "has negative buckets" means a non-zero negative count, as after
//! Prometheus's own OTLP ingestion, which drops empty buckets; and scales
//! outside Prometheus's -4..=8 use the same formulas (Prometheus's OTLP
//! ingestion downscales scales above 8 to 8 and refuses those below -4), so
//! they keep their full resolution. Bucket bounds are
//! 2^(i/2^scale), computed with `exp2` on the fractional part, so they can
//! differ from Prometheus's table by one unit in the last place.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray, Float64Builder};
use arrow::datatypes::{DataType, Float64Type, Int32Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::args::{
    DOC_SECTION, all_scalar, coerce_float, coerce_float_list, coerce_int32, columnar,
    float_list_row,
};

/// The scales OTLP allows.
const SCALES: std::ops::RangeInclusive<i32> = -10..=20;

const ARGUMENTS: &str = "(scale, zero_threshold, zero_count, positive_offset, \
                         positive_bucket_counts, negative_offset, negative_bucket_counts, q)";

/// The function, ready to register.
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(ExpHistogramQuantile::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExpHistogramQuantile {
    signature: Signature,
}

impl ExpHistogramQuantile {
    pub fn new() -> Self {
        ExpHistogramQuantile {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for ExpHistogramQuantile {
    fn default() -> Self {
        Self::new()
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The q-quantile of an OTLP exponential histogram, computed as Prometheus 3 \
         computes histogram_quantile for native histograms: the bucket holding the rank is \
         found walking up from the lowest bucket (q < 0.5) or down from the highest \
         (q ≥ 0.5), then the value is interpolated exponentially within it, or linearly \
         in the zero bucket. q < 0 gives -Inf, q > 1 gives +Inf, q NaN gives NaN; an \
         empty histogram gives NULL (Prometheus: NaN).",
        "exp_histogram_quantile(scale, zero_threshold, zero_count, positive_offset, \
         positive_bucket_counts, negative_offset, negative_bucket_counts, q)",
    )
    .with_sql_example(
        "```sql\n> SELECT time, exp_histogram_quantile(scale, zero_threshold, zero_count,\n         positive_offset, positive_bucket_counts,\n         negative_offset, negative_bucket_counts, 0.99) AS p99\n  FROM metrics_exp_histogram WHERE metric_name = 'http.server.request.duration';\n```",
    )
    .with_argument("scale", "Resolution: bucket bounds are powers of 2^(2^-scale), -10 to 20.")
    .with_argument("zero_threshold", "Half-width of the zero bucket.")
    .with_argument("zero_count", "Observations in the zero bucket.")
    .with_argument("positive_offset", "Index of the first positive bucket.")
    .with_argument(
        "positive_bucket_counts",
        "Observations per positive bucket from positive_offset on.",
    )
    .with_argument("negative_offset", "Index of the first negative bucket.")
    .with_argument(
        "negative_bucket_counts",
        "Observations per negative bucket from negative_offset on.",
    )
    .with_argument("q", "The quantile, between 0 and 1 (0.99 for p99).")
    .build()
});

impl ScalarUDFImpl for ExpHistogramQuantile {
    fn name(&self) -> &str {
        "exp_histogram_quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [
            scale,
            zero_threshold,
            zero_count,
            positive_offset,
            positive,
            negative_offset,
            negative,
            q,
        ] = arg_types
        else {
            return plan_err!(
                "exp_histogram_quantile takes eight arguments {ARGUMENTS}, the columns of \
                 metrics_exp_histogram in that order and the quantile; got {}",
                arg_types.len()
            );
        };
        let name = self.name();
        Ok(vec![
            coerce_int32(name, "scale", scale)?,
            coerce_float(name, "zero_threshold", zero_threshold)?,
            coerce_float(name, "zero_count", zero_count)?,
            coerce_int32(name, "positive_offset", positive_offset)?,
            coerce_float_list(name, "positive_bucket_counts", positive)?,
            coerce_int32(name, "negative_offset", negative_offset)?,
            coerce_float_list(name, "negative_bucket_counts", negative)?,
            coerce_float(name, "q (the quantile, such as 0.99)", q)?,
        ])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = all_scalar(&args.args);
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [
            scale,
            zero_threshold,
            zero_count,
            positive_offset,
            positive,
            negative_offset,
            negative,
            q,
        ] = arrays.as_slice()
        else {
            return exec_err!("exp_histogram_quantile takes eight arguments {ARGUMENTS}");
        };
        let scale = scale.as_primitive::<Int32Type>();
        let zero_threshold = zero_threshold.as_primitive::<Float64Type>();
        let zero_count = zero_count.as_primitive::<Float64Type>();
        let positive_offset = positive_offset.as_primitive::<Int32Type>();
        let positive = positive.as_list::<i32>();
        let negative_offset = negative_offset.as_primitive::<Int32Type>();
        let negative = negative.as_list::<i32>();
        let q = q.as_primitive::<Float64Type>();

        let mut out = Float64Builder::with_capacity(q.len());
        let mut scratch = Vec::new();
        for row in 0..q.len() {
            let scalars_valid = [
                scale.is_valid(row),
                zero_threshold.is_valid(row),
                zero_count.is_valid(row),
                positive_offset.is_valid(row),
                negative_offset.is_valid(row),
                q.is_valid(row),
            ];
            let (Some(positive), Some(negative), true) = (
                float_list_row(positive, row),
                float_list_row(negative, row),
                scalars_valid.iter().all(|&v| v),
            ) else {
                out.append_null();
                continue;
            };
            let histogram = ExpHistogram {
                scale: scale.value(row),
                zero_threshold: zero_threshold.value(row),
                zero_count: zero_count.value(row),
                positive_offset: positive_offset.value(row),
                positive,
                negative_offset: negative_offset.value(row),
                negative,
            };
            match exp_histogram_quantile(q.value(row), &histogram, &mut scratch) {
                Ok(value) => out.append_option(value),
                Err(ScaleOutOfRange(scale)) => {
                    return exec_err!(
                        "exp_histogram_quantile: scale {scale} is outside OTLP's range -10 to 20; \
                         check that the arguments are in the order {ARGUMENTS}"
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

/// One OTLP exponential histogram point.
#[derive(Debug, Clone, Copy)]
pub struct ExpHistogram<'a> {
    pub scale: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub positive_offset: i32,
    pub positive: &'a [f64],
    pub negative_offset: i32,
    pub negative: &'a [f64],
}

/// The scale is outside OTLP's -10..=20.
#[derive(Debug, PartialEq)]
pub struct ScaleOutOfRange(pub i32);

/// A non-empty bucket: its bounds (as Prometheus adjusts them) and count.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    lower: f64,
    upper: f64,
    count: f64,
}

/// Prometheus's `HistogramQuantile` over one OTLP exponential histogram (see
/// the module doc); `None` when it has no observations. `scratch` is reused
/// between rows.
pub fn exp_histogram_quantile(
    q: f64,
    h: &ExpHistogram,
    scratch: &mut Vec<Bucket>,
) -> Result<Option<f64>, ScaleOutOfRange> {
    if !SCALES.contains(&h.scale) {
        return Err(ScaleOutOfRange(h.scale));
    }
    if q < 0.0 {
        return Ok(Some(f64::NEG_INFINITY));
    }
    if q > 1.0 {
        return Ok(Some(f64::INFINITY));
    }
    if q.is_nan() {
        return Ok(Some(f64::NAN));
    }
    let total = h.zero_count + h.positive.iter().sum::<f64>() + h.negative.iter().sum::<f64>();
    if total == 0.0 {
        return Ok(None);
    }

    let buckets = ascending_buckets(h, scratch);
    let forward = q < 0.5;
    let mut rank = if forward {
        q * total
    } else {
        (1.0 - q) * total
    };
    let mut count = 0.0;
    let mut found = None;
    for i in 0..buckets.len() {
        let bucket = buckets[if forward { i } else { buckets.len() - 1 - i }];
        count += bucket.count;
        found = Some(bucket);
        if count >= rank {
            break;
        }
    }
    let Some(mut bucket) = found else {
        return Ok(None);
    };

    if bucket.lower < 0.0 && bucket.upper > 0.0 {
        // The zero bucket of a histogram with values on one side only ends at 0.
        let has_positive = h.positive.iter().any(|&c| c != 0.0);
        let has_negative = h.negative.iter().any(|&c| c != 0.0);
        if has_positive && !has_negative {
            bucket.lower = 0.0;
        } else if has_negative && !has_positive {
            bucket.upper = 0.0;
        }
    }
    count = count.min(total);
    if count < rank {
        return Ok(Some(bucket.upper));
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    let fraction = rank / bucket.count;

    if bucket.lower <= 0.0 && bucket.upper >= 0.0 {
        return Ok(Some(
            bucket.lower + (bucket.upper - bucket.lower) * fraction,
        ));
    }
    let log_lower = bucket.lower.abs().log2();
    let log_upper = bucket.upper.abs().log2();
    Ok(Some(if bucket.lower > 0.0 {
        (log_lower + (log_upper - log_lower) * fraction).exp2()
    } else {
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
    }))
}

/// The non-empty buckets from the most negative to the most positive.
fn ascending_buckets<'s>(h: &ExpHistogram, buckets: &'s mut Vec<Bucket>) -> &'s [Bucket] {
    buckets.clear();
    let zero_threshold = h.zero_threshold;
    for (i, &count) in h.negative.iter().enumerate().rev() {
        if count == 0.0 {
            continue;
        }
        let index = i64::from(h.negative_offset) + i as i64;
        buckets.push(Bucket {
            lower: -exp_bound(index + 1, h.scale),
            upper: (-exp_bound(index, h.scale)).min(-zero_threshold),
            count,
        });
    }
    if h.zero_count > 0.0 {
        buckets.push(Bucket {
            lower: -zero_threshold,
            upper: zero_threshold,
            count: h.zero_count,
        });
    }
    for (i, &count) in h.positive.iter().enumerate() {
        if count == 0.0 {
            continue;
        }
        let index = i64::from(h.positive_offset) + i as i64;
        buckets.push(Bucket {
            lower: exp_bound(index, h.scale).max(zero_threshold),
            upper: exp_bound(index + 1, h.scale),
            count,
        });
    }
    buckets
}

/// base^index for base = 2^(2^-scale), that is 2^(index / 2^scale).
pub fn exp_bound(index: i64, scale: i32) -> f64 {
    if scale <= 0 {
        return pow2(index << -scale);
    }
    let fraction = index & ((1 << scale) - 1);
    let whole = index >> scale;
    (fraction as f64 / (1i64 << scale) as f64).exp2() * pow2(whole)
}

/// 2^exponent, exactly (0 below the smallest subnormal, +Inf above f64::MAX).
fn pow2(exponent: i64) -> f64 {
    match exponent {
        1024.. => f64::INFINITY,
        -1022..=1023 => f64::from_bits(((exponent + 1023) as u64) << 52),
        -1074..=-1023 => f64::from_bits(1u64 << (exponent + 1074)),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &[f64] = &[];

    fn positive(scale: i32, offset: i32, counts: &[f64]) -> ExpHistogram<'_> {
        ExpHistogram {
            scale,
            zero_threshold: 0.0,
            zero_count: 0.0,
            positive_offset: offset,
            positive: counts,
            negative_offset: 0,
            negative: EMPTY,
        }
    }

    fn quantile(q: f64, h: &ExpHistogram) -> Option<f64> {
        exp_histogram_quantile(q, h, &mut Vec::new()).unwrap()
    }

    fn assert_close(got: Option<f64>, expected: f64) {
        let got = got.unwrap_or_else(|| panic!("NULL, expected {expected}"));
        assert!(
            (got - expected).abs() <= 1e-15 * expected.abs().max(1.0),
            "{got} != {expected}"
        );
    }

    #[test]
    fn bounds_are_powers_of_the_base() {
        assert_eq!(exp_bound(1, 0), 2.0);
        assert_eq!(exp_bound(-3, 0), 0.125);
        assert_eq!(exp_bound(-2, 1), 0.5);
        assert_close(Some(exp_bound(-1, 1)), std::f64::consts::FRAC_1_SQRT_2);
        assert_close(Some(exp_bound(3, 1)), 2.0 * std::f64::consts::SQRT_2);
        assert_eq!(exp_bound(1, -1), 4.0);
        assert_eq!(exp_bound(2, -1), 16.0);
        assert_eq!(exp_bound(-1, -2), 0.0625);
        assert_eq!(exp_bound(0, 20), 1.0);
        assert_eq!(exp_bound(1 << 20, 20), 2.0);
        assert_eq!(exp_bound(2000, 0), f64::INFINITY);
        assert_eq!(exp_bound(-1074, 0), f64::from_bits(1));
        assert_eq!(exp_bound(-1075, 0), 0.0);
    }

    #[test]
    fn interpolates_exponentially_within_buckets() {
        // Scale 0: (1,2]:1, (2,4]:1, (4,8]:2; 4 observations.
        let h = positive(0, 0, &[1.0, 1.0, 2.0]);
        // q < 0.5 walks up. Rank 0: bottom of (1,2].
        assert_eq!(quantile(0.0, &h), Some(1.0));
        // Rank 0.5, half of (1,2]: 2^0.5.
        assert_close(quantile(0.125, &h), std::f64::consts::SQRT_2);
        // Rank 1 fills (1,2]: its upper bound.
        assert_eq!(quantile(0.25, &h), Some(2.0));
        // q ≥ 0.5 walks down with rank (1-q)·4. Rank 2 fills (4,8] from the top:
        // its lower bound.
        assert_eq!(quantile(0.5, &h), Some(4.0));
        // Rank 1 from the top is half of (4,8]: 2^2.5.
        assert_close(quantile(0.75, &h), 4.0 * std::f64::consts::SQRT_2);
        assert_eq!(quantile(1.0, &h), Some(8.0));
    }

    #[test]
    fn the_walk_direction_decides_across_empty_buckets() {
        // (1,2]:1, (2,4]:0, (4,8]:1. q = 0.5 walks down and stops at (4,8]'s
        // bottom, 4, where walking up would have given 2.
        let h = positive(0, 0, &[1.0, 0.0, 1.0]);
        assert_eq!(quantile(0.5, &h), Some(4.0));
        assert_close(quantile(0.25, &h), std::f64::consts::SQRT_2);
    }

    #[test]
    fn offsets_and_scales_place_the_buckets() {
        // Scale 1, offset -2: (0.5, 0.7071], (0.7071, 1].
        let h = positive(1, -2, &[1.0, 1.0]);
        assert_close(quantile(0.5, &h), std::f64::consts::FRAC_1_SQRT_2);
        assert_eq!(quantile(1.0, &h), Some(1.0));
        assert_eq!(quantile(0.0, &h), Some(0.5));
        // Scale -1 (base 4), offset 1: (4, 16]; half of it is 2^3.
        assert_eq!(quantile(0.5, &positive(-1, 1, &[4.0])), Some(8.0));
    }

    #[test]
    fn zero_bucket_is_linear_and_ends_at_zero_on_one_sided_histograms() {
        // Zero bucket [-1,1]:2 and (1,2]:2. Only positive buckets: [0,1].
        let h = ExpHistogram {
            zero_threshold: 1.0,
            zero_count: 2.0,
            ..positive(0, 0, &[2.0])
        };
        assert_eq!(quantile(0.25, &h), Some(0.5));
        assert_eq!(quantile(0.5, &h), Some(1.0));

        // [-2,-1):2, [-1,1]:2, (1,2]:2.
        let h = ExpHistogram {
            negative: &[2.0],
            ..h
        };
        // Rank 1.5 is 3/4 into [-2,-1) from below: -(2^0.25).
        assert_close(quantile(0.25, &h), -(0.25f64.exp2()));
        // Rank 2.4 is 0.4/2 into [-1,1]: -1 + 2·0.2.
        assert_close(quantile(0.4, &h), -0.6);
        // From the top, rank 3 is 1 of 2 into [-1,1] counted downwards: 0.
        assert_eq!(quantile(0.5, &h), Some(0.0));

        // Only negative buckets: the zero bucket is [-1,0]. From the top, rank
        // 0.4 leaves 1.6 of 2 below: -1 + 0.8.
        let h = ExpHistogram {
            positive: EMPTY,
            ..h
        };
        assert_close(quantile(0.9, &h), -0.2);
    }

    #[test]
    fn zero_threshold_raises_lower_bounds() {
        // (1,2] becomes (1.5,2]; half of it on a log scale is √(1.5·2).
        let h = ExpHistogram {
            zero_threshold: 1.5,
            ..positive(0, 0, &[2.0])
        };
        assert_close(quantile(0.5, &h), 3.0f64.sqrt());
    }

    #[test]
    fn special_cases() {
        let h = positive(0, 0, &[1.0]);
        assert_eq!(quantile(-0.5, &h), Some(f64::NEG_INFINITY));
        assert_eq!(quantile(1.5, &h), Some(f64::INFINITY));
        assert!(quantile(f64::NAN, &h).unwrap().is_nan());
        assert_eq!(quantile(0.5, &positive(0, 0, &[0.0, 0.0])), None);
        assert_eq!(quantile(0.5, &positive(0, 0, EMPTY)), None);
        // Observations only in a zero bucket of width 0.
        let zeros = ExpHistogram {
            zero_count: 3.0,
            ..positive(0, 0, EMPTY)
        };
        assert_eq!(quantile(0.99, &zeros), Some(0.0));
        assert_eq!(
            exp_histogram_quantile(0.5, &positive(21, 0, &[1.0]), &mut Vec::new()),
            Err(ScaleOutOfRange(21))
        );
    }
}
