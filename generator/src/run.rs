//! One generator run: stages in order, progress while it goes, the manifest at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use exporter::attributes::{int, string};
use exporter::proto_trace::{Span, span::SpanKind};
use exporter::{ExportStats, Exporter, ExporterConfig};
use schema::attr;

use crate::config::{LoadModel, RunConfig};
use crate::schedule::{self, Shape, Stage, Target};
use crate::span::new_context;
use crate::summary::{RunSummary, StageStats};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid target URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    #[error("invalid load: {0}")]
    BadLoad(String),
    #[error(transparent)]
    Export(#[from] exporter::ExportError),
}

impl RunError {
    /// Whether the error is the user's input (exit 2) rather than the environment (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::BadUrl { .. } | RunError::BadLoad(_) | RunError::Export(_)
        )
    }
}

/// Runs the load and returns its summary.
pub async fn run(config: RunConfig) -> Result<RunSummary, RunError> {
    let uri = parse_url(&config.url)?;
    let method: ::http::Method = config
        .method
        .parse()
        .map_err(|_| RunError::BadLoad(format!("unknown HTTP method '{}'", config.method)))?;
    let stages = stages(&config)?;
    let resource = vec![
        string(attr::SERVICE_NAME, "loadlens-generator"),
        string(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
        string(attr::RUN_ID, config.run_id.clone()),
    ];
    let exporter_config = |endpoint: &str| {
        let mut exporter = ExporterConfig::new(endpoint, resource.clone());
        exporter.scope = (
            attr::GENERATOR_SCOPE.into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        exporter
    };
    let exporter = match &config.collector {
        Some(endpoint) => Some(Exporter::start(exporter_config(endpoint))?),
        None => None,
    };
    let target = Arc::new(Target::new(
        crate::http::client(config.timeout),
        method,
        uri,
        config.url.clone(),
        config.run_id.clone(),
        config.scenario.clone(),
        config.shard,
        config.timeout,
        config.propagate,
        exporter.as_ref().map(Exporter::sink),
    ));

    let started = target.clock.now();
    let mut summaries = Vec::new();
    let mut errors_by_type = BTreeMap::new();
    let mut stage_records = Vec::new();
    for stage in stages {
        let stage_start = target.clock.now();
        let progress = config
            .progress
            .then(|| tokio::spawn(progress(target.clone(), stage.clone())));
        let (stats, elapsed): (StageStats, Duration) =
            schedule::run_stage(target.clone(), stage.clone()).await;
        if let Some(progress) = progress {
            progress.abort();
        }
        for (error, count) in &stats.errors_by_type {
            *errors_by_type
                .entry(error.as_str().to_string())
                .or_insert(0) += count;
        }
        let summary = stats.summarize(
            stage.name.clone(),
            stage.shape.target(),
            elapsed.as_secs_f64(),
        );
        if config.progress {
            eprintln!(
                "  {:<8} done: {} requests, {:.1} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                summary.stage,
                summary.requests,
                summary.throughput_rps,
                summary.latency_ms.p50,
                summary.latency_ms.p99,
                summary.errors
            );
        }
        stage_records.push(serde_json::json!({
            "name": stage.name,
            "start_unix_nanos": stage_start,
            "end_unix_nanos": target.clock.now(),
            "target": stage.shape.target(),
        }));
        summaries.push(summary);
    }
    let ended = target.clock.now();

    let spans = match exporter {
        Some(exporter) => exporter.shutdown().await,
        None => ExportStats::default(),
    };
    let counters = &target.counters;
    let sent = counters.sent.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let mut summary = RunSummary {
        run_id: config.run_id.clone(),
        scenario: config.scenario.clone(),
        model: config.model.name().to_string(),
        started_at_unix_nanos: started,
        ended_at_unix_nanos: ended,
        requests_sent: sent,
        requests_ok: sent - failed,
        requests_failed: failed,
        requests_dropped: counters.dropped.load(Ordering::Relaxed),
        spans_exported: spans.exported,
        spans_dropped: spans.dropped,
        manifest_exported: false,
        errors_by_type,
        stages: summaries,
    };
    if let Some(endpoint) = &config.collector {
        let manifest = Exporter::start(exporter_config(endpoint))?;
        manifest
            .sink()
            .send(run_span(&config, &summary, &stage_records));
        summary.manifest_exported = manifest.shutdown().await.exported == 1;
    }
    Ok(summary)
}

fn parse_url(url: &str) -> Result<::http::Uri, RunError> {
    let bad = |reason: &str| RunError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: ::http::Uri = url
        .parse()
        .map_err(|e: ::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(bad(&format!(
                "scheme '{other}' is not supported yet; use http://"
            )));
        }
        None => return Err(bad("it has no scheme; write it as http://host:port/path")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    Ok(uri)
}

fn stages(config: &RunConfig) -> Result<Vec<Stage>, RunError> {
    let bad = |msg: String| Err(RunError::BadLoad(msg));
    match &config.model {
        LoadModel::Open { rate, duration } => {
            if !(rate.is_finite() && *rate > 0.0) {
                return bad(format!(
                    "--rate must be a positive number of requests per second, not {rate}"
                ));
            }
            if config.max_in_flight == 0 {
                return bad("the in-flight bound must be at least 1".into());
            }
            Ok(vec![Stage {
                name: "main".into(),
                shape: Shape::Open {
                    rate: *rate,
                    max_in_flight: config.max_in_flight.min(MAX_PERMITS),
                },
                duration: *duration,
            }])
        }
        LoadModel::Closed {
            concurrency,
            duration,
        } => {
            if *concurrency == 0 {
                return bad("--concurrency must be at least 1".into());
            }
            Ok(vec![Stage {
                name: "main".into(),
                shape: Shape::Closed {
                    concurrency: *concurrency,
                },
                duration: *duration,
            }])
        }
        LoadModel::Ladder {
            steps,
            step_duration,
        } => {
            if steps.is_empty() || steps.contains(&0) {
                return bad("ladder steps must be concurrency levels of at least 1".into());
            }
            Ok(steps
                .iter()
                .map(|&concurrency| Stage {
                    name: format!("c={concurrency}"),
                    shape: Shape::Closed { concurrency },
                    duration: *step_duration,
                })
                .collect())
        }
    }
}

/// The semaphore's permit limit, kept well inside `u32` for `acquire_many`.
const MAX_PERMITS: usize = 1 << 20;

/// Prints one line a second while a stage runs.
async fn progress(target: Arc<Target>, stage: Stage) {
    let start = Instant::now();
    let base = target.counters.sent.load(Ordering::Relaxed);
    let base_failed = target.counters.failed.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let elapsed = start.elapsed().as_secs_f64();
        let sent = target.counters.sent.load(Ordering::Relaxed) - base;
        let failed = target.counters.failed.load(Ordering::Relaxed) - base_failed;
        eprintln!(
            "  {:<8} {:>5.1}s/{:.0}s  {:>8} requests  {:>9.1} req/s  {} errors",
            stage.name,
            elapsed,
            stage.duration.as_secs_f64(),
            sent,
            sent as f64 / elapsed,
            failed
        );
    }
}

/// The `loadlens.run` span: the run manifest, covering the whole run.
fn run_span(config: &RunConfig, summary: &RunSummary, stages: &[serde_json::Value]) -> Span {
    let ctx = new_context();
    Span {
        trace_id: ctx.trace_id.0.to_vec(),
        span_id: ctx.parent_id.0.to_vec(),
        name: attr::RUN_SPAN_NAME.to_string(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: summary.started_at_unix_nanos as u64,
        end_time_unix_nano: summary.ended_at_unix_nanos as u64,
        attributes: vec![
            string(attr::RUN_ID, config.run_id.clone()),
            string(attr::SCENARIO, config.scenario.clone()),
            int(attr::SHARD, i64::from(config.shard.0)),
            string(attr::run::MODEL, config.model.name()),
            string(attr::run::CONFIG, to_json(config)),
            string(attr::run::STAGES, to_json(stages)),
            int(attr::run::SHARD_COUNT, i64::from(config.shard.1)),
            int(attr::run::REQUESTS_SENT, summary.requests_sent as i64),
            int(attr::run::REQUESTS_OK, summary.requests_ok as i64),
            int(attr::run::REQUESTS_FAILED, summary.requests_failed as i64),
            int(attr::run::REQUESTS_DROPPED, summary.requests_dropped as i64),
            int(attr::run::SPANS_EXPORTED, summary.spans_exported as i64),
            int(attr::run::SPANS_DROPPED, summary.spans_dropped as i64),
            string(attr::run::GENERATOR_VERSION, env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    }
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
