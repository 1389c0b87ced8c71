//! Every file in `queries/` runs through `loadlens sql -f` on the fixture store,
//! and its answer is checked against values computed here from the raw Parquet
//! files with the `parquet` crate alone (mostly from the ledger, which records
//! every request independently of the spans the queries read).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow::array::{
    Array, AsArray, BooleanArray, FixedSizeBinaryArray, Int32Array, StringArray,
    TimestampNanosecondArray,
};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use common::{TempDir, loadlens, stderr};

type Row = serde_json::Map<String, Value>;

/// One scheduled request, as the ledger recorded it.
#[derive(Debug, Clone)]
struct Request {
    intended: i64,
    sent: i64,
    end: i64,
    step: String,
    stage: String,
    status: Option<i32>,
    error: Option<String>,
    trace_id: Vec<u8>,
    exported: bool,
}

impl Request {
    fn latency_ms(&self) -> f64 {
        (self.end - self.intended) as f64 / 1e6
    }
}

struct Fixture {
    dir: PathBuf,
    summary: fixtures::Summary,
    /// Exported requests: the rows the `requests` view should hold.
    requests: Vec<Request>,
    /// Every scheduled request.
    ledger: Vec<Request>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // A fixed folder, rebuilt on every run: a static is never dropped, so a
        // temporary one would be left behind.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("queries-fixture");
        let _ = std::fs::remove_dir_all(&dir);
        let summary = fixtures::write(&dir, &fixtures::Spec::small()).unwrap();
        let ledger = read_ledger(&dir);
        let requests = ledger.iter().filter(|r| r.exported).cloned().collect();
        Fixture {
            dir,
            summary,
            requests,
            ledger,
        }
    })
}

fn read_batches(dir: &Path) -> Vec<RecordBatch> {
    schema::layout::parquet_files(dir)
        .into_iter()
        .flat_map(|path| {
            ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
        })
        .collect()
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another type"))
}

fn read_ledger(root: &Path) -> Vec<Request> {
    let mut out = Vec::new();
    for batch in read_batches(&root.join("ledger")) {
        let intended: &TimestampNanosecondArray = column(&batch, "intended_start");
        let sent: &TimestampNanosecondArray = column(&batch, "sent_at");
        let end: &TimestampNanosecondArray = column(&batch, "end_time");
        let step: &StringArray = column(&batch, "step");
        let stage: &StringArray = column(&batch, "stage");
        let status: &Int32Array = column(&batch, "status");
        let error: &StringArray = column(&batch, "error_type");
        let trace: &FixedSizeBinaryArray = column(&batch, "trace_id");
        let exported: &BooleanArray = column(&batch, "span_exported");
        for i in 0..batch.num_rows() {
            out.push(Request {
                intended: intended.value(i),
                sent: sent.value(i),
                end: end.value(i),
                step: step.value(i).to_string(),
                stage: stage.value(i).to_string(),
                status: status.is_valid(i).then(|| status.value(i)),
                error: error.is_valid(i).then(|| error.value(i).to_string()),
                trace_id: trace.value(i).to_vec(),
                exported: exported.value(i),
            });
        }
    }
    out
}

/// numpy's `quantile(values, q)` with its default linear interpolation.
fn numpy_quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = (sorted.len() - 1) as f64 * q;
    let below = position.floor();
    let t = position - below;
    let lo = below as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

fn run_query(file: &str, params: &[(&str, &str)]) -> Vec<Row> {
    let fixture = fixture();
    let mut command = loadlens();
    command
        .args(["sql", "--format", "json", "--data"])
        .arg(&fixture.dir)
        .arg("-f")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("queries")
                .join(file),
        );
    for (name, value) in params {
        command.arg("--param").arg(format!("{name}={value}"));
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{file} failed: {}",
        stderr(&output)
    );
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    rows.into_iter()
        .map(|row| match row {
            Value::Object(map) => map,
            other => panic!("{file}: row is not an object: {other}"),
        })
        .collect()
}

fn f64_of(row: &Row, key: &str) -> f64 {
    match row.get(key) {
        Some(Value::Number(n)) => n.as_f64().unwrap(),
        other => panic!("{key} is not a number: {other:?} in {row:?}"),
    }
}

fn i64_of(row: &Row, key: &str) -> i64 {
    match row.get(key) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or_else(|| n.as_f64().unwrap() as i64),
        other => panic!("{key} is not an integer: {other:?} in {row:?}"),
    }
}

fn str_of<'a>(row: &'a Row, key: &str) -> &'a str {
    match row.get(key) {
        Some(Value::String(s)) => s,
        other => panic!("{key} is not a string: {other:?} in {row:?}"),
    }
}

fn close(got: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (got - expected).abs() <= tolerance,
        "{what}: got {got}, expected {expected}"
    );
}

const RUN: (&str, &str) = ("run", fixtures::RUN_ID);

#[test]
fn there_are_at_least_ten_queries_and_each_says_what_it_answers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    assert!(files.len() >= 10, "only {} query files", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("-- ") && text.contains("-- Parameters:"),
            "{} must open with a comment that says what it answers and its parameters",
            file.display()
        );
    }
}

#[test]
fn latency_by_endpoint_matches_numpy_over_the_ledger() {
    let rows = run_query("latency_by_endpoint.sql", &[RUN]);
    let mut by_step: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut service: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in fixture().requests.iter().filter(|r| r.stage != "warmup") {
        by_step.entry(&r.step).or_default().push(r.latency_ms());
        service
            .entry(&r.step)
            .or_default()
            .push((r.end - r.sent) as f64 / 1e6);
    }
    assert_eq!(rows.len(), by_step.len());
    for (row, (step, latencies)) in rows.iter().zip(&by_step) {
        assert_eq!(str_of(row, "endpoint"), *step);
        assert_eq!(i64_of(row, "requests"), latencies.len() as i64);
        for (key, q) in [
            ("p50_ms", 0.5),
            ("p90_ms", 0.9),
            ("p99_ms", 0.99),
            ("p999_ms", 0.999),
        ] {
            close(
                f64_of(row, key),
                numpy_quantile(latencies, q),
                &format!("{step} {key}"),
            );
        }
        close(
            f64_of(row, "service_p99_ms"),
            numpy_quantile(&service[step], 0.99),
            &format!("{step} service p99"),
        );
    }
}

#[test]
fn throughput_over_time_counts_every_request_in_ten_second_buckets() {
    let rows = run_query("throughput_over_time.sql", &[RUN]);
    let mut buckets: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for r in &fixture().requests {
        let bucket = buckets
            .entry(r.intended.div_euclid(10_000_000_000))
            .or_default();
        bucket.0 += 1;
        bucket.1 += u64::from(r.error.is_some());
    }
    assert_eq!(rows.len(), buckets.len());
    for (row, (_, (requests, errors))) in rows.iter().zip(&buckets) {
        close(
            f64_of(row, "requests_per_second"),
            *requests as f64 / 10.0,
            "requests per second",
        );
        close(
            f64_of(row, "errors_per_second"),
            *errors as f64 / 10.0,
            "errors per second",
        );
    }
}

#[test]
fn errors_by_type_matches_the_ledger() {
    let rows = run_query("errors_by_type.sql", &[RUN]);
    let mut expected: BTreeMap<(String, Option<i32>), i64> = BTreeMap::new();
    for r in &fixture().requests {
        if let Some(error) = &r.error {
            *expected.entry((error.clone(), r.status)).or_default() += 1;
        }
    }
    let got: BTreeMap<(String, Option<i32>), i64> = rows
        .iter()
        .map(|row| {
            let status = row.get("status").and_then(Value::as_i64).map(|s| s as i32);
            (
                (str_of(row, "error_type").to_string(), status),
                i64_of(row, "errors"),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(expected.len() >= 4, "the fixture has several error types");
    let total = fixture().requests.len() as f64;
    for row in &rows {
        close(
            f64_of(row, "share_of_requests"),
            i64_of(row, "errors") as f64 / total,
            "share",
        );
    }
}

#[test]
fn slowest_traces_are_the_slowest_requests_with_their_trace_ids() {
    let rows = run_query("slowest_traces.sql", &[RUN, ("limit", "5")]);
    let mut requests = fixture().requests.clone();
    requests.sort_by(|a, b| b.latency_ms().total_cmp(&a.latency_ms()));
    assert_eq!(rows.len(), 5);
    for (row, r) in rows.iter().zip(&requests) {
        close(f64_of(row, "latency_ms"), r.latency_ms(), "latency");
        let hex: String = r.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(str_of(row, "trace_id"), hex);
        assert_eq!(str_of(row, "endpoint"), r.step);
    }
}

#[test]
fn stage_comparison_lists_the_stages_in_order_with_their_percentiles() {
    let rows = run_query("stage_comparison.sql", &[RUN]);
    let stages: Vec<&str> = rows.iter().map(|r| str_of(r, "stage")).collect();
    assert_eq!(
        stages,
        ["warmup", "c=1", "c=2", "c=4", "c=8", "c=16", "c=32"]
    );
    for row in &rows {
        let stage = str_of(row, "stage");
        let latencies: Vec<f64> = fixture()
            .requests
            .iter()
            .filter(|r| r.stage == stage)
            .map(Request::latency_ms)
            .collect();
        assert_eq!(i64_of(row, "requests"), latencies.len() as i64);
        close(
            f64_of(row, "p99_ms"),
            numpy_quantile(&latencies, 0.99),
            stage,
        );
    }
}

#[test]
fn run_vs_production_compares_the_same_route() {
    let rows = run_query(
        "run_vs_production.sql",
        &[
            RUN,
            ("route", "/api/checkout"),
            ("from", "2026-03-01T10:00:00Z"),
            ("to", "2026-03-01T11:00:00Z"),
        ],
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(str_of(&rows[0], "source"), "run fixture-run");
    assert_eq!(str_of(&rows[1], "source"), "production");
    // The target served every request that was not reset before reaching it.
    let served = fixture()
        .requests
        .iter()
        .filter(|r| r.step == "checkout" && r.error.as_deref() != Some("connection_reset"))
        .count();
    assert_eq!(i64_of(&rows[0], "requests"), served as i64);
    // Production server spans of the route, counted straight from the files.
    let mut production = 0;
    for batch in read_batches(&fixture().dir.join("spans").join("date=2026-03-01")) {
        let route: &StringArray = column(&batch, "http_route");
        let kind = batch.column_by_name("kind").unwrap().as_string::<i32>();
        production += (0..batch.num_rows())
            .filter(|&i| {
                route.is_valid(i) && route.value(i) == "/api/checkout" && kind.value(i) == "SERVER"
            })
            .count();
    }
    assert!(production > 0);
    assert_eq!(i64_of(&rows[1], "requests"), production as i64);
    // The run is slower: it climbs to concurrency 32; production stays at 4.
    assert!(f64_of(&rows[0], "p99_ms") > f64_of(&rows[1], "p99_ms"));
}

#[test]
fn slow_request_attributes_point_at_the_slowest_endpoint() {
    let rows = run_query("slow_request_attributes.sql", &[RUN]);
    let latencies: Vec<f64> = fixture().requests.iter().map(Request::latency_ms).collect();
    let p99 = numpy_quantile(&latencies, 0.99);
    let mut slow_by_step: BTreeMap<&str, i64> = BTreeMap::new();
    for r in fixture().requests.iter().filter(|r| r.latency_ms() > p99) {
        *slow_by_step.entry(&r.step).or_default() += 1;
    }
    let got: BTreeMap<&str, i64> = rows
        .iter()
        .filter(|r| str_of(r, "attribute") == "endpoint")
        .map(|r| (str_of(r, "value"), i64_of(r, "slow_requests")))
        .collect();
    assert_eq!(got, slow_by_step);
    // Checkout has the largest median, so it leads the endpoints.
    let top = rows
        .iter()
        .find(|r| str_of(r, "attribute") == "endpoint")
        .unwrap();
    assert_eq!(str_of(top, "value"), "checkout");
    assert!(f64_of(top, "lift") > 2.0, "{top:?}");
}

#[test]
fn saturation_joins_stages_with_the_targets_gauges() {
    let rows = run_query("saturation.sql", &[RUN, ("service", fixtures::API_SERVICE)]);
    assert_eq!(rows.len(), 7);
    let mut with_gauges = 0;
    for row in &rows {
        let n = i64_of(row, "concurrency") as f64;
        match row.get("cpu_utilization") {
            Some(Value::Number(_)) => {
                with_gauges += 1;
                // The fixture's CPU model: 0.15 + 0.8 (1 − e^(−n/8)).
                close(
                    f64_of(row, "cpu_utilization"),
                    0.15 + 0.8 * (1.0 - (-n / 8.0).exp()),
                    "cpu",
                );
                close(f64_of(row, "active_requests"), n, "active requests");
            }
            _ => assert!(row.get("cpu_utilization").is_none_or(Value::is_null)),
        }
    }
    assert!(with_gauges >= 4, "only {with_gauges} stages had metrics");
}

#[test]
fn concurrency_throughput_follows_the_ladder() {
    let rows = run_query("concurrency_throughput.sql", &[RUN]);
    let levels: Vec<i64> = rows.iter().map(|r| i64_of(r, "concurrency")).collect();
    assert_eq!(levels, [1, 2, 4, 8, 16, 32]);
    for row in &rows {
        let stage = format!("c={}", i64_of(row, "concurrency"));
        let step: Vec<&Request> = fixture()
            .requests
            .iter()
            .filter(|r| r.stage == stage)
            .collect();
        let first = step.iter().map(|r| r.intended).min().unwrap();
        let last = step.iter().map(|r| r.intended).max().unwrap();
        let throughput = step.len() as f64 / ((last - first) as f64 / 1e9);
        assert_eq!(i64_of(row, "requests"), step.len() as i64);
        close(f64_of(row, "throughput"), throughput, &stage);
    }
    // Throughput is the fixture's USL curve.
    for row in &rows {
        let n = i64_of(row, "concurrency") as u32;
        let expected = fixtures::usl_throughput(n);
        let got = f64_of(row, "throughput");
        assert!(
            (got / expected - 1.0).abs() < 0.01,
            "N={n}: {got} vs {expected}"
        );
    }
}

#[test]
fn run_summary_sets_the_manifest_beside_the_store() {
    let rows = run_query("run_summary.sql", &[]);
    let summary = &fixture().summary;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(str_of(row, "run_id"), fixtures::RUN_ID);
    assert_eq!(str_of(row, "model"), "ladder");
    assert_eq!(i64_of(row, "requests_sent"), summary.requests as i64);
    assert_eq!(i64_of(row, "spans_exported"), summary.request_spans as i64);
    assert_eq!(i64_of(row, "spans_stored"), summary.request_spans as i64);
    let errors = fixture()
        .requests
        .iter()
        .filter(|r| r.error.is_some())
        .count();
    assert_eq!(i64_of(row, "errors"), errors as i64);
}

#[test]
fn ledger_reconciliation_accounts_for_every_request() {
    let rows = run_query("ledger_reconciliation.sql", &[RUN]);
    let fixture = fixture();
    let row = &rows[0];
    assert_eq!(i64_of(row, "scheduled"), fixture.ledger.len() as i64);
    assert_eq!(i64_of(row, "exported"), fixture.requests.len() as i64);
    assert!(
        fixture.requests.len() < fixture.ledger.len(),
        "some spans were not exported"
    );
    assert_eq!(i64_of(row, "stored"), fixture.requests.len() as i64);
    assert_eq!(i64_of(row, "lost"), 0);
    assert_eq!(i64_of(row, "duplicated"), 0);
    assert_eq!(i64_of(row, "unknown"), 0);
}

#[test]
fn server_latency_from_metrics_lands_in_the_bucket_of_the_exact_value() {
    let rows = run_query(
        "server_latency_from_metrics.sql",
        &[
            ("service", fixtures::API_SERVICE),
            ("from", "2026-03-02T00:00:00Z"),
            ("to", "2026-03-03T00:00:00Z"),
        ],
    );
    // Server durations as the fixture recorded them: the service time less 0.2 ms.
    let mut by_route: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in fixture()
        .ledger
        .iter()
        .filter(|r| r.error.as_deref() != Some("connection_reset"))
    {
        let route = fixtures::ENDPOINTS
            .iter()
            .find(|e| e.step == r.step)
            .unwrap()
            .route;
        let seconds = ((r.end - 100_000).max(r.sent + 100_000) - (r.sent + 100_000)) as f64 / 1e9;
        by_route.entry(route).or_default().push(seconds);
    }
    let routes: BTreeSet<&str> = rows.iter().map(|r| str_of(r, "route")).collect();
    assert_eq!(routes, by_route.keys().copied().collect());
    const BOUNDS: [f64; 14] = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    for row in &rows {
        let durations = &by_route[str_of(row, "route")];
        assert_eq!(i64_of(row, "requests"), durations.len() as i64);
        assert_eq!(
            i64_of(row, "exp_histogram_requests"),
            durations.len() as i64
        );
        let mut sorted = durations.clone();
        sorted.sort_by(f64::total_cmp);
        // Prometheus's rank: the bucket where the cumulative count reaches q·total.
        let exact = sorted[((0.99 * sorted.len() as f64).ceil() as usize).max(1) - 1];
        let bucket = BOUNDS.partition_point(|&b| b < exact);
        let lower = if bucket == 0 { 0.0 } else { BOUNDS[bucket - 1] };
        let upper = BOUNDS.get(bucket).copied().unwrap_or(f64::INFINITY);
        let p99 = f64_of(row, "p99_ms") / 1000.0;
        assert!(
            lower <= p99 && p99 <= upper,
            "{}: p99 {p99} outside ({lower}, {upper}] of the exact {exact}",
            str_of(row, "route")
        );
    }
}

#[test]
fn a_query_over_the_memory_limit_fails_with_a_clear_message() {
    let output = loadlens()
        .args(["sql", "--memory-limit", "64KiB", "--data"])
        .arg(&fixture().dir)
        .arg("SELECT percentile(latency_ms, 0.5) FROM requests")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("more memory than --memory-limit allows")
            && message.contains("raise --memory-limit"),
        "{message}"
    );
    // The same query fits the default limit.
    let output = loadlens()
        .args(["sql", "--data"])
        .arg(&fixture().dir)
        .arg("SELECT percentile(latency_ms, 0.5) FROM requests")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_missing_parameter_is_named_and_exits_2() {
    let output = loadlens()
        .args(["sql", "--data"])
        .arg(&fixture().dir)
        .arg("-f")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/slowest_traces.sql"))
        .args(["--param", "run=x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("parameter limit"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn parquet_output_is_readable_parquet() {
    let out = fixture().dir.with_extension("result.parquet");
    let output = loadlens()
        .args(["sql", "--format", "parquet", "-o"])
        .arg(&out)
        .arg("--data")
        .arg(&fixture().dir)
        .arg("SELECT step, COUNT(*) AS n FROM requests GROUP BY step ORDER BY step")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&out).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, fixtures::ENDPOINTS.len());
    let _ = std::fs::remove_file(out);
}

/// What `loadlens sql --format csv` prints for `sql` over the store at `dir`.
fn sql_csv(dir: &Path, sql: &str) -> String {
    let output = loadlens()
        .args(["sql", "--format", "csv", "--data"])
        .arg(dir)
        .arg(sql)
        .output()
        .unwrap();
    assert!(output.status.success(), "{sql}: {}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The files `EXPLAIN` says a query reads.
fn files_read(query: &str) -> Vec<String> {
    let plan = sql_csv(&fixture().dir, &format!("EXPLAIN {query}"));
    let mut files: Vec<String> = plan
        .split(|c: char| c == '[' || c == ']' || c == ',' || c.is_whitespace())
        .filter(|part| part.ends_with(".parquet") || part.contains(".parquet:"))
        .map(|part| part.split(".parquet").next().unwrap().to_string())
        .collect();
    files.sort();
    files.dedup();
    files
}

#[test]
fn filters_on_run_and_time_prune_partitions_in_the_plan() {
    // SUM, not COUNT(*): DataFusion answers a bare count from file statistics
    // without a scan, and the plan would list no files.
    let all = files_read("SELECT SUM(duration_ns) FROM spans");
    assert!(all.iter().any(|f| f.contains("date=2026-03-01")));
    assert!(
        all.iter()
            .any(|f| f.contains("run_id=__HIVE_DEFAULT_PARTITION__"))
    );
    assert!(all.iter().any(|f| f.contains("run_id=fixture-run")));

    // A run: only that run's folder.
    let run = files_read("SELECT SUM(duration_ns) FROM spans WHERE run_id = 'fixture-run'");
    assert!(!run.is_empty());
    assert!(
        run.iter().all(|f| f.contains("/run_id=fixture-run/")),
        "{run:?}"
    );

    // A time range: only the days it covers, though the filter never names `date`.
    for filter in [
        "start_time >= TIMESTAMP '2026-03-02T00:00:00Z'",
        "start_time BETWEEN '2026-03-02T09:00:00Z' AND '2026-03-02T12:00:00Z'",
    ] {
        let day = files_read(&format!(
            "SELECT SUM(duration_ns) FROM spans WHERE {filter}"
        ));
        assert!(!day.is_empty(), "{filter}");
        assert!(
            day.iter().all(|f| f.contains("/date=2026-03-02/")),
            "{filter}: {day:?}"
        );
    }
    let production = files_read(
        "SELECT SUM(duration_ns) FROM server_spans WHERE start_time < TIMESTAMP '2026-03-02T00:00:00Z' AND run_id IS NULL",
    );
    assert!(!production.is_empty());
    assert!(
        production
            .iter()
            .all(|f| f.contains("/date=2026-03-01/run_id=__HIVE_DEFAULT_PARTITION__/")),
        "{production:?}"
    );
}

/// The columns the Parquet scans of a plan read.
fn columns_scanned(plan: &str) -> Vec<String> {
    plan.split("DataSourceExec:")
        .skip(1)
        .filter_map(|scan| scan.split("projection=[").nth(1))
        .flat_map(|list| list.split(']').next().unwrap_or("").split(", "))
        .map(str::to_string)
        .collect()
}

#[test]
fn request_ids_that_the_files_prove_present_are_not_read() {
    // Only generator spans: every file's footer counts no null request_id,
    // so the `requests` view's `request_id IS NOT NULL` needs no reading.
    let dir = TempDir::new("requests-only");
    let summary = fixtures::write(dir.path(), &fixtures::Spec::requests_only(3_000, 11)).unwrap();
    let query =
        "SELECT COUNT(*) AS n, SUM(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors FROM requests";
    let plan = sql_csv(dir.path(), &format!("EXPLAIN {query}"));
    let answer = sql_csv(dir.path(), query);
    let columns = columns_scanned(&plan);
    assert!(columns.contains(&"status_code".to_string()), "{plan}");
    assert!(!columns.contains(&"request_id".to_string()), "{plan}");
    // The scan's predicate keeps the test, for pruning by the same footers.
    assert!(
        plan.lines()
            .filter(|line| line.contains("FilterExec"))
            .all(|line| !line.contains("request_id")),
        "{plan}"
    );
    assert_eq!(
        answer,
        format!("n,errors\n{},{}\n", summary.request_spans, summary.errors)
    );

    // Server spans beside them, without request ids: the test stays, and
    // the answer is the same count of requests.
    let plan = sql_csv(&fixture().dir, &format!("EXPLAIN {query}"));
    let answer = sql_csv(&fixture().dir, query);
    assert!(
        columns_scanned(&plan).contains(&"request_id".to_string()),
        "{plan}"
    );
    let summary = &fixture().summary;
    assert_eq!(
        answer,
        format!("n,errors\n{},{}\n", summary.request_spans, summary.errors)
    );
}

#[test]
fn bad_sql_says_where_and_an_unknown_table_lists_the_tables() {
    let run = |query: &str| {
        let output = loadlens()
            .args(["sql", "--data"])
            .arg(&fixture().dir)
            .arg(query)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{query}");
        stderr(&output)
    };
    let syntax = run("SELECT step FROM requests\nWHERE step = = 1");
    assert!(syntax.contains("Line: 2, Column: 14"), "{syntax}");
    let column = run("SELECT step FROM requests\nWHERE no_such_column > 1");
    assert!(column.contains("line 2, column 7"), "{column}");
    let table = run("SELECT * FROM request");
    assert!(
        table.contains("not found")
            && table.contains("tables: spans,")
            && table.contains("requests"),
        "{table}"
    );
}
