//! The analysis models, as plain numeric code: no DataFusion, no I/O.
//!
//! ```text
//!  store ─▶ analyzer (SQL gathers the inputs) ─▶ models ─▶ analyzer (CLI output, SQL functions, reports)
//! ```
//!
//! Keeping the mathematics apart from the query engine lets its unit and
//! property tests build and run in seconds, and lets each model be checked
//! against published reference data on its own.

pub mod changepoint;
pub mod compare;
pub mod critical_path;
pub mod dist;
pub mod quantile;
pub mod rng;
pub mod slo;
pub mod usl;
