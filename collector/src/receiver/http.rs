//! OTLP/HTTP: `POST /v1/traces` and `/v1/metrics`, protobuf or JSON chosen by
//! Content-Type and answered in kind, gzip bodies accepted.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prost::Message;

use super::{Export, ExportFailure, Metrics, Traces};
use crate::convert::EncodedError;
use crate::ingest::Ingest;

#[derive(Debug, Clone)]
struct AppState {
    ingest: Arc<Ingest>,
    max_body: usize,
    /// When set, OTLP requests must carry `Authorization: Bearer <token>`.
    token: Option<Arc<str>>,
}

/// The OTLP/HTTP routes, limited to `max_body` bytes per request after
/// decompression. With a `token`, the OTLP routes require it as a bearer token;
/// `/healthz`, `/readyz` and `/metrics` stay open for probes and Prometheus.
pub fn router(ingest: Arc<Ingest>, max_body: usize, token: Option<Arc<str>>) -> Router {
    Router::new()
        .route("/v1/traces", post(export::<Traces>))
        .route("/v1/metrics", post(export::<Metrics>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(AppState {
            ingest,
            max_body,
            token,
        })
}

/// Ready unless new data would be refused: pending memory at its bound, or
/// resident memory near `max_memory` with rows pending or in flight worth a
/// flush (`Ingest::overloaded`).
async fn ready(State(state): State<AppState>) -> Response {
    if state.ingest.overloaded() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded: waiting for a flush to free memory\n",
        )
            .into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.ingest.exposition(),
    )
        .into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// A request the receiver refuses, answered with a status and a plain reason.
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1 + "\n",
        )
            .into_response()
    }
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    match mime {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        other => Err(Refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type '{other}': send application/x-protobuf or application/json"
            ),
        )),
    }
}

/// The request body, gunzipped if needed, never larger than `max_body`.
fn body(headers: &HeaderMap, body: Bytes, max_body: usize) -> Result<Bytes, Refusal> {
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match content_encoding.as_str() {
        "identity" | "" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            // Reading one byte past the limit tells an oversized body from one that fits.
            flate2::read::GzDecoder::new(body.as_ref())
                .take(max_body as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
            if out.len() > max_body {
                return Err(Refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "body exceeds {max_body} bytes after decompression; send smaller batches"
                    ),
                ));
            }
            Ok(out.into())
        }
        other => Err(Refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding '{other}': send gzip or no encoding"),
        )),
    }
}

fn respond<T: Message + serde::Serialize>(encoding: Encoding, response: &T) -> Response {
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec()),
    };
    let mut out = (StatusCode::OK, body).into_response();
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    out
}

async fn export<E: Export>(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, Refusal> {
    let header = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !super::authorized(state.token.as_deref(), header) {
        state
            .ingest
            .stats()
            .refused_unauthenticated
            .add(E::SIGNAL, 1);
        let mut response =
            Refusal(StatusCode::UNAUTHORIZED, super::UNAUTHENTICATED.into()).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(response);
    }
    let (encoding, payload, json) = decode_request::<E>(&headers, raw, state.max_body)?;
    let exported = match &json {
        Some(request) => {
            super::export::<E>(&state.ingest, payload, |_| {
                E::convert(request).map_err(EncodedError::Convert)
            })
            .await
        }
        None => super::export::<E>(&state.ingest, payload, E::convert_encoded).await,
    };
    match exported {
        Ok(answer) => Ok(respond(encoding, &answer)),
        Err(ExportFailure::Invalid(e)) => Err(invalid_protobuf(e)),
        Err(ExportFailure::Convert(e)) => Err(Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot convert: {e}"),
        )),
        Err(ExportFailure::NotStored(e)) => {
            // 503 with Retry-After (whole seconds): OTLP clients retry and honour it.
            let seconds = e.retry_after().as_secs_f64().ceil() as u64;
            let mut response =
                Refusal(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            Ok(response)
        }
    }
}

/// Content-Type and Content-Encoding checks and gunzip within `max_body`.
/// Gives the request's protobuf bytes, which the log keeps: the body as
/// received, or the JSON request decoded and re-encoded (then also returned).
fn decode_request<E: Export>(
    headers: &HeaderMap,
    raw: Bytes,
    max_body: usize,
) -> Result<(Encoding, Bytes, Option<E::Request>), Refusal> {
    let encoding = encoding(headers)?;
    let body = body(headers, raw, max_body)?;
    match encoding {
        Encoding::Protobuf => Ok((encoding, body, None)),
        Encoding::Json => {
            let request: E::Request = serde_json::from_slice(&body)
                .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("invalid OTLP JSON: {e}")))?;
            Ok((encoding, request.encode_to_vec().into(), Some(request)))
        }
    }
}

fn invalid_protobuf(e: prost::DecodeError) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, format!("invalid protobuf: {e}"))
}

/// Runs a body through the receiver's decoding exactly as `POST /v1/traces`
/// (`metrics` false) or `/v1/metrics` would, up to the rows it would store:
/// [`decode_request`], then conversion to Arrow. Returns the row count or the
/// refusal's status and text. For the fuzz targets in `fuzz/`.
pub fn decode_like_export(
    metrics: bool,
    content_type: &str,
    gzip: bool,
    data: &[u8],
    max_body: usize,
) -> Result<usize, (u16, String)> {
    fn run<E: Export>(headers: &HeaderMap, raw: Bytes, max_body: usize) -> Result<usize, Refusal> {
        let (_, payload, json) = decode_request::<E>(headers, raw, max_body)?;
        let converted = match json {
            Some(request) => E::convert(&request).map_err(EncodedError::Convert),
            None => E::convert_encoded(&payload),
        };
        match converted {
            Ok(converted) => Ok(converted.rows()),
            Err(EncodedError::Decode(e)) => Err(invalid_protobuf(e)),
            Err(EncodedError::Convert(e)) => {
                Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
            }
        }
    }
    let mut headers = HeaderMap::new();
    let content_type =
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("invalid"));
    headers.insert(header::CONTENT_TYPE, content_type);
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let raw = Bytes::copy_from_slice(data);
    let result = if metrics {
        run::<Metrics>(&headers, raw, max_body)
    } else {
        run::<Traces>(&headers, raw, max_body)
    };
    result.map_err(|Refusal(status, text)| (status.as_u16(), text))
}
