//! The `loadlens` command: parses arguments and calls the crates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod shell;

/// Every allocation in the collector, generator and analyzer goes through
/// mimalloc: with glibc's allocator, malloc and free took 30% of the
/// collector's samples and 15% of the traced generator's (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Calls into mimalloc itself. Its functions are declared `unsafe` only
/// because they are foreign; the ones here take plain values, no pointers.
#[allow(unsafe_code)]
mod allocator {
    /// Has mimalloc return the free pages it holds to the operating system.
    /// The ledger writer calls it after each file: sorting and encoding a
    /// file allocates tens of megabytes at once and frees them, and mimalloc
    /// kept those pages, so RSS crept up through a long run (BENCHMARKS.md,
    /// "RSS growth").
    pub fn return_free_memory() {
        // SAFETY: `mi_collect` takes no arguments that point anywhere; it
        // walks mimalloc's own structures (the calling thread's heap, and the
        // shared arenas under mimalloc's locks) and may be called from any
        // thread at any time.
        unsafe { libmimalloc_sys::mi_collect(true) }
    }

    /// `mi_option_purge_delay` in mimalloc v2's `mi_option_t`
    /// (`include/mimalloc.h` of the version libmimalloc-sys builds), for
    /// which the crate names no constant: between the two it names.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const _: () = assert!(
        PURGE_DELAY == libmimalloc_sys::mi_option_eager_commit_delay + 1
            && PURGE_DELAY + 1 == libmimalloc_sys::mi_option_use_numa_nodes
    );

    /// Applies [`collector::free_pages_kept_ms`] for a collector with this
    /// pending-memory bound, unless the environment sets mimalloc's delay
    /// itself (mimalloc read it at start).
    pub fn keep_free_pages_for_collector(max_pending_bytes: usize) {
        if collector::purge_delay_from_environment() {
            return;
        }
        if let Some(ms) = collector::free_pages_kept_ms(max_pending_bytes) {
            keep_free_pages_for(ms);
        }
    }

    /// Has mimalloc keep pages freed for `ms` milliseconds before it returns
    /// them to the operating system (its default is 10).
    fn keep_free_pages_for(ms: u32) {
        // SAFETY: `mi_option_set` stores a number in mimalloc's option
        // table; mimalloc reads the option each time it purges, from any
        // thread.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, ms.into()) }
    }

    #[cfg(test)]
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: as `mi_option_set`, a read of the option table.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_option_set_is_the_purge_delay() {
            // mimalloc's default purge delay, unless the environment set
            // one.
            let expected = std::env::var("MIMALLOC_PURGE_DELAY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10);
            assert_eq!(super::purge_delay(), expected);
            super::keep_free_pages_for(100);
            assert_eq!(super::purge_delay(), 100);
        }
    }
}

/// Exit codes, as documented in the README.
mod exit {
    /// A threshold, SLO or regression check failed.
    pub const FAILED: u8 = 1;
    /// Bad input or usage.
    pub const USAGE: u8 = 2;
    /// A runtime error.
    pub const RUNTIME: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "loadlens",
    version,
    about = "Observability-first load testing and SLO analysis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct SqlArgs {
    /// Store directory.
    #[arg(long, default_value = "loadlens-data")]
    data: PathBuf,
    /// The query (or use -f; with neither, a shell, or the query from a pipe).
    query: Option<String>,
    /// Read the query from a file.
    #[arg(short = 'f', long = "file", conflicts_with = "query")]
    file: Option<PathBuf>,
    /// A value for a parameter of the query (:'name' or :name), e.g. --param run=abc.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = analyzer::params::parse_param)]
    params: Vec<(String, String)>,
    /// Output format: table, csv, json or parquet.
    #[arg(long, default_value = "table")]
    format: analyzer::Format,
    /// Write the result to this file instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Memory queries may use before spilling to disk, then failing (e.g. 4GiB).
    /// Default: half of the machine's memory.
    #[arg(long, value_parser = schema::units::parse_bytes)]
    memory_limit: Option<usize>,
    /// Run the query on the Ballista cluster whose scheduler is at this URL
    /// (df://HOST:50050; see `loadlens ballista`). --data must name the same
    /// store for every executor: a shared folder or object storage.
    #[arg(long, value_name = "URL", conflicts_with = "memory_limit")]
    ballista: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum BallistaCommand {
    /// Run a Ballista scheduler that knows the loadlens SQL functions.
    Scheduler {
        /// gRPC listen address; clients use df://ADDR, executors --scheduler ADDR.
        #[arg(long, default_value = "127.0.0.1:50050")]
        addr: SocketAddr,
        /// The store, when it is in object storage (s3://BUCKET/PREFIX): the
        /// scheduler lists its files.
        #[arg(long)]
        data: Option<String>,
    },
    /// Run a Ballista executor that knows the loadlens SQL functions.
    Executor {
        /// The scheduler's address.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: SocketAddr,
        /// Arrow Flight listen address, which the scheduler and other executors
        /// reach; task gRPC listens on the next port.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: SocketAddr,
        /// Tasks run at once. Default: the machine's cores.
        #[arg(long)]
        tasks: Option<usize>,
        /// Folder for shuffle files. Default: a temporary folder.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// The store, when it is in object storage (s3://BUCKET/PREFIX): the
        /// executor reads its files.
        #[arg(long)]
        data: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct UslArgs {
    /// Run whose concurrency-ladder steps to fit (or use --csv).
    #[arg(required_unless_present = "csv", conflicts_with = "csv")]
    run: Option<String>,
    /// Fit a CSV file instead: a header row naming `concurrency` and `throughput`.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Store directory.
    #[arg(long, default_value = "loadlens-data")]
    data: PathBuf,
    /// Fit against the configured concurrency of each step, or the measured one
    /// (throughput × mean latency, by Little's law).
    #[arg(long, default_value = "configured")]
    concurrency: analyzer::usl::Concurrency,
    /// Concurrency levels to predict at, comma-separated (default: the measured
    /// levels, N* and 2·N*).
    #[arg(long, value_delimiter = ',')]
    predict: Vec<f64>,
    /// Report the largest concurrency whose predicted latency stays under this
    /// (e.g. 50ms; for --csv, in the reciprocal of the throughput's time unit).
    #[arg(long, value_parser = generator::config::parse_duration)]
    latency_target: Option<Duration>,
    /// Output format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Run to report on.
    run: String,
    /// Store directory.
    #[arg(long, default_value = "loadlens-data")]
    data: PathBuf,
    /// Write a self-contained HTML report (inline SVG charts, no network).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write a Markdown summary sized for a pull-request comment.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Check this SLO file over the run and add its status to the report (repeatable).
    #[arg(long)]
    slo: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a collector and the demo system, run a concurrency ladder, print a summary.
    Quickstart {
        /// Store directory (created if missing).
        #[arg(long, default_value = "loadlens-data")]
        data: PathBuf,
        /// Concurrency of each ladder step, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
        steps: Vec<usize>,
        /// How long each step lasts (e.g. 4s, 500ms).
        #[arg(long, default_value = "4s", value_parser = generator::config::parse_duration)]
        step_duration: Duration,
    },
    /// Send load to a URL and trace every request.
    Run(RunArgs),
    /// Receive OTLP (gRPC and HTTP) and write Parquet.
    ///
    /// Settings come from defaults, then --config FILE, then LOADLENS_COLLECTOR_*
    /// environment variables, then flags.
    Collector(CollectorArgs),
    /// Run SQL over the store; with no query, an interactive shell.
    Sql(SqlArgs),
    /// Serve the store, read-only, over the Postgres wire protocol (psql,
    /// Grafana) and an HTTP JSON API.
    ///
    /// The Postgres password, if any, comes from --pg-password-file or
    /// LOADLENS_SERVE_PG_PASSWORD; any user and database name is accepted.
    Serve(ServeArgs),
    /// Fit the Universal Scalability Law to a run's ladder steps or to a CSV:
    /// contention σ, coherency κ, peak concurrency N*, predictions.
    Usl(UslArgs),
    /// Write a run's report: findings, USL fit, latency by load and over time,
    /// errors. With no --html/--markdown/--json, Markdown goes to standard output.
    Report(ReportArgs),
    /// Compare two runs, two stages, or a run and a production window, route
    /// by route; exit 1 on a regression (a CI gate).
    ///
    /// A side is RUN_ID, run:RUN_ID[,stage=STAGE] or
    /// prod:from=TIME,to=TIME[,env=production][,service=NAME] (TIME in UTC,
    /// e.g. 2026-11-01T10:00Z).
    Compare(CompareArgs),
    /// One route's latency over a series of runs, and the runs where it
    /// shifted (E-divisive means with a permutation test).
    Trend(TrendArgs),
    /// Where a run's time went: the critical path of each trace, by service
    /// and operation, with Amdahl's bound on what speeding one up would give.
    Bottleneck(BottleneckArgs),
    /// Check service level objectives and generate their Prometheus rules.
    #[command(subcommand)]
    Slo(SloCommand),
    /// Run a node of an Apache Ballista cluster for `loadlens sql --ballista`:
    /// queries over stores beyond one machine.
    #[command(subcommand)]
    Ballista(BallistaCommand),
    /// Serve the instrumented demo system (API and database tiers).
    Demo {
        /// API tier listen address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        api_addr: SocketAddr,
        /// Database tier listen address (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        db_addr: SocketAddr,
        /// OTLP/gRPC endpoint for the demo's own spans.
        #[arg(long, default_value = "http://127.0.0.1:4317")]
        collector: String,
        /// Do not export the demo's own spans.
        #[arg(long)]
        no_telemetry: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario file (YAML); without one, give --url and --rate or --concurrency.
    scenario_file: Option<PathBuf>,
    /// Target URL for a run without a scenario file (http:// or https://).
    #[arg(
        long,
        conflicts_with = "scenario_file",
        required_unless_present = "scenario_file"
    )]
    url: Option<String>,
    /// Constant arrival rate: requests per second.
    #[arg(long, conflicts_with_all = ["concurrency", "scenario_file"])]
    rate: Option<f64>,
    /// Closed model: concurrent virtual users.
    #[arg(long, conflicts_with = "scenario_file")]
    concurrency: Option<usize>,
    /// How long to send load (e.g. 30s, 2m), without a scenario file (a
    /// scenario sets it in `load`; this and the flags below are refused
    /// with one rather than ignored).
    #[arg(
        long,
        default_value = "10s",
        value_parser = generator::config::parse_duration,
        conflicts_with = "scenario_file"
    )]
    duration: Duration,
    /// Warm-up before measuring (its requests are tagged and left out of the summary).
    #[arg(long, value_parser = generator::config::parse_duration, conflicts_with = "scenario_file")]
    warmup: Option<Duration>,
    /// HTTP method (without a scenario file).
    #[arg(long, default_value = "GET", conflicts_with = "scenario_file")]
    method: String,
    /// Most requests in flight at once (open model), without a scenario file.
    #[arg(
        long,
        default_value_t = generator::plan::DEFAULT_MAX_IN_FLIGHT,
        conflicts_with = "scenario_file"
    )]
    max_in_flight: usize,
    /// Most requests on the wire at once (like wrk -c); others wait, which counts
    /// as latency but not as service time. Default: no limit.
    #[arg(long, conflicts_with = "scenario_file")]
    connections: Option<usize>,
    /// Per-request timeout (e.g. 10s), without a scenario file.
    #[arg(
        long,
        default_value = "10s",
        value_parser = generator::config::parse_duration,
        conflicts_with = "scenario_file"
    )]
    timeout: Duration,
    /// Take the i-th of n shares of the load (0-based), e.g. --shard 2/8.
    #[arg(long, value_parser = generator::config::parse_shard, default_value = "0/1")]
    shard: (u32, u32),
    /// Start at this time (RFC 3339 UTC or Unix seconds), so shards start together.
    #[arg(long, value_parser = generator::config::parse_start_at)]
    start_at: Option<std::time::SystemTime>,
    /// OTLP/gRPC endpoint of the collector.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    collector: String,
    /// Do not export spans (no collector needed); also writes no ledger.
    #[arg(long)]
    no_telemetry: bool,
    /// Do not send traceparent (and tracestate) to the target.
    #[arg(long)]
    no_propagate: bool,
    /// W3C tracestate sent beside traceparent and recorded on each request
    /// span, e.g. vendor=value,other=x (a scenario sets its `tracestate` key).
    #[arg(long, value_parser = generator::config::parse_trace_state, conflicts_with = "scenario_file")]
    tracestate: Option<generator::TraceState>,
    /// Store the run's ledger is written into [default: loadlens-data, or no
    /// ledger with --no-telemetry unless given].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Do not write the ledger.
    #[arg(long)]
    no_ledger: bool,
    /// Run id (default: generated, time-ordered); give shards of one run the same id.
    #[arg(long)]
    run_id: Option<String>,
    /// Scenario name recorded with the run (default: the file's `name`, or "quick").
    #[arg(long)]
    scenario: Option<String>,
    /// Write the run summary as JSON to this file (schema: generator/summary.schema.json).
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum SloCommand {
    /// Check an SLO file over a load run or a window: SLI, error budget, burn
    /// rates and which alerts would fire. Exits 1 when an objective is not met.
    ///
    /// Burn-rate windows end at the end of the range (the run's end, or --end);
    /// a window longer than the range covers what the range holds.
    Check(SloCheckArgs),
    /// Print Prometheus recording and multiwindow multi-burn-rate alerting rules for an SLO file.
    Rules {
        /// The SLO file (OpenSLO v1 YAML).
        file: PathBuf,
        /// Write the rules to this file instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct SloCheckArgs {
    /// The SLO file (OpenSLO v1 YAML).
    file: PathBuf,
    /// Store directory.
    #[arg(long, default_value = "loadlens-data")]
    data: PathBuf,
    /// Check one load run, from its start to its end.
    #[arg(long, conflicts_with_all = ["window", "end"])]
    run: Option<String>,
    /// A rolling window (e.g. 30d) ending at --end, instead of the file's window.
    #[arg(long, value_parser = parse_rolling_window)]
    window: Option<models::slo::Span>,
    /// End of the window: RFC 3339 UTC or Unix seconds [default: now].
    #[arg(long, value_parser = parse_instant)]
    end: Option<models::slo::Instant>,
    /// Only events of this deployment environment (e.g. production).
    #[arg(long)]
    env: Option<String>,
    /// Output format: table or json.
    #[arg(long, value_enum, default_value_t = SloFormat::Table)]
    format: SloFormat,
    /// Memory queries may use before spilling or failing (e.g. 2GiB) [default: half of RAM].
    #[arg(long, value_parser = schema::units::parse_bytes)]
    memory_limit: Option<usize>,
}

/// How `loadlens slo check` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SloFormat {
    Table,
    Json,
}

fn parse_rolling_window(text: &str) -> Result<models::slo::Span, String> {
    match models::slo::Span::parse(text)? {
        span @ models::slo::Span::Seconds(_) => Ok(span),
        models::slo::Span::Months(_) => Err(format!(
            "--window {text}: a rolling window needs a fixed length such as 30d"
        )),
    }
}

fn parse_instant(text: &str) -> Result<models::slo::Instant, String> {
    let time = generator::config::parse_start_at(text)?;
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("invalid time '{text}': before 1970"))?;
    i64::try_from(since.as_nanos())
        .map(models::slo::Instant)
        .map_err(|_| format!("invalid time '{text}': too far in the future"))
}

#[derive(Debug, clap::Args)]
struct BottleneckArgs {
    /// The run id (list them: loadlens sql "SELECT run_id, started_at FROM runs").
    run: String,
    /// Only the requests with this step (request name).
    #[arg(long)]
    step: Option<String>,
    /// Store directory.
    #[arg(long, default_value = "loadlens-data")]
    data: PathBuf,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    format: analyzer::bottleneck::ReportFormat,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Store directory.
    #[arg(long, default_value = "loadlens-data")]
    data: PathBuf,
    /// Postgres wire protocol listen address.
    #[arg(long, default_value = "127.0.0.1:5433")]
    pg_addr: SocketAddr,
    /// HTTP API listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Memory queries may use before spilling or failing (e.g. 2GiB) [default: half of RAM].
    #[arg(long, value_parser = schema::units::parse_bytes)]
    memory_limit: Option<usize>,
    /// File holding the password clients must give (SCRAM-SHA-256; the HTTP
    /// API then wants it as a bearer token).
    #[arg(long)]
    pg_password_file: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, the Postgres endpoint offers TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// An error on its way to the user: one line and an exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl ToString) -> Self {
        Failure {
            code: exit::USAGE,
            message: message.to_string(),
        }
    }

    fn runtime(message: impl ToString) -> Self {
        Failure {
            code: exit::RUNTIME,
            message: message.to_string(),
        }
    }

    fn by(usage: bool, message: impl ToString) -> Self {
        if usage {
            Self::usage(message)
        } else {
            Self::runtime(message)
        }
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error ({info}); this is a loadlens bug, please report it");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Help and version go to stdout with exit 0; usage errors become one line and exit 2.
fn clap_failure(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.to_string();
    // The message, and any lines it continues onto ("...not provided:" then
    // the arguments), up to clap's usage block.
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take_while(|l| !l.starts_with("Usage:"))
        .collect();
    let tip = lines
        .iter()
        .find(|l| l.starts_with("tip:"))
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    let message = lines
        .iter()
        .filter(|l| !l.starts_with("tip:"))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let message = if message.is_empty() {
        "invalid arguments"
    } else {
        message
    };
    eprintln!("error: {message}{tip}; run 'loadlens --help' for usage");
    ExitCode::from(exit::USAGE)
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Quickstart {
            data,
            steps,
            step_duration,
        } => {
            // It runs a collector in this process, with the default bound.
            collector::avoid_huge_pages();
            allocator::keep_free_pages_for_collector(collector::config::DEFAULT_MAX_PENDING_BYTES);
            let config = quickstart::QuickstartConfig {
                data_dir: data,
                steps,
                step_duration,
            };
            let summary = quickstart::run(config).await.map_err(|e| {
                let usage = matches!(&e, quickstart::QuickstartError::Run(r) if r.is_usage());
                Failure::by(usage, e)
            })?;
            print!("{summary}");
            Ok(())
        }
        Command::Run(args) => run(args).await,
        Command::Collector(args) => {
            collector::avoid_huge_pages();
            let config = collector_config(args).map_err(|e| Failure::by(true, e))?;
            allocator::keep_free_pages_for_collector(config.max_pending_bytes);
            collector::run(config).await.map_err(|e| {
                let usage = e.is_usage();
                Failure::by(usage, e)
            })
        }
        Command::Sql(args) => sql(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Usl(args) => usl(args).await,
        Command::Report(args) => report(args).await,
        Command::Compare(args) => compare(args).await,
        Command::Trend(args) => trend(args).await,
        Command::Bottleneck(args) => bottleneck(args).await,
        Command::Slo(command) => slo(command).await,
        Command::Ballista(command) => ballista(command).await,
        Command::Demo {
            api_addr,
            db_addr,
            collector,
            no_telemetry,
        } => {
            let mut config = demo::DemoConfig::new((!no_telemetry).then_some(collector));
            config.api_addr = api_addr;
            config.db_addr = db_addr;
            demo::run(config, collector::shutdown_signal())
                .await
                .map_err(|e| Failure::by(matches!(e, demo::DemoError::Bind { .. }), e))
        }
    }
}

async fn bottleneck(args: BottleneckArgs) -> Result<(), Failure> {
    use std::io::Write;
    let options = analyzer::session::Options::default();
    let bytes = analyzer::bottleneck::bottleneck(
        &args.data,
        &options,
        &args.run,
        args.step.as_deref(),
        args.format,
    )
    .await
    .map_err(|e| Failure::by(e.is_usage(), e))?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| Failure::runtime(format!("cannot write the report: {e}")))
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    use analyzer::serve;
    let failed = |e: serve::ServeError| Failure::by(e.is_usage(), e);
    let password = serve::password(
        args.pg_password_file.as_deref(),
        std::env::var(serve::PASSWORD_ENV).ok(),
    )
    .map_err(failed)?;
    let tls = match args.tls_cert.zip(args.tls_key) {
        Some((cert, key)) => {
            let files = collector::config::TlsFiles { cert, key };
            let config = collector::tls::server_config(&files, &[serve::pg::ALPN])
                .map_err(Failure::usage)?;
            Some(std::sync::Arc::new(config))
        }
        None => None,
    };
    let mut options = analyzer::session::Options::default();
    if let Some(limit) = args.memory_limit {
        options.memory_limit = limit;
    }
    let config = serve::ServeConfig {
        data_dir: args.data,
        pg_addr: args.pg_addr,
        http_addr: args.http_addr,
        options,
        password,
        tls,
    };
    serve::run(config, collector::shutdown_signal())
        .await
        .map_err(failed)
}

async fn run(args: RunArgs) -> Result<(), Failure> {
    let mut plan = match (&args.scenario_file, &args.url) {
        (Some(path), _) => {
            let file = generator::ScenarioFile::read(path).map_err(Failure::usage)?;
            generator::Plan::compile(&file, args.shard).map_err(Failure::usage)?
        }
        (None, Some(url)) => {
            let model = match (args.rate, args.concurrency) {
                (Some(rate), None) => generator::LoadModel::Open {
                    rate,
                    duration: args.duration,
                },
                (None, Some(concurrency)) => generator::LoadModel::Closed {
                    concurrency,
                    duration: args.duration,
                },
                _ => return Err(Failure::usage("give either --rate or --concurrency")),
            };
            model.validate().map_err(Failure::usage)?;
            if args.max_in_flight == 0 {
                return Err(Failure::usage("--max-in-flight must be at least 1"));
            }
            let load = model.plan(args.max_in_flight, args.warmup);
            let mut plan =
                generator::Plan::quick(url, &args.method, load).map_err(Failure::usage)?;
            plan.http.timeout = args.timeout;
            plan.http.connect_timeout = args.timeout;
            if args.connections == Some(0) {
                return Err(Failure::usage("--connections must be at least 1"));
            }
            plan.http.connections = args.connections;
            plan.trace_state = args.tracestate;
            plan
        }
        (None, None) => return Err(Failure::usage("give a scenario file or --url")),
    };
    if let Some(name) = args.scenario {
        plan.name = name;
    }
    let mut config = generator::RunConfig::new();
    if let Some(run_id) = args.run_id {
        config.run_id = run_id;
    }
    config.collector = (!args.no_telemetry).then_some(args.collector);
    config.propagate = !args.no_propagate;
    config.shard = args.shard;
    config.start_at = args.start_at;
    config.progress = !args.quiet;
    config.after_ledger_file = Some(allocator::return_free_memory);
    config.ledger = match (args.no_ledger, args.data, args.no_telemetry) {
        (true, _, _) | (false, None, true) => None,
        (false, Some(data), _) => Some(data),
        (false, None, false) => Some(PathBuf::from("loadlens-data")),
    };
    let summary = generator::run(plan, config)
        .await
        .map_err(|e| Failure::by(e.is_usage(), e))?;
    print!("{}", summary.render());
    if let Some(path) = args.summary_json {
        let json = serde_json::to_string_pretty(&summary).map_err(Failure::runtime)?;
        std::fs::write(&path, json + "\n").map_err(|e| {
            Failure::runtime(format!("cannot write summary to '{}': {e}", path.display()))
        })?;
    }
    if summary.spans_dropped > 0 {
        eprintln!(
            "warning: {} request spans were dropped on the way to the collector",
            summary.spans_dropped
        );
    }
    if let Some(error) = summary.ledger.as_ref().and_then(|l| l.error.as_ref()) {
        return Err(Failure::runtime(format!(
            "the ledger could not be written: {error}"
        )));
    }
    if !summary.thresholds_passed {
        let failed: Vec<&str> = summary
            .thresholds
            .iter()
            .filter(|v| !v.passed)
            .map(|v| v.threshold.as_str())
            .collect();
        return Err(Failure {
            code: exit::FAILED,
            message: format!("thresholds failed: {}", failed.join("; ")),
        });
    }
    Ok(())
}

/// `loadlens collector` settings; each flag may also come from its environment
/// variable or the YAML file (see `collector::config`).
#[derive(Debug, clap::Args)]
struct CollectorArgs {
    /// YAML configuration file; unknown keys are refused.
    #[arg(long, env = "LOADLENS_COLLECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Store directory, created if missing [default: loadlens-data].
    #[arg(long, env = "LOADLENS_COLLECTOR_DATA")]
    data: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "LOADLENS_COLLECTOR_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "LOADLENS_COLLECTOR_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Longest accepted rows wait before they are written [default: 5s].
    #[arg(long, env = "LOADLENS_COLLECTOR_FLUSH_INTERVAL")]
    flush_interval: Option<String>,
    /// Memory that pending rows may hold before clients are asked to retry
    /// [default: 512MiB, or a quarter of --max-memory if less].
    #[arg(long, env = "LOADLENS_COLLECTOR_MAX_PENDING_BYTES")]
    max_pending_bytes: Option<String>,
    /// Resident memory the collector keeps under, asking clients to retry
    /// past three quarters of it; --max-pending-bytes then defaults to a
    /// quarter of it (at most 512MiB) and may be at most half [default: none].
    #[arg(long, env = "LOADLENS_COLLECTOR_MAX_MEMORY")]
    max_memory: Option<String>,
    /// How often small files are merged and duplicate spans removed; 0s turns it off [default: 1m].
    #[arg(long, env = "LOADLENS_COLLECTOR_COMPACTION_INTERVAL")]
    compaction_interval: Option<String>,
    /// How long flushed spans' ids are remembered, so that spans a client
    /// resends are not stored twice; 0s turns it off [default: 2m].
    #[arg(long, env = "LOADLENS_COLLECTOR_DEDUPE_WINDOW")]
    dedupe_window: Option<String>,
    /// Acknowledge without fsync of the write-ahead log: faster, and acknowledged
    /// data still survives a collector crash, but not an OS crash or power loss.
    #[arg(long, env = "LOADLENS_COLLECTOR_NO_FSYNC")]
    no_fsync: bool,
    /// How long the write-ahead log waits for more requests to share one
    /// fsync, after the first; each acknowledgement may wait as long. 0s
    /// syncs as soon as the queued requests are appended [default: 0s].
    #[arg(long, env = "LOADLENS_COLLECTOR_WAL_COMMIT_INTERVAL")]
    wal_commit_interval: Option<String>,
    /// File holding the bearer token that OTLP requests must present
    /// (or set LOADLENS_COLLECTOR_BEARER_TOKEN).
    #[arg(long, env = "LOADLENS_COLLECTOR_BEARER_TOKEN_FILE")]
    bearer_token_file: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, both receivers speak TLS only.
    #[arg(long, env = "LOADLENS_COLLECTOR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "LOADLENS_COLLECTOR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Upload finished Parquet files to s3://BUCKET/PREFIX (credentials and
    /// endpoint from the AWS_* variables) or file:///PATH; --data then holds
    /// the write-ahead log, files not yet uploaded, and uploaded span files
    /// for the dedupe window (hidden, so a restart still drops resends).
    #[arg(long, env = "LOADLENS_COLLECTOR_OBJECT_STORE")]
    object_store: Option<String>,
}

/// The environment variable that carries a bearer token (never a flag: flags show in `ps`).
const COLLECTOR_TOKEN_ENV: &str = "LOADLENS_COLLECTOR_BEARER_TOKEN";

fn collector_config(
    args: CollectorArgs,
) -> Result<collector::CollectorConfig, collector::config::ConfigError> {
    use clap::CommandFactory;
    use collector::config::{Settings, TlsFiles};
    let command = Cli::command();
    let known: Vec<String> = command
        .find_subcommand("collector")
        .into_iter()
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .chain([COLLECTOR_TOKEN_ENV.to_string()])
        .collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    collector::config::check_environment(std::env::vars().map(|(k, _)| k), &known)?;

    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let flags = Settings {
        origin: "flags or environment".into(),
        data: args.data,
        grpc_addr: args.grpc_addr,
        http_addr: args.http_addr,
        flush_interval: args.flush_interval,
        max_pending_bytes: args.max_pending_bytes.map(collector::config::Size::Text),
        max_memory: args.max_memory.map(collector::config::Size::Text),
        compaction_interval: args.compaction_interval,
        dedupe_window: args.dedupe_window,
        wal_sync: args.no_fsync.then_some(false),
        wal_commit_interval: args.wal_commit_interval,
        bearer_token: std::env::var(COLLECTOR_TOKEN_ENV).ok(),
        bearer_token_file: args.bearer_token_file,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        object_store: args.object_store,
        ..Settings::default()
    };
    collector::CollectorConfig::from_settings(file.overlay(flags))
}

async fn sql(args: SqlArgs) -> Result<(), Failure> {
    use std::io::{IsTerminal, Read, Write};

    let params: BTreeMap<String, String> = args.params.into_iter().collect();
    let mut options = analyzer::session::Options::default();
    if let Some(limit) = args.memory_limit {
        options.memory_limit = limit;
    }
    let open = || async {
        match &args.ballista {
            Some(scheduler) => cluster::connect(scheduler, &args.data).await,
            None => analyzer::Store::open_with(&args.data, &options).await,
        }
        .map_err(|e| Failure::by(e.is_usage(), e))
    };
    let query = match (&args.query, &args.file) {
        (Some(query), None) => query.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).map_err(|e| {
            Failure::usage(format!("cannot read SQL file '{}': {e}", file.display()))
        })?,
        _ if std::io::stdin().is_terminal() => {
            return shell::run(open().await?, &params, args.format)
                .await
                .map_err(|e| Failure::by(e.is_usage(), e));
        }
        _ => {
            let mut query = String::new();
            std::io::stdin().read_to_string(&mut query).map_err(|e| {
                Failure::usage(format!("cannot read the query from standard input: {e}"))
            })?;
            query
        }
    };
    if args.format == analyzer::Format::Parquet
        && args.output.is_none()
        && std::io::stdout().is_terminal()
    {
        return Err(Failure::usage(
            "--format parquet writes binary data; pass -o FILE.parquet or redirect standard output",
        ));
    }
    let query =
        analyzer::params::substitute(&query, &params).map_err(|e| Failure::by(e.is_usage(), e))?;
    let bytes = analyzer::sql(&open().await?, &query, args.format)
        .await
        .map_err(|e| Failure::by(e.is_usage(), e))?;
    match &args.output {
        Some(path) => std::fs::write(path, &bytes)
            .map_err(|e| Failure::runtime(format!("cannot write '{}': {e}", path.display()))),
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| Failure::runtime(format!("cannot write the result: {e}"))),
    }
}

async fn ballista(command: BallistaCommand) -> Result<(), Failure> {
    let result = match command {
        BallistaCommand::Scheduler { addr, data } => {
            cluster::scheduler(addr, data.as_deref()).await
        }
        BallistaCommand::Executor {
            scheduler,
            addr,
            tasks,
            work_dir,
            data,
        } => {
            cluster::executor(cluster::ExecutorOptions {
                scheduler,
                addr,
                tasks,
                work_dir,
                data,
            })
            .await
        }
    };
    result.map_err(|e| Failure::by(e.is_usage(), e))
}

async fn usl(args: UslArgs) -> Result<(), Failure> {
    use analyzer::usl;

    let analyzer_failure = |e: analyzer::AnalyzerError| Failure::by(e.is_usage(), e);
    let (source, points) = match (&args.run, &args.csv) {
        (_, Some(file)) => (
            file.display().to_string(),
            usl::csv_points(file).map_err(analyzer_failure)?,
        ),
        (Some(run), None) => {
            let store = analyzer::Store::open(&args.data)
                .await
                .map_err(analyzer_failure)?;
            let points = usl::run_points(&store, run, args.concurrency)
                .await
                .map_err(analyzer_failure)?;
            (format!("run {run}"), points)
        }
        (None, None) => return Err(Failure::usage("give a RUN or --csv FILE")),
    };
    let questions = usl::Questions {
        predict: args.predict,
        latency_target: args.latency_target.map(|d| d.as_secs_f64()),
    };
    let report = usl::report(source, points, questions).map_err(analyzer_failure)?;
    if args.format == "json" {
        println!("{:#}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// The baseline: RUN_ID, run:RUN_ID[,stage=STAGE] or prod:from=TIME,to=TIME[,env=E][,service=S].
    #[arg(value_name = "A")]
    a: analyzer::compare::SideSpec,
    /// The candidate, written like A.
    #[arg(value_name = "B")]
    b: analyzer::compare::SideSpec,
    /// Store directory.
    #[arg(long, default_value = "loadlens-data")]
    data: PathBuf,
    /// Compare only this route: a step name for runs, an http.route for server spans.
    #[arg(long, visible_alias = "step")]
    route: Option<String>,
    /// Only this stage of each run side that names none (e.g. c=8).
    #[arg(long)]
    stage: Option<String>,
    /// Where latency is measured: client (the generator's requests), server
    /// (the target's SERVER spans) or auto (server when production is a side).
    #[arg(long, default_value = "auto")]
    measure: analyzer::compare::Measure,
    /// Significance level; intervals are at 1 − alpha.
    #[arg(long, default_value_t = 0.05, value_parser = parse_alpha)]
    alpha: f64,
    /// Smallest latency shift that counts: a share of A's median (5%) or milliseconds (2ms).
    #[arg(long, default_value = "5%")]
    min_effect: models::compare::MinEffect,
    /// Smallest error-rate increase that counts, in percentage points (1%).
    #[arg(long, default_value = "1%", value_parser = parse_share)]
    min_error_effect: f64,
    /// Fewest requests per side and route for a verdict.
    #[arg(long, default_value_t = 20)]
    min_samples: usize,
    /// Bootstrap resamples for the percentile intervals.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(100..))]
    resamples: u32,
    /// Seed of the bootstrap: the same seed gives the same intervals.
    #[arg(long, default_value_t = models::compare::Settings::default().seed)]
    seed: u64,
    /// Output: table, markdown or json.
    #[arg(long, default_value = "table")]
    format: analyzer::compare::ReportFormat,
    /// Memory queries may use before spilling to disk, then failing (e.g. 4GiB).
    #[arg(long, value_parser = schema::units::parse_bytes)]
    memory_limit: Option<usize>,
}

#[derive(Debug, clap::Args)]
struct TrendArgs {
    /// The route: a step name (or the URL path of requests without one).
    #[arg(long, visible_alias = "step")]
    route: String,
    /// Store directory.
    #[arg(long, default_value = "loadlens-data")]
    data: PathBuf,
    /// These runs, comma-separated (default: every run with the route), ordered by start time.
    #[arg(long, value_delimiter = ',')]
    runs: Option<Vec<String>>,
    /// Only the last N runs by start time.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    last: Option<u32>,
    /// Only this stage of each run.
    #[arg(long)]
    stage: Option<String>,
    /// The per-run figure: p50, p95, p99 or mean (successful requests, ms).
    #[arg(long, default_value = "p95")]
    metric: analyzer::trend::Metric,
    /// A change point is kept when its permutation p-value is at most this.
    #[arg(long, default_value_t = 0.05, value_parser = parse_alpha)]
    alpha: f64,
    /// Permutations per test.
    #[arg(long, default_value_t = 199, value_parser = clap::value_parser!(u32).range(19..))]
    permutations: u32,
    /// Fewest runs on each side of a change.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    min_size: u32,
    /// Seed of the permutations.
    #[arg(long, default_value_t = models::changepoint::Settings::default().seed)]
    seed: u64,
    /// Output: table, markdown or json.
    #[arg(long, default_value = "table")]
    format: analyzer::compare::ReportFormat,
    /// Memory queries may use before spilling to disk, then failing (e.g. 4GiB).
    #[arg(long, value_parser = schema::units::parse_bytes)]
    memory_limit: Option<usize>,
}

/// A significance level, strictly between 0 and 1.
fn parse_alpha(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|a| *a > 0.0 && *a < 1.0)
        .ok_or_else(|| format!("'{text}' is not a level between 0 and 1 (e.g. 0.05)"))
}

/// A share as a percentage (1%) or a fraction (0.01).
fn parse_share(text: &str) -> Result<f64, String> {
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    };
    value
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("'{text}' is not a share (e.g. 1% or 0.01)"))
}

async fn open_store(
    data: &std::path::Path,
    memory_limit: Option<usize>,
) -> Result<analyzer::Store, Failure> {
    let mut options = analyzer::session::Options::default();
    if let Some(limit) = memory_limit {
        options.memory_limit = limit;
    }
    analyzer::Store::open_with(data, &options)
        .await
        .map_err(|e| Failure::by(e.is_usage(), e))
}

async fn compare(args: CompareArgs) -> Result<(), Failure> {
    use analyzer::compare::{CompareOptions, render};
    let store = open_store(&args.data, args.memory_limit).await?;
    let options = CompareOptions {
        a: args.a,
        b: args.b,
        route: args.route,
        stage: args.stage,
        measure: args.measure,
        settings: models::compare::Settings {
            alpha: args.alpha,
            min_effect: args.min_effect,
            min_error_effect: args.min_error_effect,
            min_samples: args.min_samples,
            resamples: args.resamples as usize,
            seed: args.seed,
        },
    };
    let failed = |e: analyzer::AnalyzerError| Failure::by(e.is_usage(), e);
    let report = analyzer::compare::compare(&store, &options)
        .await
        .map_err(failed)?;
    print!("{}", render(&report, args.format).map_err(failed)?);
    let regressions = report.regressions();
    if !regressions.is_empty() {
        return Err(Failure {
            code: exit::FAILED,
            message: format!("regression in {}", regressions.join(", ")),
        });
    }
    Ok(())
}

async fn report(args: ReportArgs) -> Result<(), Failure> {
    use analyzer::report;

    let analyzer_failure = |e: analyzer::AnalyzerError| Failure::by(e.is_usage(), e);
    let store = analyzer::Store::open(&args.data)
        .await
        .map_err(analyzer_failure)?;
    let mut gathered = report::gather(&store, &args.run)
        .await
        .map_err(analyzer_failure)?;
    for file in &args.slo {
        let slo = models::slo::Slo::read(file).map_err(Failure::usage)?;
        let options = analyzer::slo::CheckOptions {
            run: Some(args.run.clone()),
            ..Default::default()
        };
        let check = analyzer::slo::check(&store, &slo, &options)
            .await
            .map_err(analyzer_failure)?;
        gathered.sections.push(report::slo_section(&check));
    }
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text)
            .map_err(|e| Failure::runtime(format!("cannot write '{}': {e}", path.display())))
    };
    if let Some(path) = &args.html {
        write(path, report::html(&gathered))?;
    }
    if let Some(path) = &args.markdown {
        write(path, report::markdown(&gathered))?;
    }
    if let Some(path) = &args.json {
        write(path, format!("{:#}\n", gathered.to_json()))?;
    }
    if args.html.is_none() && args.markdown.is_none() && args.json.is_none() {
        print!("{}", report::markdown(&gathered));
    }
    Ok(())
}

async fn trend(args: TrendArgs) -> Result<(), Failure> {
    use analyzer::trend::{TrendOptions, render};
    let store = open_store(&args.data, args.memory_limit).await?;
    let options = TrendOptions {
        route: args.route,
        runs: args.runs,
        last: args.last.map(|n| n as usize),
        stage: args.stage,
        metric: args.metric,
        settings: models::changepoint::Settings {
            alpha: args.alpha,
            permutations: args.permutations as usize,
            min_size: args.min_size as usize,
            seed: args.seed,
            ..models::changepoint::Settings::default()
        },
    };
    let failed = |e: analyzer::AnalyzerError| Failure::by(e.is_usage(), e);
    let trend = analyzer::trend::trend(&store, &options)
        .await
        .map_err(failed)?;
    print!("{}", render(&trend, args.format).map_err(failed)?);
    Ok(())
}

async fn slo(command: SloCommand) -> Result<(), Failure> {
    use std::io::Write;

    match command {
        SloCommand::Check(args) => {
            let slo = models::slo::Slo::read(&args.file).map_err(Failure::usage)?;
            let mut options = analyzer::session::Options::default();
            if let Some(limit) = args.memory_limit {
                options.memory_limit = limit;
            }
            let store = analyzer::Store::open_with(&args.data, &options)
                .await
                .map_err(|e| Failure::by(e.is_usage(), e))?;
            let check_options = analyzer::slo::CheckOptions {
                run: args.run,
                window: args.window,
                end: args.end,
                env: args.env,
            };
            let check = analyzer::slo::check(&store, &slo, &check_options)
                .await
                .map_err(|e| Failure::by(e.is_usage(), e))?;
            let text = match args.format {
                SloFormat::Table => analyzer::slo::render(&check),
                SloFormat::Json => {
                    serde_json::to_string_pretty(&check).map_err(Failure::runtime)? + "\n"
                }
            };
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| Failure::runtime(format!("cannot write the result: {e}")))?;
            if !check.met {
                let failed: Vec<String> = check
                    .objectives
                    .iter()
                    .filter(|o| !o.met)
                    .map(|o| match o.report.budget.sli {
                        Some(sli) => format!(
                            "{}: SLI {:.3}% below target {:.3}%",
                            o.name,
                            sli * 100.0,
                            o.target * 100.0
                        ),
                        None => format!(
                            "{}: no events in the range, so nothing shows it is met; check the indicator's filter and --run",
                            o.name
                        ),
                    })
                    .collect();
                return Err(Failure {
                    code: exit::FAILED,
                    message: format!("SLO {} not met: {}", check.slo, failed.join("; ")),
                });
            }
            Ok(())
        }
        SloCommand::Rules { file, output } => {
            let slo = models::slo::Slo::read(&file).map_err(Failure::usage)?;
            let defaults = models::slo::rules::Defaults {
                requests: collector::red::REQUESTS,
                errors: collector::red::ERRORS,
                latency: collector::red::LATENCY,
                latency_buckets: &collector::red::BUCKETS,
            };
            let rules = models::slo::rules::generate(&slo, &defaults, &file.display().to_string())
                .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
            match output {
                Some(path) => std::fs::write(&path, rules).map_err(|e| {
                    Failure::runtime(format!("cannot write '{}': {e}", path.display()))
                }),
                None => std::io::stdout()
                    .write_all(rules.as_bytes())
                    .map_err(|e| Failure::runtime(format!("cannot write the rules: {e}"))),
            }
        }
    }
}
