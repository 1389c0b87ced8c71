//! The API tier: does some work, then queries the database tier.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use exporter::proto_trace::span::SpanKind;
use exporter::{SpanSink, TraceContext};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::DemoConfig;
use crate::spans::{DemoSpan, child_of, now, parent_of};

#[derive(Debug, Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    work: Duration,
    db_uri: hyper::Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
    sink: Option<SpanSink>,
}

impl Api {
    pub fn new(config: &DemoConfig, db_addr: SocketAddr, sink: Option<SpanSink>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        let db_uri = format!("http://{db_addr}/query")
            .parse()
            .expect("a socket address makes a valid URI");
        Api {
            inner: Arc::new(Inner {
                work: config.api_work,
                db_uri,
                client,
                sink,
            }),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let start = now();
        let (trace_id, span_id, parent) = child_of(parent_of(&req));
        let path = req.uri().path().to_string();
        let (status, body) = if path.starts_with("/api/") {
            tokio::time::sleep(self.inner.work).await;
            self.query_db(trace_id, span_id).await
        } else {
            (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n"))
        };
        if let Some(sink) = &self.inner.sink {
            sink.send(
                DemoSpan {
                    trace_id,
                    span_id,
                    parent,
                    name: "GET /api/orders",
                    kind: SpanKind::Server,
                    start,
                    end: now(),
                    route: "/api/orders",
                    status: status.as_u16(),
                    extra: Vec::new(),
                }
                .into_proto(),
            );
        }
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response
    }

    /// Calls the database tier inside a CLIENT span, passing that span as parent.
    async fn query_db(
        &self,
        trace_id: exporter::TraceId,
        server_span: exporter::SpanId,
    ) -> (StatusCode, Bytes) {
        let start = now();
        let (trace_id, client_span, parent) = child_of(Some(TraceContext {
            trace_id,
            parent_id: server_span,
            sampled: true,
        }));
        let traceparent = TraceContext {
            trace_id,
            parent_id: client_span,
            sampled: true,
        }
        .to_traceparent();
        let request = Request::get(self.inner.db_uri.clone())
            .header("traceparent", traceparent)
            .body(Empty::new())
            .expect("static request is valid");
        let result = async {
            let response = self.inner.client.request(request).await.ok()?;
            let status = response.status();
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        }
        .await;
        let (status, body) = match result {
            Some((status, body)) if status.is_success() => (StatusCode::OK, body),
            Some((status, _)) => (
                StatusCode::BAD_GATEWAY,
                Bytes::from(format!("database answered {status}\n")),
            ),
            None => (
                StatusCode::BAD_GATEWAY,
                Bytes::from_static(b"database unreachable\n"),
            ),
        };
        if let Some(sink) = &self.inner.sink {
            sink.send(
                DemoSpan {
                    trace_id,
                    span_id: client_span,
                    parent,
                    name: "GET /query",
                    kind: SpanKind::Client,
                    start,
                    end: now(),
                    route: "/query",
                    status: status.as_u16(),
                    extra: Vec::new(),
                }
                .into_proto(),
            );
        }
        (status, body)
    }
}
