//! `loadlens compare`: gathers each side's requests per route with SQL and hands them to `models::compare`.
//!
//! ```text
//!  side A ─┐                                   ┌─▶ Mann–Whitney, Hodges–Lehmann, bootstrap,
//!          ├─ SQL: (route, latency_ms, is_error) ┤    error-rate interval, verdict (models)
//!  side B ─┘                                   └─▶ Markdown · JSON · text table
//! ```
//!
//! A side is a run (optionally one stage of it) or a production window. Two
//! runs are compared on what the generator measured (`requests.latency_ms`,
//! from the intended start, grouped by step); as soon as production is one
//! side, both sides are measured where production is measured: the target's
//! SERVER spans (`duration_ns`, grouped by `http_route`), for a run those in
//! the traces its requests started.

use std::collections::BTreeMap;
use std::fmt;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use models::compare::{self as stats, Comparison, MinEffect, Sample, Side, Verdict};
use serde::Serialize;

use crate::{AnalyzerError, Store};

/// The route of a generator request: its step name (every loadlens request
/// has one: the scenario's request name, or `METHOD /path` for `run --url`),
/// else the path of its URL.
pub const CLIENT_ROUTE: &str = "COALESCE(step, regexp_replace(url_full, '^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*|[?#].*$', '', 'g'))";

/// The route of a server span: its `http.route`, else its name.
pub const SERVER_ROUTE: &str = "COALESCE(http_route, name)";

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum SideSpec {
    /// A load run, or one of its stages.
    Run { id: String, stage: Option<String> },
    /// The SERVER spans of one environment in [from, to).
    Production {
        environment: String,
        from_ns: i64,
        to_ns: i64,
        service: Option<String>,
    },
}

/// How a side is written on the command line.
pub const SIDE_SYNTAX: &str = "RUN_ID, run:RUN_ID[,stage=STAGE], or prod:from=TIME,to=TIME[,env=production][,service=NAME] with TIME as 2026-11-01T10:00Z";

impl std::str::FromStr for SideSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = |what: String| format!("invalid side '{text}': {what}; write {SIDE_SYNTAX}");
        let (kind, rest) = match text.split_once(':') {
            Some((kind, rest)) if kind == "run" || kind == "prod" => (kind, rest),
            Some((kind, _))
                if !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                return Err(bad(format!("unknown kind '{kind}:'")));
            }
            _ => ("id", text),
        };
        if text.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if kind == "id" {
            return Ok(SideSpec::Run {
                id: text.to_string(),
                stage: None,
            });
        }
        let mut parts = rest.split(',').map(str::trim);
        let id = if kind == "run" {
            let id = parts.next().unwrap_or_default();
            if id.is_empty() || id.contains('=') {
                return Err(bad("the run id comes first".into()));
            }
            Some(id.to_string())
        } else {
            None
        };
        let mut keys: BTreeMap<&str, &str> = BTreeMap::new();
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("'{part}' is not KEY=VALUE")))?;
            let allowed: &[&str] = if kind == "run" {
                &["stage"]
            } else {
                &["from", "to", "env", "service"]
            };
            if !allowed.contains(&key) {
                return Err(bad(format!(
                    "unknown key '{key}' (known: {})",
                    allowed.join(", ")
                )));
            }
            if value.is_empty() || keys.insert(key, value).is_some() {
                return Err(bad(format!("'{key}' is empty or given twice")));
            }
        }
        match id {
            Some(id) => Ok(SideSpec::Run {
                id,
                stage: keys.get("stage").map(|s| s.to_string()),
            }),
            None => {
                let time = |key: &str| {
                    let value = keys
                        .get(key)
                        .ok_or_else(|| bad(format!("'{key}=' is missing")))?;
                    parse_time(value).map_err(bad)
                };
                let (from_ns, to_ns) = (time("from")?, time("to")?);
                if from_ns >= to_ns {
                    return Err(bad("'from' must be before 'to'".into()));
                }
                Ok(SideSpec::Production {
                    environment: keys.get("env").unwrap_or(&"production").to_string(),
                    from_ns,
                    to_ns,
                    service: keys.get("service").map(|s| s.to_string()),
                })
            }
        }
    }
}

impl fmt::Display for SideSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SideSpec::Run { id, stage: None } => write!(f, "run {id}"),
            SideSpec::Run {
                id,
                stage: Some(stage),
            } => write!(f, "run {id} stage {stage}"),
            SideSpec::Production {
                environment,
                from_ns,
                to_ns,
                service,
            } => {
                write!(
                    f,
                    "{environment} {} to {}",
                    format_time(*from_ns),
                    format_time(*to_ns)
                )?;
                match service {
                    Some(service) => write!(f, " ({service})"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Parses a UTC time: `2026-11-01T10:00Z`, with optional seconds and
/// fraction, or a bare date `2026-11-01` (midnight). Returns ns since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a UTC time like 2026-11-01T10:00Z or 2026-11-01");
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let number = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<i64> = date.split('-').map(number).collect::<Result<_, _>>()?;
    if d.len() != 3 || !(1..=12).contains(&d[1]) || !(1..=31).contains(&d[2]) {
        return Err(bad());
    }
    let mut nanos = 0i64;
    if let Some(time) = time {
        let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
        let h: Vec<i64> = hms.split(':').map(number).collect::<Result<_, _>>()?;
        if !(2..=3).contains(&h.len())
            || h[0] > 23
            || h[1] > 59
            || h.get(2).is_some_and(|s| *s > 60)
        {
            return Err(bad());
        }
        nanos = (h[0] * 3600 + h[1] * 60 + h.get(2).copied().unwrap_or(0)) * 1_000_000_000;
        if !fraction.is_empty() {
            if fraction.len() > 9 || !fraction.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            nanos += number(&format!("{fraction:0<9}"))?;
        }
    }
    let days = schema::layout::days_from_civil(d[0], d[1], d[2]);
    Ok(days * 86_400 * 1_000_000_000 + nanos)
}

/// `2026-11-01T10:00:00Z` (seconds kept only when not zero).
pub(crate) fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let day = schema::layout::utc_day(ns);
    let in_day = secs.rem_euclid(86_400);
    let (h, m, s) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    if s == 0 {
        format!("{day}T{h:02}:{m:02}Z")
    } else {
        format!("{day}T{h:02}:{m:02}:{s:02}Z")
    }
}

/// Where latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Client when both sides are runs, server when production is a side.
    Auto,
    /// The generator's `requests.latency_ms` (from the intended start), by step.
    Client,
    /// The target's SERVER span durations, by `http_route`.
    Server,
}

impl std::str::FromStr for Measure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Measure::Auto),
            "client" => Ok(Measure::Client),
            "server" => Ok(Measure::Server),
            other => Err(format!(
                "unknown measure '{other}': use auto, client or server"
            )),
        }
    }
}

/// What `loadlens compare` compares.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The baseline.
    pub a: SideSpec,
    /// The candidate.
    pub b: SideSpec,
    /// Compare only this route.
    pub route: Option<String>,
    /// A stage for run sides that do not name their own.
    pub stage: Option<String>,
    pub measure: Measure,
    pub settings: stats::Settings,
}

/// One route's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct RouteComparison {
    pub route: String,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// The answer of `loadlens compare`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub a: String,
    pub b: String,
    /// `client` or `server`.
    pub measure: Measure,
    pub alpha: f64,
    pub min_effect: MinEffect,
    pub min_error_effect: f64,
    /// Regression if any route regressed; else improvement if any improved;
    /// else no significant change if any route could be judged.
    pub verdict: Verdict,
    pub routes: Vec<RouteComparison>,
    /// Routes seen on one side only, not compared.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

impl Report {
    /// The routes that regressed.
    pub fn regressions(&self) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|r| r.comparison.verdict == Verdict::Regression)
            .map(|r| r.route.as_str())
            .collect()
    }
}

/// A string as an SQL literal.
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The SQL that gives (route, latency_ms, is_error) for one side.
fn side_sql(side: &SideSpec, measure: Measure, stage: Option<&str>) -> String {
    match side {
        SideSpec::Run { id, stage: own } => {
            let stage = own
                .as_deref()
                .or(stage)
                .map(|s| format!(" AND stage = {}", literal(s)))
                .unwrap_or_default();
            let requests = format!("run_id = {}{stage}", literal(id));
            if measure == Measure::Server {
                format!(
                    "SELECT {SERVER_ROUTE} AS route, CAST(duration_ns AS DOUBLE) / 1e6 AS latency_ms, \
                     status_code = 'ERROR' AS is_error FROM server_spans \
                     WHERE trace_id IN (SELECT trace_id FROM requests WHERE {requests})"
                )
            } else {
                format!(
                    "SELECT {CLIENT_ROUTE} AS route, latency_ms, is_error FROM requests WHERE {requests}"
                )
            }
        }
        SideSpec::Production {
            environment,
            from_ns,
            to_ns,
            service,
        } => {
            let service = service
                .as_deref()
                .map(|s| format!(" AND service_name = {}", literal(s)))
                .unwrap_or_default();
            format!(
                "SELECT {SERVER_ROUTE} AS route, CAST(duration_ns AS DOUBLE) / 1e6 AS latency_ms, \
                 status_code = 'ERROR' AS is_error FROM server_spans \
                 WHERE deployment_environment = {} AND start_time >= to_timestamp_nanos({from_ns}) \
                 AND start_time < to_timestamp_nanos({to_ns}){service}",
                literal(environment)
            )
        }
    }
}

/// One side's rows, per route: (successful latencies, requests, errors).
type Routes = BTreeMap<String, (Vec<f64>, u64, u64)>;

async fn gather(store: &Store, sql: &str, route: Option<&str>) -> Result<Routes, AnalyzerError> {
    let sql = match route {
        Some(route) => format!("SELECT * FROM ({sql}) WHERE route = {}", literal(route)),
        None => sql.to_string(),
    };
    let cast = |array: &dyn Array, to: &DataType| {
        arrow::compute::cast(array, to).map_err(|e| AnalyzerError::Execution(e.to_string()))
    };
    let mut routes = Routes::new();
    for batch in store.query(&sql).await? {
        let names = cast(batch.column(0), &DataType::Utf8)?;
        let latencies = cast(batch.column(1), &DataType::Float64)?;
        let errors = cast(batch.column(2), &DataType::Boolean)?;
        let (names, latencies, errors) = (
            names.as_string::<i32>(),
            latencies.as_primitive::<Float64Type>(),
            errors.as_boolean(),
        );
        for row in 0..batch.num_rows() {
            let name = if names.is_null(row) {
                "(none)"
            } else {
                names.value(row)
            };
            let entry = routes.entry(name.to_string()).or_default();
            entry.1 += 1;
            if errors.is_valid(row) && errors.value(row) {
                entry.2 += 1;
            } else if latencies.is_valid(row) {
                entry.0.push(latencies.value(row));
            }
        }
    }
    Ok(routes)
}

/// Why a side has no rows, said so the user can fix it.
fn empty_side(side: &SideSpec, measure: Measure, route: Option<&str>) -> AnalyzerError {
    let route = route
        .map(|r| format!(" on route '{r}'"))
        .unwrap_or_default();
    let hint = match (side, measure) {
        (SideSpec::Run { .. }, Measure::Server) => {
            "; server measurement needs the target's own SERVER spans in the run's traces (try --measure client)"
        }
        (SideSpec::Run { .. }, _) => {
            "; check the run id (loadlens sql \"SELECT DISTINCT run_id FROM requests\") and the stage"
        }
        (SideSpec::Production { .. }, _) => {
            "; check env=, service= and the time range (times are UTC)"
        }
    };
    AnalyzerError::Query(format!("{side} has no requests{route}{hint}"))
}

/// Compares two sides of the store, route by route.
pub async fn compare(store: &Store, options: &CompareOptions) -> Result<Report, AnalyzerError> {
    let has_production = [&options.a, &options.b]
        .iter()
        .any(|s| matches!(s, SideSpec::Production { .. }));
    let measure = match options.measure {
        Measure::Auto if has_production => Measure::Server,
        Measure::Auto => Measure::Client,
        Measure::Client if has_production => {
            return Err(AnalyzerError::Query(
                "a production window has no client measurements; use --measure server (or auto)"
                    .into(),
            ));
        }
        other => other,
    };
    let route = options.route.as_deref();
    let stage = options.stage.as_deref();
    let mut sides = Vec::new();
    for side in [&options.a, &options.b] {
        let rows = gather(store, &side_sql(side, measure, stage), route).await?;
        if rows.is_empty() {
            return Err(empty_side(side, measure, route));
        }
        sides.push(rows);
    }
    let (b, a) = (
        sides.pop().unwrap_or_default(),
        sides.pop().unwrap_or_default(),
    );
    let to_side = |(latencies, requests, errors): &(Vec<f64>, u64, u64)| Side {
        latencies: Sample::new(latencies.clone()),
        requests: *requests,
        errors: *errors,
    };
    let routes: Vec<RouteComparison> = a
        .iter()
        .filter_map(|(name, rows_a)| {
            b.get(name).map(|rows_b| RouteComparison {
                route: name.clone(),
                comparison: stats::compare(&to_side(rows_a), &to_side(rows_b), &options.settings),
            })
        })
        .collect();
    let verdicts: Vec<Verdict> = routes.iter().map(|r| r.comparison.verdict).collect();
    let verdict = [
        Verdict::Regression,
        Verdict::Improvement,
        Verdict::NoSignificantChange,
    ]
    .into_iter()
    .find(|v| verdicts.contains(v))
    .unwrap_or(Verdict::InsufficientData);
    Ok(Report {
        a: options.a.to_string(),
        b: options.b.to_string(),
        measure,
        alpha: options.settings.alpha,
        min_effect: options.settings.min_effect,
        min_error_effect: options.settings.min_error_effect,
        verdict,
        only_in_a: a.keys().filter(|k| !b.contains_key(*k)).cloned().collect(),
        only_in_b: b.keys().filter(|k| !a.contains_key(*k)).cloned().collect(),
        routes,
    })
}

/// How `loadlens compare` and `loadlens trend` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// A Markdown section, for pull requests and CI summaries.
    Markdown,
    /// The whole report as JSON.
    Json,
    /// An aligned text table.
    Table,
}

impl std::str::FromStr for ReportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "markdown" | "md" => Ok(ReportFormat::Markdown),
            "json" => Ok(ReportFormat::Json),
            "table" => Ok(ReportFormat::Table),
            other => Err(format!(
                "unknown format '{other}': use markdown, json or table"
            )),
        }
    }
}

/// Rows of cells as a Markdown table or an aligned text table.
pub(crate) fn grid(header: &[&str], rows: &[Vec<String>], markdown: bool) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        if markdown {
            format!("| {} |\n", padded.join(" | "))
        } else {
            format!("{}\n", padded.join("  ").trim_end())
        }
    };
    let mut out = line(header.to_vec());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out += &line(rule.iter().map(String::as_str).collect());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// A number with three significant digits or more before the point.
pub(crate) fn num(x: f64) -> String {
    if x == 0.0 || x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// [`num`] with a sign.
fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", num(x))
    } else {
        num(x)
    }
}

fn estimate(e: &Option<stats::Estimate>) -> String {
    match e {
        Some(stats::Estimate {
            value,
            interval: Some(i),
        }) => format!("{} [{}, {}]", num(*value), num(i.low), num(i.high)),
        Some(e) => num(e.value),
        None => "–".into(),
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.2}%", x * 100.0))
}

/// Renders a comparison report.
pub fn render(report: &Report, format: ReportFormat) -> Result<String, AnalyzerError> {
    if format == ReportFormat::Json {
        return serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .map_err(|e| AnalyzerError::Output {
                format: "json",
                message: e.to_string(),
            });
    }
    let markdown = format == ReportFormat::Markdown;
    let level = format!("{:.0}%", (1.0 - report.alpha) * 100.0);
    let header: [&str; 15] = [
        "route",
        "verdict",
        "n A",
        "n B",
        "p50 A",
        "p50 B",
        &format!("p95 A [{level}]"),
        &format!("p95 B [{level}]"),
        &format!("p99 A [{level}]"),
        &format!("p99 B [{level}]"),
        &format!("shift ms [{level}]"),
        "p",
        "errors A",
        "errors B",
        &format!("Δ errors [{level}]"),
    ];
    let rows: Vec<Vec<String>> = report
        .routes
        .iter()
        .map(|r| {
            let c = &r.comparison;
            let shift = match c.shift {
                Some(stats::Shift {
                    estimate,
                    interval: Some(i),
                }) => format!(
                    "{} [{}, {}]",
                    signed(estimate),
                    signed(i.low),
                    signed(i.high)
                ),
                Some(s) => num(s.estimate),
                None => "–".into(),
            };
            let errors = c.error_rate.map_or("–".into(), |e| {
                format!(
                    "{:+.2} [{:+.2}, {:+.2}] pts",
                    e.difference * 100.0,
                    e.interval.low * 100.0,
                    e.interval.high * 100.0
                )
            });
            let verdict = if markdown && c.verdict == Verdict::Regression {
                "**regression**".to_string()
            } else {
                c.verdict.as_str().to_string()
            };
            vec![
                r.route.clone(),
                verdict,
                c.a.samples.to_string(),
                c.b.samples.to_string(),
                c.a.p50.map_or("–".into(), |e| num(e.value)),
                c.b.p50.map_or("–".into(), |e| num(e.value)),
                estimate(&c.a.p95),
                estimate(&c.b.p95),
                estimate(&c.a.p99),
                estimate(&c.b.p99),
                shift,
                c.mann_whitney
                    .map_or("–".into(), |m| format!("{:.2e}", m.p_value)),
                percent(c.a.error_rate),
                percent(c.b.error_rate),
                errors,
            ]
        })
        .collect();
    let measure = match report.measure {
        Measure::Server => "server span duration (ms) by http.route",
        _ => "client latency (ms, from the intended start) by step",
    };
    let effect = match report.min_effect {
        MinEffect::Relative(f) => format!("{}% of A's median", f * 100.0),
        MinEffect::Absolute(ms) => format!("{ms} ms"),
    };
    let mut out = String::new();
    let regressions = report.regressions();
    let summary = if regressions.is_empty() {
        format!("Verdict: {}", report.verdict.as_str())
    } else {
        format!("Verdict: regression in {}", regressions.join(", "))
    };
    if markdown {
        out += &format!("## {} → {}\n\n**{summary}**\n\n", report.a, report.b);
    } else {
        out += &format!("A: {}\nB: {}\n{summary}\n\n", report.a, report.b);
    }
    out += &grid(&header, &rows, markdown);
    out += &format!(
        "\nA is the baseline, B the candidate; differences are B − A. Latency: {measure}, \
         successful requests only. Shift: Hodges–Lehmann with Moses's interval; p: Mann–Whitney U, \
         two-sided. A regression needs p < {} and a shift of at least {effect}, or an error-rate \
         increase of at least {:.2} points whose Newcombe interval is above zero.\n",
        report.alpha,
        report.min_error_effect * 100.0
    );
    for (side, routes) in [("A", &report.only_in_a), ("B", &report.only_in_b)] {
        if !routes.is_empty() {
            out += &format!("Only in {side}, not compared: {}.\n", routes.join(", "));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_parse_and_bad_ones_say_why() {
        assert_eq!(
            "20261123-101010-abc".parse(),
            Ok(SideSpec::Run {
                id: "20261123-101010-abc".into(),
                stage: None
            })
        );
        assert_eq!(
            "run:r1,stage=c=8".parse(),
            Ok(SideSpec::Run {
                id: "r1".into(),
                stage: Some("c=8".into())
            })
        );
        let prod: SideSpec = "prod:from=2026-03-01T10:00Z,to=2026-03-01T11:00:30.5Z,service=api"
            .parse()
            .unwrap();
        let from = 1_772_359_200_000_000_000;
        assert_eq!(
            prod,
            SideSpec::Production {
                environment: "production".into(),
                from_ns: from,
                to_ns: from + 3_630_500_000_000,
                service: Some("api".into()),
            }
        );
        assert_eq!(
            prod.to_string(),
            "production 2026-03-01T10:00Z to 2026-03-01T11:00:30Z (api)"
        );
        for (text, mentions) in [
            ("prod:from=2026-03-01T10:00Z", "'to=' is missing"),
            ("prod:from=2026-03-01,to=2026-02-01", "before"),
            ("prod:from=yesterday,to=2026-02-01", "not a UTC time"),
            (
                "prod:from=2026-03-01,to=2026-03-02,region=eu",
                "unknown key 'region'",
            ),
            ("run:,stage=x", "run id comes first"),
            ("staging:foo", "unknown kind"),
            ("run:r1,stage", "not KEY=VALUE"),
        ] {
            let error = text.parse::<SideSpec>().unwrap_err();
            assert!(error.contains(mentions), "{text}: {error}");
            assert!(error.contains("prod:from=TIME"), "{error}");
        }
    }

    #[test]
    fn times_parse_to_nanoseconds() {
        assert_eq!(parse_time("1970-01-02"), Ok(86_400_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:01Z"), Ok(60_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01.25Z"), Ok(1_250_000_000));
        assert!(parse_time("1970-01-01T00:00").is_err());
        assert!(parse_time("1970-13-01").is_err());
    }

    #[test]
    fn literals_escape_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
    }
}
