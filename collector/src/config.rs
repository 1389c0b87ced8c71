//! Collector settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where to listen and where to write.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Store root; tables are folders below it.
    pub data_dir: PathBuf,
    /// OTLP/gRPC listen address (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// Longest that accepted rows wait before they are written.
    pub flush_interval: Duration,
    /// Pending rows that trigger an early flush.
    pub flush_rows: usize,
    /// Memory pending rows may hold; above it requests get a retryable refusal.
    pub max_pending_bytes: usize,
    /// Largest gRPC message accepted, in bytes.
    pub max_grpc_message: usize,
    /// Largest HTTP body accepted after decompression, in bytes.
    pub max_http_body: usize,
    /// fdatasync the write-ahead log before acknowledging (the default). Off,
    /// acknowledged data survives a collector crash but not an operating-system
    /// crash or power loss.
    pub wal_sync: bool,
}

impl CollectorConfig {
    /// The standard OTLP ports on loopback.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        CollectorConfig {
            data_dir: data_dir.into(),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            flush_interval: Duration::from_secs(5),
            flush_rows: 200_000,
            max_pending_bytes: 512 * 1024 * 1024,
            max_grpc_message: 4 * 1024 * 1024,
            max_http_body: 20 * 1024 * 1024,
            wal_sync: true,
        }
    }

    /// Free loopback ports, for embedding (quickstart, tests).
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        CollectorConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::new(data_dir)
        }
    }
}
