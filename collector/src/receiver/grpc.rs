//! OTLP/gRPC: the TraceService and MetricsService `Export` calls.
//!
//! Traces are served by [`TraceServer`] with a codec that hands the handler
//! the request's bytes as they arrived: the rows are read straight from them
//! ([`crate::convert::spans::convert_encoded`]) and the write-ahead log keeps
//! them as they are, where tonic's generated server would decode into structs
//! that are then re-encoded for the log. Metrics, far fewer, use the
//! generated server.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Export, ExportFailure, Metrics, Traces};
use crate::convert::EncodedError;
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
    pub fn services(self, max_message: usize) -> (TraceServer, MetricsServiceServer<Receiver>) {
        let traces = TraceServer {
            receiver: self.clone(),
            max_message,
        };
        let metrics = MetricsServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message);
        (traces, metrics)
    }

    fn check_token<E: Export>(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let header = metadata.get("authorization").map(|v| v.as_bytes());
        if super::authorized(self.token.as_deref(), header) {
            return Ok(());
        }
        self.ingest
            .stats()
            .refused_unauthenticated
            .add(E::SIGNAL, 1);
        Err(Status::unauthenticated(super::UNAUTHENTICATED))
    }

    async fn export<E: Export>(
        &self,
        metadata: &MetadataMap,
        payload: Bytes,
        convert: impl FnOnce(&[u8]) -> Result<crate::convert::Converted, EncodedError>,
    ) -> Result<E::Response, Status> {
        self.check_token::<E>(metadata)?;
        super::export::<E>(&self.ingest, payload, convert)
            .await
            .map_err(|failure| match failure {
                ExportFailure::Invalid(e) => {
                    Status::invalid_argument(format!("invalid protobuf: {e}"))
                }
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
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let payload = Bytes::from(request.get_ref().encode_to_vec());
        let decoded = request.get_ref();
        Receiver::export::<Metrics>(self, request.metadata(), payload, |_| {
            Metrics::convert(decoded).map_err(EncodedError::Convert)
        })
        .await
        .map(Response::new)
    }
}

/// The OTLP TraceService, fed the request bytes undecoded.
#[derive(Debug, Clone)]
pub struct TraceServer {
    receiver: Receiver,
    max_message: usize,
}

const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl NamedService for TraceServer {
    const NAME: &'static str = TRACE_SERVICE;
}

impl<B> Service<http::Request<B>> for TraceServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != TRACE_EXPORT {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let export = ExportTraces(self.receiver.clone());
        let mut grpc = Grpc::new(RawRequests)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(self.max_message);
        Box::pin(async move { Ok(grpc.unary(export, request).await) })
    }
}

/// One `Export` call on [`TraceServer`].
struct ExportTraces(Receiver);

impl Service<Request<Bytes>> for ExportTraces {
    type Response = Response<ExportTraceServiceResponse>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move {
            let (metadata, _, payload) = request.into_parts();
            receiver
                .export::<Traces>(&metadata, payload, Traces::convert_encoded)
                .await
                .map(Response::new)
        })
    }
}

/// Requests as the bytes that arrived (after gRPC decompression), answers
/// encoded by prost.
#[derive(Debug, Clone, Copy)]
struct RawRequests;

impl Codec for RawRequests {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ResponseEncoder;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

struct ResponseEncoder;

impl Encoder for ResponseEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))
    }
}

struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
