//! `percentile_sketch(value, q)`: an approximate q-quantile in bounded memory,
//! from a mergeable DDSketch (Masson, Rim & Lee, "DDSketch: a fast and fully
//! mergeable quantile sketch with relative-error guarantees", VLDB 2019).
//!
//! Error bound: the result is within 1 % (relative accuracy α = 0.01) of the
//! exact lower-rank value, the element at 0-based position ⌊q·(n−1)⌋ of the
//! sorted values (numpy's `method="lower"`), for positive and negative values
//! alike, and exactly 0 when that element is 0. A value x > 0 is counted in
//! bucket k = ⌈log_γ x⌉, γ = (1+α)/(1−α), which holds (γ^(k−1), γ^k], and
//! the bucket answers (1−α)·γ^k, within α of everything in it. (The logarithm
//! is rounded, so a value within ~1e-15 of a bucket boundary can land next
//! door, at most α plus that rounding away.) Negative values are counted by
//! magnitude in a second store and zeros in a zero count; NaN and ±Inf are
//! ignored.
//!
//! Memory: each store keeps at most 2048 contiguous buckets (32 KiB per group
//! for both), a range of γ^2048 ≈ 6·10^17, from a nanosecond to 19 years.
//! Wider data collapses its lowest buckets into the lowest kept one
//! (DDSketch's "collapsing lowest" store), so only the smallest magnitudes
//! lose accuracy, and are then overestimated. The buckets do not depend on the
//! order values or partial states arrive in, so merged partial states answer
//! exactly as a single pass does.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int32Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::args::{DOC_SECTION, list_scalar, literal_quantile};

/// Relative accuracy: every answer is within this fraction of the true value.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Buckets per store before the lowest ones are collapsed.
pub const MAX_BUCKETS: usize = 2048;

/// ln γ, γ = (1+α)/(1−α).
static LN_GAMMA: LazyLock<f64> =
    LazyLock::new(|| (2.0 * RELATIVE_ACCURACY / (1.0 - RELATIVE_ACCURACY)).ln_1p());

/// The function, ready to register.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(PercentileSketch::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PercentileSketch {
    signature: Signature,
}

impl PercentileSketch {
    pub fn new() -> Self {
        PercentileSketch {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for PercentileSketch {
    fn default() -> Self {
        Self::new()
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "An approximate q-quantile within 1% of the exact value, in at most 32 KiB per \
         group (a DDSketch with relative accuracy 0.01). The exact value is the element at \
         position floor(q·(n−1)) of the sorted values; zero is exact. NaN and infinite \
         values are ignored; a group without values gives NULL. Use it instead of \
         percentile when groups are too large to keep every value.",
        "percentile_sketch(expression, q)",
    )
    .with_sql_example(
        "```sql\n> SELECT step, percentile_sketch(latency_ms, 0.99) AS p99 FROM requests GROUP BY step;\n```",
    )
    .with_standard_argument("expression", Some("Numeric"))
    .with_argument("q", "The quantile, a literal between 0 and 1 (0.99 for p99).")
    .build()
});

impl AggregateUDFImpl for PercentileSketch {
    fn name(&self) -> &str {
        "percentile_sketch"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, q] = arg_types else {
            return plan_err!(
                "percentile_sketch takes two arguments, a numeric column and a quantile such \
                 as 0.99; got {}",
                arg_types.len()
            );
        };
        if !(value.is_numeric() || value.is_null()) {
            return plan_err!(
                "percentile_sketch needs a numeric column, got {value}; cast it first"
            );
        }
        if !(q.is_numeric() || q.is_null()) {
            return plan_err!(
                "percentile_sketch's quantile must be a number between 0 and 1, got {q}"
            );
        }
        Ok(vec![DataType::Float64, DataType::Float64])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let buckets = DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, true)));
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "positive_offset"),
                DataType::Int32,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "positive_buckets"),
                buckets.clone(),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "negative_offset"),
                DataType::Int32,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "negative_buckets"),
                buckets,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "zero_count"),
                DataType::UInt64,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SketchAccumulator {
            q: literal_quantile(self.name(), &args)?,
            sketch: Sketch::default(),
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[derive(Debug)]
struct SketchAccumulator {
    q: f64,
    sketch: Sketch,
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for value in values[0].as_primitive::<Float64Type>().iter().flatten() {
            self.sketch.add(value);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [positive_offset, positive, negative_offset, negative, zero] = states else {
            return exec_err!(
                "percentile_sketch: expected 5 state columns, got {}",
                states.len()
            );
        };
        let stores = [
            (positive_offset, positive, true),
            (negative_offset, negative, false),
        ];
        for (offsets, buckets, is_positive) in stores {
            let offsets = offsets.as_primitive::<Int32Type>();
            let buckets = buckets.as_list::<i32>();
            for row in (0..buckets.len()).filter(|&row| buckets.is_valid(row)) {
                let counts = buckets.value(row);
                let counts = counts.as_primitive::<UInt64Type>();
                let store = if is_positive {
                    &mut self.sketch.positive
                } else {
                    &mut self.sketch.negative
                };
                for (i, count) in counts.values().iter().enumerate() {
                    if *count > 0 {
                        store.add(offsets.value(row) + i as i32, *count);
                    }
                }
            }
        }
        let zero = zero.as_primitive::<UInt64Type>();
        self.sketch.zero_count += zero.iter().flatten().sum::<u64>();
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let Sketch {
            positive,
            negative,
            zero_count,
        } = &self.sketch;
        Ok(vec![
            ScalarValue::Int32(Some(positive.offset)),
            list_scalar(UInt64Array::from(positive.buckets.clone())),
            ScalarValue::Int32(Some(negative.offset)),
            list_scalar(UInt64Array::from(negative.buckets.clone())),
            ScalarValue::UInt64(Some(*zero_count)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.sketch.quantile(self.q)))
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + (self.sketch.positive.buckets.capacity() + self.sketch.negative.buckets.capacity())
                * size_of::<u64>()
    }
}

/// A DDSketch: positive values, negative values by magnitude, and zeros.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sketch {
    positive: Store,
    negative: Store,
    zero_count: u64,
}

impl Sketch {
    /// Counts `value`; NaN and ±Inf are ignored.
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if value > 0.0 {
            self.positive.add(bucket_of(value), 1);
        } else if value < 0.0 {
            self.negative.add(bucket_of(-value), 1);
        } else {
            self.zero_count += 1;
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.negative.count() + self.zero_count + self.positive.count()
    }

    /// The estimate of the element at position ⌊q·(n−1)⌋ of the sorted
    /// values, q in [0, 1]; `None` without values.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let target = ((q * (n - 1) as f64).floor() as u64).min(n - 1);
        // Walk from the most negative value up until more than `target` are behind.
        let mut seen = 0;
        for (index, count) in self.negative.iter().rev() {
            seen += count;
            if seen > target {
                return Some(-value_of(index));
            }
        }
        seen += self.zero_count;
        if seen > target {
            return Some(0.0);
        }
        for (index, count) in self.positive.iter() {
            seen += count;
            if seen > target {
                return Some(value_of(index));
            }
        }
        None
    }
}

/// The bucket of x > 0: k with γ^(k−1) < x ≤ γ^k.
fn bucket_of(x: f64) -> i32 {
    // |ln x| ≤ 745 for finite x, so k stays within ±38,000.
    (x.ln() / *LN_GAMMA).ceil() as i32
}

/// The answer for bucket k: (1−α)·γ^k, within α of anything in (γ^(k−1), γ^k].
fn value_of(bucket: i32) -> f64 {
    (1.0 - RELATIVE_ACCURACY) * (f64::from(bucket) * *LN_GAMMA).exp()
}

/// Counts of contiguous buckets from `offset` on, at most [`MAX_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
struct Store {
    offset: i32,
    buckets: Vec<u64>,
}

impl Store {
    /// Adds `count` to `bucket`, collapsing the lowest buckets into the lowest
    /// kept one if the store would span more than [`MAX_BUCKETS`].
    fn add(&mut self, bucket: i32, count: u64) {
        if self.buckets.is_empty() {
            self.offset = bucket;
            self.buckets.push(count);
            return;
        }
        let (bucket, lo) = (i64::from(bucket), i64::from(self.offset));
        let hi = lo + self.buckets.len() as i64 - 1;
        if (lo..=hi).contains(&bucket) {
            self.buckets[(bucket - lo) as usize] += count;
            return;
        }
        let new_hi = hi.max(bucket);
        let new_lo = lo.min(bucket).max(new_hi - MAX_BUCKETS as i64 + 1);
        let mut buckets = vec![0; (new_hi - new_lo + 1) as usize];
        for (k, old) in (lo..).zip(&self.buckets) {
            buckets[(k.max(new_lo) - new_lo) as usize] += old;
        }
        buckets[(bucket.max(new_lo) - new_lo) as usize] += count;
        self.buckets = buckets;
        self.offset = new_lo as i32;
    }

    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// (bucket, count) of the non-empty buckets, lowest first.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(i, &count)| (self.offset + i as i32, count))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Float64Array;

    use super::*;

    /// splitmix64: a small, seeded, well-mixed generator.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in (0, 1].
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
        }

        /// Lognormal with σ = 2 (Box–Muller): heavy-tailed, spanning ~e^±9.
        fn lognormal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            (2.0 * z).exp()
        }
    }

    fn accumulator(q: f64) -> SketchAccumulator {
        SketchAccumulator {
            q,
            sketch: Sketch::default(),
        }
    }

    fn feed(acc: &mut SketchAccumulator, values: &[f64]) {
        let array: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
        acc.update_batch(&[array]).unwrap();
    }

    #[test]
    fn within_one_percent_of_the_lower_rank_value_on_heavy_tailed_data() {
        let mut rng = Rng(20240501);
        let values: Vec<f64> = (0..100_000).map(|_| rng.lognormal()).collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert!(sorted[99_999] / sorted[0] > 1e6, "not heavy-tailed enough");

        let mut one_pass = accumulator(0.5);
        feed(&mut one_pass, &values);
        let mut first = accumulator(0.5);
        feed(&mut first, &values[..50_000]);
        let mut second = accumulator(0.5);
        feed(&mut second, &values[50_000..]);
        let state: Vec<ArrayRef> = second
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        first.merge_batch(&state).unwrap();
        assert_eq!(first.sketch, one_pass.sketch);
        assert_eq!(one_pass.sketch.count(), 100_000);

        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = sorted[(q * 99_999.0f64).floor() as usize];
            let got = one_pass.sketch.quantile(q).unwrap();
            let error = (got - exact).abs() / exact;
            assert!(
                error <= RELATIVE_ACCURACY,
                "q={q}: {got} vs {exact}, error {error}"
            );
            assert_eq!(first.sketch.quantile(q), Some(got), "q={q} merged");
        }
    }

    #[test]
    fn signs_and_zeros() {
        let mut acc = accumulator(0.0);
        feed(&mut acc, &[8.0, -1.0, 0.0, 1.0, -8.0, 0.0, 2.0, 4.0, 1.0]);
        // Sorted: -8, -1, 0, 0, 1, 1, 2, 4, 8; n − 1 = 8.
        let s = &acc.sketch;
        // 1 is bucket 0, answered as (1 − α)·γ^0 = 0.99.
        assert_eq!(s.quantile(0.125), Some(-0.99));
        assert_eq!(s.quantile(0.25), Some(0.0));
        assert_eq!(s.quantile(0.375), Some(0.0));
        assert_eq!(s.quantile(0.5), Some(0.99));
        assert_eq!(s.quantile(0.625), Some(0.99));
        let lowest = s.quantile(0.0).unwrap();
        assert!((lowest + 8.0).abs() <= 0.08, "{lowest}");
        let highest = s.quantile(1.0).unwrap();
        assert!((highest - 8.0).abs() <= 0.08, "{highest}");
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Float64(Some(lowest)));
    }

    #[test]
    fn non_finite_values_are_ignored_and_empty_is_null() {
        let mut acc = accumulator(0.5);
        feed(&mut acc, &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
        assert_eq!(acc.sketch.count(), 0);
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Float64(None));
    }

    #[test]
    fn wide_ranges_collapse_the_lowest_buckets() {
        let mut sketch = Sketch::default();
        for x in [1e-300, 1.0, 1e300] {
            sketch.add(x);
        }
        assert_eq!(sketch.positive.buckets.len(), MAX_BUCKETS);
        assert_eq!(sketch.count(), 3);
        // 1e300 keeps its accuracy.
        let highest = sketch.quantile(1.0).unwrap();
        assert!((highest / 1e300 - 1.0).abs() <= RELATIVE_ACCURACY);
        // 1e-300 and 1 are now in the lowest kept bucket, 2047 below 1e300's:
        // γ^(k − 2047) with k = ⌈ln 1e300 / ln γ⌉ = 34535 is about 1.7e282.
        let lowest = sketch.quantile(0.0).unwrap();
        assert!(lowest > 1e282 && lowest < 1e283, "{lowest}");
        assert_eq!(sketch.quantile(0.5), Some(lowest));
        // The same buckets whatever the order.
        let mut reversed = Sketch::default();
        for x in [1e300, 1.0, 1e-300] {
            reversed.add(x);
        }
        assert_eq!(reversed, sketch);
    }
}
