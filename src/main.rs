//! The `loadlens` command: parses arguments and calls the crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Exit codes, as documented in the README.
mod exit {
    // 1 is reserved for failed threshold, SLO and regression checks (README).
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
    Collector {
        /// Store directory (created if missing).
        #[arg(long, default_value = "loadlens-data")]
        data: PathBuf,
        /// OTLP/gRPC listen address.
        #[arg(long, default_value = "127.0.0.1:4317")]
        grpc_addr: SocketAddr,
        /// OTLP/HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:4318")]
        http_addr: SocketAddr,
        /// Longest accepted rows wait before they are written (e.g. 5s).
        #[arg(long, default_value = "5s", value_parser = generator::config::parse_duration)]
        flush_interval: Duration,
        /// Acknowledge without fsync of the write-ahead log: faster, and acknowledged
        /// data still survives a collector crash, but not an OS crash or power loss.
        #[arg(long)]
        no_fsync: bool,
    },
    /// Run SQL over the store.
    Sql {
        /// Store directory.
        #[arg(long, default_value = "loadlens-data")]
        data: PathBuf,
        /// The query (or use -f).
        query: Option<String>,
        /// Read the query from a file.
        #[arg(short = 'f', long = "file", conflicts_with = "query")]
        file: Option<PathBuf>,
        /// Output format: table, csv or json.
        #[arg(long, default_value = "table")]
        format: analyzer::Format,
    },
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
    /// Target URL (http://host:port/path).
    #[arg(long)]
    url: String,
    /// Open model: requests per second.
    #[arg(
        long,
        conflicts_with = "concurrency",
        required_unless_present = "concurrency"
    )]
    rate: Option<f64>,
    /// Closed model: concurrent workers.
    #[arg(long)]
    concurrency: Option<usize>,
    /// How long to send load (e.g. 30s, 2m).
    #[arg(long, default_value = "10s", value_parser = generator::config::parse_duration)]
    duration: Duration,
    /// OTLP/gRPC endpoint of the collector.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    collector: String,
    /// Do not export spans (no collector needed).
    #[arg(long)]
    no_telemetry: bool,
    /// Do not send traceparent to the target.
    #[arg(long)]
    no_propagate: bool,
    /// Most requests in flight at once (open model).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Per-request timeout (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = generator::config::parse_duration)]
    timeout: Duration,
    /// Run id (default: generated, time-ordered).
    #[arg(long)]
    run_id: Option<String>,
    /// Scenario name recorded with the run.
    #[arg(long, default_value = "quick")]
    scenario: String,
    /// Write the run summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
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
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("error: invalid arguments");
    let tip = lines
        .find(|l| l.starts_with("tip:"))
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("error: {first}{tip}; run 'loadlens --help' for usage");
    ExitCode::from(exit::USAGE)
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Quickstart {
            data,
            steps,
            step_duration,
        } => {
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
        Command::Collector {
            data,
            grpc_addr,
            http_addr,
            flush_interval,
            no_fsync,
        } => {
            let mut config = collector::CollectorConfig::new(data);
            config.grpc_addr = grpc_addr;
            config.http_addr = http_addr;
            config.flush_interval = flush_interval;
            config.wal_sync = !no_fsync;
            collector::run(config).await.map_err(|e| {
                let usage = matches!(e, collector::CollectorError::Bind { .. });
                Failure::by(usage, e)
            })
        }
        Command::Sql {
            data,
            query,
            file,
            format,
        } => {
            let query = match (query, file) {
                (Some(query), None) => query,
                (None, Some(file)) => std::fs::read_to_string(&file).map_err(|e| {
                    Failure::usage(format!("cannot read SQL file '{}': {e}", file.display()))
                })?,
                _ => {
                    return Err(Failure::usage(
                        "give a query, e.g. loadlens sql \"SELECT COUNT(*) FROM requests\", or -f FILE.sql",
                    ));
                }
            };
            let output = analyzer::sql(&data, &query, format)
                .await
                .map_err(|e| Failure::by(e.is_usage(), e))?;
            print!("{output}");
            Ok(())
        }
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

async fn run(args: RunArgs) -> Result<(), Failure> {
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
    let mut config = generator::RunConfig::new(args.url, model);
    if let Some(run_id) = args.run_id {
        config.run_id = run_id;
    }
    config.scenario = args.scenario;
    config.collector = (!args.no_telemetry).then_some(args.collector);
    config.propagate = !args.no_propagate;
    config.max_in_flight = args.max_in_flight;
    config.timeout = args.timeout;
    config.progress = !args.quiet;
    let summary = generator::run(config)
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
    Ok(())
}
