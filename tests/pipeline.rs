//! End to end: a real collector, the demo system and a generator run as separate
//! processes; then `loadlens sql` reads what reached the store.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;

fn str_of(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> String {
    row[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string: {row:?}"))
        .to_string()
}

fn i64_of(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> i64 {
    row[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} is not an integer: {row:?}"))
}

/// The q-quantile by linear interpolation between closest ranks, written out
/// independently of the analyzer's implementation.
fn textbook_quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

#[test]
fn every_request_is_traced_stored_once_and_joined_by_the_target() {
    let data = TempDir::new("pipeline");
    let grpc = free_addr();
    let http = free_addr();
    let api = free_addr();
    let collector = start_collector(data.path(), grpc, http, &["--flush-interval", "1s"]);
    let endpoint = format!("http://{grpc}");
    let demo = start_demo(api, grpc);

    let summary_path = data.path().join("summary.json");
    let run = loadlens()
        .args([
            "run",
            "--url",
            &format!("http://{api}/api/orders"),
            "--rate",
            "150",
            "--duration",
            "3s",
            "--collector",
            &endpoint,
            "--run-id",
            "e2e-run",
            "--data",
            data.path().to_str().unwrap(),
            "--quiet",
            "--summary-json",
        ])
        .arg(&summary_path)
        .output()
        .unwrap();
    assert!(run.status.success(), "run failed: {}", stderr(&run));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    let sent = summary["requests_sent"].as_u64().unwrap() as usize;
    assert!(sent >= 400, "expected about 450 requests, got {sent}");
    assert_eq!(summary["requests_failed"], 0, "{summary}");
    assert_eq!(summary["spans_dropped"], 0, "{summary}");
    assert_eq!(summary["spans_exported"].as_u64().unwrap() as usize, sent);
    assert_eq!(summary["manifest_exported"], true);

    // The collector's live RED metrics counted every request of the run.
    let metrics = http_get(http, "/metrics");
    let requests = format!(
        "loadlens_run_requests_total{{run_id=\"e2e-run\",step=\"GET /api/orders\"}} {sent}\n"
    );
    assert!(metrics.contains(&requests), "{requests} not in:\n{metrics}");
    assert!(metrics.contains("loadlens_run_latency_seconds_bucket{run_id=\"e2e-run\""));

    // A clean stop flushes the demo's queued spans and the collector's pending rows.
    assert!(demo.terminate(), "demo did not stop cleanly");
    assert!(collector.terminate(), "collector did not stop cleanly");

    // The generator's CLIENT spans: one per request, each request id exactly once.
    let clients = sql_json(
        data.path(),
        "SELECT request_id,
                encode(CAST(trace_id AS BYTEA), 'hex') AS trace,
                encode(CAST(span_id AS BYTEA), 'hex') AS span,
                CAST(end_time AS BIGINT) AS end_ns,
                CAST(intended_start AS BIGINT) AS intended_ns
         FROM spans
         WHERE kind = 'CLIENT' AND scope_name = 'loadlens.generator' AND run_id = 'e2e-run'",
    );
    assert_eq!(
        clients.len(),
        sent,
        "client spans in Parquet vs requests sent"
    );
    let ids: HashSet<i64> = clients.iter().map(|r| i64_of(r, "request_id")).collect();
    assert_eq!(ids.len(), sent, "request ids are not unique");
    assert_eq!(ids, (0..sent as i64).collect(), "request ids are not 0..n");
    let generator_span_of: HashMap<String, String> = clients
        .iter()
        .map(|r| (str_of(r, "trace"), str_of(r, "span")))
        .collect();
    assert_eq!(
        generator_span_of.len(),
        sent,
        "each request has its own trace"
    );

    // The demo's spans joined those traces: API SERVER spans are children of the
    // generator's span; database SERVER spans are children of the API's CLIENT span.
    let demo_spans = sql_json(
        data.path(),
        "SELECT service_name, kind,
                encode(CAST(trace_id AS BYTEA), 'hex') AS trace,
                encode(CAST(span_id AS BYTEA), 'hex') AS span,
                encode(CAST(parent_span_id AS BYTEA), 'hex') AS parent
         FROM spans WHERE service_name IN ('demo-api', 'demo-db')",
    );
    let mut by_trace: HashMap<String, Vec<&serde_json::Map<String, serde_json::Value>>> =
        HashMap::new();
    for span in &demo_spans {
        by_trace
            .entry(str_of(span, "trace"))
            .or_default()
            .push(span);
    }
    let mut servers = 0;
    for span in demo_spans.iter().filter(|s| s["kind"] == "SERVER") {
        servers += 1;
        let trace = str_of(span, "trace");
        let generator_span = generator_span_of
            .get(&trace)
            .unwrap_or_else(|| panic!("server span in a trace no request started: {span:?}"));
        let parent = str_of(span, "parent");
        match span["service_name"].as_str().unwrap() {
            "demo-api" => assert_eq!(&parent, generator_span, "API span's parent"),
            "demo-db" => {
                let caller = by_trace[&trace]
                    .iter()
                    .find(|s| s["kind"] == "CLIENT" && str_of(s, "span") == parent)
                    .unwrap_or_else(|| panic!("database span's parent is no API client span"));
                let api_server = by_trace[&trace]
                    .iter()
                    .find(|s| s["kind"] == "SERVER" && s["service_name"] == "demo-api")
                    .unwrap();
                assert_eq!(str_of(caller, "parent"), str_of(api_server, "span"));
            }
            other => panic!("unexpected service {other}"),
        }
    }
    assert_eq!(
        servers,
        2 * sent,
        "one API and one database span per request"
    );

    // Percentiles from SQL equal the ones computed here from the raw times.
    let mut latencies: Vec<f64> = clients
        .iter()
        .map(|r| (i64_of(r, "end_ns") - i64_of(r, "intended_ns")) as f64 / 1e6)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let from_sql = &sql_json(
        data.path(),
        "SELECT percentile(latency_ms, 0.5) AS p50,
                percentile(latency_ms, 0.95) AS p95,
                percentile(latency_ms, 0.99) AS p99
         FROM requests WHERE run_id = 'e2e-run'",
    )[0];
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        let expected = textbook_quantile(&latencies, q);
        let got = from_sql[name].as_f64().unwrap();
        assert!(
            (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
            "{name}: SQL {got} vs computed {expected}"
        );
    }

    // The run manifest reached the runs table.
    let runs = sql_json(
        data.path(),
        "SELECT requests_sent, spans_exported, model FROM runs WHERE run_id = 'e2e-run'",
    );
    assert_eq!(runs.len(), 1);
    assert_eq!(i64_of(&runs[0], "requests_sent") as usize, sent);
    assert_eq!(runs[0]["model"], "constant");

    // Reconciliation: the generator's ledger, written straight into the store,
    // has one row per request, and every row's span is in `spans` exactly once.
    let reconciled = sql_json(
        data.path(),
        "SELECT COUNT(*) AS ledger_rows,
                SUM(CASE WHEN l.span_exported THEN 1 ELSE 0 END) AS handed_over,
                COUNT(s.span_id) AS joined,
                COUNT(DISTINCT l.request_id) AS distinct_ids
         FROM ledger l
         LEFT JOIN (SELECT trace_id, span_id FROM spans WHERE run_id = 'e2e-run' AND kind = 'CLIENT') s
           ON l.trace_id = s.trace_id AND l.span_id = s.span_id
         WHERE l.run_id = 'e2e-run'",
    );
    // The generator's per-second metrics reached the store; the last point of
    // the cumulative request counter and of the latency histogram hold every
    // request.
    let metrics = sql_json(
        data.path(),
        "SELECT (SELECT MAX(value_int) FROM metrics_number
                 WHERE metric_name = 'loadlens.generator.requests' AND run_id = 'e2e-run') AS requests,
                (SELECT MAX(count) FROM metrics_exp_histogram
                 WHERE metric_name = 'loadlens.generator.latency' AND run_id = 'e2e-run') AS latency_count,
                (SELECT COUNT(*) FROM metrics_number
                 WHERE metric_name = 'loadlens.generator.in_flight' AND run_id = 'e2e-run') AS gauge_points",
    );
    assert_eq!(
        i64_of(&metrics[0], "requests") as usize,
        sent,
        "{metrics:?}"
    );
    assert_eq!(
        i64_of(&metrics[0], "latency_count") as usize,
        sent,
        "{metrics:?}"
    );
    assert!(i64_of(&metrics[0], "gauge_points") >= 2, "{metrics:?}");
    for column in ["ledger_rows", "handed_over", "joined", "distinct_ids"] {
        assert_eq!(
            i64_of(&reconciled[0], column) as usize,
            sent,
            "{column}: {reconciled:?}"
        );
    }
}
