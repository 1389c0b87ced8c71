//! The contract between the collector (which writes the store) and the analyzer
//! (which reads it): Arrow schemas, column names, the Hive partition layout and
//! the OTLP attribute keys that loadlens promotes to columns.
//!
//! ```text
//!  OTLP span/metric ──▶ collector ──▶ <store>/<table>/date=YYYY-MM-DD/run_id=<run>/part-*.parquet
//!                        (writes with these schemas)          │
//!                                                             ▼
//!                                   analyzer (registers each table with these schemas)
//! ```
//!
//! Only `arrow-schema` is a dependency, so the generator can name attributes
//! without compiling Arrow compute kernels, Parquet or DataFusion.

pub mod attr;
pub mod layout;
pub mod ledger;
pub mod metrics;
pub mod object;
pub mod runs;
pub mod spans;
mod types;
pub mod units;

pub use layout::{NULL_PARTITION, Table, partition_dir};
pub use types::{attribute_map, timestamp_ns};

/// Version of the store layout and schemas, written into every Parquet file's
/// key-value metadata under [`SCHEMA_VERSION_KEY`]. Bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Parquet key-value metadata key holding [`SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "loadlens.schema_version";
/// Parquet key-value metadata key holding the table name.
pub const TABLE_KEY: &str = "loadlens.table";
/// Parquet key-value metadata keys holding the smallest and largest time in the file (ns since epoch).
pub const MIN_TIME_KEY: &str = "loadlens.min_time_unix_nano";
/// See [`MIN_TIME_KEY`].
pub const MAX_TIME_KEY: &str = "loadlens.max_time_unix_nano";
/// Parquet key-value metadata key holding the row count of the file.
pub const ROW_COUNT_KEY: &str = "loadlens.row_count";
