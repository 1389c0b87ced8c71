//! numpy's default quantile (`method="linear"`, Hyndman & Fan type 7), bit for bit.

/// Where the `q` quantile of `n` sorted values lies: the lower and upper
/// 0-based order statistics and the interpolation weight between them.
///
/// The rank is computed with numpy's own floating-point steps
/// (`n·q + (α + q·(1 − α − β)) − 1` with α = β = 1, then floor and clip), so a
/// quantile built on it is bit-for-bit numpy's, not merely close. `n > 0`.
pub fn rank(n: usize, q: f64) -> (usize, usize, f64) {
    // With α = β = 1, numpy's α + q·(1 − α − β) is 1 + (−q), which IEEE
    // arithmetic rounds exactly as 1 − q.
    let virtual_index = n as f64 * q + (1.0 - q) - 1.0;
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let lo = (below.max(0.0) as usize).min(n - 1);
    let hi = (below + 1.0).clamp(0.0, (n - 1) as f64) as usize;
    (lo, hi, gamma)
}

/// numpy's `_lerp`: a + (b − a)·t, computed from the upper end when t ≥ 0.5 so
/// the result is exact at both ends and monotonic.
pub fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// The `q` quantile of already sorted values; `None` for none.
pub fn of_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let (lo, hi, gamma) = rank(sorted.len(), q);
    Some(lerp(sorted[lo], sorted[hi], gamma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_on_small_cases() {
        // numpy.quantile([1, 2, 3, 4], q) for these q.
        let data = [1.0, 2.0, 3.0, 4.0];
        for (q, expected) in [(0.0, 1.0), (0.25, 1.75), (0.5, 2.5), (0.9, 3.7), (1.0, 4.0)] {
            let got = of_sorted(&data, q).unwrap();
            assert!((got - expected).abs() < 1e-12, "q={q}: {got}");
        }
        assert_eq!(of_sorted(&[], 0.5), None);
        assert_eq!(of_sorted(&[7.0], 0.99), Some(7.0));
    }
}
