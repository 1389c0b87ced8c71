//! Live totals of a run: HDR histograms of latency (from the intended start)
//! and service time (from the send), per stage, per step and for the measured
//! run, in constant memory however long the run. Exact percentiles come from
//! the raw rows in the store; these are for the summary, the live view and
//! thresholds (3 significant digits).

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Latency histogram bounds: 1 µs to 1 hour, in ns, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Counts and distributions of one scope (the run, a stage or a step).
#[derive(Debug, Clone)]
pub struct Totals {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    /// Requests that completed (or failed).
    pub requests: u64,
    pub errors: u64,
    pub errors_by_type: BTreeMap<&'static str, u64>,
    /// Checks evaluated and checks that failed.
    pub checks: u64,
    pub checks_failed: u64,
    /// Iterations scheduled (open models) and those dropped at the in-flight bound.
    pub arrivals: u64,
    pub dropped: u64,
    /// Iterations that started more than [`LATE_AFTER`] behind schedule.
    pub late: u64,
    /// Measured seconds (for rates).
    pub seconds: f64,
    pub steps: Vec<StepTotals>,
}

/// An iteration that starts this far behind its intended start is late.
pub const LATE_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

/// Per request name.
#[derive(Debug, Clone)]
pub struct StepTotals {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Totals::new(0)
    }
}

impl Totals {
    pub fn new(steps: usize) -> Self {
        Totals {
            latency: histogram(),
            service: histogram(),
            requests: 0,
            errors: 0,
            errors_by_type: BTreeMap::new(),
            checks: 0,
            checks_failed: 0,
            arrivals: 0,
            dropped: 0,
            late: 0,
            seconds: 0.0,
            steps: (0..steps)
                .map(|_| StepTotals {
                    latency: histogram(),
                    service: histogram(),
                    requests: 0,
                    errors: 0,
                })
                .collect(),
        }
    }

    /// Records durations only (ns).
    pub fn record_latency(&mut self, latency_ns: u64, service_ns: u64) {
        self.latency.saturating_record(latency_ns);
        self.service.saturating_record(service_ns);
    }

    fn record(&mut self, r: &Recorded) {
        self.record_latency(r.latency_ns, r.service_ns);
        self.requests += 1;
        self.checks += u64::from(r.checks);
        self.checks_failed += u64::from(r.checks_failed);
        if let Some(error) = r.error {
            self.errors += 1;
            *self.errors_by_type.entry(error).or_default() += 1;
        }
        if let Some(step) = self.steps.get_mut(r.step) {
            step.latency.saturating_record(r.latency_ns);
            step.service.saturating_record(r.service_ns);
            step.requests += 1;
            step.errors += u64::from(r.error.is_some());
        }
    }
}

/// One finished request, as the recorder sees it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    pub stage: usize,
    pub step: usize,
    pub latency_ns: u64,
    pub service_ns: u64,
    pub error: Option<&'static str>,
    pub checks: u32,
    pub checks_failed: u32,
}

/// Cumulative totals of the whole run for the per-second metrics.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub requests: u64,
    pub dropped: u64,
    pub errors_by_type: BTreeMap<&'static str, u64>,
    /// Latency from the intended start, ms.
    pub latency: exporter::ExpHistogram,
}

/// Shared by every request task.
#[derive(Debug)]
pub struct Recorder {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Everything so far, warm-up included, for the live metrics.
    live: Live,
    /// The measured run: every stage but warm-up.
    run: Totals,
    stages: Vec<Totals>,
    warmup: Vec<bool>,
}

impl Recorder {
    /// `warmup[i]` says whether stage i is warm-up (left out of the run totals).
    pub fn new(steps: usize, warmup: Vec<bool>) -> Self {
        Recorder {
            state: Mutex::new(State {
                live: Live::default(),
                run: Totals::new(steps),
                stages: warmup.iter().map(|_| Totals::new(0)).collect(),
                warmup,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    pub fn record(&self, r: Recorded) {
        self.with(|s| {
            s.live.requests += 1;
            s.live.latency.record(r.latency_ns as f64 / 1e6);
            if let Some(error) = r.error {
                *s.live.errors_by_type.entry(error).or_default() += 1;
            }
            s.stages[r.stage].record(&r);
            if !s.warmup[r.stage] {
                s.run.record(&r);
            }
        });
    }

    /// An arrival of an open model; `dropped` when the in-flight bound refused it.
    pub fn arrival(&self, stage: usize, dropped: bool, late: bool) {
        self.with(|s| {
            s.live.dropped += u64::from(dropped);
            let measured = !s.warmup[stage];
            for t in std::iter::once(&mut s.stages[stage]).chain(measured.then_some(&mut s.run)) {
                t.arrivals += 1;
                t.dropped += u64::from(dropped);
                t.late += u64::from(late);
            }
        });
    }

    /// How long stage `stage` ran (its share of the run's measured seconds).
    pub fn stage_seconds(&self, stage: usize, seconds: f64) {
        self.with(|s| {
            s.stages[stage].seconds = seconds;
            if !s.warmup[stage] {
                s.run.seconds += seconds;
            }
        });
    }

    /// A copy of the measured run's totals, with `extra_seconds` of the stage
    /// in progress added (for live thresholds and progress).
    pub fn run_snapshot(&self, extra_seconds: f64) -> Totals {
        self.with(|s| {
            let mut t = s.run.clone();
            t.seconds += extra_seconds;
            t
        })
    }

    /// A copy of the live totals.
    pub fn live(&self) -> Live {
        self.with(|s| s.live.clone())
    }

    /// Latency p50/p99 (ms), requests and errors of a stage so far.
    pub fn stage_brief(&self, stage: usize) -> (f64, f64, u64, u64) {
        self.with(|s| {
            let t = &s.stages[stage];
            (
                t.latency.value_at_quantile(0.5) as f64 / 1e6,
                t.latency.value_at_quantile(0.99) as f64 / 1e6,
                t.requests,
                t.errors,
            )
        })
    }

    /// Takes the totals out at the end: (run, stages).
    pub fn finish(&self) -> (Totals, Vec<Totals>) {
        self.with(|s| {
            let steps = s.run.steps.len();
            let stages = s.stages.len();
            (
                std::mem::replace(&mut s.run, Totals::new(steps)),
                std::mem::replace(&mut s.stages, (0..stages).map(|_| Totals::new(0)).collect()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(stage: usize, ms: u64, error: Option<&'static str>) -> Recorded {
        Recorded {
            stage,
            step: 0,
            latency_ns: ms * 1_000_000,
            service_ns: ms * 1_000_000 / 2,
            error,
            checks: 1,
            checks_failed: u32::from(error.is_some()),
        }
    }

    #[test]
    fn warmup_is_left_out_of_the_run_but_kept_in_its_stage() {
        let recorder = Recorder::new(1, vec![true, false]);
        recorder.record(done(0, 500, Some("timeout")));
        for ms in 1..=100 {
            recorder.record(done(1, ms, None));
        }
        recorder.arrival(0, true, false);
        recorder.arrival(1, false, true);
        let (run, stages) = recorder.finish();
        assert_eq!(run.requests, 100);
        assert_eq!(run.errors, 0);
        assert_eq!((run.arrivals, run.dropped, run.late), (1, 0, 1));
        assert_eq!(stages[0].requests, 1);
        assert_eq!(stages[0].errors_by_type["timeout"], 1);
        assert_eq!(run.steps[0].requests, 100);
        // 3 significant digits: p50 of 1..=100 ms is 50 ms to within 0.1%.
        let p50 = run.latency.value_at_quantile(0.5) as f64 / 1e6;
        assert!((p50 - 50.0).abs() < 0.05, "{p50}");
    }
}
