//! `loadlens slo check`: runs an SLO's indicator SQL over the store and hands
//! the counts to `models::slo` for the budget and the burn rates.
//!
//! Every window ends at the end of the evaluated range: the run's end for
//! `--run`, else `--end` (default: now). A window longer than the range (a
//! ten-minute run against a one-hour window) covers what the range holds.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use models::slo::budget::{self, Counts, ObjectiveReport, Slice, Slicing};
use models::slo::time::{NANOS, calendar_period, format_seconds};
use models::slo::{
    BudgetingMethod, Counted, IndicatorSpec, Instant, MetricSource, Op, Rows, Slo, Span,
};
use serde::Serialize;

use crate::{AnalyzerError, Store};

/// Which stretch of data an SLO is checked over.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// One load run: its events, from its start to its end.
    pub run: Option<String>,
    /// A rolling window ending at `end`, instead of the file's window.
    pub window: Option<Span>,
    /// The end of the window (default: now). Not used with `run`.
    pub end: Option<Instant>,
    /// Only events of this `deployment_environment`.
    pub env: Option<String>,
}

/// The evaluated range.
#[derive(Debug, Clone, Serialize)]
pub struct Range {
    pub start: Instant,
    pub end: Instant,
    /// Length in seconds (rounded up).
    pub seconds: u64,
    pub run_id: Option<String>,
    pub env: Option<String>,
}

/// One objective's result.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveCheck {
    pub name: String,
    pub target: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub met: bool,
    #[serde(flatten)]
    pub report: ObjectiveReport,
}

/// The result of `loadlens slo check`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub slo: String,
    pub service: String,
    pub budgeting_method: BudgetingMethod,
    pub range: Range,
    /// Whether every objective is met.
    pub met: bool,
    pub objectives: Vec<ObjectiveCheck>,
}

/// Checks `slo` over the store.
pub async fn check(
    store: &Store,
    slo: &Slo,
    options: &CheckOptions,
) -> Result<Check, AnalyzerError> {
    let sources = Sources::new(store, slo, options).await?;
    let range = range(store, slo, options, &sources).await?;
    let rates = slo.burn_rates();
    let windows = budget::windows_needed(&rates);
    let mut objectives = Vec::new();
    for (i, objective) in slo.spec.objectives.iter().enumerate() {
        let good_when = match (objective.op, objective.value) {
            (Some(op), Some(value)) => Some(format!("v {} {value:?}", op.sql())),
            _ => None,
        };
        let report = match (
            slo.spec.budgeting_method,
            objective.time_slice_window,
            objective.time_slice_target,
        ) {
            (BudgetingMethod::Timeslices, Some(Span::Seconds(slice)), Some(slice_target)) => {
                let slices = sources
                    .slices(store, &range, slice, good_when.as_deref())
                    .await?;
                let budget_slices = match (
                    options.run.is_some() || options.window.is_some(),
                    &slo.spec.time_window.calendar,
                ) {
                    // A calendar period's budget covers the whole period, not only its elapsed part.
                    (false, Some(calendar)) => {
                        let (start, end) = calendar_period(
                            calendar.start_time,
                            slo.spec.time_window.duration,
                            range.end,
                        );
                        ((end.0 - start.0) / NANOS) as u64 / slice
                    }
                    _ => range.seconds.div_ceil(slice),
                };
                let slicing = Slicing {
                    slice,
                    slice_target,
                    budget_slices,
                };
                budget::evaluate_timeslices(
                    objective.target,
                    slicing,
                    &slices,
                    &rates,
                    range.seconds,
                )
            }
            _ => {
                let (all, per_window) = sources
                    .windows(store, &range, &windows, good_when.as_deref())
                    .await?;
                budget::evaluate_occurrences(
                    objective.target,
                    all,
                    &per_window,
                    &rates,
                    range.seconds,
                )
            }
        };
        objectives.push(ObjectiveCheck {
            name: slo.objective_name(i),
            target: objective.target,
            op: objective.op,
            value: objective.value,
            met: report.budget.met,
            report,
        });
    }
    Ok(Check {
        slo: slo.metadata.name.clone(),
        service: slo.spec.service.clone(),
        budgeting_method: slo.spec.budgeting_method,
        met: objectives.iter().all(|o| o.met),
        range,
        objectives,
    })
}

/// The evaluated range: the run's span, or the window ending at `end`.
async fn range(
    store: &Store,
    slo: &Slo,
    options: &CheckOptions,
    sources: &Sources,
) -> Result<Range, AnalyzerError> {
    let (start, end) = match &options.run {
        Some(run) => {
            let manifest = nanos_pair(
                store,
                &format!(
                    "SELECT CAST(MIN(started_at) AS BIGINT), CAST(MAX(ended_at) AS BIGINT) FROM runs WHERE run_id = {}",
                    quote(run)
                ),
            )
            .await?;
            match manifest {
                Some(span) => span,
                // No manifest (an interrupted run): the span of its events.
                None => sources.extent(store).await?.ok_or_else(|| {
                    AnalyzerError::Query(format!(
                        "run '{run}' has no events for this SLO and no manifest; list runs with: loadlens sql \"SELECT DISTINCT run_id FROM requests\""
                    ))
                })?,
            }
        }
        None => {
            let end = options.end.unwrap_or_else(now);
            let w = &slo.spec.time_window;
            let start = match (options.window, &w.calendar) {
                (Some(window), _) => end.plus(window, -1),
                (None, Some(calendar)) => calendar_period(calendar.start_time, w.duration, end).0,
                (None, None) => end.plus(w.duration, -1),
            };
            (start.0, end.0)
        }
    };
    Ok(Range {
        start: Instant(start),
        end: Instant(end),
        seconds: ((end - start).max(0) as u64).div_ceil(NANOS as u64).max(1),
        run_id: options.run.clone(),
        env: options.env.clone(),
    })
}

fn now() -> Instant {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Instant(since.as_nanos() as i64)
}

/// A string as a SQL literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An instant as a SQL timestamp literal.
fn at(t: Instant) -> String {
    format!("TIMESTAMP '{t}'")
}

/// The event relations of the indicator, each as SQL selecting `t` (the event
/// time) and `v` (the threshold value, if any), restricted to the run and environment.
#[derive(Debug)]
struct Sources {
    /// The total (or threshold) source.
    total: String,
    /// The counted side of a ratio: good or bad events.
    counted: Option<(bool, String)>,
}

impl Sources {
    async fn new(
        store: &Store,
        slo: &Slo,
        options: &CheckOptions,
    ) -> Result<Sources, AnalyzerError> {
        match &slo.spec.indicator.spec {
            IndicatorSpec::RatioMetric(r) => {
                let (good, source, which) = match &r.counted {
                    Counted::Good(s) => (true, s, "good"),
                    Counted::Bad(s) => (false, s, "bad"),
                };
                Ok(Sources {
                    total: relation(store, &r.total, "total", options).await?,
                    counted: Some((good, relation(store, source, which, options).await?)),
                })
            }
            IndicatorSpec::ThresholdMetric(t) => Ok(Sources {
                total: relation(store, &t.metric_source, "threshold", options).await?,
                counted: None,
            }),
        }
    }

    /// First and last event time of the total source.
    async fn extent(&self, store: &Store) -> Result<Option<(i64, i64)>, AnalyzerError> {
        nanos_pair(
            store,
            &format!(
                "SELECT CAST(MIN(t) AS BIGINT), CAST(MAX(t) AS BIGINT) FROM ({}) AS events",
                self.total
            ),
        )
        .await
    }

    /// Events of the whole range and of the last `w` seconds for each window.
    async fn windows(
        &self,
        store: &Store,
        range: &Range,
        windows: &[u64],
        good_when: Option<&str>,
    ) -> Result<(Counts, BTreeMap<u64, Counts>), AnalyzerError> {
        let count = |relation: &str, good: Option<&str>| {
            let mut columns = vec!["COUNT(*)".to_string()];
            let cond = |extra: &str| match good {
                Some(g) => format!("SUM(CASE WHEN {extra}({g}) THEN 1 ELSE 0 END)"),
                None => format!("SUM(CASE WHEN {extra}TRUE THEN 1 ELSE 0 END)"),
            };
            columns.push(cond(""));
            for &w in windows {
                let since = format!("t > {} AND ", at(range.end.plus_seconds(-(w as i64))));
                columns.push(format!("SUM(CASE WHEN {since}TRUE THEN 1 ELSE 0 END)"));
                columns.push(cond(&since));
            }
            // Aliased: a count and its good count can be the same expression.
            let columns: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c} AS c{i}"))
                .collect();
            format!(
                "SELECT {} FROM ({relation}) AS events WHERE {}",
                columns.join(", "),
                in_range(range)
            )
        };
        // (total, good) pairs: the whole range, then each window.
        let total = row_of_counts(store, &count(&self.total, good_when)).await?;
        let pairs: Vec<Counts> = match &self.counted {
            None => total
                .chunks(2)
                .map(|c| Counts {
                    total: c[0],
                    good: c[1],
                })
                .collect(),
            Some((is_good, relation)) => {
                let counted = row_of_counts(store, &count(relation, None)).await?;
                total
                    .chunks(2)
                    .zip(counted.chunks(2))
                    .map(|(t, c)| counts_of(*is_good, t[0], c[0]))
                    .collect()
            }
        };
        let all = pairs[0];
        let per_window = windows
            .iter()
            .copied()
            .zip(pairs[1..].iter().copied())
            .collect();
        Ok((all, per_window))
    }

    /// Events per slice of the range; slice 0 ends at the range's end.
    async fn slices(
        &self,
        store: &Store,
        range: &Range,
        slice: u64,
        good_when: Option<&str>,
    ) -> Result<Vec<Slice>, AnalyzerError> {
        let query = |relation: &str, good: Option<&str>| {
            format!(
                "SELECT CAST(({} - CAST(t AS BIGINT)) / {} AS BIGINT) AS slice, COUNT(*), SUM(CASE WHEN {} THEN 1 ELSE 0 END) \
                 FROM ({relation}) AS events WHERE {} GROUP BY 1",
                range.end.0,
                slice as i64 * NANOS,
                good.unwrap_or("TRUE"),
                in_range(range)
            )
        };
        let total = slice_counts(store, &query(&self.total, good_when)).await?;
        let merged: BTreeMap<u64, Counts> = match &self.counted {
            None => total
                .into_iter()
                .map(|(i, total, good)| (i, Counts { good, total }))
                .collect(),
            Some((is_good, relation)) => {
                let counted: BTreeMap<u64, u64> = slice_counts(store, &query(relation, None))
                    .await?
                    .into_iter()
                    .map(|(i, n, _)| (i, n))
                    .collect();
                total
                    .into_iter()
                    .map(|(i, n, _)| {
                        (
                            i,
                            counts_of(*is_good, n, counted.get(&i).copied().unwrap_or(0)),
                        )
                    })
                    .collect()
            }
        };
        Ok(merged
            .into_iter()
            .map(|(index, counts)| Slice { index, counts })
            .collect())
    }
}

/// Good and total from a ratio's total and counted side (bad beyond the total is capped).
fn counts_of(counted_is_good: bool, total: u64, counted: u64) -> Counts {
    let counted = counted.min(total);
    Counts {
        total,
        good: if counted_is_good {
            counted
        } else {
            total - counted
        },
    }
}

fn in_range(range: &Range) -> String {
    format!("t >= {} AND t <= {}", at(range.start), at(range.end))
}

/// The SQL of one metric source: its rows, filtered, as `t` (and `v`).
async fn relation(
    store: &Store,
    source: &MetricSource,
    which: &str,
    options: &CheckOptions,
) -> Result<String, AnalyzerError> {
    let spec = &source.spec;
    let from = match &spec.rows {
        Rows::Table(table) => table.clone(),
        Rows::Query(query) => format!("({}) AS source", query.trim().trim_end_matches(';')),
    };
    let failed = |e: AnalyzerError| match e {
        AnalyzerError::Query(message) => {
            AnalyzerError::Query(format!("the indicator's {which} source: {message}"))
        }
        other => other,
    };
    let columns: Vec<(String, DataType)> = store
        .plan(&format!("SELECT * FROM {from} LIMIT 0"))
        .await
        .map_err(failed)?
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let has = |name: &str| columns.iter().any(|(n, _)| n == name);
    let time = match &spec.time {
        Some(time) => time.clone(),
        None if has("end_time") => "end_time".into(),
        None if has("time") => "time".into(),
        None => {
            return Err(AnalyzerError::Query(format!(
                "the indicator's {which} source has neither end_time nor time; name its time column with `time:`"
            )));
        }
    };
    let mut conditions = Vec::new();
    if let Some(filter) = &spec.filter {
        conditions.push(format!("({filter})"));
    }
    for (flag, column, value) in [
        ("--run", "run_id", &options.run),
        ("--env", "deployment_environment", &options.env),
    ] {
        if let Some(value) = value {
            if !has(column) {
                return Err(AnalyzerError::Query(format!(
                    "{flag} needs a {column} column, which the indicator's {which} source lacks{}",
                    if column == "deployment_environment" {
                        "; use server_spans or spans for production data"
                    } else {
                        ""
                    }
                )));
            }
            conditions.push(format!("{column} = {}", quote(value)));
        }
    }
    let value = match &spec.value {
        Some(v) => format!(", CAST(({v}) AS DOUBLE) AS v"),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {time} AS t{value} FROM {from}{}",
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        }
    );
    // Plan it now, so a mistake in the filter names its source.
    store.plan(&sql).await.map_err(failed)?;
    Ok(sql)
}

async fn nanos_pair(store: &Store, sql: &str) -> Result<Option<(i64, i64)>, AnalyzerError> {
    let batches = store.query(sql).await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let get = |i: usize| {
        let column = batch.column(i).as_primitive::<Int64Type>();
        (!column.is_null(0)).then(|| column.value(0))
    };
    Ok(get(0).zip(get(1)))
}

/// The one row of a counting query, as numbers (NULL sums are 0).
async fn row_of_counts(store: &Store, sql: &str) -> Result<Vec<u64>, AnalyzerError> {
    let batches = store.query(sql).await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| AnalyzerError::Execution("a counting query returned no row".into()))?;
    (0..batch.num_columns())
        .map(|i| integer(batch.column(i).as_ref(), 0))
        .collect()
}

/// (slice, count, good count) rows.
async fn slice_counts(store: &Store, sql: &str) -> Result<Vec<(u64, u64, u64)>, AnalyzerError> {
    let mut rows = Vec::new();
    for batch in store.query(sql).await? {
        for r in 0..batch.num_rows() {
            rows.push((
                integer(batch.column(0).as_ref(), r)?,
                integer(batch.column(1).as_ref(), r)?,
                integer(batch.column(2).as_ref(), r)?,
            ));
        }
    }
    Ok(rows)
}

fn integer(column: &dyn Array, row: usize) -> Result<u64, AnalyzerError> {
    if column.is_null(row) {
        return Ok(0);
    }
    let cast = arrow::compute::cast(&column.slice(row, 1), &DataType::Int64)
        .map_err(|e| AnalyzerError::Execution(format!("unexpected count: {e}")))?;
    Ok(cast.as_primitive::<Int64Type>().value(0).max(0) as u64)
}

/// `loadlens slo check` as text.
pub fn render(check: &Check) -> String {
    let mut out = String::new();
    let over = match (&check.range.run_id, &check.range.env) {
        (Some(run), _) => format!("run {run}"),
        (None, Some(env)) => format!("environment {env}"),
        (None, None) => "all data".into(),
    };
    let _ = writeln!(
        out,
        "SLO {} (service {}), {}, over {over} from {} to {} ({})",
        check.slo,
        check.service,
        match check.budgeting_method {
            BudgetingMethod::Occurrences => "Occurrences",
            BudgetingMethod::Timeslices => "Timeslices",
        },
        check.range.start,
        check.range.end,
        format_seconds(check.range.seconds)
    );
    for o in &check.objectives {
        let b = &o.report.budget;
        let percent =
            |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{:.3}%", x * 100.0));
        let unit = if o.report.slices.is_some() {
            "slices"
        } else {
            "events"
        };
        let threshold = match (o.op, o.value) {
            (Some(op), Some(v)) => format!(" (value {} {v})", op.sql()),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "\nobjective {}{threshold}: {}",
            o.name,
            if o.met {
                "met"
            } else if b.sli.is_none() {
                "NO DATA"
            } else {
                "VIOLATED"
            }
        );
        let _ = writeln!(out, "  target            {}", percent(Some(o.target)));
        let _ = writeln!(out, "  SLI               {}", percent(b.sli));
        let _ = writeln!(
            out,
            "  events            {} good of {}",
            o.report.events.good, o.report.events.total
        );
        if let Some(s) = o.report.slices {
            let _ = writeln!(out, "  slices            {} good of {}", s.good, s.total);
        }
        let _ = writeln!(out, "  error budget      {:.1} bad {unit}", b.total);
        let _ = writeln!(out, "  consumed          {:.0} bad {unit}", b.consumed);
        let _ = writeln!(
            out,
            "  remaining         {:.1} bad {unit} ({})",
            b.remaining,
            percent(b.remaining_fraction)
        );
        let _ = writeln!(out, "  burn rates (windows end at {}):", check.range.end);
        let _ = writeln!(
            out,
            "    {:<8} {:>6}  {:<14} {:>10}  {:<14} {:>10}  firing",
            "severity", "factor", "long window", "burn", "short window", "burn"
        );
        for a in &o.report.alerts {
            let window = |w: &budget::WindowBurn| {
                if w.covered < w.window {
                    format!(
                        "{} ({})",
                        format_seconds(w.window),
                        format_seconds(w.covered)
                    )
                } else {
                    format_seconds(w.window)
                }
            };
            let burn = |w: &budget::WindowBurn| {
                w.burn_rate.map_or("n/a".to_string(), |b| format!("{b:.2}"))
            };
            let _ = writeln!(
                out,
                "    {:<8} {:>6}  {:<14} {:>10}  {:<14} {:>10}  {}",
                a.severity,
                models::slo::rules::number(a.factor),
                window(&a.long),
                burn(&a.long),
                window(&a.short),
                burn(&a.short),
                if a.firing { "YES" } else { "no" }
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if check.met {
            "all objectives met"
        } else {
            "SLO not met"
        }
    );
    out
}
