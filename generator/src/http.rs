//! HTTP/1.1 and HTTP/2 (TLS via rustls with ALPN, or h2c with prior
//! knowledge) over a keep-alive pool; each request timed at send, first byte
//! and end, and each failure sorted into the error taxonomy.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioExecutor;

use crate::h1;
use crate::plan::HttpSettings;
use crate::scenario::HttpVersion;

/// hyper's keep-alive pool, for TLS and HTTP/2.
type HyperClient = Client<HttpsConnector<HttpConnector<TimedResolver>>, Full<Bytes>>;

/// The client all virtual users share: plain `http://` over HTTP/1.1 goes
/// through loadlens's own lean client (`h1.rs`), everything else through hyper.
#[derive(Debug)]
pub struct HttpClient {
    hyper: HyperClient,
    /// `None` when the scenario asks for HTTP/2, which over `http://` is h2c.
    h1: Option<h1::Pool>,
}

/// What of a response the caller reads, beyond its status and size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    pub body: bool,
    pub headers: bool,
}

impl Keep {
    pub const ALL: Keep = Keep {
        body: true,
        headers: true,
    };
}

/// Builds the client: idle connections are kept, never capped low.
pub fn client(settings: &HttpSettings) -> Result<HttpClient, String> {
    Ok(HttpClient {
        hyper: hyper_client(settings)?,
        h1: (settings.version != HttpVersion::Http2)
            .then(|| h1::Pool::new(settings.connect_timeout)),
    })
}

fn hyper_client(settings: &HttpSettings) -> Result<HyperClient, String> {
    let mut connector = HttpConnector::new_with_resolver(TimedResolver {
        inner: GaiResolver::new(),
        timeout: settings.connect_timeout,
    });
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.enforce_http(false);
    let tls = tls_config(settings)?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let https = match settings.version {
        HttpVersion::Auto => builder
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector),
        HttpVersion::Http1 => builder.enable_http1().wrap_connector(connector),
        HttpVersion::Http2 => builder.enable_http2().wrap_connector(connector),
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(90));
    if settings.version == HttpVersion::Http2 {
        // Over http:// this is h2c with prior knowledge; over TLS ALPN agrees on h2.
        client.http2_only(true);
    }
    Ok(client.build(https))
}

/// Name lookups running at once, at most. A lookup given up on by
/// [`lookup_within`] goes on in tokio's blocking pool until the resolver
/// itself gives up; without a bound, a resolver that never answers would
/// gather one stuck lookup per request. Requests beyond it wait for a
/// place within their connect timeout, then count as DNS errors.
const MAX_LOOKUPS: usize = 16;

/// Runs `lookup` within `timeout`, counting against [`MAX_LOOKUPS`] until it
/// ends, whether or not it was waited for; `None` when it did not finish in
/// time (or no place came free).
pub(crate) async fn lookup_within<T, F>(timeout: Duration, lookup: F) -> Option<std::io::Result<T>>
where
    F: Future<Output = std::io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    static PLACES: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
        std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(MAX_LOOKUPS)));
    lookup_in(&PLACES, timeout, lookup).await
}

/// [`lookup_within`], with places taken from `places`.
async fn lookup_in<T, F>(
    places: &Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    lookup: F,
) -> Option<std::io::Result<T>>
where
    F: Future<Output = std::io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let place = tokio::time::timeout_at(deadline, places.clone().acquire_owned())
        .await
        .ok()?
        .ok()?;
    let task = tokio::spawn(async move {
        let found = lookup.await;
        drop(place);
        found
    });
    tokio::time::timeout_at(deadline, task).await.ok()?.ok()
}

/// Name lookups for hyper's connector, which bounds only the TCP connect by
/// its timeout: a resolver that never answers would hold the request until
/// its own timeout, counted as `timeout`. This gives up after the connect
/// timeout with an error hyper reports as a DNS error, as `h1.rs` does.
#[derive(Clone)]
struct TimedResolver<R = GaiResolver> {
    inner: R,
    timeout: Duration,
}

type Lookup<A> = Pin<Box<dyn Future<Output = Result<A, std::io::Error>> + Send>>;

impl<R> tower_service::Service<Name> for TimedResolver<R>
where
    R: tower_service::Service<Name, Error = std::io::Error>,
    R::Response: Send + 'static,
    R::Future: Send + 'static,
{
    type Response = R::Response;
    type Error = std::io::Error;
    type Future = Lookup<R::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (lookup, timeout) = (self.inner.call(name), self.timeout);
        Box::pin(async move {
            lookup_within(timeout, lookup).await.unwrap_or_else(|| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to the name lookup within {timeout:?}"),
                ))
            })
        })
    }
}

fn tls_config(settings: &HttpSettings) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let mut config = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &settings.ca_file {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // hyper-rustls sets ALPN from the enabled versions; keep sessions for resumption.
    config.resumption = rustls::client::Resumption::default();
    Ok(config)
}

/// `insecure_skip_verify`: every certificate is accepted; signatures are still checked.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks that a URL is one we can send to: `http://` or `https://` with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL '{url}': {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "invalid URL '{url}': scheme '{other}' is not supported; use http:// or https://"
            ));
        }
        None => {
            return Err(format!(
                "invalid URL '{url}': it has no scheme; write it as http://host:port/path"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("invalid URL '{url}': it has no host"));
    }
    Ok(())
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
    /// Response headers, if a response arrived.
    pub headers: HeaderMap,
    /// The response body, when asked to keep it.
    pub body: Option<Bytes>,
    /// Response body bytes read.
    pub bytes_received: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// The protocol the response came in.
    pub version: Option<http::Version>,
}

/// The error taxonomy; its `as_str` is the span's `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorType {
    Dns,
    ConnectRefused,
    Connect,
    Tls,
    Timeout,
    ConnectionReset,
    Io,
    Http4xx,
    Http5xx,
    CheckFailed,
    /// A value a step needed was missing (extraction found nothing, a unique feeder ran out).
    MissingValue,
    /// The rendered request was invalid (a template made a bad URL or header).
    InvalidRequest,
    /// No token could be had from the token provider.
    Auth,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Dns => "dns",
            ErrorType::ConnectRefused => "connect_refused",
            ErrorType::Connect => "connect",
            ErrorType::Tls => "tls",
            ErrorType::Timeout => "timeout",
            ErrorType::ConnectionReset => "connection_reset",
            ErrorType::Io => "io",
            ErrorType::Http4xx => "http_4xx",
            ErrorType::Http5xx => "http_5xx",
            ErrorType::CheckFailed => "check_failed",
            ErrorType::MissingValue => "missing_value",
            ErrorType::InvalidRequest => "invalid_request",
            ErrorType::Auth => "auth",
        }
    }
}

impl Outcome {
    /// An outcome for a request that failed before it could be sent.
    pub fn not_sent(at: Instant, error: ErrorType) -> Outcome {
        Outcome {
            sent_at: at,
            first_byte_at: None,
            end: at,
            status: None,
            error: Some(error),
            headers: HeaderMap::new(),
            body: None,
            bytes_received: 0,
            bytes_sent: 0,
            version: None,
        }
    }
}

impl HttpClient {
    /// loadlens's own HTTP/1.1 client, when it is the one that sends to `uri`.
    pub fn h1_for(&self, uri: &Uri) -> Option<&h1::Pool> {
        self.h1
            .as_ref()
            .filter(|_| uri.scheme() == Some(&http::uri::Scheme::HTTP))
    }
}

/// Sends one request and reads the whole response; keeps of it what `keep`
/// asks for (hyper keeps the headers whatever it asks).
pub async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    timeout: Duration,
    keep: Keep,
) -> Outcome {
    match client.h1_for(request.uri()) {
        Some(pool) => pool.send(request, timeout, keep).await,
        None => send_hyper(client, request, timeout, keep.body).await,
    }
}

/// Sends one request through hyper, whatever its URL.
pub async fn send_hyper(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    timeout: Duration,
    keep_body: bool,
) -> Outcome {
    let bytes_sent = hyper::body::Body::size_hint(request.body())
        .exact()
        .unwrap_or(0);
    let sent_at = Instant::now();
    let deadline = sent_at + timeout;
    let fail = |first_byte_at, error| {
        let mut outcome = Outcome::not_sent(sent_at, error);
        outcome.first_byte_at = first_byte_at;
        outcome.end = Instant::now();
        outcome.bytes_sent = bytes_sent;
        outcome
    };
    let response =
        match tokio::time::timeout_at(deadline.into(), client.hyper.request(request)).await {
            Err(_) => return fail(None, ErrorType::Timeout),
            Ok(Err(e)) => return fail(None, classify(&e)),
            Ok(Ok(response)) => response,
        };
    let first_byte_at = Instant::now();
    let (parts, mut body) = response.into_parts();
    let mut kept = keep_body.then(Vec::new);
    let mut bytes_received = 0u64;
    loop {
        match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return fail(Some(first_byte_at), ErrorType::Timeout),
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    bytes_received += data.len() as u64;
                    if let Some(kept) = &mut kept {
                        kept.extend_from_slice(data);
                    }
                }
            }
            Ok(Some(Err(e))) => {
                let kind = classify_chain(&e).unwrap_or(ErrorType::Io);
                return fail(Some(first_byte_at), kind);
            }
        }
    }
    let status = parts.status.as_u16();
    Outcome {
        sent_at,
        first_byte_at: Some(first_byte_at),
        end: Instant::now(),
        status: Some(status),
        error: match status {
            400..=499 => Some(ErrorType::Http4xx),
            500..=599 => Some(ErrorType::Http5xx),
            _ => None,
        },
        headers: parts.headers,
        body: kept.map(Bytes::from),
        bytes_received,
        bytes_sent,
        version: Some(parts.version),
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> ErrorType {
    let found = classify_chain(e);

    if e.is_connect() {
        let mut dns = false;
        let mut source = e.source();
        while let Some(err) = source {
            dns |= err.to_string().contains("dns error");
            source = err.source();
        }
        return match found {
            _ if dns => ErrorType::Dns,
            Some(kind) => kind,
            None => ErrorType::Connect,
        };
    }
    found.unwrap_or(ErrorType::Io)
}

/// The most specific class an error chain reveals: TLS, or an I/O kind.
fn classify_chain(e: &(dyn std::error::Error + 'static)) -> Option<ErrorType> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return Some(ErrorType::Tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // tokio-rustls wraps handshake failures in an io::Error, which
            // hyper-rustls wraps in another; `source()` does not reach inside
            // an io::Error, `get_ref()` does.
            let inner = io
                .get_ref()
                .and_then(|inner| classify_chain(inner))
                .filter(|kind| *kind != ErrorType::Io);
            return Some(inner.unwrap_or_else(|| classify_io(io.kind())));
        }
        if let Some(hyper_err) = err.downcast_ref::<hyper::Error>()
            && (hyper_err.is_incomplete_message() || hyper_err.is_closed())
        {
            return Some(ErrorType::ConnectionReset);
        }
        current = err.source();
    }
    None
}

pub(crate) fn classify_io(kind: std::io::ErrorKind) -> ErrorType {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that never answers, as one without a network may not.
    #[derive(Clone)]
    struct Silent;

    impl tower_service::Service<Name> for Silent {
        type Response = std::vec::IntoIter<std::net::SocketAddr>;
        type Error = std::io::Error;
        type Future = Lookup<Self::Response>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Name) -> Self::Future {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_lookup_without_an_answer_is_a_dns_error_after_the_connect_timeout() {
        let resolver = TimedResolver {
            inner: Silent,
            timeout: Duration::from_millis(50),
        };
        let client: Client<_, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new_with_resolver(resolver));
        let started = Instant::now();
        let request = Request::get("http://loadlens-test.invalid/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(5), client.request(request)).await;
        let error = sent.expect("the lookup gave up").unwrap_err();
        assert_eq!(classify(&error), ErrorType::Dns, "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn lookups_that_never_end_hold_their_place_and_are_bounded() {
        let places = Arc::new(tokio::sync::Semaphore::new(MAX_LOOKUPS));
        let stuck = || std::future::pending::<std::io::Result<()>>();
        let waits: Vec<_> = (0..MAX_LOOKUPS)
            .map(|_| lookup_in(&places, Duration::from_millis(50), stuck()))
            .collect();
        for wait in waits {
            assert!(wait.await.is_none(), "a lookup that never ends times out");
        }
        // Those lookups go on, each holding its place: one more cannot
        // start, however quick it would be, and is given up in time.
        let started = Instant::now();
        let quick = lookup_in(&places, Duration::from_millis(100), async { Ok(7) }).await;
        assert!(quick.is_none(), "{quick:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_lookup_that_answers_in_time_gives_its_answer() {
        let places = Arc::new(tokio::sync::Semaphore::new(1));
        let found = lookup_in(&places, Duration::from_secs(5), async { Ok(7) }).await;
        assert_eq!(found.map(Result::unwrap), Some(7));
        // Its place is free again once it ended.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(places.available_permits(), 1);
    }

    #[test]
    fn urls_need_a_supported_scheme_and_a_host() {
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("https://example.com").is_ok());
        assert!(
            check_url("ftp://h/")
                .unwrap_err()
                .contains("http:// or https://")
        );
        assert!(check_url("localhost:80").unwrap_err().contains("no scheme"));
        assert!(check_url("http:///x").is_err());
    }
}
