//! Metrics export against a scripted fake collector: the per-second metrics the
//! generator sends arrive intact over gRPC and HTTP, the exponential histogram's
//! buckets add up and sit where the OTLP mapping puts each value, and failures
//! are retried or reported as for spans.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use common::{Failure, Fake};
use exporter::attributes::string;
use exporter::metrics::proto::{AggregationTemporality, Metric, metric, number_data_point};
use exporter::metrics::{self, ExpHistogram, MetricsConfig, MetricsExporter};
use exporter::{ExporterConfig, Protocol};
use tonic_types::StatusExt;

/// Latencies in ms, with zeros and exact powers of two (bucket upper bounds).
const LATENCIES_MS: [f64; 12] = [
    0.0, 0.0, 0.25, 1.0, 1.5, 2.0, 2.0, 3.3, 8.0, 100.0, 1234.5, 60_000.0,
];
const START: u64 = 1_700_000_000_000_000_000;
const NOW: u64 = START + 1_000_000_000;

/// What the generator sends each second: counters, a gauge and latency.
fn per_second_metrics() -> Vec<Metric> {
    let mut latency = ExpHistogram::default();
    for value in LATENCIES_MS {
        assert!(latency.record(value));
    }
    vec![
        metrics::cumulative_sum(
            "loadlens.requests",
            "{request}",
            vec![metrics::int_point(Vec::new(), START, NOW, 12)],
        ),
        metrics::cumulative_sum(
            "loadlens.errors",
            "{request}",
            vec![
                metrics::int_point(vec![string("error.type", "timeout")], START, NOW, 2),
                metrics::int_point(vec![string("error.type", "500")], START, NOW, 1),
            ],
        ),
        metrics::gauge(
            "loadlens.in_flight",
            "{request}",
            vec![metrics::int_point(Vec::new(), START, NOW, 7)],
        ),
        metrics::exp_histogram(
            "loadlens.latency",
            "ms",
            vec![latency.to_proto(Vec::new(), START, NOW)],
        ),
    ]
}

fn config(endpoint: String, protocol: Protocol) -> MetricsConfig {
    let mut config =
        MetricsConfig::new(endpoint, vec![string("service.name", "loadlens-generator")])
            .with_protocol(protocol);
    config.initial_backoff = Duration::from_millis(1);
    config.max_backoff = Duration::from_millis(1);
    config
}

/// The bucket of `value` at `scale` by the OTLP formula, computed independently
/// of the exporter: ceil(log2(value) * 2^scale) - 1.
fn reference_index(value: f64, scale: i32) -> i32 {
    (value.log2() * 2f64.powi(scale)).ceil() as i32 - 1
}

/// Checks the metrics the fake received against `per_second_metrics`.
fn check_received(fake: &Fake) {
    let calls = fake.calls();
    let request = calls
        .iter()
        .rev()
        .find(|call| call.accepted)
        .and_then(|call| call.metrics.as_ref())
        .expect("an accepted metrics request");
    let resource_metrics = &request.resource_metrics[0];
    assert_eq!(
        resource_metrics.resource.as_ref().unwrap().attributes,
        vec![string("service.name", "loadlens-generator")]
    );
    let metrics: BTreeMap<&str, &metric::Data> = resource_metrics.scope_metrics[0]
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.data.as_ref().unwrap()))
        .collect();
    assert_eq!(metrics.len(), 4);

    let metric::Data::Sum(errors) = metrics["loadlens.errors"] else {
        panic!("errors is a Sum");
    };
    assert!(errors.is_monotonic);
    assert_eq!(
        errors.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let errors: Vec<_> = errors.data_points.iter().map(|p| p.value).collect();
    assert_eq!(
        errors,
        [2, 1].map(|n| Some(number_data_point::Value::AsInt(n)))
    );
    assert!(matches!(
        metrics["loadlens.in_flight"],
        metric::Data::Gauge(_)
    ));

    let metric::Data::ExponentialHistogram(latency) = metrics["loadlens.latency"] else {
        panic!("latency is an ExponentialHistogram");
    };
    assert_eq!(
        latency.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let point = &latency.data_points[0];
    let positive = point.positive.as_ref().unwrap();
    assert_eq!(point.count, LATENCIES_MS.len() as u64);
    assert_eq!(point.zero_count, 2);
    assert_eq!(
        positive.bucket_counts.iter().sum::<u64>() + point.zero_count,
        point.count
    );
    assert!(positive.bucket_counts.len() <= 160);
    assert_eq!(point.sum, Some(LATENCIES_MS.iter().sum()));
    assert_eq!((point.min, point.max), (Some(0.0), Some(60_000.0)));

    let mut expected = BTreeMap::new();
    for value in LATENCIES_MS.into_iter().filter(|v| *v > 0.0) {
        *expected
            .entry(reference_index(value, point.scale))
            .or_insert(0u64) += 1;
    }
    let received: BTreeMap<i32, u64> = positive
        .bucket_counts
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .map(|(k, count)| (positive.offset + k as i32, *count))
        .collect();
    assert_eq!(received, expected, "buckets at scale {}", point.scale);
    // 0.25 ms to 60 s is 17.9 octaves: 8 buckets each (scale 3) fit in 160, 16 do not.
    assert_eq!(point.scale, 3);
}

#[tokio::test]
async fn grpc_metrics_arrive_intact_after_a_retry_info_wait() {
    let fake = Fake::new([Failure::Grpc(tonic::Status::with_error_details(
        tonic::Code::Unavailable,
        "flushing",
        tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_millis(200))),
    ))]);
    let endpoint = common::grpc(fake.clone()).await;
    let exporter = MetricsExporter::start(config(endpoint, Protocol::Grpc)).unwrap();

    let exported = exporter.export(per_second_metrics()).await.unwrap();
    assert_eq!(exported.retries, 1);
    assert_eq!(exported.rejected_data_points, 0);
    check_received(&fake);
    let waited = fake.wait_before_retry();
    assert!(
        waited >= Duration::from_millis(200),
        "retried after {waited:?}"
    );

    let stats = exporter.shutdown().await;
    assert_eq!((stats.exports, stats.failed, stats.retries), (1, 0, 1));
}

#[tokio::test]
async fn http_metrics_are_posted_to_v1_metrics() {
    let fake = Fake::new([]);
    let endpoint = common::http(fake.clone()).await;
    let exporter = MetricsExporter::start(config(endpoint, Protocol::HttpProtobuf)).unwrap();

    let exported = exporter.export(per_second_metrics()).await.unwrap();
    assert_eq!(exported.retries, 0);
    check_received(&fake);
}

#[tokio::test]
async fn http_metrics_refused_with_400_fail_without_retry() {
    let fake = Fake::new([Failure::Http(StatusCode::BAD_REQUEST, None)]);
    let endpoint = common::http(fake.clone()).await;
    let exporter = MetricsExporter::start(config(endpoint, Protocol::HttpProtobuf)).unwrap();

    let error = exporter.export(per_second_metrics()).await.unwrap_err();
    assert_eq!(error.attempts, 1);
    assert!(error.reason.contains("400"), "{error}");
    assert_eq!(fake.calls().len(), 1);
    let stats = exporter.shutdown().await;
    assert_eq!((stats.exports, stats.failed, stats.retries), (0, 1, 0));
}

#[test]
fn metrics_config_follows_the_span_exporter() {
    let spans = ExporterConfig::new("http://collector:4318", vec![string("service.name", "x")])
        .with_protocol(Protocol::HttpProtobuf);
    let metrics = MetricsConfig::from(&spans);
    assert_eq!(metrics.endpoint, spans.endpoint);
    assert_eq!(metrics.protocol, Protocol::HttpProtobuf);
    assert_eq!(metrics.resource, spans.resource);
    assert_eq!(metrics.max_retry_delay, Duration::from_secs(30));
}
