//! One iteration: pick a request or flow from the mix, render each step,
//! send it (with a token, and once more after a 401), check and extract,
//! then record the step three ways: the live totals, its span, its ledger row.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use exporter::SpanSink;
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::Full;

use crate::auth::{Fetched, TokenProvider};
use crate::clock::Clock;
use crate::h1;
use crate::http::{self as client, ErrorType, HttpClient, Keep, Outcome};
use crate::ledger::{LedgerRow, LedgerSink};
use crate::plan::{Plan, RequestPlan, TRACESTATE, TokenSource};
use crate::scenario::check::Response;
use crate::scenario::feeder::Row;
use crate::scenario::template::Values;
use crate::span::{self, RequestMeta};
use crate::stats::{Recorded, Recorder};

/// What every iteration of a run shares.
#[derive(Debug)]
pub struct Engine {
    pub plan: Plan,
    pub client: HttpClient,
    pub clock: Clock,
    pub sink: Option<SpanSink>,
    pub ledger: Option<LedgerSink>,
    pub recorder: Recorder,
    pub auth: Option<Arc<TokenProvider>>,
    pub run_id: String,
    pub shard: (u32, u32),
    pub propagate: bool,
    /// Stage names, by index.
    pub stages: Vec<String>,
    /// Target of each stage (rate or concurrency), by index.
    pub targets: Vec<f64>,
    /// Parsed URLs of requests whose URL has no template.
    fixed_uris: Vec<Option<Uri>>,
    /// The plan's trace state as hyper takes a header, made once.
    trace_state: Option<HeaderValue>,
    /// The connection limit, if any.
    connections: Option<Arc<tokio::sync::Semaphore>>,
    next_sequence: AtomicU64,
    /// This shard's open-model arrivals so far, over all stages: each is a
    /// virtual user of its own, numbered by [`crate::load::global_arrival`].
    pub(crate) next_arrival: AtomicU64,
    pub counters: Counters,
    abort: AtomicBool,
    abort_reason: std::sync::Mutex<Option<String>>,
}

/// Live totals read by progress lines, metrics and the summary.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests started.
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    /// Iterations in flight.
    pub in_flight: AtomicI64,
    /// Request spans not exported because sampling left them out.
    pub sampled_out: AtomicU64,
    /// Requests retried once after a 401.
    pub auth_retries: AtomicU64,
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Whether `value` may be a header's value, by the rule `http::HeaderValue`
/// applies: no control characters but tab.
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| (b >= 32 && b != 127) || b == b'\t')
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: Plan,
        client: HttpClient,
        sink: Option<SpanSink>,
        ledger: Option<LedgerSink>,
        auth: Option<Arc<TokenProvider>>,
        run_id: String,
        shard: (u32, u32),
        propagate: bool,
    ) -> Engine {
        let stages: Vec<String> = plan.load.stages.iter().map(|s| s.name.clone()).collect();
        let targets = plan.load.stages.iter().map(|s| s.shape.target()).collect();
        let warmup = plan.load.stages.iter().map(|s| s.warmup).collect();
        let fixed_uris = plan
            .requests
            .iter()
            .map(|r| r.url.as_literal().and_then(|u| u.parse().ok()))
            .collect();
        let connections = plan
            .http
            .connections
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
        let trace_state = plan.trace_state.as_ref().map(|state| {
            HeaderValue::from_str(state.as_str()).expect("a checked tracestate is printable ASCII")
        });
        Engine {
            trace_state,
            connections,
            recorder: Recorder::new(plan.requests.len(), warmup),
            plan,
            client,
            clock: Clock::new(),
            sink,
            ledger,
            auth,
            run_id,
            shard,
            propagate,
            stages,
            targets,
            fixed_uris,
            next_sequence: AtomicU64::new(0),
            next_arrival: AtomicU64::new(0),
            counters: Counters::default(),
            abort: AtomicBool::new(false),
            abort_reason: std::sync::Mutex::new(None),
        }
    }

    /// A request id unique within the run across shards: sequence × shards + shard.
    fn next_request_id(&self) -> i64 {
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        (sequence * u64::from(self.shard.1) + u64::from(self.shard.0)) as i64
    }

    /// Stops scheduling new iterations (in-flight ones finish).
    pub fn abort(&self, reason: String) {
        let mut slot = self.abort_reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.abort.store(true, Ordering::Relaxed);
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    pub fn abort_reason(&self) -> Option<String> {
        self.abort_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// An arrival the in-flight bound refused: counted, and in the ledger.
    /// Called from the arrival thread, outside the runtime.
    pub fn dropped(&self, stage: usize, vu: u64, intended: Instant) {
        let choice = self.plan.pick(rand::random());
        self.recorder.arrival(stage, true, false);
        if let Some(ledger) = &self.ledger {
            let trace = span::new_context();
            ledger.write_blocking(LedgerRow {
                intended_start: self.clock.unix_nanos(intended),
                sent_at: None,
                end_time: None,
                request_id: self.next_request_id(),
                step: choice.steps[0] as u32,
                stage: stage as u32,
                vu: vu as i64,
                status: None,
                error_type: Some("dropped"),
                trace_id: trace.trace_id.0,
                span_id: trace.parent_id.0,
                span_exported: false,
            });
        }
    }

    /// Runs one iteration that was due at `intended`: a request, or a flow's
    /// steps in order until one fails.
    pub async fn iteration(&self, stage: usize, vu: u64, intended: Instant) {
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let choice = self.plan.pick(rand::random());
        let flow = (choice.steps.len() > 1).then_some(choice.name.as_str());
        let mut values = IterationValues::new(&self.plan);
        let mut due = intended;
        for &step in &choice.steps {
            let (ok, ended) = self.step(stage, vu, step, flow, due, &mut values).await;
            if let Some(feeder) = values.exhausted.take() {
                self.abort(format!(
                    "feeder '{feeder}' has handed out every row (mode: unique)"
                ));
            }
            if !ok {
                break;
            }
            // The next step of a flow is due as soon as this one ends.
            due = ended;
        }
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sends one step; returns whether it succeeded and when it ended.
    async fn step(
        &self,
        stage: usize,
        vu: u64,
        step: usize,
        flow: Option<&str>,
        intended: Instant,
        values: &mut IterationValues<'_>,
    ) -> (bool, Instant) {
        let request = &self.plan.requests[step];
        let mut trace = span::new_context();
        let sampling = self.plan.sampling;
        trace.sampled = sampling.ratio >= 1.0 || rand::random::<f64>() < sampling.ratio;
        let request_id = self.next_request_id();
        self.counters.sent.fetch_add(1, Ordering::Relaxed);

        let mut token = None;
        let mut outcome = None;
        if let Some(auth) = &self.auth {
            match auth.get().await {
                Ok(t) => token = Some(t),
                Err(_) => outcome = Some(Outcome::not_sent(Instant::now(), ErrorType::Auth)),
            }
        }
        let mut url = String::new();
        let mut outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                self.send(
                    step,
                    values,
                    token.as_deref(),
                    &trace,
                    &mut url,
                    request.keep,
                )
                .await
            }
        };
        let mut auth_retried = false;
        if outcome.status == Some(401)
            && let (Some(auth), Some(stale)) = (&self.auth, &token)
        {
            auth_retried = true;
            self.counters.auth_retries.fetch_add(1, Ordering::Relaxed);
            let first_sent = outcome.sent_at;
            outcome = match auth.renew(stale).await {
                Ok(fresh) => {
                    url.clear();
                    self.send(step, values, Some(&fresh), &trace, &mut url, request.keep)
                        .await
                }
                Err(_) => Outcome::not_sent(Instant::now(), ErrorType::Auth),
            };
            // The request, as its user sees it, began with the first attempt.
            outcome.sent_at = first_sent;
        }

        let (checks, checks_failed) = self.check_and_extract(request, &mut outcome, values);
        if outcome.error.is_some() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        let latency = outcome.end.saturating_duration_since(intended);
        let service = outcome.end.saturating_duration_since(outcome.sent_at);
        self.recorder.record(Recorded {
            stage,
            step,
            latency_ns: latency.as_nanos() as u64,
            service_ns: service.as_nanos() as u64,
            error: outcome.error.map(ErrorType::as_str),
            checks,
            checks_failed,
        });

        let keep = trace.sampled || outcome.error.is_some() || latency >= sampling.keep_slower_than;
        let mut exported = false;
        if let Some(sink) = &self.sink {
            if keep {
                // Requests without templates were parsed once at start.
                let uri = match &self.fixed_uris[step] {
                    Some(uri) => Some(uri.clone()),
                    None => url.parse::<Uri>().ok(),
                };
                let meta = RequestMeta {
                    trace,
                    trace_state: self.plan.trace_state.as_ref().map(|s| s.as_str()),
                    method: request.method.as_str(),
                    url: &url,
                    host: uri.as_ref().and_then(Uri::host).unwrap_or_default(),
                    port: uri.as_ref().map_or(80, port_of),
                    run_id: &self.run_id,
                    scenario: &self.plan.name,
                    step: &request.name,
                    stage: &self.stages[stage],
                    shard: self.shard.0,
                    vu,
                    request_id,
                    concurrency: self.targets[stage] as i64,
                    intended_start_unix_nanos: self.clock.unix_nanos(intended),
                    auth_retried,
                    flow,
                };
                exported = sink.offer_encoded(span::client_span(&meta, &outcome, &self.clock));
            } else {
                self.counters.sampled_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(ledger) = &self.ledger {
            ledger
                .write(LedgerRow {
                    intended_start: self.clock.unix_nanos(intended),
                    sent_at: Some(self.clock.unix_nanos(outcome.sent_at)),
                    end_time: Some(self.clock.unix_nanos(outcome.end)),
                    request_id,
                    step: step as u32,
                    stage: stage as u32,
                    vu: vu as i64,
                    status: outcome.status,
                    error_type: outcome.error.map(ErrorType::as_str),
                    trace_id: trace.trace_id.0,
                    span_id: trace.parent_id.0,
                    span_exported: exported,
                })
                .await;
        }
        (outcome.error.is_none(), outcome.end)
    }

    /// Renders and sends one request; `url` receives the rendered URL, and
    /// the outcome keeps what `keep` asks for of the response.
    async fn send(
        &self,
        step: usize,
        values: &mut IterationValues<'_>,
        token: Option<&str>,
        trace: &exporter::TraceContext,
        url: &mut String,
        keep: Keep,
    ) -> Outcome {
        let request = &self.plan.requests[step];
        let failed = |error| Outcome::not_sent(Instant::now(), error);
        let uri = match self.uri(step, values, url) {
            Ok(uri) => uri,
            Err(error) => return failed(error),
        };
        let uri = &*uri;
        let timeout = self.plan.http.timeout;
        // Waiting for a connection is latency, not service time: the send
        // time is taken once the request has one.
        match self.client.h1_for(uri) {
            Some(pool) => {
                let Some(authority) = uri.authority() else {
                    return failed(ErrorType::InvalidRequest);
                };
                let message = match self.message(request, values, token, trace, uri, authority) {
                    Ok(message) => message,
                    Err(error) => return failed(error),
                };
                let _connection = self.connection().await;
                pool.send_message(authority.as_str(), &message, timeout, keep)
                    .await
            }
            None => {
                let http_request = match self.build(request, values, token, trace, uri) {
                    Ok(http_request) => http_request,
                    Err(error) => return failed(error),
                };
                let _connection = self.connection().await;
                client::send_hyper(&self.client, http_request, timeout, keep.body).await
            }
        }
    }

    /// The step's URL rendered into `url`, and parsed (at start, once, when
    /// it has no template).
    fn uri(
        &self,
        step: usize,
        values: &mut IterationValues<'_>,
        url: &mut String,
    ) -> Result<Cow<'_, Uri>, ErrorType> {
        self.plan.requests[step]
            .url
            .render(values, url)
            .map_err(|_| ErrorType::MissingValue)?;
        match &self.fixed_uris[step] {
            Some(uri) => Ok(Cow::Borrowed(uri)),
            None => url
                .parse()
                .map(Cow::Owned)
                .map_err(|_| ErrorType::InvalidRequest),
        }
    }

    /// A permit of the connection limit, if there is one.
    async fn connection(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let limit = self.connections.as_ref()?;
        limit.clone().acquire_owned().await.ok()
    }

    /// The request written straight into bytes for loadlens's HTTP/1.1
    /// client: no `http::Request`, header map or body future on the way.
    fn message<'p>(
        &self,
        request: &'p RequestPlan,
        values: &mut IterationValues<'_>,
        token: Option<&str>,
        trace: &exporter::TraceContext,
        uri: &Uri,
        authority: &Authority,
    ) -> Result<h1::Message<'p>, ErrorType> {
        let host_given = request.headers.iter().any(|(name, _)| name == header::HOST);
        let mut writer = h1::Writer::new(&request.method, uri, authority.as_str(), host_given);
        let mut rendered = String::new();
        for (name, template) in &request.headers {
            let value = match template.as_literal() {
                Some(value) => value,
                None => {
                    rendered.clear();
                    template
                        .render(values, &mut rendered)
                        .map_err(|_| ErrorType::MissingValue)?;
                    &rendered
                }
            };
            if !is_header_value(value) {
                return Err(ErrorType::InvalidRequest);
            }
            writer.header(name, value.as_bytes());
        }
        if let (Some(token), Some(auth)) = (token, &self.plan.auth) {
            if !is_header_value(&auth.prefix) || !is_header_value(token) {
                return Err(ErrorType::Auth);
            }
            writer.header_parts(&auth.header, &[auth.prefix.as_bytes(), token.as_bytes()]);
        }
        if self.propagate {
            writer.header(&TRACEPARENT, &trace.traceparent_bytes());
            if let Some(state) = &self.trace_state {
                writer.header(&TRACESTATE, state.as_bytes());
            }
        }
        Ok(match &request.body {
            Some(template) => match template.as_literal() {
                Some(body) => writer.finish(body.as_bytes()),
                None => {
                    let body = template
                        .to_string(values)
                        .map_err(|_| ErrorType::MissingValue)?;
                    writer.finish(body.as_bytes())
                }
            },
            None => writer.finish(&[]),
        })
    }

    /// The request as hyper takes it (HTTPS, HTTP/2).
    fn build(
        &self,
        request: &RequestPlan,
        values: &mut IterationValues<'_>,
        token: Option<&str>,
        trace: &exporter::TraceContext,
        uri: &Uri,
    ) -> Result<Request<Full<Bytes>>, ErrorType> {
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(uri.clone());
        for (name, template) in &request.headers {
            let value = match template.as_literal() {
                Some(v) => HeaderValue::from_str(v),
                None => HeaderValue::from_str(
                    &template
                        .to_string(values)
                        .map_err(|_| ErrorType::MissingValue)?,
                ),
            }
            .map_err(|_| ErrorType::InvalidRequest)?;
            builder = builder.header(name, value);
        }
        if let (Some(token), Some(auth)) = (token, &self.plan.auth) {
            let value = HeaderValue::from_str(&format!("{}{token}", auth.prefix))
                .map_err(|_| ErrorType::Auth)?;
            builder = builder.header(&auth.header, value);
        }
        if self.propagate {
            builder = builder.header(TRACEPARENT, trace.to_traceparent());
            if let Some(state) = &self.trace_state {
                builder = builder.header(TRACESTATE, state.clone());
            }
        }
        let body = match &request.body {
            Some(template) => Bytes::from(
                template
                    .to_string(values)
                    .map_err(|_| ErrorType::MissingValue)?,
            ),
            None => Bytes::new(),
        };
        builder
            .body(Full::new(body))
            .map_err(|_| ErrorType::InvalidRequest)
    }

    /// Fetches a token for the token provider: the OAuth2 token request, or
    /// the scenario's login request (sent without a token, not counted as load).
    pub async fn fetch_token(&self) -> Fetched {
        let auth = self.plan.auth.as_ref().ok_or("the scenario has no auth")?;
        let (outcome, name) = match &auth.source {
            TokenSource::OAuth2(spec) => {
                let mut form = format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}",
                    form_encode(&spec.client_id),
                    form_encode(&spec.client_secret)
                );
                if let Some(scope) = &spec.scope {
                    form.push_str(&format!("&scope={}", form_encode(scope)));
                }
                let request = Request::post(&spec.token_url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "application/json")
                    .body(Full::new(Bytes::from(form)))
                    .map_err(|e| format!("token request: {e}"))?;
                let outcome =
                    client::send(&self.client, request, self.plan.http.timeout, Keep::ALL).await;
                (outcome, spec.token_url.clone())
            }
            TokenSource::Login { request, .. } => {
                let mut values = IterationValues::new(&self.plan);
                let trace = span::new_context();
                let mut url = String::new();
                let outcome = self
                    .send(*request, &mut values, None, &trace, &mut url, Keep::ALL)
                    .await;
                (
                    outcome,
                    format!("login request '{}'", self.plan.requests[*request].name),
                )
            }
        };
        let status = match (outcome.status, outcome.error) {
            (Some(status @ 200..=299), _) => status,
            (Some(status), _) => return Err(format!("{name} answered HTTP {status}")),
            (None, error) => {
                return Err(format!(
                    "{name} failed: {}",
                    error.map_or("no response", ErrorType::as_str)
                ));
            }
        };
        let body = outcome.body.unwrap_or_default();
        let response = Response {
            status,
            headers: &outcome.headers,
            body: &body,
        };
        let seconds = |text: &str| {
            text.trim_matches('"')
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
        };
        match &auth.source {
            TokenSource::OAuth2(_) => {
                let json: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("{name}: the token response is not JSON: {e}"))?;
                let token = json["access_token"]
                    .as_str()
                    .ok_or_else(|| format!("{name}: the token response has no access_token"))?;
                let ttl = match &json["expires_in"] {
                    serde_json::Value::Number(n) => {
                        n.as_f64().and_then(|s| Duration::try_from_secs_f64(s).ok())
                    }
                    serde_json::Value::String(s) => seconds(s),
                    _ => None,
                };
                Ok((token.to_string(), ttl))
            }
            TokenSource::Login {
                token, expires_in, ..
            } => {
                let value = token
                    .extract(&response)
                    .ok_or_else(|| format!("{name}: the token was not found in the response"))?;
                let ttl = expires_in
                    .as_ref()
                    .and_then(|e| e.extract(&response))
                    .and_then(|text| seconds(&text));
                Ok((value, ttl))
            }
        }
    }

    /// Runs the checks (a failure makes the outcome `check_failed`) and the
    /// extractors (a value not found makes it `missing_value`); returns
    /// (checks run, checks failed).
    fn check_and_extract(
        &self,
        request: &RequestPlan,
        outcome: &mut Outcome,
        values: &mut IterationValues<'_>,
    ) -> (u32, u32) {
        let Some(status) = outcome.status else {
            return (0, 0);
        };
        let empty = Bytes::new();
        let response = Response {
            status,
            headers: &outcome.headers,
            body: outcome.body.as_ref().unwrap_or(&empty),
        };
        let failed = request
            .checks
            .iter()
            .filter(|c| !c.passes(&response))
            .count() as u32;
        let mut missing = false;
        for (name, extractor) in &request.extract {
            match extractor.extract(&response) {
                Some(value) => {
                    values.vars.insert(name.clone(), value);
                }
                None => missing = true,
            }
        }
        // A check that passes on a 4xx/5xx (expecting the error) clears it.
        let status_checked = request
            .checks
            .iter()
            .any(|c| matches!(c, crate::scenario::check::Check::Status(_)));
        if status_checked && failed == 0 {
            outcome.error = None;
        }
        if outcome.error.is_none() {
            if failed > 0 {
                outcome.error = Some(ErrorType::CheckFailed);
            } else if missing {
                outcome.error = Some(ErrorType::MissingValue);
            }
        }
        (request.checks.len() as u32, failed)
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn port_of(uri: &Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        })
}

/// Template values of one iteration: one row per feeder (taken on first use)
/// and the values extracted so far.
struct IterationValues<'a> {
    plan: &'a Plan,
    rows: Vec<Option<Row>>,
    vars: HashMap<String, String>,
    /// A unique feeder that ran out.
    exhausted: Option<String>,
}

impl<'a> IterationValues<'a> {
    fn new(plan: &'a Plan) -> Self {
        IterationValues {
            plan,
            rows: vec![None; plan.feeders.len()],
            vars: HashMap::new(),
            exhausted: None,
        }
    }
}

impl Values for IterationValues<'_> {
    fn feeder(&mut self, feeder: usize, column: usize) -> Result<&str, String> {
        if self.rows[feeder].is_none() {
            let source = &self.plan.feeders[feeder];
            match source.next_row() {
                Some(row) => self.rows[feeder] = Some(row),
                None => {
                    self.exhausted = Some(source.name.clone());
                    return Err(format!("feeder '{}' has no rows left", source.name));
                }
            }
        }
        Ok(self.rows[feeder]
            .as_ref()
            .and_then(|row| row.get(column))
            .map_or("", String::as_str))
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http_body_util::BodyExt;

    use super::*;
    use crate::scenario::ScenarioFile;

    fn engine(yaml: &str) -> Engine {
        let file = ScenarioFile::parse(Path::new("s.yaml"), yaml.to_string()).unwrap();
        let plan = Plan::compile(&file, (0, 1)).unwrap();
        let client = client::client(&plan.http).unwrap();
        Engine::new(plan, client, None, None, None, "run".into(), (0, 1), true)
    }

    /// A step written out both ways: straight into bytes for loadlens's
    /// HTTP/1.1 client, and as the `http::Request` hyper takes, then
    /// written by the same client's writer.
    async fn both_ways(
        engine: &Engine,
        step: usize,
        token: Option<&str>,
    ) -> (Result<Vec<u8>, ErrorType>, Result<Vec<u8>, ErrorType>) {
        let request = &engine.plan.requests[step];
        let trace = span::new_context();
        let mut url = String::new();
        let mut values = IterationValues::new(&engine.plan);
        let uri = engine.uri(step, &mut values, &mut url).unwrap();
        let authority = uri.authority().unwrap();
        assert!(engine.client.h1_for(&uri).is_some());
        let direct = engine
            .message(request, &mut values, token, &trace, &uri, authority)
            .map(|m| m.as_bytes().to_vec());
        let mut values = IterationValues::new(&engine.plan);
        let via_request = match engine.build(request, &mut values, token, &trace, &uri) {
            Ok(built) => {
                let (parts, body) = built.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                Ok(h1::Message::of(&parts, authority.as_str(), &body)
                    .as_bytes()
                    .to_vec())
            }
            Err(error) => Err(error),
        };
        (direct, via_request)
    }

    /// The step as sent, after checking that both ways agree.
    async fn written(engine: &Engine, step: usize, token: Option<&str>) -> String {
        let (direct, via_request) = both_ways(engine, step, token).await;
        assert_eq!(direct, via_request, "step {step}");
        String::from_utf8(direct.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn requests_written_straight_into_bytes_match_the_general_path() {
        let engine = engine(
            r#"
auth:
  oauth2: { token_url: 'http://h/token', client_id: c, client_secret: s }
requests:
  plain: { url: 'http://h:81/p?q=1' }
  templated:
    method: POST
    url: 'http://h/items/{{rand_int 5 5}}'
    headers: { x-id: 'a{{rand_int 7 7}}', accept: text/plain }
    body: '{"n": {{rand_int 3 3}}}'
  hosted:
    method: PUT
    url: 'http://h/x'
    headers: { host: other, content-length: '0' }
  broken:
    url: 'http://h/'
    headers: { x-bad: "a\x01b" }
load: { model: constant, rate: 1, duration: 1s }
"#,
        );
        let step = |name: &str| {
            engine
                .plan
                .requests
                .iter()
                .position(|r| r.name == name)
                .unwrap()
        };
        for name in ["plain", "templated", "hosted"] {
            let text = written(&engine, step(name), Some("tok")).await;
            assert!(text.contains("\r\nauthorization: Bearer tok\r\n"), "{text}");
            assert!(text.contains("\r\ntraceparent: 00-"), "{text}");
        }
        let plain = written(&engine, step("plain"), None).await;
        assert!(
            plain.starts_with("GET /p?q=1 HTTP/1.1\r\nhost: h:81\r\ntraceparent: 00-"),
            "{plain}"
        );
        assert!(plain.ends_with("-01\r\n\r\n"), "{plain}");
        let templated = written(&engine, step("templated"), None).await;
        assert!(
            templated.starts_with("POST /items/5 HTTP/1.1\r\nhost: h\r\n"),
            "{templated}"
        );
        assert!(templated.contains("\r\nx-id: a7\r\n"), "{templated}");
        assert!(
            templated.ends_with("content-length: 8\r\n\r\n{\"n\": 3}"),
            "{templated}"
        );
        let hosted = written(&engine, step("hosted"), None).await;
        assert!(hosted.starts_with("PUT /x HTTP/1.1\r\n"), "{hosted}");
        assert!(hosted.contains("\r\nhost: other\r\n"), "{hosted}");
        assert_eq!(hosted.matches("host").count(), 1, "{hosted}");
        assert_eq!(hosted.matches("content-length").count(), 1, "{hosted}");

        let (direct, via_request) = both_ways(&engine, step("broken"), None).await;
        assert_eq!(direct, Err(ErrorType::InvalidRequest));
        assert_eq!(via_request, Err(ErrorType::InvalidRequest));
        let (direct, via_request) = both_ways(&engine, step("plain"), Some("t\nx")).await;
        assert_eq!(direct, Err(ErrorType::Auth));
        assert_eq!(via_request, Err(ErrorType::Auth));
    }

    #[tokio::test]
    async fn the_trace_state_follows_traceparent_when_propagating() {
        let yaml = "tracestate: 'congo=t61rcWkgMzE,rojo=1'\nrequests:\n  plain: { url: 'http://h/p' }\nload: { model: constant, rate: 1, duration: 1s }\n";
        let text = written(&engine(yaml), 0, None).await;
        let (_, after) = text.split_once("\r\ntraceparent: 00-").unwrap();
        assert!(
            after.ends_with("-01\r\ntracestate: congo=t61rcWkgMzE,rojo=1\r\n\r\n"),
            "{text}"
        );
        let mut quiet = engine(yaml);
        quiet.propagate = false;
        let text = written(&quiet, 0, None).await;
        assert!(!text.contains("trace"), "{text}");
    }
}
