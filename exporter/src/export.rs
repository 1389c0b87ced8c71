//! Batching OTLP/gRPC span export with a bounded queue and explicit drop counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Resource attributes sent with every batch (`service.name` ...).
    pub resource: Vec<KeyValue>,
    /// Instrumentation scope name and version.
    pub scope: (String, String),
    /// Spans per export request.
    pub batch_size: usize,
    /// Spans the queue holds before new spans are dropped (and counted).
    pub queue_capacity: usize,
    /// Longest a span waits in a partial batch.
    pub flush_interval: Duration,
    /// Attempts per batch before its spans count as dropped.
    pub max_attempts: u32,
}

impl ExporterConfig {
    pub fn new(endpoint: impl Into<String>, resource: Vec<KeyValue>) -> Self {
        ExporterConfig {
            endpoint: endpoint.into(),
            resource,
            scope: ("loadlens".into(), env!("CARGO_PKG_VERSION").into()),
            batch_size: 512,
            queue_capacity: 1 << 16,
            flush_interval: Duration::from_millis(200),
            max_attempts: 5,
        }
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "invalid OTLP endpoint '{endpoint}': {source}; give a URL such as http://127.0.0.1:4317"
    )]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

/// Totals of one exporter's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans lost: queue full, export failed after retries, or rejected by the collector.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A cheap, clonable handle that queues spans for export.
#[derive(Debug, Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Span>,
    counters: Arc<Counters>,
}

impl SpanSink {
    /// Queues a span; never waits. A full queue drops the span and counts it.
    pub fn send(&self, span: Span) {
        self.offer(span);
    }

    /// Like [`send`](Self::send), and says whether the span was queued.
    pub fn offer(&self, span: Span) -> bool {
        let queued = self.tx.try_send(span).is_ok();
        if !queued {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Totals so far.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
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
        let channel = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|source| ExportError::Endpoint {
                endpoint: config.endpoint.clone(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (close, closed) = tokio::sync::oneshot::channel();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(config, channel, rx, closed, counters.clone()));
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
    channel: Channel,
    mut rx: mpsc::Receiver<Span>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
    counters: Arc<Counters>,
) {
    let mut client = TraceServiceClient::new(channel);
    let batch_size = config.batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut tick = tokio::time::interval(config.flush_interval);
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
                    export_batch(&config, &mut client, std::mem::take(&mut batch), &counters).await;
                }
            }
            _ = tick.tick() => {
                if !batch.is_empty() {
                    export_batch(&config, &mut client, std::mem::take(&mut batch), &counters).await;
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
                        export_batch(&config, &mut client, std::mem::take(&mut batch), &counters).await;
                    }
                }
                break;
            }
        }
    }
    if !batch.is_empty() {
        export_batch(&config, &mut client, batch, &counters).await;
    }
}

async fn export_batch(
    config: &ExporterConfig,
    client: &mut TraceServiceClient<Channel>,
    spans: Vec<Span>,
    counters: &Counters,
) {
    let count = spans.len() as u64;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: config.resource.clone(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: config.scope.0.clone(),
                    version: config.scope.1.clone(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=config.max_attempts.max(1) {
        match client.export(request.clone()).await {
            Ok(response) => {
                let rejected = response
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_spans.max(0) as u64)
                    .min(count);
                counters
                    .exported
                    .fetch_add(count - rejected, Ordering::Relaxed);
                counters.dropped.fetch_add(rejected, Ordering::Relaxed);
                return;
            }
            Err(status) if attempt < config.max_attempts && retryable(status.code()) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(_) => break,
        }
    }
    counters.dropped.fetch_add(count, Ordering::Relaxed);
}

/// The gRPC codes the OTLP specification lists as retryable.
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Cancelled
            | DeadlineExceeded
            | Aborted
            | OutOfRange
            | Unavailable
            | DataLoss
            | ResourceExhausted
    )
}
