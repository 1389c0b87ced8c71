//! A scripted fake OTLP collector on 127.0.0.1:0, over gRPC and over HTTP: it
//! answers the first requests with the scripted failures, accepts the rest, and
//! records when each request arrived and what it held.

#![allow(dead_code)] // each test file uses part of it

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::post;
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

/// A failure the fake sends instead of accepting a request.
pub enum Failure {
    Grpc(tonic::Status),
    /// An HTTP status and an optional `Retry-After` value.
    Http(StatusCode, Option<&'static str>),
}

/// One request that reached the fake, accepted or not.
pub struct Call {
    pub at: Instant,
    pub accepted: bool,
    pub traces: Option<ExportTraceServiceRequest>,
    pub metrics: Option<ExportMetricsServiceRequest>,
}

#[derive(Default)]
pub struct Fake {
    script: Mutex<VecDeque<Failure>>,
    calls: Mutex<Vec<Call>>,
}

impl Fake {
    /// A fake that answers its first requests with `failures`, in order.
    pub fn new(failures: impl IntoIterator<Item = Failure>) -> Arc<Fake> {
        Arc::new(Fake {
            script: Mutex::new(failures.into_iter().collect()),
            calls: Mutex::default(),
        })
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.calls.lock().unwrap()
    }

    /// The gap between the first (refused) request and the retry, as the
    /// server saw it: a lower bound of the client's wait.
    pub fn wait_before_retry(&self) -> Duration {
        let calls = self.calls();
        assert_eq!(calls.len(), 2, "one refusal, one accepted retry");
        assert!(!calls[0].accepted && calls[1].accepted);
        calls[1].at - calls[0].at
    }

    /// Spans in accepted requests.
    pub fn spans_accepted(&self) -> usize {
        self.calls()
            .iter()
            .filter(|call| call.accepted)
            .filter_map(|call| call.traces.as_ref())
            .flat_map(|request| &request.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum()
    }

    /// Records a request; returns the failure to answer with, if one is scripted.
    fn record(
        &self,
        traces: Option<ExportTraceServiceRequest>,
        metrics: Option<ExportMetricsServiceRequest>,
    ) -> Option<Failure> {
        let failure = self.script.lock().unwrap().pop_front();
        self.calls.lock().unwrap().push(Call {
            at: Instant::now(),
            accepted: failure.is_none(),
            traces,
            metrics,
        });
        failure
    }

    fn grpc_answer(&self, failure: Option<Failure>) -> Result<(), tonic::Status> {
        match failure {
            None => Ok(()),
            Some(Failure::Grpc(status)) => Err(status),
            Some(Failure::Http(..)) => panic!("HTTP failure scripted for a gRPC fake"),
        }
    }
}

struct GrpcFake(Arc<Fake>);

#[tonic::async_trait]
impl TraceService for GrpcFake {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let failure = self.0.record(Some(request.into_inner()), None);
        self.0.grpc_answer(failure)?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcFake {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let failure = self.0.record(None, Some(request.into_inner()));
        self.0.grpc_answer(failure)?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves `fake` over OTLP/gRPC; returns its `http://` endpoint.
pub async fn grpc(fake: Arc<Fake>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(GrpcFake(fake.clone())))
        .add_service(MetricsServiceServer::new(GrpcFake(fake)))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    format!("http://{addr}")
}

/// Serves `fake` over OTLP/HTTP (protobuf); returns its base `http://` URL.
pub async fn http(fake: Arc<Fake>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let traces = fake.clone();
    let metrics = fake;
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(move |headers: HeaderMap, body: Bytes| async move {
                check_content_type(&headers);
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                http_answer(
                    traces.record(Some(request), None),
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }),
        )
        .route(
            "/v1/metrics",
            post(move |headers: HeaderMap, body: Bytes| async move {
                check_content_type(&headers);
                let request = ExportMetricsServiceRequest::decode(body).unwrap();
                http_answer(
                    metrics.record(None, Some(request)),
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn check_content_type(headers: &HeaderMap) {
    assert_eq!(
        headers.get(header::CONTENT_TYPE),
        Some(&HeaderValue::from_static("application/x-protobuf"))
    );
}

fn http_answer(failure: Option<Failure>, ok_body: Vec<u8>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let protobuf = |mut headers: HeaderMap| {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers
    };
    match failure {
        None => (StatusCode::OK, protobuf(HeaderMap::new()), ok_body),
        Some(Failure::Http(status, retry_after)) => {
            let mut headers = HeaderMap::new();
            if let Some(value) = retry_after {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(value));
            }
            (status, protobuf(headers), Vec::new())
        }
        Some(Failure::Grpc(_)) => panic!("gRPC failure scripted for an HTTP fake"),
    }
}
