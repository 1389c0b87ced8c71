//! `loadlens serve` against real clients on a seeded fixture store: psql (the
//! simple protocol and its catalog queries), psycopg 3 (the extended protocol
//! with parameters), the SQL Grafana's PostgreSQL data source sends, and the
//! HTTP API. Every expected value comes from `loadlens sql` or the fixture
//! summary. Needs `psql` (Debian `postgresql-client`) and
//! `pip install -r tests/interop/requirements.txt` (`.ci/run` installs both).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(120);

/// A fixture store and `loadlens serve` over it.
struct Served {
    dir: TempDir,
    data: PathBuf,
    summary: fixtures::Summary,
    pg: SocketAddr,
    http: SocketAddr,
    service: Service,
}

fn serve_fixture(name: &str, extra: &[&str]) -> Served {
    let dir = TempDir::new(name);
    let data = dir.path().join("store");
    let summary = fixtures::write(&data, &fixtures::Spec::small()).unwrap();
    let (pg, http) = (free_addr(), free_addr());
    let mut service = Service::spawn(
        loadlens()
            .args(["serve", "--memory-limit", "1GiB", "--data"])
            .arg(&data)
            .args([
                "--pg-addr",
                &pg.to_string(),
                "--http-addr",
                &http.to_string(),
            ])
            .args(extra),
    );
    wait_for_port(pg, service.child());
    wait_for_port(http, service.child());
    Served {
        dir,
        data,
        summary,
        pg,
        http,
        service,
    }
}

/// psql with `-c` commands, errors in verbose form (with the SQLSTATE),
/// unaligned tuples only.
fn psql(pg: SocketAddr, commands: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("psql");
    command
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-A",
            "-t",
        ])
        .args(["-h", &pg.ip().to_string(), "-p", &pg.port().to_string()])
        .args(["-U", "loadlens", "-d", "loadlens"])
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "10");
    for c in commands {
        command.args(["-c", c]);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    output_within(&mut command, b"", LIMIT)
}

fn psql_ok(pg: SocketAddr, commands: &[&str]) -> String {
    let out = psql(pg, commands, &[]);
    assert!(
        out.status.success(),
        "psql {commands:?} failed:\n{}",
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs steps with tests/interop/pg_client.py (psycopg 3); returns its JSON.
fn psycopg(conninfo: &str, steps: &Value) -> Value {
    let out = output_within(
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pg_client.py"))
            .arg(conninfo),
        steps.to_string().as_bytes(),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "pg_client.py failed (pip install -r tests/interop/requirements.txt):\n{}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn conninfo(pg: SocketAddr) -> String {
    format!(
        "host={} port={} user=loadlens dbname=loadlens",
        pg.ip(),
        pg.port()
    )
}

/// The results of the steps, which must all have connected.
fn results(reply: &Value) -> &Vec<Value> {
    reply["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {reply}"))
}

fn rows(result: &Value) -> &Vec<Value> {
    result["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("not rows: {result}"))
}

/// The one value of a one-row, one-column `loadlens sql` answer.
fn sql_value(data: &Path, query: &str) -> Value {
    let rows = sql_json(data, query);
    assert_eq!(rows.len(), 1, "{query}");
    rows[0].values().next().unwrap().clone()
}

#[test]
fn psql_lists_the_tables_and_counts_the_requests() {
    let s = serve_fixture("serve-psql", &[]);
    let listing = psql_ok(s.pg, &["\\d"]);
    for name in ["requests", "runs", "server_spans", "spans", "ledger"] {
        assert!(
            listing.lines().any(|l| l.split('|').nth(1) == Some(name)),
            "\\d does not list {name}:\n{listing}"
        );
    }
    let columns = psql_ok(s.pg, &["\\d requests"]);
    assert!(
        columns
            .lines()
            .any(|l| l.starts_with("latency_ms|double precision")),
        "\\d requests:\n{columns}"
    );
    let count = psql_ok(
        s.pg,
        &["SELECT COUNT(*) FROM requests WHERE run_id = 'fixture-run'"],
    );
    assert_eq!(count.trim(), s.summary.request_spans.to_string());
    let read_only = psql_ok(s.pg, &["SHOW default_transaction_read_only"]);
    assert_eq!(read_only.trim(), "on");
    assert!(
        s.service.terminate(),
        "serve did not stop cleanly on SIGTERM"
    );
}

#[test]
fn psycopg_binds_parameters() {
    let s = serve_fixture("serve-psycopg", &[]);
    let reply = psycopg(
        &conninfo(s.pg),
        &json!([
            {"sql": "SELECT COUNT(*) FROM requests WHERE run_id = %s AND step = %s",
             "params": ["fixture-run", "checkout"]},
            {"sql": "SELECT percentile(latency_ms, %s) FROM requests WHERE run_id = %s AND step = %s",
             "params": [0.99, "fixture-run", "checkout"]},
            {"sql": "SELECT step, COUNT(*) FROM requests WHERE run_id = %s GROUP BY step ORDER BY step",
             "params": ["fixture-run"], "prepare": true},
        ]),
    );
    let results = results(&reply);
    let count = sql_value(
        &s.data,
        "SELECT COUNT(*) AS n FROM requests WHERE run_id = 'fixture-run' AND step = 'checkout'",
    );
    assert!(count.as_u64().unwrap() > 0);
    assert_eq!(rows(&results[0])[0][0], count, "{reply}");

    let p99 = sql_value(
        &s.data,
        "SELECT percentile(latency_ms, 0.99) AS p FROM requests WHERE run_id = 'fixture-run' AND step = 'checkout'",
    )
    .as_f64()
    .unwrap();
    let served = rows(&results[1])[0][0].as_f64().unwrap_or(f64::NAN);
    assert!(
        (served - p99).abs() <= p99 * 1e-12,
        "p99 {served} != {p99}: {reply}"
    );

    let by_step = sql_json(
        &s.data,
        "SELECT step, COUNT(*) AS n FROM requests WHERE run_id = 'fixture-run' GROUP BY step ORDER BY step",
    );
    let expected: Vec<Value> = by_step.iter().map(|r| json!([r["step"], r["n"]])).collect();
    assert_eq!(rows(&results[2]), &expected, "{reply}");
    assert_eq!(expected.len(), fixtures::ENDPOINTS.len());
}

/// What Grafana's PostgreSQL data source sends: the table list and a table's
/// columns for its query builder, and a panel query with `$__timeFilter` and
/// `$__timeGroupAlias` expanded as Grafana expands them.
const GRAFANA_TABLES: &str = r#"SELECT
    CASE WHEN
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1"#;

const GRAFANA_COLUMNS: &str = r#"SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('public.requests'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('public.requests'))[1]
          AND quote_ident(table_name) = (parse_ident('public.requests'))[2]
        ELSE quote_ident(table_name) = 'public.requests'
          AND
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END"#;

/// `SELECT $__timeGroupAlias(start_time, '10s'), count(*) … WHERE $__timeFilter(start_time)`,
/// as Grafana expands the macros for a `timestamptz` column and a 10 s interval.
const GRAFANA_PANEL: &str = r#"SELECT
  floor(extract(epoch from start_time)/10)*10 AS "time",
  count(*) AS requests
FROM spans
WHERE
  start_time BETWEEN '2026-03-02T10:00:00Z' AND '2026-03-02T11:00:00Z'
  AND kind = 'CLIENT' AND request_id IS NOT NULL
GROUP BY 1
ORDER BY 1"#;

#[test]
fn grafana_data_source_queries_work() {
    let s = serve_fixture("serve-grafana", &[]);
    let steps: Vec<Value> = [GRAFANA_TABLES, GRAFANA_COLUMNS, GRAFANA_PANEL]
        .iter()
        // Grafana's Go driver (pgx) uses the extended protocol.
        .map(|sql| json!({"sql": sql, "prepare": true}))
        .collect();
    let reply = psycopg(&conninfo(s.pg), &Value::Array(steps));
    let results = results(&reply);

    // datafusion-postgres answers Grafana's search_path test with no schema,
    // so every name comes qualified; Grafana then writes `FROM public.requests`.
    let tables: Vec<&str> = rows(&results[0])
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    for name in [
        "public.requests",
        "public.runs",
        "public.spans",
        "public.server_spans",
    ] {
        assert!(tables.contains(&name), "{name} missing from {tables:?}");
    }
    // The types are DataFusion's (Arrow) names, not PostgreSQL's.
    let columns: Vec<(&str, &str)> = rows(&results[1])
        .iter()
        .map(|r| (r[0].as_str().unwrap(), r[1].as_str().unwrap()))
        .collect();
    let described = sql_json(&s.data, "DESCRIBE requests");
    assert_eq!(columns.len(), described.len(), "{columns:?}");
    for column in [
        ("latency_ms", "Float64"),
        ("sent_at", "Timestamp(ns, \"UTC\")"),
        // Strings are read as views of the Parquet dictionaries (session.rs).
        ("step", "Utf8View"),
    ] {
        assert!(columns.contains(&column), "{column:?} not in {columns:?}");
    }

    // The same buckets, computed another way.
    let expected: Vec<(i64, u64)> = sql_json(
        &s.data,
        "SELECT CAST(date_bin(INTERVAL '10 seconds', start_time) AS BIGINT) / 1000000000 AS t, COUNT(*) AS n \
         FROM spans WHERE kind = 'CLIENT' AND request_id IS NOT NULL \
         AND start_time >= TIMESTAMP '2026-03-02T10:00:00Z' AND start_time <= TIMESTAMP '2026-03-02T11:00:00Z' \
         GROUP BY 1 ORDER BY 1",
    )
    .iter()
    .map(|r| (r["t"].as_i64().unwrap(), r["n"].as_u64().unwrap()))
    .collect();
    let served: Vec<(i64, u64)> = rows(&results[2])
        .iter()
        .map(|r| (r[0].as_f64().unwrap() as i64, r[1].as_u64().unwrap()))
        .collect();
    assert!(expected.len() > 1, "{expected:?}");
    assert_eq!(
        expected.iter().map(|(_, n)| n).sum::<u64>(),
        s.summary.request_spans
    );
    assert_eq!(served, expected);

    // psql's simple protocol gets the same answer, as text.
    let text: String = expected
        .iter()
        .map(|(t, n)| format!("{t}.0|{n}\n"))
        .collect();
    assert_eq!(psql_ok(s.pg, &[GRAFANA_PANEL]), text);
}

/// Statements that would write, and the name the refusal gives them.
fn writes(copy_target: &Path) -> Vec<(String, &'static str)> {
    vec![
        (
            format!("COPY (SELECT 1) TO '{}'", copy_target.display()),
            "COPY",
        ),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'".into(),
            "CREATE EXTERNAL TABLE",
        ),
        (
            "INSERT INTO runs (scenario) VALUES ('x')".into(),
            "INSERT INTO",
        ),
        ("DROP VIEW requests".into(), "DROP VIEW"),
        ("CREATE VIEW v AS SELECT 1".into(), "CREATE VIEW"),
        ("SELECT 1 INTO t".into(), "SELECT … INTO"),
        (
            "SET datafusion.execution.batch_size = 1".into(),
            "SET datafusion.execution.batch_size",
        ),
    ]
}

/// Every file under `root` with its size and a hash of its bytes.
fn tree(root: &Path) -> Vec<(PathBuf, u64, u64)> {
    use std::hash::{DefaultHasher, Hasher};
    let mut files: Vec<_> = files_below(root)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let mut hasher = DefaultHasher::new();
            hasher.write(&bytes);
            (path, bytes.len() as u64, hasher.finish())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn writes_are_refused_over_both_protocols() {
    let s = serve_fixture("serve-readonly", &[]);
    let before = tree(&s.data);
    assert_eq!(before.len() as u64, s.summary.files, "{before:?}");
    let copy_target = s.dir.path().join("copied.csv");
    let writes = writes(&copy_target);
    let refused = |message: &str, name: &str| {
        message.contains("loadlens serve is read-only")
            && message.contains(&format!("{name} is refused"))
    };

    for (sql, name) in &writes {
        let out = psql(s.pg, &[sql], &[]);
        let text = stderr(&out);
        assert!(!out.status.success(), "psql ran {sql}");
        assert!(
            text.contains("ERROR:  25006: ") && refused(&text, name),
            "psql {sql}:\n{text}"
        );
        if *name == "COPY" {
            // The refusal says how to export instead.
            assert!(
                text.contains("loadlens sql --data DIR --format parquet -o result.parquet"),
                "psql {sql}:\n{text}"
            );
        }
    }

    // psycopg: the simple protocol, then the extended one.
    let steps: Vec<Value> = writes
        .iter()
        .flat_map(|(sql, _)| [json!({"sql": sql}), json!({"sql": sql, "prepare": true})])
        .collect();
    let reply = psycopg(&conninfo(s.pg), &Value::Array(steps));
    let answers = results(&reply);
    assert_eq!(answers.len(), 2 * writes.len());
    for (i, result) in answers.iter().enumerate() {
        let name = writes[i / 2].1;
        let error = &result["error"];
        assert_eq!(error["sqlstate"], "25006", "{}: {result}", writes[i / 2].0);
        assert!(
            refused(error["message"].as_str().unwrap_or(""), name),
            "{result}"
        );
    }

    // Nothing changed: the files, the COPY target, the views, the settings.
    assert_eq!(tree(&s.data), before);
    assert!(!copy_target.exists());
    let reply = psycopg(
        &conninfo(s.pg),
        &json!([
            {"sql": "SELECT COUNT(*) FROM requests"},
            {"sql": "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.batch_size'"},
            {"sql": "SELECT * FROM t"},
            {"sql": "SELECT * FROM v"},
        ]),
    );
    let results = results(&reply);
    assert_eq!(
        rows(&results[0])[0][0],
        json!(s.summary.request_spans),
        "{reply}"
    );
    assert_eq!(
        rows(&results[1])[0][0],
        json!(analyzer::session::BATCH_SIZE.to_string()),
        "{reply}"
    );
    assert!(
        results[2]["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not found"),
        "{reply}"
    );
    assert!(
        results[3]["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not found"),
        "{reply}"
    );
}

#[test]
fn a_password_is_required_when_configured() {
    let dir = TempDir::new("serve-password-file");
    let file = dir.path().join("password");
    std::fs::write(&file, "correct horse\n").unwrap();
    let s = serve_fixture(
        "serve-password",
        &["--pg-password-file", file.to_str().unwrap()],
    );
    let query = "SELECT COUNT(*) FROM runs WHERE run_id = 'fixture-run'";

    // libpq reports no SQLSTATE for a failed login, only the message (of 28P01).
    let failed = "FATAL:  Password authentication failed";
    let wrong = psql(s.pg, &[query], &[("PGPASSWORD", "battery staple")]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains(failed),
        "wrong password: {}",
        stderr(&wrong)
    );
    let none = psql(s.pg, &[query], &[]);
    assert!(!none.status.success(), "no password was accepted");
    assert!(
        stderr(&none).contains("no password supplied"),
        "{}",
        stderr(&none)
    );

    let right = psql(s.pg, &[query], &[("PGPASSWORD", "correct horse")]);
    assert!(right.status.success(), "{}", stderr(&right));
    assert_eq!(String::from_utf8_lossy(&right.stdout).trim(), "1");

    let reply = psycopg(
        &format!("{} password=wrong", conninfo(s.pg)),
        &json!([{"sql": query}]),
    );
    let message = reply["connect_error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(failed), "{reply}");
    let reply = psycopg(
        &format!("{} password='correct horse'", conninfo(s.pg)),
        &json!([{"sql": query}]),
    );
    assert_eq!(rows(&results(&reply)[0])[0][0], 1, "{reply}");

    // The HTTP API wants the same password as a bearer token; health stays open.
    assert_eq!(http(s.http, "GET", "/api/runs", &[], "").0, 401);
    let auth = [("Authorization", "Bearer correct horse")];
    assert_eq!(http(s.http, "GET", "/api/runs", &auth, "").0, 200);
    assert_eq!(http(s.http, "GET", "/healthz", &[], "").0, 200);
}

#[test]
fn tls_is_offered_and_then_required() {
    let dir = TempDir::new("serve-tls-files");
    let (cert, key) = self_signed_cert(dir.path());
    let s = serve_fixture(
        "serve-tls",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let verified = format!(
        "{} sslmode=verify-full sslrootcert={}",
        conninfo(s.pg),
        cert.display()
    );
    let reply = psycopg(&verified, &json!([{"sql": "SELECT COUNT(*) FROM runs"}]));
    assert_eq!(rows(&results(&reply)[0])[0][0], 1, "{reply}");
    // PostgreSQL 17's direct TLS needs the ALPN protocol "postgresql".
    let reply = psycopg(
        &format!("{verified} sslnegotiation=direct"),
        &json!([{"sql": "SELECT COUNT(*) FROM runs"}]),
    );
    assert_eq!(rows(&results(&reply)[0])[0][0], 1, "{reply}");

    let out = output_within(
        Command::new("psql")
            .args(["-X", "-c", "\\conninfo"])
            .arg(&verified)
            .env("PGCONNECT_TIMEOUT", "10"),
        b"",
        LIMIT,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SSL connection"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let plain = psycopg(
        &format!("{} sslmode=disable", conninfo(s.pg)),
        &json!([{"sql": "SELECT 1"}]),
    );
    let message = plain["connect_error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("FATAL:  loadlens serve accepts TLS connections only"),
        "{plain}"
    );
}

/// `loadlens serve` offers TLS on its Postgres port; its HTTP API is plain, so
/// a generator speaking TLS to it must fail with error type `tls`.
#[test]
fn the_generator_names_a_failed_tls_handshake() {
    let dir = TempDir::new("generator-tls");
    let (cert, key) = self_signed_cert(dir.path());
    let s = serve_fixture(
        "generator-tls-serve",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let scenario = dir.path().join("tls.yaml");
    std::fs::write(
        &scenario,
        format!(
            "http: {{ ca_file: cert.pem }}\nrequests:\n  health: {{ url: 'https://localhost:{}/healthz' }}\nload: {{ model: closed, vus: 2, duration: 1s }}\n",
            s.http.port()
        ),
    )
    .unwrap();
    let summary_path = dir.path().join("summary.json");
    let output = loadlens()
        .arg("run")
        .arg(&scenario)
        .args(["--no-telemetry", "--quiet", "--summary-json"])
        .arg(&summary_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert!(summary["requests"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(
        summary["errors_by_type"]["tls"], summary["requests"],
        "{summary}"
    );
}

#[test]
fn the_http_api_answers_from_the_store() {
    let s = serve_fixture("serve-http", &[]);
    assert_eq!(http_get(s.http, "/healthz").trim(), "ok");

    let runs: Value = serde_json::from_str(&http_get(s.http, "/api/runs")).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["run_id"], "fixture-run");
    assert_eq!(runs[0]["scenario"], "shop");

    let summary: Value =
        serde_json::from_str(&http_get(s.http, "/api/runs/fixture-run/summary")).unwrap();
    let expected = &sql_json(
        &s.data,
        "SELECT COUNT(*) AS requests, COUNT(*) FILTER (WHERE is_error) AS errors, \
         percentile(latency_ms, 0.5) AS p50, percentile(latency_ms, 0.9) AS p90, \
         percentile(latency_ms, 0.99) AS p99, percentile(latency_ms, 0.999) AS p999, \
         (CAST(MAX(end_time) AS BIGINT) - CAST(MIN(COALESCE(intended_start, sent_at)) AS BIGINT)) / 1e9 AS duration_s \
         FROM requests WHERE run_id = 'fixture-run'",
    )[0];
    assert_eq!(summary["requests"], json!(s.summary.request_spans));
    assert_eq!(summary["errors"], json!(s.summary.errors));
    assert_eq!(summary["errors"], expected["errors"]);
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        (a - b).abs() <= b.abs() * 1e-12
    };
    for (key, column) in [
        ("p50", "p50"),
        ("p90", "p90"),
        ("p99", "p99"),
        ("p99.9", "p999"),
    ] {
        assert!(
            close(&summary["latency_ms"][key], &expected[column]),
            "{key}: {summary} vs {expected:?}"
        );
    }
    assert!(
        close(&summary["duration_s"], &expected["duration_s"]),
        "{summary}"
    );
    let rate = s.summary.errors as f64 / s.summary.request_spans as f64;
    assert!(close(&summary["error_rate"], &json!(rate)), "{summary}");
    let throughput = s.summary.request_spans as f64 / expected["duration_s"].as_f64().unwrap();
    assert!(
        close(&summary["throughput_rps"], &json!(throughput)),
        "{summary}"
    );

    let (status, body) = http(s.http, "GET", "/api/runs/no-such-run/summary", &[], "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no-such-run"), "{body}");

    let json_type = [("Content-Type", "application/json")];
    let (status, body) = http(
        s.http,
        "POST",
        "/api/query",
        &json_type,
        r#"{"sql": "SELECT step, COUNT(*) AS n FROM requests WHERE run_id = $1 AND step = $2 GROUP BY step", "params": ["fixture-run", "checkout"]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let count = sql_value(
        &s.data,
        "SELECT COUNT(*) AS n FROM requests WHERE run_id = 'fixture-run' AND step = 'checkout'",
    );
    assert_eq!(
        answer,
        json!({"columns": ["step", "n"], "rows": [["checkout", count]]})
    );

    let (status, body) = http(
        s.http,
        "POST",
        "/api/query",
        &[("Content-Type", "text/plain")],
        "SELECT COUNT(*) AS n FROM runs",
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"columns":["n"],"rows":[[1]]}"#)
    );

    let (status, body) = http(s.http, "POST", "/api/query", &[], "SELEC 1");
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("SELEC"), "{body}");
    let (status, body) = http(s.http, "POST", "/api/query", &[], "DROP VIEW requests");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("loadlens serve is read-only: DROP VIEW is refused"),
        "{body}"
    );
    assert!(http_get(s.http, "/api/runs").contains("fixture-run"));
}

#[test]
fn a_port_in_use_is_a_usage_error() {
    let dir = TempDir::new("serve-port");
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = output_within(
        loadlens()
            .args(["serve", "--data"])
            .arg(dir.path().join("store"))
            .args(["--pg-addr", &taken.local_addr().unwrap().to_string()])
            .args(["--http-addr", &free_addr().to_string()]),
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--pg-addr"), "{}", stderr(&out));
}
