//! `loadlens slo check` and `loadlens slo rules`, end to end: a store with
//! known good and bad requests, the real binary, and the real `promtool`.
//!
//! Two ten-minute runs of 6,000 checkout requests, one every 100 ms, each
//! ending 20 ms after its intended start:
//! - `steady`: every 500th request fails (12 of 6,000);
//! - `outage`: the same, and from request 4,000 on every odd one fails too
//!   (1,012 of 6,000), so the last minutes burn the budget fast.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use collector::convert::spans::convert;
use collector::store::write_partition;
use exporter::attributes::{int, string};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};
use schema::attr;
use serde_json::Value;

use common::{TempDir, loadlens, stderr};

/// 2026-03-02T10:00:00Z.
const START: i64 = 1_772_445_600_000_000_000;
const REQUESTS: i64 = 6_000;
const GAP: i64 = 100_000_000;
const LATENCY: i64 = 20_000_000;

fn fails(run: &str, i: i64) -> bool {
    i % 500 == 0 || (run == "outage" && i >= 4_000 && i % 2 == 1)
}

/// Writes one run's request spans through the collector's own conversion and writer.
fn write_run(root: &Path, run: &str) {
    let spans = (0..REQUESTS)
        .map(|i| {
            let intended = START + i * GAP;
            let failed = fails(run, i);
            let mut attributes = vec![
                string(attr::RUN_ID, run),
                string(attr::STEP, "checkout"),
                string(attr::STAGE, "main"),
                int(attr::REQUEST_ID, i),
                int(attr::INTENDED_START, intended),
                int(
                    attr::HTTP_RESPONSE_STATUS_CODE,
                    if failed { 503 } else { 200 },
                ),
                string(attr::HTTP_REQUEST_METHOD, "POST"),
            ];
            if failed {
                attributes.push(string(attr::ERROR_TYPE, "http_5xx"));
            }
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            trace_id[8..].copy_from_slice(&(run.len() as u64).to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: "POST".into(),
                kind: SpanKind::Client as i32,
                start_time_unix_nano: intended as u64,
                end_time_unix_nano: (intended + LATENCY) as u64,
                attributes,
                status: Some(Status {
                    code: if failed {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    } as i32,
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string(attr::SERVICE_NAME, "loadlens")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let converted = convert(&request).unwrap();
    assert_eq!(converted.first_error, None);
    for (key, batch) in converted.batches {
        write_partition(root, &key, &[batch], 0).unwrap();
    }
}

fn store() -> TempDir {
    let dir = TempDir::new("slo");
    write_run(dir.path(), "steady");
    write_run(dir.path(), "outage");
    dir
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("slos")
        .join(name)
}

fn check(data: &Path, file: &Path, args: &[&str]) -> Output {
    loadlens()
        .args(["slo", "check"])
        .arg(file)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}

fn close(value: &Value, expected: f64) {
    let got = value
        .as_f64()
        .unwrap_or_else(|| panic!("{value} is not a number"));
    assert!(
        (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{got} != {expected}"
    );
}

#[test]
fn a_run_within_budget_passes_and_one_over_it_fails() {
    let store = store();
    let file = example("checkout.yaml");

    let out = check(
        store.path(),
        &file,
        &["--run", "steady", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["met"], true);
    assert_eq!(report["range"]["run_id"], "steady");
    // No manifest: the range is the run's first to last event (ends at 599.92 s).
    assert_eq!(report["range"]["start"], "2026-03-02T10:00:00.020000000Z");
    assert_eq!(report["range"]["end"], "2026-03-02T10:09:59.920000000Z");
    let o = &report["objectives"][0];
    assert_eq!(o["name"], "99% of checkouts succeed");
    assert_eq!(o["events"]["good"], 5_988);
    assert_eq!(o["events"]["total"], 6_000);
    close(&o["budget"]["sli"], 0.998);
    close(&o["budget"]["total"], 60.0);
    close(&o["budget"]["consumed"], 12.0);
    close(&o["budget"]["remaining"], 48.0);
    close(&o["budget"]["remaining_fraction"], 0.8);
    let alerts = o["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 4);
    assert!(alerts.iter().all(|a| a["firing"] == false), "{alerts:?}");
    // The one-hour window covers the ten minutes there are: 0.2% bad, burn 0.2.
    assert_eq!(alerts[0]["long"]["window"], 3600);
    assert_eq!(alerts[0]["long"]["covered"], 600);
    close(&alerts[0]["long"]["burn_rate"], 0.2);

    let out = check(
        store.path(),
        &file,
        &["--run", "outage", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SLO checkout-availability not met: 99% of checkouts succeed: SLI 83.133% below target 99.000%"),
        "{}",
        stderr(&out)
    );
    let report = json(&out);
    assert_eq!(report["met"], false);
    let o = &report["objectives"][0];
    assert_eq!(o["events"]["good"], 4_988);
    close(&o["budget"]["consumed"], 1_012.0);
    close(&o["budget"]["remaining"], -952.0);
    let alerts = o["alerts"].as_array().unwrap();
    // Every window burns above its factor: the whole run at 16.87, the last
    // five minutes (requests 3,000 to 5,999: 6 + 1,000 bad of 3,000) at 33.53.
    assert!(alerts.iter().all(|a| a["firing"] == true), "{alerts:?}");
    let page = &alerts[0];
    assert_eq!(page["severity"], "page");
    close(&page["long"]["burn_rate"], 1_012.0 / 6_000.0 / 0.01);
    assert_eq!(page["short"]["counts"]["total"], 3_000);
    assert_eq!(page["short"]["counts"]["good"], 1_994);
    close(&page["short"]["burn_rate"], 1_006.0 / 3_000.0 / 0.01);

    // The table says the same.
    let out = check(store.path(), &file, &["--run", "outage"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("objective 99% of checkouts succeed: VIOLATED"),
        "{text}"
    );
    assert!(text.contains("consumed          1012 bad events"), "{text}");
    assert!(text.contains("page       14.4  1h (10m)"), "{text}");
}

#[test]
fn windows_and_timeslices_are_counted_from_the_end() {
    let store = store();
    // A rolling 5-minute window ending 10:10:00 over both runs: requests whose
    // end is after 10:05:00, i.e. 3,000 to 5,999 of each run.
    let out = check(
        store.path(),
        &example("checkout.yaml"),
        &[
            "--window",
            "5m",
            "--end",
            "2026-03-02T10:10:00Z",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let o = &json(&out)["objectives"][0];
    assert_eq!(o["events"]["total"], 6_000);
    assert_eq!(o["events"]["good"], 6_000 - 6 - 1_006);

    // Timeslices of one minute, latency at most 250 ms: every request takes 20 ms.
    let latency = example("latency.yaml");
    let out = check(
        store.path(),
        &latency,
        &["--run", "outage", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let o = &json(&out)["objectives"][0];
    assert_eq!(o["slices"]["total"], 10);
    assert_eq!(o["slices"]["good"], 10);

    // At most 10 ms: every slice misses its 95%.
    let dir = TempDir::new("slo-latency");
    let strict = dir.path().join("strict.yaml");
    std::fs::write(
        &strict,
        std::fs::read_to_string(&latency)
            .unwrap()
            .replace("value: 250", "value: 10"),
    )
    .unwrap();
    let out = check(
        store.path(),
        &strict,
        &["--run", "steady", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let o = &json(&out)["objectives"][0];
    assert_eq!(o["slices"]["good"], 0);
    close(&o["budget"]["consumed"], 10.0);
}

#[test]
fn a_bad_slo_file_is_a_usage_error_with_its_line_and_column() {
    let store = store();
    let dir = TempDir::new("slo-bad");
    let file = dir.path().join("slo.yaml");
    let text = std::fs::read_to_string(example("checkout.yaml")).unwrap();
    std::fs::write(&file, text.replace("target: 0.99", "target: 99")).unwrap();
    let out = check(store.path(), &file, &["--run", "steady"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = text
        .lines()
        .position(|l| l.contains("target: 0.99"))
        .unwrap()
        + 1;
    let expected = format!("{}:{line}:15: ", file.display());
    assert!(
        stderr(&out).contains(&expected),
        "{expected}: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("invalid target 99"),
        "{}",
        stderr(&out)
    );

    // A filter that names no column is the user's mistake too, and says which source.
    std::fs::write(&file, text.replace("AND is_error", "AND is_eror")).unwrap();
    let out = check(store.path(), &file, &["--run", "steady"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the indicator's bad source"),
        "{}",
        stderr(&out)
    );

    // A run with no events cannot show the SLO is met.
    let out = check(store.path(), &example("checkout.yaml"), &["--run", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("run 'nope'"), "{}", stderr(&out));
}

/// `promtool`, which CI installs (Debian's `prometheus` package); missing, the test fails.
fn promtool() -> Command {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "promtool is not installed: install Debian's prometheus package (apt-get install -y prometheus); .ci/run does"
    );
    Command::new("promtool")
}

fn annotations(factor: &str, long: &str, short: &str, lasts: &str) -> String {
    format!(
        "summary: 'Checkout availability: error budget burning over {factor}x as fast as the objective allows'\n              description: The bad fraction over the last {long} and {short} exceeds {factor} x (1 - 0.99); at this rate the 30d budget lasts {lasts}."
    )
}

fn alert(severity: &str, long: &str, short: &str, factor: &str, lasts: &str) -> String {
    format!(
        "          - exp_labels: {{severity: {severity}, slo: checkout-availability, long_window: {long}, short_window: {short}}}\n            exp_annotations:\n              {}\n",
        annotations(factor, long, short, lasts)
    )
}

#[test]
fn generated_rules_pass_promtool_and_fire_on_a_fast_burn() {
    let dir = TempDir::new("slo-rules");
    let rules = dir.path().join("rules.yml");
    let out = loadlens()
        .args(["slo", "rules"])
        .arg(example("checkout.yaml"))
        .arg("-o")
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&rules).unwrap();
    assert!(
        text.contains("loadlens_run_errors_total{step=\"checkout\"}[5m]"),
        "{text}"
    );

    let checked = promtool()
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        stderr(&checked)
    );
    assert!(String::from_utf8_lossy(&checked.stdout).contains("SUCCESS: 12 rules found"));

    // Ten checkouts a second for two hours; 20%, 4% or 0.5% of them fail.
    // Budget 1%: the 1h/5m page needs over 14.4%, 6h/30m over 6%, 1d/2h over 3%, 3d/6h over 1%.
    let case = |errors_per_minute: u32, alerts: &str| {
        format!(
            "  - interval: 1m
    input_series:
      - series: 'loadlens_run_requests_total{{run_id=\"r\",step=\"checkout\"}}'
        values: '0+600x120'
      - series: 'loadlens_run_errors_total{{run_id=\"r\",step=\"checkout\",error_type=\"http_5xx\"}}'
        values: '0+{errors_per_minute}x120'
      - series: 'loadlens_run_errors_total{{run_id=\"r\",step=\"other\",error_type=\"http_5xx\"}}'
        values: '0+600x120'
    alert_rule_test:
      - eval_time: 100m
        alertname: CheckoutAvailabilityErrorBudgetBurn
        exp_alerts:{alerts}
"
        )
    };
    let page = alert("page", "1h", "5m", "14.4", "50h") + &alert("page", "6h", "30m", "6", "5d");
    let tickets =
        alert("ticket", "1d", "2h", "3", "10d") + &alert("ticket", "3d", "6h", "1", "30d");
    let tests = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n{}{}{}",
        case(120, &format!("\n{page}{tickets}")),
        case(24, &format!("\n{tickets}")),
        case(3, " []"),
    );
    let test_file = dir.path().join("rules_test.yml");
    std::fs::write(&test_file, &tests).unwrap();
    let tested = promtool()
        .arg("test")
        .arg("rules")
        .arg(&test_file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        tested.status.success(),
        "promtool test rules:\n{tests}\n{}{}",
        String::from_utf8_lossy(&tested.stdout),
        stderr(&tested)
    );

    // The same test fails when the fast burn is expected to stay quiet, so it does check.
    let wrong = tests.replacen(&format!("\n{page}{tickets}"), " []", 1);
    std::fs::write(&test_file, wrong).unwrap();
    let tested = promtool()
        .arg("test")
        .arg("rules")
        .arg(&test_file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !tested.status.success(),
        "promtool accepted a wrong expectation"
    );
}

#[test]
fn rules_without_a_prometheus_section_use_the_collector_metrics() {
    let dir = TempDir::new("slo-defaults");
    let file = dir.path().join("slo.yaml");
    let text = std::fs::read_to_string(example("checkout.yaml")).unwrap();
    let start = text.find("  prometheus:").unwrap();
    let end = text.find("  # loadlens extension: burn-rate").unwrap();
    std::fs::write(&file, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let out = loadlens()
        .args(["slo", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rules = String::from_utf8_lossy(&out.stdout);
    assert!(rules.contains(&format!(
        "(sum(rate({}[1h])) or vector(0)) / sum(rate({}[1h]))",
        collector::red::ERRORS,
        collector::red::REQUESTS
    )));
    // The latency example's 250 ms is a bucket bound of the collector's histogram.
    let out = loadlens()
        .args(["slo", "rules"])
        .arg(example("latency.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(
        "{}_bucket{{le=\"0.25\"}}[1m]",
        collector::red::LATENCY
    )));
}

/// The rules Prometheus loads in `dashboards/prometheus/` (and the compose
/// stack) are exactly what `loadlens slo rules` makes of each file in `slos/`
/// that has them, so the two cannot drift apart.
#[test]
fn the_prometheus_configuration_loads_the_rules_generated_from_slos() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules_dir = root.join("dashboards/prometheus/rules");
    let mut checked = 0;
    for entry in std::fs::read_dir(&rules_dir).unwrap() {
        let committed = entry.unwrap().path();
        let name = committed.file_stem().unwrap().to_str().unwrap().to_string();
        let slo = std::fs::read_dir(root.join("slos"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .contains(&format!("name: {name}\n"))
            })
            .unwrap_or_else(|| panic!("no SLO file in slos/ is named {name}"));
        // Run from the repository root with a relative path, as the header records it.
        let output = loadlens()
            .current_dir(root)
            .args(["slo", "rules"])
            .arg(slo.strip_prefix(root).unwrap())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            std::fs::read_to_string(&committed).unwrap(),
            "{} is stale: regenerate it with loadlens slo rules {} -o {}",
            committed.display(),
            slo.display(),
            committed.display()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no rules in {}", rules_dir.display());
    // promtool checks the configuration together with the rule files it names.
    let check = promtool()
        .args(["check", "config"])
        .arg(root.join("dashboards/prometheus/prometheus.yml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}{}", stderr(&check));
    assert!(said.contains("checkout-availability.yml"), "{said}");
}
