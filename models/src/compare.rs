//! Two latency samples side by side: Mann–Whitney U, the Hodges–Lehmann shift
//! with its distribution-free interval, seeded bootstrap intervals for
//! percentiles, the error-rate difference, and a verdict that needs both
//! significance and a minimum effect.
//!
//! Conventions: side A is the baseline and side B the candidate; every
//! difference is B − A, so a positive shift means B is slower.

use serde::Serialize;

use crate::rng::Rng;

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies in the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// A sample of finite values, sorted once.
#[derive(Debug, Clone)]
pub struct Sample {
    sorted: Vec<f64>,
}

impl Sample {
    /// Sorts the values; NaN and infinities are dropped (they carry no latency).
    pub fn new(mut values: Vec<f64>) -> Sample {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        Sample { sorted: values }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The values in ascending order.
    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    /// The `q` quantile with numpy's default (linear) rule, as loadlens's SQL
    /// `percentile` computes it; `None` for an empty sample.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile_sorted(&self.sorted, q)
    }

    pub fn mean(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.sorted.iter().sum::<f64>() / self.len() as f64)
    }
}

/// numpy's linear quantile of sorted values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    crate::quantile::of_sorted(sorted, q)
}

// ---------------------------------------------------------------- normal law

/// The complementary error function, from the Chebyshev fit in Press et al.,
/// *Numerical Recipes* (2nd ed., §6.2): relative error below 1.2e-7 for all x,
/// which keeps small p-values accurate to seven digits.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The z with P(Z ≤ z) = p, by bisection on [`normal_sf`] (p in (0, 1)).
pub fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if 1.0 - normal_sf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

// ------------------------------------------------------------ Mann–Whitney U

/// Samples at most this large on both sides, without ties, get the exact null
/// distribution of U instead of the normal approximation.
pub const EXACT_MAX: usize = 25;

/// The Mann–Whitney U test of A against B.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of B: pairs (a, b) with b > a, ties counting one half. Its null mean
    /// is n_A·n_B/2; larger means B tends to be slower.
    pub u: f64,
    /// The tie-corrected, continuity-corrected normal score of `u` (0 when the
    /// samples are all equal).
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether `p_value` comes from the exact distribution (small samples
    /// without ties) rather than the normal approximation.
    pub exact: bool,
}

/// Rank statistics of two sorted samples.
struct Ranks {
    u_b: f64,
    /// Σ (t³ − t) over groups of tied values.
    ties: f64,
}

fn ranks(a: &[f64], b: &[f64]) -> Ranks {
    let (mut i, mut j) = (0, 0);
    let mut rank_sum_b = 0.0;
    let mut ties = 0.0;
    let mut next_rank = 1.0f64;
    while i < a.len() || j < b.len() {
        let value = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!(),
        };
        let (start_i, start_j) = (i, j);
        while i < a.len() && a[i] == value {
            i += 1;
        }
        while j < b.len() && b[j] == value {
            j += 1;
        }
        let t = ((i - start_i) + (j - start_j)) as f64;
        let mid_rank = next_rank + (t - 1.0) / 2.0;
        rank_sum_b += mid_rank * (j - start_j) as f64;
        ties += t * t * t - t;
        next_rank += t;
    }
    let nb = b.len() as f64;
    Ranks {
        u_b: rank_sum_b - nb * (nb + 1.0) / 2.0,
        ties,
    }
}

/// The standard deviation of U under the null, corrected for ties.
fn u_sd(na: usize, nb: usize, ties: f64) -> f64 {
    let (na, nb) = (na as f64, nb as f64);
    let n = na + nb;
    let variance = na * nb / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    variance.max(0.0).sqrt()
}

/// Mann–Whitney U on two samples; `None` when either is empty.
pub fn mann_whitney(a: &Sample, b: &Sample) -> Option<MannWhitney> {
    let (na, nb) = (a.len(), b.len());
    if na == 0 || nb == 0 {
        return None;
    }
    let Ranks { u_b, ties } = ranks(a.sorted(), b.sorted());
    let mean = na as f64 * nb as f64 / 2.0;
    let sd = u_sd(na, nb, ties);
    let z = if sd == 0.0 {
        0.0
    } else {
        let distance = ((u_b - mean).abs() - 0.5).max(0.0);
        (u_b - mean).signum() * distance / sd
    };
    if ties == 0.0 && na <= EXACT_MAX && nb <= EXACT_MAX {
        let counts = exact_u_counts(na, nb);
        let total: f64 = counts.iter().sum();
        // Without ties U is an integer.
        let u = u_b.round() as usize;
        let below: f64 = counts[..=u].iter().sum::<f64>() / total;
        let above: f64 = counts[u..].iter().sum::<f64>() / total;
        return Some(MannWhitney {
            u: u_b,
            z,
            p_value: (2.0 * below.min(above)).min(1.0),
            exact: true,
        });
    }
    let p_value = if sd == 0.0 {
        1.0
    } else {
        (2.0 * normal_sf(z.abs())).min(1.0)
    };
    Some(MannWhitney {
        u: u_b,
        z,
        p_value,
        exact: false,
    })
}

/// Null distribution of U for sample sizes (m, n) without ties: entry u is
/// the number of orderings with U = u. Built with the recurrence
/// c(m, n, u) = c(m, n − 1, u − m) + c(m − 1, n, u) (the largest value is
/// either a B, beating all m A's, or an A).
fn exact_u_counts(m: usize, n: usize) -> Vec<f64> {
    // table[i][j] = counts for sizes (i, j); f64 holds C(50, 25) exactly.
    let mut table: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); n + 1]; m + 1];
    for i in 0..=m {
        for j in 0..=n {
            if i == 0 || j == 0 {
                table[i][j] = vec![1.0];
                continue;
            }
            let mut counts = vec![0.0; i * j + 1];
            for (u, c) in table[i][j - 1].iter().enumerate() {
                counts[u + i] += c;
            }
            for (u, c) in table[i - 1][j].iter().enumerate() {
                counts[u] += c;
            }
            table[i][j] = counts;
        }
    }
    std::mem::take(&mut table[m][n])
}

// ------------------------------------------------------ Hodges–Lehmann shift

/// The Hodges–Lehmann shift of B against A with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Shift {
    /// The median of all n_A·n_B differences b − a.
    pub estimate: f64,
    /// The distribution-free (Moses) interval at the requested level; `None`
    /// when the samples are too small for that level.
    pub interval: Option<Interval>,
}

/// Maps a finite f64 to a u64 with the same order, so bisection over the keys
/// visits every representable value between two bounds.
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn from_order_key(key: u64) -> f64 {
    if key >> 63 == 1 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

/// Number of pairs with b − a ≤ d, in O(n_A + n_B): as a grows the differences
/// shrink, so the count of b's that qualify only grows.
fn count_at_most(a: &[f64], b: &[f64], d: f64) -> u64 {
    let mut p = 0;
    let mut count = 0u64;
    for &x in a {
        while p < b.len() && b[p] - x <= d {
            p += 1;
        }
        count += p as u64;
    }
    count
}

/// The k-th smallest (1-based) of the n_A·n_B differences b − a, exactly,
/// without forming them: bisection over the ordered f64 keys between the
/// smallest and largest difference, at most 64 counting passes. The result is
/// the smallest value d with at least k differences ≤ d, which is itself one
/// of the computed differences. Memory O(1), time O((n_A + n_B) · 64).
pub fn kth_difference(a: &[f64], b: &[f64], k: u64) -> f64 {
    debug_assert!(k >= 1 && k <= a.len() as u64 * b.len() as u64);
    let mut lo = order_key(b[0] - a[a.len() - 1]);
    let mut hi = order_key(b[b.len() - 1] - a[0]);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_at_most(a, b, from_order_key(mid)) >= k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    from_order_key(lo)
}

/// The Hodges–Lehmann estimate and Moses's interval at `level` (e.g. 0.95).
///
/// The estimate is the exact median of all pairwise differences, found by
/// selection (see [`kth_difference`]), never by subsampling. The interval is
/// [D₍C₎, D₍N+1−C₎] over the ordered differences, with
/// C = ⌊n_A·n_B/2 − z₁₋α/₂·σ_U⌋ and σ_U the tie-corrected null deviation of U
/// (Hollander and Wolfe, *Nonparametric Statistical Methods*, §4.3, large-sample
/// form; the floor keeps the coverage at or above the level).
pub fn hodges_lehmann(a: &Sample, b: &Sample, level: f64) -> Option<Shift> {
    let (na, nb) = (a.len(), b.len());
    if na == 0 || nb == 0 {
        return None;
    }
    let (xa, xb) = (a.sorted(), b.sorted());
    let pairs = na as u64 * nb as u64;
    let estimate = if pairs % 2 == 1 {
        kth_difference(xa, xb, pairs.div_ceil(2))
    } else {
        let lower = kth_difference(xa, xb, pairs / 2);
        let upper = kth_difference(xa, xb, pairs / 2 + 1);
        0.5 * (lower + upper)
    };
    let Ranks { ties, .. } = ranks(xa, xb);
    let z = normal_quantile(1.0 - (1.0 - level) / 2.0);
    let c = (pairs as f64 / 2.0 - z * u_sd(na, nb, ties)).floor();
    let interval = (c >= 1.0).then(|| {
        let c = c as u64;
        Interval {
            low: kth_difference(xa, xb, c),
            high: kth_difference(xa, xb, pairs + 1 - c),
        }
    });
    Some(Shift { estimate, interval })
}

// ---------------------------------------------------------------- bootstrap

/// Settings of the percentile bootstrap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    /// Resamples drawn.
    pub resamples: usize,
    /// Seed: the same seed gives the same interval.
    pub seed: u64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 2000,
            seed: 0x10AD_1E25,
            level: 0.95,
        }
    }
}

/// The `q` quantile of one bootstrap resample of `sorted`, in O(1).
///
/// A resample is n indices drawn uniformly from 0..n; as `sorted` is sorted,
/// the resample's r-th order statistic is `sorted[i₍r₎]` with i₍r₎ the r-th
/// smallest index drawn. That index is ⌊n·U₍r₎⌋ for the r-th order statistic
/// U₍r₎ of n uniforms, which is Beta(r + 1, n − r) (0-based r); the next one
/// is U₍r₎ plus the minimum of n − r − 1 uniforms on (U₍r₎, 1). This draws
/// the two order statistics the linear quantile needs with exactly the
/// distribution full resampling gives, without drawing n values.
fn resampled_quantile(rng: &mut Rng, sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let (r, _, frac) = crate::quantile::rank(n, q);
    let index = |u: f64| ((n as f64 * u) as usize).min(n - 1);
    let u = rng.beta((r + 1) as f64, (n - r) as f64);
    let low = sorted[index(u)];
    if frac == 0.0 || r + 1 >= n {
        return low;
    }
    let rest = (n - r - 1) as f64;
    let spacing = 1.0 - rng.uniform_open().powf(1.0 / rest);
    let high = sorted[index(u + (1.0 - u) * spacing)];
    crate::quantile::lerp(low, high, frac)
}

/// The percentile-bootstrap interval of a statistic's replicates.
fn percentile_interval(mut replicates: Vec<f64>, level: f64) -> Interval {
    replicates.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Interval {
        low: quantile_sorted(&replicates, tail).unwrap_or(f64::NAN),
        high: quantile_sorted(&replicates, 1.0 - tail).unwrap_or(f64::NAN),
    }
}

/// Percentile-bootstrap interval of the `q` quantile of `sample`; `None` if empty.
pub fn quantile_interval(sample: &Sample, q: f64, settings: &Bootstrap) -> Option<Interval> {
    if sample.is_empty() {
        return None;
    }
    let mut rng = Rng::new(settings.seed);
    let replicates = (0..settings.resamples)
        .map(|_| resampled_quantile(&mut rng, sample.sorted(), q))
        .collect();
    Some(percentile_interval(replicates, settings.level))
}

/// Percentile-bootstrap interval of q(B) − q(A), each side resampled on its own.
pub fn quantile_difference_interval(
    a: &Sample,
    b: &Sample,
    q: f64,
    settings: &Bootstrap,
) -> Option<Interval> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = Rng::new(settings.seed ^ 0xD1FF);
    let replicates = (0..settings.resamples)
        .map(|_| {
            let qa = resampled_quantile(&mut rng, a.sorted(), q);
            resampled_quantile(&mut rng, b.sorted(), q) - qa
        })
        .collect();
    Some(percentile_interval(replicates, settings.level))
}

// -------------------------------------------------------------- error rates

/// Wilson's score interval for `successes` out of `trials` (trials > 0).
pub fn wilson(successes: u64, trials: u64, level: f64) -> Interval {
    let n = trials as f64;
    let p = successes as f64 / n;
    let z = normal_quantile(1.0 - (1.0 - level) / 2.0);
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

/// The error rate of B minus that of A.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateDifference {
    pub difference: f64,
    /// Newcombe's hybrid score interval (method 10 of Newcombe, *Statistics
    /// in Medicine* 17, 1998), built from the two Wilson intervals: unlike the
    /// Wald interval it stays inside [−1, 1] and keeps its coverage when a
    /// rate is 0 or close to it, as error rates usually are.
    pub interval: Interval,
}

/// The error-rate difference B − A; `None` when a side has no requests.
pub fn rate_difference(
    errors_a: u64,
    requests_a: u64,
    errors_b: u64,
    requests_b: u64,
    level: f64,
) -> Option<RateDifference> {
    if requests_a == 0 || requests_b == 0 {
        return None;
    }
    let pa = errors_a as f64 / requests_a as f64;
    let pb = errors_b as f64 / requests_b as f64;
    let wa = wilson(errors_a, requests_a, level);
    let wb = wilson(errors_b, requests_b, level);
    let d = pb - pa;
    Some(RateDifference {
        difference: d,
        interval: Interval {
            low: d - ((pb - wb.low).powi(2) + (wa.high - pa).powi(2)).sqrt(),
            high: d + ((wb.high - pb).powi(2) + (pa - wa.low).powi(2)).sqrt(),
        },
    })
}

// ------------------------------------------------------------------ verdict

/// The smallest latency change worth reporting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum MinEffect {
    /// A fraction of A's median (0.05 = 5%).
    Relative(f64),
    /// Milliseconds (in the unit of the samples).
    Absolute(f64),
}

impl MinEffect {
    /// The threshold in the samples' unit, given A's median.
    pub fn threshold(&self, median_a: f64) -> f64 {
        match *self {
            MinEffect::Relative(fraction) => fraction * median_a.abs(),
            MinEffect::Absolute(value) => value,
        }
    }
}

impl std::str::FromStr for MinEffect {
    type Err = String;

    /// `5%` (relative to A's median) or `2ms` / `2` (absolute milliseconds).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!("invalid minimum effect '{text}': give a percentage (5%) or milliseconds (2ms)")
        };
        let number = |s: &str| -> Result<f64, String> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(bad)
        };
        if let Some(percent) = text.strip_suffix('%') {
            Ok(MinEffect::Relative(number(percent)? / 100.0))
        } else {
            Ok(MinEffect::Absolute(number(
                text.strip_suffix("ms").unwrap_or(text),
            )?))
        }
    }
}

/// What a comparison concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// B is worse, significantly and by at least the minimum effect.
    Regression,
    /// B is better, significantly and by at least the minimum effect.
    Improvement,
    /// No difference that is both significant and large enough.
    NoSignificantChange,
    /// Too few samples on a side to say.
    InsufficientData,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::NoSignificantChange => "no significant change",
            Verdict::InsufficientData => "insufficient data",
        }
    }
}

/// How a comparison decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Significance level; intervals are at 1 − alpha.
    pub alpha: f64,
    /// The smallest latency shift that counts.
    pub min_effect: MinEffect,
    /// The smallest error-rate increase that counts (0.01 = one percentage point).
    pub min_error_effect: f64,
    /// Fewest successful requests per side for a latency verdict (and requests
    /// per side for an error-rate verdict).
    pub min_samples: usize,
    /// Bootstrap resamples and seed (its level is 1 − alpha).
    pub resamples: usize,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let bootstrap = Bootstrap::default();
        Settings {
            alpha: 0.05,
            min_effect: MinEffect::Relative(0.05),
            min_error_effect: 0.01,
            min_samples: 20,
            resamples: bootstrap.resamples,
            seed: bootstrap.seed,
        }
    }
}

/// One side's requests: latencies of the successful ones, and counts.
#[derive(Debug, Clone)]
pub struct Side {
    /// Latencies of successful requests.
    pub latencies: Sample,
    /// All requests, failed ones included.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
}

/// A percentile with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub interval: Option<Interval>,
}

/// One side, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideSummary {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    /// Successful requests, whose latencies are compared.
    pub samples: usize,
    pub p50: Option<Estimate>,
    pub p95: Option<Estimate>,
    pub p99: Option<Estimate>,
}

/// Everything a comparison of A and B finds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: SideSummary,
    pub b: SideSummary,
    pub mann_whitney: Option<MannWhitney>,
    /// Hodges–Lehmann shift B − A.
    pub shift: Option<Shift>,
    /// The shift as a fraction of A's median.
    pub relative_shift: Option<f64>,
    /// The shift that counts, in the samples' unit.
    pub min_effect: f64,
    /// Bootstrap intervals of p95(B) − p95(A) and p99(B) − p99(A).
    pub p95_difference: Option<Interval>,
    pub p99_difference: Option<Interval>,
    /// p95(B) / p95(A).
    pub p95_ratio: Option<f64>,
    pub error_rate: Option<RateDifference>,
    pub latency_verdict: Verdict,
    pub error_verdict: Verdict,
    /// The overall verdict: a regression in latency or errors is a regression.
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub reason: String,
}

fn summarise(side: &Side, bootstrap: &Bootstrap) -> SideSummary {
    let estimate = |q: f64| {
        side.latencies.quantile(q).map(|value| Estimate {
            value,
            interval: quantile_interval(&side.latencies, q, bootstrap),
        })
    };
    SideSummary {
        requests: side.requests,
        errors: side.errors,
        error_rate: (side.requests > 0).then(|| side.errors as f64 / side.requests as f64),
        samples: side.latencies.len(),
        p50: estimate(0.5),
        p95: estimate(0.95),
        p99: estimate(0.99),
    }
}

/// Compares baseline A with candidate B.
///
/// Latency: regression iff the Mann–Whitney p-value is below alpha, the
/// Hodges–Lehmann shift is positive (B slower) and at least the minimum
/// effect; improvement likewise with a negative shift. Errors: regression iff
/// the whole interval of the rate difference is above zero and the difference
/// is at least `min_error_effect`. Either regression makes the verdict a
/// regression.
pub fn compare(a: &Side, b: &Side, settings: &Settings) -> Comparison {
    let level = 1.0 - settings.alpha;
    let bootstrap = Bootstrap {
        resamples: settings.resamples,
        seed: settings.seed,
        level,
    };
    let (la, lb) = (&a.latencies, &b.latencies);
    let enough = la.len() >= settings.min_samples && lb.len() >= settings.min_samples;
    let mann_whitney = mann_whitney(la, lb);
    let shift = hodges_lehmann(la, lb, level);
    let median_a = la.quantile(0.5);
    let min_effect = settings.min_effect.threshold(median_a.unwrap_or(0.0));
    let relative_shift = shift
        .zip(median_a)
        .filter(|(_, m)| *m != 0.0)
        .map(|(s, m)| s.estimate / m);

    let (latency_verdict, latency_reason) = match (enough, mann_whitney, shift) {
        (true, Some(test), Some(shift)) => {
            let significant = test.p_value < settings.alpha;
            let large = shift.estimate.abs() >= min_effect && shift.estimate != 0.0;
            let verdict = match (significant, large, shift.estimate > 0.0) {
                (true, true, true) => Verdict::Regression,
                (true, true, false) => Verdict::Improvement,
                _ => Verdict::NoSignificantChange,
            };
            let reason = format!(
                "latency shift {:+.3} ms (p = {:.2e}; counts from {:.3} ms)",
                shift.estimate, test.p_value, min_effect
            );
            (verdict, reason)
        }
        _ => (
            Verdict::InsufficientData,
            format!(
                "latency: {} and {} successful requests, {} needed on each side",
                la.len(),
                lb.len(),
                settings.min_samples
            ),
        ),
    };

    let error_rate = rate_difference(a.errors, a.requests, b.errors, b.requests, level);
    let enough_requests = a.requests.min(b.requests) >= settings.min_samples as u64;
    let (error_verdict, error_reason) = match error_rate.filter(|_| enough_requests) {
        Some(rate) => {
            let verdict = if rate.interval.low > 0.0 && rate.difference >= settings.min_error_effect
            {
                Verdict::Regression
            } else if rate.interval.high < 0.0 && -rate.difference >= settings.min_error_effect {
                Verdict::Improvement
            } else {
                Verdict::NoSignificantChange
            };
            let reason = format!(
                "error rate {:+.2} points ({:+.2} to {:+.2})",
                rate.difference * 100.0,
                rate.interval.low * 100.0,
                rate.interval.high * 100.0
            );
            (verdict, reason)
        }
        None => (
            Verdict::InsufficientData,
            format!(
                "errors: {} and {} requests, {} needed on each side",
                a.requests, b.requests, settings.min_samples
            ),
        ),
    };

    let verdicts = [latency_verdict, error_verdict];
    let verdict = if verdicts.contains(&Verdict::Regression) {
        Verdict::Regression
    } else if verdicts.contains(&Verdict::Improvement) {
        Verdict::Improvement
    } else if latency_verdict == Verdict::InsufficientData {
        Verdict::InsufficientData
    } else {
        Verdict::NoSignificantChange
    };
    let p95 = |s: &Sample| s.quantile(0.95);
    Comparison {
        a: summarise(a, &bootstrap),
        b: summarise(b, &bootstrap),
        mann_whitney,
        shift,
        relative_shift,
        min_effect,
        p95_difference: quantile_difference_interval(la, lb, 0.95, &bootstrap),
        p99_difference: quantile_difference_interval(la, lb, 0.99, &bootstrap),
        p95_ratio: p95(la)
            .zip(p95(lb))
            .filter(|(x, _)| *x != 0.0)
            .map(|(x, y)| y / x),
        error_rate,
        latency_verdict,
        error_verdict,
        verdict,
        reason: format!("{latency_reason}; {error_reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(values: &[f64]) -> Sample {
        Sample::new(values.to_vec())
    }

    fn close(x: f64, y: f64, tolerance: f64) -> bool {
        (x - y).abs() <= tolerance
    }

    fn normal_sample(rng: &mut Rng, n: usize, mean: f64) -> Sample {
        Sample::new((0..n).map(|_| mean + rng.normal()).collect())
    }

    #[test]
    fn the_normal_law_matches_tabulated_values() {
        // Φ(1.959964) = 0.975, Φ(2.575829) = 0.995, P(Z > 5) = 2.866516e-7.
        assert!(close(normal_quantile(0.975), 1.959_964, 1e-5));
        assert!(close(normal_quantile(0.995), 2.575_829, 1e-5));
        assert!(close(normal_quantile(0.5), 0.0, 1e-7));
        assert!((normal_sf(5.0) / 2.866_516e-7 - 1.0).abs() < 1e-6);
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-7));
    }

    #[test]
    fn mann_whitney_matches_the_textbook_examples() {
        // scipy's documented example: U = 17 for the first sample, exact
        // two-sided p = 1/9, asymptotic (continuity-corrected) p = 0.1113469.
        let males = sample(&[19.0, 22.0, 16.0, 29.0, 24.0]);
        let females = sample(&[20.0, 11.0, 17.0, 12.0]);
        let test = mann_whitney(&females, &males).unwrap();
        assert_eq!(test.u, 17.0);
        assert!(test.exact);
        assert!(close(test.p_value, 1.0 / 9.0, 1e-12), "{test:?}");
        // z = (17 − 10 − 0.5) / √(20·10/12)
        assert!(close(test.z, 6.5 / (200.0f64 / 12.0).sqrt(), 1e-12));
        assert!(close(2.0 * normal_sf(test.z), 0.111_346_886, 1e-7));
        // Complete separation of 3 and 3: one ordering in C(6, 3) = 20 each way.
        let test = mann_whitney(&sample(&[1.0, 2.0, 3.0]), &sample(&[4.0, 5.0, 6.0])).unwrap();
        assert_eq!(test.u, 9.0);
        assert!(close(test.p_value, 0.1, 1e-12));
    }

    #[test]
    fn mann_whitney_corrects_for_ties() {
        // a = [1, 2, 2, 3], b = [2, 3, 3, 4]: by hand, midranks 1, 3, 3, 3,
        // 6, 6, 6, 8; R_B = 3 + 6 + 6 + 8 = 23, U_B = 23 − 10 = 13; tie groups
        // of 3 and 3 give Σ(t³ − t) = 48 and var = 16/12·(9 − 48/56) = 10.857.
        let test = mann_whitney(
            &sample(&[1.0, 2.0, 2.0, 3.0]),
            &sample(&[2.0, 3.0, 3.0, 4.0]),
        )
        .unwrap();
        assert_eq!(test.u, 13.0);
        assert!(!test.exact);
        let sd = (16.0f64 / 12.0 * (9.0 - 48.0 / 56.0)).sqrt();
        assert!(close(test.z, 4.5 / sd, 1e-12), "{test:?}");
        assert!(close(test.p_value, 2.0 * normal_sf(4.5 / sd), 1e-12));
        // All equal: no evidence at all.
        let test = mann_whitney(&sample(&[5.0; 30]), &sample(&[5.0; 40])).unwrap();
        assert_eq!((test.z, test.p_value), (0.0, 1.0));
    }

    #[test]
    fn exact_distribution_sums_to_the_number_of_orderings_and_is_symmetric() {
        let counts = exact_u_counts(7, 5);
        assert_eq!(counts.iter().sum::<f64>(), 792.0); // C(12, 5)
        for u in 0..counts.len() {
            assert_eq!(counts[u], counts[counts.len() - 1 - u]);
        }
        assert_eq!(
            exact_u_counts(25, 25).iter().sum::<f64>(),
            126_410_606_437_752.0
        );
    }

    #[test]
    fn exact_and_normal_p_values_agree_near_the_exact_limit() {
        let mut rng = Rng::new(11);
        for _ in 0..20 {
            let a = normal_sample(&mut rng, 25, 0.0);
            let b = normal_sample(&mut rng, 25, 0.5);
            let exact = mann_whitney(&a, &b).unwrap();
            assert!(exact.exact);
            let normal = 2.0 * normal_sf(exact.z.abs());
            assert!(
                close(exact.p_value, normal.min(1.0), 0.01),
                "{exact:?} vs {normal}"
            );
        }
    }

    #[test]
    fn p_values_are_uniform_under_the_null_and_small_under_a_shift() {
        let mut rng = Rng::new(5);
        let runs = 400;
        let rejected = (0..runs)
            .filter(|_| {
                let a = normal_sample(&mut rng, 60, 0.0);
                let b = normal_sample(&mut rng, 80, 0.0);
                mann_whitney(&a, &b).unwrap().p_value < 0.05
            })
            .count();
        assert!(
            (8..=35).contains(&rejected),
            "{rejected} of {runs} rejected at 5%"
        );
        let a = normal_sample(&mut rng, 200, 0.0);
        let b = normal_sample(&mut rng, 200, 0.5);
        let test = mann_whitney(&a, &b).unwrap();
        assert!(test.p_value < 1e-4 && test.u > 20_000.0, "{test:?}");
    }

    #[test]
    fn kth_difference_matches_sorting_every_difference() {
        let mut rng = Rng::new(9);
        for round in 0..200 {
            let na = 1 + rng.below(30);
            let nb = 1 + rng.below(30);
            // Coarse values make ties common in some rounds.
            let grain = if round % 2 == 0 { 1.0 } else { 0.001 };
            let mut draw = |n| {
                Sample::new(
                    (0..n)
                        .map(|_| (rng.normal() * 10.0 / grain).round() * grain)
                        .collect(),
                )
            };
            let (a, b) = (draw(na), draw(nb));
            let mut all: Vec<f64> = a
                .sorted()
                .iter()
                .flat_map(|x| b.sorted().iter().map(move |y| y - x))
                .collect();
            all.sort_by(f64::total_cmp);
            for k in [1, all.len() / 3 + 1, all.len().div_ceil(2), all.len()] {
                assert_eq!(
                    kth_difference(a.sorted(), b.sorted(), k as u64),
                    all[k - 1],
                    "k = {k} of {}",
                    all.len()
                );
            }
        }
    }

    #[test]
    fn hodges_lehmann_is_the_median_of_differences() {
        // Differences of [1, 2, 3] and [4, 6]: 3, 2, 1, 5, 4, 3 → median 3.
        let shift = hodges_lehmann(&sample(&[1.0, 2.0, 3.0]), &sample(&[4.0, 6.0]), 0.95).unwrap();
        assert_eq!(shift.estimate, 3.0);
        // Too few pairs for a 95% interval: C = ⌊3 − 1.96·√(6·6/12)⌋ < 1.
        assert_eq!(shift.interval, None);
        // Even count: [0, 10] and [1, 2]: differences 1, 2, −9, −8 → (−8 + 1)/2.
        let shift = hodges_lehmann(&sample(&[0.0, 10.0]), &sample(&[1.0, 2.0]), 0.95).unwrap();
        assert_eq!(shift.estimate, -3.5);
    }

    #[test]
    fn moses_interval_matches_a_hand_computation() {
        // a = 0..10, b = a + 0.5 (n = 10 each, no ties): σ_U = √(100·21/12)
        // = 13.229, C = ⌊50 − 1.959964·13.229⌋ = ⌊24.07⌋ = 24. The differences
        // are k + 0.5 for k = −9..9, each 10 − |k| times.
        let a = Sample::new((0..10).map(f64::from).collect());
        let b = Sample::new((0..10).map(|x| f64::from(x) + 0.5).collect());
        let shift = hodges_lehmann(&a, &b, 0.95).unwrap();
        assert_eq!(shift.estimate, 0.5);
        let interval = shift.interval.unwrap();
        // Cumulative counts of −8.5, −7.5, …: 1, 3, 6, 10, 15, 21, 28 → the
        // 24th is the 7th value, −2.5; by symmetry the 77th is 3.5.
        assert_eq!((interval.low, interval.high), (-2.5, 3.5));
    }

    #[test]
    fn moses_interval_covers_the_true_shift_at_its_level() {
        let mut rng = Rng::new(21);
        let runs = 300;
        let mut covered = 0;
        for _ in 0..runs {
            let a = normal_sample(&mut rng, 40, 10.0);
            let b = normal_sample(&mut rng, 50, 11.5);
            let shift = hodges_lehmann(&a, &b, 0.95).unwrap();
            let interval = shift.interval.unwrap();
            assert!(interval.contains(shift.estimate));
            covered += usize::from(interval.contains(1.5));
        }
        // 95% nominal; the floor in C makes it a little conservative.
        assert!((279..=297).contains(&covered), "{covered} of {runs}");
    }

    #[test]
    fn bootstrap_is_deterministic_for_a_seed() {
        let mut rng = Rng::new(2);
        let s = normal_sample(&mut rng, 500, 100.0);
        let settings = Bootstrap::default();
        let first = quantile_interval(&s, 0.95, &settings).unwrap();
        assert_eq!(first, quantile_interval(&s, 0.95, &settings).unwrap());
        let other = Bootstrap {
            seed: 99,
            ..settings
        };
        assert_ne!(first, quantile_interval(&s, 0.95, &other).unwrap());
    }

    /// The O(1) resampled quantile has the distribution that drawing n
    /// values with replacement gives.
    #[test]
    fn shortcut_resampling_matches_full_resampling() {
        let mut rng = Rng::new(4);
        let s = Sample::new((0..101).map(|_| rng.normal().exp()).collect());
        for q in [0.5, 0.9, 0.95, 0.99] {
            let draws = 20_000;
            let mut full = Vec::with_capacity(draws);
            let mut short = Vec::with_capacity(draws);
            for _ in 0..draws {
                let resample: Vec<f64> = (0..s.len())
                    .map(|_| s.sorted()[rng.below(s.len())])
                    .collect();
                full.push(Sample::new(resample).quantile(q).unwrap());
                short.push(resampled_quantile(&mut rng, s.sorted(), q));
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (full, short) = (Sample::new(full), Sample::new(short));
            let spread = full.quantile(0.9).unwrap() - full.quantile(0.1).unwrap();
            assert!(
                (mean(full.sorted()) - mean(short.sorted())).abs() < 0.05 * spread,
                "q = {q}: means differ"
            );
            for p in [0.05, 0.25, 0.5, 0.75, 0.95] {
                let (x, y) = (full.quantile(p).unwrap(), short.quantile(p).unwrap());
                assert!((x - y).abs() < 0.1 * spread, "q = {q}, p = {p}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn bootstrap_interval_covers_the_true_median() {
        let mut rng = Rng::new(8);
        let runs = 200;
        let settings = Bootstrap {
            resamples: 500,
            ..Bootstrap::default()
        };
        let covered = (0..runs)
            .filter(|_| {
                // Exponential with mean 1: median ln 2.
                let s = Sample::new((0..300).map(|_| -rng.uniform_open().ln()).collect());
                quantile_interval(&s, 0.5, &settings)
                    .unwrap()
                    .contains(std::f64::consts::LN_2)
            })
            .count();
        assert!((178..=199).contains(&covered), "{covered} of {runs}");
    }

    #[test]
    fn wilson_and_newcombe_match_published_values() {
        // Newcombe (1998), single proportion: 81/263 → 0.2553 to 0.3662.
        let w = wilson(81, 263, 0.95);
        assert!(
            close(w.low, 0.2553, 5e-5) && close(w.high, 0.3662, 5e-5),
            "{w:?}"
        );
        // Newcombe (1998), difference: 56/70 − 48/80 = 0.2000, method 10
        // interval 0.0524 to 0.3339. Here B − A, so A = 48/80 and B = 56/70.
        let d = rate_difference(48, 80, 56, 70, 0.95).unwrap();
        assert!(close(d.difference, 0.2, 1e-12));
        assert!(
            close(d.interval.low, 0.0524, 5e-5) && close(d.interval.high, 0.3339, 5e-5),
            "{d:?}"
        );
        // Zero errors on both sides: an interval around zero, not a point.
        let d = rate_difference(0, 1000, 0, 1000, 0.95).unwrap();
        assert!(d.interval.low < 0.0 && d.interval.high > 0.0);
    }

    #[test]
    fn min_effect_parses_percentages_and_milliseconds() {
        assert_eq!("5%".parse(), Ok(MinEffect::Relative(0.05)));
        assert_eq!("2ms".parse(), Ok(MinEffect::Absolute(2.0)));
        assert_eq!("1.5".parse(), Ok(MinEffect::Absolute(1.5)));
        assert!("-3%".parse::<MinEffect>().is_err());
        assert!("fast".parse::<MinEffect>().is_err());
    }

    fn side(rng: &mut Rng, n: usize, median: f64, error_rate: f64) -> Side {
        let mut latencies = Vec::new();
        let mut errors = 0;
        for _ in 0..n {
            if rng.uniform() < error_rate {
                errors += 1;
            } else {
                latencies.push(median * (0.3 * rng.normal()).exp());
            }
        }
        Side {
            latencies: Sample::new(latencies),
            requests: n as u64,
            errors,
        }
    }

    #[test]
    fn verdicts_need_significance_and_size() {
        let mut rng = Rng::new(13);
        let settings = Settings {
            resamples: 300,
            ..Settings::default()
        };
        let base = side(&mut rng, 2000, 100.0, 0.0);
        // 20% slower: a regression, and the shift is near +20 ms.
        let slower = side(&mut rng, 2000, 120.0, 0.0);
        let c = compare(&base, &slower, &settings);
        assert_eq!(c.verdict, Verdict::Regression, "{}", c.reason);
        assert!(close(c.shift.unwrap().estimate, 20.0, 3.0), "{c:?}");
        assert!(c.p95_difference.unwrap().low > 0.0);
        // The same change seen the other way round is an improvement.
        assert_eq!(
            compare(&slower, &base, &settings).verdict,
            Verdict::Improvement
        );
        // 2% slower on a huge sample: significant, but under the 5% minimum.
        let big = side(&mut rng, 40_000, 100.0, 0.0);
        let slightly = side(&mut rng, 40_000, 102.0, 0.0);
        let c = compare(&big, &slightly, &settings);
        assert!(c.mann_whitney.unwrap().p_value < 0.05);
        assert_eq!(c.verdict, Verdict::NoSignificantChange, "{}", c.reason);
        // ... and a regression when 1% counts.
        let strict = Settings {
            min_effect: MinEffect::Relative(0.01),
            ..settings
        };
        assert_eq!(
            compare(&big, &slightly, &strict).verdict,
            Verdict::Regression
        );
        // Same distribution: no change.
        let same = side(&mut rng, 2000, 100.0, 0.0);
        assert_eq!(
            compare(&base, &same, &settings).verdict,
            Verdict::NoSignificantChange
        );
        // Large but on five requests: not enough to say.
        let few = side(&mut rng, 5, 300.0, 0.0);
        assert_eq!(
            compare(&base, &few, &settings).verdict,
            Verdict::InsufficientData
        );
    }

    #[test]
    fn more_errors_alone_are_a_regression() {
        let mut rng = Rng::new(17);
        let settings = Settings {
            resamples: 200,
            ..Settings::default()
        };
        let base = side(&mut rng, 3000, 100.0, 0.01);
        let failing = side(&mut rng, 3000, 100.0, 0.05);
        let c = compare(&base, &failing, &settings);
        assert_eq!(
            c.latency_verdict,
            Verdict::NoSignificantChange,
            "{}",
            c.reason
        );
        assert_eq!(c.error_verdict, Verdict::Regression, "{}", c.reason);
        assert_eq!(c.verdict, Verdict::Regression);
    }
}
