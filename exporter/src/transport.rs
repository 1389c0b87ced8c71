//! One OTLP export call over gRPC or HTTP/protobuf, and the retry loop around it
//! that waits as long as the collector asks (gRPC `RetryInfo`, HTTP `Retry-After`).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use rand::Rng;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

use crate::ExportError;

/// How spans and metrics travel to the collector. Chosen explicitly, never
/// guessed from the port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OTLP/gRPC: `TraceService/Export` and `MetricsService/Export` (port 4317 by convention).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies: `POST {endpoint}/v1/traces` and
    /// `{endpoint}/v1/metrics` (port 4318 by convention).
    HttpProtobuf,
}

impl Protocol {
    /// The name used by `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or `http/protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name that is neither `grpc` nor `http/protobuf`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OTLP protocol '{0}'; use grpc or http/protobuf")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// Parses the `OTEL_EXPORTER_OTLP_PROTOCOL` names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(UnknownProtocol(other.to_string())),
        }
    }
}

/// When to try again, shared by the span and the metrics exporters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry; doubles with each retry.
    pub initial_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
    /// Largest wait honoured when the collector names one.
    pub max_server_delay: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry + 1`: the server's delay when it gave
    /// one (capped), otherwise exponential backoff with jitter. The jitter draws
    /// from the upper half of the ceiling so that many generators refused at
    /// once spread out, yet none retries at once.
    fn delay(&self, retry: u32, server: Option<Duration>) -> Duration {
        if let Some(delay) = server {
            return delay.min(self.max_server_delay);
        }
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        let ceiling = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Whether OTLP allows sending the same request again.
    pub retryable: bool,
    /// How long the collector asked the client to wait, if it did.
    pub retry_after: Option<Duration>,
    /// What went wrong, for error messages.
    pub message: String,
}

/// The outcome of an export with its retries.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// Items the collector rejected in a partial success, or the last failure.
    pub result: Result<u64, Failure>,
    /// Attempts beyond the first.
    pub retries: u32,
}

/// One OTLP signal: its request and response messages, its gRPC call and its HTTP path.
pub(crate) trait Signal {
    type Request: Message + Clone + Send + Sync + 'static;
    type Response: Message + Default + Send + 'static;
    /// Appended to the endpoint for OTLP/HTTP, e.g. `/v1/traces`.
    const HTTP_PATH: &'static str;

    fn grpc_export(
        channel: Channel,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, tonic::Status>> + Send;

    /// Items refused in a partial success.
    fn rejected(response: &Self::Response) -> u64;
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Largest response body read; OTLP responses are a few bytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// A connection to the collector for one signal.
pub(crate) struct Transport<S> {
    inner: Inner,
    signal: PhantomData<fn() -> S>,
}

impl<S> Clone for Transport<S> {
    fn clone(&self) -> Self {
        Transport {
            inner: self.inner.clone(),
            signal: PhantomData,
        }
    }
}

#[derive(Clone)]
enum Inner {
    Grpc(Channel),
    Http(Arc<HttpTarget>),
}

struct HttpTarget {
    client: HttpClient,
    uri: http::Uri,
    timeout: Duration,
}

impl<S: Signal> Transport<S> {
    /// Checks the endpoint; connects lazily, so the collector may start later.
    pub(crate) fn new(
        endpoint: &str,
        protocol: Protocol,
        timeout: Duration,
    ) -> Result<Self, ExportError> {
        let inner = match protocol {
            Protocol::Grpc => Inner::Grpc(
                Endpoint::from_shared(endpoint.to_string())
                    .map_err(|source| ExportError::Endpoint {
                        endpoint: endpoint.to_string(),
                        source,
                    })?
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .timeout(timeout)
                    .connect_lazy(),
            ),
            Protocol::HttpProtobuf => {
                let uri = http_uri(endpoint, S::HTTP_PATH)?;
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(timeout));
                Inner::Http(Arc::new(HttpTarget {
                    client: Client::builder(TokioExecutor::new()).build(connector),
                    uri,
                    timeout,
                }))
            }
        };
        Ok(Transport {
            inner,
            signal: PhantomData,
        })
    }

    /// Sends `request`, retrying retryable failures up to `policy.max_attempts`
    /// attempts in all. A wait happens only when another attempt follows it.
    pub(crate) async fn export_with_retries(
        &self,
        request: &S::Request,
        policy: &RetryPolicy,
    ) -> Delivery {
        let attempts = policy.max_attempts.max(1);
        let mut retries = 0;
        loop {
            match self.export(request).await {
                Ok(rejected) => {
                    return Delivery {
                        result: Ok(rejected),
                        retries,
                    };
                }
                Err(failure) if failure.retryable && retries + 1 < attempts => {
                    tokio::time::sleep(policy.delay(retries, failure.retry_after)).await;
                    retries += 1;
                }
                Err(failure) => {
                    return Delivery {
                        result: Err(failure),
                        retries,
                    };
                }
            }
        }
    }

    /// One attempt: the number of items rejected in a partial success, or why it failed.
    async fn export(&self, request: &S::Request) -> Result<u64, Failure> {
        match &self.inner {
            Inner::Grpc(channel) => S::grpc_export(channel.clone(), request.clone())
                .await
                .map(|response| S::rejected(&response))
                .map_err(|status| grpc_failure(&status)),
            Inner::Http(target) => {
                let body = http_post(target, request.encode_to_vec()).await?;
                // An empty or undecodable 200 body still means "accepted".
                Ok(S::Response::decode(body)
                    .map(|response| S::rejected(&response))
                    .unwrap_or(0))
            }
        }
    }
}

/// Classifies a gRPC status as the OTLP specification does. RESOURCE_EXHAUSTED
/// is retryable only when the server says recovery is possible, by sending
/// `RetryInfo`.
fn grpc_failure(status: &tonic::Status) -> Failure {
    use tonic::Code::*;
    let retry_info = status.get_details_retry_info();
    let retryable = match status.code() {
        Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss => true,
        ResourceExhausted => retry_info.is_some(),
        _ => false,
    };
    Failure {
        retryable,
        retry_after: retry_info.and_then(|info| info.retry_delay),
        message: format!("gRPC {:?}: {}", status.code(), status.message()),
    }
}

/// `{endpoint}/v1/...`, refusing what the plain-HTTP client cannot reach.
fn http_uri(endpoint: &str, path: &str) -> Result<http::Uri, ExportError> {
    let invalid = |reason: String| ExportError::HttpEndpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    let full = format!("{}{path}", endpoint.trim_end_matches('/'));
    let uri: http::Uri = full.parse().map_err(|e| invalid(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") => Ok(uri),
        Some(other) => Err(invalid(format!(
            "scheme '{other}' is not supported by the OTLP/HTTP exporter, only http"
        ))),
        None => Err(invalid("no scheme".into())),
    }
}

/// One OTLP/HTTP POST. Returns the body of a 2xx answer.
async fn http_post(target: &HttpTarget, body: Vec<u8>) -> Result<Bytes, Failure> {
    let HttpTarget {
        client,
        uri,
        timeout,
    } = target;
    let request = http::Request::post(uri.clone())
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(body)))
        .expect("a POST with a valid URI and static header is a valid request");
    let exchange = async {
        let response = client.request(request).await.map_err(|e| Failure {
            // Network errors are transient as far as the client can tell.
            retryable: true,
            retry_after: None,
            message: format!("POST {uri}: {e}"),
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|collected| collected.to_bytes());
        if status.is_success() {
            return body.map_err(|e| Failure {
                retryable: true,
                retry_after: None,
                message: format!("POST {uri}: reading the response: {e}"),
            });
        }
        Err(Failure {
            // The OTLP specification: only these are retryable; every other
            // 4xx and 5xx must not be sent again.
            retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
            retry_after,
            message: format!("POST {uri}: HTTP {status}"),
        })
    };
    tokio::time::timeout(*timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(Failure {
                retryable: true,
                retry_after: None,
                message: format!("POST {uri}: no answer within {timeout:?}"),
            })
        })
}

/// `Retry-After` as delay-seconds or an HTTP-date; a date in the past means now.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn server_delay_wins_over_backoff_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_server_delay: Duration::from_secs(30),
        };
        assert_eq!(
            policy.delay(0, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(
            policy.delay(3, Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
        for retry in 0..40 {
            let ceiling = (Duration::from_millis(100) * 2u32.saturating_pow(retry.min(31)))
                .min(Duration::from_secs(2));
            let delay = policy.delay(retry, None);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "retry {retry}: {delay:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
    }

    #[test]
    fn grpc_codes_follow_the_otlp_specification() {
        let unavailable = tonic::Status::unavailable("busy");
        assert!(grpc_failure(&unavailable).retryable);
        assert!(!grpc_failure(&tonic::Status::invalid_argument("bad")).retryable);
        assert!(!grpc_failure(&tonic::Status::resource_exhausted("too big")).retryable);
        let throttled = tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            "slow down",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_millis(250))),
        );
        let failure = grpc_failure(&throttled);
        assert!(failure.retryable);
        assert_eq!(failure.retry_after, Some(Duration::from_millis(250)));
    }

    #[test]
    fn http_endpoints_get_the_signal_path() {
        assert_eq!(
            http_uri("http://127.0.0.1:4318", "/v1/traces").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_uri("http://collector/otlp/", "/v1/metrics").unwrap(),
            "http://collector/otlp/v1/metrics"
        );
        assert!(http_uri("https://collector:4318", "/v1/traces").is_err());
        assert!(http_uri("collector:4318", "/v1/traces").is_err());
    }

    #[test]
    fn protocol_names_round_trip() {
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            assert_eq!(protocol.as_str().parse::<Protocol>(), Ok(protocol));
        }
        assert!("http/json".parse::<Protocol>().is_err());
    }
}
