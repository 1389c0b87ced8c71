//! A system under test for generator tests, served in-process on loopback:
//!
//! - `POST /login` `{"user": NAME}` → `{"token": T, "expires_in": S}` after
//!   `login_delay`; tokens live `token_ttl` and belong to one user.
//! - `GET /cart/NAME` needs `authorization: Bearer T` with a live token of
//!   NAME: 200 `{"user": NAME, "items": 3}`, else 401 (expired, revoked or
//!   missing) or 403 (another user's token). A token is revoked after
//!   `token_uses` carts, before the expiry it was issued with: the client
//!   learns of it only from the 401.
//! - `POST /oauth/token` (client credentials `loadlens` / `sécret 1`) issues
//!   tokens for `any` the same way, as an OAuth2 token endpoint.
//! - `GET /slow` answers after 20 ms (a thread's sleep, not a timer tick), and
//!   records how long it really held each request: on a busy machine the
//!   thread can wake late, and a test of measurement fidelity must compare
//!   with what the target did, not with what it meant to do.
//! - `GET /stall` answers at once, except that from `stall_after` the whole
//!   server stops for `stall_for` once, as a garbage-collection pause would.
//! - `GET /traced` records the request's `traceparent` and `tracestate`
//!   headers and answers 200.
//! - `GET /status/CODE` answers with that status; anything else is 200 `ok`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};

/// How the target behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub token_ttl: Duration,
    /// Carts a token is good for before it is revoked (default: no limit).
    pub token_uses: u64,
    /// How long `/login` takes to answer, as a slow identity provider would.
    pub login_delay: Duration,
    pub stall_after: Duration,
    pub stall_for: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            token_ttl: Duration::from_secs(60),
            token_uses: u64::MAX,
            login_delay: Duration::ZERO,
            stall_after: Duration::from_secs(3600),
            stall_for: Duration::ZERO,
        }
    }
}

/// What the target saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub logins: AtomicU64,
    pub carts_ok: AtomicU64,
    pub unauthorized: AtomicU64,
    pub wrong_user: AtomicU64,
    pub requests: AtomicU64,
    pub http2: AtomicU64,
    /// How long each `/slow` request was held, from its handler's start to its reply.
    pub slow_holds: Mutex<Vec<Duration>>,
    /// Every `traceparent` and every `tracestate` header of each `/traced` request.
    pub trace_headers: Mutex<Vec<(Vec<String>, Vec<String>)>>,
}

impl Seen {
    /// The median of the `/slow` hold times, or zero before any.
    pub fn slow_hold_median(&self) -> Duration {
        let mut holds = self.slow_holds.lock().unwrap().clone();
        holds.sort_unstable();
        holds.get(holds.len() / 2).copied().unwrap_or_default()
    }
}

struct State {
    behaviour: Behaviour,
    started: Instant,
    /// Token → (its user, its expiry, carts it was accepted for).
    tokens: Mutex<HashMap<String, (String, Instant, u64)>>,
    stall_until: Mutex<Option<Instant>>,
    next_token: AtomicU64,
    seen: Arc<Seen>,
}

/// A running target; it stops when the test process ends.
pub struct Target {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl Target {
    pub fn start(behaviour: Behaviour) -> Target {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let state = Arc::new(State {
            behaviour,
            started: Instant::now(),
            tokens: Mutex::new(HashMap::new()),
            stall_until: Mutex::new(None),
            next_token: AtomicU64::new(0),
            seen: seen.clone(),
        });
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(256)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(listener, state));
        });
        Target { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn serve(listener: std::net::TcpListener, state: Arc<State>) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            // HTTP/1.1, or HTTP/2 with prior knowledge (h2c), by what the client sends.
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// A new token for `user`, live for the configured time.
fn issue_token(state: &State, user: &str) -> (String, Duration) {
    let n = state.next_token.fetch_add(1, Ordering::Relaxed);
    let token = format!("tok-{n}");
    let ttl = state.behaviour.token_ttl;
    state
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), (user.to_string(), Instant::now() + ttl, 0));
    state.seen.logins.fetch_add(1, Ordering::Relaxed);
    (token, ttl)
}

async fn handle(state: &State, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    state.seen.requests.fetch_add(1, Ordering::Relaxed);
    if request.version() == hyper::Version::HTTP_2 {
        state.seen.http2.fetch_add(1, Ordering::Relaxed);
    }
    let path = request.uri().path().to_string();
    if path == "/stall" {
        let now = Instant::now();
        let until = {
            let mut stall = state.stall_until.lock().unwrap();
            if stall.is_none() && now >= state.started + state.behaviour.stall_after {
                *stall = Some(now + state.behaviour.stall_for);
            }
            *stall
        };
        if let Some(until) = until.filter(|&u| u > now) {
            tokio::time::sleep_until(until.into()).await;
        }
        return reply(StatusCode::OK, "ok");
    }
    if path == "/slow" {
        let arrived = Instant::now();
        // Sleep most of the way, then spin: a thread's sleep overshoots by
        // tens of microseconds, and the target must not blur the measurement.
        // Only the last 80 µs spin: at 1,000 requests a second, 20 requests
        // spinning 400 µs each kept 0.4 of a core busy, and on 2 cores that
        // delayed the generator under test by up to 0.9 ms (CI, 2026-12-07);
        // with 80 µs it measured 0.23-0.30 ms over the hold, idle or with
        // both cores busy. Any overshoot is in the recorded hold anyway.
        // block_in_place keeps this task on its thread (no hand-off to wake).
        tokio::task::block_in_place(|| {
            let service = Duration::from_millis(20);
            let left = service.saturating_sub(arrived.elapsed());
            std::thread::sleep(left.saturating_sub(Duration::from_micros(80)));
            while arrived.elapsed() < service {
                std::hint::spin_loop();
            }
        });
        let held = arrived.elapsed();
        state.seen.slow_holds.lock().unwrap().push(held);
        return reply(StatusCode::OK, "ok");
    }
    if path == "/traced" {
        let header = |name: &str| -> Vec<String> {
            let values = request.headers().get_all(name).iter();
            values
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect()
        };
        let headers = (header("traceparent"), header("tracestate"));
        state.seen.trace_headers.lock().unwrap().push(headers);
        return reply(StatusCode::OK, "ok");
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        return reply(status, "{}");
    }
    if path == "/oauth/token" {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let form = String::from_utf8_lossy(&body).into_owned();
        let fields: HashMap<&str, &str> = form
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        if fields.get("grant_type") != Some(&"client_credentials")
            || fields.get("client_id") != Some(&"loadlens")
            || fields.get("client_secret") != Some(&"s%C3%A9cret+1")
        {
            return reply(StatusCode::UNAUTHORIZED, r#"{"error": "invalid_client"}"#);
        }
        let (token, ttl) = issue_token(state, "any");
        return reply(
            StatusCode::OK,
            format!(
                r#"{{"access_token": "{token}", "token_type": "Bearer", "expires_in": {}}}"#,
                ttl.as_secs()
            ),
        );
    }
    if path == "/login" {
        tokio::time::sleep(state.behaviour.login_delay).await;
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let Some(user) = json["user"].as_str() else {
            return reply(StatusCode::BAD_REQUEST, r#"{"error": "no user"}"#);
        };
        let (token, ttl) = issue_token(state, user);
        return reply(
            StatusCode::OK,
            format!(
                r#"{{"token": "{token}", "expires_in": {}}}"#,
                ttl.as_secs_f64()
            ),
        );
    }
    if let Some(user) = path.strip_prefix("/cart/") {
        let token = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        let owner = state
            .tokens
            .lock()
            .unwrap()
            .get_mut(&token)
            .filter(|(_, expires, uses)| {
                Instant::now() < *expires && *uses < state.behaviour.token_uses
            })
            .map(|(owner, _, uses)| {
                *uses += 1;
                owner.clone()
            });
        return match owner {
            Some(owner) => {
                if owner == user || user == "any" {
                    state.seen.carts_ok.fetch_add(1, Ordering::Relaxed);
                    reply(
                        StatusCode::OK,
                        format!(r#"{{"user": "{owner}", "items": 3}}"#),
                    )
                } else {
                    state.seen.wrong_user.fetch_add(1, Ordering::Relaxed);
                    reply(StatusCode::FORBIDDEN, "{}")
                }
            }
            _ => {
                state.seen.unauthorized.fetch_add(1, Ordering::Relaxed);
                reply(
                    StatusCode::UNAUTHORIZED,
                    r#"{"error": "token expired or missing"}"#,
                )
            }
        };
    }
    reply(StatusCode::OK, "ok")
}
