//! The USL fit against published reference fits (tests/data/usl/README.md).

use models::usl::{Point, fit};

fn read(name: &str) -> Vec<Point> {
    // Read at run time: a test binary reused from a build in another checkout
    // (a shared CARGO_TARGET_DIR) would carry that checkout's path.
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let path = format!("{root}/tests/data/usl/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (n, x) = line.split_once(',').expect("two columns");
            Point {
                concurrency: n.trim().parse().unwrap(),
                throughput: x.trim().parse().unwrap(),
            }
        })
        .collect()
}

fn assert_relative(name: &str, got: f64, expected: f64, tolerance: f64) {
    let error = (got - expected).abs() / expected.abs();
    assert!(
        error <= tolerance,
        "{name}: got {got}, expected {expected} (relative error {error:.2e} > {tolerance:.0e})"
    );
}

/// A fixed scrambled order, so the fit cannot depend on the rows' order.
fn shuffled(points: Vec<Point>) -> Vec<Point> {
    let mut keyed: Vec<(u64, Point)> = (0u64..)
        .zip(points)
        .map(|(i, p)| (i.wrapping_mul(2_654_435_761) % 1_000_003, p))
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    keyed.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn cisco_matches_the_published_fit_to_one_thousandth_of_a_percent() {
    let data = read("cisco.csv");
    assert_eq!(data.len(), 32);
    for points in [data.clone(), shuffled(data)] {
        let fit = fit(&points).unwrap();
        let p = fit.params;
        // usl-rs checks 0.001 %, the tightest published tolerance.
        assert_relative("sigma", p.sigma, 0.02671591, 1e-5);
        assert_relative("kappa", p.kappa, 7.690945e-4, 1e-5);
        assert_relative("lambda", p.lambda, 995.6486, 1e-5);
        let n_star = p.peak_concurrency().unwrap();
        assert_relative("N*", n_star, 35.57, 1e-3);
        assert_eq!(n_star.floor(), 35.0);
        assert_relative("X(35)", p.throughput(35.0), 12341.7457, 1e-5);
        assert_relative("X(20)", p.throughput(20.0), 11063.633, 1e-5);
        assert_relative("R(1)", p.latency(1.0), 0.00100437, 1e-5);
        assert!(fit.r_squared > 0.99, "R² {}", fit.r_squared);
        for (name, estimate) in fit.estimates() {
            let se = estimate.standard_error.unwrap();
            let (low, high) = estimate.interval.unwrap();
            assert!(
                se > 0.0 && low < estimate.value && estimate.value < high,
                "{name}"
            );
        }
    }
}

#[test]
fn synthetic_matches_to_three_significant_digits_in_any_order() {
    let data = read("synthetic.csv");
    let mut reversed = data.clone();
    reversed.reverse();
    for points in [data.clone(), reversed, shuffled(data)] {
        let p = fit(&points).unwrap().params;
        assert_relative("sigma", p.sigma, 0.0200, 5e-3);
        assert_relative("kappa", p.kappa, 0.0200, 5e-3);
        assert_relative("lambda", p.lambda, 1.00, 5e-3);
    }
}
