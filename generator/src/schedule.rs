//! The load models: when each request starts, and how many run at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exporter::SpanSink;
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::http::{self, ErrorType, HttpClient};
use crate::span::{self, RequestMeta};
use crate::summary::StageStats;

/// What every request of a run shares.
#[derive(Debug)]
pub(crate) struct Target {
    pub client: HttpClient,
    pub method: ::http::Method,
    pub uri: ::http::Uri,
    pub url: String,
    pub host: String,
    pub port: u16,
    pub step: String,
    pub run_id: String,
    pub scenario: String,
    pub shard: (u32, u32),
    pub timeout: Duration,
    pub propagate: bool,
    pub clock: Clock,
    pub sink: Option<SpanSink>,
    next_sequence: AtomicU64,
    pub counters: Counters,
}

/// Live totals, read by the progress printer and the summary.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

impl Target {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: HttpClient,
        method: ::http::Method,
        uri: ::http::Uri,
        url: String,
        run_id: String,
        scenario: String,
        shard: (u32, u32),
        timeout: Duration,
        propagate: bool,
        sink: Option<SpanSink>,
    ) -> Self {
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(80);
        let step = format!("{method} {}", uri.path());
        Target {
            client,
            method,
            uri,
            url,
            host,
            port,
            step,
            run_id,
            scenario,
            shard,
            timeout,
            propagate,
            clock: Clock::new(),
            sink,
            next_sequence: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// A request id unique within the run across shards: sequence × shards + shard.
    fn next_request_id(&self) -> i64 {
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        (sequence * u64::from(self.shard.1) + u64::from(self.shard.0)) as i64
    }
}

/// A stage: a name, a load shape and how long it lasts.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    pub name: String,
    pub shape: Shape,
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// Requests per second.
    Open { rate: f64, max_in_flight: usize },
    /// Concurrent workers.
    Closed { concurrency: usize },
}

impl Shape {
    pub fn target(&self) -> f64 {
        match *self {
            Shape::Open { rate, .. } => rate,
            Shape::Closed { concurrency } => concurrency as f64,
        }
    }
}

/// Sends one request scheduled for `intended`, exports its span, records it.
async fn request(
    target: &Target,
    stage: &Stage,
    vu: u64,
    intended: Instant,
    stats: &Mutex<StageStats>,
) -> Option<ErrorType> {
    let trace = span::new_context();
    let traceparent = target.propagate.then(|| trace.to_traceparent());
    target.counters.sent.fetch_add(1, Ordering::Relaxed);
    let request_id = target.next_request_id();
    let outcome = http::send(
        &target.client,
        &target.method,
        &target.uri,
        traceparent.as_deref(),
        target.timeout,
    )
    .await;
    if outcome.error.is_some() {
        target.counters.failed.fetch_add(1, Ordering::Relaxed);
    }
    let latency = outcome.end.saturating_duration_since(intended).as_nanos() as i64;
    let service = outcome
        .end
        .saturating_duration_since(outcome.sent_at)
        .as_nanos() as i64;
    stats
        .lock()
        .expect("stage stats lock")
        .record(latency, service, outcome.error);
    if let Some(sink) = &target.sink {
        let meta = RequestMeta {
            trace,
            method: target.method.as_str(),
            url: &target.url,
            host: &target.host,
            port: target.port,
            run_id: &target.run_id,
            scenario: &target.scenario,
            step: &target.step,
            stage: &stage.name,
            shard: target.shard.0,
            vu,
            request_id,
            concurrency: stage.shape.target() as i64,
            intended_start_unix_nanos: target.clock.unix_nanos(intended),
        };
        sink.send(span::client_span(&meta, &outcome, &target.clock));
    }
    outcome.error
}

/// Runs one stage to completion; returns its statistics and how long it took.
pub(crate) async fn run_stage(target: Arc<Target>, stage: Stage) -> (StageStats, Duration) {
    let stats = Arc::new(Mutex::new(StageStats::default()));
    let start = Instant::now();
    let end = start + stage.duration;
    match stage.shape {
        Shape::Closed { concurrency } => {
            let mut workers = tokio::task::JoinSet::new();
            for vu in 0..concurrency as u64 {
                let (target, stage, stats) = (target.clone(), stage.clone(), stats.clone());
                workers.spawn(async move {
                    while Instant::now() < end {
                        request(&target, &stage, vu, Instant::now(), &stats).await;
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        Shape::Open {
            rate,
            max_in_flight,
        } => {
            let permits = Arc::new(Semaphore::new(max_in_flight));
            let interval = Duration::from_secs_f64(1.0 / rate);
            for i in 0u64.. {
                let intended = start + interval.mul_f64(i as f64);
                if intended >= end {
                    break;
                }
                tokio::time::sleep_until(intended.into()).await;
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    target.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (target, stage, stats) = (target.clone(), stage.clone(), stats.clone());
                tokio::spawn(async move {
                    request(&target, &stage, i, intended, &stats).await;
                    drop(permit);
                });
            }
            // Wait for every request still in flight.
            let _ = permits.acquire_many(max_in_flight as u32).await;
        }
    }
    let elapsed = start.elapsed();
    let stats = Arc::try_unwrap(stats)
        .map(|m| m.into_inner().expect("stage stats lock"))
        .unwrap_or_else(|shared| std::mem::take(&mut *shared.lock().expect("stage stats lock")));
    (stats, elapsed)
}
