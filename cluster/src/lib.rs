//! Distributed queries: the store's SQL on an Apache Ballista cluster, for
//! data beyond one machine.
//!
//! ```text
//!  loadlens sql --ballista df://HOST:50050
//!     └─ client: the store's tables, views and functions; plans the query
//!          │ logical plan (datafusion-proto)
//!          ▼
//!  loadlens ballista scheduler ── stages ──▶ loadlens ballista executor × N
//!                                              │ read the same Parquet (a shared
//!                                              │ folder or object storage) and
//!                                              ▼ shuffle over Arrow Flight
//! ```
//!
//! The scheduler and executors here are Ballista's own, started with the
//! loadlens SQL functions registered, because a plan names its functions and
//! every node must know them. Stock `ballista-scheduler` and
//! `ballista-executor` processes run queries of DataFusion's built-in
//! functions only.

pub mod client;
pub mod node;

pub use client::connect;
pub use node::{ExecutorOptions, executor, scheduler};

/// Why a node could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A flag or URL that cannot work.
    #[error("{0}")]
    Input(String),
    /// Ballista stopped with an error (a port in use, a scheduler that went away…).
    #[error("{0}")]
    Ballista(String),
}

impl ClusterError {
    /// Whether the error is the user's input (exit 2) rather than the environment (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(self, ClusterError::Input(_))
    }
}
