//! The end-of-run summary: per stage throughput, exact latency percentiles and errors.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::http::ErrorType;

/// What the run did, printed at the end and written by `--summary-json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub scenario: String,
    pub model: String,
    pub started_at_unix_nanos: i64,
    pub ended_at_unix_nanos: i64,
    /// Requests started (sent or failed while sending).
    pub requests_sent: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Arrivals not started because `max_in_flight` requests were already running.
    pub requests_dropped: u64,
    /// Request spans accepted by the collector (0 with telemetry off).
    pub spans_exported: u64,
    /// Request spans lost on the way to the collector.
    pub spans_dropped: u64,
    /// Whether the run manifest reached the collector.
    pub manifest_exported: bool,
    pub errors_by_type: BTreeMap<String, u64>,
    pub stages: Vec<StageSummary>,
}

/// One stage (a ladder step, or the whole run for open and closed models).
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub stage: String,
    /// Target concurrency (closed, ladder) or rate (open).
    pub target: f64,
    pub duration_s: f64,
    pub requests: u64,
    pub errors: u64,
    /// Completed requests per second over the stage.
    pub throughput_rps: f64,
    /// Latency from the intended start, in ms.
    pub latency_ms: Percentiles,
    /// Service time from the actual send, in ms.
    pub service_time_ms: Percentiles,
}

/// Exact percentiles (linear interpolation between closest ranks) in ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// From durations in ns; sorts them in place.
    pub fn from_nanos(values: &mut [i64]) -> Self {
        values.sort_unstable();
        let ms = |v: f64| v / 1e6;
        let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
        Percentiles {
            mean: if values.is_empty() {
                0.0
            } else {
                ms(sum as f64 / values.len() as f64)
            },
            p50: ms(quantile_sorted(values, 0.50)),
            p95: ms(quantile_sorted(values, 0.95)),
            p99: ms(quantile_sorted(values, 0.99)),
            max: ms(values.last().copied().unwrap_or(0) as f64),
        }
    }
}

/// The q-quantile of sorted values, interpolating linearly between the closest
/// ranks (Hyndman–Fan type 7, numpy's default). 0 for no values.
pub fn quantile_sorted(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let h = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    a + (b - a) * (h - lo as f64)
}

/// Per-stage accumulation while the run goes.
#[derive(Debug, Default)]
pub(crate) struct StageStats {
    pub latencies: Vec<i64>,
    pub service_times: Vec<i64>,
    pub errors: u64,
    pub errors_by_type: BTreeMap<ErrorType, u64>,
}

impl StageStats {
    pub fn record(&mut self, latency_ns: i64, service_ns: i64, error: Option<ErrorType>) {
        self.latencies.push(latency_ns);
        self.service_times.push(service_ns);
        if let Some(error) = error {
            self.errors += 1;
            *self.errors_by_type.entry(error).or_default() += 1;
        }
    }

    pub fn summarize(mut self, stage: String, target: f64, duration_s: f64) -> StageSummary {
        let requests = self.latencies.len() as u64;
        StageSummary {
            stage,
            target,
            duration_s,
            requests,
            errors: self.errors,
            throughput_rps: if duration_s > 0.0 {
                requests as f64 / duration_s
            } else {
                0.0
            },
            latency_ms: Percentiles::from_nanos(&mut self.latencies),
            service_time_ms: Percentiles::from_nanos(&mut self.service_times),
        }
    }
}

impl RunSummary {
    /// A human-readable table of the stages.
    pub fn render(&self) -> String {
        let mut out = format!(
            "run {}  ({} model, {} requests, {} failed, {} dropped; spans exported {}, dropped {})\n",
            self.run_id,
            self.model,
            self.requests_sent,
            self.requests_failed,
            self.requests_dropped,
            self.spans_exported,
            self.spans_dropped
        );
        out.push_str(&format!(
            "{:<10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
            "stage", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"
        ));
        for s in &self.stages {
            out.push_str(&format!(
                "{:<10} {:>9} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.2}%\n",
                s.stage,
                s.requests,
                s.throughput_rps,
                s.latency_ms.p50,
                s.latency_ms.p95,
                s.latency_ms.p99,
                s.latency_ms.max,
                if s.requests > 0 {
                    100.0 * s.errors as f64 / s.requests as f64
                } else {
                    0.0
                }
            ));
        }
        if !self.errors_by_type.is_empty() {
            let errors: Vec<String> = self
                .errors_by_type
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!("errors by type: {}\n", errors.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let v = [10, 20, 30, 40];
        assert_eq!(quantile_sorted(&v, 0.0), 10.0);
        assert_eq!(quantile_sorted(&v, 1.0), 40.0);
        assert_eq!(quantile_sorted(&v, 0.5), 25.0);
        // h = 0.9 * 3 = 2.7 → 30 + 0.7 * 10
        assert!((quantile_sorted(&v, 0.9) - 37.0).abs() < 1e-9);
        assert_eq!(quantile_sorted(&[], 0.5), 0.0);
        assert_eq!(quantile_sorted(&[7], 0.99), 7.0);
    }
}
