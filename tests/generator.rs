//! `loadlens run` end to end against a loopback target: scenario files,
//! flows, feeders, checks, thresholds, the token provider, measurement
//! fidelity, coordinated omission, the in-flight bound, think time, span
//! sampling, shards, the error taxonomy, the trace state, the run manifest
//! and progress lines.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::target::{Behaviour, Target};
use common::{TempDir, loadlens, sql_json, stderr};

/// Every test here runs alone: on a small machine two load runs side by
/// side would measure each other, and even the short ones (each starts
/// `loadlens` processes) took the fidelity tests' cores: a CI run saw a p50
/// of 23.2 ms against a 20.3 ms hold, with 77 iterations late.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn run_scenario(
    dir: &Path,
    yaml: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    run_scenario_with(dir, yaml, &[&["--no-telemetry"], extra].concat())
}

/// Runs a scenario with telemetry to a collector of its own, then stops the
/// collector cleanly so that every span it took is in the store; returns
/// the store, which also holds the run's ledger, and the summary.
fn run_traced(dir: &Path, yaml: &str) -> (PathBuf, serde_json::Value) {
    run_traced_with(dir, yaml, &[])
}

/// `run_traced` with more arguments for `loadlens run`.
fn run_traced_with(dir: &Path, yaml: &str, extra: &[&str]) -> (PathBuf, serde_json::Value) {
    let (grpc, http) = (common::free_addr(), common::free_addr());
    let store = dir.join("store");
    let collector = common::start_collector(&store, grpc, http, &["--flush-interval", "1s"]);
    let endpoint = format!("http://{grpc}");
    let data = store.to_str().unwrap();
    let args = [&["--collector", &endpoint, "--data", data], extra].concat();
    let (output, summary) = run_scenario_with(dir, yaml, &args);
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    assert!(collector.terminate(), "the collector did not stop cleanly");
    (store, summary)
}

fn run_scenario_with(
    dir: &Path,
    yaml: &str,
    args: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let scenario = scenario_file(dir, yaml);
    let scenario = scenario.to_str().unwrap();
    run_with_summary(dir, &[&["run", scenario], args].concat())
}

/// Writes `yaml` to `DIR/scenario.yaml` and returns its path.
fn scenario_file(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let scenario = dir.join("scenario.yaml");
    std::fs::write(&scenario, yaml).unwrap();
    scenario
}

/// Runs `loadlens ARGS --quiet --summary-json DIR/summary.json`; returns
/// its output and the summary (`Null` if none was written).
fn run_with_summary(dir: &Path, args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let summary = dir.join("summary.json");
    let _ = std::fs::remove_file(&summary);
    let output = loadlens()
        .args(args)
        .args(["--quiet", "--summary-json"])
        .arg(&summary)
        .output()
        .unwrap();
    let json = std::fs::read(&summary)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (output, json)
}

/// Checks a summary file against `generator/summary.schema.json` with the
/// Python `jsonschema` validator.
fn assert_matches_schema(summary: &Path) -> Result<(), String> {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("generator/summary.schema.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/validate_summary.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(schema)
        .arg(summary)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn step<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {summary}"))
}

#[test]
fn a_flow_carries_extracted_values_and_feeder_rows_from_step_to_step() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("flow");
    std::fs::write(dir.path().join("users.csv"), "name\nann\nbob\ncid\ndee\n").unwrap();
    let yaml = format!(
        r#"
name: shop
base_url: http://{addr}
feeders:
  users: {{ file: users.csv, mode: sequential }}
requests:
  login:
    method: POST
    url: /login
    body: '{{"user": "{{{{users.name}}}}"}}'
    checks: [{{ status: 200 }}]
    extract:
      token: {{ json: $.token }}
  cart:
    url: /cart/{{{{users.name}}}}
    headers: {{ authorization: 'Bearer {{{{token}}}}' }}
    checks:
      - status: 200
      - body_contains: '"items": 3'
      - {{ header: content-type, contains: json }}
  home:
    url: /?id={{{{uuid}}}}&n={{{{rand_int 1 9}}}}
flows:
  buy: [login, cart]
mix: {{ buy: 3, home: 1 }}
load: {{ model: constant, rate: 80, duration: 3s, warmup: 1s }}
thresholds:
  errors: ["rate==0"]
  checks: ["rate==1"]
  http_req_duration: ["p(99)<1000"]
  "http_req_duration{{step:cart}}": ["max<1000"]
"#,
        addr = target.addr
    );
    let (output, summary) = run_scenario(dir.path(), &yaml, &[]);
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    let (login, cart, home) = (
        step(&summary, "login"),
        step(&summary, "cart"),
        step(&summary, "home"),
    );
    // Every flow that logged in went on to its cart with the token of its own user.
    assert_eq!(login["requests"], cart["requests"], "{summary}");
    assert!(cart["requests"].as_u64().unwrap() > 100, "{summary}");
    assert!(home["requests"].as_u64().unwrap() > 20, "{summary}");
    assert_eq!(target.seen.wrong_user.load(Ordering::Relaxed), 0);
    assert_eq!(target.seen.unauthorized.load(Ordering::Relaxed), 0);
    // Warm-up requests reached the target but not the figures.
    assert!(summary["warmup_requests"].as_u64().unwrap() > 0);
    let measured = login["requests"].as_u64().unwrap() * 2 + home["requests"].as_u64().unwrap();
    assert_eq!(summary["requests"].as_u64().unwrap(), measured);
    // The target saw one successful cart per login, warm-up included.
    let carts = target.seen.carts_ok.load(Ordering::Relaxed);
    assert_eq!(carts, target.seen.logins.load(Ordering::Relaxed));
    assert!(carts > cart["requests"].as_u64().unwrap());
    assert_eq!(summary["checks_failed"], 0);
    assert_eq!(summary["thresholds_passed"], true);
    assert_eq!(summary["thresholds"].as_array().unwrap().len(), 4);

    // The summary follows its committed JSON Schema, and the check can fail.
    let path = dir.path().join("summary.json");
    assert_matches_schema(&path).unwrap();
    let mut broken = summary.clone();
    broken.as_object_mut().unwrap().remove("latency_ms");
    broken["requests"] = serde_json::json!(-1);
    std::fs::write(&path, broken.to_string()).unwrap();
    let err = assert_matches_schema(&path).unwrap_err();
    assert!(err.contains("latency_ms") && err.contains("-1"), "{err}");
}

#[test]
fn a_failed_threshold_exits_1_and_abort_on_fail_stops_the_run_early() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("thresholds");
    let yaml = format!(
        "requests:\n  broken: {{ url: 'http://{}/status/503' }}\nload: {{ model: constant, rate: 50, duration: 2s }}\nthresholds:\n  errors: ['rate<0.01']\n",
        target.addr
    );
    let (output, summary) = run_scenario(dir.path(), &yaml, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("thresholds failed: errors: rate<0.01"),
        "{}",
        stderr(&output)
    );
    assert_eq!(summary["errors_by_type"]["http_5xx"], summary["requests"]);
    assert_eq!(summary["thresholds"][0]["observed"], 1.0);

    let yaml = format!(
        "requests:\n  broken: {{ url: 'http://{}/status/503' }}\nload: {{ model: constant, rate: 50, duration: 60s }}\nthresholds:\n  errors:\n    - {{ threshold: 'rate<0.01', abortOnFail: true }}\n",
        target.addr
    );
    let began = Instant::now();
    let (output, summary) = run_scenario(dir.path(), &yaml, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "the run was not aborted"
    );
    let reason = summary["aborted"].as_str().unwrap_or_default();
    assert!(reason.contains("rate<0.01"), "{summary}");
}

#[test]
fn scenario_mistakes_exit_2_naming_file_line_and_column() {
    let _serial = serial();
    let dir = TempDir::new("scenario-errors");
    let cases = [
        // An unknown key.
        (
            "requests:\n  home:\n    url: http://127.0.0.1:1/\n    methd: GET\nload: { model: constant, rate: 1, duration: 1s }\n",
            ":4:5: ",
            "unknown field `methd`",
        ),
        // A type error.
        (
            "requests:\n  home: { url: 'http://127.0.0.1:1/' }\nload:\n  model: constant\n  rate: lots\n  duration: 1s\n",
            ":5:",
            "rate",
        ),
        // A flow naming a request that does not exist.
        (
            "requests:\n  home: { url: 'http://127.0.0.1:1/' }\nflows:\n  f: [home, cart]\nload: { model: constant, rate: 1, duration: 1s }\n",
            ":4:3: ",
            "'cart' is not a request",
        ),
        // A template naming nothing.
        (
            "requests:\n  home: { url: 'http://127.0.0.1:1/{{nope}}' }\nload: { model: constant, rate: 1, duration: 1s }\n",
            ":2:",
            "'{{nope}}' is not a template value",
        ),
        // A threshold that does not parse.
        (
            "requests:\n  home: { url: 'http://127.0.0.1:1/' }\nload: { model: constant, rate: 1, duration: 1s }\nthresholds:\n  http_req_duration: ['p99<3']\n",
            ":5:3: ",
            "unknown aggregation",
        ),
    ];
    for (yaml, location, message) in cases {
        let (output, _) = run_scenario(dir.path(), yaml, &[]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{yaml}\n{err}");
        assert!(
            err.contains(&format!("scenario.yaml{location}")),
            "{yaml}\n{err}"
        );
        assert!(err.contains(message), "{yaml}\n{err}");
    }
}

/// A scenario of cart requests whose token comes from a login request of
/// the target at `addr`, under `load`.
fn login_scenario(addr: impl std::fmt::Display, load: &str) -> String {
    format!(
        r#"
base_url: http://{addr}
auth:
  login:
    request: login
    token: {{ json: $.token }}
    expires_in: {{ json: $.expires_in }}
requests:
  login:
    method: POST
    url: /login
    body: '{{"user": "any"}}'
  cart:
    url: /cart/any
    checks: [{{ status: 200 }}]
mix: {{ cart: 1 }}
load: {load}
"#
    )
}

#[test]
fn tokens_expiring_every_two_seconds_never_fail_a_request() {
    let _serial = serial();
    let target = Target::start(Behaviour {
        token_ttl: Duration::from_secs(2),
        ..Behaviour::default()
    });
    let dir = TempDir::new("auth");
    let yaml = login_scenario(target.addr, "{ model: constant, rate: 100, duration: 20s }");
    let (output, summary) = run_scenario(dir.path(), &yaml, &[]);
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    assert_eq!(summary["requests_failed"], 0, "{summary}");
    assert!(summary["requests"].as_u64().unwrap() >= 1_990, "{summary}");
    let auth = &summary["auth"];
    let refreshes = auth["refreshes"].as_u64().unwrap();
    // A 2 s token over 20 s: at least 10 tokens, and refreshed ahead of expiry
    // by one fetch at a time, not one per waiting request.
    assert!((10..=25).contains(&refreshes), "{summary}");
    assert_eq!(refreshes, target.seen.logins.load(Ordering::Relaxed));
    assert_eq!(auth["failures"], 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("tokens:"));
    assert_matches_schema(&dir.path().join("summary.json")).unwrap();
}

#[test]
fn latency_against_a_fixed_20ms_service_is_reported_within_half_a_millisecond() {
    const RUNS: usize = 6;
    let _serial = serial();
    // The truth is what a plain client sees from the same target at the
    // same time: one connection, one request at a time, timed around a
    // blocking write and read. The target holds each request 20 ms, and
    // the kernel and the target's replies add to that what they add for
    // any client; the generator must add no more than 0.5 ms of its own.
    // What they add doubles when the machine runs at half speed (CI,
    // 2026-12-07: p50 0.52-0.92 ms over the target's hold, in a spell when
    // every program here ran at half its usual speed), so a comparison with
    // the hold alone failed for the machine, not for the generator.
    //
    // On 2 cores that other tests and builds keep busy, the generator's own
    // thread can still wake late and a run fall behind its schedule (seen
    // in CI: p50 22.6 ms against 20.2 held, 76 iterations late; and in a
    // slow spell 49-133 late in three runs in a row, with the target's
    // sleeps overshooting by up to 1.2 ms), so one of six runs, a second
    // apart, must agree; all are shown if none does.
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        if !runs.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
        let (p50, held, plain, summary) = fidelity_run();
        assert!(summary["requests"].as_u64().unwrap() >= 4_990, "{summary}");
        if (held - 20.0).abs() <= 1.0 && (p50 - plain).abs() <= 0.5 {
            return;
        }
        runs.push(format!(
            "p50 {p50} ms, a plain client's p50 {plain} ms, held {held} ms, {} iterations late",
            summary["iterations_late"]
        ));
    }
    panic!(
        "latency p50 not within 0.5 ms of a plain client's (with the target's median hold within 1 ms of 20 ms) in any of {RUNS} runs: {runs:?}"
    );
}

/// The latencies, in ms, of `/slow` requests that a plain client sends to
/// `addr` one at a time over one connection: those sent between `from` and
/// `until` after the thread starts.
fn plain_client(
    addr: std::net::SocketAddr,
    from: Duration,
    until: Duration,
) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut latencies = Vec::new();
        let mut buffer = [0u8; 1024];
        while started.elapsed() < until {
            let sent = Instant::now();
            stream
                .write_all(b"GET /slow HTTP/1.1\r\nhost: target\r\n\r\n")
                .unwrap();
            // The reply's body is "ok": read until it has come.
            let mut reply = Vec::new();
            while !reply.ends_with(b"\r\n\r\nok") {
                let n = stream.read(&mut buffer).unwrap();
                assert!(n > 0, "the target closed the connection");
                reply.extend_from_slice(&buffer[..n]);
            }
            if sent.duration_since(started) >= from {
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
            }
        }
        latencies
    })
}

/// One run at 1,000 requests a second against a target that holds each
/// request 20 ms: the latency p50 the summary reports, the target's median
/// hold, the median latency of a plain client's requests during the run
/// (all in ms), and the summary.
fn fidelity_run() -> (f64, f64, f64, serde_json::Value) {
    let target = Target::start(Behaviour::default());
    // The run warms up for 1 s and measures for 5 s after its process
    // starts: the plain client's requests from 1.5 s to 5.5 s fall within.
    let plain = plain_client(
        target.addr,
        Duration::from_millis(1_500),
        Duration::from_millis(5_500),
    );
    let dir = TempDir::new("fidelity");
    let summary_path = dir.path().join("summary.json");
    let output = loadlens()
        .args([
            "run",
            "--url",
            &target.url("/slow"),
            "--rate",
            "1000",
            "--duration",
            "5s",
        ])
        .args([
            "--warmup",
            "1s",
            "--no-telemetry",
            "--quiet",
            "--summary-json",
        ])
        .arg(&summary_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    let p50 = summary["latency_ms"]["p50"].as_f64().unwrap();
    // The target sleeps and then spins to 20 ms, but on 2 busy cores its
    // thread can still wake late: the truth is what it really held.
    let held = target.seen.slow_hold_median().as_secs_f64() * 1e3;
    let service = summary["service_time_ms"]["p50"].as_f64().unwrap();
    let mut plain = plain.join().unwrap();
    assert!(
        plain.len() >= 100,
        "the plain client sent {} requests",
        plain.len()
    );
    plain.sort_by(f64::total_cmp);
    let plain = plain[plain.len() / 2];
    eprintln!(
        "at 1,000 req/s: latency p50 {p50} ms, service time p50 {service} ms, median hold {held} ms, a plain client's p50 {plain} ms"
    );
    (p50, held, plain, summary)
}

#[test]
fn a_two_second_stall_shows_in_latency_but_not_in_service_time() {
    let _serial = serial();
    let target = Target::start(Behaviour {
        stall_after: Duration::from_secs(3),
        stall_for: Duration::from_secs(2),
        ..Behaviour::default()
    });
    let dir = TempDir::new("stall");
    let summary_path = dir.path().join("summary.json");
    let output = loadlens()
        .args([
            "run",
            "--url",
            &target.url("/stall"),
            "--rate",
            "200",
            "--duration",
            "10s",
        ])
        .args([
            "--connections",
            "10",
            "--no-telemetry",
            "--quiet",
            "--summary-json",
        ])
        .arg(&summary_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    // ~400 requests were due during the stall and waited for it: latency from
    // their intended start says so. Only the 10 on the wire saw it as service time.
    let latency_p99 = summary["latency_ms"]["p99"].as_f64().unwrap();
    let service_p99 = summary["service_time_ms"]["p99"].as_f64().unwrap();
    assert!(latency_p99 >= 1_000.0, "{summary}");
    assert!(service_p99 < 100.0, "{summary}");
    assert!(
        summary["service_time_ms"]["max"].as_f64().unwrap() >= 1_500.0,
        "{summary}"
    );
}

#[test]
fn four_shards_send_what_one_process_sends_and_merge_exactly() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let single = TempDir::new("shards-single");
    let sharded = TempDir::new("shards-four");
    let url = target.url("/ok");
    let run = |data: &Path, shard: &str, start_at: &str| {
        let mut command = loadlens();
        command
            .args(["run", "--url", &url, "--rate", "400", "--duration", "3s"])
            .args([
                "--no-telemetry",
                "--quiet",
                "--run-id",
                "sharded",
                "--shard",
                shard,
            ])
            .arg("--data")
            .arg(data);
        if !start_at.is_empty() {
            command.args(["--start-at", start_at]);
        }
        command.stdout(std::process::Stdio::null()).spawn().unwrap()
    };
    let status = run(single.path(), "0/1", "").wait().unwrap();
    assert!(status.success());
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 2.0;
    let start = format!("{start:.3}");
    let children: Vec<_> = (0..4)
        .map(|i| run(sharded.path(), &format!("{i}/4"), &start))
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let count = |data: &Path| {
        let rows = sql_json(
            data,
            "SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS ids, COUNT(DISTINCT shard) AS shards,
                    COUNT(DISTINCT vu) AS vus FROM ledger",
        );
        let count = |column: &str| rows[0][column].as_i64().unwrap();
        (count("n"), count("ids"), count("shards"), count("vus"))
    };
    // Each arrival of the open model is its own virtual user, and shards
    // number theirs without meeting.
    assert_eq!(count(single.path()), (1200, 1200, 1, 1200));
    assert_eq!(count(sharded.path()), (1200, 1200, 4, 1200));
    // Percentiles over the merged raw rows of all shards, from SQL, equal the
    // ones computed here from the same rows.
    let rows = sql_json(
        sharded.path(),
        "SELECT CAST(end_time AS BIGINT) - CAST(intended_start AS BIGINT) AS latency_ns FROM ledger",
    );
    let mut latencies: Vec<f64> = rows
        .iter()
        .map(|r| r["latency_ns"].as_i64().unwrap() as f64)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let merged = sql_json(
        sharded.path(),
        "SELECT percentile(CAST(CAST(end_time AS BIGINT) - CAST(intended_start AS BIGINT) AS DOUBLE), 0.99) AS p99 FROM ledger",
    );
    let h = 0.99 * (latencies.len() - 1) as f64;
    let (lo, frac) = (h.floor() as usize, h - h.floor());
    let expected = latencies[lo] + (latencies[lo + 1] - latencies[lo]) * frac;
    let got = merged[0]["p99"].as_f64().unwrap();
    assert!(
        (got - expected).abs() <= 1e-6 * expected,
        "SQL {got} vs {expected}"
    );
}

#[test]
fn the_example_scenarios_compile() {
    let _serial = serial();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let file = generator::ScenarioFile::read(&path).unwrap();
            generator::Plan::compile(&file, (0, 1))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[test]
fn http2_with_prior_knowledge_reaches_an_h2c_target() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("h2c");
    let yaml = format!(
        "http: {{ version: http2 }}\nrequests:\n  ok: {{ url: 'http://{}/ok', checks: [{{ status: 200 }}] }}\nload: {{ model: closed, vus: 4, duration: 1s }}\n",
        target.addr
    );
    let (output, summary) = run_scenario(dir.path(), &yaml, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let requests = summary["requests"].as_u64().unwrap();
    assert!(requests > 50, "{summary}");
    assert_eq!(target.seen.http2.load(Ordering::Relaxed), requests);
}

#[test]
fn tls_with_a_given_ca_negotiates_http2() {
    let _serial = serial();
    let dir = TempDir::new("generator-tls");
    let (cert, key) = common::self_signed_cert(dir.path());
    // The collector's OTLP/HTTP port speaks TLS with ALPN (h2, http/1.1) and
    // has a health endpoint: a convenient HTTPS target.
    let (grpc, http) = (common::free_addr(), common::free_addr());
    let _collector = common::start_collector(
        &dir.path().join("store"),
        grpc,
        http,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let yaml = |http_settings: &str| {
        format!(
            "http: {{ {http_settings} }}\nrequests:\n  health: {{ url: 'https://127.0.0.1:{}/healthz', checks: [{{ status: 200 }}, {{ body_contains: ok }}] }}\nload: {{ model: closed, vus: 2, duration: 1s }}\n",
            http.port()
        )
    };
    // HTTP/2 only: success means ALPN agreed on h2 over a verified TLS session.
    let (output, summary) =
        run_scenario(dir.path(), &yaml("version: http2, ca_file: cert.pem"), &[]);
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    assert!(summary["requests"].as_u64().unwrap() > 5, "{summary}");
    assert_eq!(summary["requests_failed"], 0, "{summary}");
    // Without the CA the certificate is not trusted, and the error says TLS.
    let (_, summary) = run_scenario(dir.path(), &yaml("version: auto"), &[]);
    assert_eq!(summary["requests_ok"], 0, "{summary}");
    assert_eq!(
        summary["errors_by_type"]["tls"], summary["requests"],
        "{summary}"
    );
}

#[test]
fn oauth2_client_credentials_keep_every_request_authorized() {
    let _serial = serial();
    let target = Target::start(Behaviour {
        token_ttl: Duration::from_secs(2),
        ..Behaviour::default()
    });
    let dir = TempDir::new("oauth2");
    let yaml = |secret: &str| {
        format!(
            "auth:\n  oauth2: {{ token_url: 'http://{addr}/oauth/token', client_id: loadlens, client_secret: '{secret}' }}\nrequests:\n  cart: {{ url: 'http://{addr}/cart/any', checks: [{{ status: 200 }}] }}\nload: {{ model: constant, rate: 50, duration: 6s }}\n",
            addr = target.addr
        )
    };
    // The secret goes form-encoded: 'é' and ' ' must arrive as %C3%A9 and +.
    let (output, summary) = run_scenario(dir.path(), &yaml("sécret 1"), &[]);
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    assert_eq!(summary["requests_failed"], 0, "{summary}");
    let refreshes = summary["auth"]["refreshes"].as_u64().unwrap();
    assert!((3..=8).contains(&refreshes), "{summary}");
    assert_eq!(refreshes, target.seen.logins.load(Ordering::Relaxed));
    // A wrong secret: no token, every request fails as `auth`, none is sent.
    let before = target.seen.carts_ok.load(Ordering::Relaxed)
        + target.seen.unauthorized.load(Ordering::Relaxed);
    let (output, summary) = run_scenario(dir.path(), &yaml("wrong"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        summary["errors_by_type"]["auth"], summary["requests"],
        "{summary}"
    );
    let after = target.seen.carts_ok.load(Ordering::Relaxed)
        + target.seen.unauthorized.load(Ordering::Relaxed);
    assert_eq!(before, after);
}

#[test]
fn sampling_keeps_errors_and_a_share_of_the_rest() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("sampling");
    let yaml = format!(
        "requests:\n  ok: {{ url: 'http://{addr}/ok' }}\n  broken: {{ url: 'http://{addr}/status/500' }}\nmix: {{ ok: 9, broken: 1 }}\ntelemetry: {{ sample: 0.2 }}\nload: {{ model: constant, rate: 500, duration: 4s }}\n",
        addr = target.addr
    );
    let (store, summary) = run_traced(dir.path(), &yaml);
    let requests = summary["requests"].as_u64().unwrap();
    let errors = summary["requests_failed"].as_u64().unwrap();
    let exported = summary["spans_exported"].as_u64().unwrap();
    let sampled_out = summary["spans_sampled_out"].as_u64().unwrap();
    assert_eq!(exported + sampled_out, requests, "{summary}");
    // All errors, plus about a fifth of the 90 % that succeeded.
    let kept_ok = (exported - errors) as f64 / (requests - errors) as f64;
    assert!((0.15..=0.25).contains(&kept_ok), "{kept_ok}: {summary}");
    // The ledger still has every request, and says which spans were exported.
    let rows = sql_json(
        &store,
        "SELECT COUNT(*) AS n, SUM(CASE WHEN span_exported THEN 1 ELSE 0 END) AS exported,
                SUM(CASE WHEN error_type IS NOT NULL AND NOT span_exported THEN 1 ELSE 0 END) AS lost_errors
         FROM ledger",
    );
    assert_eq!(rows[0]["n"].as_u64().unwrap(), requests);
    assert_eq!(rows[0]["exported"].as_u64().unwrap(), exported);
    assert_eq!(rows[0]["lost_errors"].as_u64().unwrap(), 0);
}

#[test]
fn arrivals_beyond_the_in_flight_bound_are_counted_as_dropped() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("in-flight");
    // 200 arrivals a second against a 20 ms service, at most 2 in flight: the
    // target can take 100 a second at best, so most arrivals find the bound full.
    let url = target.url("/slow");
    let (output, summary) = run_with_summary(
        dir.path(),
        &[
            "run",
            "--url",
            &url,
            "--rate",
            "200",
            "--duration",
            "2s",
            "--max-in-flight",
            "2",
            "--no-telemetry",
        ],
    );
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    let dropped = summary["requests_dropped"].as_u64().unwrap();
    let sent = summary["requests_sent"].as_u64().unwrap();
    assert!(dropped > 0, "{summary}");
    assert!(sent > 0, "{summary}");
    assert_eq!(summary["stages"][0]["dropped"], dropped, "{summary}");
    // Each of the 400 arrivals (k / 200 s for k < 400) was either sent or
    // dropped; the stage waits for those in flight, so every sent one is counted.
    assert_eq!(sent + dropped, 400, "{summary}");
    assert_eq!(summary["requests"], sent, "{summary}");
    assert_eq!(target.seen.requests.load(Ordering::Relaxed), sent);
}

#[test]
fn a_token_revoked_before_its_expiry_is_renewed_once_and_the_request_retried() {
    let _serial = serial();
    // Tokens say they live 60 s, but the target revokes each after 500 carts:
    // the generator learns of it only from a 401. A login takes 50 ms, so
    // the arrivals of that time (2 ms apart) all see the same refusal. A
    // retry is refused again only if 500 later arrivals use up the new
    // token first: a stall of a second, which a loaded machine may have
    // at 200 uses (0.4 s) but should not at this.
    let uses = 500;
    let target = Target::start(Behaviour {
        token_uses: uses,
        login_delay: Duration::from_millis(50),
        ..Behaviour::default()
    });
    let dir = TempDir::new("auth-revoked");
    let yaml = login_scenario(target.addr, "{ model: constant, rate: 500, duration: 4s }");
    let (output, summary) = run_scenario(dir.path(), &yaml, &[]);
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    assert_eq!(summary["requests"], 2_000, "{summary}");
    assert_eq!(summary["requests_failed"], 0, "{summary}");
    let carts = target.seen.carts_ok.load(Ordering::Relaxed);
    assert_eq!(carts, 2_000);
    let auth = &summary["auth"];
    assert_eq!(auth["failures"], 0, "{summary}");
    // Each 401 was answered by one retry, and no retry was refused again.
    let retries = auth["retries"].as_u64().unwrap();
    assert!(retries > 0, "{summary}");
    assert_eq!(retries, target.seen.unauthorized.load(Ordering::Relaxed));
    // One renewal per revoked token, however many requests saw it refused:
    // every token but the last served its 500 carts.
    let refreshes = auth["refreshes"].as_u64().unwrap();
    assert_eq!(refreshes, carts.div_ceil(uses), "{summary}");
    assert_eq!(refreshes, target.seen.logins.load(Ordering::Relaxed));
}

#[test]
fn sampling_keeps_every_request_slower_than_the_outlier_bound() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("sampling-slow");
    // Nothing is sampled by chance: only outliers (and errors, here none) are kept.
    let yaml = format!(
        "requests:\n  ok: {{ url: 'http://{addr}/ok' }}\n  slow: {{ url: 'http://{addr}/slow' }}\nmix: {{ ok: 4, slow: 1 }}\ntelemetry: {{ sample: 0, keep_slower_than: 15ms }}\nload: {{ model: constant, rate: 100, duration: 3s }}\n",
        addr = target.addr
    );
    let (store, summary) = run_traced(dir.path(), &yaml);
    assert_eq!(summary["requests_failed"], 0, "{summary}");
    let requests = summary["requests"].as_u64().unwrap();
    let exported = summary["spans_exported"].as_u64().unwrap();
    assert_eq!(
        exported + summary["spans_sampled_out"].as_u64().unwrap(),
        requests,
        "{summary}"
    );
    // The ledger's latency is the one the sampler saw, to the nanosecond: a
    // span was exported exactly when its request took 15 ms or more.
    let rows = sql_json(
        &store,
        "WITH l AS (SELECT step, span_exported,
                CAST(end_time AS BIGINT) - CAST(intended_start AS BIGINT) >= 15000000 AS outlier
                FROM ledger)
         SELECT COUNT(*) AS n,
                SUM(CASE WHEN span_exported THEN 1 ELSE 0 END) AS exported,
                SUM(CASE WHEN step = 'slow' THEN 1 ELSE 0 END) AS slow,
                SUM(CASE WHEN step = 'slow' AND NOT span_exported THEN 1 ELSE 0 END) AS slow_lost,
                SUM(CASE WHEN NOT outlier THEN 1 ELSE 0 END) AS fast,
                SUM(CASE WHEN outlier <> span_exported THEN 1 ELSE 0 END) AS mismatched
         FROM l",
    );
    let count = |column: &str| rows[0][column].as_u64().unwrap();
    assert_eq!(count("n"), requests);
    assert_eq!(count("exported"), exported);
    // The 20 ms requests were all kept, and the fast ones were sampled out.
    assert!(count("slow") > 0, "{rows:?}");
    assert_eq!(count("slow_lost"), 0, "{rows:?}");
    assert!(count("fast") > 0, "{rows:?}");
    assert_eq!(count("mismatched"), 0, "{rows:?}");
}

#[test]
fn a_closed_model_with_think_time_sends_what_the_think_time_allows() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("think-time");
    let yaml = format!(
        "requests:\n  ok: {{ url: 'http://{}/ok' }}\nload: {{ model: closed, vus: 4, think_time: 200ms, duration: 3s }}\n",
        target.addr
    );
    let (output, summary) = run_scenario(dir.path(), &yaml, &[]);
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    let requests = summary["requests"].as_u64().unwrap();
    assert_eq!(summary["requests_failed"], 0, "{summary}");
    assert_eq!(target.seen.requests.load(Ordering::Relaxed), requests);
    // A virtual user's k-th iteration starts k think times in at the
    // earliest, and none starts after 3 s: at most 15 each (k = 0..14), 60
    // in all; one more each is slack for the clock. Iterations slower than a
    // think time are all that could bring it below half of that.
    assert!(requests <= 4 * (15 + 1), "{summary}");
    assert!(requests >= 30, "{summary}");
}

#[test]
fn a_closed_stage_ends_at_its_duration_even_in_the_middle_of_a_think_time() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("think-past-end");
    // Each user starts at 0 s and 2 s; the think time after the second would
    // last to 4 s, a second after the stage was to end.
    let yaml = format!(
        "requests:\n  ok: {{ url: 'http://{}/ok' }}\nload: {{ model: closed, vus: 2, think_time: 2s, duration: 3s }}\n",
        target.addr
    );
    let (output, summary) = run_scenario(dir.path(), &yaml, &[]);
    assert!(output.status.success(), "{}\n{summary}", stderr(&output));
    assert_eq!(summary["requests"], 4, "{summary}");
    // Idle waiting past the end is no part of the run: the throughput is
    // over the 3 s asked for, not over the last think time too.
    let seconds = summary["duration_s"].as_f64().unwrap();
    assert!((3.0..3.5).contains(&seconds), "{summary}");
}

#[test]
fn the_trace_state_goes_beside_traceparent_and_onto_every_span() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("tracestate");
    // Written with the optional whitespace and an empty member the grammar
    // allows; sent and recorded without them.
    let yaml = format!(
        "tracestate: 'loadlens=e2e , fw529a3039@dt=k-1,'\nrequests:\n  traced: {{ url: 'http://{}/traced' }}\nload: {{ model: constant, rate: 20, duration: 1s }}\n",
        target.addr
    );
    let state = "loadlens=e2e,fw529a3039@dt=k-1";
    let (store, summary) = run_traced(dir.path(), &yaml);
    assert_eq!(summary["requests"], 20, "{summary}");
    let seen = std::mem::take(&mut *target.seen.trace_headers.lock().unwrap());
    assert_eq!(seen.len(), 20);
    let mut sent_traces = Vec::new();
    for (parents, states) in &seen {
        assert_eq!(parents.len(), 1, "{seen:?}");
        assert_eq!(states, &[state], "{seen:?}");
        sent_traces.push(parents[0].split('-').nth(1).unwrap().to_string());
    }
    sent_traces.sort();
    // The span of each request carries the trace state it was sent with.
    let spans = sql_json(
        &store,
        "SELECT encode(CAST(trace_id AS BYTEA), 'hex') AS trace, trace_state
         FROM spans WHERE kind = 'CLIENT' ORDER BY trace",
    );
    let traces: Vec<&str> = spans.iter().map(|s| s["trace"].as_str().unwrap()).collect();
    assert_eq!(traces, sent_traces);
    let mut recorded = spans
        .iter()
        .map(|s| s.get("trace_state").and_then(|v| v.as_str()));
    assert!(recorded.all(|s| s == Some(state)), "{spans:?}");

    // Quick mode takes it as a flag; --no-propagate sends neither header.
    let url = target.url("/traced");
    let quick = ["run", "--url", &url, "--rate", "20", "--duration", "1s"];
    let quick = [&quick[..], &["--no-telemetry", "--tracestate", "k=v"]].concat();
    let (output, _) = run_with_summary(dir.path(), &quick);
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = std::mem::take(&mut *target.seen.trace_headers.lock().unwrap());
    assert_eq!(seen.len(), 20);
    assert!(
        seen.iter().all(|(p, s)| p.len() == 1 && s == &["k=v"]),
        "{seen:?}"
    );
    let (output, _) = run_with_summary(dir.path(), &[&quick[..], &["--no-propagate"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = target.seen.trace_headers.lock().unwrap();
    assert_eq!(seen.len(), 20);
    assert!(
        seen.iter().all(|(p, s)| p.is_empty() && s.is_empty()),
        "{seen:?}"
    );
}

#[test]
fn each_error_type_is_counted_apart_and_named_on_spans_and_metrics() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let unanswered = common::Unanswered::start();
    let refused = common::free_addr();
    let dir = TempDir::new("error-types");
    // `.invalid` never resolves (RFC 6761). Without a network the resolver
    // may not answer at all: the connect timeout bounds the lookup, which
    // then counts as `dns` too.
    let yaml = format!(
        r#"
http: {{ timeout: 5s, connect_timeout: 300ms }}
requests:
  dns: {{ url: 'http://loadlens-test.invalid/' }}
  connect_timeout: {{ url: 'http://{unanswered}/' }}
  refused: {{ url: 'http://{refused}/' }}
  not_found: {{ url: 'http://{addr}/status/404' }}
  check: {{ url: 'http://{addr}/ok', checks: [{{ body_contains: absent }}] }}
load: {{ model: constant, rate: 20, duration: 3s }}
"#,
        unanswered = unanswered.addr,
        addr = target.addr
    );
    let (store, summary) = run_traced(dir.path(), &yaml);
    let expected = [
        ("dns", "dns"),
        ("connect_timeout", "timeout"),
        ("refused", "connect_refused"),
        ("not_found", "http_4xx"),
        ("check", "check_failed"),
    ];
    // Every request failed, each step in its own way, counted apart.
    assert_eq!(summary["requests"], 60, "{summary}");
    assert_eq!(summary["requests_failed"], 60, "{summary}");
    let by_type = summary["errors_by_type"].as_object().unwrap();
    assert_eq!(by_type.len(), expected.len(), "{summary}");
    for (name, kind) in expected {
        let requests = &step(&summary, name)["requests"];
        assert!(requests.as_u64().unwrap() > 0, "{name}: {summary}");
        assert_eq!(by_type.get(kind), Some(requests), "{name}: {summary}");
    }

    // Each span names its error.
    let spans = sql_json(
        &store,
        "SELECT step, error_type, COUNT(*) AS n FROM spans
         WHERE kind = 'CLIENT' GROUP BY step, error_type ORDER BY step",
    );
    assert_eq!(spans.len(), expected.len(), "{spans:?}");
    for row in &spans {
        let name = row["step"].as_str().unwrap();
        let kind = expected.iter().find(|(s, _)| *s == name).unwrap().1;
        assert_eq!(row.get("error_type"), Some(&kind.into()), "{spans:?}");
        assert_eq!(row["n"], step(&summary, name)["requests"], "{spans:?}");
    }

    // The per-second metrics count errors by type; the last point of each
    // cumulative count is the run's total.
    let errors = sql_json(
        &store,
        "SELECT attributes['error.type'] AS kind, MAX(value_int) AS n, COUNT(*) AS points
         FROM metrics_number WHERE metric_name = 'loadlens.generator.errors'
         GROUP BY attributes['error.type']",
    );
    assert_eq!(errors.len(), expected.len(), "{errors:?}");
    for row in &errors {
        let kind = row["kind"].as_str().unwrap();
        assert_eq!(row["n"], by_type[kind], "{errors:?}");
    }
    // Points came during the run, not only at its end.
    let points: u64 = errors.iter().map(|r| r["points"].as_u64().unwrap()).sum();
    assert!(points > expected.len() as u64, "{errors:?}");
}

#[test]
fn the_run_manifest_records_scenario_config_stages_times_shard_and_totals() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("manifest");
    let yaml = format!(
        "name: manifest\ntracestate: lt=manifest\nrequests:\n  ok: {{ url: 'http://{addr}/ok' }}\n  broken: {{ url: 'http://{addr}/status/500' }}\nload: {{ model: constant, rate: 40, duration: 1s, warmup: 1s }}\n",
        addr = target.addr
    );
    let (store, summary) = run_traced_with(dir.path(), &yaml, &["--shard", "1/2"]);
    assert_eq!(summary["manifest_exported"], true, "{summary}");
    let runs = sql_json(
        &store,
        "SELECT run_id, scenario, model, shard, shard_count, config, stages,
                CAST(started_at AS BIGINT) AS started, CAST(ended_at AS BIGINT) AS ended,
                requests_sent, requests_ok, requests_failed, requests_dropped,
                spans_exported, spans_dropped, generator_version
         FROM runs",
    );
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run["run_id"], summary["run_id"]);
    assert_eq!(run["scenario"], "manifest");
    assert_eq!(run["model"], "constant");
    assert_eq!((&run["shard"], &run["shard_count"]), (&1.into(), &2.into()));
    assert_eq!(run["generator_version"], env!("CARGO_PKG_VERSION"));
    // Start and end are the summary's, to the nanosecond, and hold both
    // stages. An open stage lasts its whole duration, though this shard's
    // last arrival of each second is due at 39/40 s.
    let (started, ended) = (
        run["started"].as_i64().unwrap(),
        run["ended"].as_i64().unwrap(),
    );
    assert_eq!(started, summary["started_at_unix_nanos"].as_i64().unwrap());
    assert_eq!(ended, summary["ended_at_unix_nanos"].as_i64().unwrap());
    assert!(ended - started >= 2_000_000_000, "{run:?}");
    // Totals: this shard took every second arrival of 40 a second, for the
    // warm-up and the measured second; warm-up requests are sent but not
    // measured as ok or failed.
    for column in [
        "requests_sent",
        "requests_ok",
        "requests_failed",
        "requests_dropped",
        "spans_exported",
        "spans_dropped",
    ] {
        assert_eq!(run[column], summary[column], "{column}: {run:?}\n{summary}");
    }
    let total = |key: &str| run[key].as_u64().unwrap();
    assert_eq!(total("requests_sent"), 40, "{run:?}");
    assert!(total("requests_failed") > 0, "{run:?}");
    assert_eq!(
        total("requests_ok")
            + total("requests_failed")
            + summary["warmup_requests"].as_u64().unwrap(),
        total("requests_sent"),
        "{run:?}\n{summary}"
    );
    assert_eq!(total("spans_exported"), 40, "{run:?}");
    // Each arrival is a virtual user of its own, the warm-up's and the
    // measured stage's alike, numbered as shard 1 of 2 numbers them.
    let vus = sql_json(
        &store,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT vu) AS vus, MIN(vu % 2) AS residue,
                COUNT(DISTINCT stage) AS stages
         FROM spans WHERE kind = 'CLIENT'",
    );
    assert_eq!(
        (
            &vus[0]["n"],
            &vus[0]["vus"],
            &vus[0]["residue"],
            &vus[0]["stages"]
        ),
        (&40.into(), &40.into(), &1.into(), &2.into()),
        "{vus:?}"
    );
    // The measured second is a second, so 20 requests in it are 20 a second.
    let measured = summary["duration_s"].as_f64().unwrap();
    assert!((1.0..1.5).contains(&measured), "{summary}");
    // The stages as they ran, in order, inside the run's time.
    let stages: serde_json::Value = serde_json::from_str(run["stages"].as_str().unwrap()).unwrap();
    let stages = stages.as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["warmup", "main"], "{stages:?}");
    assert_eq!(stages[0]["warmup"], true);
    assert_eq!(stages[1]["warmup"], false);
    let mut at = started;
    for stage in stages {
        let (start, end) = (
            stage["start_unix_nanos"].as_i64().unwrap(),
            stage["end_unix_nanos"].as_i64().unwrap(),
        );
        assert!(
            at <= start && start + 1_000_000_000 <= end && end <= ended,
            "{stages:?}"
        );
        assert_eq!(stage["target"], 40.0);
        at = end;
    }
    // The resolved configuration: what was asked for, after defaults.
    let config: serde_json::Value = serde_json::from_str(run["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["scenario"], "manifest");
    assert_eq!(config["model"], "constant");
    assert_eq!(config["run"]["run_id"], summary["run_id"]);
    assert_eq!(config["run"]["shard"], serde_json::json!([1, 2]));
    assert_eq!(config["run"]["propagate"], true);
    assert_eq!(config["tracestate"], "lt=manifest");
    assert_eq!(config["http"]["timeout_s"], 10.0);
    assert_eq!(config["max_in_flight"], 10_000);
    let requests: Vec<&str> = config["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(requests, ["broken", "ok"], "{config}");
    let stage_names: Vec<&str> = config["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stage_names, ["warmup", "main"], "{config}");
}

#[test]
fn without_a_terminal_progress_is_plain_lines_every_five_seconds() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("progress");
    let yaml = format!(
        "requests:\n  ok: {{ url: 'http://{addr}/ok' }}\n  broken: {{ url: 'http://{addr}/status/500' }}\nload: {{ model: constant, rate: 50, duration: 6s }}\n",
        addr = target.addr
    );
    let scenario = scenario_file(dir.path(), &yaml);
    // Standard error is a pipe here, not a terminal, and not --quiet.
    let output = loadlens()
        .arg("run")
        .arg(&scenario)
        .arg("--no-telemetry")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let line = regex::Regex::new(
        r"(?m)^  main +(\d+\.\d)s \((\d+)s left\) target 50/s +(\d+\.\d) req/s  p50 (\d+\.\d\d) ms  p99 (\d+\.\d\d) ms  (\d+) requests  (\d+) errors  \d+ in flight$",
    )
    .unwrap();
    let periodic: Vec<_> = line.captures_iter(&err).collect();
    // One line at 5 s of the 6 s stage, with the figures so far.
    assert_eq!(periodic.len(), 1, "{err}");
    let number = |i: usize| periodic[0][i].parse::<f64>().unwrap();
    let (elapsed, left, rate, p50, p99) = (number(1), number(2), number(3), number(4), number(5));
    let (requests, errors) = (number(6), number(7));
    assert!((4.5..5.5).contains(&elapsed), "{err}");
    assert!((left - (6.0 - elapsed)).abs() <= 0.6, "{err}");
    assert!((35.0..=65.0).contains(&rate), "{err}");
    assert!(0.0 < p50 && p50 <= p99, "{err}");
    assert!((200.0..=260.0).contains(&requests), "{err}");
    assert!(0.0 < errors && errors < requests, "{err}");
    // And a closing line for the stage.
    assert!(
        err.lines()
            .any(|l| l.starts_with("  main       done: 300 requests")),
        "{err}"
    );
}

#[test]
fn on_a_terminal_progress_is_a_bar_redrawn_every_second() {
    let _serial = serial();
    let target = Target::start(Behaviour::default());
    let dir = TempDir::new("progress-tty");
    let yaml = format!(
        "requests:\n  ok: {{ url: 'http://{addr}/ok' }}\nload: {{ model: constant, rate: 50, duration: 4s }}\n",
        addr = target.addr
    );
    let scenario = scenario_file(dir.path(), &yaml);
    // `script` (util-linux, in every Debian) runs the command on a
    // pseudo-terminal and copies what it writes to its own standard output.
    // The terminal is made wide enough for the whole line (it is cut to
    // the width, which a bare pseudo-terminal may not have).
    let command = format!(
        "stty cols 200 rows 40; '{}' run '{}' --no-telemetry",
        env!("CARGO_BIN_EXE_loadlens"),
        scenario.display()
    );
    let output = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("`script` from util-linux runs commands on a pseudo-terminal");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    // Redrawn in place, once a second: each update clears the line first.
    let line = regex::Regex::new(
        r"\r\x1b\[K\[([#-]{20})\] +(\d+)%   main +(\d+\.\d)s \((\d+)s left\) target 50/s +\d+\.\d req/s  p50 \d+\.\d\d ms  p99 \d+\.\d\d ms  \d+ requests  0 errors",
    )
    .unwrap();
    let updates: Vec<_> = line.captures_iter(&screen).collect();
    assert!((3..=4).contains(&updates.len()), "{screen:?}");
    let mut last = -1.0;
    for update in &updates {
        let filled = update[1].matches('#').count();
        let percent: f64 = update[2].parse().unwrap();
        let elapsed: f64 = update[3].parse().unwrap();
        // The bar and the percentage both say how much of 4 s has gone.
        assert!((percent - elapsed / 4.0 * 100.0).abs() <= 1.0, "{screen:?}");
        assert!((filled as f64 - percent / 5.0).abs() <= 1.0, "{screen:?}");
        assert!(percent > last, "{screen:?}");
        last = percent;
    }
    // The stage's closing line replaces the bar.
    assert!(
        screen.contains("\r\x1b[K  main       done: 200 requests"),
        "{screen:?}"
    );
}
