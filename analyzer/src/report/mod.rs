//! `loadlens report`: one run's results gathered once, then written as HTML, Markdown and JSON.
//!
//! ```text
//!  store ─▶ gather (SQL: stages, timeline, errors; USL fit) ─▶ Report ─▶ html · markdown · json
//!                                                               └─▶ findings (plain words, numbers)
//! ```

mod html;
mod markdown;
pub mod svg;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::usl::{self, Concurrency, Questions};
use crate::{AnalyzerError, Format, Store, output};

pub use html::html;
pub use markdown::markdown;

/// One stage of the run (a ladder step, a ramp stage), warm-up excluded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stage {
    pub stage: String,
    /// The configured concurrency, for ladder steps and closed models.
    pub concurrency: Option<f64>,
    pub requests: u64,
    /// Requests per second over the span of their scheduled starts.
    pub throughput: Option<f64>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
}

/// One bucket of the run's timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, Unix seconds.
    pub start: f64,
    pub requests_per_second: f64,
    pub errors_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Whole-run figures, warm-up excluded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Seconds from the first scheduled start to the last response.
    pub seconds: f64,
}

impl Totals {
    /// The headline figures: requests, duration, percentiles and error rate.
    pub fn headline(&self) -> String {
        format!(
            "{} requests over {} s · p50 {} ms · p95 {} ms · p99 {} ms · errors {:.2} %",
            grouped(self.requests as f64),
            grouped(self.seconds),
            two_digits(self.p50_ms),
            two_digits(self.p95_ms),
            two_digits(self.p99_ms),
            100.0 * self.error_rate
        )
    }
}

/// The fitted USL coefficients on one line: σ, κ, λ, N* and R².
pub fn usl_line(fit: &models::usl::Fit) -> String {
    let p = fit.params;
    format!(
        "σ = {:.4} · κ = {:.3e} · λ = {} req/s · N* = {} · R² = {:.4}",
        p.sigma,
        p.kappa,
        grouped(p.lambda),
        p.peak_concurrency().map_or("unbounded".into(), grouped),
        fit.r_squared
    )
}

/// Everything a report shows about one run.
#[derive(Debug)]
pub struct Report {
    pub run: String,
    pub scenario: Option<String>,
    pub model: Option<String>,
    pub totals: Totals,
    pub stages: Vec<Stage>,
    /// Width of the timeline buckets, in seconds.
    pub bucket_seconds: u64,
    pub timeline: Vec<Bucket>,
    /// Requests by error type, most frequent first.
    pub errors: Vec<(String, u64)>,
    /// The USL fit of the ladder steps, or why there is none.
    pub usl: Result<usl::Report, String>,
    /// Extra sections gathered by other analyses, in display order: (title,
    /// JSON for the machine output, Markdown table and findings).
    pub sections: Vec<Section>,
}

/// A section contributed by another analysis (bottlenecks, SLOs).
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    /// Key of the section in the JSON report.
    pub key: String,
    pub json: Value,
    /// The body in Markdown (a table, a list); HTML shows it converted.
    pub markdown: String,
    /// Plain-language findings to lead the report with.
    pub findings: Vec<String>,
}

/// Runs `sql` and returns its rows as JSON objects.
async fn rows(store: &Store, sql: &str) -> Result<Vec<Map<String, Value>>, AnalyzerError> {
    let frame = store.plan(sql).await?;
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .map_err(|e| AnalyzerError::from_datafusion(e, &store.table_names()))?;
    let bytes = output::render(&batches, schema, Format::Json)?;
    let rows: Vec<Value> =
        serde_json::from_slice(&bytes).map_err(|e| AnalyzerError::Execution(e.to_string()))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| match row {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .collect())
}

fn f64_of(row: &Map<String, Value>, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64)
}

fn u64_of(row: &Map<String, Value>, key: &str) -> u64 {
    row.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn str_of(row: &Map<String, Value>, key: &str) -> Option<String> {
    row.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A run id as an SQL string literal.
fn literal(run: &str) -> String {
    format!("'{}'", run.replace('\'', "''"))
}

/// Gathers the report of `run` from the store.
pub async fn gather(store: &Store, run: &str) -> Result<Report, AnalyzerError> {
    let run_literal = literal(run);
    let measured = format!("run_id = {run_literal} AND (stage IS NULL OR stage <> 'warmup')");
    let totals_rows = rows(
        store,
        &format!(
            "SELECT COUNT(*) AS requests,
                SUM(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors,
                percentile(latency_ms, 0.5) AS p50_ms,
                percentile(latency_ms, 0.95) AS p95_ms,
                percentile(latency_ms, 0.99) AS p99_ms,
                CAST(MIN(CAST(COALESCE(intended_start, sent_at) AS BIGINT)) AS DOUBLE) / 1e9 AS first_s,
                CAST(MAX(CAST(end_time AS BIGINT)) AS DOUBLE) / 1e9 AS last_s
             FROM requests WHERE {measured}"
        ),
    )
    .await?;
    let totals_row = totals_rows.first().cloned().unwrap_or_default();
    let requests = u64_of(&totals_row, "requests");
    if requests == 0 {
        return Err(AnalyzerError::Input(format!(
            "run '{run}' has no requests outside warm-up in {}; list the runs with: loadlens sql \"SELECT run_id, started_at FROM runs\"",
            store.root().display()
        )));
    }
    let errors = u64_of(&totals_row, "errors");
    let first = f64_of(&totals_row, "first_s").unwrap_or(0.0);
    let last = f64_of(&totals_row, "last_s").unwrap_or(first);
    let totals = Totals {
        requests,
        errors,
        error_rate: errors as f64 / requests as f64,
        p50_ms: f64_of(&totals_row, "p50_ms").unwrap_or(0.0),
        p95_ms: f64_of(&totals_row, "p95_ms").unwrap_or(0.0),
        p99_ms: f64_of(&totals_row, "p99_ms").unwrap_or(0.0),
        seconds: last - first,
    };

    let manifest = rows(
        store,
        &format!("SELECT scenario, model FROM runs WHERE run_id = {run_literal} LIMIT 1"),
    )
    .await?;
    let manifest = manifest.first().cloned().unwrap_or_default();

    let stages = rows(
        store,
        &format!(
            "SELECT stage, MAX(concurrency) AS concurrency, COUNT(*) AS requests,
                COUNT(*) / NULLIF((CAST(MAX(intended_start) AS BIGINT) - CAST(MIN(intended_start) AS BIGINT)) / 1e9, 0) AS throughput,
                percentile(latency_ms, 0.5) AS p50_ms,
                percentile(latency_ms, 0.95) AS p95_ms,
                percentile(latency_ms, 0.99) AS p99_ms,
                AVG(CASE WHEN is_error THEN 1.0 ELSE 0.0 END) AS error_rate
             FROM requests WHERE {measured}
             GROUP BY stage ORDER BY MIN(COALESCE(intended_start, sent_at))"
        ),
    )
    .await?
    .iter()
    .map(|row| Stage {
        stage: str_of(row, "stage").unwrap_or_else(|| "(none)".into()),
        concurrency: f64_of(row, "concurrency"),
        requests: u64_of(row, "requests"),
        throughput: f64_of(row, "throughput"),
        p50_ms: f64_of(row, "p50_ms").unwrap_or(0.0),
        p95_ms: f64_of(row, "p95_ms").unwrap_or(0.0),
        p99_ms: f64_of(row, "p99_ms").unwrap_or(0.0),
        error_rate: f64_of(row, "error_rate").unwrap_or(0.0),
    })
    .collect();

    // About a hundred buckets, at least a second wide.
    let bucket_seconds = ((totals.seconds / 100.0).ceil() as u64).max(1);
    let timeline = rows(
        store,
        &format!(
            "SELECT CAST(CAST(time_bucket('{bucket_seconds} seconds', COALESCE(intended_start, sent_at)) AS BIGINT) AS DOUBLE) / 1e9 AS start_s,
                COUNT(*) / {bucket_seconds}.0 AS requests_per_second,
                SUM(CASE WHEN is_error THEN 1 ELSE 0 END) / {bucket_seconds}.0 AS errors_per_second,
                percentile(latency_ms, 0.5) AS p50_ms,
                percentile(latency_ms, 0.99) AS p99_ms
             FROM requests WHERE {measured}
             GROUP BY 1 ORDER BY 1"
        ),
    )
    .await?
    .iter()
    .map(|row| Bucket {
        start: f64_of(row, "start_s").unwrap_or(0.0),
        requests_per_second: f64_of(row, "requests_per_second").unwrap_or(0.0),
        errors_per_second: f64_of(row, "errors_per_second").unwrap_or(0.0),
        p50_ms: f64_of(row, "p50_ms").unwrap_or(0.0),
        p99_ms: f64_of(row, "p99_ms").unwrap_or(0.0),
    })
    .collect();

    let errors_by_type = rows(
        store,
        &format!(
            "SELECT COALESCE(error_type, 'unknown') AS error_type, COUNT(*) AS requests
             FROM requests WHERE {measured} AND is_error
             GROUP BY 1 ORDER BY 2 DESC, 1"
        ),
    )
    .await?
    .iter()
    .map(|row| {
        (
            str_of(row, "error_type").unwrap_or_default(),
            u64_of(row, "requests"),
        )
    })
    .collect();

    let usl = match usl::run_points(store, run, Concurrency::Configured).await {
        Ok(points) => usl::report(format!("run {run}"), points, Questions::default())
            .map_err(|e| e.to_string()),
        Err(AnalyzerError::Input(message)) => Err(message),
        Err(other) => return Err(other),
    };

    let sections = match crate::bottleneck::analyze(store.context(), run, None).await {
        Ok(critical) => vec![bottleneck_section(&critical)],
        Err(e) => vec![Section {
            title: "Bottlenecks".into(),
            key: "bottleneck".into(),
            json: json!({ "unavailable": e.to_string() }),
            markdown: format!("No critical-path analysis: {e}"),
            findings: Vec::new(),
        }],
    };

    Ok(Report {
        run: run.to_string(),
        scenario: str_of(&manifest, "scenario"),
        model: str_of(&manifest, "model"),
        totals,
        stages,
        bucket_seconds,
        timeline,
        errors: errors_by_type,
        usl,
        sections,
    })
}

/// Operations shown in the report's bottleneck table.
const TOP_OPERATIONS: usize = 8;

/// The critical-path attribution as a report section.
pub fn bottleneck_section(critical: &crate::bottleneck::Report) -> Section {
    let mut operations: Vec<&crate::bottleneck::Operation> = critical.operations.iter().collect();
    operations.sort_by(|a, b| b.share.total_cmp(&a.share));
    let mut table = String::from(
        "| service | operation | share of end-to-end | per-trace share p50 | p95 | self ms | at most ×faster if 2× |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for op in operations.iter().take(TOP_OPERATIONS) {
        table.push_str(&format!(
            "| {} | `{}` | {:.1} % | {:.1} % | {:.1} % | {} | {:.2} |\n",
            op.service,
            op.operation,
            100.0 * op.share,
            100.0 * op.share_p50,
            100.0 * op.share_p95,
            two_digits(op.self_ms_mean),
            op.speedup_if_2x
        ));
    }
    if let Some(note) = &critical.note {
        table.push_str(&format!("\n{note}\n"));
    }
    let findings = operations
        .first()
        .map(|top| {
            vec![format!(
                "{} ({}) holds {:.0} % of end-to-end time on the critical path ({:.0} % at the 95th percentile of traces); halving it would make requests at most {:.2}× faster",
                top.service,
                top.operation,
                100.0 * top.share,
                100.0 * top.share_p95,
                top.speedup_if_2x
            )]
        })
        .unwrap_or_default();
    Section {
        title: "Bottlenecks (critical path)".into(),
        key: "bottleneck".into(),
        json: serde_json::to_value(critical).unwrap_or(Value::Null),
        markdown: table,
        findings,
    }
}

/// An SLO check as a report section.
pub fn slo_section(check: &crate::slo::Check) -> Section {
    let mut table = String::from(
        "| objective | target | SLI | budget remaining | alerts firing | met |\n|---|---:|---:|---:|---|---|\n",
    );
    let mut findings = Vec::new();
    for objective in &check.objectives {
        let budget = &objective.report.budget;
        let firing: Vec<String> = objective
            .report
            .alerts
            .iter()
            .filter(|a| a.firing)
            .map(|a| a.severity.clone())
            .collect();
        let remaining = budget
            .remaining_fraction
            .map_or("n/a".to_string(), |f| format!("{:.1} %", 100.0 * f));
        table.push_str(&format!(
            "| {} | {:.3} % | {} | {remaining} | {} | {} |\n",
            objective.name,
            100.0 * objective.target,
            budget
                .sli
                .map_or("n/a".to_string(), |v| format!("{:.3} %", 100.0 * v)),
            if firing.is_empty() {
                "none".to_string()
            } else {
                firing.join(", ")
            },
            if objective.met { "yes" } else { "**no**" }
        ));
        findings.push(format!(
            "SLO {} / {}: {} (SLI {} against {:.3} %, error budget remaining {remaining})",
            check.slo,
            objective.name,
            if objective.met { "met" } else { "violated" },
            budget
                .sli
                .map_or("n/a".to_string(), |v| format!("{:.3} %", 100.0 * v)),
            100.0 * objective.target,
        ));
    }
    Section {
        title: format!("SLO: {}", check.slo),
        key: format!("slo:{}", check.slo),
        json: serde_json::to_value(check).unwrap_or(Value::Null),
        markdown: table,
        findings,
    }
}

impl Report {
    /// The findings, most important first, each a sentence with its numbers.
    pub fn findings(&self) -> Vec<String> {
        let mut findings = Vec::new();
        if let Ok(usl) = &self.usl {
            let p = usl.fit.params;
            let contention = format!("contention σ = {:.1} %", 100.0 * p.sigma);
            match p.peak_concurrency() {
                Some(n_star) => findings.push(format!(
                    "throughput peaks near {} concurrent requests at {} req/s; {contention}, coherency κ = {:.2e}",
                    grouped(n_star),
                    grouped(p.throughput(n_star)),
                    p.kappa
                )),
                None => findings.push(format!(
                    "throughput did not peak within the measured range; it approaches {} req/s; {contention}",
                    p.amdahl_ceiling()
                        .map_or("no limit".to_string(), grouped)
                )),
            }
        }
        let best = self
            .stages
            .iter()
            .filter_map(|s| s.throughput.map(|t| (t, s)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((throughput, stage)) = best {
            findings.push(format!(
                "the best measured stage, {}, served {} req/s with p99 {} ms",
                stage.stage,
                grouped(throughput),
                two_digits(stage.p99_ms)
            ));
        }
        if let (Some(first), Some(last)) = (self.stages.first(), self.stages.last())
            && self.stages.len() > 1
            && first.p99_ms > 0.0
        {
            findings.push(format!(
                "p99 latency went from {} ms in {} to {} ms in {} (×{:.1})",
                two_digits(first.p99_ms),
                first.stage,
                two_digits(last.p99_ms),
                last.stage,
                last.p99_ms / first.p99_ms
            ));
        }
        if self.totals.errors == 0 {
            findings.push(format!(
                "no errors in {} requests",
                grouped(self.totals.requests as f64)
            ));
        } else {
            let (kind, count) = &self.errors[0];
            findings.push(format!(
                "{} of {} requests failed ({:.2} %), most often {kind} ({})",
                grouped(self.totals.errors as f64),
                grouped(self.totals.requests as f64),
                100.0 * self.totals.error_rate,
                grouped(*count as f64)
            ));
        }
        for section in &self.sections {
            findings.extend(section.findings.iter().cloned());
        }
        findings
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "run": self.run,
            "scenario": self.scenario,
            "model": self.model,
            "totals": self.totals,
            "stages": self.stages,
            "bucket_seconds": self.bucket_seconds,
            "timeline": self.timeline,
            "errors": self.errors.iter().map(|(kind, n)| json!({"error_type": kind, "requests": n})).collect::<Vec<_>>(),
            "usl": match &self.usl {
                Ok(report) => report.to_json(),
                Err(why) => json!({ "unavailable": why }),
            },
            "findings": self.findings(),
        });
        let sections: BTreeMap<&str, &Value> = self
            .sections
            .iter()
            .map(|s| (s.key.as_str(), &s.json))
            .collect();
        if let Value::Object(map) = &mut value {
            for (key, section) in sections {
                map.insert(key.to_string(), section.clone());
            }
        }
        value
    }
}

/// A number with thousands separators and no more precision than a reader needs.
pub fn grouped(value: f64) -> String {
    let rounded = if value.abs() >= 100.0 {
        value.round()
    } else {
        (value * 10.0).round() / 10.0
    };
    let text = if rounded.fract() == 0.0 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded:.1}")
    };
    let (sign, rest) = text
        .strip_prefix('-')
        .map_or(("", text.as_str()), |r| ("-", r));
    let (whole, fraction) = rest.split_once('.').map_or((rest, ""), |(w, f)| (w, f));
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if fraction.is_empty() {
        format!("{sign}{out}")
    } else {
        format!("{sign}{out}.{fraction}")
    }
}

/// Two significant digits for latencies: 0.52, 4.3, 45, 1,200.
pub fn two_digits(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if magnitude >= 1 {
        let unit = 10f64.powi(magnitude - 1);
        grouped((value / unit).round() * unit)
    } else {
        let decimals = (1 - magnitude) as usize;
        format!("{value:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(grouped(12341.7457), "12,342");
        assert_eq!(grouped(35.57), "35.6");
        assert_eq!(grouped(1_000_000.0), "1,000,000");
        assert_eq!(grouped(-4_321.0), "-4,321");
        assert_eq!(two_digits(0.523), "0.52");
        assert_eq!(two_digits(4.349), "4.3");
        assert_eq!(two_digits(45.4), "45");
        assert_eq!(two_digits(1234.0), "1,200");
    }

    #[test]
    fn run_ids_are_quoted_as_sql_literals() {
        assert_eq!(literal("a'b"), "'a''b'");
    }
}
