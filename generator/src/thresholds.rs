//! Pass/fail criteria in the k6 style: `http_req_duration: ["p(99)<250"]`,
//! `errors: ["rate<0.01"]`. A failed threshold makes `loadlens run` exit 1;
//! one marked `abort_on_fail` stops the run as soon as it fails.
//!
//! | metric | aggregations | unit |
//! | --- | --- | --- |
//! | `http_req_duration` (`{step:NAME}` for one request) | `p(N)`, `avg`, `min`, `max`, `med` | ms, from the intended start |
//! | `service_time` (`{step:NAME}`) | same | ms, from the actual send |
//! | `errors` (`{step:NAME}`) | `rate` (of requests), `count` | |
//! | `checks` | `rate` (of checks that passed), `count` (failed) | |
//! | `http_reqs` | `count`, `rate` (per second) | |
//! | `dropped_iterations` | `count`, `rate` (of arrivals) | |

use serde::Serialize;

use crate::plan::RequestPlan;
use crate::scenario::ThresholdSpec;
use crate::stats::Totals;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    HttpReqDuration,
    ServiceTime,
    Errors,
    Checks,
    HttpReqs,
    DroppedIterations,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Agg {
    Percentile(f64),
    Avg,
    Min,
    Max,
    Rate,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// One parsed threshold.
#[derive(Debug, Clone)]
pub struct Threshold {
    /// As written: `http_req_duration{step:login}: p(99)<250`.
    pub source: String,
    metric: Metric,
    step: Option<usize>,
    agg: Agg,
    op: Op,
    value: f64,
    pub abort_on_fail: bool,
}

/// A threshold's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub threshold: String,
    pub observed: f64,
    pub passed: bool,
    pub abort_on_fail: bool,
}

impl Threshold {
    /// Parses `metric` (with an optional `{step:NAME}`) and one expression.
    pub fn parse(
        metric: &str,
        spec: &ThresholdSpec,
        requests: &[RequestPlan],
    ) -> Result<Threshold, String> {
        let (expr, abort_on_fail) = match spec {
            ThresholdSpec::Plain(e) => (e.as_str(), false),
            ThresholdSpec::Full {
                threshold,
                abort_on_fail,
            } => (threshold.as_str(), *abort_on_fail),
        };
        let (name, step) = match metric.split_once('{') {
            None => (metric.trim(), None),
            Some((name, tag)) => {
                let tag = tag.trim_end_matches('}').trim();
                let step_name = tag
                    .strip_prefix("step:")
                    .map(str::trim)
                    .ok_or_else(|| format!("'{metric}': the only filter is {{step:NAME}}"))?;
                let index = requests
                    .iter()
                    .position(|r| r.name == step_name)
                    .ok_or_else(|| format!("'{metric}': '{step_name}' is not a request"))?;
                (name.trim(), Some(index))
            }
        };
        let metric_kind = match name {
            "http_req_duration" => Metric::HttpReqDuration,
            "service_time" => Metric::ServiceTime,
            "errors" => Metric::Errors,
            "checks" => Metric::Checks,
            "http_reqs" => Metric::HttpReqs,
            "dropped_iterations" => Metric::DroppedIterations,
            other => {
                return Err(format!(
                    "unknown threshold metric '{other}': use http_req_duration, service_time, errors, checks, http_reqs or dropped_iterations"
                ));
            }
        };
        if step.is_some()
            && !matches!(
                metric_kind,
                Metric::HttpReqDuration | Metric::ServiceTime | Metric::Errors
            )
        {
            return Err(format!("'{metric}' cannot be filtered by step"));
        }
        let (agg, op, value) = expression(expr)?;
        let allowed = match metric_kind {
            Metric::HttpReqDuration | Metric::ServiceTime => !matches!(agg, Agg::Rate | Agg::Count),
            _ => matches!(agg, Agg::Rate | Agg::Count),
        };
        if !allowed {
            return Err(format!(
                "'{expr}' does not apply to {name}: durations take p(N), avg, min, max, med; counters take rate and count"
            ));
        }
        Ok(Threshold {
            source: format!("{metric}: {expr}"),
            metric: metric_kind,
            step,
            agg,
            op,
            value,
            abort_on_fail,
        })
    }

    /// The observed value and whether it passes. `None` when nothing was
    /// measured yet (no requests), which neither passes nor fails mid-run.
    pub fn observe(&self, totals: &Totals) -> Option<f64> {
        let step = self.step.map(|i| &totals.steps[i]);
        let (latency, requests, errors) = match step {
            Some(s) => (&s.latency, s.requests, s.errors),
            None => (&totals.latency, totals.requests, totals.errors),
        };
        let durations = match self.metric {
            Metric::HttpReqDuration => Some(latency),
            Metric::ServiceTime => Some(step.map_or(&totals.service, |s| &s.service)),
            _ => None,
        };
        if let Some(h) = durations {
            if h.is_empty() {
                return None;
            }
            let ms = |ns: u64| ns as f64 / 1e6;
            return Some(match self.agg {
                Agg::Percentile(p) => ms(h.value_at_quantile(p / 100.0)),
                Agg::Avg => h.mean() / 1e6,
                Agg::Min => ms(h.min()),
                Agg::Max => ms(h.max()),
                Agg::Rate | Agg::Count => return None,
            });
        }
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        match (self.metric, self.agg) {
            (Metric::Errors, Agg::Rate) => ratio(errors, requests),
            (Metric::Errors, Agg::Count) => Some(errors as f64),
            (Metric::Checks, Agg::Rate) => {
                ratio(totals.checks - totals.checks_failed, totals.checks)
            }
            (Metric::Checks, Agg::Count) => Some(totals.checks_failed as f64),
            (Metric::HttpReqs, Agg::Count) => Some(requests as f64),
            (Metric::HttpReqs, Agg::Rate) => {
                (totals.seconds > 0.0).then(|| requests as f64 / totals.seconds)
            }
            (Metric::DroppedIterations, Agg::Count) => Some(totals.dropped as f64),
            (Metric::DroppedIterations, Agg::Rate) => ratio(totals.dropped, totals.arrivals),
            _ => None,
        }
    }

    /// The verdict over the run's totals; with nothing measured, a threshold fails
    /// (a run that sent nothing must not pass a CI gate).
    pub fn verdict(&self, totals: &Totals) -> Verdict {
        let observed = self.observe(totals);
        Verdict {
            threshold: self.source.clone(),
            observed: observed.unwrap_or(f64::NAN),
            passed: observed.is_some_and(|v| self.holds(v)),
            abort_on_fail: self.abort_on_fail,
        }
    }

    fn holds(&self, v: f64) -> bool {
        match self.op {
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
        }
    }

    /// Whether the threshold has failed on what is measured so far.
    pub fn fails_now(&self, totals: &Totals) -> bool {
        self.observe(totals).is_some_and(|v| !self.holds(v))
    }
}

fn expression(expr: &str) -> Result<(Agg, Op, f64), String> {
    let bad = |why: &str| {
        format!("invalid threshold '{expr}': {why}; write it as p(99)<250, avg<=100 or rate<0.01")
    };
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (at, text, op) = ops
        .iter()
        .filter_map(|(text, op)| expr.find(text).map(|at| (at, *text, *op)))
        .min_by_key(|(at, text, _)| (*at, std::cmp::Reverse(text.len())))
        .ok_or_else(|| bad("no comparison"))?;
    let left = expr[..at].trim();
    let right = expr[at + text.len()..].trim();
    let value: f64 = right
        .parse()
        .map_err(|_| bad(&format!("'{right}' is not a number")))?;
    let agg = match left {
        "avg" => Agg::Avg,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "med" => Agg::Percentile(50.0),
        "rate" => Agg::Rate,
        "count" => Agg::Count,
        _ => {
            let p = left
                .strip_prefix("p(")
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| bad(&format!("unknown aggregation '{left}'")))?;
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| bad(&format!("'{p}' is not a percentile")))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad("percentiles go from 0 to 100"));
            }
            Agg::Percentile(p)
        }
    };
    Ok((agg, op, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Totals;

    fn parse(metric: &str, expr: &str) -> Result<Threshold, String> {
        Threshold::parse(metric, &ThresholdSpec::Plain(expr.into()), &[])
    }

    #[test]
    fn expressions_parse_and_evaluate() {
        let mut totals = Totals::default();
        for ms in 1..=100u64 {
            totals.record_latency(ms * 1_000_000, ms * 500_000);
        }
        totals.requests = 100;
        totals.errors = 2;
        totals.seconds = 10.0;
        let check = |metric: &str, expr: &str| parse(metric, expr).unwrap().verdict(&totals);
        assert!(check("http_req_duration", "p(99)<101").passed);
        assert!(!check("http_req_duration", "p(95) < 90").passed);
        assert!(check("http_req_duration", "max<=100.1").passed);
        assert!(check("service_time", "med<26").passed);
        assert!(check("errors", "rate<0.05").passed);
        assert!(!check("errors", "count==0").passed);
        assert!((check("http_reqs", "rate>9").observed - 10.0).abs() < 1e-9);
    }

    #[test]
    fn nothing_measured_fails_the_gate() {
        let v = parse("errors", "rate<0.01")
            .unwrap()
            .verdict(&Totals::default());
        assert!(!v.passed);
    }

    #[test]
    fn mistakes_say_how_to_write_it() {
        assert!(
            parse("latency", "p(99)<1")
                .unwrap_err()
                .contains("unknown threshold metric")
        );
        assert!(
            parse("errors", "p(99)<1")
                .unwrap_err()
                .contains("does not apply")
        );
        assert!(
            parse("http_req_duration", "p(99)")
                .unwrap_err()
                .contains("no comparison")
        );
        assert!(
            parse("http_req_duration", "p(101)<3")
                .unwrap_err()
                .contains("0 to 100")
        );
        assert!(
            parse("http_req_duration", "mean<3")
                .unwrap_err()
                .contains("unknown aggregation")
        );
        assert!(
            parse("http_req_duration{step:x}", "p(99)<3")
                .unwrap_err()
                .contains("not a request")
        );
    }
}
