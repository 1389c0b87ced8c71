//! OTLP/gRPC: the TraceService and MetricsService `Export` calls.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::rejection_message;
use crate::convert;
use crate::ingest::{Ingest, SubmitError};
use crate::wal::Signal;

/// Nothing was stored: UNAVAILABLE, which OTLP clients retry, with a RetryInfo
/// delay so they back off.
fn not_persisted(error: SubmitError) -> Status {
    let delay = match error {
        SubmitError::Overloaded { .. } => Duration::from_secs(1),
        SubmitError::NotStored(_) => Duration::from_millis(500),
    };
    Status::with_error_details(
        tonic::Code::Unavailable,
        error.to_string(),
        ErrorDetails::with_retry_info(Some(delay)),
    )
}

#[derive(Debug, Clone)]
pub struct Receiver {
    ingest: Arc<Ingest>,
}

impl Receiver {
    pub fn new(ingest: Arc<Ingest>) -> Self {
        Receiver { ingest }
    }

    /// The two services, limited to `max_message` bytes per request.
    pub fn services(
        self,
        max_message: usize,
    ) -> (TraceServiceServer<Receiver>, MetricsServiceServer<Receiver>) {
        let traces = TraceServiceServer::new(self.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message);
        let metrics = MetricsServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message);
        (traces, metrics)
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let converted = convert::spans::convert(request.get_ref())
            .map_err(|e| Status::internal(format!("cannot convert spans: {e}")))?;
        let partial_success = (converted.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: converted.rejected as i64,
            error_message: rejection_message(&converted),
        });
        let payload = request.get_ref().encode_to_vec();
        self.ingest
            .submit(Signal::Traces, payload, converted)
            .await
            .map_err(not_persisted)?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let converted = convert::metrics::convert(request.get_ref())
            .map_err(|e| Status::internal(format!("cannot convert metrics: {e}")))?;
        let partial_success = (converted.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: converted.rejected as i64,
            error_message: rejection_message(&converted),
        });
        let payload = request.get_ref().encode_to_vec();
        self.ingest
            .submit(Signal::Metrics, payload, converted)
            .await
            .map_err(not_persisted)?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success,
        }))
    }
}
