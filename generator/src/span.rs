//! The CLIENT span of one request, with semantic-convention and loadlens attributes.

use exporter::attributes::{int, string};
use exporter::proto_trace::{Span, Status, span::SpanKind, status::StatusCode};
use exporter::{SpanId, TraceContext, TraceId};
use schema::attr;

use crate::clock::Clock;
use crate::http::Outcome;

/// Everything about a request that the span records besides its outcome.
#[derive(Debug, Clone)]
pub struct RequestMeta<'a> {
    pub trace: TraceContext,
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

/// Builds the span; `meta.trace.parent_id` is this span's own id.
pub fn client_span(meta: &RequestMeta<'_>, outcome: &Outcome, clock: &Clock) -> Span {
    let sent_at = clock.unix_nanos(outcome.sent_at);
    let end = clock.unix_nanos(outcome.end);
    let mut attributes = vec![
        string(attr::HTTP_REQUEST_METHOD, meta.method),
        string(attr::URL_FULL, meta.url),
        string(attr::SERVER_ADDRESS, meta.host),
        int(attr::SERVER_PORT, i64::from(meta.port)),
        string(attr::RUN_ID, meta.run_id),
        string(attr::SCENARIO, meta.scenario),
        string(attr::STEP, meta.step),
        string(attr::STAGE, meta.stage),
        int(attr::SHARD, i64::from(meta.shard)),
        int(attr::VU, meta.vu as i64),
        int(attr::REQUEST_ID, meta.request_id),
        int(attr::CONCURRENCY, meta.concurrency),
        int(attr::INTENDED_START, meta.intended_start_unix_nanos),
        int(attr::SENT_AT, sent_at),
        int(attr::HTTP_RESPONSE_BODY_SIZE, outcome.bytes_received as i64),
    ];
    if outcome.bytes_sent > 0 {
        attributes.push(int(attr::HTTP_REQUEST_BODY_SIZE, outcome.bytes_sent as i64));
    }
    if let Some(version) = outcome.version {
        let version = match version {
            http::Version::HTTP_2 => "2",
            http::Version::HTTP_3 => "3",
            http::Version::HTTP_10 => "1.0",
            _ => "1.1",
        };
        attributes.push(string(attr::NETWORK_PROTOCOL_VERSION, version));
    }
    if let Some(flow) = meta.flow {
        attributes.push(string(attr::FLOW, flow));
    }
    if meta.auth_retried {
        attributes.push(exporter::attributes::bool(attr::AUTH_RETRIED, true));
    }
    if let Some(first_byte) = outcome.first_byte_at {
        attributes.push(int(attr::FIRST_BYTE_AT, clock.unix_nanos(first_byte)));
    }
    if let Some(status) = outcome.status {
        attributes.push(int(attr::HTTP_RESPONSE_STATUS_CODE, i64::from(status)));
    }
    if let Some(error) = outcome.error {
        attributes.push(string(attr::ERROR_TYPE, error.as_str()));
    }
    let status = match outcome.error {
        Some(error) => Status {
            code: StatusCode::Error as i32,
            message: error.as_str().to_string(),
        },
        None => Status::default(),
    };
    Span {
        trace_id: meta.trace.trace_id.0.to_vec(),
        span_id: meta.trace.parent_id.0.to_vec(),
        flags: 0x100 | u32::from(meta.trace.sampled), // W3C flags + "parent is not remote"
        name: meta.method.to_string(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: sent_at as u64,
        end_time_unix_nano: end as u64,
        attributes,
        status: Some(status),
        ..Default::default()
    }
}
