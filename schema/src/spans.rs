//! The `spans` table: one row per OTLP span, from generators and from services.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::attr;
use crate::types::{attribute_map, list_of, timestamp_ns};

/// Column names of the `spans` table.
pub mod col {
    pub const START_TIME: &str = "start_time";
    pub const END_TIME: &str = "end_time";
    pub const DURATION_NS: &str = "duration_ns";
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    pub const TRACE_STATE: &str = "trace_state";
    pub const FLAGS: &str = "flags";
    pub const SERVICE_NAME: &str = "service_name";
    pub const SERVICE_VERSION: &str = "service_version";
    pub const DEPLOYMENT_ENVIRONMENT: &str = "deployment_environment";
    pub const SCOPE_NAME: &str = "scope_name";
    pub const SCOPE_VERSION: &str = "scope_version";
    pub const NAME: &str = "name";
    pub const KIND: &str = "kind";
    pub const STATUS_CODE: &str = "status_code";
    pub const STATUS_MESSAGE: &str = "status_message";
    pub const HTTP_REQUEST_METHOD: &str = "http_request_method";
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http_response_status_code";
    pub const HTTP_ROUTE: &str = "http_route";
    pub const URL_FULL: &str = "url_full";
    pub const URL_PATH: &str = "url_path";
    pub const SERVER_ADDRESS: &str = "server_address";
    pub const SERVER_PORT: &str = "server_port";
    pub const ERROR_TYPE: &str = "error_type";
    pub const DB_SYSTEM: &str = "db_system";
    pub const RPC_SYSTEM: &str = "rpc_system";
    pub const RPC_SERVICE: &str = "rpc_service";
    pub const RPC_METHOD: &str = "rpc_method";
    pub const HTTP_REQUEST_BODY_SIZE: &str = "http_request_body_size";
    pub const HTTP_RESPONSE_BODY_SIZE: &str = "http_response_body_size";
    pub const SCENARIO: &str = "scenario";
    pub const STEP: &str = "step";
    pub const STAGE: &str = "stage";
    pub const SHARD: &str = "shard";
    pub const VU: &str = "vu";
    pub const REQUEST_ID: &str = "request_id";
    pub const CONCURRENCY: &str = "concurrency";
    pub const INTENDED_START: &str = "intended_start";
    pub const SENT_AT: &str = "sent_at";
    pub const FIRST_BYTE_AT: &str = "first_byte_at";
    pub const ATTRIBUTES: &str = "attributes";
    pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    pub const EVENTS: &str = "events";
    pub const LINKS: &str = "links";
}

/// The Arrow type a promoted attribute is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promoted {
    /// A string column.
    Utf8,
    /// A 64-bit integer column (integer or integral-string attributes).
    Int64,
    /// A 32-bit integer column.
    Int32,
    /// A time column; the attribute holds ns since the epoch.
    Timestamp,
}

/// Span attributes stored in their own column instead of the `attributes` map:
/// (attribute key, column, type). The collector removes them from the map.
pub const PROMOTED: &[(&str, &str, Promoted)] = &[
    (
        attr::HTTP_REQUEST_METHOD,
        col::HTTP_REQUEST_METHOD,
        Promoted::Utf8,
    ),
    (
        attr::HTTP_RESPONSE_STATUS_CODE,
        col::HTTP_RESPONSE_STATUS_CODE,
        Promoted::Int32,
    ),
    (attr::HTTP_ROUTE, col::HTTP_ROUTE, Promoted::Utf8),
    (attr::URL_FULL, col::URL_FULL, Promoted::Utf8),
    (attr::URL_PATH, col::URL_PATH, Promoted::Utf8),
    (attr::SERVER_ADDRESS, col::SERVER_ADDRESS, Promoted::Utf8),
    (attr::SERVER_PORT, col::SERVER_PORT, Promoted::Int32),
    (attr::ERROR_TYPE, col::ERROR_TYPE, Promoted::Utf8),
    (attr::DB_SYSTEM, col::DB_SYSTEM, Promoted::Utf8),
    (attr::RPC_SYSTEM, col::RPC_SYSTEM, Promoted::Utf8),
    (attr::RPC_SERVICE, col::RPC_SERVICE, Promoted::Utf8),
    (attr::RPC_METHOD, col::RPC_METHOD, Promoted::Utf8),
    (
        attr::HTTP_REQUEST_BODY_SIZE,
        col::HTTP_REQUEST_BODY_SIZE,
        Promoted::Int64,
    ),
    (
        attr::HTTP_RESPONSE_BODY_SIZE,
        col::HTTP_RESPONSE_BODY_SIZE,
        Promoted::Int64,
    ),
    (attr::SCENARIO, col::SCENARIO, Promoted::Utf8),
    (attr::STEP, col::STEP, Promoted::Utf8),
    (attr::STAGE, col::STAGE, Promoted::Utf8),
    (attr::SHARD, col::SHARD, Promoted::Int32),
    (attr::VU, col::VU, Promoted::Int64),
    (attr::REQUEST_ID, col::REQUEST_ID, Promoted::Int64),
    (attr::CONCURRENCY, col::CONCURRENCY, Promoted::Int64),
    (
        attr::INTENDED_START,
        col::INTENDED_START,
        Promoted::Timestamp,
    ),
    (attr::SENT_AT, col::SENT_AT, Promoted::Timestamp),
    (attr::FIRST_BYTE_AT, col::FIRST_BYTE_AT, Promoted::Timestamp),
];

impl Promoted {
    pub fn data_type(self) -> DataType {
        match self {
            Promoted::Utf8 => DataType::Utf8,
            Promoted::Int64 => DataType::Int64,
            Promoted::Int32 => DataType::Int32,
            Promoted::Timestamp => timestamp_ns(),
        }
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    let mut fields = vec![
        // When the span started (for generator spans: when the request was sent).
        Field::new(col::START_TIME, timestamp_ns(), false),
        // When the span ended.
        Field::new(col::END_TIME, timestamp_ns(), false),
        // end_time - start_time in ns.
        Field::new(col::DURATION_NS, Int64, false),
        // W3C trace id (16 bytes); Parquet bloom filter for lookups by id.
        Field::new(col::TRACE_ID, FixedSizeBinary(16), false),
        // Span id (8 bytes).
        Field::new(col::SPAN_ID, FixedSizeBinary(8), false),
        // Parent span id; NULL for a root span.
        Field::new(col::PARENT_SPAN_ID, FixedSizeBinary(8), true),
        // W3C tracestate, if any.
        Field::new(col::TRACE_STATE, Utf8, true),
        // OTLP span flags (W3C trace flags in the low byte).
        Field::new(col::FLAGS, UInt32, false),
        // Resource `service.name`.
        Field::new(col::SERVICE_NAME, Utf8, true),
        // Resource `service.version`.
        Field::new(col::SERVICE_VERSION, Utf8, true),
        // Resource `deployment.environment.name` (e.g. `production`).
        Field::new(col::DEPLOYMENT_ENVIRONMENT, Utf8, true),
        // Instrumentation scope name.
        Field::new(col::SCOPE_NAME, Utf8, true),
        // Instrumentation scope version.
        Field::new(col::SCOPE_VERSION, Utf8, true),
        // Span name.
        Field::new(col::NAME, Utf8, false),
        // SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER or UNSPECIFIED.
        Field::new(col::KIND, Utf8, false),
        // UNSET, OK or ERROR.
        Field::new(col::STATUS_CODE, Utf8, false),
        // Status description, if any.
        Field::new(col::STATUS_MESSAGE, Utf8, true),
    ];
    // Promoted attributes, one column each; documented in `PROMOTED` and `attr`.
    fields.extend(
        PROMOTED
            .iter()
            .map(|(_, column, ty)| Field::new(*column, ty.data_type(), true)),
    );
    fields.extend([
        // Remaining span attributes, values rendered as strings.
        Field::new(col::ATTRIBUTES, attribute_map(), true),
        // Remaining resource attributes, values rendered as strings.
        Field::new(col::RESOURCE_ATTRIBUTES, attribute_map(), true),
        // Span events: time, name, attributes.
        Field::new(
            col::EVENTS,
            list_of(vec![
                Field::new("time", timestamp_ns(), false),
                Field::new("name", Utf8, false),
                Field::new("attributes", attribute_map(), true),
            ]),
            true,
        ),
        // Span links: trace id, span id, tracestate, attributes.
        Field::new(
            col::LINKS,
            list_of(vec![
                Field::new("trace_id", FixedSizeBinary(16), false),
                Field::new("span_id", FixedSizeBinary(8), false),
                Field::new("trace_state", Utf8, true),
                Field::new("attributes", attribute_map(), true),
            ]),
            true,
        ),
    ]);
    Arc::new(Schema::new(fields))
});

/// The Arrow schema of `spans` Parquet files (partition columns excluded).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Maps an attribute key to its promoted column, if it has one.
pub fn promoted(key: &str) -> Option<(usize, Promoted)> {
    PROMOTED
        .iter()
        .position(|(k, _, _)| *k == key)
        .map(|i| (i, PROMOTED[i].2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_unique() {
        let schema = schema();
        let mut names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn promoted_keys_resolve() {
        assert_eq!(
            promoted(attr::REQUEST_ID),
            Some((
                PROMOTED
                    .iter()
                    .position(|p| p.1 == col::REQUEST_ID)
                    .unwrap(),
                Promoted::Int64
            ))
        );
        assert_eq!(promoted("custom.key"), None);
    }
}
