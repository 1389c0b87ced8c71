//! The CLIENT span of one request, with semantic-convention and loadlens attributes.

use exporter::proto_trace::span::SpanKind;
use exporter::{EncodedSpan, SpanId, SpanWriter, TraceContext, TraceId};
use schema::attr;

use crate::clock::Clock;
use crate::http::Outcome;

/// Everything about a request that the span records besides its outcome.
#[derive(Debug, Clone)]
pub struct RequestMeta<'a> {
    pub trace: TraceContext,
    /// The W3C `tracestate` of the request, if the run sets one.
    pub trace_state: Option<&'a str>,
    pub method: &'a str,
    pub url: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub run_id: &'a str,
    pub scenario: &'a str,
    pub step: &'a str,
    pub stage: &'a str,
    pub shard: u32,
    pub vu: u64,
    pub request_id: i64,
    pub concurrency: i64,
    pub intended_start_unix_nanos: i64,
    /// Whether a 401 made the request fetch a new token and go again.
    pub auth_retried: bool,
    /// The flow the request is a step of, if any.
    pub flow: Option<&'a str>,
}

/// A new trace context for a request: fresh trace id and span id, sampled.
pub fn new_context() -> TraceContext {
    TraceContext {
        trace_id: TraceId::random(),
        parent_id: SpanId::random(),
        sampled: true,
    }
}

/// Writes the span straight into protobuf bytes (no per-attribute
/// allocations: this runs once per request); `meta.trace.parent_id` is this
/// span's own id.
pub fn client_span(meta: &RequestMeta<'_>, outcome: &Outcome, clock: &Clock) -> EncodedSpan {
    let sent_at = clock.unix_nanos(outcome.sent_at);
    let end = clock.unix_nanos(outcome.end);
    let mut span = SpanWriter::new();
    span.ids(&meta.trace.trace_id.0, &meta.trace.parent_id.0, None);
    if let Some(state) = meta.trace_state {
        span.trace_state(state);
    }
    span.name(meta.method);
    span.kind(SpanKind::Client as i32);
    span.times(sent_at as u64, end as u64);
    span.string(attr::HTTP_REQUEST_METHOD, meta.method);
    span.string(attr::URL_FULL, meta.url);
    span.string(attr::SERVER_ADDRESS, meta.host);
    span.int(attr::SERVER_PORT, i64::from(meta.port));
    span.string(attr::RUN_ID, meta.run_id);
    span.string(attr::SCENARIO, meta.scenario);
    span.string(attr::STEP, meta.step);
    span.string(attr::STAGE, meta.stage);
    span.int(attr::SHARD, i64::from(meta.shard));
    span.int(attr::VU, meta.vu as i64);
    span.int(attr::REQUEST_ID, meta.request_id);
    span.int(attr::CONCURRENCY, meta.concurrency);
    span.int(attr::INTENDED_START, meta.intended_start_unix_nanos);
    span.int(attr::SENT_AT, sent_at);
    span.int(attr::HTTP_RESPONSE_BODY_SIZE, outcome.bytes_received as i64);
    if outcome.bytes_sent > 0 {
        span.int(attr::HTTP_REQUEST_BODY_SIZE, outcome.bytes_sent as i64);
    }
    if let Some(version) = outcome.version {
        let version = match version {
            http::Version::HTTP_2 => "2",
            http::Version::HTTP_3 => "3",
            http::Version::HTTP_10 => "1.0",
            _ => "1.1",
        };
        span.string(attr::NETWORK_PROTOCOL_VERSION, version);
    }
    if let Some(flow) = meta.flow {
        span.string(attr::FLOW, flow);
    }
    if meta.auth_retried {
        span.bool(attr::AUTH_RETRIED, true);
    }
    if let Some(first_byte) = outcome.first_byte_at {
        span.int(attr::FIRST_BYTE_AT, clock.unix_nanos(first_byte));
    }
    if let Some(status) = outcome.status {
        span.int(attr::HTTP_RESPONSE_STATUS_CODE, i64::from(status));
    }
    if let Some(error) = outcome.error {
        span.string(attr::ERROR_TYPE, error.as_str());
        span.error_status(error.as_str());
    }
    span.flags(0x100 | u32::from(meta.trace.sampled)); // W3C flags + "parent is not remote"
    span.finish()
}
