//! OTLP metrics built by the caller; [`ExpHistogram`] accumulates latency.

pub mod exp_histogram;

pub use exp_histogram::ExpHistogram;
