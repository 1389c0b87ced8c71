//! The end-of-run summary: what was sent, how fast, how it went, whether
//! thresholds held. Printed as a table and written by `--summary-json`
//! (its JSON Schema: `generator/summary.schema.json`).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::Totals;
use crate::thresholds::Verdict;

/// What the run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub scenario: String,
    /// `constant`, `ramping`, `poisson`, `closed` or `ladder`.
    pub model: String,
    pub shard: u32,
    pub shard_count: u32,
    pub started_at_unix_nanos: i64,
    pub ended_at_unix_nanos: i64,
    /// Measured seconds (warm-up excluded).
    pub duration_s: f64,
    /// Requests started, warm-up included.
    pub requests_sent: u64,
    /// Measured requests (warm-up excluded) and how they ended.
    pub requests: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Share of measured requests that succeeded (1 with no requests).
    pub success_rate: f64,
    /// Measured requests per second.
    pub throughput_rps: f64,
    /// Latency from the intended start, ms (HDR histogram, 3 significant digits).
    pub latency_ms: Percentiles,
    /// Service time from the actual send, ms.
    pub service_time_ms: Percentiles,
    pub errors_by_type: BTreeMap<String, u64>,
    /// Arrivals not started because `max_in_flight` iterations were running.
    pub requests_dropped: u64,
    /// Arrivals started more than 10 ms after they were due.
    pub iterations_late: u64,
    /// Requests of the warm-up stage (left out of the figures above).
    pub warmup_requests: u64,
    pub checks: u64,
    pub checks_failed: u64,
    /// Request spans accepted by the collector (0 with telemetry off).
    pub spans_exported: u64,
    /// Request spans lost on the way to the collector.
    pub spans_dropped: u64,
    /// Request spans left out by sampling.
    pub spans_sampled_out: u64,
    /// Whether the run manifest reached the collector.
    pub manifest_exported: bool,
    /// The token provider, if the scenario has one.
    pub auth: Option<AuthSummary>,
    /// The ledger written to the store, if any.
    pub ledger: Option<LedgerSummary>,
    pub stages: Vec<StageSummary>,
    pub steps: Vec<StepSummary>,
    pub thresholds: Vec<Verdict>,
    /// Whether every threshold passed (true with none).
    pub thresholds_passed: bool,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
}

/// Token provider totals.
#[derive(Debug, Clone, Serialize)]
pub struct AuthSummary {
    /// Tokens fetched (the first included).
    pub refreshes: u64,
    /// Token fetches that failed.
    pub failures: u64,
    /// Requests sent again after a 401.
    pub retries: u64,
}

/// Where the ledger went.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerSummary {
    pub rows: u64,
    pub files: usize,
    pub error: Option<String>,
}

/// One stage (warm-up, a ladder step, a ramp stage, or the whole run).
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub stage: String,
    pub warmup: bool,
    /// Target concurrency (closed, ladder) or rate (open models; a ramp's end rate).
    pub target: f64,
    pub duration_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub dropped: u64,
    /// Completed requests per second over the stage.
    pub throughput_rps: f64,
    pub latency_ms: Percentiles,
    pub service_time_ms: Percentiles,
}

/// One request name (measured stages only).
#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    pub step: String,
    pub requests: u64,
    pub errors: u64,
    pub latency_ms: Percentiles,
    pub service_time_ms: Percentiles,
}

/// Percentiles in ms from an HDR histogram (values within 0.1%).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        let q = |q: f64| ms(h.value_at_quantile(q));
        Percentiles {
            min: ms(h.min()),
            mean: h.mean() / 1e6,
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            p99_9: q(0.999),
            max: ms(h.max()),
        }
    }
}

impl StageSummary {
    pub fn of(stage: String, warmup: bool, target: f64, t: &Totals) -> Self {
        StageSummary {
            stage,
            warmup,
            target,
            duration_s: t.seconds,
            requests: t.requests,
            errors: t.errors,
            dropped: t.dropped,
            throughput_rps: rate(t.requests, t.seconds),
            latency_ms: Percentiles::of(&t.latency),
            service_time_ms: Percentiles::of(&t.service),
        }
    }
}

/// Per second, 0 over no time.
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl RunSummary {
    /// The summary as a human reads it.
    pub fn render(&self) -> String {
        let mut out = format!(
            "run {}  scenario {}  ({} model{})\n",
            self.run_id,
            self.scenario,
            self.model,
            if self.shard_count > 1 {
                format!(", shard {}/{}", self.shard, self.shard_count)
            } else {
                String::new()
            }
        );
        out.push_str(&format!(
            "  requests {}  ok {}  failed {}  success {:.2}%  {:.1} req/s over {:.1} s",
            self.requests,
            self.requests_ok,
            self.requests_failed,
            100.0 * self.success_rate,
            self.throughput_rps,
            self.duration_s
        ));
        if self.warmup_requests > 0 {
            out.push_str(&format!(
                "  (+{} warm-up, not counted)",
                self.warmup_requests
            ));
        }
        out.push('\n');
        if self.requests_dropped > 0 || self.iterations_late > 0 {
            out.push_str(&format!(
                "  iterations dropped at the in-flight bound {}, started late (>10 ms) {}\n",
                self.requests_dropped, self.iterations_late
            ));
        }
        let l = &self.latency_ms;
        let s = &self.service_time_ms;
        out.push_str(&format!(
            "  {:<26} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "ms", "p50", "p90", "p95", "p99", "p99.9", "max"
        ));
        for (name, p) in [
            ("latency (from intended)", l),
            ("service time (from send)", s),
        ] {
            out.push_str(&format!(
                "  {:<26} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                name, p.p50, p.p90, p.p95, p.p99, p.p99_9, p.max
            ));
        }
        if self.stages.len() > 1 {
            out.push_str(&format!(
                "  {:<12} {:>9} {:>10} {:>9} {:>9} {:>9} {:>8}\n",
                "stage", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
            ));
            for st in &self.stages {
                out.push_str(&format!(
                    "  {:<12} {:>9} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>7.2}%\n",
                    st.stage,
                    st.requests,
                    st.throughput_rps,
                    st.latency_ms.p50,
                    st.latency_ms.p99,
                    st.latency_ms.max,
                    100.0 * st.errors as f64 / st.requests.max(1) as f64
                ));
            }
        }
        if self.steps.len() > 1 {
            out.push_str(&format!(
                "  {:<24} {:>9} {:>9} {:>9} {:>8}\n",
                "step", "requests", "p50 ms", "p99 ms", "errors"
            ));
            for st in &self.steps {
                out.push_str(&format!(
                    "  {:<24} {:>9} {:>9.2} {:>9.2} {:>8}\n",
                    st.step, st.requests, st.latency_ms.p50, st.latency_ms.p99, st.errors
                ));
            }
        }
        if !self.errors_by_type.is_empty() {
            let errors: Vec<String> = self
                .errors_by_type
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!("  errors by type: {}\n", errors.join(", ")));
        }
        if self.checks > 0 {
            out.push_str(&format!(
                "  checks: {} run, {} failed\n",
                self.checks, self.checks_failed
            ));
        }
        if let Some(auth) = &self.auth {
            out.push_str(&format!(
                "  tokens: {} fetched, {} fetches failed, {} requests retried after 401\n",
                auth.refreshes, auth.failures, auth.retries
            ));
        }
        out.push_str(&format!(
            "  spans: {} exported, {} dropped, {} sampled out\n",
            self.spans_exported, self.spans_dropped, self.spans_sampled_out
        ));
        if let Some(ledger) = &self.ledger {
            out.push_str(&format!(
                "  ledger: {} rows in {} files{}\n",
                ledger.rows,
                ledger.files,
                ledger
                    .error
                    .as_ref()
                    .map(|e| format!(" — write failed: {e}"))
                    .unwrap_or_default()
            ));
        }
        for v in &self.thresholds {
            out.push_str(&format!(
                "  {} {}  (observed {})\n",
                if v.passed { "✓" } else { "✗" },
                v.threshold,
                if v.observed.is_nan() {
                    "nothing".to_string()
                } else {
                    format!("{:.4}", v.observed)
                }
            ));
        }
        if let Some(reason) = &self.aborted {
            out.push_str(&format!("  aborted: {reason}\n"));
        }
        out
    }
}
