//! The OTLP span path out of a process that makes spans (the generator, the demo
//! system): spans go into a bounded queue, a background task batches them and
//! exports each batch over OTLP/gRPC; nothing is dropped without being counted.
//!
//! ```text
//!  request task ─span─▶ SpanSink (bounded queue) ─batch─▶ TraceService/Export ─▶ collector
//!                          │ full: dropped += 1          │ failed after retries: dropped += n
//! ```

pub mod attributes;
pub mod export;
pub mod trace_context;

pub use export::{ExportError, ExportStats, Exporter, ExporterConfig, SpanSink};
pub use trace_context::{SpanId, TraceContext, TraceId};

/// Re-exported so callers build spans with the same proto types the exporter sends.
pub use opentelemetry_proto::tonic::trace::v1 as proto_trace;
