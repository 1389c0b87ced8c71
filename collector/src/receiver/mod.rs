//! OTLP receivers: gRPC (4317) and HTTP (4318), both handing decoded requests to
//! the converters and the accepted rows to [`crate::ingest::Ingest`].

pub mod grpc;
pub mod http;

use crate::convert::Converted;

/// The partial-success message for a converted request, if anything was rejected.
pub(crate) fn rejection_message(converted: &Converted) -> String {
    match &converted.first_error {
        Some(first) if converted.rejected > 1 => {
            format!("{} rejected; first: {first}", converted.rejected)
        }
        Some(first) => first.clone(),
        None => String::new(),
    }
}
