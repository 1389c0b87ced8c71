//! OTLP/gRPC: the TraceService and MetricsService `Export` calls.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Export, ExportFailure, Metrics, Traces};
use crate::ingest::Ingest;

#[derive(Debug, Clone)]
pub struct Receiver {
    ingest: Arc<Ingest>,
    /// When set, requests must carry `authorization: Bearer <token>`.
    token: Option<Arc<str>>,
}

impl Receiver {
    pub fn new(ingest: Arc<Ingest>, token: Option<Arc<str>>) -> Self {
        Receiver { ingest, token }
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

    async fn export<E: Export>(
        &self,
        request: &Request<E::Request>,
    ) -> Result<E::Response, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if !super::authorized(self.token.as_deref(), header) {
            self.ingest
                .stats()
                .refused_unauthenticated
                .add(E::SIGNAL, 1);
            return Err(Status::unauthenticated(super::UNAUTHENTICATED));
        }
        let request = request.get_ref();
        // tonic has decoded the request already; the log keeps it re-encoded.
        let payload = request.encode_to_vec();
        super::export::<E>(&self.ingest, request, payload)
            .await
            .map_err(|failure| match failure {
                ExportFailure::Convert(e) => Status::internal(format!("cannot convert: {e}")),
                // UNAVAILABLE, which OTLP clients retry, with a RetryInfo delay.
                ExportFailure::NotStored(e) => Status::with_error_details(
                    tonic::Code::Unavailable,
                    e.to_string(),
                    ErrorDetails::with_retry_info(Some(e.retry_after())),
                ),
            })
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.export::<Traces>(&request).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.export::<Metrics>(&request).await.map(Response::new)
    }
}
