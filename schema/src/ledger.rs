//! The `ledger` table: one row per request the generator scheduled, written
//! whether or not its span was exported, so a run can be reconciled: every
//! ledger row should have exactly one span in `spans` with the same
//! `(trace_id, span_id)`, and a missing one is a lost span, not a missing request.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::types::timestamp_ns;

/// Column names of the `ledger` table.
pub mod col {
    pub const INTENDED_START: &str = "intended_start";
    pub const SENT_AT: &str = "sent_at";
    pub const END_TIME: &str = "end_time";
    pub const SHARD: &str = "shard";
    pub const REQUEST_ID: &str = "request_id";
    pub const STEP: &str = "step";
    pub const STAGE: &str = "stage";
    pub const VU: &str = "vu";
    pub const STATUS: &str = "status";
    pub const ERROR_TYPE: &str = "error_type";
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const SPAN_EXPORTED: &str = "span_exported";
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        // When the request was scheduled to start.
        Field::new(col::INTENDED_START, timestamp_ns(), false),
        // When it was actually sent; NULL if it never was (dropped at the in-flight bound).
        Field::new(col::SENT_AT, timestamp_ns(), true),
        // When the response ended or the request failed; NULL if never sent.
        Field::new(col::END_TIME, timestamp_ns(), true),
        // Generator shard (0-based).
        Field::new(col::SHARD, Int32, false),
        // Request id, unique within (run, shard).
        Field::new(col::REQUEST_ID, Int64, false),
        // Request name (the scenario step).
        Field::new(col::STEP, Utf8, true),
        // Load stage.
        Field::new(col::STAGE, Utf8, true),
        // Virtual user (closed models) or the arrival's number (open models).
        Field::new(col::VU, Int64, true),
        // HTTP status, if a response arrived.
        Field::new(col::STATUS, Int32, true),
        // Error type (the generator's taxonomy), if the request failed.
        Field::new(col::ERROR_TYPE, Utf8, true),
        // Trace id of the request's span.
        Field::new(col::TRACE_ID, FixedSizeBinary(16), false),
        // Span id of the request's span.
        Field::new(col::SPAN_ID, FixedSizeBinary(8), false),
        // Whether the generator handed the span to the exporter (false: sampled out or dropped).
        Field::new(col::SPAN_EXPORTED, Boolean, false),
    ]))
});

/// Schema of `ledger` Parquet files.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}
