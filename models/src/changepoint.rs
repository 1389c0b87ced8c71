//! Change points in a series: E-divisive means (Matteson and James, 2014) with a permutation test.
//!
//! The series is split where the energy distance between the part before and
//! the part after is largest; the split is kept only if a permutation test
//! says a split that large is unlikely without a change. Then each part is
//! searched again, until the best remaining split is not significant. The
//! method assumes no distribution and finds changes in level and in spread.
//!
//! One simplification of the paper's search: a split of a segment compares
//! everything before it with everything after it up to the segment's end
//! (the paper also scans the right end κ). This is the form used for
//! performance series by Daly et al., "Change Point Detection in Software
//! Performance Testing" (ICPE 2020).

use serde::Serialize;

use crate::rng::Rng;

/// How change points are searched for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// A split is kept when its permutation p-value is at most this.
    pub alpha: f64,
    /// Permutations per test; the smallest p-value is 1 / (permutations + 1).
    pub permutations: usize,
    /// Fewest points on each side of a split.
    pub min_size: usize,
    /// Exponent of the distance |x − y|^exponent, in (0, 2); 1 is the paper's default.
    pub exponent: f64,
    /// Seed of the permutations: the same seed gives the same answer.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.05,
            permutations: 199,
            min_size: 2,
            exponent: 1.0,
            seed: 0x00C4_A06E,
        }
    }
}

/// A point where the series changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChangePoint {
    /// Index of the first value after the change.
    pub index: usize,
    /// The scaled energy statistic of the split, Q̂ in the paper.
    pub statistic: f64,
    /// The permutation p-value of the split.
    pub p_value: f64,
}

/// The best split of `values`: (index, Q̂), or `None` if it is too short.
///
/// Q̂(τ) = m·n/(m + n) · (2/(m·n) Σ d(x, y) − Σ d(x, x')/C(m, 2) − Σ d(y, y')/C(n, 2))
/// for the m values before τ and the n from τ on; the sums are updated as τ
/// moves, so one segment costs O(L²).
fn best_split(values: &[f64], min_size: usize, exponent: f64) -> Option<(usize, f64)> {
    let len = values.len();
    if min_size == 0 || len < 2 * min_size {
        return None;
    }
    let distance = |i: usize, j: usize| (values[i] - values[j]).abs().powf(exponent);
    let total: f64 = (0..len)
        .flat_map(|i| (i + 1..len).map(move |j| (i, j)))
        .map(|(i, j)| distance(i, j))
        .sum();
    let (mut within_x, mut within_y, mut between) = (0.0, total, 0.0);
    let mut best: Option<(usize, f64)> = None;
    for p in 0..len - min_size {
        // Move value p from the right part to the left one.
        let to_left: f64 = (0..p).map(|i| distance(i, p)).sum();
        let to_right: f64 = (p + 1..len).map(|j| distance(p, j)).sum();
        within_x += to_left;
        within_y -= to_right;
        between += to_right - to_left;
        let tau = p + 1;
        if tau < min_size {
            continue;
        }
        let (m, n) = (tau as f64, (len - tau) as f64);
        let pairs = |k: f64| k * (k - 1.0) / 2.0;
        let mean_within = |sum: f64, k: f64| if k < 2.0 { 0.0 } else { sum / pairs(k) };
        let energy = 2.0 * between / (m * n) - mean_within(within_x, m) - mean_within(within_y, n);
        let q = m * n / (m + n) * energy;
        if best.is_none_or(|(_, b)| q > b) {
            best = Some((tau, q));
        }
    }
    best
}

/// The best split over all segments: (segment start, split index, Q̂).
fn best_over(values: &[f64], bounds: &[usize], settings: &Settings) -> Option<(usize, f64)> {
    bounds
        .windows(2)
        .filter_map(|w| {
            best_split(&values[w[0]..w[1]], settings.min_size, settings.exponent)
                .map(|(tau, q)| (w[0] + tau, q))
        })
        .max_by(|x, y| x.1.total_cmp(&y.1))
}

/// The change points of `series`, in index order.
///
/// Each round takes the best split over the current segments and tests it:
/// the values are shuffled within each segment (so earlier changes are
/// respected), the best split is searched again, and the p-value is
/// (1 + shuffles at least as large) / (1 + permutations).
pub fn e_divisive(series: &[f64], settings: &Settings) -> Vec<ChangePoint> {
    let mut rng = Rng::new(settings.seed);
    let mut bounds = vec![0, series.len()];
    let mut found = Vec::new();
    while let Some((index, statistic)) = best_over(series, &bounds, settings) {
        let mut shuffled = series.to_vec();
        let mut as_large = 0;
        for _ in 0..settings.permutations {
            for w in bounds.windows(2) {
                rng.shuffle(&mut shuffled[w[0]..w[1]]);
            }
            if best_over(&shuffled, &bounds, settings).is_some_and(|(_, q)| q >= statistic) {
                as_large += 1;
            }
        }
        let p_value = (1 + as_large) as f64 / (1 + settings.permutations) as f64;
        if p_value > settings.alpha {
            break;
        }
        found.push(ChangePoint {
            index,
            statistic,
            p_value,
        });
        let at = bounds.partition_point(|&b| b < index);
        bounds.insert(at, index);
    }
    found.sort_by_key(|c| c.index);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(rng: &mut Rng, levels: &[(usize, f64)], noise: f64) -> Vec<f64> {
        levels
            .iter()
            .flat_map(|&(n, level)| (0..n).map(move |_| level).collect::<Vec<_>>())
            .map(|level| level + noise * rng.normal())
            .collect()
    }

    /// Q̂ straight from its definition.
    fn statistic(values: &[f64], tau: usize) -> f64 {
        let (x, y) = values.split_at(tau);
        let mean = |pairs: Vec<f64>| {
            if pairs.is_empty() {
                0.0
            } else {
                pairs.iter().sum::<f64>() / pairs.len() as f64
            }
        };
        let between = mean(
            x.iter()
                .flat_map(|a| y.iter().map(move |b| (a - b).abs()))
                .collect(),
        );
        let within = |s: &[f64]| {
            mean(
                (0..s.len())
                    .flat_map(|i| (i + 1..s.len()).map(move |j| (s[i] - s[j]).abs()))
                    .collect(),
            )
        };
        let (m, n) = (x.len() as f64, y.len() as f64);
        m * n / (m + n) * (2.0 * between - within(x) - within(y))
    }

    #[test]
    fn the_incremental_statistic_matches_its_definition() {
        let mut rng = Rng::new(1);
        for len in [4, 5, 9, 20] {
            let values: Vec<f64> = (0..len).map(|_| rng.normal()).collect();
            let (tau, q) = best_split(&values, 2, 1.0).unwrap();
            let brute = (2..=len - 2)
                .map(|t| (t, statistic(&values, t)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assert_eq!(tau, brute.0);
            assert!(
                (q - brute.1).abs() < 1e-9 * brute.1.abs().max(1.0),
                "{q} vs {}",
                brute.1
            );
        }
    }

    #[test]
    fn finds_one_step_where_it_is() {
        let mut rng = Rng::new(2);
        let series = noisy(&mut rng, &[(10, 100.0), (8, 130.0)], 3.0);
        let found = e_divisive(&series, &Settings::default());
        assert_eq!(found.iter().map(|c| c.index).collect::<Vec<_>>(), [10]);
        assert!(found[0].p_value <= 0.01, "{found:?}");
    }

    #[test]
    fn finds_two_steps_and_nothing_else() {
        let mut rng = Rng::new(3);
        let series = noisy(&mut rng, &[(12, 50.0), (12, 80.0), (12, 55.0)], 2.0);
        let found = e_divisive(&series, &Settings::default());
        assert_eq!(found.iter().map(|c| c.index).collect::<Vec<_>>(), [12, 24]);
    }

    #[test]
    fn flat_noise_rarely_has_change_points() {
        let mut rng = Rng::new(4);
        let settings = Settings {
            permutations: 99,
            ..Settings::default()
        };
        let series_count = 40;
        let with_changes = (0..series_count)
            .filter(|i| {
                let series = noisy(&mut rng, &[(20, 100.0)], 5.0);
                let settings = Settings {
                    seed: *i,
                    ..settings
                };
                !e_divisive(&series, &settings).is_empty()
            })
            .count();
        // Each first test is at the 5% level.
        assert!(
            with_changes <= 6,
            "{with_changes} of {series_count} flat series"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_answer_and_short_series_give_none() {
        let mut rng = Rng::new(5);
        let series = noisy(&mut rng, &[(6, 10.0), (6, 11.0)], 0.8);
        let settings = Settings::default();
        assert_eq!(
            e_divisive(&series, &settings),
            e_divisive(&series, &settings)
        );
        assert!(e_divisive(&[1.0, 2.0, 3.0], &settings).is_empty());
    }
}
