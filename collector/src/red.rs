//! Live RED metrics (rate, errors, duration) of load runs, derived from the
//! generator's request spans as they arrive, so Prometheus and Grafana can show
//! a run while it happens. Cardinality is bounded: at most [`MAX_SERIES`]
//! (run, step) series are kept, the least recently updated dropped first.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use opentelemetry_proto::tonic::trace::v1::Span;
use schema::attr;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0,
];

/// Most (run, step) series kept.
pub const MAX_SERIES: usize = 1000;

pub const REQUESTS: &str = "loadlens_run_requests_total";
pub const ERRORS: &str = "loadlens_run_errors_total";
pub const LATENCY: &str = "loadlens_run_latency_seconds";

/// One generator request, as far as RED metrics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub run_id: String,
    pub step: String,
    pub error_type: Option<String>,
    /// From the intended start to the end, in seconds.
    pub latency_s: f64,
}

impl Sample {
    /// A sample from a generator request span (one with a run and request id).
    pub fn from_span(span: &Span, resource_run_id: Option<&str>) -> Option<Sample> {
        let mut run_id = resource_run_id.map(str::to_string);
        let (mut step, mut error_type, mut intended, mut is_request) = (None, None, None, false);
        for kv in &span.attributes {
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            use opentelemetry_proto::tonic::common::v1::any_value::Value;
            match (kv.key.as_str(), value) {
                (attr::RUN_ID, Some(Value::StringValue(v))) => run_id = Some(v.clone()),
                (attr::STEP, Some(Value::StringValue(v))) => step = Some(v.clone()),
                (attr::ERROR_TYPE, Some(Value::StringValue(v))) => error_type = Some(v.clone()),
                (attr::INTENDED_START, Some(Value::IntValue(v))) => intended = Some(*v),
                (attr::REQUEST_ID, Some(_)) => is_request = true,
                _ => {}
            }
        }
        if !is_request {
            return None;
        }
        let start = intended.unwrap_or(span.start_time_unix_nano as i64);
        Some(Sample {
            run_id: run_id?,
            step: step.unwrap_or_default(),
            error_type,
            latency_s: (span.end_time_unix_nano as i64 - start).max(0) as f64 / 1e9,
        })
    }
}

#[derive(Debug, Default)]
struct Series {
    requests: u64,
    errors: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    last_update: u64,
}

/// Series by (run, step), and a logical clock for least-recently-updated eviction.
#[derive(Debug, Default)]
struct Registry {
    clock: u64,
    series: HashMap<(String, String), Series>,
}

/// The RED series of all runs seen.
#[derive(Debug, Default)]
pub struct Red {
    registry: Mutex<Registry>,
}

impl Red {
    pub fn record(&self, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        let mut guard = self.registry.lock().expect("red lock");
        let Registry { clock, series } = &mut *guard;
        *clock += 1;
        for sample in samples {
            let entry = series
                .entry((sample.run_id.clone(), sample.step.clone()))
                .or_default();
            entry.requests += 1;
            entry.sum += sample.latency_s;
            entry.last_update = *clock;
            if let Some(bucket) = BUCKETS.iter().position(|&le| sample.latency_s <= le) {
                entry.buckets[bucket] += 1;
            }
            if let Some(error) = &sample.error_type {
                *entry.errors.entry(error.clone()).or_default() += 1;
            }
        }
        while series.len() > MAX_SERIES {
            let oldest = series
                .iter()
                .min_by_key(|(_, s)| s.last_update)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            series.remove(&oldest);
        }
    }

    /// The series in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let guard = self.registry.lock().expect("red lock");
        let mut series: Vec<_> = guard.series.iter().collect();
        series.sort_by(|a, b| a.0.cmp(b.0));
        let _ = writeln!(
            out,
            "# HELP {REQUESTS} Requests of load runs received, by run and step."
        );
        let _ = writeln!(out, "# TYPE {REQUESTS} counter");
        for ((run, step), s) in &series {
            let _ = writeln!(
                out,
                "{REQUESTS}{{run_id=\"{}\",step=\"{}\"}} {}",
                escape(run),
                escape(step),
                s.requests
            );
        }
        let _ = writeln!(
            out,
            "# HELP {ERRORS} Failed requests of load runs, by run, step and error type."
        );
        let _ = writeln!(out, "# TYPE {ERRORS} counter");
        for ((run, step), s) in &series {
            for (error, count) in &s.errors {
                let _ = writeln!(
                    out,
                    "{ERRORS}{{run_id=\"{}\",step=\"{}\",error_type=\"{}\"}} {count}",
                    escape(run),
                    escape(step),
                    escape(error)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {LATENCY} Latency of load-run requests from their intended start, by run and step."
        );
        let _ = writeln!(out, "# TYPE {LATENCY} histogram");
        for ((run, step), s) in &series {
            let labels = format!("run_id=\"{}\",step=\"{}\"", escape(run), escape(step));
            let mut cumulative = 0;
            for (le, count) in BUCKETS.iter().zip(s.buckets) {
                cumulative += count;
                let _ = writeln!(out, "{LATENCY}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(
                out,
                "{LATENCY}_bucket{{{labels},le=\"+Inf\"}} {}",
                s.requests
            );
            let _ = writeln!(out, "{LATENCY}_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "{LATENCY}_count{{{labels}}} {}", s.requests);
        }
    }
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(run: &str, latency_s: f64, error: Option<&str>) -> Sample {
        Sample {
            run_id: run.into(),
            step: "GET /a".into(),
            error_type: error.map(str::to_string),
            latency_s,
        }
    }

    #[test]
    fn histogram_is_cumulative_and_errors_are_split() {
        let red = Red::default();
        red.record(&[
            sample("r1", 0.002, None),
            sample("r1", 0.02, Some("http_5xx")),
            sample("r1", 200.0, Some("timeout")),
        ]);
        let mut text = String::new();
        red.render(&mut text);
        let labels = "run_id=\"r1\",step=\"GET /a\"";
        assert!(
            text.contains(&format!("{REQUESTS}{{{labels}}} 3\n")),
            "{text}"
        );
        assert!(text.contains(&format!("{ERRORS}{{{labels},error_type=\"timeout\"}} 1\n")));
        assert!(text.contains(&format!("{LATENCY}_bucket{{{labels},le=\"0.0025\"}} 1\n")));
        assert!(text.contains(&format!("{LATENCY}_bucket{{{labels},le=\"0.025\"}} 2\n")));
        assert!(text.contains(&format!("{LATENCY}_bucket{{{labels},le=\"100\"}} 2\n")));
        assert!(text.contains(&format!("{LATENCY}_bucket{{{labels},le=\"+Inf\"}} 3\n")));
    }

    #[test]
    fn series_are_bounded() {
        let red = Red::default();
        for i in 0..MAX_SERIES + 10 {
            red.record(&[sample(&format!("run-{i}"), 0.01, None)]);
        }
        let mut text = String::new();
        red.render(&mut text);
        assert!(
            !text.contains("run_id=\"run-0\""),
            "the oldest series is dropped"
        );
        assert!(text.contains(&format!("run_id=\"run-{}\"", MAX_SERIES + 9)));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
