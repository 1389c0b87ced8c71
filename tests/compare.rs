//! `loadlens compare` and `loadlens trend` end to end: a store with runs whose
//! latency distributions are known (one route 20 ms slower, one unchanged, a
//! production window, a series with a step), read by the real binary.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow::record_batch::RecordBatch;
use collector::convert::PartitionKey;
use fixtures::rng::Rng;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};
use schema::attr;
use serde_json::Value as Json;

use common::{loadlens, stderr};

/// 2026-03-02T10:00:00Z.
const DAY: i64 = 1_772_445_600_000_000_000;
const HOUR: i64 = 3_600_000_000_000;
/// The production window: 2026-03-01T10:00Z to 11:00Z.
const PRODUCTION: &str = "prod:from=2026-03-01T10:00Z,to=2026-03-01T11:00Z";
const PRODUCTION_START: i64 = DAY - 24 * HOUR;
/// How much slower `checkout` is in the run `slow`.
const SLOWDOWN_MS: f64 = 20.0;

/// A route and the latency of its requests: a fixed part plus a log-normal one.
#[derive(Clone, Copy)]
struct Route {
    step: &'static str,
    http_route: &'static str,
    offset_ms: f64,
    median_ms: f64,
}

const ITEMS: Route = Route {
    step: "list items",
    http_route: "/api/items",
    offset_ms: 0.0,
    median_ms: 20.0,
};
const CHECKOUT: Route = Route {
    step: "checkout",
    http_route: "/api/checkout",
    offset_ms: 10.0,
    median_ms: 70.0,
};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.to_string()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

fn status(error: bool) -> Option<Status> {
    Some(Status {
        code: if error {
            StatusCode::Error as i32
        } else {
            StatusCode::Unset as i32
        },
        message: String::new(),
    })
}

fn resource_spans(resource: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Spans waiting to be written, one file per partition.
#[derive(Default)]
struct Store {
    partitions: BTreeMap<PartitionKey, Vec<RecordBatch>>,
}

impl Store {
    fn add(&mut self, resource_spans: Vec<ResourceSpans>) {
        let converted =
            collector::convert::spans::convert(&ExportTraceServiceRequest { resource_spans })
                .unwrap();
        assert_eq!(converted.first_error, None);
        for (key, batch) in converted.batches {
            self.partitions.entry(key).or_default().push(batch);
        }
    }

    /// A run: `n` requests per route, each with the target's SERVER span.
    /// `slower` is added to every `checkout` latency; 1% of requests fail.
    fn run(&mut self, id: &str, start: i64, n: usize, seed: u64, routes: &[(Route, f64)]) {
        let mut rng = Rng::new(seed);
        let (mut client, mut server) = (Vec::new(), Vec::new());
        let mut request_id = 0;
        for &(route, extra_ms) in routes {
            for i in 0..n {
                let intended = start + i as i64 * 10_000_000;
                let latency_ms = route.offset_ms + extra_ms + rng.lognormal(route.median_ms, 0.3);
                let error = rng.chance(0.01);
                let end = intended + (latency_ms * 1e6) as i64;
                let (trace_id, span_id) = (rng.trace_id().to_vec(), rng.span_id().to_vec());
                client.push(Span {
                    trace_id: trace_id.clone(),
                    span_id: span_id.clone(),
                    name: "GET".into(),
                    kind: SpanKind::Client as i32,
                    start_time_unix_nano: intended as u64,
                    end_time_unix_nano: end as u64,
                    attributes: vec![
                        text(attr::RUN_ID, id),
                        text(attr::STEP, route.step),
                        text(attr::STAGE, "main"),
                        text(
                            attr::URL_FULL,
                            &format!("http://shop:8080{}?page=1", route.http_route),
                        ),
                        int(attr::REQUEST_ID, request_id),
                        int(attr::INTENDED_START, intended),
                    ],
                    status: status(error),
                    ..Default::default()
                });
                server.push(Span {
                    trace_id,
                    span_id: rng.span_id().to_vec(),
                    parent_span_id: span_id,
                    name: format!("GET {}", route.http_route),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: (intended + 500_000) as u64,
                    end_time_unix_nano: (end - 500_000) as u64,
                    attributes: vec![text(attr::HTTP_ROUTE, route.http_route)],
                    status: status(error),
                    ..Default::default()
                });
                request_id += 1;
            }
        }
        self.add(vec![
            resource_spans(vec![text(attr::SERVICE_NAME, "loadlens")], client),
            resource_spans(
                vec![
                    text(attr::SERVICE_NAME, "shop-api"),
                    text(attr::DEPLOYMENT_ENVIRONMENT, "staging"),
                ],
                server,
            ),
        ]);
    }

    /// An hour of production SERVER spans for `checkout`, as the runs see it.
    fn production(&mut self, n: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let spans = (0..n)
            .map(|i| {
                let start = PRODUCTION_START + i as i64 * (HOUR / n as i64);
                // The runs' server spans are 1 ms shorter than their requests.
                let ms = CHECKOUT.offset_ms + rng.lognormal(CHECKOUT.median_ms, 0.3) - 1.0;
                Span {
                    trace_id: rng.trace_id().to_vec(),
                    span_id: rng.span_id().to_vec(),
                    name: "GET /api/checkout".into(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: start as u64,
                    end_time_unix_nano: (start + (ms * 1e6) as i64) as u64,
                    attributes: vec![text(attr::HTTP_ROUTE, CHECKOUT.http_route)],
                    status: status(rng.chance(0.01)),
                    ..Default::default()
                }
            })
            .collect();
        self.add(vec![resource_spans(
            vec![
                text(attr::SERVICE_NAME, "shop-api"),
                text(attr::DEPLOYMENT_ENVIRONMENT, "production"),
            ],
            spans,
        )]);
    }

    fn write(self, root: &Path) {
        for (key, batches) in self.partitions {
            collector::store::write_partition(root, &key, &batches, 0).unwrap();
        }
    }
}

/// Trend runs: twelve runs of `checkout`, the last five 40% slower. (With
/// fewer runs a permutation test cannot reach 5%: 8 runs split 5 + 3 have
/// only 56 arrangements.)
const TREND_RUNS: [&str; 12] = [
    "t01", "t02", "t03", "t04", "t05", "t06", "t07", "t08", "t09", "t10", "t11", "t12",
];
const TREND_STEP_AT: usize = 7;

fn store() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-store");
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = Store::default();
        let both = |extra| [(ITEMS, 0.0), (CHECKOUT, extra)];
        store.run("base", DAY, 800, 1, &both(0.0));
        store.run("slow", DAY + HOUR, 800, 2, &both(SLOWDOWN_MS));
        store.run("same", DAY + 2 * HOUR, 800, 3, &both(0.0));
        store.production(1500, 4);
        for (i, id) in TREND_RUNS.iter().enumerate() {
            let extra = if i >= TREND_STEP_AT { 32.0 } else { 0.0 };
            let start = DAY + (24 + i as i64) * HOUR;
            store.run(id, start, 200, 10 + i as u64, &[(CHECKOUT, extra)]);
        }
        store.write(&dir);
        dir
    })
}

/// Runs `loadlens compare` (or `trend`) on the store; returns exit code and stdout.
fn run(args: &[&str]) -> (i32, String, String) {
    let output = loadlens()
        .args(args)
        .arg("--data")
        .arg(store())
        .output()
        .unwrap();
    let errors = stderr(&output);
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        errors,
    )
}

fn json(stdout: &str) -> Json {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn route<'a>(report: &'a Json, name: &str) -> &'a Json {
    report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {report}"))
}

#[test]
fn a_slower_run_is_a_regression_with_exit_1() {
    let (code, stdout, stderr) = run(&["compare", "base", "slow", "--format", "json"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("regression in checkout"), "{stderr}");
    let report = json(&stdout);
    assert_eq!(report["verdict"], "regression");
    assert_eq!(report["measure"], "client");
    let checkout = route(&report, "checkout");
    assert_eq!(checkout["verdict"], "regression");
    let shift = &checkout["shift"];
    let estimate = shift["estimate"].as_f64().unwrap();
    let (low, high) = (
        shift["interval"]["low"].as_f64().unwrap(),
        shift["interval"]["high"].as_f64().unwrap(),
    );
    assert!((estimate - SLOWDOWN_MS).abs() < 4.0, "{shift}");
    assert!(low < SLOWDOWN_MS && SLOWDOWN_MS < high, "{shift}");
    assert!(checkout["mann_whitney"]["p_value"].as_f64().unwrap() < 1e-6);
    // About 1% of 800 fail on each side; the latencies are of the others.
    let samples = checkout["a"]["samples"].as_u64().unwrap();
    assert!((770..800).contains(&samples), "{samples}");
    assert_eq!(checkout["a"]["requests"], 800);
    // The unchanged route is not flagged.
    assert_eq!(
        route(&report, "list items")["verdict"],
        "no_significant_change"
    );
}

#[test]
fn the_same_distribution_is_no_change_with_exit_0() {
    let (code, stdout, stderr) = run(&["compare", "base", "same", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    assert_eq!(report["verdict"], "no_significant_change");
    assert_eq!(report["routes"].as_array().unwrap().len(), 2);
}

#[test]
fn a_higher_minimum_effect_turns_the_regression_into_no_change() {
    // 20 ms on a ~80 ms median is 25%: under a 40% minimum it does not count.
    let (code, stdout, stderr) = run(&[
        "compare",
        "base",
        "slow",
        "--route",
        "checkout",
        "--min-effect",
        "40%",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    assert_eq!(report["routes"].as_array().unwrap().len(), 1);
    assert_eq!(
        route(&report, "checkout")["verdict"],
        "no_significant_change"
    );
}

#[test]
fn markdown_and_table_output_name_the_regression() {
    let (code, stdout, _) = run(&["compare", "base", "slow", "--format", "markdown"]);
    assert_eq!(code, 1);
    assert!(stdout.starts_with("## run base → run slow"), "{stdout}");
    assert!(
        stdout.contains("**Verdict: regression in checkout**"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| checkout"))
        .unwrap();
    assert!(row.contains("**regression**"), "{row}");
    let (_, stdout, _) = run(&["compare", "base", "slow", "--format", "table"]);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("list items"))
        .unwrap();
    assert!(row.contains("no significant change"), "{row}");
}

#[test]
fn a_run_against_production_compares_server_spans_by_http_route() {
    // The run's server spans and production have the same distribution ...
    let (code, stdout, stderr) = run(&[
        "compare",
        PRODUCTION,
        "base",
        "--route",
        "/api/checkout",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    assert_eq!(report["measure"], "server");
    assert_eq!(
        report["a"],
        "production 2026-03-01T10:00Z to 2026-03-01T11:00Z"
    );
    let checkout = route(&report, "/api/checkout");
    assert_eq!(checkout["a"]["requests"], 1500);
    assert_eq!(checkout["verdict"], "no_significant_change");
    // ... and the slow run is slower than production.
    let (code, stdout, _) = run(&[
        "compare",
        PRODUCTION,
        "slow",
        "--route",
        "/api/checkout",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(json(&stdout)["verdict"], "regression");
}

#[test]
fn bad_sides_and_unknown_runs_exit_2_with_one_line() {
    for (args, mentions) in [
        (
            vec!["compare", "base", "prod:from=2026-03-01T10:00Z"],
            "'to=' is missing",
        ),
        (
            vec!["compare", "base", "prod:from=noon,to=2026-03-02"],
            "not a UTC time",
        ),
        (
            vec!["compare", "base", "nosuchrun"],
            "run nosuchrun has no requests",
        ),
        (
            vec!["compare", "base", "slow", "--route", "nope"],
            "on route 'nope'",
        ),
        (
            vec!["compare", "base", "slow", "--alpha", "2"],
            "between 0 and 1",
        ),
        (
            vec!["trend", "--route", "nope"],
            "no run has successful requests",
        ),
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn trend_finds_the_run_where_latency_stepped_up() {
    let runs = TREND_RUNS.join(",");
    let (code, stdout, stderr) = run(&[
        "trend", "--route", "checkout", "--runs", &runs, "--metric", "p50", "--format", "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let trend = json(&stdout);
    let ids: Vec<&str> = trend["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, TREND_RUNS);
    let shifts = trend["shifts"].as_array().unwrap();
    assert_eq!(shifts.len(), 1, "{trend}");
    assert_eq!(shifts[0]["run_id"], TREND_RUNS[TREND_STEP_AT]);
    let change = shifts[0]["relative_change"].as_f64().unwrap();
    // 32 ms on a median of about 80 ms.
    assert!((0.3..0.5).contains(&change), "{change}");

    // Before the step there is nothing to find.
    let before = TREND_RUNS[..TREND_STEP_AT].join(",");
    let (code, stdout, _) = run(&[
        "trend", "--route", "checkout", "--runs", &before, "--format", "table",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("No change point"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with('t')).count(),
        TREND_STEP_AT
    );

    // --last keeps the latest runs by start time.
    let (_, stdout, _) = run(&[
        "trend", "--route", "checkout", "--runs", &runs, "--last", "3", "--format", "json",
    ]);
    let last: Vec<Json> = json(&stdout)["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].clone())
        .collect();
    assert_eq!(last, ["t10", "t11", "t12"]);
}
