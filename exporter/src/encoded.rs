//! Spans written straight into OTLP protobuf bytes, and export requests
//! assembled from them.
//!
//! A span built as `opentelemetry-proto` structs costs a `String` per
//! attribute key and value and a `Vec` per list, all dropped again once prost
//! has encoded them. A generator sends a span for every request, so it
//! writes each span's fields directly instead ([`SpanWriter`]); the exporter
//! queues the bytes and splices them into the request it sends
//! ([`request`]). Field numbers are those of `opentelemetry/proto/trace/v1/
//! trace.proto` and `common/v1/common.proto` (OTLP 1.x).

use bytes::{BufMut, Bytes};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// One `Span` message, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSpan(pub(crate) Vec<u8>);

impl EncodedSpan {
    /// Encodes a span built as a struct.
    pub fn from_span(span: &opentelemetry_proto::tonic::trace::v1::Span) -> EncodedSpan {
        EncodedSpan(span.encode_to_vec())
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

// Span fields.
const TRACE_ID: u32 = 1;
const SPAN_ID: u32 = 2;
const TRACE_STATE: u32 = 3;
const PARENT_SPAN_ID: u32 = 4;
const NAME: u32 = 5;
const KIND: u32 = 6;
const START_TIME: u32 = 7;
const END_TIME: u32 = 8;
const ATTRIBUTES: u32 = 9;
const STATUS: u32 = 15;
const FLAGS: u32 = 16;
// KeyValue, AnyValue and Status fields.
const KEY: u32 = 1;
const VALUE: u32 = 2;
const STRING_VALUE: u32 = 1;
const BOOL_VALUE: u32 = 2;
const INT_VALUE: u32 = 3;
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;

/// Writes one span, field by field. Call the methods in any order; each
/// writes its field once.
#[derive(Debug)]
pub struct SpanWriter {
    out: Vec<u8>,
}

impl Default for SpanWriter {
    fn default() -> Self {
        SpanWriter::new()
    }
}

impl SpanWriter {
    pub fn new() -> SpanWriter {
        // A generator span with its twenty attributes is about 600 bytes.
        SpanWriter {
            out: Vec::with_capacity(768),
        }
    }

    /// Trace id, span id and, if there is one, the parent span id.
    pub fn ids(&mut self, trace_id: &[u8; 16], span_id: &[u8; 8], parent: Option<&[u8; 8]>) {
        bytes_field(&mut self.out, TRACE_ID, trace_id);
        bytes_field(&mut self.out, SPAN_ID, span_id);
        if let Some(parent) = parent {
            bytes_field(&mut self.out, PARENT_SPAN_ID, parent);
        }
    }

    /// The W3C `tracestate` the span was propagated with; leave it out for none.
    pub fn trace_state(&mut self, trace_state: &str) {
        bytes_field(&mut self.out, TRACE_STATE, trace_state.as_bytes());
    }

    pub fn name(&mut self, name: &str) {
        bytes_field(&mut self.out, NAME, name.as_bytes());
    }

    /// `SpanKind` as its protobuf number.
    pub fn kind(&mut self, kind: i32) {
        varint_field(&mut self.out, KIND, kind as u64);
    }

    /// Start and end, in nanoseconds since the Unix epoch.
    pub fn times(&mut self, start_unix_nanos: u64, end_unix_nanos: u64) {
        encode_key(START_TIME, WireType::SixtyFourBit, &mut self.out);
        self.out.put_u64_le(start_unix_nanos);
        encode_key(END_TIME, WireType::SixtyFourBit, &mut self.out);
        self.out.put_u64_le(end_unix_nanos);
    }

    /// W3C trace flags and the OTLP "parent is remote" bits.
    pub fn flags(&mut self, flags: u32) {
        encode_key(FLAGS, WireType::ThirtyTwoBit, &mut self.out);
        self.out.put_u32_le(flags);
    }

    /// A string attribute.
    pub fn string(&mut self, key: &str, value: &str) {
        let any = 1 + encoded_len_varint(value.len() as u64) + value.len();
        self.key_value(key, any);
        bytes_field(&mut self.out, STRING_VALUE, value.as_bytes());
    }

    /// An integer attribute.
    pub fn int(&mut self, key: &str, value: i64) {
        let any = 1 + encoded_len_varint(value as u64);
        self.key_value(key, any);
        varint_field(&mut self.out, INT_VALUE, value as u64);
    }

    /// A boolean attribute.
    pub fn bool(&mut self, key: &str, value: bool) {
        self.key_value(key, 2);
        varint_field(&mut self.out, BOOL_VALUE, u64::from(value));
    }

    /// The status `ERROR` with its message. A span without a status call is `UNSET`.
    pub fn error_status(&mut self, message: &str) {
        const ERROR: u64 = 2;
        let length = 1 + encoded_len_varint(message.len() as u64) + message.len() + 2;
        encode_key(STATUS, WireType::LengthDelimited, &mut self.out);
        encode_varint(length as u64, &mut self.out);
        bytes_field(&mut self.out, STATUS_MESSAGE, message.as_bytes());
        varint_field(&mut self.out, STATUS_CODE, ERROR);
    }

    pub fn finish(self) -> EncodedSpan {
        EncodedSpan(self.out)
    }

    /// Writes a `KeyValue`'s header and key, and the header of its
    /// `AnyValue` of `any` bytes, which the caller writes next.
    fn key_value(&mut self, key: &str, any: usize) {
        let pair = 1
            + encoded_len_varint(key.len() as u64)
            + key.len()
            + 1
            + encoded_len_varint(any as u64)
            + any;
        encode_key(ATTRIBUTES, WireType::LengthDelimited, &mut self.out);
        encode_varint(pair as u64, &mut self.out);
        bytes_field(&mut self.out, KEY, key.as_bytes());
        encode_key(VALUE, WireType::LengthDelimited, &mut self.out);
        encode_varint(any as u64, &mut self.out);
    }
}

fn bytes_field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn varint_field(out: &mut Vec<u8>, tag: u32, value: u64) {
    encode_key(tag, WireType::Varint, out);
    encode_varint(value, out);
}

/// Length of a length-delimited field of `length` bytes with a one-byte key.
fn delimited(length: usize) -> usize {
    1 + encoded_len_varint(length as u64) + length
}

/// Bytes a span takes in a request made by [`request`].
pub fn in_request(span: &EncodedSpan) -> usize {
    delimited(span.0.len())
}

/// Bytes of a request made by [`request`] besides its spans' (an upper
/// bound: the lengths' varints are taken at their longest).
pub fn request_overhead(resource: &[u8], scope: &[u8]) -> usize {
    // Three nested messages, each a key and a length of at most 10 bytes.
    delimited(resource.len()) + delimited(scope.len()) + 3 * 11
}

/// An `ExportTraceServiceRequest` with one `ResourceSpans` holding one
/// `ScopeSpans`: `resource` and `scope` are the encoded `Resource` and
/// `InstrumentationScope`, `spans` the encoded spans.
pub fn request(resource: &[u8], scope: &[u8], spans: &[EncodedSpan]) -> RawMessage {
    let spans_length: usize = spans.iter().map(in_request).sum();
    let scope_spans = delimited(scope.len()) + spans_length;
    let resource_spans = delimited(resource.len()) + delimited(scope_spans);
    let mut out = Vec::with_capacity(delimited(resource_spans));
    // ExportTraceServiceRequest.resource_spans = 1
    encode_key(1, WireType::LengthDelimited, &mut out);
    encode_varint(resource_spans as u64, &mut out);
    // ResourceSpans.resource = 1, .scope_spans = 2
    bytes_field(&mut out, 1, resource);
    encode_key(2, WireType::LengthDelimited, &mut out);
    encode_varint(scope_spans as u64, &mut out);
    // ScopeSpans.scope = 1, .spans = 2
    bytes_field(&mut out, 1, scope);
    for span in spans {
        bytes_field(&mut out, 2, &span.0);
    }
    RawMessage(Bytes::from(out))
}

/// A message already encoded: prost writes its bytes as they are. It lets
/// the gRPC and HTTP transports send a request assembled by [`request`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMessage(pub Bytes);

impl Message for RawMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded: requests only go out.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{Span, Status, status::StatusCode};

    use super::*;
    use crate::attributes::{bool, int, string};

    /// Writes a span both ways: with the writer, and as the struct prost
    /// would encode; they must decode to the same span.
    #[test]
    fn written_spans_decode_to_the_struct_they_describe() {
        let long = "x".repeat(300); // lengths past one varint byte
        for (error, parent, value, state) in [
            (None, None, "GET", ""),
            (
                Some("http_5xx"),
                Some([9u8; 8]),
                long.as_str(),
                "congo=t61rcWkgMzE",
            ),
        ] {
            let mut writer = SpanWriter::new();
            writer.ids(&[1; 16], &[2; 8], parent.as_ref());
            if !state.is_empty() {
                writer.trace_state(state);
            }
            writer.name(value);
            writer.kind(3);
            writer.times(1_700_000_000_000_000_000, 1_700_000_000_250_000_000);
            writer.string("url.full", value);
            writer.int("loadlens.request.id", -7);
            writer.int("http.response.status_code", 503);
            writer.int("loadlens.intended_start_unix_nano", i64::MAX);
            writer.bool("loadlens.auth_retried", true);
            if let Some(error) = error {
                writer.error_status(error);
            }
            writer.flags(0x101);
            let written = writer.finish();

            let expected = Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                trace_state: state.into(),
                parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
                name: value.into(),
                kind: 3,
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_250_000_000,
                attributes: vec![
                    string("url.full", value),
                    int("loadlens.request.id", -7),
                    int("http.response.status_code", 503),
                    int("loadlens.intended_start_unix_nano", i64::MAX),
                    bool("loadlens.auth_retried", true),
                ],
                status: error.map(|e| Status {
                    message: e.into(),
                    code: StatusCode::Error as i32,
                }),
                flags: 0x101,
                ..Default::default()
            };
            let decoded = Span::decode(written.as_bytes()).expect("the written span decodes");
            assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn an_assembled_request_decodes_with_every_span_in_order() {
        let resource = Resource {
            attributes: vec![string("service.name", "loadlens-generator")],
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "loadlens".into(),
            version: "0.1.0".into(),
            ..Default::default()
        };
        let spans: Vec<Span> = (0..200u8)
            .map(|i| Span {
                trace_id: vec![i; 16],
                span_id: vec![i; 8],
                name: format!("span {i}"),
                ..Default::default()
            })
            .collect();
        let encoded: Vec<EncodedSpan> = spans.iter().map(EncodedSpan::from_span).collect();
        let raw = request(&resource.encode_to_vec(), &scope.encode_to_vec(), &encoded);
        assert_eq!(raw.encoded_len(), raw.0.len());
        let decoded = ExportTraceServiceRequest::decode(raw.0.clone()).unwrap();
        assert_eq!(decoded.resource_spans.len(), 1);
        let resource_spans = &decoded.resource_spans[0];
        assert_eq!(resource_spans.resource.as_ref(), Some(&resource));
        assert_eq!(resource_spans.scope_spans.len(), 1);
        assert_eq!(resource_spans.scope_spans[0].scope.as_ref(), Some(&scope));
        assert_eq!(resource_spans.scope_spans[0].spans, spans);
        // prost writes the raw message through unchanged.
        assert_eq!(raw.encode_to_vec(), raw.0.to_vec());
    }
}
