//! The demo's own spans.

use exporter::attributes::{int, string};
use exporter::proto_trace::{Span, Status, span::SpanKind, status::StatusCode};
use exporter::{SpanId, TraceContext, TraceId};
use schema::attr;

/// The context of a span this tier starts: the incoming parent, or a new trace.
pub fn child_of(parent: Option<TraceContext>) -> (TraceId, SpanId, Option<SpanId>) {
    match parent {
        Some(p) => (p.trace_id, SpanId::random(), Some(p.parent_id)),
        None => (TraceId::random(), SpanId::random(), None),
    }
}

/// One span of the demo.
pub struct DemoSpan<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: &'a str,
    pub kind: SpanKind,
    pub start: i64,
    pub end: i64,
    pub route: &'a str,
    pub status: u16,
    pub extra: Vec<exporter::proto_trace::span::Event>,
}

impl DemoSpan<'_> {
    pub fn into_proto(self) -> Span {
        let mut attributes = vec![
            string(attr::HTTP_REQUEST_METHOD, "GET"),
            string(attr::HTTP_ROUTE, self.route),
            int(attr::HTTP_RESPONSE_STATUS_CODE, i64::from(self.status)),
        ];
        let error = self.status >= 500;
        if error {
            attributes.push(string(attr::ERROR_TYPE, self.status.to_string()));
        }
        Span {
            trace_id: self.trace_id.0.to_vec(),
            span_id: self.span_id.0.to_vec(),
            parent_span_id: self.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
            name: self.name.to_string(),
            kind: self.kind as i32,
            start_time_unix_nano: self.start as u64,
            end_time_unix_nano: self.end as u64,
            attributes,
            events: self.extra,
            status: Some(Status {
                code: if error {
                    StatusCode::Error as i32
                } else {
                    StatusCode::Unset as i32
                },
                message: String::new(),
            }),
            ..Default::default()
        }
    }
}

/// Unix ns now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The W3C parent from a request's headers.
pub fn parent_of<B>(req: &hyper::Request<B>) -> Option<TraceContext> {
    req.headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
}
