//! The collector: OTLP in, Parquet out.
//!
//! ```text
//!  OTLP/gRPC :4317 ─┐                      ┌─▶ <data>/spans/date=…/run_id=…/part-*.parquet
//!                   ├─▶ convert (to Arrow) ─▶ ingest (pending rows per partition)
//!  OTLP/HTTP :4318 ─┘                      └─ flush every interval, at a row count, at shutdown
//! ```
//!
//! Durability: a request is acknowledged only after it is in the write-ahead
//! log and fsynced ([`wal`], group commit). A flush writes pending rows to
//! Parquet (temporary name, fsync, rename, fsync of the folder) and only then
//! deletes the log segments they came from; after a crash the log is replayed,
//! skipping rows whose Parquet file was already written. With `wal_sync` off
//! the fsync is skipped: acknowledged data then survives a collector crash but
//! not an operating-system crash or power loss.

pub mod bulk;
pub mod config;
pub mod convert;
pub mod ingest;
pub mod memory;
pub mod receiver;
pub mod red;
mod short;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod wal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::CollectorConfig;
pub use ingest::{FlushReport, Ingest};

/// How long a collector's allocator should keep freed pages before it
/// returns them to the operating system, in milliseconds, for a
/// pending-memory bound of `max_pending_bytes`; `None` leaves mimalloc's
/// default (10 ms). `loadlens collector` and `loadlens quickstart` apply it
/// unless the environment sets the delay ([`purge_delay_from_environment`]).
///
/// Each flush frees the memory of up to 200,000 pending rows at once. With
/// 10 ms, mimalloc returned it before the next requests' builders and
/// buffers could reuse it, and they faulted fresh pages in again: page
/// faults and `madvise` were about a sixth of the collector's samples. With
/// 100 ms (whole segments go back after ten times that, mimalloc's
/// `arena_purge_mult`) the bench did about 15% more spans per CPU-second
/// for 40-75 MiB more peak RSS (BENCHMARKS.md). That is small beside the
/// default bound of 512 MiB, but under a bound of a few tens of MiB it
/// would double the collector's memory, so below 256 MiB the default stays.
pub fn free_pages_kept_ms(max_pending_bytes: usize) -> Option<u32> {
    (max_pending_bytes >= 256 << 20).then_some(100)
}

/// Whether this process's environment sets mimalloc's purge delay (under
/// its current name or the older one), which then wins over
/// [`free_pages_kept_ms`].
pub fn purge_delay_from_environment() -> bool {
    ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

/// Turns transparent huge pages off for this process, for a collector.
///
/// The collector allocates and frees tens of megabytes with every flush, and
/// mimalloc hands freed pages back to the kernel after a short delay
/// ([`free_pages_kept_ms`]). With huge pages (mimalloc asks for them on the
/// memory it reserves), each page the next requests touch again costs the
/// kernel zeroing 2 MiB rather than 4 KiB. Off, the collector did 9-23% more
/// spans per CPU-second in its bench, and the traced generator bench, whose
/// collector shares the target's core, sent 10-18% more requests
/// (BENCHMARKS.md). The analyzer
/// keeps the kernel's default: its queries were no faster without.
///
/// Since Linux 5.0 the setting stops new huge pages in every mapping of the
/// process, earlier ones included; pages already huge stay so, hence call it
/// first. Child processes inherit it. On older kernels, or where `prctl` is
/// filtered, it does nothing, and the only cost is the speed above.
pub fn avoid_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
}

/// The largest HTTP/2 frame clients may send. At the protocol's default of
/// 16 KiB a batch of 512 spans (about 200 KiB) comes in a dozen DATA frames,
/// each decoded, counted against the windows and handed on by itself; at
/// 1 MiB it comes in one (BENCHMARKS.md). A frame is read whole before it
/// is handed on, so a connection may keep a read buffer of this size, on
/// top of the data its flow-control windows let it hold (README).
const MAX_HTTP2_FRAME: u32 = 1 << 20;

/// Why the collector could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(
        "cannot listen on {addr} for OTLP/{protocol}: {source}; is another collector running? pick another port with --{flag}"
    )]
    Bind {
        addr: SocketAddr,
        protocol: &'static str,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("OTLP/{protocol} server failed: {message}")]
    Server {
        protocol: &'static str,
        message: String,
    },
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Memory(#[from] memory::MemoryLimitError),
}

impl CollectorError {
    /// Whether the fault is in how the collector was asked to run (exit 2)
    /// rather than in running it (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            CollectorError::Bind { .. } | CollectorError::Tls(_) | CollectorError::Memory(_)
        )
    }
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    ingest: Arc<Ingest>,
    compaction_target_size: usize,
    stop: watch::Sender<bool>,
    /// The gRPC and HTTP servers: a stop waits for them at most
    /// [`SHUTDOWN_GRACE`].
    servers: JoinSet<Result<(), CollectorError>>,
    /// Flushing and compaction: a stop waits for them to finish.
    tasks: JoinSet<Result<(), CollectorError>>,
}

impl Collector {
    /// Binds both receivers and starts serving and flushing.
    pub async fn start(config: CollectorConfig) -> Result<Collector, CollectorError> {
        let memory = config
            .max_memory
            .map(memory::MemoryLimit::new)
            .transpose()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| CollectorError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let tls = config.tls.as_ref().map(tls::Tls::load).transpose()?;
        let token: Option<Arc<str>> = config.bearer_token.as_deref().map(Arc::from);
        let grpc_listener = bind(config.grpc_addr, "gRPC", "grpc-addr").await?;
        let http_listener = bind(config.http_addr, "HTTP", "http-addr").await?;
        let grpc_addr = grpc_listener
            .local_addr()
            .expect("bound socket has an address");
        let http_addr = http_listener
            .local_addr()
            .expect("bound socket has an address");
        let mut ingest = Ingest::open(
            config.data_dir.clone(),
            config.flush_rows,
            config.max_pending_bytes,
            config.wal_sync,
        )?
        .with_dedupe(config.dedupe)
        .with_commit_interval(config.wal_commit_interval);
        if let Some(memory) = memory {
            ingest = ingest.with_memory_limit(memory);
        }
        if let Some(to) = config.object_store.clone() {
            ingest = ingest.with_object_store(to);
        }
        if config.compaction_interval.is_some() {
            ingest = ingest.with_compaction();
        }
        let ingest = Arc::new(ingest);
        let replayed = ingest.stats().rows_replayed.load(Ordering::Relaxed);
        if replayed > 0 {
            eprintln!("collector: replayed {replayed} rows from the write-ahead log");
            ingest.flush().await?;
        }
        let (stop, stopped) = watch::channel(false);
        let mut servers = JoinSet::new();
        let mut tasks = JoinSet::new();

        let (traces, metrics) = receiver::grpc::Receiver::new(ingest.clone(), token.clone())
            .services(config.max_grpc_message);
        // HTTP/2's default 64 KiB flow-control window lets a client have only a
        // fraction of one OTLP batch in transit per connection, so requests
        // queue in the transport instead of reaching admission control. A
        // window of one full message per stream (two per connection) lets
        // them arrive; the memory this may buffer is stated in the README.
        let window = u32::try_from(config.max_grpc_message).unwrap_or(u32::MAX);
        let mut grpc_server = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(window))
            .initial_connection_window_size(Some(window.saturating_mul(2)))
            .max_frame_size(Some(MAX_HTTP2_FRAME));
        if let Some(tls) = &tls {
            grpc_server =
                grpc_server
                    .tls_config(tls.grpc())
                    .map_err(|e| CollectorError::Server {
                        protocol: "gRPC",
                        message: format!("TLS: {e}"),
                    })?;
        }
        let mut grpc_stop = stopped.clone();
        servers.spawn(async move {
            grpc_server
                .add_service(traces)
                .add_service(metrics)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(grpc_listener)
                        .with_nodelay(Some(true)),
                    async move {
                        let _ = grpc_stop.wait_for(|s| *s).await;
                    },
                )
                .await
                .map_err(|e| CollectorError::Server {
                    protocol: "gRPC",
                    message: e.to_string(),
                })
        });

        let router = receiver::http::router(ingest.clone(), config.max_http_body, token);
        let mut http_stop = stopped.clone();
        servers.spawn(async move {
            let served = match tls {
                Some(tls) => tls.serve_http(http_listener, router, http_stop).await,
                None => {
                    axum::serve(http_listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = http_stop.wait_for(|s| *s).await;
                        })
                        .await
                }
            };
            served.map_err(|e| CollectorError::Server {
                protocol: "HTTP",
                message: e.to_string(),
            })
        });

        let flusher = ingest.clone();
        let mut flush_stop = stopped.clone();
        let interval = config.flush_interval;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = flusher.full() => {}
                    _ = async { let _ = flush_stop.wait_for(|s| *s).await; } => return Ok(()),
                }
                if let Err(e) = flusher.flush().await {
                    // The rows stay pending and are retried on the next tick.
                    eprintln!("collector: flush failed, will retry: {e}");
                }
            }
        });

        if let Some(every) = config.compaction_interval {
            let compactor = ingest.clone();
            let mut compact_stop = stopped;
            let target = config.compaction_target_size;
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = async { let _ = compact_stop.wait_for(|s| *s).await; } => return Ok(()),
                    }
                    if let Err(e) = compactor.compact(target).await {
                        // Inputs stay as they were; the next pass tries again.
                        eprintln!("collector: compaction failed, will retry: {e}");
                    }
                }
            });
        }

        Ok(Collector {
            grpc_addr,
            http_addr,
            ingest,
            compaction_target_size: config.compaction_target_size,
            stop,
            servers,
            tasks,
        })
    }

    /// The OTLP/gRPC address actually bound.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The OTLP/HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// `http://<grpc_addr>`, for exporters.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Writes everything pending now.
    pub async fn flush(&self) -> Result<FlushReport, CollectorError> {
        Ok(self.ingest.flush().await?)
    }

    /// Runs one compaction pass now.
    pub async fn compact(&self) -> Result<store::compact::CompactionReport, CollectorError> {
        Ok(self.ingest.compact(self.compaction_target_size).await?)
    }

    /// The ingest state (counters, pending rows).
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Stops accepting, waits for the receivers, then writes everything pending.
    pub async fn shutdown(mut self) -> Result<FlushReport, CollectorError> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        let servers = &mut self.servers;
        let joined =
            tokio::time::timeout(SHUTDOWN_GRACE, join_all(servers, &mut first_error)).await;
        if joined.is_err() {
            // A client that does not answer the server's goodbye (a paused
            // process, a dead host) would hold the stop for ever. Its
            // requests not answered were not acknowledged; its connection
            // ends with the process.
            eprintln!(
                "loadlens collector: not waiting any longer for connections still open {} s after the stop",
                SHUTDOWN_GRACE.as_secs()
            );
            self.servers.abort_all();
            while self.servers.join_next().await.is_some() {}
        }
        // A flush or compaction under way finishes: cut short, a flush would
        // lose the rows it took out of pending.
        join_all(&mut self.tasks, &mut first_error).await;
        let report = self.ingest.flush().await?;
        self.ingest.close();
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// How long a stop waits for clients to finish their requests and close
/// their connections before it closes them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn bind(
    addr: SocketAddr,
    protocol: &'static str,
    flag: &'static str,
) -> Result<TcpListener, CollectorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CollectorError::Bind {
            addr,
            protocol,
            flag,
            source,
        })
}

/// `loadlens collector`: serve until Ctrl-C or SIGTERM, then flush and exit.
pub async fn run(config: CollectorConfig) -> Result<(), CollectorError> {
    let destination = match &config.object_store {
        Some(to) => format!(
            "writing to {} (staging in {})",
            to.url,
            config.data_dir.display()
        ),
        None => format!("writing to {}", config.data_dir.display()),
    };
    let collector = Collector::start(config).await?;
    eprintln!(
        "loadlens collector: OTLP/gRPC on {}, OTLP/HTTP on {}, {destination}",
        collector.grpc_addr(),
        collector.http_addr(),
    );
    shutdown_signal().await;
    eprintln!("loadlens collector: stopping; writing pending rows");
    let ingest_stats = collector.ingest.clone();
    let report = collector.shutdown().await?;
    let stats = ingest_stats.stats();
    let both =
        |per: &telemetry::PerSignal| per.get(wal::Signal::Traces) + per.get(wal::Signal::Metrics);
    eprintln!(
        "loadlens collector: stopped; {} items accepted, {} rejected, {} requests refused; {} rows in {} files at exit",
        both(&stats.accepted),
        both(&stats.rejected),
        both(&stats.refused_overloaded)
            + both(&stats.refused_memory)
            + both(&stats.refused_not_stored)
            + both(&stats.refused_unauthenticated),
        report.rows,
        report.files.len()
    );
    Ok(())
}

/// Waits for every task of `tasks`, keeping the first error any returned.
async fn join_all(
    tasks: &mut JoinSet<Result<(), CollectorError>>,
    first_error: &mut Option<CollectorError>,
) {
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            first_error.get_or_insert(e);
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn huge_pages_are_off_after_avoid_huge_pages() {
        use nix::sys::prctl::{get_thp_disable, set_thp_disable};
        // Start from on, whatever this process inherited; a kernel or
        // sandbox without the setting has nothing to test.
        if set_thp_disable(false).is_err() || get_thp_disable() != Ok(false) {
            return;
        }
        super::avoid_huge_pages();
        assert_eq!(get_thp_disable(), Ok(true));
    }
}
