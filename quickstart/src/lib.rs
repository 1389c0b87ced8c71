//! `loadlens quickstart`: the whole pipeline on one machine with nothing
//! installed first.
//!
//! ```text
//!  demo system ◀── ladder of concurrent requests ── generator
//!      │ SERVER spans                                   │ CLIENT spans + run manifest
//!      └────────────▶ embedded collector ◀──────────────┘
//!                          │ Parquet
//!                          ▼
//!                     analyzer (SQL) ─▶ per-step summary
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use analyzer::Store;
use collector::{Collector, CollectorConfig};
use demo::{Demo, DemoConfig};
use generator::plan::DEFAULT_MAX_IN_FLIGHT;
use generator::{LoadModel, Plan, RunConfig};

/// What the quickstart runs.
#[derive(Debug, Clone)]
pub struct QuickstartConfig {
    /// Store root (created if missing).
    pub data_dir: PathBuf,
    /// Concurrency of each ladder step.
    pub steps: Vec<usize>,
    /// How long each step lasts.
    pub step_duration: Duration,
}

impl QuickstartConfig {
    /// The default ladder: 1 to 64 concurrent requests, 4 s a step (about 30 s of load).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        QuickstartConfig {
            data_dir: data_dir.into(),
            steps: vec![1, 2, 4, 8, 16, 32, 64],
            step_duration: Duration::from_secs(4),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error(transparent)]
    Collector(#[from] collector::CollectorError),
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    #[error(transparent)]
    Run(#[from] generator::RunError),
    #[error(transparent)]
    Analyzer(#[from] analyzer::AnalyzerError),
    #[error("the run lost telemetry: {0}")]
    Lost(String),
    #[error("invalid load: {0}")]
    Load(String),
    #[error("cannot write the report '{path}': {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the pipeline and prints progress to stderr; returns the summary text.
pub async fn run(config: QuickstartConfig) -> Result<String, QuickstartError> {
    let began = Instant::now();
    let data = &config.data_dir;
    eprintln!("loadlens quickstart: store at {}", data.display());
    let collector = Collector::start(CollectorConfig::ephemeral(data)).await?;
    let demo = Demo::start(DemoConfig::new(Some(collector.grpc_endpoint()))).await?;
    eprintln!(
        "  collector on {} (OTLP/gRPC), demo system on {}",
        collector.grpc_addr(),
        demo.api_addr()
    );
    let ladder = LoadModel::Ladder {
        steps: config.steps.clone(),
        step_duration: config.step_duration,
    };
    ladder.validate().map_err(QuickstartError::Load)?;
    let mut plan = Plan::quick(
        &demo.api_url(),
        "GET",
        ladder.plan(DEFAULT_MAX_IN_FLIGHT, None),
    )
    .map_err(QuickstartError::Load)?;
    plan.name = "quickstart".into();
    let mut run = RunConfig::new();
    run.collector = Some(collector.grpc_endpoint());
    run.ledger = Some(data.clone());
    eprintln!(
        "  run {}: concurrency ladder {:?}, {:.0} s per step",
        run.run_id,
        config.steps,
        config.step_duration.as_secs_f64()
    );
    let summary = generator::run(plan, run).await?;
    let demo_spans = demo.shutdown().await;
    let flushed = collector.shutdown().await?;
    eprintln!(
        "  stored {} rows in {} Parquet files",
        flushed.rows,
        flushed.files.len()
    );
    if summary.spans_dropped > 0 || demo_spans.dropped > 0 || !summary.manifest_exported {
        return Err(QuickstartError::Lost(format!(
            "{} generator spans and {} demo spans dropped, manifest exported: {}",
            summary.spans_dropped, demo_spans.dropped, summary.manifest_exported
        )));
    }

    let store = Store::open(data).await?;
    let steps = store.query(&step_query(&summary.run_id)).await?;
    let traces = store.query(&trace_query(&summary.run_id)).await?;
    let mut out = String::new();
    out.push_str(&format!(
        "\nrun {} — per step, from SQL over the store (latency from intended start):\n",
        summary.run_id
    ));
    out.push_str(&analyzer::output::table(&steps)?);
    out.push_str(&analyzer::output::table(&traces)?);

    let report = analyzer::report::gather(&store, &summary.run_id).await?;
    out.push_str("\nFindings:\n");
    for finding in report.findings() {
        out.push_str(&format!("  - {finding}\n"));
    }
    let reports = data.join("reports");
    let html = reports.join(format!("{}.html", summary.run_id));
    std::fs::create_dir_all(&reports)
        .and_then(|()| std::fs::write(&html, analyzer::report::html(&report)))
        .map_err(|source| QuickstartError::Report {
            path: html.clone(),
            source,
        })?;
    out.push_str(&format!("report: {}\n", html.display()));
    out.push_str(&format!(
        "\nstore: {} ({}), quickstart took {:.1} s\n",
        data.display(),
        human_bytes(dir_size(data)),
        began.elapsed().as_secs_f64()
    ));
    let data_arg = shell_quote(&data.display().to_string());
    out.push_str("\nTry next:\n");
    for example in examples(&summary.run_id) {
        out.push_str(&format!("  loadlens sql --data {data_arg} \"{example}\"\n"));
    }
    for command in ["usl", "bottleneck", "report"] {
        let extra = if command == "report" {
            " --html report.html"
        } else {
            ""
        };
        out.push_str(&format!(
            "  loadlens {command} --data {data_arg} {}{extra}\n",
            summary.run_id
        ));
    }
    Ok(out)
}

/// Throughput, latency percentiles and errors per ladder step.
fn step_query(run_id: &str) -> String {
    format!(
        "SELECT concurrency,
                COUNT(*) AS requests,
                ROUND(COUNT(*) * 1e9 / (CAST(MAX(end_time) AS BIGINT) - CAST(MIN(intended_start) AS BIGINT)), 1) AS throughput_rps,
                ROUND(percentile(latency_ms, 0.5), 2) AS p50_ms,
                ROUND(percentile(latency_ms, 0.95), 2) AS p95_ms,
                ROUND(percentile(latency_ms, 0.99), 2) AS p99_ms,
                ROUND(MAX(latency_ms), 2) AS max_ms,
                ROUND(100.0 * AVG(CASE WHEN is_error THEN 1.0 ELSE 0.0 END), 2) AS error_pct
         FROM requests
         WHERE run_id = '{run_id}'
         GROUP BY concurrency
         ORDER BY concurrency"
    )
}

/// How the demo's own spans joined the generator's traces.
fn trace_query(run_id: &str) -> String {
    format!(
        "SELECT s.service_name AS service, s.name AS operation, COUNT(*) AS spans,
                ROUND(percentile(CAST(s.duration_ns AS DOUBLE) / 1e6, 0.95), 2) AS p95_ms
         FROM spans s
         JOIN requests r ON s.trace_id = r.trace_id
         WHERE r.run_id = '{run_id}' AND s.span_id <> r.span_id
         GROUP BY 1, 2
         ORDER BY 1, 2"
    )
}

fn examples(run_id: &str) -> [String; 3] {
    [
        format!(
            "SELECT stage, COUNT(*) AS requests, percentile(latency_ms, 0.99) AS p99_ms FROM requests WHERE run_id = '{run_id}' GROUP BY stage ORDER BY MIN(concurrency)"
        ),
        "SELECT service_name, name, COUNT(*) AS spans, percentile(duration_ns / 1e6, 0.95) AS p95_ms FROM spans GROUP BY 1, 2 ORDER BY 1, 2".to_string(),
        format!(
            "SELECT encode(CAST(trace_id AS BYTEA), 'hex') AS trace_id, latency_ms FROM requests WHERE run_id = '{run_id}' ORDER BY latency_ms DESC LIMIT 5"
        ),
    ]
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Bytes under a folder.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
