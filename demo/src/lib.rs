//! An instrumented sample system whose throughput follows the Universal
//! Scalability Law, used by the quickstart and the tests.
//!
//! ```text
//!  request ─▶ demo-api (SERVER span, child of the incoming traceparent)
//!               │ work, then CLIENT span ─▶ demo-db (SERVER span)
//!               │                             parallel work, then the contended resource:
//!               │                             hold = serial + coherency × (in flight − 1)
//!               └─ spans ─▶ OTLP/gRPC ─▶ collector
//! ```
//! The serialized hold gives contention (σ); the hold growing with the number
//! of requests in flight gives coherency cost (κ), so throughput peaks and then
//! falls as concurrency grows.

pub mod api;
pub mod db;
mod server;
mod spans;

use std::net::SocketAddr;
use std::time::Duration;

use exporter::{Exporter, ExporterConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Shape of the simulated system.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Where the API tier listens (port 0 picks a free port).
    pub api_addr: SocketAddr,
    /// Where the database tier listens (port 0 picks a free port).
    pub db_addr: SocketAddr,
    /// OTLP/gRPC endpoint for the system's own spans; `None` disables them.
    pub collector: Option<String>,
    /// Work the API tier does per request before calling the database.
    pub api_work: Duration,
    /// Work the database does per request outside the contended resource.
    pub db_parallel: Duration,
    /// Time each request holds the contended resource when it is alone.
    pub serial: Duration,
    /// Extra hold time per other request in flight in the database.
    pub coherency: Duration,
}

impl DemoConfig {
    /// Free loopback ports and a shape that peaks near 12 concurrent requests.
    pub fn new(collector: Option<String>) -> Self {
        DemoConfig {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            db_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            collector,
            api_work: Duration::from_millis(2),
            db_parallel: Duration::from_millis(3),
            serial: Duration::from_micros(500),
            coherency: Duration::from_micros(10),
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot listen on {addr} for the demo {tier} tier: {source}")]
    Bind {
        addr: SocketAddr,
        tier: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Export(#[from] exporter::ExportError),
}

/// A running demo system.
#[derive(Debug)]
pub struct Demo {
    api_addr: SocketAddr,
    db_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    exporters: Vec<Exporter>,
}

impl Demo {
    pub async fn start(config: DemoConfig) -> Result<Demo, DemoError> {
        let bind = |addr, tier| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DemoError::Bind { addr, tier, source })
        };
        let api_listener = bind(config.api_addr, "API").await?;
        let db_listener = bind(config.db_addr, "database").await?;
        let api_addr = api_listener
            .local_addr()
            .expect("bound socket has an address");
        let db_addr = db_listener
            .local_addr()
            .expect("bound socket has an address");

        let mut exporters = Vec::new();
        let mut sink_for = |service: &str| -> Result<Option<exporter::SpanSink>, DemoError> {
            let Some(endpoint) = &config.collector else {
                return Ok(None);
            };
            let resource = vec![
                exporter::attributes::string(schema::attr::SERVICE_NAME, service),
                exporter::attributes::string(
                    schema::attr::SERVICE_VERSION,
                    env!("CARGO_PKG_VERSION"),
                ),
            ];
            let mut exporter_config = ExporterConfig::new(endpoint, resource);
            exporter_config.scope = ("loadlens.demo".into(), env!("CARGO_PKG_VERSION").into());
            let exporter = Exporter::start(exporter_config)?;
            let sink = exporter.sink();
            exporters.push(exporter);
            Ok(Some(sink))
        };
        let api_sink = sink_for("demo-api")?;
        let db_sink = sink_for("demo-db")?;

        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let db = db::Db::new(&config, db_sink);
        tasks.spawn(server::serve(db_listener, stopped.clone(), move |req| {
            let db = db.clone();
            async move { db.handle(req).await }
        }));
        let api = api::Api::new(&config, db_addr, api_sink);
        tasks.spawn(server::serve(api_listener, stopped, move |req| {
            let api = api.clone();
            async move { api.handle(req).await }
        }));
        Ok(Demo {
            api_addr,
            db_addr,
            stop,
            tasks,
            exporters,
        })
    }

    /// The URL load should be sent to.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/orders", self.api_addr)
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn db_addr(&self) -> SocketAddr {
        self.db_addr
    }

    /// Stops serving and exports every span still queued; returns spans exported and dropped.
    pub async fn shutdown(mut self) -> exporter::ExportStats {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let mut total = exporter::ExportStats::default();
        for exporter in self.exporters {
            let stats = exporter.shutdown().await;
            total.exported += stats.exported;
            total.dropped += stats.dropped;
        }
        total
    }
}

/// `loadlens demo`: serve until Ctrl-C or SIGTERM.
pub async fn run(
    config: DemoConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    let demo = Demo::start(config).await?;
    eprintln!(
        "loadlens demo: API on {} (try {}), database tier on {}",
        demo.api_addr(),
        demo.api_url(),
        demo.db_addr()
    );
    // Machine-readable line for scripts and tests.
    println!("{}", demo.api_url());
    shutdown.await;
    let stats = demo.shutdown().await;
    eprintln!(
        "loadlens demo: stopped; {} spans exported, {} dropped",
        stats.exported, stats.dropped
    );
    Ok(())
}
