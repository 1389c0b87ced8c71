//! Live RED metrics (rate, errors, duration) of load runs, derived from the
//! generator's request spans as they arrive, so Prometheus and Grafana can show
//! a run while it happens. Cardinality is bounded: at most [`MAX_SERIES`]
//! (run, step) series are kept, the least recently updated dropped first.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use crate::convert::keys::{self, Index};
use crate::convert::values::{Attr, ValueRef};
use crate::short;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0,
];

/// Most (run, step) series kept.
pub const MAX_SERIES: usize = 1000;

pub const REQUESTS: &str = "loadlens_run_requests_total";
pub const ERRORS: &str = "loadlens_run_errors_total";
pub const LATENCY: &str = "loadlens_run_latency_seconds";

/// The RED figures of one request's spans by (run, step): tallied while the
/// spans are converted, merged into [`Red`] once the request is durable. A
/// request holds few series, so a short list is searched; a span of a series
/// already there allocates nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    series: Vec<((String, String), Series)>,
}

impl Tally {
    /// Counts a generator request span (one with a run and request id), given
    /// its attributes and start and end times; other spans are left out.
    pub(crate) fn add_span<'a>(
        &mut self,
        attributes: &[Attr<'a>],
        index: &Index,
        start_time: u64,
        end_time: u64,
        resource_run_id: Option<&'a str>,
    ) {
        let mut run_id = resource_run_id;
        let (mut step, mut error_type, mut intended, mut is_request) = (None, None, None, false);
        let mut take = |attr: &Attr<'a>| match (attr.slot, attr.value) {
            (Some(keys::RUN_ID), Some(ValueRef::Str(v))) => run_id = Some(v),
            (Some(keys::STEP), Some(ValueRef::Str(v))) => step = Some(v),
            (Some(keys::ERROR_TYPE), Some(ValueRef::Str(v))) => error_type = Some(v),
            (Some(keys::INTENDED_START), Some(ValueRef::Int(v))) => intended = Some(v),
            (Some(keys::REQUEST_ID), Some(_)) => is_request = true,
            _ => {}
        };
        if index.repeated() {
            // The last value of the right type wins.
            attributes.iter().for_each(take);
        } else {
            [
                keys::RUN_ID,
                keys::STEP,
                keys::ERROR_TYPE,
                keys::INTENDED_START,
                keys::REQUEST_ID,
            ]
            .into_iter()
            .filter_map(|slot| index.first(slot))
            .for_each(|at| take(&attributes[at]));
        }
        let (Some(run_id), true) = (run_id, is_request) else {
            return;
        };
        let start = intended.unwrap_or(start_time as i64);
        let latency_s = (end_time as i64 - start).max(0) as f64 / 1e9;
        self.add(run_id, step.unwrap_or_default(), error_type, latency_s);
    }

    /// Counts one request of `run_id` and `step`.
    pub fn add(&mut self, run_id: &str, step: &str, error_type: Option<&str>, latency_s: f64) {
        let at = match self.series.iter().position(|((r, s), _)| {
            short::eq(r.as_bytes(), run_id.as_bytes()) && short::eq(s.as_bytes(), step.as_bytes())
        }) {
            Some(at) => at,
            None => {
                let key = (run_id.to_string(), step.to_string());
                self.series.push((key, Series::default()));
                self.series.len() - 1
            }
        };
        self.series[at].1.count(latency_s, error_type);
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Series {
    requests: u64,
    errors: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    last_update: u64,
}

impl Series {
    fn count(&mut self, latency_s: f64, error_type: Option<&str>) {
        self.requests += 1;
        self.sum += latency_s;
        if let Some(bucket) = BUCKETS.iter().position(|&le| latency_s <= le) {
            self.buckets[bucket] += 1;
        }
        if let Some(error) = error_type {
            match self.errors.get_mut(error) {
                Some(n) => *n += 1,
                None => {
                    self.errors.insert(error.to_string(), 1);
                }
            }
        }
    }

    fn merge(&mut self, other: &Series) {
        self.requests += other.requests;
        self.sum += other.sum;
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        for (error, n) in &other.errors {
            *self.errors.entry(error.clone()).or_default() += n;
        }
    }
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
    pub fn record(&self, tally: &Tally) {
        if tally.is_empty() {
            return;
        }
        let mut guard = self.registry.lock().expect("red lock");
        let Registry { clock, series } = &mut *guard;
        *clock += 1;
        for (key, counted) in &tally.series {
            let entry = match series.get_mut(key) {
                Some(entry) => entry,
                None => series.entry(key.clone()).or_default(),
            };
            entry.merge(counted);
            entry.last_update = *clock;
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

    fn tally(samples: &[(&str, f64, Option<&str>)]) -> Tally {
        let mut tally = Tally::default();
        for &(run, latency_s, error) in samples {
            tally.add(run, "GET /a", error, latency_s);
        }
        tally
    }

    #[test]
    fn histogram_is_cumulative_and_errors_are_split() {
        let red = Red::default();
        red.record(&tally(&[
            ("r1", 0.002, None),
            ("r1", 0.02, Some("http_5xx")),
        ]));
        red.record(&tally(&[("r1", 200.0, Some("timeout"))]));
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
    fn a_tally_keeps_a_series_per_run_and_step() {
        // Runs and steps of one length that differ in one byte, the first
        // or the last.
        let mut tally = Tally::default();
        for (run, step) in [
            ("run-10", "GET /a"),
            ("run-10", "GET /b"),
            ("run-11", "GET /a"),
            ("run-10", "GET /a"),
            ("sun-10", "GET /a"),
            ("run-10", "PUT /a"),
        ] {
            tally.add(run, step, None, 0.01);
        }
        let red = Red::default();
        red.record(&tally);
        let mut text = String::new();
        red.render(&mut text);
        for (run, step, requests) in [
            ("run-10", "GET /a", 2),
            ("run-10", "GET /b", 1),
            ("run-11", "GET /a", 1),
            ("sun-10", "GET /a", 1),
            ("run-10", "PUT /a", 1),
        ] {
            let line = format!("{REQUESTS}{{run_id=\"{run}\",step=\"{step}\"}} {requests}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn series_are_bounded() {
        let red = Red::default();
        for i in 0..MAX_SERIES + 10 {
            red.record(&tally(&[(&format!("run-{i}"), 0.01, None)]));
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
