//! `loadlens usl` and the `usl_fit` SQL aggregate, end to end through the
//! binary: on the fixture's ladder (built to follow known USL coefficients)
//! and on the published reference data.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use common::{loadlens, stderr};

/// The fixture store, written once for this test binary.
fn store() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("usl-fixture");
        let _ = std::fs::remove_dir_all(&dir);
        fixtures::write(&dir, &fixtures::Spec::small()).unwrap();
        dir
    })
}

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/tests/data/usl")
        .join(name)
}

/// Runs loadlens with `args`; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let output = loadlens().args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr(&output),
    )
}

fn json(args: &[&str]) -> Value {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "loadlens {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn number(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}

#[test]
fn the_fixture_ladder_gives_back_the_coefficients_it_was_built_with() {
    let data = store().to_str().unwrap();
    let fit = json(&["usl", fixtures::RUN_ID, "--data", data, "--format", "json"]);
    // The fixture's step throughputs are within 1 % of the curve, so the
    // coefficients come back close to, not exactly at, their true values.
    let sigma = number(&fit, "sigma");
    let kappa = number(&fit, "kappa");
    let lambda = number(&fit, "lambda");
    assert!((sigma - fixtures::USL_SIGMA).abs() < 0.005, "σ {sigma}");
    assert!((kappa - fixtures::USL_KAPPA).abs() < 2e-4, "κ {kappa}");
    assert!(
        (lambda / fixtures::USL_LAMBDA - 1.0).abs() < 0.02,
        "λ {lambda}"
    );
    let n_star = number(&fit, "n_star");
    let true_n_star = ((1.0 - fixtures::USL_SIGMA) / fixtures::USL_KAPPA).sqrt();
    assert!(
        (n_star / true_n_star - 1.0).abs() < 0.1,
        "N* {n_star} vs {true_n_star}"
    );
    assert_eq!(number(&fit, "points"), fixtures::LADDER.len() as f64);
    // Each interval holds its estimate, and the truth.
    for (name, truth) in [
        ("sigma", fixtures::USL_SIGMA),
        ("kappa", fixtures::USL_KAPPA),
        ("lambda", fixtures::USL_LAMBDA),
    ] {
        let interval = &fit["confidence_intervals"][name];
        let (low, high) = (interval[0].as_f64().unwrap(), interval[1].as_f64().unwrap());
        assert!(
            low <= number(&fit, name) && number(&fit, name) <= high,
            "{name}"
        );
        assert!(
            low <= truth && truth <= high,
            "{name}: {truth} outside [{low}, {high}]"
        );
    }

    // The SQL aggregate over the same ladder query agrees with the command.
    let sql = format!(
        "WITH steps AS ({}) SELECT usl_fit(concurrency, throughput) AS fit FROM steps",
        include_str!("../queries/concurrency_throughput.sql")
            .replace(":'run'", &format!("'{}'", fixtures::RUN_ID))
            .trim()
            .trim_end_matches(';')
    );
    let rows = json(&["sql", "--data", data, "--format", "json", &sql]);
    let from_sql = &rows[0]["fit"];
    for key in ["sigma", "kappa", "lambda", "n_star", "r_squared"] {
        let (a, b) = (number(from_sql, key), number(&fit, key));
        assert!(
            (a - b).abs() <= 1e-9 * b.abs(),
            "{key}: SQL {a} vs command {b}"
        );
    }
}

#[test]
fn measured_concurrency_is_fitted_on_request() {
    let data = store().to_str().unwrap();
    let configured = json(&["usl", fixtures::RUN_ID, "--data", data, "--format", "json"]);
    let measured = json(&[
        "usl",
        fixtures::RUN_ID,
        "--data",
        data,
        "--format",
        "json",
        "--concurrency",
        "measured",
    ]);
    let levels = |fit: &Value| -> Vec<f64> {
        fit["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| number(m, "concurrency"))
            .collect()
    };
    assert_eq!(levels(&configured), [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
    // Little's law gives fractional levels, not the configured integers.
    assert!(
        levels(&measured).iter().any(|n| n.fract() != 0.0),
        "{measured}"
    );
}

#[test]
fn csv_input_matches_the_published_cisco_fit_and_answers_questions() {
    let file = reference("cisco.csv");
    let fit = json(&[
        "usl",
        "--csv",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--predict",
        "20,35",
        "--latency-target",
        "2ms",
    ]);
    let close = |key: &str, expected: f64, tolerance: f64| {
        let got = number(&fit, key);
        assert!(
            (got / expected - 1.0).abs() < tolerance,
            "{key}: {got} vs {expected}"
        );
    };
    close("sigma", 0.02671591, 1e-5);
    close("kappa", 7.690945e-4, 1e-5);
    close("lambda", 995.6486, 1e-5);
    // Published to four digits.
    close("n_star", 35.57, 1e-3);
    let predictions = fit["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2);
    assert!((number(&predictions[1], "throughput") / 12341.7457 - 1.0).abs() < 1e-5);
    // Latency (seconds) at the largest concurrency meeting the target is the target.
    let n = number(&fit["latency_target"], "max_concurrency");
    let (sigma, kappa, lambda) = (
        number(&fit, "sigma"),
        number(&fit, "kappa"),
        number(&fit, "lambda"),
    );
    let latency = (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0)) / lambda;
    assert!((latency - 0.002).abs() < 1e-12, "R({n}) = {latency}");

    let (code, text, err) = run(&["usl", "--csv", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("N* peak") && text.contains("35.5"), "{text}");
}

#[test]
fn bad_input_exits_2_with_what_and_where() {
    let data = store().to_str().unwrap();
    let (code, _, err) = run(&["usl", "no-such-run", "--data", data]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("run 'no-such-run' has no requests"), "{err}");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("usl-bad-csv");
    std::fs::create_dir_all(&dir).unwrap();
    let three = dir.join("three.csv");
    std::fs::write(&three, "concurrency,throughput\n1,10\n2,19\n4,30\n").unwrap();
    let (code, _, err) = run(&["usl", "--csv", three.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 4 measurements"), "{err}");

    let negative = dir.join("negative.csv");
    std::fs::write(
        &negative,
        "concurrency,throughput\n1,10\n2,19\n4,-30\n8,35\n",
    )
    .unwrap();
    let (code, _, err) = run(&["usl", "--csv", negative.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("measurement 3") && err.contains("not a positive"),
        "{err}"
    );

    let (code, _, err) = run(&["usl"]);
    assert_eq!(code, 2, "{err}");
}
