//! Batching OTLP span export with a bounded queue, retries and counters that
//! say why each lost span was lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::encoded::{EncodedSpan, RawMessage};
use crate::transport::{Protocol, RetryPolicy, Signal, Transport};

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// Collector URL: `http://127.0.0.1:4317` for gRPC; for OTLP/HTTP the base
    /// URL, e.g. `http://127.0.0.1:4318`, to which `/v1/traces` is appended.
    pub endpoint: String,
    /// gRPC (the default) or HTTP/protobuf.
    pub protocol: Protocol,
    /// Resource attributes sent with every batch (`service.name` ...).
    pub resource: Vec<KeyValue>,
    /// Instrumentation scope name and version.
    pub scope: (String, String),
    /// Spans per export request.
    pub batch_size: usize,
    /// Largest export request, in bytes: a batch whose spans would make a
    /// larger one goes out as several requests.
    pub max_request_bytes: usize,
    /// Spans the queue holds before new spans are dropped (and counted).
    pub queue_capacity: usize,
    /// Longest a span waits in a partial batch.
    pub flush_interval: Duration,
    /// Attempts per batch, the first included, before its spans count as dropped.
    pub max_attempts: u32,
    /// Longest one attempt may take, connecting included.
    pub timeout: Duration,
    /// Backoff ceiling before the first retry; it doubles with each retry, and
    /// the wait is drawn at random from its upper half.
    pub initial_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
    /// Largest wait honoured when the collector names one (gRPC `RetryInfo`,
    /// HTTP `Retry-After`); longer requests are cut to this.
    pub max_retry_delay: Duration,
}

/// The default bound on an export request: under the 4 MiB that gRPC
/// servers accept by default (tonic's, the OpenTelemetry Collector's and
/// `loadlens collector`'s `max_grpc_message`), with room to spare.
pub const MAX_REQUEST_BYTES: usize = 3 << 20;

impl ExporterConfig {
    /// Defaults: OTLP/gRPC, batches of 2,048 spans and at most 3 MiB a
    /// request, a queue of 65,536 spans, flush every 200 ms, 5 attempts, 10 s
    /// per attempt, backoff 50 ms doubling to 2 s, and server-requested waits
    /// up to 30 s.
    pub fn new(endpoint: impl Into<String>, resource: Vec<KeyValue>) -> Self {
        ExporterConfig {
            endpoint: endpoint.into(),
            protocol: Protocol::Grpc,
            resource,
            scope: ("loadlens".into(), env!("CARGO_PKG_VERSION").into()),
            // Four times the SDKs' 512: a collector's cost per request is
            // then spread over more spans (BENCHMARKS.md, "Generator").
            batch_size: 2048,
            max_request_bytes: MAX_REQUEST_BYTES,
            queue_capacity: 1 << 16,
            flush_interval: Duration::from_millis(200),
            max_attempts: 5,
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_retry_delay: Duration::from_secs(30),
        }
    }

    /// The same settings over another transport.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// These settings with the batch settings the OpenTelemetry SDKs read
    /// from their environment, where `var` (`std::env::var(..).ok()`) has
    /// them: `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_MAX_QUEUE_SIZE`,
    /// and `OTEL_BSP_SCHEDULE_DELAY` and `OTEL_BSP_EXPORT_TIMEOUT` in
    /// milliseconds. As the specification says, a batch is never larger
    /// than the queue.
    pub fn with_batch_env(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let number = |name: &str| -> Result<Option<u64>, String> {
            let Some(text) = var(name) else {
                return Ok(None);
            };
            match text.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(format!(
                    "{name}={text:?} is not a whole number above 0; set it to one, or unset it for the default"
                )),
            }
        };
        if let Some(n) = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")? {
            self.batch_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = number("OTEL_BSP_MAX_QUEUE_SIZE")? {
            self.queue_capacity = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(ms) = number("OTEL_BSP_SCHEDULE_DELAY")? {
            self.flush_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = number("OTEL_BSP_EXPORT_TIMEOUT")? {
            self.timeout = Duration::from_millis(ms);
        }
        self.batch_size = self.batch_size.min(self.queue_capacity);
        Ok(self)
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            max_server_delay: self.max_retry_delay,
        }
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The gRPC endpoint is not a valid URI.
    #[error(
        "invalid OTLP endpoint '{endpoint}': {source}; give a URL such as http://127.0.0.1:4317"
    )]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    /// The OTLP/HTTP endpoint is not a plain `http://` URL.
    #[error(
        "invalid OTLP/HTTP endpoint '{endpoint}': {reason}; give a URL such as http://127.0.0.1:4318"
    )]
    HttpEndpoint { endpoint: String, reason: String },
}

/// Totals of one exporter's life.
///
/// `dropped == dropped_queue_full + dropped_export_failed + dropped_rejected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans lost, for any of the three reasons below.
    pub dropped: u64,
    /// Spans refused by [`SpanSink::send`]: the queue was full (export slower
    /// than span production) or the exporter had stopped.
    pub dropped_queue_full: u64,
    /// Spans in batches that failed: a non-retryable answer, or retryable
    /// failures until the attempts ran out.
    pub dropped_export_failed: u64,
    /// Spans the collector refused in a partial success (`rejected_spans`).
    pub dropped_rejected: u64,
    /// Export attempts beyond the first of each batch.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
    dropped_rejected: AtomicU64,
    retries: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn snapshot(&self) -> ExportStats {
        let dropped_queue_full = self.dropped_queue_full.load(Ordering::Relaxed);
        let dropped_export_failed = self.dropped_export_failed.load(Ordering::Relaxed);
        let dropped_rejected = self.dropped_rejected.load(Ordering::Relaxed);
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: dropped_queue_full + dropped_export_failed + dropped_rejected,
            dropped_queue_full,
            dropped_export_failed,
            dropped_rejected,
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// A cheap, clonable handle that queues spans for export.
#[derive(Debug, Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<EncodedSpan>,
    counters: Arc<Counters>,
}

impl SpanSink {
    /// Queues a span; never waits. A full queue drops the span and counts it.
    pub fn send(&self, span: Span) {
        self.offer(span);
    }

    /// Like [`send`](Self::send), and says whether the span was queued.
    pub fn offer(&self, span: Span) -> bool {
        self.offer_encoded(EncodedSpan::from_span(&span))
    }

    /// Queues a span already encoded (see [`crate::SpanWriter`]); says
    /// whether it was queued.
    pub fn offer_encoded(&self, span: EncodedSpan) -> bool {
        let queued = self.tx.try_send(span).is_ok();
        if !queued {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Totals so far.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Why the most recent failed batch failed (e.g. `gRPC Unavailable: ...`,
    /// `POST http://...: HTTP 400 Bad Request`), for a run summary.
    pub fn last_error(&self) -> Option<String> {
        self.counters
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Owns the background export task.
#[derive(Debug)]
pub struct Exporter {
    sink: SpanSink,
    close: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Exporter {
    /// Starts the export task. Connects lazily, so the collector may start later.
    pub fn start(config: ExporterConfig) -> Result<Exporter, ExportError> {
        let transport = Transport::new(&config.endpoint, config.protocol, config.timeout)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (close, closed) = tokio::sync::oneshot::channel();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(config, transport, rx, closed, counters.clone()));
        Ok(Exporter {
            sink: SpanSink { tx, counters },
            close,
            task,
        })
    }

    /// A handle for request tasks.
    pub fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    /// Exports everything queued so far, then stops. Spans sent through sinks
    /// after this call are counted as dropped.
    pub async fn shutdown(self) -> ExportStats {
        let Exporter { sink, close, task } = self;
        let _ = close.send(());
        let _ = task.await;
        sink.counters.snapshot()
    }
}

async fn run(
    config: ExporterConfig,
    transport: Transport<Traces>,
    mut rx: mpsc::Receiver<EncodedSpan>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
    counters: Arc<Counters>,
) {
    let batch_size = config.batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut tick = tokio::time::interval(config.flush_interval);
    let shipper = Shipper::new(config, transport, counters);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The batch is never full here, so a zero return means the queue is closed.
        let room = batch_size - batch.len();
        tokio::select! {
            received = rx.recv_many(&mut batch, room) => {
                if received == 0 {
                    break;
                }
                if batch.len() >= batch_size {
                    shipper.export(std::mem::take(&mut batch)).await;
                }
            }
            _ = tick.tick() => {
                if !batch.is_empty() {
                    shipper.export(std::mem::take(&mut batch)).await;
                }
            }
            _ = &mut closed => {
                // Refuse new spans (senders count them as dropped), keep what is queued.
                rx.close();
                loop {
                    let room = batch_size - batch.len();
                    if rx.recv_many(&mut batch, room).await == 0 {
                        break;
                    }
                    if batch.len() >= batch_size {
                        shipper.export(std::mem::take(&mut batch)).await;
                    }
                }
                break;
            }
        }
    }
    if !batch.is_empty() {
        shipper.export(batch).await;
    }
}

/// The trace signal: `TraceService/Export` and `/v1/traces`. Requests are
/// assembled from spans already encoded, so they go out as raw bytes.
pub(crate) struct Traces;

impl Signal for Traces {
    type Request = RawMessage;
    type Response = ExportTraceServiceResponse;
    const HTTP_PATH: &'static str = "/v1/traces";

    async fn grpc_export(
        channel: Channel,
        request: RawMessage,
    ) -> Result<ExportTraceServiceResponse, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        );
        let codec = tonic_prost::ProstCodec::<RawMessage, ExportTraceServiceResponse>::default();
        grpc.unary(tonic::Request::new(request), path, codec)
            .await
            .map(tonic::Response::into_inner)
    }

    fn rejected(response: &ExportTraceServiceResponse) -> u64 {
        response
            .partial_success
            .as_ref()
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
    }
}

/// The resource every request carries.
pub(crate) fn resource(attributes: &[KeyValue]) -> Resource {
    Resource {
        attributes: attributes.to_vec(),
        ..Default::default()
    }
}

/// The instrumentation scope from its name and version.
pub(crate) fn scope((name, version): &(String, String)) -> InstrumentationScope {
    InstrumentationScope {
        name: name.clone(),
        version: version.clone(),
        ..Default::default()
    }
}

/// Sends batches: the resource and scope are encoded once, and each batch's
/// spans are spliced in after them.
struct Shipper {
    transport: Transport<Traces>,
    max_request_bytes: usize,
    retry_policy: RetryPolicy,
    counters: Arc<Counters>,
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Shipper {
    fn new(config: ExporterConfig, transport: Transport<Traces>, counters: Arc<Counters>) -> Self {
        Shipper {
            retry_policy: config.retry_policy(),
            max_request_bytes: config.max_request_bytes,
            resource: resource(&config.resource).encode_to_vec(),
            scope: scope(&config.scope).encode_to_vec(),
            transport,
            counters,
        }
    }

    /// Exports `spans` in as few requests as fit under the bound on a
    /// request's size (a span larger than the bound goes alone).
    async fn export(&self, spans: Vec<EncodedSpan>) {
        let room = self
            .max_request_bytes
            .saturating_sub(crate::encoded::request_overhead(
                &self.resource,
                &self.scope,
            ));
        let mut rest = &spans[..];
        while !rest.is_empty() {
            let mut bytes = crate::encoded::in_request(&rest[0]);
            let mut end = 1;
            while let Some(span) = rest.get(end) {
                bytes += crate::encoded::in_request(span);
                if bytes > room {
                    break;
                }
                end += 1;
            }
            self.export_request(&rest[..end]).await;
            rest = &rest[end..];
        }
    }

    async fn export_request(&self, spans: &[EncodedSpan]) {
        let count = spans.len() as u64;
        let request = crate::encoded::request(&self.resource, &self.scope, spans);
        let delivery = self
            .transport
            .export_with_retries(&request, &self.retry_policy)
            .await;
        let counters = &self.counters;
        counters
            .retries
            .fetch_add(u64::from(delivery.retries), Ordering::Relaxed);
        match delivery.result {
            Ok(rejected) => {
                let rejected = rejected.min(count);
                counters
                    .exported
                    .fetch_add(count - rejected, Ordering::Relaxed);
                counters
                    .dropped_rejected
                    .fetch_add(rejected, Ordering::Relaxed);
            }
            Err(failure) => {
                counters
                    .dropped_export_failed
                    .fetch_add(count, Ordering::Relaxed);
                *counters
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(failure.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ExporterConfig {
        ExporterConfig::new("http://127.0.0.1:4317", Vec::new())
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn batch_settings_come_from_the_sdk_environment_variables() {
        let unset = config().with_batch_env(env(&[])).unwrap();
        assert_eq!(unset.batch_size, 2048);
        assert_eq!(unset.queue_capacity, 65_536);

        let set = config()
            .with_batch_env(env(&[
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2048"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", " 100000 "),
                ("OTEL_BSP_SCHEDULE_DELAY", "50"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "3000"),
            ]))
            .unwrap();
        assert_eq!(set.batch_size, 2048);
        assert_eq!(set.queue_capacity, 100_000);
        assert_eq!(set.flush_interval, Duration::from_millis(50));
        assert_eq!(set.timeout, Duration::from_secs(3));

        // A batch never outgrows the queue.
        let small = config()
            .with_batch_env(env(&[("OTEL_BSP_MAX_QUEUE_SIZE", "100")]))
            .unwrap();
        assert_eq!(small.batch_size, 100);

        for bad in ["0", "-5", "lots", ""] {
            let err = config()
                .with_batch_env(env(&[("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", bad)]))
                .unwrap_err();
            assert!(
                err.starts_with("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=") && err.contains("whole number"),
                "{err}"
            );
        }
    }
}
