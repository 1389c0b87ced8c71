//! The `runs` table: one manifest row per generator process (shard) and run.
//!
//! The generator sends the manifest as one `loadlens.run` span covering the
//! whole run, so it travels the same OTLP path as everything else; the collector
//! turns that span into a row here.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::types::timestamp_ns;

/// Column names of the `runs` table.
pub mod col {
    pub const STARTED_AT: &str = "started_at";
    pub const ENDED_AT: &str = "ended_at";
    pub const SCENARIO: &str = "scenario";
    pub const MODEL: &str = "model";
    pub const SHARD: &str = "shard";
    pub const SHARD_COUNT: &str = "shard_count";
    pub const CONFIG: &str = "config";
    pub const STAGES: &str = "stages";
    pub const REQUESTS_SENT: &str = "requests_sent";
    pub const REQUESTS_OK: &str = "requests_ok";
    pub const REQUESTS_FAILED: &str = "requests_failed";
    pub const REQUESTS_DROPPED: &str = "requests_dropped";
    pub const SPANS_EXPORTED: &str = "spans_exported";
    pub const SPANS_DROPPED: &str = "spans_dropped";
    pub const GENERATOR_VERSION: &str = "generator_version";
    pub const TRACE_ID: &str = "trace_id";
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        // When the run (this shard) started.
        Field::new(col::STARTED_AT, timestamp_ns(), false),
        // When the run (this shard) ended.
        Field::new(col::ENDED_AT, timestamp_ns(), false),
        // Scenario name.
        Field::new(col::SCENARIO, Utf8, true),
        // Load model: `open`, `closed` or `ladder`.
        Field::new(col::MODEL, Utf8, true),
        // This generator's shard index (0-based).
        Field::new(col::SHARD, Int32, true),
        // Number of shards of the run.
        Field::new(col::SHARD_COUNT, Int32, true),
        // The resolved configuration, as JSON.
        Field::new(col::CONFIG, Utf8, true),
        // The stages that ran (name, start, end, target), as JSON.
        Field::new(col::STAGES, Utf8, true),
        // Requests started.
        Field::new(col::REQUESTS_SENT, Int64, true),
        // Requests that succeeded.
        Field::new(col::REQUESTS_OK, Int64, true),
        // Requests that failed (any error type).
        Field::new(col::REQUESTS_FAILED, Int64, true),
        // Iterations not started because the in-flight bound was reached.
        Field::new(col::REQUESTS_DROPPED, Int64, true),
        // Request spans the generator exported.
        Field::new(col::SPANS_EXPORTED, Int64, true),
        // Request spans the generator dropped (export queue full or export failed).
        Field::new(col::SPANS_DROPPED, Int64, true),
        // loadlens version of the generator.
        Field::new(col::GENERATOR_VERSION, Utf8, true),
        // Trace id of the run span.
        Field::new(col::TRACE_ID, FixedSizeBinary(16), false),
    ]))
});

/// Schema of `runs` Parquet files.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}
