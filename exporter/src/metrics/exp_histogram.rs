//! A cumulative base-2 exponential histogram that maps values to buckets as the
//! OTLP data model does, and turns into an `ExponentialHistogramDataPoint`.
//!
//! At scale `s` the base is `2^(2^-s)` and bucket `i` holds the values in
//! `(base^i, base^(i+1)]`, so a value `v > 0` goes to `ceil(log2(v) * 2^s) - 1`.
//! The histogram starts at [`MAX_SCALE`] and lowers its scale (each step merges
//! pairs of neighbouring buckets) whenever its values would need more buckets
//! than its maximum.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets as ProtoBuckets;

/// The finest scale used: bucket bounds grow by 2^(2^-20) (about 0.00007 %).
pub const MAX_SCALE: i32 = 20;
/// The coarsest scale in OTLP: at it, every finite f64 fits in 3 buckets.
pub const MIN_SCALE: i32 = -10;
/// The bucket limit of the OpenTelemetry SDKs, used by [`ExpHistogram::default`].
pub const DEFAULT_MAX_BUCKETS: usize = 160;

/// The bucket index of `value` at `scale`: the `i` with
/// `base^i < value <= base^(i+1)`, `base = 2^(2^-scale)`.
///
/// Exact for powers of two and for all scales ≤ 0 (computed from the binary
/// exponent); for scales > 0 other values go through `log2`, which can be off
/// by one only for values within rounding error of a bucket bound.
///
/// `value` must be positive and finite; `scale` within
/// [`MIN_SCALE`]..=[`MAX_SCALE`].
pub fn map_to_index(value: f64, scale: i32) -> i32 {
    debug_assert!(value > 0.0 && value.is_finite(), "value {value}");
    debug_assert!((MIN_SCALE..=MAX_SCALE).contains(&scale), "scale {scale}");
    let (exponent, power_of_two) = binary_exponent(value);
    let exponent = i64::from(exponent);
    let index = if scale <= 0 {
        // Scale 0: (2^(e-1), 2^e] is bucket e-1, so an exact 2^e is in e-1 and
        // anything above it in e. Lower scales merge 2^-scale of those.
        let index0 = if power_of_two { exponent - 1 } else { exponent };
        index0 >> -scale
    } else if power_of_two {
        (exponent << scale) - 1
    } else {
        // floor, not ceil - 1: the same for every value that is not a bound.
        // The clamp keeps the index in the value's own octave when log2 rounds.
        let index = (value.log2() * f64::from(1u32 << scale)).floor() as i64;
        index.clamp(exponent << scale, ((exponent + 1) << scale) - 1)
    };
    i32::try_from(index).expect("an f64's bucket index fits in i32 at scales up to 20")
}

/// `floor(log2(value))` from the bits, and whether `value` is exactly that power of two.
fn binary_exponent(value: f64) -> (i32, bool) {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = bits & ((1u64 << 52) - 1);
    if biased == 0 {
        // Subnormal: value = mantissa * 2^-1074.
        let top = 63 - mantissa.leading_zeros() as i32;
        (top - 1074, mantissa.is_power_of_two())
    } else {
        (biased - 1023, mantissa == 0)
    }
}

/// Contiguous buckets: `counts[k]` is bucket `offset + k`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Buckets {
    offset: i32,
    counts: Vec<u64>,
}

impl Buckets {
    /// First and last index held, if any.
    fn range(&self) -> Option<(i32, i32)> {
        let len = i32::try_from(self.counts.len()).ok()?;
        (len > 0).then(|| (self.offset, self.offset + len - 1))
    }

    /// Adds `n` to bucket `index`, growing the range as needed.
    fn add(&mut self, index: i32, n: u64) {
        match self.range() {
            None => {
                self.offset = index;
                self.counts = vec![n];
            }
            Some((low, _)) if index < low => {
                let grow = (low - index) as usize;
                self.counts.splice(0..0, std::iter::repeat_n(0, grow));
                self.offset = index;
                self.counts[0] += n;
            }
            Some((_, high)) if index > high => {
                self.counts
                    .resize(self.counts.len() + (index - high) as usize, 0);
                *self.counts.last_mut().expect("just grown") += n;
            }
            Some((low, _)) => self.counts[(index - low) as usize] += n,
        }
    }

    /// Lowers the scale by `change`: bucket `i` becomes bucket `i >> change`.
    fn downscale(&mut self, change: u32) {
        let Some((low, high)) = self.range() else {
            return;
        };
        if change == 0 {
            return;
        }
        let offset = low >> change;
        let mut counts = vec![0; ((high >> change) - offset + 1) as usize];
        for (k, count) in self.counts.iter().enumerate() {
            counts[(((low + k as i32) >> change) - offset) as usize] += count;
        }
        *self = Buckets { offset, counts };
    }

    fn to_proto(&self) -> ProtoBuckets {
        ProtoBuckets {
            offset: self.offset,
            bucket_counts: self.counts.clone(),
        }
    }
}

/// How many scale steps make `[low, high]` fit in `max_buckets` buckets.
fn change_to_fit(low: i32, high: i32, max_buckets: usize) -> u32 {
    let mut change = 0;
    while ((high >> change) - (low >> change)) as usize >= max_buckets {
        change += 1;
    }
    change
}

/// Widens an optional index range with another.
fn union(a: Option<(i32, i32)>, b: Option<(i32, i32)>) -> Option<(i32, i32)> {
    match (a, b) {
        (Some((l1, h1)), Some((l2, h2))) => Some((l1.min(l2), h1.max(h2))),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A cumulative exponential histogram of f64 values, in whatever unit the
/// caller records (milliseconds, nanoseconds ...); the unit goes on the `Metric`.
///
/// Zero goes to `zero_count` (the zero threshold is 0); NaN and infinities are
/// ignored (see [`ExpHistogram::record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpHistogram {
    max_buckets: usize,
    scale: i32,
    count: u64,
    zero_count: u64,
    sum: f64,
    min: f64,
    max: f64,
    positive: Buckets,
    negative: Buckets,
}

impl Default for ExpHistogram {
    /// At most [`DEFAULT_MAX_BUCKETS`] buckets per sign.
    fn default() -> Self {
        ExpHistogram::new(DEFAULT_MAX_BUCKETS)
    }
}

impl ExpHistogram {
    /// An empty histogram with at most `max_buckets` buckets per sign (at least
    /// 3, which hold any f64 at the coarsest scale).
    pub fn new(max_buckets: usize) -> Self {
        ExpHistogram {
            max_buckets: max_buckets.max(3),
            scale: MAX_SCALE,
            count: 0,
            zero_count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            positive: Buckets::default(),
            negative: Buckets::default(),
        }
    }

    /// Adds one value. Returns false, and records nothing, for NaN and ±infinity,
    /// which no bucket holds.
    pub fn record(&mut self, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value == 0.0 {
            self.zero_count += 1;
            return true;
        }
        let index = map_to_index(value.abs(), self.scale);
        let side = if value > 0.0 {
            &self.positive
        } else {
            &self.negative
        };
        let (low, high) = union(side.range(), Some((index, index))).expect("not empty");
        let change = change_to_fit(low, high, self.max_buckets);
        self.downscale(change);
        let index = index >> change;
        if value > 0.0 {
            self.positive.add(index, 1);
        } else {
            self.negative.add(index, 1);
        }
        true
    }

    /// Adds every value of `other`, at the finer of the two scales that keeps
    /// both within this histogram's bucket limit.
    pub fn merge(&mut self, other: &ExpHistogram) {
        if other.count == 0 {
            return;
        }
        let scale = self.scale.min(other.scale);
        let at = |h: &ExpHistogram, range: Option<(i32, i32)>| {
            let change = (h.scale - scale) as u32;
            range.map(|(low, high)| (low >> change, high >> change))
        };
        let change = [
            (self.positive.range(), other.positive.range()),
            (self.negative.range(), other.negative.range()),
        ]
        .into_iter()
        .filter_map(|(mine, theirs)| union(at(self, mine), at(other, theirs)))
        .map(|(low, high)| change_to_fit(low, high, self.max_buckets))
        .max()
        .unwrap_or(0);
        let scale = scale - change as i32;
        self.downscale((self.scale - scale) as u32);
        let theirs = (other.scale - scale) as u32;
        for (mine, their) in [
            (&mut self.positive, &other.positive),
            (&mut self.negative, &other.negative),
        ] {
            for (k, &count) in their.counts.iter().enumerate() {
                if count > 0 {
                    mine.add((their.offset + k as i32) >> theirs, count);
                }
            }
        }
        self.count += other.count;
        self.zero_count += other.zero_count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    fn downscale(&mut self, change: u32) {
        if change == 0 {
            return;
        }
        self.positive.downscale(change);
        self.negative.downscale(change);
        self.scale -= change as i32;
    }

    /// The current scale.
    pub fn scale(&self) -> i32 {
        self.scale
    }

    /// Values recorded (zeros included).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Zeros recorded.
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// Sum of the values recorded.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The positive buckets: the index of the first and the count of each.
    pub fn positive_buckets(&self) -> (i32, &[u64]) {
        (self.positive.offset, &self.positive.counts)
    }

    /// The cumulative data point for `[start_time_unix_nano, time_unix_nano]`.
    /// `sum` is left out when negative values were recorded, as the OTLP data
    /// model asks; `min` and `max` when nothing was.
    pub fn to_proto(
        &self,
        attributes: Vec<KeyValue>,
        start_time_unix_nano: u64,
        time_unix_nano: u64,
    ) -> ExponentialHistogramDataPoint {
        let recorded = self.count > 0;
        ExponentialHistogramDataPoint {
            attributes,
            start_time_unix_nano,
            time_unix_nano,
            count: self.count,
            sum: self.negative.counts.is_empty().then_some(self.sum),
            scale: self.scale,
            zero_count: self.zero_count,
            positive: Some(self.positive.to_proto()),
            negative: Some(self.negative.to_proto()),
            flags: 0,
            exemplars: Vec::new(),
            min: recorded.then_some(self.min),
            max: recorded.then_some(self.max),
            zero_threshold: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_at_scale_zero_and_below_match_hand_computed_bounds() {
        // Scale 0: bucket i is (2^i, 2^(i+1)].
        for (value, index) in [
            (1.0, -1),
            (1.5, 0),
            (2.0, 0),
            (3.0, 1),
            (4.0, 1),
            (4.5, 2),
            (0.75, -1),
            (0.5, -2),
            (1024.0, 9),
            (1025.0, 10),
        ] {
            assert_eq!(map_to_index(value, 0), index, "{value} at scale 0");
        }
        // Scale -1: base 4, bucket i is (4^i, 4^(i+1)].
        for (value, index) in [
            (1.0, -1),
            (2.0, 0),
            (4.0, 0),
            (5.0, 1),
            (16.0, 1),
            (17.0, 2),
        ] {
            assert_eq!(map_to_index(value, -1), index, "{value} at scale -1");
        }
        // Scale -10: base 2^1024, so every normal f64 above 1 is in bucket 0.
        assert_eq!(map_to_index(f64::MAX, -10), 0);
        assert_eq!(map_to_index(1.0, -10), -1);
        assert_eq!(map_to_index(f64::MAX, 0), 1023);
    }

    #[test]
    fn indexes_at_positive_scales_match_hand_computed_bounds() {
        // Scale 1: base sqrt(2) = 1.41421..., bucket i is (sqrt2^i, sqrt2^(i+1)].
        for (value, index) in [
            (1.0, -1),
            (1.2, 0),
            (1.41, 0),
            (1.42, 1),
            (2.0, 1),
            (2.5, 2),
            (3.0, 3),
            (4.0, 3),
        ] {
            assert_eq!(map_to_index(value, 1), index, "{value} at scale 1");
        }
        // Scale 3: base 2^(1/8); 2^10 closes bucket 10*8 - 1.
        assert_eq!(map_to_index(1024.0, 3), 79);
        assert_eq!(map_to_index(1025.0, 3), 80);
        // 10 = 2^3.3219..., times 8 = 26.575..., so bucket 26.
        assert_eq!(map_to_index(10.0, 3), 26);
        // Scale 20: 2 closes bucket 2^20 - 1; 0.5 closes bucket -2^20 - 1.
        assert_eq!(map_to_index(2.0, 20), (1 << 20) - 1);
        assert_eq!(map_to_index(0.5, 20), -(1 << 20) - 1);
        assert_eq!(map_to_index(f64::MAX, 20), (1 << 30) - 1);
    }

    #[test]
    fn subnormal_values_use_their_true_exponent() {
        let smallest = f64::from_bits(1); // 2^-1074
        assert_eq!(map_to_index(smallest, 0), -1075);
        assert_eq!(map_to_index(smallest * 3.0, 0), -1073);
        assert_eq!(map_to_index(f64::MIN_POSITIVE, 0), -1023);
        assert_eq!(map_to_index(smallest, 20), -1074 * (1 << 20) - 1);
    }

    #[test]
    fn every_value_lies_inside_its_bucket() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Values from about 1e-6 to 1e9, like latencies in ms or ns.
            let value = 2f64.powf((seed % 50_000) as f64 / 1000.0 - 20.0) * 1.000_123;
            for scale in [-3, 0, 1, 4, 8] {
                let index = map_to_index(value, scale);
                // The bounds are 2^(i / 2^scale), with an exact exponent.
                let bound = |i: i32| 2f64.powf(f64::from(i) * 2f64.powi(-scale));
                let (lower, upper) = (bound(index), bound(index + 1));
                let slack = upper * 1e-12;
                assert!(
                    value > lower - slack && value <= upper + slack,
                    "{value} at scale {scale}: bucket {index} is ({lower}, {upper}]"
                );
            }
        }
    }

    #[test]
    fn downscales_to_keep_within_the_bucket_limit() {
        let mut histogram = ExpHistogram::new(4);
        for value in [1.0, 2.0, 4.0, 8.0, 16.0] {
            histogram.record(value);
        }
        // At scale 0 these are buckets -1, 0, 1, 2, 3: five, one too many.
        // At scale -1: 1 -> -1, 2 and 4 -> 0, 8 and 16 -> 1.
        assert_eq!(histogram.scale(), -1);
        assert_eq!(histogram.positive_buckets(), (-1, &[1, 2, 2][..]));
        assert_eq!(histogram.count(), 5);
        assert_eq!(histogram.sum(), 31.0);
    }

    #[test]
    fn the_default_limit_holds_latencies_from_a_microsecond_to_a_minute() {
        let mut histogram = ExpHistogram::default();
        let mut value = 0.001;
        while value < 60_000.0 {
            histogram.record(value);
            value *= 1.01;
        }
        let (_, counts) = histogram.positive_buckets();
        assert!(counts.len() <= DEFAULT_MAX_BUCKETS);
        // log2(60_000 / 0.001) = 25.8 octaves: 8 buckets each (scale 3) would
        // be about 207, 4 each (scale 2) about 104.
        assert_eq!(histogram.scale(), 2);
        assert_eq!(counts.iter().sum::<u64>(), histogram.count());
    }

    #[test]
    fn zeros_negatives_and_non_finite_values() {
        let mut histogram = ExpHistogram::default();
        assert!(histogram.record(0.0));
        assert!(histogram.record(-0.0));
        assert!(histogram.record(3.0));
        assert!(!histogram.record(f64::NAN));
        assert!(!histogram.record(f64::INFINITY));
        let point = histogram.to_proto(Vec::new(), 1, 2);
        assert_eq!((point.count, point.zero_count), (3, 2));
        assert_eq!(point.sum, Some(3.0));
        assert_eq!((point.min, point.max), (Some(0.0), Some(3.0)));

        histogram.record(-3.0);
        let point = histogram.to_proto(Vec::new(), 1, 2);
        assert_eq!(point.sum, None, "no sum once negatives are recorded");
        let negative = point.negative.unwrap();
        assert_eq!(negative.bucket_counts, vec![1]);
        assert_eq!(negative.offset, map_to_index(3.0, point.scale));
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let values: Vec<f64> = (1..=500).map(|i| f64::from(i) * 0.37).collect();
        let (first, second) = values.split_at(120);
        let mut all = ExpHistogram::default();
        let mut a = ExpHistogram::default();
        let mut b = ExpHistogram::new(160);
        for &v in &values {
            all.record(v);
        }
        for &v in first {
            a.record(v);
        }
        // A narrow range, so b stays at a finer scale than a.
        for &v in second.iter().filter(|v| **v < 60.0) {
            b.record(v);
        }
        let mut c = ExpHistogram::default();
        for &v in second.iter().filter(|v| **v >= 60.0) {
            c.record(v);
        }
        a.merge(&b);
        a.merge(&c);
        assert_eq!(a.scale(), all.scale());
        assert_eq!(a.positive_buckets(), all.positive_buckets());
        assert_eq!(a.count(), all.count());
        assert!((a.sum() - all.sum()).abs() < 1e-6);
    }

    #[test]
    fn data_point_counts_add_up() {
        let mut histogram = ExpHistogram::default();
        for value in [0.0, 0.5, 1.0, 1.0, 7.25, 1e6] {
            histogram.record(value);
        }
        let point = histogram.to_proto(Vec::new(), 10, 20);
        let positive = point.positive.unwrap();
        assert_eq!(
            positive.bucket_counts.iter().sum::<u64>() + point.zero_count,
            point.count
        );
        assert_eq!((point.start_time_unix_nano, point.time_unix_nano), (10, 20));
        assert!(positive.bucket_counts.len() <= DEFAULT_MAX_BUCKETS);
        assert_eq!(positive.offset, map_to_index(0.5, point.scale));
    }
}
