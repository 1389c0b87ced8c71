//! Exact percentiles: on a store of 1,000,000 requests with a heavy-tailed
//! latency distribution, p50/p90/p99/p99.9 per endpoint from `loadlens sql`
//! equal, bit for bit, what numpy's `quantile` (method "linear") computes from
//! the same Parquet files read with pyarrow.

mod common;

use std::path::Path;
use std::process::Command;

use common::{loadlens, stderr};

const REQUESTS: u64 = 1_000_000;

#[test]
fn percentiles_from_sql_equal_numpy_on_a_million_requests() {
    let store = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exactness-fixture");
    let _ = std::fs::remove_dir_all(&store);
    let summary = fixtures::write(&store, &fixtures::Spec::requests_only(REQUESTS, 11)).unwrap();
    assert!(summary.request_spans > 999_000, "{summary:?}");

    let output = loadlens()
        .args(["sql", "--format", "json", "--data"])
        .arg(&store)
        .arg(
            "SELECT step,
                    COUNT(*) AS count,
                    percentile(latency_ms, 0.5) AS p50,
                    percentile(latency_ms, 0.9) AS p90,
                    percentile(latency_ms, 0.99) AS p99,
                    percentile(latency_ms, 0.999) AS p999
             FROM requests GROUP BY step ORDER BY step",
        )
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let sql: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/percentiles.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "numpy reference failed (pip install -r tests/interop/requirements.txt): {}",
        stderr(&output)
    );
    let numpy: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(sql.len(), numpy.len());
    assert_eq!(sql.len(), fixtures::ENDPOINTS.len());
    let mut total = 0;
    for row in &sql {
        let step = row["step"].as_str().unwrap();
        let reference = &numpy[step];
        assert_eq!(row["count"], reference["count"], "{step}");
        total += row["count"].as_u64().unwrap();
        for (column, q) in [
            ("p50", "0.5"),
            ("p90", "0.9"),
            ("p99", "0.99"),
            ("p999", "0.999"),
        ] {
            let got = row[column].as_f64().unwrap();
            let expected = reference[q].as_f64().unwrap();
            assert_eq!(
                got.to_bits(),
                expected.to_bits(),
                "{step} {column}: loadlens {got} numpy {expected}"
            );
        }
        // Heavy-tailed: the tail is far from the median.
        assert!(
            row["p999"].as_f64().unwrap() > 5.0 * row["p50"].as_f64().unwrap(),
            "{row}"
        );
    }
    assert_eq!(total, summary.request_spans);
    let _ = std::fs::remove_dir_all(&store);
}
