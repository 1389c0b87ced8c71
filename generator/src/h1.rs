//! A plain-HTTP/1.1 client for `http://` targets, lean enough that a
//! benchmark measures the target rather than the generator.
//!
//! Each request is written and its response parsed on the task that sends
//! it, over a connection taken from a short idle list: there is no
//! connection task, no channel hop and no hashing of a pool key, which is
//! where profiles of hyper's pooled client put its cost per request
//! (BENCHMARKS.md). TLS and HTTP/2 stay with hyper (see `http.rs`).
//!
//! Responses are framed as RFC 9112 section 6.3 says: no body for `HEAD`,
//! 1xx, 204 and 304; chunked transfer coding; `Content-Length`; otherwise
//! the body runs to the end of the connection. Interim 1xx responses are
//! skipped. A connection goes back to the idle list only when its response
//! was framed, both sides meant to keep it open, and nothing was left unread.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::{ErrorType, Keep, Outcome};

/// The longest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4 * 1024;
/// Headers parsed per response; more is an error, as it is in hyper.
const MAX_HEADERS: usize = 100;
const READ_BUFFER: usize = 16 * 1024;

/// Idle keep-alive connections, by authority (`host:port`).
#[derive(Debug)]
pub struct Pool {
    /// A short list: a run talks to a few targets, so a linear search on the
    /// authority is cheaper than hashing it.
    idle: Mutex<Vec<(String, Vec<Connection>)>>,
    connect_timeout: Duration,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet consumed are `buffer[start..end]`.
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    /// Responses read on this connection so far.
    served: u64,
}

/// How one exchange failed, and whether a fresh connection may retry it.
struct Failure {
    error: ErrorType,
    /// When the response head had arrived, if it had.
    first_byte_at: Option<Instant>,
    /// The failure came from a kept-alive connection before any byte of a
    /// response: the server closed it while it was idle, so the request was
    /// never seen and is safe to send again.
    stale: bool,
}

impl Failure {
    fn new(error: ErrorType) -> Failure {
        Failure {
            error,
            first_byte_at: None,
            stale: false,
        }
    }
}

/// A response read in full.
struct Read {
    status: u16,
    version: Version,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    bytes: u64,
    first_byte_at: Instant,
    reusable: bool,
}

impl Pool {
    pub fn new(connect_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            connect_timeout,
        }
    }

    /// Sends one `http://` request and reads its whole response; the same
    /// contract as [`crate::http::send`].
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
        keep: Keep,
    ) -> Outcome {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let Some(authority) = parts.uri.authority().map(|a| a.as_str()) else {
            let mut outcome = Outcome::not_sent(Instant::now(), ErrorType::InvalidRequest);
            outcome.bytes_sent = body.len() as u64;
            return outcome;
        };
        let message = Message::of(&parts, authority, &body);
        self.send_message(authority, &message, timeout, keep).await
    }

    /// Sends a request already written out to `authority` (`host:port`) and
    /// reads its whole response.
    pub async fn send_message(
        &self,
        authority: &str,
        message: &Message<'_>,
        timeout: Duration,
        keep: Keep,
    ) -> Outcome {
        let sent_at = Instant::now();
        let deadline = tokio::time::Instant::from(sent_at + timeout);
        let mut outcome = Outcome::not_sent(sent_at, ErrorType::Io);
        outcome.bytes_sent = message.body as u64;
        let method = message.method;
        let bytes = &message.bytes[..];
        let exchange = async {
            match self.exchange(authority, bytes, method, keep, true).await {
                Err(failure) if failure.stale => {
                    self.exchange(authority, bytes, method, keep, false).await
                }
                result => result,
            }
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) => outcome.error = Some(ErrorType::Timeout),
            Ok(Err(failure)) => {
                outcome.error = Some(failure.error);
                outcome.first_byte_at = failure.first_byte_at;
            }
            Ok(Ok(read)) => {
                outcome.first_byte_at = Some(read.first_byte_at);
                outcome.status = Some(read.status);
                outcome.error = match read.status {
                    400..=499 => Some(ErrorType::Http4xx),
                    500..=599 => Some(ErrorType::Http5xx),
                    _ => None,
                };
                outcome.headers = read.headers;
                outcome.body = read.body.map(Bytes::from);
                outcome.bytes_received = read.bytes;
                outcome.version = Some(read.version);
            }
        }
        outcome.end = Instant::now();
        outcome
    }

    /// One attempt: a connection (idle if `reuse` and one is there), the
    /// request written, the response read, the connection given back.
    async fn exchange(
        &self,
        authority: &str,
        message: &[u8],
        method: &Method,
        keep: Keep,
        reuse: bool,
    ) -> Result<Read, Failure> {
        let idle = if reuse {
            self.checkout(authority)
        } else {
            None
        };
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.connect(authority).await?,
        };
        let reused = connection.served > 0;
        let stale = |error: io::Error, read_any: bool| Failure {
            error: io_error(&error),
            first_byte_at: None,
            stale: reused && !read_any && is_closed(&error),
        };
        if let Err(e) = connection.stream.write_all(message).await {
            return Err(stale(e, false));
        }
        let read = connection.read_response(method, keep).await;
        match read {
            Ok(read) => {
                connection.served += 1;
                if read.reusable {
                    self.checkin(authority, connection);
                }
                Ok(read)
            }
            Err(ReadError::Io { error, read_any }) => Err(stale(error, read_any)),
            Err(ReadError::Closed { read_any }) => Err(Failure {
                error: ErrorType::ConnectionReset,
                first_byte_at: None,
                stale: reused && !read_any,
            }),
            Err(ReadError::Malformed) => Err(Failure::new(ErrorType::Io)),
            Err(ReadError::Body {
                error,
                first_byte_at,
            }) => Err(Failure {
                error,
                first_byte_at: Some(first_byte_at),
                stale: false,
            }),
        }
    }

    fn checkout(&self, authority: &str) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter_mut()
            .find(|(key, _)| key == authority)
            .and_then(|(_, list)| list.pop())
    }

    fn checkin(&self, authority: &str, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        match idle.iter_mut().find(|(key, _)| key == authority) {
            Some((_, list)) => list.push(connection),
            None => idle.push((authority.to_string(), vec![connection])),
        }
    }

    async fn connect(&self, authority: &str) -> Result<Connection, Failure> {
        let (host, port) = split_authority(authority);
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            // The lookup counts against the connect timeout: a resolver
            // that never answers is a DNS failure, not the request's
            // timeout.
            Err(_) => {
                let name = (host.to_string(), port);
                let lookup = async move {
                    tokio::net::lookup_host(name)
                        .await
                        .map(|found| found.collect::<Vec<_>>())
                };
                match crate::http::lookup_within(self.connect_timeout, lookup).await {
                    Some(Ok(found)) => found,
                    Some(Err(_)) | None => return Err(Failure::new(ErrorType::Dns)),
                }
            }
        };
        if addresses.is_empty() {
            return Err(Failure::new(ErrorType::Dns));
        }
        let mut last = ErrorType::Connect;
        for address in addresses {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Err(_) => last = ErrorType::Timeout,
                Ok(Err(e)) => last = io_error(&e),
                Ok(Ok(stream)) => {
                    // Requests are small and written whole: send them at once.
                    let _ = stream.set_nodelay(true);
                    return Ok(Connection {
                        stream,
                        buffer: vec![0; READ_BUFFER].into_boxed_slice(),
                        start: 0,
                        end: 0,
                        served: 0,
                    });
                }
            }
        }
        Err(Failure::new(match last {
            ErrorType::Io => ErrorType::Connect,
            other => other,
        }))
    }
}

/// `host` and port of an authority; `[v6]` loses its brackets.
fn split_authority(authority: &str) -> (&str, u16) {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().unwrap_or(80)),
        _ => (authority, 80),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host, port)
}

/// One HTTP/1.1 request written out whole, so that it goes to the server
/// in one write: one segment for small requests, one wake-up of the server.
#[derive(Debug)]
pub struct Message<'a> {
    method: &'a Method,
    bytes: Vec<u8>,
    /// Length of the body.
    body: usize,
}

impl<'a> Message<'a> {
    /// The request whose head is `parts`: headers in their order, `Host`
    /// first from `authority` unless they hold one.
    pub fn of(parts: &'a http::request::Parts, authority: &str, body: &[u8]) -> Message<'a> {
        let host_given = parts.headers.contains_key(http::header::HOST);
        let mut writer = Writer::new(&parts.method, &parts.uri, authority, host_given);
        for (name, value) in &parts.headers {
            writer.header(name, value.as_bytes());
        }
        writer.finish(body)
    }

    /// The bytes to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Writes a [`Message`]: the request line, headers, then the body. The
/// caller adds headers whose values it has checked (as `http::HeaderValue`
/// would: no control characters but tab).
#[derive(Debug)]
pub struct Writer<'a> {
    method: &'a Method,
    bytes: Vec<u8>,
    /// The caller gave `Content-Length` or `Transfer-Encoding` itself.
    framed: bool,
}

impl<'a> Writer<'a> {
    /// The request line, then `Host` from `authority` unless `host_given`:
    /// the caller then adds its own among the headers.
    pub fn new(method: &'a Method, uri: &Uri, authority: &str, host_given: bool) -> Writer<'a> {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(method.as_str().as_bytes());
        bytes.push(b' ');
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        bytes.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
        bytes.extend_from_slice(b" HTTP/1.1\r\n");
        if !host_given {
            bytes.extend_from_slice(b"host: ");
            bytes.extend_from_slice(authority.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        Writer {
            method,
            bytes,
            framed: false,
        }
    }

    pub fn header(&mut self, name: &HeaderName, value: &[u8]) {
        self.header_parts(name, &[value]);
    }

    /// A header whose value is `parts` one after the other.
    pub fn header_parts(&mut self, name: &HeaderName, parts: &[&[u8]]) {
        self.framed |=
            *name == http::header::CONTENT_LENGTH || *name == http::header::TRANSFER_ENCODING;
        self.bytes.extend_from_slice(name.as_str().as_bytes());
        self.bytes.extend_from_slice(b": ");
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
        self.bytes.extend_from_slice(b"\r\n");
    }

    /// Ends the head and appends `body`. `Content-Length` is sent when there
    /// is a body or the method expects one, unless the caller framed the body
    /// itself.
    pub fn finish(mut self, body: &[u8]) -> Message<'a> {
        let expects_body = matches!(*self.method, Method::POST | Method::PUT | Method::PATCH);
        if !self.framed && (!body.is_empty() || expects_body) {
            self.bytes.extend_from_slice(b"content-length: ");
            self.bytes
                .extend_from_slice(body.len().to_string().as_bytes());
            self.bytes.extend_from_slice(b"\r\n");
        }
        self.bytes.extend_from_slice(b"\r\n");
        self.bytes.extend_from_slice(body);
        Message {
            method: self.method,
            bytes: self.bytes,
            body: body.len(),
        }
    }
}

/// Why reading a response failed.
enum ReadError {
    /// The connection failed before the response head was complete.
    Io { error: io::Error, read_any: bool },
    /// The server closed the connection before the response head was complete.
    Closed { read_any: bool },
    /// The response head is not HTTP/1.x.
    Malformed,
    /// The head arrived but the body did not.
    Body {
        error: ErrorType,
        first_byte_at: Instant,
    },
}

/// How the body of a response is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Connection {
    /// Reads more bytes after `end`, compacting or growing the buffer first
    /// when it is full. Ok(0) means the peer closed the connection.
    async fn fill(&mut self, limit: usize) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buffer.len() < limit {
                let mut grown = vec![0; (self.buffer.len() * 2).min(limit)].into_boxed_slice();
                grown[..self.end].copy_from_slice(&self.buffer[..self.end]);
                self.buffer = grown;
            } else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
        }
        let n = self.stream.read(&mut self.buffer[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    async fn read_response(&mut self, method: &Method, keep: Keep) -> Result<Read, ReadError> {
        let mut read_any = self.start < self.end;
        loop {
            let parsed = {
                // Uninitialised slots: setting 100 of them up for every
                // response would cost more than parsing a short head.
                let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut []);
                match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut response,
                    &self.buffer[self.start..self.end],
                    &mut slots,
                ) {
                    Ok(httparse::Status::Complete(length)) => {
                        Some(Head::from(&response, length, keep.headers))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => {
                        return Err(ReadError::Malformed);
                    }
                }
            };
            let Some(head) = parsed else {
                match self.fill(MAX_HEAD).await {
                    Ok(0) => return Err(ReadError::Closed { read_any }),
                    Ok(_) => read_any = true,
                    Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                        return Err(ReadError::Malformed);
                    }
                    Err(error) => return Err(ReadError::Io { error, read_any }),
                }
                continue;
            };
            let first_byte_at = Instant::now();
            self.start += head.length;
            let Head {
                status,
                version,
                headers,
                framing,
                keep_alive,
                ..
            } = head;
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let framing = if *method == Method::HEAD || matches!(status, 101 | 204 | 304) {
                Framing::None
            } else {
                framing
            };
            let mut body = keep.body.then(Vec::new);
            let body_error = |error: ErrorType| ReadError::Body {
                error,
                first_byte_at,
            };
            let (bytes, framed) = match framing {
                Framing::None => (0, true),
                Framing::Length(length) => {
                    self.take(length, &mut body).await.map_err(body_error)?;
                    (length, true)
                }
                Framing::Chunked => (self.chunked(&mut body).await.map_err(body_error)?, true),
                Framing::UntilClose => (
                    self.until_close(&mut body).await.map_err(body_error)?,
                    false,
                ),
            };
            return Ok(Read {
                status,
                version,
                headers,
                body,
                bytes,
                first_byte_at,
                reusable: framed && keep_alive && status != 101 && self.start == self.end,
            });
        }
    }

    /// Moves `length` body bytes to `sink` (or past them).
    async fn take(&mut self, mut length: u64, sink: &mut Option<Vec<u8>>) -> Result<(), ErrorType> {
        while length > 0 {
            if self.start == self.end
                && self.fill(READ_BUFFER).await.map_err(|e| io_error(&e))? == 0
            {
                return Err(ErrorType::ConnectionReset);
            }
            let available =
                (self.end - self.start).min(usize::try_from(length).unwrap_or(usize::MAX));
            if let Some(sink) = sink {
                sink.extend_from_slice(&self.buffer[self.start..self.start + available]);
            }
            self.start += available;
            length -= available as u64;
        }
        Ok(())
    }

    /// One CRLF-terminated line, without its CRLF, as a range of the buffer
    /// (valid until the next read).
    async fn line(&mut self) -> Result<std::ops::Range<usize>, ErrorType> {
        let mut searched = self.start;
        loop {
            if let Some(at) = self.buffer[searched..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = self.start..searched + at;
                self.start = searched + at + 2;
                return Ok(line);
            }
            searched = self.end.saturating_sub(1).max(self.start);
            let before = self.start;
            match self.fill(MAX_LINE).await {
                Ok(0) => return Err(ErrorType::ConnectionReset),
                Ok(_) => searched -= before - self.start,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(ErrorType::Io),
                Err(e) => return Err(io_error(&e)),
            }
        }
    }

    /// A chunked body (RFC 9112 section 7.1): returns the decoded length.
    async fn chunked(&mut self, sink: &mut Option<Vec<u8>>) -> Result<u64, ErrorType> {
        let mut total = 0u64;
        loop {
            let line = self.line().await?;
            let text = &self.buffer[line];
            let digits = text.split(|&b| b == b';').next().unwrap_or_default();
            let digits = std::str::from_utf8(digits)
                .map_err(|_| ErrorType::Io)?
                .trim();
            let size = u64::from_str_radix(digits, 16).map_err(|_| ErrorType::Io)?;
            if size == 0 {
                // Trailer fields, up to an empty line.
                while !self.line().await?.is_empty() {}
                return Ok(total);
            }
            self.take(size, sink).await?;
            if !self.line().await?.is_empty() {
                return Err(ErrorType::Io);
            }
            total += size;
        }
    }

    /// A body delimited by the end of the connection.
    async fn until_close(&mut self, sink: &mut Option<Vec<u8>>) -> Result<u64, ErrorType> {
        let mut total = 0u64;
        loop {
            let available = self.end - self.start;
            if let Some(sink) = sink {
                sink.extend_from_slice(&self.buffer[self.start..self.end]);
            }
            total += available as u64;
            self.start = self.end;
            if self.fill(READ_BUFFER).await.map_err(|e| io_error(&e))? == 0 {
                return Ok(total);
            }
        }
    }
}

/// What the response head says, copied out of the read buffer.
struct Head {
    length: usize,
    status: u16,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    fn from(response: &httparse::Response<'_, '_>, length: usize, keep_headers: bool) -> Head {
        let version = if response.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let mut keep_alive = version == Version::HTTP_11;
        let mut content_length = None;
        let mut chunked = false;
        let mut headers = HeaderMap::new();
        for header in response.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                content_length = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = header
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
            if keep_headers
                && let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(header.value),
                )
            {
                headers.append(name, value);
            }
        }
        // Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3).
        let framing = match (chunked, content_length) {
            (true, _) => Framing::Chunked,
            (false, Some(length)) => Framing::Length(length),
            (false, None) => Framing::UntilClose,
        };
        Head {
            length,
            status: response.code.unwrap_or(0),
            version,
            headers,
            framing,
            keep_alive,
        }
    }
}

fn io_error(error: &io::Error) -> ErrorType {
    crate::http::classify_io(error.kind())
}

fn is_closed(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// How the scripted server writes its answers.
    #[derive(Clone, Copy)]
    enum Script {
        /// Each answer in one write; the connection stays open.
        Whole,
        /// Each answer a byte at a time, to exercise every partial read.
        ByteByByte,
        /// Each answer whole, then the connection is closed without notice.
        CloseAfter,
        /// Never answers.
        Silent,
    }

    /// A server that answers the n-th request it reads (over all
    /// connections) with `answers[n]`; returns its URL base and a count of
    /// the connections it accepted.
    async fn server(answers: Vec<&'static [u8]>, script: Script) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(answers);
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let (answers, answered) = (answers.clone(), answered.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        seen.drain(..end);
                        let answer = answers[answered.fetch_add(1, Ordering::SeqCst)];
                        match script {
                            Script::Silent => {
                                tokio::time::sleep(Duration::from_secs(60)).await;
                                return;
                            }
                            Script::ByteByByte => {
                                for byte in answer {
                                    stream.write_all(&[*byte]).await.unwrap();
                                    tokio::time::sleep(Duration::from_micros(50)).await;
                                }
                            }
                            Script::Whole | Script::CloseAfter => {
                                stream.write_all(answer).await.unwrap()
                            }
                        }
                        if matches!(script, Script::CloseAfter) {
                            return;
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    fn get(url: &str) -> Request<Full<Bytes>> {
        Request::get(url).body(Full::new(Bytes::new())).unwrap()
    }

    async fn send(pool: &Pool, request: Request<Full<Bytes>>) -> Outcome {
        pool.send(request, Duration::from_secs(5), Keep::ALL).await
    }

    fn body(outcome: &Outcome) -> &[u8] {
        outcome.body.as_deref().unwrap_or_default()
    }

    #[tokio::test]
    async fn content_length_bodies_reuse_one_connection() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-id: 7\r\n\r\nhello";
        let (base, accepted) = server(vec![ok, ok, ok], Script::Whole).await;
        let pool = Pool::new(Duration::from_secs(1));
        for _ in 0..3 {
            let outcome = send(&pool, get(&format!("{base}/a"))).await;
            assert_eq!(outcome.status, Some(200));
            assert_eq!(outcome.error, None);
            assert_eq!(body(&outcome), b"hello");
            assert_eq!(outcome.bytes_received, 5);
            assert_eq!(outcome.headers["x-id"], "7");
            assert!(outcome.first_byte_at.is_some());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn chunked_bodies_with_extensions_and_trailers_arrive_whole() {
        let chunked: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n";
        let (base, accepted) = server(vec![chunked, chunked], Script::ByteByByte).await;
        let pool = Pool::new(Duration::from_secs(1));
        for _ in 0..2 {
            let outcome = send(&pool, get(&base)).await;
            assert_eq!(outcome.error, None, "{outcome:?}");
            assert_eq!(body(&outcome), b"hello, world");
            assert_eq!(outcome.bytes_received, 12);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "chunked responses keep the connection"
        );
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close_and_the_connection_is_not_reused() {
        let until_close: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it";
        let (base, accepted) = server(vec![until_close, until_close], Script::CloseAfter).await;
        let pool = Pool::new(Duration::from_secs(1));
        for _ in 0..2 {
            let outcome = send(&pool, get(&base)).await;
            assert_eq!(outcome.error, None);
            assert_eq!(body(&outcome), b"all of it");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_head_has_no_body() {
        let interim: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno";
        let head: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n";
        let after: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
        let (base, accepted) = server(vec![interim, head, after], Script::Whole).await;
        let pool = Pool::new(Duration::from_secs(1));
        let outcome = send(&pool, get(&base)).await;
        assert_eq!(outcome.status, Some(404));
        assert_eq!(outcome.error, Some(ErrorType::Http4xx));
        assert_eq!(body(&outcome), b"no");
        let head_request = Request::head(&base).body(Full::new(Bytes::new())).unwrap();
        let outcome = send(&pool, head_request).await;
        assert_eq!((outcome.status, outcome.bytes_received), (Some(200), 0));
        let outcome = send(&pool, get(&base)).await;
        assert_eq!(outcome.status, Some(204));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_retried_on_a_fresh_one() {
        // The server closes after each answer but says keep-alive: the
        // second request finds the pooled connection dead before any answer.
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (base, accepted) = server(vec![ok, ok], Script::CloseAfter).await;
        let pool = Pool::new(Duration::from_secs(1));
        assert_eq!(send(&pool, get(&base)).await.error, None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let outcome = send(&pool, get(&base)).await;
        assert_eq!(outcome.error, None, "{outcome:?}");
        assert_eq!(body(&outcome), b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn broken_answers_are_sorted_into_the_taxonomy() {
        let garbage: &[u8] = b"SMTP ready\r\n\r\n";
        let (base, _) = server(vec![garbage], Script::Whole).await;
        let pool = Pool::new(Duration::from_secs(1));
        assert_eq!(send(&pool, get(&base)).await.error, Some(ErrorType::Io));

        let cut: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort";
        let (base, _) = server(vec![cut], Script::CloseAfter).await;
        let outcome = send(&pool, get(&base)).await;
        assert_eq!(outcome.error, Some(ErrorType::ConnectionReset));
        assert!(outcome.first_byte_at.is_some(), "the head had arrived");

        let (base, _) = server(vec![b""], Script::Silent).await;
        let outcome = pool
            .send(get(&base), Duration::from_millis(200), Keep::ALL)
            .await;
        assert_eq!(outcome.error, Some(ErrorType::Timeout));
        assert!(outcome.end - outcome.sent_at >= Duration::from_millis(200));

        // A port nothing listens on: bind one, note it, close it.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let outcome = send(&pool, get(&format!("http://127.0.0.1:{port}/"))).await;
        assert_eq!(outcome.error, Some(ErrorType::ConnectRefused));
        assert_eq!(outcome.status, None);
    }

    #[test]
    fn request_heads_carry_host_and_frame_bodies() {
        let head = |request: Request<Full<Bytes>>, body: usize| {
            let (parts, _) = request.into_parts();
            let authority = parts.uri.authority().unwrap().as_str();
            let message = Message::of(&parts, authority, &b"abc"[..body]);
            assert_eq!(message.body, body);
            String::from_utf8(message.bytes).unwrap()
        };
        let empty = || Full::new(Bytes::new());
        assert_eq!(
            head(
                Request::get("http://h:81/p?q=1")
                    .header("traceparent", "00-x")
                    .body(empty())
                    .unwrap(),
                0
            ),
            "GET /p?q=1 HTTP/1.1\r\nhost: h:81\r\ntraceparent: 00-x\r\n\r\n"
        );
        assert_eq!(
            head(Request::post("http://h").body(empty()).unwrap(), 0),
            "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(
            head(
                Request::put("http://h/x")
                    .header("host", "other")
                    .body(empty())
                    .unwrap(),
                3
            ),
            "PUT /x HTTP/1.1\r\nhost: other\r\ncontent-length: 3\r\n\r\nabc"
        );
        assert_eq!(split_authority("[::1]:8080"), ("::1", 8080));
        assert_eq!(split_authority("example.com"), ("example.com", 80));
    }
}
