//! The Grafana dashboards in `dashboards/json/` against loadlens' own
//! endpoints. Every panel and variable query is expanded the way Grafana
//! expands it (template variables, then the SQL macros), and an unknown macro
//! or variable fails the test:
//!
//! - SQL (Grafana's PostgreSQL data source) runs against `loadlens serve` on a
//!   seeded fixture store through psycopg's extended protocol, as Grafana's
//!   Go driver sends it, and must return rows with the columns its panel type
//!   needs;
//! - PromQL runs against a real Prometheus that scrapes a real collector while
//!   a real generator run sends to it, and must return series with values.
//!
//! The docker-compose stack and the Kubernetes manifests of `docker/` are
//! checked as data: every loadlens command in them is a real subcommand with
//! flags that its `--help` lists. Needs `prometheus` and `promtool` (Debian
//! `prometheus`), `psql`'s companion psycopg (`tests/interop/requirements.txt`);
//! `.ci/run` installs them. `docker-compose config` runs when it is installed.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::target::{Behaviour, Target};
use common::*;
use regex::Regex;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(120);
const PROMETHEUS_UID: &str = "loadlens-prometheus";
const SERVE_UID: &str = "loadlens-serve";
const PANEL_TYPES: [&str; 6] = [
    "timeseries",
    "table",
    "stat",
    "piechart",
    "barchart",
    "heatmap",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every dashboard: its file name and JSON.
fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("dashboards/json");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "dashboards missing in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_slice(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect()
}

/// The panels of a dashboard, with those inside rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

// ---------------------------------------------------------------------------
// Grafana's expansion of a query.

/// The query language of a target, which decides how variables are formatted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lang {
    Sql,
    PromQL,
}

/// A template variable's chosen values; `multi` when it is multi-value or has
/// "All", which changes how Grafana formats it without an explicit format.
#[derive(Debug, Clone)]
struct Var {
    name: String,
    values: Vec<String>,
    multi: bool,
}

/// What Grafana knows when it sends a query.
#[derive(Debug, Clone)]
struct Scope {
    /// The dashboard's time range, RFC 3339 UTC.
    from: String,
    to: String,
    /// `$__interval`, in seconds.
    interval_s: u64,
    /// `$__rate_interval` (Prometheus only), e.g. `4s`.
    rate_interval: String,
    vars: Vec<Var>,
}

/// Grafana's frontend step: `$var`, `${var}`, `${var:format}` and the global
/// interval variables. Macros (`$__name(...)`) are left for [`expand_macros`].
fn expand_variables(text: &str, scope: &Scope, lang: Lang) -> Result<String, String> {
    let pattern = Regex::new(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)").unwrap();
    let mut out = String::new();
    let mut last = 0;
    for caps in pattern.captures_iter(text) {
        let whole = caps.get(0).unwrap();
        out.push_str(&text[last..whole.start()]);
        last = whole.end();
        let braced = caps.get(1).is_some();
        let name = caps.get(1).or(caps.get(3)).unwrap().as_str();
        let format = caps.get(2).map(|m| m.as_str());
        let global = match name {
            "__interval" => Some(format!("{}s", scope.interval_s)),
            "__interval_ms" => Some((scope.interval_s * 1000).to_string()),
            "__rate_interval" if lang == Lang::PromQL => Some(scope.rate_interval.clone()),
            _ => None,
        };
        if let Some(value) = global {
            out.push_str(&value);
            continue;
        }
        if name.starts_with("__") && !braced && lang == Lang::Sql {
            // A macro, expanded by the data source's backend.
            out.push_str(whole.as_str());
            continue;
        }
        let var = scope
            .vars
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| format!("unknown variable ${name} in {text}"))?;
        out.push_str(&format_var(var, format, lang)?);
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// A variable's values as Grafana formats them.
fn format_var(var: &Var, format: Option<&str>, lang: Lang) -> Result<String, String> {
    let quoted = |escape: &dyn Fn(&str) -> String| {
        var.values
            .iter()
            .map(|v| format!("'{}'", escape(v)))
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(match (format, lang) {
        (Some("sqlstring"), _) => quoted(&|v: &str| v.replace('\'', "''")),
        (Some("singlequote"), _) => quoted(&|v: &str| v.replace('\'', "\\'")),
        (Some("csv" | "raw"), _) => var.values.join(","),
        (Some(other), _) => return Err(format!("unknown variable format :{other}")),
        (None, Lang::Sql) if var.multi => quoted(&|v: &str| v.replace('\'', "''")),
        (None, Lang::Sql) => var.values.join(",").replace('\'', "''"),
        (None, Lang::PromQL) if var.multi => format!(
            "({})",
            var.values
                .iter()
                .map(|v| prometheus_regex_escape(v))
                .collect::<Vec<_>>()
                .join("|")
        ),
        (None, Lang::PromQL) => var.values.join(",").replace('\\', "\\\\"),
    })
}

/// A value of a multi-value variable as Grafana's Prometheus data source
/// writes it into a regex matcher (`prometheusSpecialRegexEscape`): regex
/// metacharacters get a backslash, itself escaped for the PromQL string;
/// `-` and other characters stay as they are.
fn prometheus_regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str(r"\\");
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// An interval argument of a macro (`10s`, `'1m'`), in seconds.
fn interval_seconds(arg: &str) -> Result<f64, String> {
    let arg = arg.trim().trim_matches('\'');
    let split = arg
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("interval {arg:?} has no unit"))?;
    let (number, unit) = arg.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad interval {arg:?}"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("bad interval unit in {arg:?}")),
    };
    Ok(number * scale)
}

/// The PostgreSQL data source's backend step: `$__timeFilter(col)`,
/// `$__timeFrom()`, `$__timeTo()`, `$__timeGroup(col, interval)` and
/// `$__timeGroupAlias(col, interval)`, written as Grafana writes them for a
/// timestamp column. Anything else that looks like a macro or a variable is
/// an error.
fn expand_macros(sql: &str, scope: &Scope) -> Result<String, String> {
    let pattern = Regex::new(r"\$__(\w+)\(([^()]*)\)").unwrap();
    let mut out = String::new();
    let mut last = 0;
    for caps in pattern.captures_iter(sql) {
        let whole = caps.get(0).unwrap();
        out.push_str(&sql[last..whole.start()]);
        last = whole.end();
        let args: Vec<&str> = caps[2]
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("{} wants {n} arguments", whole.as_str()))
            }
        };
        let group = |args: &[&str]| -> Result<String, String> {
            let seconds = interval_seconds(args[1])?;
            Ok(format!(
                "floor(extract(epoch from {})/{seconds})*{seconds}",
                args[0]
            ))
        };
        let expanded = match &caps[1] {
            "timeFilter" => {
                arity(1)?;
                format!("{} BETWEEN '{}' AND '{}'", args[0], scope.from, scope.to)
            }
            "timeFrom" => {
                arity(0)?;
                format!("'{}'", scope.from)
            }
            "timeTo" => {
                arity(0)?;
                format!("'{}'", scope.to)
            }
            "timeGroup" => {
                arity(2)?;
                group(&args)?
            }
            "timeGroupAlias" => {
                arity(2)?;
                format!("{} AS \"time\"", group(&args)?)
            }
            other => return Err(format!("unknown macro $__{other} in {sql}")),
        };
        out.push_str(&expanded);
    }
    out.push_str(&sql[last..]);
    left_over(&out)?;
    Ok(out)
}

/// Fails on anything still looking like a variable or macro.
fn left_over(text: &str) -> Result<(), String> {
    match Regex::new(r"\$[\w{]").unwrap().find(text) {
        Some(m) => {
            let near: String = text[m.start()..].chars().take(20).collect();
            Err(format!("not expanded: {near}… in {text}"))
        }
        None => Ok(()),
    }
}

fn expand(text: &str, scope: &Scope, lang: Lang) -> Result<String, String> {
    let text = expand_variables(text, scope, lang)?;
    match lang {
        Lang::Sql => expand_macros(&text, scope),
        Lang::PromQL => left_over(&text).map(|()| text),
    }
}

/// A timestamp in seconds as RFC 3339 UTC (days to civil date: Howard
/// Hinnant's algorithm).
fn rfc3339(seconds: i64) -> String {
    let (days, secs) = (seconds.div_euclid(86400), seconds.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn scope_for(from: &str, to: &str) -> Scope {
    Scope {
        from: from.into(),
        to: to.into(),
        interval_s: 10,
        rate_interval: "4s".into(),
        vars: vec![
            Var {
                name: "run".into(),
                values: vec!["r1".into()],
                multi: false,
            },
            Var {
                name: "route".into(),
                values: vec!["GET /a".into(), "it's".into()],
                multi: true,
            },
        ],
    }
}

#[test]
fn the_expander_writes_what_grafana_writes_and_refuses_the_unknown() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(fixtures::RUN_START / 1_000_000_000),
        "2026-03-02T10:00:00Z"
    );
    assert_eq!(rfc3339(951_827_696), "2000-02-29T12:34:56Z");
    let s = scope_for("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z");
    assert_eq!(
        expand(
            "SELECT $__timeGroupAlias(t, $__interval), 1 FROM x WHERE $__timeFilter(t) AND run_id = '$run' AND step IN (${route:sqlstring}) AND a IN ($route)",
            &s,
            Lang::Sql
        )
        .unwrap(),
        "SELECT floor(extract(epoch from t)/10)*10 AS \"time\", 1 FROM x WHERE t BETWEEN '2026-03-02T10:00:00Z' AND '2026-03-02T11:00:00Z' AND run_id = 'r1' AND step IN ('GET /a','it''s') AND a IN ('GET /a','it''s')"
    );
    assert_eq!(
        expand(
            "$__timeFrom() $__timeTo() $__timeGroup(t, '1m') ${__interval_ms}",
            &s,
            Lang::Sql
        )
        .unwrap(),
        "'2026-03-02T10:00:00Z' '2026-03-02T11:00:00Z' floor(extract(epoch from t)/60)*60 10000"
    );
    assert_eq!(
        expand(
            r#"rate(x{run_id=~"$run", step=~"$route"}[$__rate_interval])"#,
            &s,
            Lang::PromQL
        )
        .unwrap(),
        r#"rate(x{run_id=~"r1", step=~"(GET /a|it\\'s)"}[4s])"#
    );
    assert_eq!(
        prometheus_regex_escape(r"checkout-availability.v2 (a|b) c:\d"),
        r"checkout-availability\\.v2 \\(a\\|b\\) c:\\\\d"
    );
    for bad in [
        "$__unixEpochFilter(t)",
        "$__timeFilter(a, b)",
        "$nope",
        "${run:percentencode}",
        "${__range}",
        "$__timeGroup(t, 10)",
    ] {
        assert!(expand(bad, &s, Lang::Sql).is_err(), "{bad} was accepted");
    }
    assert!(expand("x[$__range]", &s, Lang::PromQL).is_err());
}

// ---------------------------------------------------------------------------
// The dashboards as Grafana data.

/// The data source uid a panel or target uses, and its type.
fn datasource(value: &Value) -> (&str, &str) {
    (
        str_of(&value["datasource"], "uid"),
        str_of(&value["datasource"], "type"),
    )
}

#[test]
fn dashboards_are_current_grafana_json_on_provisioned_data_sources() {
    let provisioned = yaml_docs(&repo().join("dashboards/provisioning/datasources/loadlens.yaml"));
    let sources: HashMap<&str, &str> = provisioned[0]["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (str_of(d, "uid"), str_of(d, "type")))
        .collect();
    assert_eq!(sources.get(PROMETHEUS_UID), Some(&"prometheus"));
    assert_eq!(
        sources.get(SERVE_UID),
        Some(&"grafana-postgresql-datasource")
    );
    let provider = &yaml_docs(&repo().join("dashboards/provisioning/dashboards/loadlens.yaml"))[0]
        ["providers"][0];
    assert_eq!(provider["type"], "file");
    // docker-compose mounts dashboards/json where the provider reads.
    let compose = &yaml_docs(&repo().join("docker/docker-compose.yml"))[0];
    let mount = format!(
        "../dashboards/json:{}:ro",
        str_of(&provider["options"], "path")
    );
    assert!(
        compose["services"]["grafana"]["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!(mount)),
        "grafana does not mount {mount}"
    );

    let mut uids = BTreeSet::new();
    for (name, d) in dashboards() {
        assert!(d["schemaVersion"].as_u64().unwrap() >= 39, "{name}");
        assert!(uids.insert(str_of(&d, "uid").to_string()), "{name}: uid");
        assert!(!str_of(&d, "title").is_empty());
        let mut ids = BTreeSet::new();
        for panel in panels(&d) {
            let title = str_of(panel, "title");
            assert!(ids.insert(panel["id"].as_u64().unwrap()), "{name}: id");
            assert!(
                PANEL_TYPES.contains(&str_of(panel, "type")),
                "{name}: {title}"
            );
            let grid = &panel["gridPos"];
            assert!(
                grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
                "{name}: {title} is wider than the grid"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title} has no query");
            let mut refs = BTreeSet::new();
            for target in targets {
                assert!(refs.insert(str_of(target, "refId")), "{name}: {title}");
                let (uid, kind) = datasource(target);
                assert_eq!(sources.get(uid), Some(&kind), "{name}: {title}");
                assert_eq!(datasource(panel), (uid, kind), "{name}: {title}");
                let query = match kind {
                    "prometheus" => str_of(target, "expr"),
                    _ => str_of(target, "rawSql"),
                };
                assert!(!query.is_empty(), "{name}: {title}");
            }
        }
        for var in d["templating"]["list"].as_array().unwrap() {
            if var["type"] == "query" {
                let (uid, kind) = datasource(var);
                assert_eq!(sources.get(uid), Some(&kind), "{name}: variable");
            }
        }
    }
    assert_eq!(uids.len(), dashboards().len());
}

// ---------------------------------------------------------------------------
// SQL panels against `loadlens serve`.

const NUMERIC_OIDS: [u64; 7] = [20, 21, 23, 26, 700, 701, 1700];
const TIME_OIDS: [u64; 3] = [1082, 1114, 1184];
const TEXT_OIDS: [u64; 5] = [18, 19, 25, 1042, 1043];

/// Runs statements through psycopg's extended protocol (as Grafana's pgx
/// does); returns each result's columns, types and rows, failing on errors.
fn run_sql(pg: SocketAddr, statements: &[String]) -> Vec<Value> {
    let steps: Vec<Value> = statements
        .iter()
        .map(|sql| json!({"sql": sql, "prepare": true}))
        .collect();
    let out = output_within(
        Command::new("python3")
            .arg(repo().join("tests/interop/pg_client.py"))
            .arg(format!(
                "host={} port={} user=loadlens dbname=loadlens",
                pg.ip(),
                pg.port()
            )),
        Value::Array(steps).to_string().as_bytes(),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "pg_client.py failed (pip install -r tests/interop/requirements.txt):\n{}",
        stderr(&out)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = reply["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {reply}"))
        .clone();
    for (sql, result) in statements.iter().zip(&results) {
        assert!(result.get("error").is_none(), "{sql}\nfailed: {result}");
    }
    results
}

/// A result's columns as (name, type OID).
fn columns(result: &Value) -> Vec<(&str, u64)> {
    result["columns"]
        .as_array()
        .unwrap()
        .iter()
        .zip(result["types"].as_array().unwrap())
        .map(|(c, t)| (c.as_str().unwrap(), t.as_u64().unwrap()))
        .collect()
}

/// Whether column `i` has a non-null value in some row.
fn has_value(result: &Value, i: usize) -> bool {
    result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| !r[i].is_null())
}

/// What a panel (or an annotation) needs from its query's result, as Grafana
/// reads it; `Err` says what is missing.
fn fits(kind: &str, target: &Value, panel: &Value, result: &Value) -> Result<(), String> {
    let cols = columns(result);
    let rows = result["rows"].as_array().unwrap();
    if rows.is_empty() {
        return Err("no rows".into());
    }
    let numeric: Vec<usize> = (0..cols.len())
        .filter(|&i| NUMERIC_OIDS.contains(&cols[i].1) && cols[i].0 != "time")
        .collect();
    let all_valued = |idx: &[usize]| -> Result<(), String> {
        match idx.iter().find(|&&i| !has_value(result, i)) {
            Some(&i) => Err(format!("column {} is always NULL", cols[i].0)),
            None if idx.is_empty() => Err("no numeric column".into()),
            None => Ok(()),
        }
    };
    let time_column = || -> Result<usize, String> {
        let i = cols
            .iter()
            .position(|c| c.0 == "time")
            .ok_or("no \"time\" column")?;
        if TIME_OIDS.contains(&cols[i].1) || NUMERIC_OIDS.contains(&cols[i].1) {
            Ok(i)
        } else {
            Err(format!("\"time\" has type OID {}", cols[i].1))
        }
    };
    match (kind, target["format"].as_str()) {
        ("annotation", _) => {
            time_column()?;
            let text = cols.iter().find(|c| c.0 == "text").ok_or("no text")?;
            if !TEXT_OIDS.contains(&text.1) {
                return Err("text is not text".into());
            }
            Ok(())
        }
        ("timeseries", Some("time_series")) => {
            let t = time_column()?;
            for (i, c) in cols.iter().enumerate() {
                let is_metric = c.0 == "metric" && TEXT_OIDS.contains(&c.1);
                if i != t && !is_metric && !NUMERIC_OIDS.contains(&c.1) {
                    return Err(format!("{} is neither a value nor the metric", c.0));
                }
            }
            // Grafana wants the rows in time order: epoch seconds, or
            // timestamps (which psycopg gives as ISO text, so they sort as text).
            let ascending = rows.windows(2).all(|w| match (&w[0][t], &w[1][t]) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() <= b.as_f64(),
                (Value::String(a), Value::String(b)) => a <= b,
                _ => false,
            });
            if !ascending {
                return Err("time is not ascending".into());
            }
            all_valued(&numeric)
        }
        ("table", Some("table")) => {
            if cols.is_empty() {
                Err("no columns".into())
            } else {
                Ok(())
            }
        }
        ("stat" | "piechart", Some("table")) => all_valued(&numeric),
        ("barchart", Some("table")) => {
            let x = str_of(&panel["options"], "xField");
            let column = cols
                .iter()
                .find(|c| c.0 == x)
                .ok_or_else(|| format!("no x field {x}"))?;
            if !TEXT_OIDS.contains(&column.1) {
                return Err(format!("x field {x} is not text"));
            }
            all_valued(&numeric)
        }
        (kind, format) => Err(format!("no rule for a {kind} panel of format {format:?}")),
    }
}

/// Chooses a variable's values from its query's answer as Grafana does on
/// load: the saved current value if offered, all for "All", else the first.
fn choose(var: &Value, offered: Vec<String>) -> Var {
    let name = str_of(var, "name").to_string();
    assert!(!offered.is_empty(), "variable {name} offers no value");
    let multi = var["multi"] == true || var["includeAll"] == true;
    let current = var["current"]["value"].as_str();
    let values = match current {
        Some(c) if offered.iter().any(|o| o == c) => vec![c.to_string()],
        Some(c) => panic!("variable {name}: current value {c} is not offered in {offered:?}"),
        None if var["includeAll"] == true => offered,
        None => vec![offered[0].clone()],
    };
    Var {
        name,
        values,
        multi,
    }
}

#[test]
fn every_sql_panel_variable_and_annotation_answers_over_serve() {
    let dir = TempDir::new("dashboards-sql");
    let data = dir.path().join("store");
    fixtures::write(&data, &fixtures::Spec::small()).unwrap();
    let (pg, http) = (free_addr(), free_addr());
    let mut serve = Service::spawn(
        loadlens()
            .args(["serve", "--memory-limit", "1GiB", "--data"])
            .arg(&data)
            .args(["--pg-addr", &pg.to_string()])
            .args(["--http-addr", &http.to_string()]),
    );
    wait_for_port(pg, serve.child());

    // From an hour before the production window to after the run.
    let second = 1_000_000_000;
    let from = rfc3339(fixtures::PRODUCTION_START / second - 3600);
    let to = rfc3339(fixtures::RUN_START / second + 7200);
    let mut checked = 0;
    for (name, d) in dashboards() {
        let panels = panels(&d);
        if panels.iter().all(|p| datasource(p).0 != SERVE_UID) {
            continue;
        }
        let mut scope = scope_for(&from, &to);
        scope.vars.clear();
        for var in d["templating"]["list"].as_array().unwrap() {
            let offered: Vec<String> = match str_of(var, "type") {
                "query" => {
                    let sql = expand(str_of(var, "query"), &scope, Lang::Sql)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    let result = &run_sql(pg, &[sql])[0];
                    result["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r[0].as_str().unwrap().to_string())
                        .collect()
                }
                "custom" => str_of(var, "query")
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect(),
                other => panic!("{name}: variable type {other}"),
            };
            scope.vars.push(choose(var, offered));
        }
        let mut queries = Vec::new();
        for panel in &panels {
            for target in panel["targets"].as_array().unwrap() {
                let sql = expand(str_of(target, "rawSql"), &scope, Lang::Sql)
                    .unwrap_or_else(|e| panic!("{name}: {}: {e}", str_of(panel, "title")));
                queries.push((str_of(panel, "type"), target, *panel, sql));
            }
        }
        for annotation in d["annotations"]["list"].as_array().unwrap() {
            if annotation["datasource"]["uid"] == SERVE_UID {
                let target = &annotation["target"];
                let sql = expand(str_of(target, "rawSql"), &scope, Lang::Sql)
                    .unwrap_or_else(|e| panic!("{name}: annotation: {e}"));
                queries.push(("annotation", target, annotation, sql));
            }
        }
        let statements: Vec<String> = queries.iter().map(|q| q.3.clone()).collect();
        let results = run_sql(pg, &statements);
        for ((kind, target, panel, sql), result) in queries.iter().zip(&results) {
            if let Err(e) = fits(kind, target, panel, result) {
                panic!(
                    "{name}: {kind} {:?}: {e}\n{sql}\n{result}",
                    panel.get("title").or(panel.get("name"))
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 19, "only {checked} SQL queries checked");
    drop(serve);
}

#[test]
fn panel_rules_reject_what_grafana_cannot_draw() {
    let panel = json!({"options": {"xField": "c"}});
    let series = json!({"format": "time_series"});
    let table = json!({"format": "table"});
    let frame = |cols: &[(&str, u64)], rows: Value| {
        json!({
            "columns": cols.iter().map(|c| c.0).collect::<Vec<_>>(),
            "types": cols.iter().map(|c| c.1).collect::<Vec<_>>(),
            "rows": rows,
        })
    };
    let good = frame(
        &[("time", 701), ("p99", 701)],
        json!([[1.0, 2.0], [2.0, 3.0]]),
    );
    assert_eq!(fits("timeseries", &series, &panel, &good), Ok(()));
    for bad in [
        frame(&[("t", 701), ("p99", 701)], json!([[1.0, 2.0]])),
        frame(&[("time", 701), ("p99", 701)], json!([])),
        frame(
            &[("time", 701), ("p99", 701)],
            json!([[2.0, 2.0], [1.0, 3.0]]),
        ),
        frame(&[("time", 701), ("p99", 701)], json!([[1.0, null]])),
        frame(&[("time", 701), ("step", 25)], json!([[1.0, "a"]])),
    ] {
        assert!(fits("timeseries", &series, &panel, &bad).is_err(), "{bad}");
    }
    assert!(
        fits(
            "barchart",
            &table,
            &panel,
            &frame(&[("c", 25), ("n", 20)], json!([["a", 1]]))
        )
        .is_ok()
    );
    assert!(
        fits(
            "barchart",
            &table,
            &panel,
            &frame(&[("c", 20), ("n", 20)], json!([[1, 1]]))
        )
        .is_err()
    );
    assert!(fits("stat", &table, &panel, &frame(&[("s", 25)], json!([["a"]]))).is_err());
    assert!(fits("gauge", &table, &panel, &good).is_err());
}

// ---------------------------------------------------------------------------
// PromQL panels against Prometheus scraping a collector during a real run.

/// Percent-encodes a query-string value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET in HTTP/1.0, so that Prometheus (Go's server) answers without
/// chunked encoding and closes the connection; returns status and body.
fn get_http10(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    (
        status.unwrap_or_else(|| panic!("GET {path}: {head}")),
        body.to_string(),
    )
}

/// A Prometheus HTTP API call that must succeed; returns `data`.
fn prometheus_api(addr: SocketAddr, path: &str, params: &[(&str, String)]) -> Value {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let path = format!("{path}?{}", query.join("&"));
    let (status, body) = get_http10(addr, &path);
    let reply: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {status} {e}: {body}"));
    assert_eq!(reply["status"], "success", "GET {path}: {reply}");
    reply["data"].clone()
}

/// Starts Prometheus with `config`, storing in `dir`; killed on drop.
fn start_prometheus(dir: &Path, config: &str) -> (Service, SocketAddr) {
    let missing = "prometheus is not installed: apt-get install -y prometheus (.ci/run does)";
    Command::new("prometheus")
        .arg("--version")
        .output()
        .expect(missing);
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let addr = free_addr();
    let mut prometheus = Service::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=error"),
    );
    wait_for_port(addr, prometheus.child());
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_http10(addr, "/-/ready").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "prometheus is not ready after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (prometheus, addr)
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every series' values of a range query, parsed.
fn range_values(data: &Value) -> Vec<f64> {
    data["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|v| v[1].as_str().unwrap().parse().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn every_promql_panel_returns_series_from_a_live_run() {
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(repo().join("dashboards/prometheus/prometheus.yml"))
        .output()
        .expect("promtool is not installed: apt-get install -y prometheus (.ci/run does)");
    assert!(check.status.success(), "{}", stderr(&check));

    let dir = TempDir::new("dashboards-prom");
    let target = Target::start(Behaviour::default());
    let (grpc, collector_http) = (free_addr(), free_addr());
    let _collector = start_collector(
        &dir.path().join("store"),
        grpc,
        collector_http,
        &["--flush-interval", "1s"],
    );
    // The repository's scrape config, pointed at this collector, every second.
    let config = std::fs::read_to_string(repo().join("dashboards/prometheus/prometheus.yml"))
        .unwrap()
        .replace("collector:4318", &collector_http.to_string())
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("evaluation_interval: 5s", "evaluation_interval: 1s")
        .replace(
            "rules/*.yml",
            &repo()
                .join("dashboards/prometheus/rules/*.yml")
                .display()
                .to_string(),
        );
    assert!(config.contains(&collector_http.to_string()));
    let (_prometheus, prom) = start_prometheus(dir.path(), &config);

    // One request in five fails, so the error panels have series. The
    // failing step is the one slos/checkout.yaml watches, so its SLO burns
    // its budget and the page alert fires.
    let scenario = dir.path().join("live.yaml");
    std::fs::write(
        &scenario,
        format!(
            "name: live\nbase_url: {}\nrequests:\n  ok: {{url: /ok}}\n  checkout: {{url: /status/503}}\n\
             mix: {{ok: 4, checkout: 1}}\nload: {{model: constant, rate: 200, duration: 6s}}\n",
            target.url("")
        ),
    )
    .unwrap();
    let summary_path = dir.path().join("summary.json");
    let started = now_s();
    let run = loadlens()
        .arg("run")
        .arg(&scenario)
        .args(["--collector", &format!("http://{grpc}"), "--run-id", "live"])
        .args(["--quiet", "--no-ledger", "--summary-json"])
        .arg(&summary_path)
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&run)));
    let sent = summary["requests_sent"].as_u64().unwrap();
    assert!(
        summary["requests_failed"].as_u64().unwrap() > 0,
        "{summary}"
    );

    // Wait until Prometheus has scraped the run's whole count.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = prometheus_api(
            prom,
            "/api/v1/query",
            &[(
                "query",
                "sum(loadlens_run_requests_total{run_id=\"live\"})".into(),
            )],
        );
        let value = data["result"][0]["value"][1].as_str().map(str::to_string);
        if value.as_deref() == Some(&sent.to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has {value:?} requests, the run sent {sent}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // And until the rules have seen it: the checkout SLO's page alert fires.
    let firing = "ALERTS{slo=\"checkout-availability\", severity=\"page\", alertstate=\"firing\"}";
    while prometheus_api(prom, "/api/v1/query", &[("query", firing.into())])["result"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "no alert fires: {firing}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let ended = now_s() + 1.0;
    let exposition = http_get(collector_http, "/metrics");

    let label_values = Regex::new(r"^label_values\((.+),\s*(\w+)\)$").unwrap();
    let metric_name = Regex::new(r"loadlens_[\w:]+").unwrap();
    let rules: String = std::fs::read_dir(repo().join("dashboards/prometheus/rules"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let mut checked = 0;
    for (name, d) in dashboards() {
        let panels = panels(&d);
        if panels.iter().all(|p| datasource(p).0 != PROMETHEUS_UID) {
            continue;
        }
        let mut scope = scope_for(&rfc3339(started as i64), &rfc3339(ended as i64));
        scope.vars.clear();
        for var in d["templating"]["list"].as_array().unwrap() {
            let query = expand(str_of(&var["query"], "query"), &scope, Lang::PromQL)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let caps = label_values
                .captures(&query)
                .unwrap_or_else(|| panic!("{name}: not label_values: {query}"));
            let offered = prometheus_api(
                prom,
                &format!("/api/v1/label/{}/values", &caps[2]),
                &[
                    ("match[]", caps[1].to_string()),
                    ("start", format!("{started}")),
                    ("end", format!("{ended}")),
                ],
            );
            let offered: Vec<String> = offered
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            scope.vars.push(choose(var, offered));
        }
        if let Some(run) = scope.vars.iter().find(|v| v.name == "run") {
            assert_eq!(run.values, ["live"], "{name}: the run variable");
        }
        for panel in panels {
            let title = str_of(panel, "title");
            for target in panel["targets"].as_array().unwrap() {
                let expr = str_of(target, "expr");
                for metric in metric_name.find_iter(expr) {
                    if metric.as_str().contains(':') {
                        // A recording rule's series: the repository's rules record it.
                        assert!(
                            rules.contains(&format!("record: {}\n", metric.as_str())),
                            "{name}: {title}: no rule records {}",
                            metric.as_str()
                        );
                        continue;
                    }
                    let base = metric
                        .as_str()
                        .trim_end_matches("_bucket")
                        .trim_end_matches("_sum");
                    assert!(
                        exposition.contains(&format!("# TYPE {base} ")),
                        "{name}: {title}: {base} is not on the collector's /metrics"
                    );
                }
                let expr = expand(expr, &scope, Lang::PromQL)
                    .unwrap_or_else(|e| panic!("{name}: {title}: {e}"));
                let data = prometheus_api(
                    prom,
                    "/api/v1/query_range",
                    &[
                        ("query", expr.clone()),
                        ("start", format!("{started:.3}")),
                        ("end", format!("{ended:.3}")),
                        ("step", "1".into()),
                    ],
                );
                let series = data["result"].as_array().unwrap();
                assert!(!series.is_empty(), "{name}: {title}: no series for {expr}");
                assert!(
                    range_values(&data).iter().any(|v| v.is_finite()),
                    "{name}: {title}: no finite value for {expr}: {data}"
                );
                if target["format"] == "heatmap" {
                    assert!(
                        series.iter().all(|s| s["metric"]["le"].is_string()),
                        "{name}: {title}: heatmap series without le"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} PromQL expressions checked");
}

// ---------------------------------------------------------------------------
// docker/: compose stack, image and Kubernetes manifests.

/// `loadlens <subcommand> --help`.
fn help(subcommand: &str) -> String {
    let out = loadlens().args([subcommand, "--help"]).output().unwrap();
    assert!(
        out.status.success(),
        "loadlens {subcommand} --help: {}",
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks that `args` is a loadlens command line whose flags `--help` lists;
/// returns the ports of its `*-addr` flags.
fn check_command(whence: &str, args: &[&str]) -> Vec<u16> {
    let help = help(args[0]);
    let flag = Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
    let mut ports = Vec::new();
    for (i, arg) in args.iter().enumerate().skip(1) {
        if let Some(name) = arg.strip_prefix("--") {
            let listed = flag
                .find_iter(&help)
                .any(|m| m.as_str() == format!("--{name}"));
            assert!(listed, "{whence}: loadlens {} has no --{name}", args[0]);
            if name.ends_with("-addr") {
                let port = args[i + 1].rsplit(':').next().unwrap();
                ports.push(port.parse().unwrap());
            }
        }
    }
    ports
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn the_compose_stack_runs_real_commands_on_files_in_this_repository() {
    let docker = repo().join("docker");
    let compose = &yaml_docs(&docker.join("docker-compose.yml"))[0];
    let services = compose["services"].as_object().unwrap();
    for name in [
        "collector",
        "serve",
        "demo",
        "generator",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(name), "no {name} service");
    }
    let mut subcommands = BTreeSet::new();
    for (name, service) in services {
        // Host paths of mounts exist, relative to docker/.
        let mut mounts = Vec::new();
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let parts: Vec<&str> = volume.as_str().unwrap().split(':').collect();
            if parts[0].starts_with('.') {
                let host = docker.join(parts[0]);
                assert!(host.exists(), "{name}: {} does not exist", host.display());
                mounts.push((parts[1].to_string(), host));
            }
        }
        if service["image"] != "loadlens:dev" {
            continue;
        }
        assert_eq!(service["build"]["dockerfile"], "docker/Dockerfile");
        let command = strings(&service["command"]);
        subcommands.insert(command[0]);
        let ports = check_command(name, &command);
        for port in ports {
            let published = service["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p.as_str().unwrap().ends_with(&format!(":{port}")));
            assert!(
                published || name == "demo",
                "{name}: port {port} not published"
            );
        }
        // A file argument inside a mount is a file of this repository.
        for arg in &command {
            for (inside, host) in &mounts {
                if let Some(rest) = arg.strip_prefix(&format!("{inside}/")) {
                    assert!(
                        host.join(rest).is_file(),
                        "{name}: {arg} is not in the repository"
                    );
                }
            }
        }
    }
    assert_eq!(
        subcommands,
        BTreeSet::from(["collector", "serve", "demo", "run"])
    );
    // The generator reaches the demo at the scenario's base_url through the
    // demo's network namespace.
    assert_eq!(services["generator"]["network_mode"], "service:demo");
    let scenario = std::fs::read_to_string(repo().join("scenarios/shop.yaml")).unwrap();
    assert!(scenario.contains("base_url: http://127.0.0.1:8081"));
    assert!(strings(&services["demo"]["command"]).contains(&"0.0.0.0:8081"));

    let dockerfile = std::fs::read_to_string(docker.join("Dockerfile")).unwrap();
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "the Dockerfile is not multi-stage");
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("no USER");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(dockerfile.contains("cargo build --release --locked --bin loadlens"));

    // Docker Compose's own validation, where it is installed.
    match Command::new("docker-compose")
        .args(["-f"])
        .arg(docker.join("docker-compose.yml"))
        .args(["config", "-q"])
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "docker-compose config: {}",
            stderr(&out)
        ),
        Err(_) => eprintln!("docker-compose is not installed: checked the structure only"),
    }
}

#[test]
fn kubernetes_manifests_shard_one_run_over_an_indexed_job() {
    let dir = repo().join("docker/k8s");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        for doc in yaml_docs(&path) {
            docs.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                doc,
            ));
        }
    }
    let kinds = |kind: &str| -> Vec<&Value> {
        docs.iter()
            .filter(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d)
            .collect()
    };
    let claims: Vec<&str> = kinds("PersistentVolumeClaim")
        .iter()
        .map(|c| str_of(&c["metadata"], "name"))
        .collect();
    for (file, doc) in &docs {
        assert!(doc["apiVersion"].is_string(), "{file}: no apiVersion");
        assert!(doc["kind"].is_string(), "{file}: no kind");
        assert!(doc["metadata"]["name"].is_string(), "{file}: no name");
        if doc["kind"] != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "loadlens", "{file}");
        }
    }
    // Each Deployment's and Job's containers run real commands on the ports
    // they declare, and mount claims that exist.
    let env_ref = Regex::new(r"\$\((\w+)\)").unwrap();
    let mut workloads = kinds("Deployment");
    workloads.extend(kinds("StatefulSet"));
    workloads.extend(kinds("Job"));
    for workload in &workloads {
        let name = str_of(&workload["metadata"], "name");
        let pod = &workload["spec"]["template"];
        if workload["kind"] != "Job" {
            let selector = workload["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap();
            for (k, v) in selector {
                assert_eq!(&pod["metadata"]["labels"][k], v, "{name}: selector");
            }
        }
        for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let claim = str_of(&volume["persistentVolumeClaim"], "claimName");
            assert!(claims.contains(&claim), "{name}: no claim {claim}");
        }
        // Mounted volumes are the pod's or the StatefulSet's claim templates.
        let volumes: Vec<&str> = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                workload["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| &t["metadata"]),
            )
            .map(|v| str_of(v, "name"))
            .collect();
        for container in pod["spec"]["containers"].as_array().unwrap() {
            for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                let volume = str_of(mount, "name");
                assert!(volumes.contains(&volume), "{name}: no volume {volume}");
            }
        }
        for container in pod["spec"]["containers"].as_array().unwrap() {
            let args = strings(&container["args"]);
            let declared: Vec<u64> = container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["containerPort"].as_u64().unwrap())
                .collect();
            for port in check_command(name, &args) {
                assert!(declared.contains(&u64::from(port)), "{name}: {port}");
            }
            // $(VAR) in args must be declared, or be the Job's index.
            let env: Vec<&str> = container["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| str_of(e, "name"))
                .collect();
            for caps in env_ref.captures_iter(&args.join(" ")) {
                let var = caps.get(1).unwrap().as_str();
                let known = env.contains(&var)
                    || (var == "JOB_COMPLETION_INDEX" && workload["kind"] == "Job");
                assert!(known, "{name}: $({var}) is not set");
            }
        }
    }
    // Services select pods that exist, on ports those pods name.
    for service in kinds("Service") {
        let name = str_of(&service["metadata"], "name");
        let selector = service["spec"]["selector"].as_object().unwrap();
        let pod = kinds("Deployment")
            .into_iter()
            .chain(kinds("StatefulSet"))
            .map(|d| &d["spec"]["template"])
            .find(|t| {
                selector
                    .iter()
                    .all(|(k, v)| &t["metadata"]["labels"][k] == v)
            })
            .unwrap_or_else(|| panic!("service {name} selects no pod"));
        let names: Vec<&str> = pod["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| str_of(p, "name"))
            .collect();
        for port in service["spec"]["ports"].as_array().unwrap() {
            assert!(names.contains(&str_of(port, "targetPort")), "{name}");
        }
    }
    // The generator: an Indexed Job whose completions equal the n of --shard.
    let jobs = kinds("Job");
    assert_eq!(jobs.len(), 1);
    let spec = &jobs[0]["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let args = strings(&spec["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(args[0], "run");
    let shard = args[args.iter().position(|a| *a == "--shard").unwrap() + 1];
    let n: u64 = shard
        .strip_prefix("$(JOB_COMPLETION_INDEX)/")
        .unwrap_or_else(|| panic!("--shard {shard}"))
        .parse()
        .unwrap();
    assert!(n > 1);
    assert_eq!(spec["completions"].as_u64(), Some(n));
    assert_eq!(spec["parallelism"].as_u64(), Some(n));
    assert!(args.contains(&"--start-at") && args.contains(&"--run-id"));
    // Each pod's shard is one the generator accepts.
    for i in 0..n {
        let out = loadlens()
            .args(["run", "--url", "http://127.0.0.1:9/", "--rate", "1"])
            .args(["--duration", "1s", "--no-telemetry", "--quiet"])
            .args(["--shard", &format!("{i}/{n}")])
            .output()
            .unwrap();
        assert_ne!(
            out.status.code(),
            Some(2),
            "--shard {i}/{n}: {}",
            stderr(&out)
        );
    }
}
