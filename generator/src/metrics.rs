//! The generator's live metrics, sent over OTLP once a second (and once at
//! the end) so Prometheus and Grafana can follow a run as it happens. Every
//! name the generator exports is here. All are cumulative from the run start.

use exporter::attributes::{int, string};
use exporter::metrics::{cumulative_sum, exp_histogram, gauge, int_point};
use exporter::proto_metrics::Metric;
use schema::attr;

use crate::engine::Engine;

/// Requests completed (warm-up included), a cumulative sum.
pub const REQUESTS: &str = "loadlens.generator.requests";
/// Requests that failed, by `error.type`.
pub const ERRORS: &str = "loadlens.generator.errors";
/// Arrivals dropped at the in-flight bound.
pub const DROPPED: &str = "loadlens.generator.dropped_iterations";
/// Iterations in flight, a gauge.
pub const IN_FLIGHT: &str = "loadlens.generator.in_flight";
/// Latency from the intended start, an exponential histogram in ms.
pub const LATENCY: &str = "loadlens.generator.latency";

/// The metrics as they stand now; `start_ns` is when the run began.
pub fn snapshot(engine: &Engine, start_ns: u64, now_ns: u64) -> Vec<Metric> {
    let live = engine.recorder.live();
    let common = || {
        vec![
            string(attr::SCENARIO, engine.plan.name.clone()),
            int(attr::SHARD, i64::from(engine.shard.0)),
        ]
    };
    let errors = live
        .errors_by_type
        .iter()
        .map(|(kind, count)| {
            let mut attributes = common();
            attributes.push(string(attr::ERROR_TYPE, *kind));
            int_point(attributes, start_ns, now_ns, *count as i64)
        })
        .collect();
    let in_flight = engine
        .counters
        .in_flight
        .load(std::sync::atomic::Ordering::Relaxed);
    vec![
        cumulative_sum(
            REQUESTS,
            "{request}",
            vec![int_point(common(), start_ns, now_ns, live.requests as i64)],
        ),
        cumulative_sum(ERRORS, "{request}", errors),
        cumulative_sum(
            DROPPED,
            "{iteration}",
            vec![int_point(common(), start_ns, now_ns, live.dropped as i64)],
        ),
        gauge(
            IN_FLIGHT,
            "{iteration}",
            vec![int_point(common(), start_ns, now_ns, in_flight)],
        ),
        exp_histogram(
            LATENCY,
            "ms",
            vec![live.latency.to_proto(common(), start_ns, now_ns)],
        ),
    ]
}
