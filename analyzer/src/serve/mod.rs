//! `loadlens serve`: the store over the Postgres wire protocol (psql, Grafana's
//! PostgreSQL data source, any Postgres driver) and an HTTP JSON API, read-only,
//! from one process and one DataFusion session.
//!
//! ```text
//!  <data>/ ─▶ Store (tables, views, loadlens functions) + pg_catalog
//!               ├─▶ pg: pgwire ─▶ read_only guard ─▶ datafusion-postgres ─▶ psql, Grafana, drivers
//!               └─▶ http: axum ─▶ /api/runs · /api/runs/{id}/summary · /api/query
//! ```

pub mod http;
pub mod pg;
pub mod read_only;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;

use crate::session::Options;
use crate::{AnalyzerError, Store};

/// The environment variable that may hold the Postgres password (never a
/// flag: flags show in `ps`).
pub const PASSWORD_ENV: &str = "LOADLENS_SERVE_PG_PASSWORD";

/// What `loadlens serve` needs.
pub struct ServeConfig {
    /// The store's root folder.
    pub data_dir: PathBuf,
    /// Postgres wire protocol listen address.
    pub pg_addr: SocketAddr,
    /// HTTP API listen address.
    pub http_addr: SocketAddr,
    /// How the store is opened (memory limit).
    pub options: Options,
    /// The one password clients must give (any user name); none: no authentication.
    pub password: Option<String>,
    /// TLS for the Postgres endpoint; build it with [`pg::ALPN`] as its ALPN protocol.
    pub tls: Option<Arc<ServerConfig>>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("data_dir", &self.data_dir)
            .field("pg_addr", &self.pg_addr)
            .field("http_addr", &self.http_addr)
            .field("options", &self.options)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] AnalyzerError),
    #[error("cannot listen on {addr} ({what}): {source}; choose another address with {flag}")]
    Bind {
        what: &'static str,
        flag: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the password file '{path}': {message}")]
    PasswordFile { path: PathBuf, message: String },
    #[error("the password is given twice: use either --pg-password-file or {PASSWORD_ENV}")]
    TwoPasswords,
    #[error("the password {0} is empty")]
    EmptyPassword(String),
    #[error("cannot set up pg_catalog: {0}")]
    Catalog(String),
    #[error("the HTTP API stopped: {0}")]
    Http(std::io::Error),
}

impl ServeError {
    /// Whether the user can fix it by changing their input (exit 2) or not (exit 3).
    pub fn is_usage(&self) -> bool {
        match self {
            ServeError::Store(e) => e.is_usage(),
            ServeError::Bind { .. }
            | ServeError::PasswordFile { .. }
            | ServeError::TwoPasswords
            | ServeError::EmptyPassword(_) => true,
            ServeError::Catalog(_) | ServeError::Http(_) => false,
        }
    }
}

/// The password from `--pg-password-file` or [`PASSWORD_ENV`] (at most one of
/// them); a file's trailing line break is not part of it.
pub fn password(file: Option<&Path>, env: Option<String>) -> Result<Option<String>, ServeError> {
    let password = match (file, env) {
        (Some(_), Some(_)) => return Err(ServeError::TwoPasswords),
        (None, None) => return Ok(None),
        (None, Some(env)) => (env, PASSWORD_ENV.to_string()),
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|e| ServeError::PasswordFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            (text.to_string(), format!("in '{}'", path.display()))
        }
    };
    match password {
        (p, origin) if p.is_empty() => Err(ServeError::EmptyPassword(origin)),
        (p, _) => Ok(Some(p)),
    }
}

/// Serves until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let store = open(&config.data_dir, &config.options).await?;
    let pg_listener = bind(config.pg_addr, "Postgres", "--pg-addr").await?;
    let http_listener = bind(config.http_addr, "HTTP", "--http-addr").await?;
    let pg_addr = pg_listener.local_addr().unwrap_or(config.pg_addr);
    let http_addr = http_listener.local_addr().unwrap_or(config.http_addr);

    let store = Arc::new(store);
    let pg = pg::PgServer::new(
        Arc::new(store.context().clone()),
        config.password.as_deref(),
        config.tls.clone(),
    );
    let router = http::router(store, config.password.as_deref().map(Arc::from));
    eprint!("{}", banner(&config, pg_addr, http_addr));

    let (stop_tx, stop) = watch::channel(false);
    let pg_task = tokio::spawn(pg.serve(pg_listener, stop.clone()));
    let mut http_stop = stop.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http_listener, router)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
    });
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = pg_task.await;
    let http = http_task.await;
    eprintln!("loadlens serve: stopped");
    match http {
        Ok(result) => result.map_err(ServeError::Http),
        Err(e) => Err(ServeError::Http(std::io::Error::other(e))),
    }
}

/// Opens the store with the `pg_catalog` schema and functions that Postgres
/// clients query (psql's `\d`, Grafana's table list).
pub async fn open(data_dir: &Path, options: &Options) -> Result<Store, ServeError> {
    let store = Store::open_with(data_dir, options).await?;
    setup_pg_catalog(store.context(), "datafusion", EmptyContextProvider)
        .map_err(|e| ServeError::Catalog(e.to_string()))?;
    Ok(store)
}

async fn bind(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            what,
            flag,
            addr,
            source,
        })
}

/// What the user reads on start: the addresses and how to connect.
fn banner(config: &ServeConfig, pg: SocketAddr, http: SocketAddr) -> String {
    let ssl = if config.tls.is_some() {
        " sslmode=require"
    } else {
        ""
    };
    let password = if config.password.is_some() {
        " (password required, any user name)"
    } else {
        ""
    };
    format!(
        "loadlens serve: store '{data}', read-only\n\
         \x20 postgres  {pg}{tls}{password}\n\
         \x20           psql \"host={host} port={port} user=loadlens dbname=loadlens{ssl}\" -c 'SELECT * FROM runs'\n\
         \x20 http      http://{http}/api/runs  ·  POST http://{http}/api/query\n",
        data = config.data_dir.display(),
        tls = if config.tls.is_some() { " (TLS)" } else { "" },
        host = pg.ip(),
        port = pg.port(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_comes_from_one_place() {
        let dir = std::env::temp_dir().join(format!("loadlens-serve-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(
            password(Some(&file), None).unwrap().as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            password(None, Some("env".into())).unwrap().as_deref(),
            Some("env")
        );
        assert_eq!(password(None, None).unwrap(), None);
        assert!(matches!(
            password(Some(&file), Some("env".into())),
            Err(ServeError::TwoPasswords)
        ));
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            password(Some(&file), None),
            Err(ServeError::EmptyPassword(_))
        ));
        assert!(matches!(
            password(Some(&dir.join("missing")), None),
            Err(ServeError::PasswordFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let config = ServeConfig {
            data_dir: PathBuf::from("store"),
            pg_addr: "127.0.0.1:5433".parse().unwrap(),
            http_addr: "127.0.0.1:8080".parse().unwrap(),
            options: Options::default(),
            password: Some("hunter2".to_string()),
            tls: None,
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("password"),
            "{shown}"
        );
    }
}
