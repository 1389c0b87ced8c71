//! The OTLP span path out of a process that makes spans (the generator, the demo
//! system): spans go into a bounded queue, a background task batches them and
//! exports each batch over OTLP/gRPC or OTLP/HTTP (protobuf); nothing is dropped
//! without being counted, and the count says why.
//!
//! ```text
//!  request task ─span─▶ SpanSink (bounded queue) ─batch─▶ TraceService/Export | POST /v1/traces ─▶ collector
//!                          │ full: dropped_queue_full     │ retryable: wait RetryInfo / Retry-After, else backoff
//!                                                         │ failed: dropped_export_failed, partial: dropped_rejected
//! ```
//!
//! Metrics take a shorter path: the caller builds cumulative `Metric`s (see
//! [`metrics`], with [`ExpHistogram`] for latency) and awaits
//! [`MetricsExporter::export`], which retries the same way.

pub mod attributes;
pub mod encoded;
pub mod export;
pub mod metrics;
pub mod trace_context;
pub mod transport;

pub use encoded::{EncodedSpan, SpanWriter};
pub use export::{ExportError, ExportStats, Exporter, ExporterConfig, SpanSink};
pub use metrics::{ExpHistogram, MetricsConfig, MetricsExporter, MetricsStats};
pub use trace_context::{SpanId, TraceContext, TraceId, TraceState, TraceStateError};
pub use transport::{Protocol, UnknownProtocol};

/// Re-exported so callers build spans with the same proto types the exporter sends.
pub use opentelemetry_proto::tonic::trace::v1 as proto_trace;

/// The metric proto types, as `proto_trace` is for spans (also `metrics::proto`).
pub use opentelemetry_proto::tonic::metrics::v1 as proto_metrics;
