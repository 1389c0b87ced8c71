//! The load generator: sends real HTTP requests on a schedule and emits one OTLP
//! CLIENT span per request, with the W3C `traceparent` passed to the target.
//!
//! ```text
//!  RunConfig ─▶ schedule (open: arrivals at a rate · closed: N workers · ladder: N per step)
//!                  │ each request: intended start ─▶ http (send, first byte, end)
//!                  ├─▶ span::client_span ─▶ exporter::SpanSink ─▶ OTLP/gRPC ─▶ collector
//!                  └─▶ summary (per stage: throughput, exact percentiles, errors)
//! ```
//! At the end one `loadlens.run` span carries the run manifest to the `runs` table.

pub mod clock;
pub mod config;
pub mod http;
pub mod run;
pub mod schedule;
pub mod span;
pub mod summary;

pub use config::{LoadModel, RunConfig};
pub use run::{RunError, run};
pub use summary::{RunSummary, StageSummary};
