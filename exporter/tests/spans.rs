//! Span export against a scripted fake collector: the exporter waits as long as
//! the collector asks (gRPC `RetryInfo`, HTTP `Retry-After`), speaks OTLP/HTTP,
//! does not retry what OTLP says not to, and counts every lost span by cause.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{Failure, Fake};
use exporter::proto_trace::Span;
use exporter::{ExportStats, Exporter, ExporterConfig, Protocol, SpanId, TraceId};
use tonic_types::StatusExt;

const SPANS: u64 = 20;

fn span(i: u64) -> Span {
    Span {
        trace_id: TraceId::random().0.to_vec(),
        span_id: SpanId::random().0.to_vec(),
        name: format!("request {i}"),
        start_time_unix_nano: 1_700_000_000_000_000_000 + i,
        end_time_unix_nano: 1_700_000_000_000_000_100 + i,
        ..Default::default()
    }
}

/// A config whose own backoff is 1 ms, so only a honoured server delay can
/// explain a long wait.
fn config(endpoint: String, protocol: Protocol) -> ExporterConfig {
    let mut config = ExporterConfig::new(endpoint, Vec::new()).with_protocol(protocol);
    config.initial_backoff = Duration::from_millis(1);
    config.max_backoff = Duration::from_millis(1);
    config
}

/// Sends `SPANS` spans and shuts the exporter down.
async fn export(config: ExporterConfig) -> (ExportStats, Option<String>) {
    let exporter = Exporter::start(config).unwrap();
    let sink = exporter.sink();
    for i in 0..SPANS {
        sink.send(span(i));
    }
    let stats = exporter.shutdown().await;
    (stats, sink.last_error())
}

fn unavailable_retry_after(delay: Duration) -> Failure {
    Failure::Grpc(tonic::Status::with_error_details(
        tonic::Code::Unavailable,
        "flushing",
        tonic_types::ErrorDetails::with_retry_info(Some(delay)),
    ))
}

#[tokio::test]
async fn grpc_retry_waits_as_long_as_retry_info_asks() {
    let fake = Fake::new([unavailable_retry_after(Duration::from_millis(300))]);
    let endpoint = common::grpc(fake.clone()).await;
    let (stats, _) = export(config(endpoint, Protocol::Grpc)).await;

    assert_eq!(stats.exported, SPANS);
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.dropped, 0);
    assert_eq!(fake.spans_accepted() as u64, SPANS);
    let waited = fake.wait_before_retry();
    assert!(
        waited >= Duration::from_millis(300),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn a_batch_larger_than_the_request_bound_goes_out_as_several_requests() {
    use prost::Message as _;
    let fake = Fake::new([]);
    let endpoint = common::grpc(fake.clone()).await;
    let mut config = config(endpoint, Protocol::Grpc);
    config.max_request_bytes = 4096;
    let exporter = Exporter::start(config).unwrap();
    let sink = exporter.sink();
    for i in 0..SPANS {
        sink.send(Span {
            name: "x".repeat(600),
            ..span(i)
        });
    }
    let stats = exporter.shutdown().await;

    assert_eq!(stats.exported, SPANS);
    assert_eq!(stats.dropped, 0);
    assert_eq!(fake.spans_accepted() as u64, SPANS);
    let sizes: Vec<usize> = fake
        .calls()
        .iter()
        .map(|call| call.traces.as_ref().unwrap().encoded_len())
        .collect();
    // 20 spans of about 650 bytes: at least four requests of at most 4 KiB.
    assert!(sizes.len() >= 4, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 4096), "{sizes:?}");
}

#[tokio::test]
async fn grpc_server_delay_is_capped() {
    let fake = Fake::new([unavailable_retry_after(Duration::from_secs(3600))]);
    let endpoint = common::grpc(fake.clone()).await;
    let mut config = config(endpoint, Protocol::Grpc);
    config.max_retry_delay = Duration::from_millis(50);
    let (stats, _) = tokio::time::timeout(Duration::from_secs(20), export(config))
        .await
        .expect("an hour-long RetryInfo is capped at max_retry_delay");

    assert_eq!((stats.exported, stats.retries), (SPANS, 1));
    assert!(fake.wait_before_retry() >= Duration::from_millis(50));
}

#[tokio::test]
async fn grpc_non_retryable_code_drops_the_batch_at_once() {
    let fake = Fake::new([Failure::Grpc(tonic::Status::invalid_argument("bad span"))]);
    let endpoint = common::grpc(fake.clone()).await;
    let (stats, last_error) = export(config(endpoint, Protocol::Grpc)).await;

    assert_eq!(fake.calls().len(), 1);
    assert_eq!(stats.retries, 0);
    assert_eq!(stats.exported, 0);
    assert_eq!(stats.dropped_export_failed, SPANS);
    assert_eq!(stats.dropped, SPANS);
    let last_error = last_error.expect("the failure is kept");
    assert!(last_error.contains("InvalidArgument"), "{last_error}");
}

#[tokio::test]
async fn grpc_gives_up_when_attempts_run_out() {
    let unavailable = || Failure::Grpc(tonic::Status::unavailable("down"));
    let fake = Fake::new([unavailable(), unavailable(), unavailable()]);
    let endpoint = common::grpc(fake.clone()).await;
    let mut config = config(endpoint, Protocol::Grpc);
    config.max_attempts = 3;
    let (stats, _) = export(config).await;

    assert_eq!(fake.calls().len(), 3);
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.exported, 0);
    assert_eq!(stats.dropped_export_failed, SPANS);
}

#[tokio::test]
async fn http_retry_waits_as_long_as_retry_after_asks() {
    let fake = Fake::new([Failure::Http(StatusCode::SERVICE_UNAVAILABLE, Some("1"))]);
    let endpoint = common::http(fake.clone()).await;
    let (stats, _) = export(config(endpoint, Protocol::HttpProtobuf)).await;

    assert_eq!(stats.exported, SPANS);
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.dropped, 0);
    assert_eq!(fake.spans_accepted() as u64, SPANS);
    let waited = fake.wait_before_retry();
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
}

#[tokio::test]
async fn http_429_without_retry_after_backs_off_and_retries() {
    let fake = Fake::new([Failure::Http(StatusCode::TOO_MANY_REQUESTS, None)]);
    let endpoint = common::http(fake.clone()).await;
    let (stats, _) = export(config(endpoint, Protocol::HttpProtobuf)).await;

    assert_eq!(
        (stats.exported, stats.retries, stats.dropped),
        (SPANS, 1, 0)
    );
}

#[tokio::test]
async fn http_400_drops_the_batch_without_retry() {
    let fake = Fake::new([Failure::Http(StatusCode::BAD_REQUEST, Some("1"))]);
    let endpoint = common::http(fake.clone()).await;
    let (stats, last_error) = export(config(endpoint, Protocol::HttpProtobuf)).await;

    assert_eq!(fake.calls().len(), 1, "a 400 is never sent again");
    assert_eq!(stats.retries, 0);
    assert_eq!(stats.exported, 0);
    assert_eq!(stats.dropped_export_failed, SPANS);
    assert_eq!(stats.dropped, SPANS);
    let last_error = last_error.expect("the failure is kept");
    assert!(last_error.contains("400"), "{last_error}");
}

#[tokio::test]
async fn http_unreachable_collector_counts_export_failures() {
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = config(format!("http://127.0.0.1:{port}"), Protocol::HttpProtobuf);
    config.max_attempts = 2;
    let (stats, _) = export(config).await;

    assert_eq!(stats.retries, 1, "connection errors are retried");
    assert_eq!(stats.dropped_export_failed, SPANS);
}

#[tokio::test]
async fn a_full_queue_is_counted_apart_from_failed_exports() {
    let fake = Fake::new([]);
    let endpoint = common::grpc(fake.clone()).await;
    let mut config = config(endpoint, Protocol::Grpc);
    config.queue_capacity = 1;
    // The test runtime is single-threaded, so the export task cannot drain the
    // queue while these spans are sent: one fits, the rest are refused.
    let (stats, _) = export(config).await;

    assert_eq!(stats.exported, 1);
    assert_eq!(stats.dropped_queue_full, SPANS - 1);
    assert_eq!(stats.dropped_export_failed, 0);
    assert_eq!(stats.dropped, SPANS - 1);
    assert_eq!(fake.spans_accepted(), 1);
}

#[test]
fn an_https_http_endpoint_is_refused_at_start() {
    let config = ExporterConfig::new("https://collector:4318", Vec::new())
        .with_protocol(Protocol::HttpProtobuf);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let error = runtime.block_on(async { Exporter::start(config).unwrap_err() });
    assert!(error.to_string().contains("https"), "{error}");
}
