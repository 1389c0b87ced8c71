//! Bottleneck attribution: a run's traces from the store, their critical paths, summed by service and operation.
//!
//! ```text
//!  requests (run, step) ─▶ trace ids, root spans ─┐
//!  spans of those traces (any run_id: the target's ┴▶ models::critical_path ─▶ report
//!  spans usually carry none)                              (table · JSON · critical_path(run) in SQL)
//! ```
//!
//! Each trace is walked from the generator's CLIENT span, so the end-to-end
//! time is the request as the load generator saw it, from send to last byte.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayAccessor, ArrayRef, AsArray, BinaryArray, Float64Array, Int64Array, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use models::critical_path::{Attribution, Span, critical_path};
use schema::layout::utc_day;
use serde::Serialize;

use crate::AnalyzerError;
use crate::functions::percentile::quantile_linear;

/// What service a span with no `service.name` is counted under.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// How `loadlens bottleneck` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// A summary and an aligned text table.
    Table,
    /// One JSON object.
    Json,
}

impl std::str::FromStr for ReportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(ReportFormat::Table),
            "json" => Ok(ReportFormat::Json),
            other => Err(format!("unknown format '{other}': use table or json")),
        }
    }
}

/// Where the time of a run's requests went.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run.
    pub run_id: String,
    /// The request name (`step`) the traces were limited to, if any.
    pub step: Option<String>,
    /// Traced requests of the run (and step) found in the store.
    pub requests: u64,
    /// Traces analysed: one per traced request with a positive duration.
    pub traces: u64,
    /// Traces that hold at least one span of the system under test.
    pub traces_with_target_spans: u64,
    /// Spans whose parent was missing, counted as children of their trace's root.
    pub reattached_spans: u64,
    /// Spans no parent edge joins to the root (other roots, e.g. linked
    /// FOLLOWS_FROM work), left out.
    pub detached_spans: u64,
    /// End-to-end time of the traces (the generator's CLIENT span), ms.
    pub end_to_end_ms: Quantiles,
    /// One line per (service, operation, kind), largest share first.
    pub operations: Vec<Operation>,
    /// Something the reader must know to read the numbers right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Two percentiles of a distribution.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
}

/// One operation's part of the critical path.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    /// `service.name` of the spans.
    pub service: String,
    /// Span name.
    pub operation: String,
    /// Span kind (SERVER, CLIENT, INTERNAL, …).
    pub kind: String,
    /// Spans of this operation in the analysed traces.
    pub calls: u64,
    /// Traces holding at least one.
    pub traces: u64,
    /// Its time on the critical path over all end-to-end time.
    pub share: f64,
    /// Median over traces of its share of the trace (0 where it is absent).
    pub share_p50: f64,
    /// 95th percentile of the same.
    pub share_p95: f64,
    /// Mean time on the critical path per trace, ms.
    pub path_ms_mean: f64,
    /// Mean self time per call (its time minus its children's), ms.
    pub self_ms_mean: f64,
    /// Amdahl's bound: end-to-end at most this many times faster if this
    /// operation's own time were halved.
    pub speedup_if_2x: f64,
}

/// The columns of `critical_path(run)` and of `Report::operations_batch`.
static OPERATIONS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name| Field::new(name, DataType::Utf8, false);
    let int = |name| Field::new(name, DataType::Int64, false);
    let float = |name| Field::new(name, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        text("service"),
        text("operation"),
        text("kind"),
        int("calls"),
        int("traces"),
        float("share"),
        float("share_p50"),
        float("share_p95"),
        float("path_ms_mean"),
        float("self_ms_mean"),
        float("speedup_if_2x"),
    ]))
});

/// The schema of the per-operation rows.
pub fn operations_schema() -> SchemaRef {
    OPERATIONS_SCHEMA.clone()
}

impl Report {
    /// The operations as Arrow rows (the `critical_path` table function's result).
    pub fn operations_batch(&self) -> Result<RecordBatch, AnalyzerError> {
        let ops = &self.operations;
        let text = |f: fn(&Operation) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(ops.iter().map(f)))
        };
        let int = |f: fn(&Operation) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                ops.iter().map(|o| i64::try_from(f(o)).unwrap_or(i64::MAX)),
            ))
        };
        let float = |f: fn(&Operation) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(ops.iter().map(f)))
        };
        RecordBatch::try_new(
            operations_schema(),
            vec![
                text(|o| o.service.as_str()),
                text(|o| o.operation.as_str()),
                text(|o| o.kind.as_str()),
                int(|o| o.calls),
                int(|o| o.traces),
                float(|o| o.share),
                float(|o| o.share_p50),
                float(|o| o.share_p95),
                float(|o| o.path_ms_mean),
                float(|o| o.self_ms_mean),
                float(|o| o.speedup_if_2x),
            ],
        )
        .map_err(|e| AnalyzerError::Execution(format!("cannot build the operations rows: {e}")))
    }

    /// A summary and a table for people: shares in percent, times in ms.
    pub fn render_table(&self) -> Result<String, AnalyzerError> {
        let mut out = format!(
            "run {}{}: {} traces ({} with spans of the system under test), end-to-end p50 {:.2} ms, p95 {:.2} ms\n",
            self.run_id,
            self.step
                .as_ref()
                .map(|s| format!(", step '{s}'"))
                .unwrap_or_default(),
            self.traces,
            self.traces_with_target_spans,
            self.end_to_end_ms.p50,
            self.end_to_end_ms.p95,
        );
        if self.reattached_spans > 0 || self.detached_spans > 0 {
            out.push_str(&format!(
                "{} spans had no parent in their trace and were counted under its root; {} spans not joined to the root by a parent were left out\n",
                self.reattached_spans, self.detached_spans
            ));
        }
        if let Some(note) = &self.note {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push_str(
            "share: time on the critical path / end-to-end time; if 2x faster: Amdahl's bound on the end-to-end speed-up\n",
        );
        let ops = &self.operations;
        let column = |name: &str, f: &dyn Fn(&Operation) -> String| {
            (
                Field::new(name, DataType::Utf8, false),
                Arc::new(StringArray::from_iter_values(ops.iter().map(f))) as ArrayRef,
            )
        };
        let percent = |v: f64| format!("{:.1}%", 100.0 * v);
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = [
            column("service", &|o| o.service.clone()),
            column("operation", &|o| o.operation.clone()),
            column("kind", &|o| o.kind.clone()),
            column("calls", &|o| o.calls.to_string()),
            column("share", &|o| percent(o.share)),
            column("p50 share", &|o| percent(o.share_p50)),
            column("p95 share", &|o| percent(o.share_p95)),
            column("path ms/trace", &|o| format!("{:.3}", o.path_ms_mean)),
            column("self ms/call", &|o| format!("{:.3}", o.self_ms_mean)),
            column("if 2x faster", &|o| format!("{:.2}x", o.speedup_if_2x)),
        ]
        .into_iter()
        .unzip();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| {
            AnalyzerError::Output {
                format: "a table",
                message: e.to_string(),
            }
        })?;
        out.push_str(&crate::output::table(&[batch])?);
        Ok(out)
    }

    /// The report in the chosen format.
    pub fn render(&self, format: ReportFormat) -> Result<Vec<u8>, AnalyzerError> {
        match format {
            ReportFormat::Table => self.render_table().map(String::into_bytes),
            ReportFormat::Json => {
                let mut out =
                    serde_json::to_vec_pretty(self).map_err(|e| AnalyzerError::Output {
                        format: "JSON",
                        message: e.to_string(),
                    })?;
                out.push(b'\n');
                Ok(out)
            }
        }
    }
}

/// `loadlens bottleneck`: opens the store, analyses the run and renders the report.
pub async fn bottleneck(
    data_dir: &std::path::Path,
    options: &crate::session::Options,
    run_id: &str,
    step: Option<&str>,
    format: ReportFormat,
) -> Result<Vec<u8>, AnalyzerError> {
    let store = crate::Store::open_with(data_dir, options).await?;
    analyze(store.context(), run_id, step).await?.render(format)
}

/// The critical-path report of a run (optionally one request name of it).
pub async fn analyze(
    ctx: &SessionContext,
    run_id: &str,
    step: Option<&str>,
) -> Result<Report, AnalyzerError> {
    let requests = format!(
        "SELECT trace_id, span_id, CAST(sent_at AS BIGINT) AS start_ns, CAST(end_time AS BIGINT) AS end_ns \
         FROM requests WHERE {}",
        request_filter(run_id, step)
    );
    let roots = query(ctx, &requests).await?;
    let mut root_of: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for batch in &roots {
        let traces = binary(batch, "trace_id")?;
        let spans = binary(batch, "span_id")?;
        let starts = int64(batch, "start_ns")?;
        let ends = int64(batch, "end_ns")?;
        for row in 0..batch.num_rows() {
            let (Some(trace), Some(span)) = (get(&traces, row), get(&spans, row)) else {
                continue;
            };
            root_of
                .entry(trace.to_vec())
                .or_insert_with(|| span.to_vec());
            first = first.min(starts.value(row));
            last = last.max(ends.value(row));
        }
    }
    if root_of.is_empty() {
        return Err(no_requests(ctx, run_id, step).await);
    }

    // The target's spans start after the request was sent and end before its
    // answer; a minute of slack on both sides covers clocks that disagree.
    const SLACK_NS: i64 = 60_000_000_000;
    let spans_sql = format!(
        "SELECT trace_id, span_id, parent_span_id, service_name, name, kind,
                CAST(start_time AS BIGINT) AS start_ns, CAST(end_time AS BIGINT) AS end_ns
         FROM spans
         WHERE start_time >= {} AND start_time <= {}
           AND trace_id IN (SELECT trace_id FROM requests WHERE {})",
        timestamp_literal(first.saturating_sub(SLACK_NS)),
        timestamp_literal(last.saturating_add(SLACK_NS + 1_000_000_000)),
        request_filter(run_id, step)
    );
    let batches = query(ctx, &spans_sql).await?;

    let mut keys: HashMap<(String, String, String), usize> = HashMap::new();
    let mut traces: HashMap<Vec<u8>, Vec<Span<usize>>> = HashMap::with_capacity(root_of.len());
    for batch in &batches {
        let trace_ids = binary(batch, "trace_id")?;
        let span_ids = binary(batch, "span_id")?;
        let parents = binary(batch, "parent_span_id")?;
        let services = text(batch, "service_name")?;
        let names = text(batch, "name")?;
        let kinds = text(batch, "kind")?;
        let starts = int64(batch, "start_ns")?;
        let ends = int64(batch, "end_ns")?;
        for row in 0..batch.num_rows() {
            let (Some(trace), Some(id)) = (get(&trace_ids, row), get(&span_ids, row)) else {
                continue;
            };
            let key = (
                get(&services, row).unwrap_or(UNKNOWN_SERVICE).to_string(),
                get(&names, row).unwrap_or_default().to_string(),
                get(&kinds, row).unwrap_or_default().to_string(),
            );
            let next = keys.len();
            let key = *keys.entry(key).or_insert(next);
            traces.entry(trace.to_vec()).or_default().push(Span {
                id: span_id(id),
                parent: get(&parents, row).map(span_id),
                start: starts.value(row),
                end: ends.value(row),
                key,
            });
        }
    }

    // Ties in share are broken by key, so number the keys in name order.
    let mut names: Vec<(String, String, String)> = vec![Default::default(); keys.len()];
    for (key, index) in keys {
        names[index] = key;
    }
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| names[a].cmp(&names[b]));
    let mut rank = vec![0; names.len()];
    for (position, &index) in order.iter().enumerate() {
        rank[index] = position;
    }

    let mut attribution: Attribution<usize> = Attribution::default();
    let mut with_target = 0;
    for (trace, root_id) in &root_of {
        let Some(spans) = traces.get_mut(trace) else {
            continue;
        };
        for span in spans.iter_mut() {
            span.key = rank[span.key];
        }
        let root_id = span_id(root_id);
        let Some(root) = spans.iter().position(|s| s.id == root_id) else {
            continue;
        };
        let path = critical_path(spans, root)
            .map_err(|e| AnalyzerError::Execution(format!("critical path: {e}")))?;
        if path.duration <= 0 {
            continue;
        }
        if path.self_time.iter().flatten().count() > 1 {
            with_target += 1;
        }
        attribution.add(spans, &path);
    }

    let operations = attribution
        .summary(quantile_linear)
        .into_iter()
        .map(|line| {
            let (service, operation, kind) = names[order[line.key]].clone();
            Operation {
                service,
                operation,
                kind,
                calls: line.calls,
                traces: line.traces,
                share: line.share,
                share_p50: line.share_p50,
                share_p95: line.share_p95,
                path_ms_mean: line.path_mean_ns / 1e6,
                self_ms_mean: line.self_mean_ns / 1e6,
                speedup_if_2x: line.speedup_if_2x,
            }
        })
        .collect();
    let mut durations: Vec<f64> = attribution
        .durations
        .iter()
        .map(|&ns| ns as f64 / 1e6)
        .collect();
    let end_to_end_ms = Quantiles {
        p50: quantile_linear(&mut durations, 0.5).unwrap_or(0.0),
        p95: quantile_linear(&mut durations, 0.95).unwrap_or(0.0),
    };
    let note = if attribution.traces == 0 {
        Some(format!(
            "none of the run's {} traced requests has a positive duration or its own span in the store",
            root_of.len()
        ))
    } else if with_target == 0 {
        Some(
            "no trace holds spans of the system under test, so all time is the request as \
             the generator saw it; to see inside, have the target export OTLP spans to the \
             collector and continue the incoming traceparent (loadlens run sends it unless \
             --no-propagate)"
                .to_string(),
        )
    } else {
        None
    };
    Ok(Report {
        run_id: run_id.to_string(),
        step: step.map(str::to_string),
        requests: root_of.len() as u64,
        traces: attribution.traces,
        traces_with_target_spans: with_target,
        reattached_spans: attribution.reattached,
        detached_spans: attribution.detached,
        end_to_end_ms,
        operations,
        note,
    })
}

/// The WHERE clause that picks the run's (and step's) requests.
fn request_filter(run_id: &str, step: Option<&str>) -> String {
    let mut filter = format!("run_id = {}", literal(run_id));
    if let Some(step) = step {
        filter.push_str(&format!(" AND step = {}", literal(step)));
    }
    filter
}

/// A SQL string literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Why a run has no requests to analyse: an unknown run, an unknown step, or no traced requests.
async fn no_requests(ctx: &SessionContext, run_id: &str, step: Option<&str>) -> AnalyzerError {
    let list = |sql: String| async move {
        let batches = query(ctx, &sql).await.ok()?;
        let mut values = Vec::new();
        for batch in &batches {
            let column = text(batch, "value").ok()?;
            values.extend(column.iter().flatten().map(str::to_string));
        }
        Some(values)
    };
    let runs = list(format!(
        "SELECT run_id AS value FROM runs WHERE run_id = {} UNION SELECT DISTINCT run_id AS value FROM requests WHERE run_id = {}",
        literal(run_id),
        literal(run_id)
    ))
    .await
    .unwrap_or_default();
    if runs.is_empty() {
        let recent = list(
            "SELECT run_id AS value, MAX(started_at) AS started FROM runs GROUP BY run_id ORDER BY started DESC LIMIT 5"
                .to_string(),
        )
        .await
        .unwrap_or_default();
        let known = if recent.is_empty() {
            "the store holds no runs".to_string()
        } else {
            format!("recent runs: {}", recent.join(", "))
        };
        return AnalyzerError::Query(format!(
            "no run '{run_id}' in the store ({known}); list them with: loadlens sql \"SELECT run_id, scenario, started_at FROM runs ORDER BY started_at\""
        ));
    }
    if let Some(step) = step {
        let steps = list(format!(
            "SELECT DISTINCT step AS value FROM requests WHERE run_id = {} ORDER BY value",
            literal(run_id)
        ))
        .await
        .unwrap_or_default();
        if !steps.is_empty() {
            return AnalyzerError::Query(format!(
                "run '{run_id}' has no requests with step '{step}'; its steps: {}",
                steps.join(", ")
            ));
        }
    }
    AnalyzerError::Query(format!(
        "run '{run_id}' has no traced requests in the store: it ran with --no-telemetry, \
         or the collector has not written its spans yet (they are written every flush interval \
         and when the collector stops)"
    ))
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, AnalyzerError> {
    let fail = |e| AnalyzerError::from_datafusion(e, &[]);
    ctx.sql(sql)
        .await
        .map_err(fail)?
        .collect()
        .await
        .map_err(fail)
}

/// The first 8 bytes of a span id as a number (ids are 8 bytes).
fn span_id(bytes: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    let n = bytes.len().min(8);
    id[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(id)
}

/// One column of a result, cast to `to` (string columns may come back as views).
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, AnalyzerError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| AnalyzerError::Execution(format!("the query returned no column {name}")))?;
    cast(array, to).map_err(|e| AnalyzerError::Execution(format!("column {name}: {e}")))
}

fn binary(batch: &RecordBatch, name: &str) -> Result<BinaryArray, AnalyzerError> {
    Ok(column(batch, name, &DataType::Binary)?
        .as_binary::<i32>()
        .clone())
}

fn text(batch: &RecordBatch, name: &str) -> Result<StringArray, AnalyzerError> {
    Ok(column(batch, name, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

fn int64(batch: &RecordBatch, name: &str) -> Result<Int64Array, AnalyzerError> {
    Ok(column(batch, name, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

/// A value of a nullable array, `None` for NULL.
fn get<A: ArrayAccessor>(array: A, row: usize) -> Option<A::Item> {
    array.is_valid(row).then(|| array.value(row))
}

/// A time in ns as a SQL timestamp literal, to the second (rounded down).
fn timestamp_literal(unix_nanos: i64) -> String {
    const DAY_NS: i64 = 86_400 * 1_000_000_000;
    let seconds = unix_nanos.rem_euclid(DAY_NS) / 1_000_000_000;
    format!(
        "TIMESTAMP '{}T{:02}:{:02}:{:02}Z'",
        utc_day(unix_nanos),
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}
