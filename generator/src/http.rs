//! HTTP/1.1 requests with keep-alive, timed at send, first byte and end, and
//! failures sorted into the error taxonomy.

use std::error::Error as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A keep-alive connection pool shared by all workers.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A pool sized for load generation: idle connections are kept, never capped low.
pub fn client(timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the request was handed to the connection pool.
    pub sent_at: Instant,
    /// When the response head arrived, if it did.
    pub first_byte_at: Option<Instant>,
    /// When the response body was fully read, or the request failed.
    pub end: Instant,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// The error class, if the request failed.
    pub error: Option<ErrorType>,
    /// Response body bytes read.
    pub bytes_received: u64,
}

/// The error taxonomy; its `as_str` is the span's `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorType {
    Dns,
    ConnectRefused,
    Connect,
    Timeout,
    ConnectionReset,
    Io,
    Http4xx,
    Http5xx,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Dns => "dns",
            ErrorType::ConnectRefused => "connect_refused",
            ErrorType::Connect => "connect",
            ErrorType::Timeout => "timeout",
            ErrorType::ConnectionReset => "connection_reset",
            ErrorType::Io => "io",
            ErrorType::Http4xx => "http_4xx",
            ErrorType::Http5xx => "http_5xx",
        }
    }
}

/// Sends one request and reads the whole response.
pub async fn send(
    client: &HttpClient,
    method: &http::Method,
    uri: &http::Uri,
    traceparent: Option<&str>,
    timeout: Duration,
) -> Outcome {
    let sent_at = Instant::now();
    let mut builder = Request::builder().method(method.clone()).uri(uri.clone());
    if let Some(tp) = traceparent {
        builder = builder.header("traceparent", tp);
    }
    let request = match builder.body(Empty::new()) {
        Ok(request) => request,
        Err(_) => return failed(sent_at, None, ErrorType::Io),
    };
    let deadline = sent_at + timeout;
    let response = match tokio::time::timeout_at(deadline.into(), client.request(request)).await {
        Err(_) => return failed(sent_at, None, ErrorType::Timeout),
        Ok(Err(e)) => return failed(sent_at, None, classify(&e)),
        Ok(Ok(response)) => response,
    };
    let first_byte_at = Instant::now();
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes_received = 0u64;
    loop {
        match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return failed(sent_at, Some(first_byte_at), ErrorType::Timeout),
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    bytes_received += data.len() as u64;
                }
            }
            Ok(Some(Err(e))) => {
                let kind = io_kind(&e).map_or(ErrorType::Io, classify_io);
                return failed(sent_at, Some(first_byte_at), kind);
            }
        }
    }
    let error = match status.as_u16() {
        400..=499 => Some(ErrorType::Http4xx),
        500..=599 => Some(ErrorType::Http5xx),
        _ => None,
    };
    Outcome {
        sent_at,
        first_byte_at: Some(first_byte_at),
        end: Instant::now(),
        status: Some(status.as_u16()),
        error,
        bytes_received,
    }
}

fn failed(sent_at: Instant, first_byte_at: Option<Instant>, error: ErrorType) -> Outcome {
    Outcome {
        sent_at,
        first_byte_at,
        end: Instant::now(),
        status: None,
        error: Some(error),
        bytes_received: 0,
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> ErrorType {
    let io = io_kind(e);
    if e.is_connect() {
        let mut dns = false;
        let mut source = e.source();
        while let Some(err) = source {
            dns |= err.to_string().contains("dns error");
            source = err.source();
        }
        return match io {
            _ if dns => ErrorType::Dns,
            Some(std::io::ErrorKind::ConnectionRefused) => ErrorType::ConnectRefused,
            Some(std::io::ErrorKind::TimedOut) => ErrorType::Timeout,
            _ => ErrorType::Connect,
        };
    }
    io.map_or(ErrorType::Io, classify_io)
}

fn classify_io(kind: std::io::ErrorKind) -> ErrorType {
    use std::io::ErrorKind::*;
    match kind {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            ErrorType::ConnectionReset
        }
        ConnectionRefused => ErrorType::ConnectRefused,
        TimedOut => ErrorType::Timeout,
        _ => ErrorType::Io,
    }
}

/// The io::ErrorKind at the bottom of an error chain, if any.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        if let Some(hyper_err) = err.downcast_ref::<hyper::Error>()
            && (hyper_err.is_incomplete_message() || hyper_err.is_closed())
        {
            return Some(std::io::ErrorKind::ConnectionReset);
        }
        current = err.source();
    }
    None
}
