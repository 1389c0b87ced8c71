//! `loadlens bottleneck` and `critical_path(run)` end to end: a ladder run on
//! the demo system through the real binary, then the report read back as JSON.

mod common;

use common::*;
use serde_json::Value;

/// Runs `loadlens bottleneck` with `args` and returns its output.
fn bottleneck(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    loadlens()
        .arg("bottleneck")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

fn report(data: &std::path::Path, args: &[&str]) -> Value {
    let output = bottleneck(data, args);
    assert!(
        output.status.success(),
        "bottleneck {args:?} failed: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn f64_of(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {value}"))
}

#[test]
fn the_demos_contended_database_tier_comes_out_on_top() {
    let dir = TempDir::new("bottleneck");
    let data = dir.path().join("store");
    // A ladder well past the demo's knee (about 12 in flight), where requests
    // queue for the database's contended resource.
    let quickstart = loadlens()
        .args([
            "quickstart",
            "--steps",
            "1,8,32",
            "--step-duration",
            "1s",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        quickstart.status.success(),
        "quickstart failed: {}",
        stderr(&quickstart)
    );
    let runs = sql_json(&data, "SELECT run_id FROM runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    // The quickstart's own findings name the same tier, and its HTML report is written.
    let printed = String::from_utf8_lossy(&quickstart.stdout);
    let findings = printed
        .split("Findings:")
        .nth(1)
        .expect("the quickstart prints findings");
    assert!(
        findings.contains("demo-db (SELECT orders) holds"),
        "{printed}"
    );
    let html = std::fs::read_to_string(data.join("reports").join(format!("{run}.html"))).unwrap();
    assert!(html.contains("<svg") && html.contains("Bottlenecks"));
    let requests = sql_json(
        &data,
        &format!("SELECT COUNT(*) AS n FROM requests WHERE run_id = '{run}'"),
    )[0]["n"]
        .as_u64()
        .unwrap();
    assert!(requests > 100, "only {requests} requests");

    let json = report(&data, &[&run, "--format", "json"]);
    assert_eq!(json["run_id"], run.as_str());
    assert_eq!(json["requests"].as_u64(), Some(requests));
    assert_eq!(json["traces"].as_u64(), Some(requests), "{json}");
    assert_eq!(
        json["traces_with_target_spans"].as_u64(),
        Some(requests),
        "every request reached the demo"
    );
    assert_eq!(json["reattached_spans"], 0);
    assert_eq!(json["detached_spans"], 0);
    assert!(json.get("note").is_none(), "{json}");

    let operations = json["operations"].as_array().unwrap();
    let top = &operations[0];
    assert_eq!(
        (
            top["service"].as_str(),
            top["operation"].as_str(),
            top["kind"].as_str()
        ),
        (Some("demo-db"), Some("SELECT orders"), Some("SERVER")),
        "{json:#}"
    );
    // Four operations, one span each per trace: generator request, API server
    // span, API's call to the database, database server span.
    assert_eq!(operations.len(), 4, "{json:#}");
    for operation in operations {
        assert_eq!(operation["calls"].as_u64(), Some(requests), "{operation}");
        assert_eq!(operation["traces"].as_u64(), Some(requests), "{operation}");
        let share = f64_of(operation, "share");
        let speedup = f64_of(operation, "speedup_if_2x");
        let amdahl = 1.0 / ((1.0 - share) + share / 2.0);
        assert!((speedup - amdahl).abs() < 1e-9, "{operation}");
        assert!(f64_of(operation, "share_p50") <= f64_of(operation, "share_p95"));
    }
    // Every nanosecond of every trace is attributed once.
    let total: f64 = operations.iter().map(|o| f64_of(o, "share")).sum();
    assert!((total - 1.0).abs() < 1e-9, "shares add up to {total}");
    // The database's own time (parallel work plus the queue for the
    // contended resource) is most of the time; the API's own work is 2 ms.
    let db_share = f64_of(top, "share");
    assert!(db_share > 0.5, "database share {db_share}");
    let api = operations
        .iter()
        .find(|o| o["service"] == "demo-api" && o["kind"] == "SERVER")
        .unwrap();
    assert!(f64_of(api, "self_ms_mean") >= 2.0, "{api}");
    assert!(f64_of(top, "speedup_if_2x") > f64_of(api, "speedup_if_2x"));
    let p50 = f64_of(&json["end_to_end_ms"], "p50");
    let p95 = f64_of(&json["end_to_end_ms"], "p95");
    assert!(5.0 < p50 && p50 <= p95, "end to end {p50} / {p95} ms");

    // The SQL table function gives the same rows.
    let rows = sql_json(
        &data,
        &format!(
            "SELECT service, operation, calls, share, share_p95 FROM critical_path('{run}') ORDER BY share DESC"
        ),
    );
    assert_eq!(rows.len(), operations.len());
    for (row, operation) in rows.iter().zip(operations) {
        assert_eq!(row["service"], operation["service"]);
        assert_eq!(row["operation"], operation["operation"]);
        assert_eq!(row["calls"], operation["calls"]);
        for key in ["share", "share_p95"] {
            let (a, b) = (row[key].as_f64().unwrap(), f64_of(operation, key));
            assert!((a - b).abs() < 1e-12, "{key}: SQL {a}, CLI {b}");
        }
    }

    // One step: the run has only one, so the same traces.
    let step = report(
        &data,
        &[&run, "--step", "GET /api/orders", "--format", "json"],
    );
    assert_eq!(step["traces"].as_u64(), Some(requests));
    assert_eq!(step["step"], "GET /api/orders");

    // The table names the columns and puts the database first.
    let table = bottleneck(&data, &[&run]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("run {run}: {requests} traces")),
        "{text}"
    );
    let first_row = text
        .lines()
        .find(|l| l.starts_with("| demo-") || l.starts_with("| loadlens-"))
        .unwrap_or_else(|| panic!("no rows:\n{text}"));
    assert!(first_row.contains("demo-db"), "{text}");
    assert!(text.contains("if 2x faster"), "{text}");

    // Mistakes: exit 2 with a line that says what to do.
    let unknown = bottleneck(&data, &["no-such-run"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    let message = stderr(&unknown);
    assert!(message.contains("no run 'no-such-run'"), "{message}");
    assert!(
        message.contains(&run),
        "names the runs there are: {message}"
    );
    assert!(message.contains("loadlens sql"), "{message}");

    let wrong_step = bottleneck(&data, &[&run, "--step", "POST /nothing"]);
    assert_eq!(wrong_step.status.code(), Some(2));
    assert!(
        stderr(&wrong_step).contains("its steps: GET /api/orders"),
        "{}",
        stderr(&wrong_step)
    );

    let bad_format = bottleneck(&data, &[&run, "--format", "csv"]);
    assert_eq!(bad_format.status.code(), Some(2));

    let bad_argument = loadlens()
        .args(["sql", "--data"])
        .arg(&data)
        .arg("SELECT * FROM critical_path(42)")
        .output()
        .unwrap();
    assert_eq!(bad_argument.status.code(), Some(2));
    assert!(
        stderr(&bad_argument).contains("must be a string literal"),
        "{}",
        stderr(&bad_argument)
    );
    let unknown_in_sql = loadlens()
        .args(["sql", "--data"])
        .arg(&data)
        .arg("SELECT * FROM critical_path('no-such-run')")
        .output()
        .unwrap();
    assert_eq!(unknown_in_sql.status.code(), Some(2));
    assert!(stderr(&unknown_in_sql).contains("no run 'no-such-run'"));
}

#[test]
fn a_run_whose_target_sent_no_spans_into_its_traces_says_so() {
    let data = TempDir::new("bottleneck-untraced");
    let grpc = free_addr();
    let http = free_addr();
    let api = free_addr();
    let collector = start_collector(data.path(), grpc, http, &["--flush-interval", "1s"]);
    let endpoint = format!("http://{grpc}");
    // The demo exports spans, but without traceparent they start traces of
    // their own: none joins the generator's.
    let demo = start_demo(api, grpc);
    let run = loadlens()
        .args([
            "run",
            "--url",
            &format!("http://{api}/api/orders"),
            "--rate",
            "100",
            "--duration",
            "1s",
            "--collector",
            &endpoint,
            "--run-id",
            "untraced",
            "--no-propagate",
            "--quiet",
            "--data",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "run failed: {}", stderr(&run));
    assert!(demo.terminate(), "demo did not stop cleanly");
    assert!(collector.terminate(), "collector did not stop cleanly");

    let json = report(data.path(), &["untraced", "--format", "json"]);
    let traces = json["traces"].as_u64().unwrap();
    assert!(traces >= 90, "{json}");
    assert_eq!(json["traces_with_target_spans"], 0, "{json}");
    let note = json["note"].as_str().unwrap();
    assert!(
        note.contains("no trace holds spans of the system under test"),
        "{note}"
    );
    let operations = json["operations"].as_array().unwrap();
    assert_eq!(
        operations.len(),
        1,
        "only the generator's requests: {json:#}"
    );
    assert_eq!(operations[0]["service"], "loadlens-generator");
    assert_eq!(operations[0]["kind"], "CLIENT");
    assert_eq!(f64_of(&operations[0], "share"), 1.0);

    let table = bottleneck(data.path(), &["untraced"]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("note: no trace holds spans"));
}

#[test]
fn on_the_fixture_store_each_tier_gets_exactly_its_own_time() {
    // In the fixture every request's trace is a chain: the generator's
    // CLIENT span, the target's SERVER span inside it and, for some routes,
    // one database CLIENT span inside that. A single child is always on the
    // critical path whole, so each tier's share is the SQL below.
    let dir = TempDir::new("bottleneck-fixture");
    fixtures::write(dir.path(), &fixtures::Spec::small()).unwrap();
    let run = fixtures::RUN_ID;
    let expected = sql_json(
        dir.path(),
        &format!(
            "WITH traced AS (
                SELECT r.trace_id, CAST(s.duration_ns AS DOUBLE) AS total
                FROM spans s JOIN requests r ON s.span_id = r.span_id AND s.trace_id = r.trace_id
                WHERE r.run_id = '{run}'
             ),
             tiers AS (
                SELECT t.trace_id, t.total,
                       COALESCE(SUM(CASE WHEN s.kind = 'SERVER' THEN CAST(s.duration_ns AS DOUBLE) END), 0) AS server,
                       COALESCE(SUM(CASE WHEN s.kind = 'CLIENT' THEN CAST(s.duration_ns AS DOUBLE) END), 0) AS db,
                       SUM(CASE WHEN s.kind = 'CLIENT' THEN 1 ELSE 0 END) AS db_calls,
                       SUM(CASE WHEN s.kind = 'SERVER' THEN 1 ELSE 0 END) AS server_calls
                FROM traced t LEFT JOIN (SELECT * FROM spans WHERE service_name = '{api}') s
                  ON s.trace_id = t.trace_id
                GROUP BY t.trace_id, t.total
             )
             SELECT COUNT(*) AS traces,
                    SUM(total - server) / SUM(total) AS generator,
                    SUM(server - db) / SUM(total) AS server,
                    SUM(db) / SUM(total) AS db,
                    SUM(db_calls) AS db_calls,
                    SUM(server_calls) AS server_calls
             FROM tiers",
            api = fixtures::API_SERVICE
        ),
    );
    let expected = &expected[0];
    let json = report(dir.path(), &[run, "--format", "json"]);
    assert_eq!(json["traces"], expected["traces"], "{json}");
    assert_eq!(json["reattached_spans"], 0);
    assert_eq!(json["detached_spans"], 0);
    let operations = json["operations"].as_array().unwrap();
    let share_of = |kind: &str, service: Option<&str>| -> (f64, u64) {
        let matching: Vec<&Value> = operations
            .iter()
            .filter(|o| o["kind"] == kind && service.is_none_or(|s| o["service"] == s))
            .collect();
        (
            matching.iter().map(|o| f64_of(o, "share")).sum(),
            matching.iter().map(|o| o["calls"].as_u64().unwrap()).sum(),
        )
    };
    let (generator, requests) = share_of("CLIENT", Some("loadlens"));
    let (server, server_calls) = share_of("SERVER", Some(fixtures::API_SERVICE));
    let (db, db_calls) = share_of("CLIENT", Some(fixtures::API_SERVICE));
    assert_eq!(Some(requests), json["traces"].as_u64());
    assert_eq!(Some(server_calls), expected["server_calls"].as_u64());
    assert_eq!(Some(db_calls), expected["db_calls"].as_u64());
    assert!(db_calls > 1000, "the fixture has database calls");
    for (name, got, key) in [
        ("generator", generator, "generator"),
        ("server", server, "server"),
        ("database", db, "db"),
    ] {
        let want = expected[key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{name}: {got} vs SQL {want}");
    }
}
