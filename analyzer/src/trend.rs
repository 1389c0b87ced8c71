//! `loadlens trend`: one route's latency over a series of runs, with the runs where it shifted (E-divisive means).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use models::changepoint::{self, ChangePoint};
use serde::Serialize;

use crate::compare::{CLIENT_ROUTE, ReportFormat, format_time, grid, literal, num};
use crate::{AnalyzerError, Store};

/// The per-run figure the series is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    P50,
    P95,
    P99,
    Mean,
}

impl Metric {
    fn sql(self) -> &'static str {
        match self {
            Metric::P50 => "percentile(latency_ms, 0.5)",
            Metric::P95 => "percentile(latency_ms, 0.95)",
            Metric::P99 => "percentile(latency_ms, 0.99)",
            Metric::Mean => "AVG(latency_ms)",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::Mean => "mean",
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "p50" => Ok(Metric::P50),
            "p95" => Ok(Metric::P95),
            "p99" => Ok(Metric::P99),
            "mean" => Ok(Metric::Mean),
            other => Err(format!(
                "unknown metric '{other}': use p50, p95, p99 or mean"
            )),
        }
    }
}

/// What `loadlens trend` looks at.
#[derive(Debug, Clone)]
pub struct TrendOptions {
    /// The route (step name, or URL path for requests without one).
    pub route: String,
    /// These runs only; else every run with the route.
    pub runs: Option<Vec<String>>,
    /// Only the last N runs (by start time).
    pub last: Option<usize>,
    /// Only this stage of each run.
    pub stage: Option<String>,
    pub metric: Metric,
    pub settings: changepoint::Settings,
}

/// One run of the series.
#[derive(Debug, Clone, Serialize)]
pub struct RunPoint {
    pub run_id: String,
    /// First intended start, ns since the epoch.
    pub started_ns: i64,
    /// Successful requests on the route.
    pub requests: u64,
    /// The metric, ms.
    pub value: f64,
}

/// A run where the series shifted.
#[derive(Debug, Clone, Serialize)]
pub struct Shift {
    /// The first run after the change.
    pub run_id: String,
    pub index: usize,
    /// Median of the metric over the runs since the previous change (ms).
    pub before: f64,
    /// Median of the metric from this run to the next change (ms).
    pub after: f64,
    /// after / before − 1.
    pub relative_change: f64,
    pub p_value: f64,
}

/// The answer of `loadlens trend`.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub route: String,
    pub metric: Metric,
    pub alpha: f64,
    pub runs: Vec<RunPoint>,
    pub shifts: Vec<Shift>,
}

/// Reads the series and finds its change points.
pub async fn trend(store: &Store, options: &TrendOptions) -> Result<Trend, AnalyzerError> {
    let mut filters = vec![
        format!("route = {}", literal(&options.route)),
        "is_error IS NOT TRUE".to_string(),
    ];
    if let Some(stage) = &options.stage {
        filters.push(format!("stage = {}", literal(stage)));
    }
    if let Some(runs) = &options.runs {
        let list: Vec<String> = runs.iter().map(|r| literal(r)).collect();
        filters.push(format!("run_id IN ({})", list.join(", ")));
    }
    let sql = format!(
        "SELECT run_id, CAST(MIN(COALESCE(intended_start, sent_at)) AS BIGINT) AS started, \
         COUNT(*) AS requests, {} AS value \
         FROM (SELECT *, {CLIENT_ROUTE} AS route FROM requests) \
         WHERE {} GROUP BY run_id ORDER BY started, run_id",
        options.metric.sql(),
        filters.join(" AND ")
    );
    let cast = |array: &dyn Array, to: &DataType| {
        arrow::compute::cast(array, to).map_err(|e| AnalyzerError::Execution(e.to_string()))
    };
    let mut runs = Vec::new();
    for batch in store.query(&sql).await? {
        let ids = cast(batch.column(0), &DataType::Utf8)?;
        let started = cast(batch.column(1), &DataType::Int64)?;
        let requests = cast(batch.column(2), &DataType::Int64)?;
        let values = cast(batch.column(3), &DataType::Float64)?;
        let (ids, started, requests, values) = (
            ids.as_string::<i32>(),
            started.as_primitive::<Int64Type>(),
            requests.as_primitive::<Int64Type>(),
            values.as_primitive::<Float64Type>(),
        );
        for row in 0..batch.num_rows() {
            if ids.is_null(row) || values.is_null(row) {
                continue;
            }
            runs.push(RunPoint {
                run_id: ids.value(row).to_string(),
                started_ns: started.value(row),
                requests: requests.value(row) as u64,
                value: values.value(row),
            });
        }
    }
    if let Some(wanted) = &options.runs {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| !runs.iter().any(|r| &r.run_id == *w))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(AnalyzerError::Query(format!(
                "no successful requests on route '{}' in run(s) {}; check the run ids and the route (a step name)",
                options.route,
                missing.join(", ")
            )));
        }
    }
    if runs.is_empty() {
        return Err(AnalyzerError::Query(format!(
            "no run has successful requests on route '{}'; the route is a step name (loadlens sql \"SELECT DISTINCT step FROM requests\")",
            options.route
        )));
    }
    if let Some(last) = options.last {
        runs = runs.split_off(runs.len().saturating_sub(last));
    }
    let series: Vec<f64> = runs.iter().map(|r| r.value).collect();
    let found = changepoint::e_divisive(&series, &options.settings);
    let shifts = describe(&runs, &found);
    Ok(Trend {
        route: options.route.clone(),
        metric: options.metric,
        alpha: options.settings.alpha,
        runs,
        shifts,
    })
}

fn median(values: &[f64]) -> f64 {
    models::compare::Sample::new(values.to_vec())
        .quantile(0.5)
        .unwrap_or(f64::NAN)
}

/// Each change point with the medians of the segments on either side.
fn describe(runs: &[RunPoint], found: &[ChangePoint]) -> Vec<Shift> {
    let values: Vec<f64> = runs.iter().map(|r| r.value).collect();
    let mut bounds = vec![0];
    bounds.extend(found.iter().map(|c| c.index));
    bounds.push(values.len());
    found
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let before = median(&values[bounds[i]..bounds[i + 1]]);
            let after = median(&values[bounds[i + 1]..bounds[i + 2]]);
            Shift {
                run_id: runs[c.index].run_id.clone(),
                index: c.index,
                before,
                after,
                relative_change: after / before - 1.0,
                p_value: c.p_value,
            }
        })
        .collect()
}

/// Renders a trend.
pub fn render(trend: &Trend, format: ReportFormat) -> Result<String, AnalyzerError> {
    if format == ReportFormat::Json {
        return serde_json::to_string_pretty(trend)
            .map(|s| s + "\n")
            .map_err(|e| AnalyzerError::Output {
                format: "json",
                message: e.to_string(),
            });
    }
    let markdown = format == ReportFormat::Markdown;
    let metric = trend.metric.name();
    let rows: Vec<Vec<String>> = trend
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let shift = trend
                .shifts
                .iter()
                .find(|s| s.index == i)
                .map(|s| {
                    format!(
                        "shift {:+.1}% (p = {:.3})",
                        s.relative_change * 100.0,
                        s.p_value
                    )
                })
                .unwrap_or_default();
            vec![
                run.run_id.clone(),
                format_time(run.started_ns),
                run.requests.to_string(),
                num(run.value),
                shift,
            ]
        })
        .collect();
    let value_header = format!("{metric} ms");
    let mut out = if markdown {
        format!("## Trend of {metric} on {}\n\n", trend.route)
    } else {
        format!("route: {}\n\n", trend.route)
    };
    out += &grid(
        &[
            "run",
            "started",
            "requests",
            value_header.as_str(),
            "change",
        ],
        &rows,
        markdown,
    );
    out += &if trend.shifts.is_empty() {
        format!(
            "\nNo change point at the {} level (E-divisive means with a permutation test).\n",
            trend.alpha
        )
    } else {
        let list: Vec<String> = trend
            .shifts
            .iter()
            .map(|s| format!("{} ({} → {} ms)", s.run_id, num(s.before), num(s.after)))
            .collect();
        format!(
            "\nShifted at: {} (E-divisive means, permutation p ≤ {}).\n",
            list.join(", "),
            trend.alpha
        )
    };
    Ok(out)
}
