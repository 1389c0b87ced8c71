//! TLS for both receivers (rustls): the certificate and key are read once at
//! start; gRPC gets them through tonic, HTTP through a small accept loop that
//! hands each TLS stream to hyper.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Certificate and key, checked and ready for both receivers.
#[derive(Clone)]
pub struct Tls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {path}: {message}")]
pub struct TlsError {
    what: &'static str,
    path: std::path::PathBuf,
    message: String,
}

/// Reads and checks the PEM files and builds a rustls (ring) server
/// configuration that offers the `alpn` protocols. `loadlens serve` uses it
/// for its Postgres endpoint.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let (cert_pem, key_pem) = read_pem(files)?;
    build_config(files, &cert_pem, &key_pem, alpn)
}

fn error(what: &'static str, path: &std::path::Path, message: String) -> TlsError {
    TlsError {
        what,
        path: path.to_path_buf(),
        message,
    }
}

fn read_pem(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let cert_pem =
        std::fs::read(&files.cert).map_err(|e| error("certificate", &files.cert, e.to_string()))?;
    let key_pem = std::fs::read(&files.key).map_err(|e| error("key", &files.key, e.to_string()))?;
    Ok((cert_pem, key_pem))
}

fn build_config(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error("certificate", &files.cert, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error(
            "certificate",
            &files.cert,
            "holds no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        error(
            "key",
            &files.key,
            format!("no PKCS#8, PKCS#1 or SEC1 private key: {e}"),
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
    .map_err(|e| {
        error(
            "certificate",
            &files.cert,
            format!("does not fit the key: {e}"),
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

impl Tls {
    /// Reads and checks the PEM files.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let (cert_pem, key_pem) = read_pem(files)?;
        let config = build_config(files, &cert_pem, &key_pem, &[b"h2", b"http/1.1"])?;
        Ok(Tls {
            cert_pem,
            key_pem,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The same identity for tonic's server.
    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &self.cert_pem,
            &self.key_pem,
        ))
    }

    /// Serves `router` over TLS until `stop` turns true, then lets open
    /// requests finish.
    pub async fn serve_http(
        &self,
        listener: TcpListener,
        router: Router,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let graceful = GracefulShutdown::new();
        let service = TowerToHyperService::new(router);
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    // Out of file descriptors and the like: wait, do not spin.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let service = service.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                // A failed handshake concerns only that client.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let builder = auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                let _ = watcher.watch(connection.into_owned()).await;
            });
        }
        graceful.shutdown().await;
        Ok(())
    }
}
