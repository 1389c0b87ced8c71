//! The load generator: sends real HTTP requests on a schedule and emits one
//! OTLP CLIENT span per request, with the W3C `traceparent` (and `tracestate`,
//! when the scenario sets one) passed to the target.
//!
//! ```text
//!  scenario.yaml ─▶ scenario (parse, every key checked) ─▶ plan (compiled: templates, mix, stages)
//!                                                            │
//!  load (arrivals: constant · ramping · poisson; closed VUs; ladder) ─▶ engine::iteration
//!      each step: template ─▶ http (send, first byte, end; token from auth) ─▶ checks/extract
//!        ├─▶ stats (HDR histograms) ─▶ summary, thresholds (exit 1)
//!        ├─▶ span::client_span ─▶ exporter::SpanSink ─▶ OTLP/gRPC ─▶ collector
//!        └─▶ ledger (straight into the store, never dropped)
//! ```
//! At the end one `loadlens.run` span carries the run manifest to the `runs` table.

pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
pub mod h1;
pub mod http;
pub mod ledger;
pub mod load;
pub mod metrics;
pub mod plan;
pub mod run;
pub mod scenario;
pub mod span;
pub mod stats;
pub mod summary;
pub mod thresholds;

pub use config::{LoadModel, RunConfig};
pub use exporter::TraceState;
pub use plan::Plan;
pub use run::{RunError, run};
pub use scenario::{ScenarioError, ScenarioFile};
pub use summary::{RunSummary, StageSummary};
