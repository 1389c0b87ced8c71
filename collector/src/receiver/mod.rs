//! OTLP receivers: gRPC (4317) and HTTP (4318). Both decode a request their own
//! way, then share [`export`]: convert to Arrow, make durable through
//! [`crate::ingest::Ingest`], and answer with any partial success.

pub mod grpc;
pub mod http;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::convert::{self, Converted, EncodedError};
use crate::ingest::{Ingest, SubmitError};
use crate::wal::Signal;

/// One OTLP signal: its request and response types, how its request becomes
/// rows, and how its answer reports rejected items.
pub(crate) trait Export {
    const SIGNAL: Signal;
    type Request: Message + Default + serde::de::DeserializeOwned;
    type Response: Message + serde::Serialize;
    fn convert(request: &Self::Request) -> Result<Converted, arrow::error::ArrowError>;
    /// Converts a request from its protobuf bytes.
    fn convert_encoded(bytes: &[u8]) -> Result<Converted, EncodedError>;
    fn response(rejected: Option<(i64, String)>) -> Self::Response;
}

pub(crate) struct Traces;

impl Export for Traces {
    const SIGNAL: Signal = Signal::Traces;
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;

    fn convert(request: &Self::Request) -> Result<Converted, arrow::error::ArrowError> {
        convert::spans::convert(request)
    }

    fn convert_encoded(bytes: &[u8]) -> Result<Converted, EncodedError> {
        convert::spans::convert_encoded(bytes)
    }

    fn response(rejected: Option<(i64, String)>) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: rejected.map(|(rejected_spans, error_message)| {
                ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }
            }),
        }
    }
}

pub(crate) struct Metrics;

impl Export for Metrics {
    const SIGNAL: Signal = Signal::Metrics;
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;

    fn convert(request: &Self::Request) -> Result<Converted, arrow::error::ArrowError> {
        convert::metrics::convert(request)
    }

    fn convert_encoded(bytes: &[u8]) -> Result<Converted, EncodedError> {
        let request = Self::Request::decode(bytes).map_err(EncodedError::Decode)?;
        Self::convert(&request).map_err(EncodedError::Convert)
    }

    fn response(rejected: Option<(i64, String)>) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: rejected.map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        }
    }
}

/// Whether an `Authorization` header value carries the expected bearer token.
/// With no token configured every request is allowed. The comparison takes the
/// same time wherever the tokens differ, so timing does not reveal a prefix.
pub(crate) fn authorized(expected: Option<&str>, header: Option<&[u8]>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(header) = header else {
        return false;
    };
    let Some(scheme) = header.get(..7) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let given = header[7..].trim_ascii();
    let expected = expected.as_bytes();
    let mut difference = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        difference |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    difference == 0
}

/// The answer to a request without the right bearer token.
pub(crate) const UNAUTHENTICATED: &str = "missing or wrong bearer token: send the header 'Authorization: Bearer <token>' with the collector's token";

/// Why an export was not acknowledged.
#[derive(Debug)]
pub(crate) enum ExportFailure {
    /// The bytes are not a valid request; retrying will not help.
    Invalid(prost::DecodeError),
    /// The request could not be turned into rows (a bug, not the client's fault).
    Convert(arrow::error::ArrowError),
    /// Nothing was stored; the client should retry.
    NotStored(SubmitError),
}

impl From<EncodedError> for ExportFailure {
    fn from(e: EncodedError) -> Self {
        match e {
            EncodedError::Decode(e) => ExportFailure::Invalid(e),
            EncodedError::Convert(e) => ExportFailure::Convert(e),
        }
    }
}

/// Admits a request of `payload` (its protobuf encoding, kept in the
/// write-ahead log), converts it with `convert`, makes it durable and builds
/// the answer. Admission comes first, so an overloaded collector refuses
/// without decoding anything.
pub(crate) async fn export<E: Export>(
    ingest: &Ingest,
    payload: Bytes,
    convert: impl FnOnce(&[u8]) -> Result<Converted, EncodedError>,
) -> Result<E::Response, ExportFailure> {
    let _admission = ingest
        .admit(E::SIGNAL, payload.len())
        .map_err(ExportFailure::NotStored)?;
    let converted = convert(&payload)?;
    let rejected = (converted.rejected > 0)
        .then(|| (converted.rejected as i64, rejection_message(&converted)));
    ingest
        .submit(E::SIGNAL, payload, converted)
        .await
        .map_err(ExportFailure::NotStored)?;
    Ok(E::response(rejected))
}

/// The partial-success message for a converted request, if anything was rejected.
fn rejection_message(converted: &Converted) -> String {
    match &converted.first_error {
        Some(first) if converted.rejected > 1 => {
            format!("{} rejected; first: {first}", converted.rejected)
        }
        Some(first) => first.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(authorized(None, None));
        assert!(authorized(Some("t0k"), Some(b"Bearer t0k")));
        assert!(authorized(Some("t0k"), Some(b"bearer  t0k ")));
        assert!(!authorized(Some("t0k"), None));
        assert!(!authorized(Some("t0k"), Some(b"Bearer t0")));
        assert!(!authorized(Some("t0k"), Some(b"Bearer t0kk")));
        assert!(!authorized(Some("t0k"), Some(b"Basic t0k")));
        assert!(!authorized(Some("t0k"), Some(b"Bearer")));
    }
}
