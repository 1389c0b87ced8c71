//! The command line: quickstart from nothing, and bad input answered with one
//! line and the documented exit code.

mod common;

use common::*;

#[test]
fn quickstart_runs_from_a_clean_directory_and_leaves_a_readable_store() {
    let dir = TempDir::new("quickstart");
    let data = dir.path().join("store");
    let output = loadlens()
        .args([
            "quickstart",
            "--steps",
            "1,4",
            "--step-duration",
            "1s",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "quickstart failed:\n{}",
        stderr(&output)
    );
    assert!(
        stdout.contains("throughput_rps"),
        "no step table:\n{stdout}"
    );
    assert!(
        stdout.contains("loadlens sql --data"),
        "no next steps:\n{stdout}"
    );

    let steps = sql_json(
        &data,
        "SELECT concurrency, COUNT(*) AS n FROM requests GROUP BY concurrency ORDER BY concurrency",
    );
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0]["concurrency"], 1);
    assert_eq!(steps[1]["concurrency"], 4);
    assert!(
        steps.iter().all(|s| s["n"].as_i64().unwrap() > 10),
        "{steps:?}"
    );
    let runs = sql_json(&data, "SELECT model, scenario FROM runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["model"], "ladder");
    assert_eq!(runs[0]["scenario"], "quickstart");
}

/// Runs loadlens with `args` and checks the exit code and a one-line message.
fn fails_with(args: &[&str], code: i32, mentions: &str) {
    command_fails_with(loadlens().args(args), code, mentions);
}

/// Runs `command` and checks the exit code and a one-line message.
fn command_fails_with(command: &mut std::process::Command, code: i32, mentions: &str) {
    let output = command.output().unwrap();
    let args: Vec<_> = command.get_args().collect();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?} printed more than one line: {err}"
    );
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(
        err.contains(mentions),
        "{args:?} should mention {mentions:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    fails_with(&["frobnicate"], 2, "frobnicate");
    fails_with(&["sql", "--colour", "SELECT 1"], 2, "--colour");
    fails_with(
        &["run", "--url", "http://127.0.0.1:1/", "--rate", "fast"],
        2,
        "fast",
    );
    fails_with(
        &[
            "run",
            "--url",
            "ftp://example.invalid/",
            "--rate",
            "5",
            "--no-telemetry",
        ],
        2,
        "scheme",
    );
    // A trace state is checked before anything is sent.
    fails_with(
        &[
            "run",
            "--url",
            "http://127.0.0.1:1/",
            "--rate",
            "5",
            "--tracestate",
            "Vendor=x",
        ],
        2,
        "key 'Vendor' is not a W3C key",
    );
    // The SDKs' batch variables are read, and a bad one stops the run
    // before it sends anything.
    command_fails_with(
        loadlens()
            .env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "lots")
            .args([
                "run",
                "--url",
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--collector",
                "http://127.0.0.1:1",
                "--no-ledger",
            ]),
        2,
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"lots\"",
    );
    // Quick-mode flags with a scenario file are refused, not ignored: the
    // scenario's own settings would silently win.
    for (flag, value) in [
        ("--duration", "5s"),
        ("--warmup", "1s"),
        ("--method", "POST"),
        ("--max-in-flight", "2"),
        ("--timeout", "1s"),
        ("--rate", "5"),
        ("--tracestate", "a=b"),
    ] {
        fails_with(&["run", "scenario.yaml", flag, value], 2, flag);
    }
    let missing = std::env::temp_dir().join("loadlens-no-such-store");
    fails_with(
        &["sql", "--data", missing.to_str().unwrap(), "SELECT 1"],
        2,
        "does not exist",
    );
}

#[test]
fn collector_configuration_mistakes_exit_2_and_say_where() {
    let dir = TempDir::new("collector-config");
    let config = dir.path().join("collector.yaml");
    std::fs::write(&config, "data: ./store\nflush_intervall: 5s\n").unwrap();
    let config = config.to_str().unwrap();
    fails_with(
        &["collector", "--config", config],
        2,
        "collector.yaml:2:1: unknown field `flush_intervall`",
    );
    fails_with(
        &["collector", "--flush-interval", "5 fortnights"],
        2,
        "flush_interval: invalid duration unit 'fortnights'",
    );
    fails_with(
        &["collector", "--dedupe-window", "two minutes"],
        2,
        "dedupe_window: ",
    );
    fails_with(
        &["collector", "--wal-commit-interval", "5s"],
        2,
        "wal_commit_interval: 5s holds every acknowledgement that long; at most 1000ms",
    );
    fails_with(&["collector", "--tls-cert", "c.pem"], 2, "--tls-key");
    fails_with(
        &[
            "collector",
            "--max-memory",
            "64MiB",
            "--max-pending-bytes",
            "40MiB",
        ],
        2,
        "max_pending_bytes: 41943040 bytes is more than half of max_memory (67108864 bytes); \
         lower it, or raise max_memory",
    );
    fails_with(
        &["collector", "--max-memory", "1MiB"],
        2,
        "max_memory: 1048576 bytes is less than a collector holds idle; at least 48MiB",
    );
    let output = loadlens()
        .args(["collector", "--data"])
        .arg(dir.path().join("store"))
        .env("LOADLENS_COLLECTOR_FLUSH_INTERVALL", "5s")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unknown environment variable LOADLENS_COLLECTOR_FLUSH_INTERVALL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_sql_exits_2_and_says_what_is_wrong() {
    let dir = TempDir::new("badsql");
    let data = dir.path().to_str().unwrap();
    fails_with(&["sql", "--data", data, "SELEC 1"], 2, "SELEC");
    fails_with(
        &["sql", "--data", data, "SELECT * FROM nope"],
        2,
        "requests",
    );
    fails_with(
        &["sql", "--data", data, "SELECT percentile(1.0, 2.0)"],
        2,
        "between 0 and 1",
    );
    fails_with(
        &["sql", "--data", data, "CREATE TABLE t (x INT)"],
        2,
        "DDL not supported",
    );
}

#[test]
fn failures_at_run_time_exit_3() {
    let dir = TempDir::new("runtime");
    let data = dir.path().to_str().unwrap();
    // Valid SQL whose execution fails.
    fails_with(
        &[
            "sql",
            "--data",
            data,
            "SELECT CAST(x AS INT) FROM (VALUES ('a')) AS t(x)",
        ],
        3,
        "query failed",
    );
}

#[test]
fn engine_settings_come_from_datafusion_variables() {
    let dir = TempDir::new("engine-settings");
    let data = dir.path().to_str().unwrap();
    let setting = "SELECT value FROM information_schema.df_settings \
                   WHERE name = 'datafusion.execution.batch_size'";
    let output = loadlens()
        .env("DATAFUSION_EXECUTION_BATCH_SIZE", "1234")
        .args(["sql", "--format", "csv", "--data", data, setting])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["value", "1234"]);
    command_fails_with(
        loadlens()
            .env("DATAFUSION_EXECUTION_BATCH_SIZE", "lots")
            .args(["sql", "--data", data, "SELECT 1"]),
        2,
        "DATAFUSION_EXECUTION_BATCH_SIZE=lots",
    );
    command_fails_with(
        loadlens()
            .env("DATAFUSION_EXECUTION_BATCH_SIZ", "8192")
            .args(["sql", "--data", data, "SELECT 1"]),
        2,
        "DATAFUSION_EXECUTION_BATCH_SIZ names no DataFusion setting",
    );
}

#[test]
fn empty_store_answers_queries_with_no_rows() {
    let dir = TempDir::new("empty");
    let rows = sql_json(dir.path(), "SELECT COUNT(*) AS n FROM requests");
    assert_eq!(rows[0]["n"], 0);
}

#[test]
fn closed_model_keeps_n_requests_in_flight_and_prints_csv_and_tables() {
    let api = free_addr();
    let mut demo =
        Service::spawn(loadlens().args(["demo", "--no-telemetry", "--api-addr", &api.to_string()]));
    wait_for_port(api, demo.child());
    let dir = TempDir::new("closed");
    let summary_path = dir.path().join("summary.json");
    let output = loadlens()
        .args([
            "run",
            "--url",
            &format!("http://{api}/api/orders"),
            "--concurrency",
            "3",
        ])
        .args([
            "--duration",
            "1s",
            "--no-telemetry",
            "--quiet",
            "--summary-json",
        ])
        .arg(&summary_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(demo.terminate());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["model"], "closed");
    assert_eq!(summary["requests_failed"], 0);
    let stage = &summary["stages"][0];
    // Three workers, each waiting for its response: throughput × latency ≈ 3 (Little's law).
    let in_flight = stage["throughput_rps"].as_f64().unwrap()
        * stage["latency_ms"]["mean"].as_f64().unwrap()
        / 1000.0;
    assert!(
        (2.6..=3.05).contains(&in_flight),
        "measured concurrency {in_flight}: {summary}"
    );

    // The same store, three output formats.
    let data = TempDir::new("formats");
    let query = "SELECT 1 AS a, 'x' AS b";
    let run = |format: &str| {
        let out = loadlens()
            .args(["sql", "--format", format, "--data"])
            .arg(data.path())
            .arg(query)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run("csv"), "a,b\n1,x\n");
    assert_eq!(run("json").trim(), r#"[{"a":1,"b":"x"}]"#);
    let table = run("table");
    assert!(
        table.contains("| a | b |") && table.contains("| 1 | x |"),
        "{table}"
    );
}
