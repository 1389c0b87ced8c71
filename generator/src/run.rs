//! One generator run: stages in order, a monitor for progress and
//! abort-on-fail thresholds, then the summary, the ledger and the manifest.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use exporter::attributes::{int, string};
use exporter::proto_trace::{Span, span::SpanKind};
use exporter::{ExportStats, Exporter, ExporterConfig, MetricsConfig, MetricsExporter};
use schema::attr;
use schema::object::{ObjectRoot, is_object_url};

use crate::auth::{Fetch, TokenProvider};
use crate::config::RunConfig;
use crate::engine::Engine;
use crate::ledger::{LedgerReport, LedgerWriter, Names};
use crate::plan::{Plan, Shape, TokenSource};
use crate::span::new_context;
use crate::summary::{
    AuthSummary, LedgerSummary, Percentiles, RunSummary, StageSummary, StepSummary, rate,
};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid load: {0}")]
    BadLoad(String),
    #[error(transparent)]
    Export(#[from] exporter::ExportError),
    #[error("--data: {0}")]
    BadStore(String),
    #[error("environment: {0}")]
    BadEnv(String),
}

impl RunError {
    /// Whether the error is the user's input (exit 2) rather than the environment (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::BadLoad(_)
                | RunError::Export(_)
                | RunError::BadStore(_)
                | RunError::BadEnv(_)
        )
    }
}

/// Runs the plan and returns its summary.
pub async fn run(plan: Plan, config: RunConfig) -> Result<RunSummary, RunError> {
    let (shard, shards) = config.shard;
    if shards == 0 || shard >= shards {
        return Err(RunError::BadLoad(format!(
            "shard {shard}/{shards}: the index must be below the count"
        )));
    }
    let client = crate::http::client(&plan.http).map_err(RunError::BadLoad)?;
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
        Some(endpoint) => Some(Exporter::start(
            exporter_config(endpoint)
                .with_batch_env(|name| std::env::var(name).ok())
                .map_err(RunError::BadEnv)?,
        )?),
        None => None,
    };
    let metrics = match &config.collector {
        Some(endpoint) => Some(MetricsExporter::start(MetricsConfig::from(
            &exporter_config(endpoint),
        ))?),
        None => None,
    };
    // A ledger bound for object storage is written to a local staging folder
    // and uploaded when the run ends.
    let upload_ledger = match config.ledger.as_deref().and_then(Path::to_str) {
        Some(url) if is_object_url(url) => {
            let to = ObjectRoot::parse(url).map_err(RunError::BadStore)?;
            let staging = std::env::temp_dir().join(format!(
                "loadlens-ledger-{}-{shard}-{}",
                config.run_id,
                std::process::id()
            ));
            Some((to, staging))
        }
        _ => None,
    };
    let ledger_root = match &upload_ledger {
        Some((_, staging)) => Some(staging.clone()),
        None => config.ledger.clone(),
    };
    let (ledger_sink, ledger_writer) = match &ledger_root {
        Some(root) => {
            let names = Names {
                steps: plan.requests.iter().map(|r| r.name.clone()).collect(),
                stages: plan.load.stages.iter().map(|s| s.name.clone()).collect(),
            };
            let (sink, writer) = LedgerWriter::start(
                root.clone(),
                config.run_id.clone(),
                shard,
                names,
                config.after_ledger_file,
            );
            (Some(sink), Some(writer))
        }
        None => (None, None),
    };
    let stages = plan.load.stages.clone();
    let max_in_flight = plan.load.max_in_flight.min(MAX_PERMITS);
    let seed = plan.load.seed.unwrap_or_else(rand::random);
    let model = plan.load.model.as_str().to_string();
    let manifest_config = manifest_config(&plan, &config);
    let auth_settings = plan
        .auth
        .as_ref()
        .map(|a| (a.refresh_before, default_ttl(&a.source)));
    let engine = Arc::new_cyclic(|weak: &Weak<Engine>| {
        let auth = auth_settings.map(|(refresh_before, ttl)| {
            let weak = weak.clone();
            let fetch: Fetch = Arc::new(move || {
                let weak = weak.clone();
                Box::pin(async move {
                    match weak.upgrade() {
                        Some(engine) => engine.fetch_token().await,
                        None => Err("the run has ended".into()),
                    }
                })
            });
            TokenProvider::new(fetch, ttl, refresh_before)
        });
        Engine::new(
            plan,
            client,
            exporter.as_ref().map(Exporter::sink),
            ledger_sink,
            auth,
            config.run_id.clone(),
            config.shard,
            config.propagate,
        )
    });

    if let Some(wait) = config
        .start_at
        .and_then(|at| at.duration_since(SystemTime::now()).ok())
    {
        if config.progress {
            eprintln!("  waiting {:.1} s for the start time", wait.as_secs_f64());
        }
        tokio::time::sleep(wait).await;
    }
    let interrupt = {
        let engine = engine.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                engine.abort("interrupted (Ctrl-C); finishing requests in flight".into());
                // A second Ctrl-C stops at once.
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };
    let started = engine.clock.now();
    let (stage_tx, stage_rx) = tokio::sync::watch::channel((0usize, Instant::now()));
    let monitor = tokio::spawn(monitor(
        engine.clone(),
        stage_rx,
        config.progress,
        metrics.clone(),
        started as u64,
    ));
    let mut stage_records = Vec::new();
    for (index, stage) in stages.iter().enumerate() {
        if engine.aborted() {
            break;
        }
        let _ = stage_tx.send((index, Instant::now()));
        let stage_start = engine.clock.now();
        let elapsed = crate::load::run_stage(&engine, index, stage, max_in_flight, seed).await;
        engine.recorder.stage_seconds(index, elapsed.as_secs_f64());
        stage_records.push(serde_json::json!({
            "name": stage.name,
            "warmup": stage.warmup,
            "start_unix_nanos": stage_start,
            "end_unix_nanos": engine.clock.now(),
            "target": stage.shape.target(),
        }));
        if config.progress {
            let (p50, p99, requests, errors) = engine.recorder.stage_brief(index);
            eprintln!(
                "{}  {:<10} done: {requests} requests, {:.1} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {errors} errors",
                if std::io::stderr().is_terminal() {
                    "\r\x1b[K"
                } else {
                    ""
                },
                stage.name,
                rate(requests, elapsed.as_secs_f64()),
            );
        }
    }
    let ended = engine.clock.now();
    monitor.abort();
    let _ = monitor.await;
    interrupt.abort();
    let _ = interrupt.await;

    let aborted = engine.abort_reason();
    if let Some(metrics) = metrics {
        // The final totals, so the store holds the whole run's counts.
        let snapshot = crate::metrics::snapshot(&engine, started as u64, ended as u64);
        let _ = metrics.export(snapshot).await;
        metrics.shutdown().await;
    }
    let spans = match exporter {
        Some(exporter) => exporter.shutdown().await,
        None => ExportStats::default(),
    };
    let mut ledger: Option<LedgerReport> = match ledger_writer {
        Some(writer) => Some(writer.finish().await),
        None => None,
    };
    if let (Some(report), Some((to, staging))) = (ledger.as_mut(), &upload_ledger) {
        match collector::store::ship::ship(staging, to, u64::MAX, Duration::ZERO).await {
            Ok(_) => {
                let _ = std::fs::remove_dir_all(staging);
            }
            Err(e) => {
                report
                    .error
                    .get_or_insert(format!("{e}; the ledger stays in {}", staging.display()));
            }
        }
    }
    let (plan, counters, auth) = (&engine.plan, &engine.counters, &engine.auth);
    let (run, stage_totals) = engine.recorder.finish();
    let thresholds: Vec<_> = plan.thresholds.iter().map(|t| t.verdict(&run)).collect();
    let mut summary = RunSummary {
        run_id: config.run_id.clone(),
        scenario: plan.name.clone(),
        model,
        shard,
        shard_count: shards,
        started_at_unix_nanos: started,
        ended_at_unix_nanos: ended,
        duration_s: run.seconds,
        requests_sent: counters.sent.load(Ordering::Relaxed),
        requests: run.requests,
        requests_ok: run.requests - run.errors,
        requests_failed: run.errors,
        success_rate: if run.requests > 0 {
            (run.requests - run.errors) as f64 / run.requests as f64
        } else {
            1.0
        },
        throughput_rps: rate(run.requests, run.seconds),
        latency_ms: Percentiles::of(&run.latency),
        service_time_ms: Percentiles::of(&run.service),
        errors_by_type: run
            .errors_by_type
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        requests_dropped: run.dropped,
        iterations_late: run.late,
        warmup_requests: stages
            .iter()
            .zip(&stage_totals)
            .filter(|(s, _)| s.warmup)
            .map(|(_, t)| t.requests)
            .sum(),
        checks: run.checks,
        checks_failed: run.checks_failed,
        spans_exported: spans.exported,
        spans_dropped: spans.dropped,
        spans_sampled_out: counters.sampled_out.load(Ordering::Relaxed),
        manifest_exported: false,
        auth: auth.as_ref().map(|a| AuthSummary {
            refreshes: a.refreshes(),
            failures: a.failures(),
            retries: counters.auth_retries.load(Ordering::Relaxed),
        }),
        ledger: ledger.map(|l| LedgerSummary {
            rows: l.rows,
            files: l.files.len(),
            error: l.error,
        }),
        stages: stages
            .iter()
            .zip(&stage_totals)
            .take(stage_records.len())
            .map(|(s, t)| StageSummary::of(s.name.clone(), s.warmup, s.shape.target(), t))
            .collect(),
        steps: plan
            .requests
            .iter()
            .zip(&run.steps)
            .map(|(r, t)| StepSummary {
                step: r.name.clone(),
                requests: t.requests,
                errors: t.errors,
                latency_ms: Percentiles::of(&t.latency),
                service_time_ms: Percentiles::of(&t.service),
            })
            .collect(),
        thresholds_passed: thresholds.iter().all(|v| v.passed),
        thresholds,
        aborted,
    };
    if let Some(endpoint) = &config.collector {
        let manifest = Exporter::start(exporter_config(endpoint))?;
        manifest.sink().send(run_span(
            &config,
            &summary,
            &manifest_config,
            &stage_records,
        ));
        summary.manifest_exported = manifest.shutdown().await.exported == 1;
    }
    Ok(summary)
}

/// The semaphore's permit limit, kept well inside `u32` for `acquire_many`.
const MAX_PERMITS: usize = 1 << 20;

fn default_ttl(source: &TokenSource) -> Duration {
    match source {
        TokenSource::Login { ttl, .. } => *ttl,
        TokenSource::OAuth2(_) => Duration::from_secs(300),
    }
}

/// `line` cut to the terminal's width: a line that wraps is not redrawn in
/// place (`\r` and clearing reach only its last row), and would scroll.
fn fit_to_terminal(line: &str) -> &str {
    let columns = rustix::termios::tcgetwinsize(std::io::stderr())
        .map(|size| usize::from(size.ws_col))
        .unwrap_or(0);
    fit_to(line, columns)
}

/// The first `columns - 1` characters of `line` (the last column left free,
/// where some terminals wrap at once); all of it when the width is unknown.
fn fit_to(line: &str, columns: usize) -> &str {
    if columns == 0 {
        return line;
    }
    match line.char_indices().nth(columns - 1) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

/// How much of a stage is done, as a terminal's progress line starts:
/// `[#######-------------]  35%`.
fn progress_bar(done: f64) -> String {
    const WIDTH: usize = 20;
    let done = if done.is_finite() {
        done.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (done * WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        done * 100.0
    )
}

/// Once a second: abort-on-fail thresholds, and progress on stderr (a
/// redrawn line with a bar on a terminal, a plain line every 5 s otherwise).
async fn monitor(
    engine: Arc<Engine>,
    stage: tokio::sync::watch::Receiver<(usize, Instant)>,
    progress: bool,
    metrics: Option<MetricsExporter>,
    started_ns: u64,
) {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // After a stall, one update, not a burst of them.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    let mut last_sent = engine.counters.sent.load(Ordering::Relaxed);
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        ticks += 1;
        if let Some(metrics) = &metrics {
            let snapshot = crate::metrics::snapshot(&engine, started_ns, engine.clock.now() as u64);
            let metrics = metrics.clone();
            tokio::spawn(async move { metrics.export(snapshot).await });
        }
        let (index, start) = *stage.borrow();
        let stage = &engine.plan.load.stages[index];
        let elapsed = start.elapsed();
        let measured = if stage.warmup {
            0.0
        } else {
            elapsed.as_secs_f64()
        };
        let aborting: Vec<_> = engine
            .plan
            .thresholds
            .iter()
            .filter(|t| t.abort_on_fail)
            .collect();
        if !aborting.is_empty() {
            let totals = engine.recorder.run_snapshot(measured);
            if let Some(failed) = aborting.iter().find(|t| t.fails_now(&totals)) {
                engine.abort(format!(
                    "threshold '{}' failed (abort_on_fail)",
                    failed.source
                ));
            }
        }
        if !progress || (!tty && !ticks.is_multiple_of(5)) {
            continue;
        }
        let sent = engine.counters.sent.load(Ordering::Relaxed);
        let per_second = (sent - last_sent) as f64 / if tty { 1.0 } else { 5.0 };
        last_sent = sent;
        let (p50, p99, requests, errors) = engine.recorder.stage_brief(index);
        let remaining = stage.duration.saturating_sub(elapsed).as_secs_f64();
        let target = match stage.shape {
            Shape::Closed { vus, .. } => format!("{vus} VUs"),
            shape => format!("{:.0}/s", shape.target()),
        };
        let line = format!(
            "  {:<10} {:>6.1}s ({:.0}s left) target {target}  {per_second:>9.1} req/s  p50 {p50:.2} ms  p99 {p99:.2} ms  {requests} requests  {errors} errors  {} in flight",
            stage.name,
            elapsed.as_secs_f64(),
            remaining,
            engine.counters.in_flight.load(Ordering::Relaxed),
        );
        if tty {
            let done = elapsed.as_secs_f64() / stage.duration.as_secs_f64().max(1e-9);
            let line = format!("{} {line}", progress_bar(done));
            eprint!("\r\x1b[K{}", fit_to_terminal(&line));
        } else {
            eprintln!("{line}");
        }
    }
}

/// The resolved configuration recorded in the manifest.
fn manifest_config(plan: &Plan, config: &RunConfig) -> serde_json::Value {
    serde_json::json!({
        "run": config,
        "scenario": plan.name,
        "model": plan.load.model.as_str(),
        "max_in_flight": plan.load.max_in_flight,
        "seed": plan.load.seed,
        "stages": plan.load.stages.iter().map(|s| serde_json::json!({
            "name": s.name,
            "warmup": s.warmup,
            "duration_s": s.duration.as_secs_f64(),
            "shape": format!("{:?}", s.shape),
        })).collect::<Vec<_>>(),
        "requests": plan.requests.iter().map(|r| serde_json::json!({
            "name": r.name,
            "method": r.method.as_str(),
            "checks": r.checks.len(),
            "extract": r.extract.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "mix": plan.choices.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "http": {
            "version": plan.http.version,
            "timeout_s": plan.http.timeout.as_secs_f64(),
            "connect_timeout_s": plan.http.connect_timeout.as_secs_f64(),
        },
        "thresholds": plan.thresholds.iter().map(|t| t.source.clone()).collect::<Vec<_>>(),
        "sampling": plan.sampling.ratio,
        "tracestate": plan.trace_state.as_ref().map(|s| s.as_str()),
    })
}

/// The `loadlens.run` span: the run manifest, covering the whole run.
fn run_span(
    config: &RunConfig,
    summary: &RunSummary,
    resolved: &serde_json::Value,
    stages: &[serde_json::Value],
) -> Span {
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
            string(attr::SCENARIO, summary.scenario.clone()),
            int(attr::SHARD, i64::from(config.shard.0)),
            string(attr::run::MODEL, summary.model.clone()),
            string(attr::run::CONFIG, resolved.to_string()),
            string(
                attr::run::STAGES,
                serde_json::Value::from(stages.to_vec()).to_string(),
            ),
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

#[cfg(test)]
mod tests {
    use super::{fit_to, progress_bar};

    #[test]
    fn the_progress_line_is_cut_to_the_terminal_width() {
        let line = "[####] 20%  main  1.0s (4s left)";
        assert_eq!(fit_to(line, 0), line, "width unknown");
        assert_eq!(fit_to(line, 200), line);
        assert_eq!(fit_to(line, 11), "[####] 20%");
        assert_eq!(fit_to(line, line.len() + 1), line);
        assert_eq!(fit_to(line, line.len()), &line[..line.len() - 1]);
        // A stage named in any script is cut between characters.
        assert_eq!(fit_to("ééé", 3), "éé");
    }

    #[test]
    fn the_progress_bar_fills_with_the_stage_and_stays_in_bounds() {
        assert_eq!(progress_bar(0.0), "[--------------------]   0%");
        assert_eq!(progress_bar(0.35), "[#######-------------]  35%");
        assert_eq!(progress_bar(1.0), "[####################] 100%");
        // A last tick past the stage's end, or a stage of no length.
        assert_eq!(progress_bar(1.2), progress_bar(1.0));
        assert_eq!(progress_bar(f64::NAN), progress_bar(0.0));
    }
}
