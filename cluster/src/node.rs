//! The cluster's nodes: Ballista's scheduler and executor, started with the
//! loadlens SQL functions (and the store's object storage, if any) known.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use schema::object::ObjectRoot;

use crate::ClusterError;

/// A Ballista session with the loadlens functions, and `store`'s bucket
/// registered when the store is in object storage.
pub fn session_state(
    config: SessionConfig,
    store: Option<&ObjectRoot>,
) -> datafusion::error::Result<SessionState> {
    let ctx = SessionContext::new_with_state(default_session_builder(config)?);
    analyzer::functions::register(&ctx, analyzer::functions::percentile::Exchange::Serialized);
    if let Some(store) = store {
        ctx.register_object_store(&store.store_url(), store.store.clone());
    }
    Ok(ctx.state())
}

/// The object storage of `--data`, when it names one (`s3://…`, `file://…`).
fn object_root(data: Option<&str>) -> Result<Option<ObjectRoot>, ClusterError> {
    data.filter(|url| schema::object::is_object_url(url))
        .map(|url| ObjectRoot::parse(url).map_err(ClusterError::Input))
        .transpose()
}

/// Runs a scheduler on `addr` until the process is stopped. `data` is the
/// store, when it is in object storage: the scheduler lists its files.
pub async fn scheduler(addr: SocketAddr, data: Option<&str>) -> Result<(), ClusterError> {
    let store = object_root(data)?;
    let mut config = SchedulerConfig::default()
        .with_hostname(addr.ip().to_string())
        .with_port(addr.port());
    config.bind_host = addr.ip().to_string();
    config.override_session_builder = Some(Arc::new(move |config| {
        session_state(config, store.as_ref())
    }));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| ClusterError::Ballista(e.to_string()))?;
    start_server(cluster, addr, Arc::new(config))
        .await
        .map_err(|e| ClusterError::Ballista(format!("the scheduler on {addr} stopped: {e}")))
}

/// Where an executor listens and whom it works for.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler to register with.
    pub scheduler: SocketAddr,
    /// Arrow Flight (shuffle data) address; the gRPC task port is the next one.
    pub addr: SocketAddr,
    /// Tasks run at once (default: the machine's cores).
    pub tasks: Option<usize>,
    /// Where shuffle files go (default: a temporary folder).
    pub work_dir: Option<PathBuf>,
    /// The store, when it is in object storage: the executor reads its files.
    pub data: Option<String>,
}

/// Runs an executor until the process is stopped or the scheduler goes away.
pub async fn executor(options: ExecutorOptions) -> Result<(), ClusterError> {
    let store = object_root(options.data.as_deref())?;
    let state = session_state(SessionConfig::new(), store.as_ref())
        .map_err(|e| ClusterError::Ballista(e.to_string()))?;
    let Some(grpc_port) = options.addr.port().checked_add(1) else {
        return Err(ClusterError::Input(format!(
            "executor address {}: the gRPC port is the next one, so pick a lower port",
            options.addr
        )));
    };
    let mut config = ExecutorProcessConfig {
        bind_host: options.addr.ip().to_string(),
        external_host: Some(options.addr.ip().to_string()),
        port: options.addr.port(),
        grpc_port,
        scheduler_host: options.scheduler.ip().to_string(),
        scheduler_port: options.scheduler.port(),
        // Wait for a scheduler that is still starting.
        scheduler_connect_timeout_seconds: 30,
        work_dir: options
            .work_dir
            .as_ref()
            .map(|dir| dir.display().to_string()),
        print_thread_info: false,
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&state))),
        ..ExecutorProcessConfig::default()
    };
    if let Some(tasks) = options.tasks {
        config.vcores = tasks;
    }
    if let Some(store) = store {
        config.override_runtime_producer = Some(Arc::new(move |_config: &SessionConfig| {
            let runtime = RuntimeEnvBuilder::new().build()?;
            runtime.register_object_store(&store.store_url(), store.store.clone());
            Ok(Arc::new(runtime))
        }));
    }
    start_executor_process(Arc::new(config)).await.map_err(|e| {
        ClusterError::Ballista(format!("the executor on {} stopped: {e}", options.addr))
    })
}
