//! The receivers end to end: OTLP over gRPC and HTTP (protobuf, JSON, gzip) into
//! Parquet files, read back with the Parquet reader.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, Float64Array, Int32Array, ListArray, MapArray,
    RecordBatch, StringArray, StructArray, UInt64Array,
};
use arrow::datatypes::{Float64Type, UInt64Type};
use bytes::Bytes;
use collector::{Collector, CollectorConfig};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use prost::Message;
use tonic_types::StatusExt;

const T0: u64 = 1_795_435_200_000_000_000; // 2026-11-23T12:00:00Z

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn resource(service: &str, run: Option<&str>) -> Option<Resource> {
    let mut attributes = vec![s("service.name", service), s("host.name", "box-1")];
    if let Some(run) = run {
        attributes.push(s("loadlens.run.id", run));
    }
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn span(trace: u8, span: u8, name: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 1_500_000,
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service, None),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: "ms".into(),
        data: Some(data),
        ..Default::default()
    }
}

fn every_metric_type() -> ExportMetricsServiceRequest {
    let attrs = vec![s("route", "/a")];
    let number = |value| NumberDataPoint {
        attributes: attrs.clone(),
        time_unix_nano: T0,
        start_time_unix_nano: T0 - 1_000_000_000,
        value: Some(value),
        ..Default::default()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("svc", Some("run-m")),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(
                        "in_flight",
                        Data::Gauge(Gauge {
                            data_points: vec![number(number_data_point::Value::AsInt(7))],
                        }),
                    ),
                    metric(
                        "requests",
                        Data::Sum(Sum {
                            data_points: vec![NumberDataPoint {
                                // The trace of a request this point counted.
                                exemplars: vec![Exemplar {
                                    filtered_attributes: vec![s("user", "u-1")],
                                    time_unix_nano: T0 - 5,
                                    span_id: vec![7; 8],
                                    trace_id: vec![7; 16],
                                    value: Some(exemplar::Value::AsInt(42)),
                                }],
                                ..number(number_data_point::Value::AsDouble(2.5))
                            }],
                            aggregation_temporality: cumulative,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "latency",
                        Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: attrs.clone(),
                                time_unix_nano: T0,
                                count: 6,
                                sum: Some(21.0),
                                min: Some(0.5),
                                max: Some(9.0),
                                bucket_counts: vec![1, 2, 3],
                                explicit_bounds: vec![1.0, 5.0],
                                exemplars: vec![Exemplar {
                                    filtered_attributes: vec![],
                                    time_unix_nano: T0 - 7,
                                    span_id: vec![8; 8],
                                    trace_id: vec![8; 16],
                                    value: Some(exemplar::Value::AsDouble(3.5)),
                                }],
                                ..Default::default()
                            }],
                            aggregation_temporality: cumulative,
                        }),
                    ),
                    metric(
                        "latency_exp",
                        Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                attributes: attrs.clone(),
                                time_unix_nano: T0,
                                count: 6,
                                sum: Some(-0.75),
                                scale: 2,
                                zero_count: 1,
                                zero_threshold: 0.001,
                                positive: Some(Buckets {
                                    offset: -1,
                                    bucket_counts: vec![1, 2],
                                }),
                                negative: Some(Buckets {
                                    offset: -3,
                                    bucket_counts: vec![2],
                                }),
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                        }),
                    ),
                    metric(
                        "latency_summary",
                        Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                attributes: attrs.clone(),
                                time_unix_nano: T0,
                                count: 10,
                                sum: 55.0,
                                quantile_values: vec![
                                    ValueAtQuantile {
                                        quantile: 0.5,
                                        value: 5.0,
                                    },
                                    ValueAtQuantile {
                                        quantile: 0.99,
                                        value: 9.9,
                                    },
                                ],
                                ..Default::default()
                            }],
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> (u16, String, Bytes) {
    send(addr, path, content_type, gzip, body, "content-type").await
}

/// POSTs a body; returns the status, the value of `header_to_read` and the body.
async fn send(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
    header_to_read: &str,
) -> (u16, String, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request =
        hyper::Request::post(format!("http://{addr}{path}")).header("content-type", content_type);
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get(header_to_read)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, header, body)
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, body)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn read_table(root: &Path, table: &str) -> RecordBatch {
    let files = schema::layout::parquet_files(&root.join(table));
    assert!(!files.is_empty(), "no files for {table}");
    let mut batches = Vec::new();
    for path in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        batches.extend(reader.map(Result::unwrap));
    }
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("{name} has another type"))
}

/// The one exemplar of row `row`, checked: its value, its time, and trace
/// and span ids whose bytes are all `id`.
fn the_exemplar(exemplars: &ListArray, row: usize, value: f64, id: u8, time: u64) -> StructArray {
    let exemplar = exemplars.value(row).as_struct().clone();
    assert_eq!(exemplar.len(), 1);
    let times = exemplar.column(0);
    let times = times.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
    assert_eq!(times.value(0), time as i64);
    assert_eq!(
        exemplar.column(1).as_primitive::<Float64Type>().value(0),
        value
    );
    assert_eq!(
        exemplar.column(2).as_fixed_size_binary().value(0),
        &[id; 16]
    );
    assert_eq!(exemplar.column(3).as_fixed_size_binary().value(0), &[id; 8]);
    exemplar
}

fn map_get(map: &MapArray, row: usize, key: &str) -> Option<String> {
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..keys.len())
        .find(|&i| keys.value(i) == key)
        .map(|i| values.value(i).to_string())
}

/// Waits until `done`, for at most 30 s: a bound on the wait, not a timing
/// claim (the collector's timers fire in milliseconds; a loaded machine may
/// take seconds).
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The collector's own timers: with an hour between timed flushes, rows
/// reach Parquet once `flush_rows` of them are pending, and the background
/// compaction merges the small files that makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_by_size_and_a_background_compaction_run_by_themselves() {
    let dir = std::env::temp_dir().join(format!("loadlens-timers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = CollectorConfig::ephemeral(&dir);
    config.flush_interval = std::time::Duration::from_secs(3600);
    config.flush_rows = 3;
    config.compaction_interval = Some(std::time::Duration::from_millis(300));
    let collector = Collector::start(config).await.unwrap();
    let mut client = TraceServiceClient::connect(collector.grpc_endpoint())
        .await
        .unwrap();
    let files = || schema::layout::parquet_files(&dir.join("spans"));
    for round in 0..2u8 {
        let spans = (1..=3).map(|i| span(10 * round + i, i, "GET /")).collect();
        client.export(traces("svc", spans)).await.unwrap();
        // Three rows pending: flushed without waiting for the hour.
        eventually("a flush by size", || {
            collector
                .ingest()
                .stats()
                .rows_written
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 3 * (u64::from(round) + 1)
        })
        .await;
    }
    // The two small files of the partition become one.
    eventually("a background compaction", || {
        collector
            .ingest()
            .stats()
            .compactions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
            && files().len() == 1
    })
    .await;
    assert_eq!(read_table(&dir, "spans").num_rows(), 6);
    collector.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_grpc_and_http_lands_in_parquet() {
    let dir = std::env::temp_dir().join(format!("loadlens-receivers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = CollectorConfig::ephemeral(&dir);
    config.max_http_body = 64 * 1024;
    let collector = Collector::start(config).await.unwrap();
    let endpoint = collector.grpc_endpoint();
    let http = collector.http_addr();

    // gRPC traces: one rich span and one with a malformed trace id.
    let mut rich = span(1, 1, "GET /a");
    rich.attributes = vec![
        kv("http.response.status_code", Value::IntValue(200)),
        s("http.request.method", "GET"),
        s("custom.key", "v"),
        kv("custom.flag", Value::BoolValue(true)),
        s("loadlens.run.id", "run-t"),
    ];
    rich.events = vec![
        Event {
            time_unix_nano: T0 + 10,
            name: "first".into(),
            ..Default::default()
        },
        Event {
            time_unix_nano: T0 + 20,
            name: "second".into(),
            attributes: vec![s("k", "v")],
            ..Default::default()
        },
    ];
    rich.links = vec![Link {
        trace_id: vec![9; 16],
        span_id: vec![9; 8],
        ..Default::default()
    }];
    let mut bad = span(2, 2, "bad");
    bad.trace_id = vec![1, 2, 3];
    let mut client = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    let response = client
        .export(traces("svc", vec![rich, bad]))
        .await
        .unwrap()
        .into_inner();
    let partial = response.partial_success.expect("one span was rejected");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace_id"),
        "{}",
        partial.error_message
    );

    // gRPC metrics: every point type.
    let mut metrics = MetricsServiceClient::connect(endpoint).await.unwrap();
    let response = metrics
        .export(every_metric_type())
        .await
        .unwrap()
        .into_inner();
    assert!(response.partial_success.is_none(), "{response:?}");
    // A histogram point whose bucket counts do not fit its bounds is
    // rejected, and the answer says how many points and why.
    let mut bad = every_metric_type();
    let metrics_of = &mut bad.resource_metrics[0].scope_metrics[0].metrics;
    metrics_of.retain(|m| m.name == "latency");
    if let Some(Data::Histogram(h)) = &mut metrics_of[0].data {
        h.data_points[0].bucket_counts = vec![1, 2];
    }
    let response = metrics.export(bad).await.unwrap().into_inner();
    let partial = response.partial_success.expect("the point was rejected");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial
            .error_message
            .contains("2 bucket counts for 2 bounds"),
        "{}",
        partial.error_message
    );

    // HTTP protobuf, gzip protobuf and JSON, each answered in kind.
    let body = traces("http-proto", vec![span(3, 3, "proto")]).encode_to_vec();
    let (status, ct, reply) = post(
        http,
        "/v1/traces",
        "application/x-protobuf",
        false,
        body.clone(),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
    assert!(
        ExportTraceServiceResponse::decode(reply)
            .unwrap()
            .partial_success
            .is_none()
    );
    let body = traces("http-gzip", vec![span(4, 4, "gzip")]).encode_to_vec();
    let (status, _, _) = post(
        http,
        "/v1/traces",
        "application/x-protobuf",
        true,
        gzip(&body),
    )
    .await;
    assert_eq!(status, 200);
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"http-json"}}}}]}},
            "scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"{}","name":"json","kind":2,
            "startTimeUnixNano":"{T0}","endTimeUnixNano":{}}}]}}]}}]}}"#,
        "05".repeat(16),
        "05".repeat(8),
        T0 + 1000
    );
    let (status, ct, _) = post(
        http,
        "/v1/traces",
        "application/json",
        false,
        json.into_bytes(),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));

    // Refusals: wrong content type, malformed protobuf, a gzip bomb over the limit.
    let (status, _, reply) = post(http, "/v1/traces", "text/plain", false, b"x".to_vec()).await;
    assert_eq!(status, 415, "{reply:?}");
    let (status, _, reply) = post(
        http,
        "/v1/traces",
        "application/x-protobuf",
        false,
        vec![0xff; 7],
    )
    .await;
    assert_eq!(status, 400, "{reply:?}");
    assert!(String::from_utf8_lossy(&reply).contains("invalid protobuf"));
    let valid = traces("cut", vec![span(6, 6, "cut")]).encode_to_vec();
    let (status, _, _) = post(
        http,
        "/v1/traces",
        "application/x-protobuf",
        false,
        valid[..valid.len() - 3].to_vec(),
    )
    .await;
    assert_eq!(status, 400, "truncated protobuf");
    let mut bad_utf8 = span(7, 7, "");
    bad_utf8.name = "PLACEHOLDER".into();
    let mut bytes = traces("utf8", vec![bad_utf8]).encode_to_vec();
    let at = bytes.windows(11).position(|w| w == b"PLACEHOLDER").unwrap();
    bytes[at] = 0xff;
    let (status, _, reply) = post(http, "/v1/traces", "application/x-protobuf", false, bytes).await;
    assert_eq!(status, 400, "invalid UTF-8: {reply:?}");
    let mut short = span(8, 8, "short id");
    short.span_id = vec![8; 4];
    let (status, _, reply) = post(
        http,
        "/v1/traces",
        "application/x-protobuf",
        false,
        traces("short", vec![short]).encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let partial = ExportTraceServiceResponse::decode(reply)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("span_id must be 8"),
        "{}",
        partial.error_message
    );
    let (status, _, _) = post(
        http,
        "/v1/traces",
        "application/json",
        false,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "truncated JSON");
    let bomb = gzip(&vec![0u8; 4 * 1024 * 1024]);
    let (status, _, _) = post(http, "/v1/traces", "application/x-protobuf", true, bomb).await;
    assert_eq!(status, 413);
    // Over gRPC, bytes that are not a request are INVALID_ARGUMENT (not
    // retried), and the receiver keeps serving.
    let status = grpc_export_raw(collector.grpc_endpoint(), vec![0xff; 7]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("invalid protobuf"), "{status:?}");

    let stats = collector.ingest().stats();
    use collector::wal::Signal;
    assert_eq!(stats.accepted.get(Signal::Traces), 4, "4 spans accepted");
    assert_eq!(stats.rejected.get(Signal::Traces), 2, "2 spans rejected");
    assert_eq!(stats.accepted.get(Signal::Metrics), 5, "5 points accepted");
    let commits = stats.wal_commits.load(std::sync::atomic::Ordering::Relaxed);
    let synced = stats
        .wal_sync_nanos
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        commits > 0 && synced > 0,
        "fsync time recorded: {commits} commits, {synced} ns"
    );
    let (status, _, body) = get(http, "/metrics").await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200);
    assert!(
        text.contains("loadlens_collector_accepted_items_total{signal=\"traces\"} 4\n"),
        "{text}"
    );
    collector.shutdown().await.unwrap();

    // Spans: every accepted span once, promoted columns, the rest in maps.
    let spans = read_table(&dir, "spans");
    assert_eq!(spans.num_rows(), 4);
    let names = column::<StringArray>(&spans, "name");
    let row = (0..spans.num_rows())
        .find(|&i| names.value(i) == "GET /a")
        .unwrap();
    assert_eq!(
        column::<Int32Array>(&spans, "http_response_status_code").value(row),
        200
    );
    assert_eq!(
        column::<StringArray>(&spans, "http_request_method").value(row),
        "GET"
    );
    assert_eq!(
        column::<StringArray>(&spans, "service_name").value(row),
        "svc"
    );
    assert_eq!(column::<StringArray>(&spans, "kind").value(row), "SERVER");
    let attributes = column::<MapArray>(&spans, "attributes");
    assert_eq!(map_get(attributes, row, "custom.key").as_deref(), Some("v"));
    assert_eq!(
        map_get(attributes, row, "custom.flag").as_deref(),
        Some("true")
    );
    assert_eq!(
        map_get(attributes, row, "http.response.status_code"),
        None,
        "promoted keys leave the map"
    );
    let resource = column::<MapArray>(&spans, "resource_attributes");
    assert_eq!(
        map_get(resource, row, "host.name").as_deref(),
        Some("box-1")
    );
    assert_eq!(column::<ListArray>(&spans, "events").value(row).len(), 2);
    assert_eq!(column::<ListArray>(&spans, "links").value(row).len(), 1);
    assert_eq!(
        column::<FixedSizeBinaryArray>(&spans, "trace_id").value(row),
        &[1u8; 16]
    );
    for name in ["json", "gzip", "proto"] {
        assert!(
            (0..spans.num_rows()).any(|i| names.value(i) == name),
            "{name} missing"
        );
    }
    // The run's span is in its own partition.
    assert!(dir.join("spans/date=2026-11-23/run_id=run-t").is_dir());
    assert!(
        dir.join("spans/date=2026-11-23/run_id=__HIVE_DEFAULT_PARTITION__")
            .is_dir()
    );

    // Metrics: each point type in its own table, values intact.
    let number = read_table(&dir, "metrics_number");
    assert_eq!(number.num_rows(), 2);
    let values = number
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>();
    let mut got: Vec<f64> = values.iter().flatten().collect();
    got.sort_by(f64::total_cmp);
    assert_eq!(got, vec![2.5, 7.0]);
    // The sum's exemplar, whole; the gauge has none.
    let exemplars = column::<ListArray>(&number, "exemplars");
    let with = (0..number.num_rows())
        .find(|&i| values.value(i) == 2.5)
        .unwrap();
    assert_eq!(exemplars.value(1 - with).len(), 0);
    let exemplar = the_exemplar(exemplars, with, 42.0, 7, T0 - 5);
    let filtered = exemplar.column(4).as_map();
    assert_eq!(map_get(filtered, 0, "user").as_deref(), Some("u-1"));
    let number_column = |batch: &RecordBatch, name: &str| -> f64 {
        let values = column::<Float64Array>(batch, name);
        assert!(values.is_valid(0), "{name} is null");
        values.value(0)
    };
    let u64s = |batch: &RecordBatch, name: &str| -> Vec<u64> {
        let list = column::<ListArray>(batch, name).value(0);
        list.as_primitive::<UInt64Type>().values().to_vec()
    };
    // The histogram: every field as sent, its exemplar too.
    let histogram = read_table(&dir, "metrics_histogram");
    assert_eq!(u64s(&histogram, "bucket_counts"), [1, 2, 3]);
    let bounds = column::<ListArray>(&histogram, "explicit_bounds").value(0);
    assert_eq!(
        bounds.as_primitive::<Float64Type>().values().as_ref(),
        &[1.0, 5.0]
    );
    assert_eq!(column::<UInt64Array>(&histogram, "count").value(0), 6);
    assert_eq!(
        ["sum", "min", "max"].map(|name| number_column(&histogram, name)),
        [21.0, 0.5, 9.0]
    );
    assert_eq!(
        column::<StringArray>(&histogram, "temporality").value(0),
        "cumulative"
    );
    the_exemplar(
        column::<ListArray>(&histogram, "exemplars"),
        0,
        3.5,
        8,
        T0 - 7,
    );
    // The exponential histogram: scale, the zero bucket, both sides.
    let exp = read_table(&dir, "metrics_exp_histogram");
    assert_eq!(column::<Int32Array>(&exp, "scale").value(0), 2);
    assert_eq!(column::<UInt64Array>(&exp, "count").value(0), 6);
    assert_eq!(number_column(&exp, "sum"), -0.75);
    assert_eq!(column::<UInt64Array>(&exp, "zero_count").value(0), 1);
    assert_eq!(number_column(&exp, "zero_threshold"), 0.001);
    assert_eq!(column::<Int32Array>(&exp, "positive_offset").value(0), -1);
    assert_eq!(u64s(&exp, "positive_bucket_counts"), [1, 2]);
    assert_eq!(column::<Int32Array>(&exp, "negative_offset").value(0), -3);
    assert_eq!(u64s(&exp, "negative_bucket_counts"), [2]);
    assert_eq!(column::<StringArray>(&exp, "temporality").value(0), "delta");
    // The summary: count, sum and each quantile with its value.
    let summary = read_table(&dir, "metrics_summary");
    assert_eq!(column::<UInt64Array>(&summary, "count").value(0), 10);
    assert_eq!(number_column(&summary, "sum"), 55.0);
    let quantiles = column::<ListArray>(&summary, "quantile_values").value(0);
    let quantiles = quantiles.as_struct();
    let pairs: Vec<(f64, f64)> = (0..quantiles.len())
        .map(|i| {
            (
                quantiles.column(0).as_primitive::<Float64Type>().value(i),
                quantiles.column(1).as_primitive::<Float64Type>().value(i),
            )
        })
        .collect();
    assert_eq!(pairs, [(0.5, 5.0), (0.99, 9.9)]);
    assert!(
        dir.join("metrics_number/date=2026-11-23/run_id=run-m")
            .is_dir()
    );

    // Every file: zstd, schema version and time range in the metadata; spans
    // carry a bloom filter on trace_id.
    for path in schema::layout::parquet_files(&dir) {
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let meta = reader.metadata();
        let kv: Vec<_> = meta.file_metadata().key_value_metadata().unwrap().to_vec();
        let get = |key: &str| {
            kv.iter()
                .find(|k| k.key == key)
                .and_then(|k| k.value.clone())
        };
        assert_eq!(
            get("loadlens.schema_version").as_deref(),
            Some("1"),
            "{path:?}"
        );
        // Row count and time range as the rows have them: the time column
        // is the declared sort column, its bounds in the row groups'
        // statistics.
        assert_eq!(
            get("loadlens.row_count"),
            Some(meta.file_metadata().num_rows().to_string()),
            "{path:?}"
        );
        let time_column = meta.row_group(0).sorting_columns().unwrap()[0].column_idx as usize;
        let bound = |max: bool| -> Vec<i64> {
            meta.row_groups()
                .iter()
                .map(|g| match g.column(time_column).statistics() {
                    Some(parquet::file::statistics::Statistics::Int64(s)) => {
                        *(if max { s.max_opt() } else { s.min_opt() }).unwrap()
                    }
                    other => panic!("{path:?}: time statistics {other:?}"),
                })
                .collect()
        };
        assert_eq!(
            get("loadlens.min_time_unix_nano"),
            bound(false).into_iter().min().map(|t| t.to_string()),
            "{path:?}"
        );
        assert_eq!(
            get("loadlens.max_time_unix_nano"),
            bound(true).into_iter().max().map(|t| t.to_string()),
            "{path:?}"
        );
        let group = meta.row_group(0);
        assert!(
            matches!(group.column(0).compression(), Compression::ZSTD(_)),
            "{path:?}"
        );
        assert!(group.sorting_columns().is_some_and(|s| !s.is_empty()));
        if path.to_string_lossy().contains("/spans/") {
            let trace = group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == "trace_id")
                .unwrap();
            assert!(
                trace.bloom_filter_offset().is_some(),
                "no bloom filter in {path:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Spans with distinct ids starting at `first`.
fn many_spans(first: u32, count: u32) -> Vec<Span> {
    (first..first + count)
        .map(|i| {
            let mut load = span(1, 1, "load");
            load.trace_id = [i.to_be_bytes(), [1; 4], [2; 4], [3; 4]].concat();
            load.span_id = [i.to_be_bytes(), [4; 4]].concat();
            load.attributes = vec![s("payload", &"x".repeat(64))];
            load
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_memory_bound_requests_are_refused_retryably_and_nothing_is_lost() {
    let dir = std::env::temp_dir().join(format!("loadlens-overload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A file where the spans folder should be: every flush of spans fails, so
    // pending memory can only grow until the bound.
    std::fs::write(dir.join("spans"), b"in the way").unwrap();
    let mut config = CollectorConfig::ephemeral(&dir);
    config.max_pending_bytes = 256 * 1024;
    config.flush_interval = std::time::Duration::from_millis(100);
    let collector = Collector::start(config).await.unwrap();
    let http = collector.http_addr();
    let mut client = TraceServiceClient::connect(collector.grpc_endpoint())
        .await
        .unwrap();

    let mut acked = 0u32;
    let refusal = loop {
        assert!(acked < 100_000, "never refused");
        match client.export(traces("load", many_spans(acked, 500))).await {
            Ok(_) => acked += 500,
            Err(status) => break status,
        }
    };
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");
    let retry = refusal
        .get_details_retry_info()
        .expect("RetryInfo in the status details");
    assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(1)));
    let body = traces("load", many_spans(1_000_000, 10)).encode_to_vec();
    let (status, retry_after, _) = post_with_retry_after(http, body).await;
    assert_eq!((status, retry_after.as_str()), (503, "1"));
    assert_eq!(get(http, "/readyz").await.0, 503);
    let (_, _, metrics) = get(http, "/metrics").await;
    assert!(String::from_utf8_lossy(&metrics).contains(
        "loadlens_collector_refused_requests_total{signal=\"traces\",reason=\"overloaded\"}"
    ));
    assert!(collector.ingest().pending_bytes() >= collector.ingest().max_pending_bytes());

    // Clear the way: the retried flush writes what was held, and requests are taken again.
    std::fs::remove_file(dir.join("spans")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while collector.ingest().overloaded() {
        assert!(
            std::time::Instant::now() < deadline,
            "pending rows never flushed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(get(http, "/readyz").await.0, 200);
    client
        .export(traces("load", many_spans(acked, 500)))
        .await
        .unwrap();
    acked += 500;
    collector.shutdown().await.unwrap();

    let spans = read_table(&dir, "spans");
    assert_eq!(
        spans.num_rows() as u32,
        acked,
        "every acknowledged span, once"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Beyond the main test: JSON answered in JSON, its rejections in
/// `partialSuccess`; metrics in the specification's JSON shape; an HTTP body
/// past the limit refused with 413 uncompressed as well as gzipped; a gRPC
/// message past it refused for either service; and both receivers serving
/// on after each refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_answered_in_kind_and_both_receivers_refuse_past_their_limits() {
    let dir = std::env::temp_dir().join(format!("loadlens-receivers-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = CollectorConfig::ephemeral(&dir);
    config.max_http_body = 64 * 1024;
    config.max_grpc_message = 64 * 1024;
    let collector = Collector::start(config).await.unwrap();
    let http = collector.http_addr();

    // gRPC messages past the limit, for traces and for metrics.
    let endpoint = collector.grpc_endpoint();
    let mut traces_client = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    let big = traces("big", many_spans(0, 2000));
    assert!(big.encoded_len() > 64 * 1024);
    let refused = traces_client.export(big).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused}");
    assert!(refused.message().contains("too large"), "{refused}");
    let point = NumberDataPoint {
        time_unix_nano: T0,
        value: Some(number_data_point::Value::AsInt(1)),
        ..Default::default()
    };
    let big = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric(
                    "big",
                    Data::Gauge(Gauge {
                        data_points: vec![point; 10_000],
                    }),
                )],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    assert!(big.encoded_len() > 64 * 1024);
    let mut metrics_client = MetricsServiceClient::connect(endpoint).await.unwrap();
    let refused = metrics_client.export(big).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused}");
    assert!(refused.message().contains("too large"), "{refused}");
    traces_client
        .export(traces("grpc-after", vec![span(0x0e, 0x0e, "grpc after")]))
        .await
        .expect("gRPC serves on");

    // One span with good ids, one whose span id is one byte long.
    let json_span = |span_id: &str, name: &str| {
        format!(
            r#"{{"traceId":"{}","spanId":"{span_id}","name":"{name}","startTimeUnixNano":"{T0}","endTimeUnixNano":"{}"}}"#,
            "0a".repeat(16),
            T0 + 1000
        )
    };
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{},{}]}}]}}]}}"#,
        json_span(&"0b".repeat(8), "kept"),
        json_span("0c", "short id")
    );
    let reply = post_json(http, "/v1/traces", json).await;
    let partial = &reply["partialSuccess"];
    assert_eq!(int64(&partial["rejectedSpans"]), Some(1), "{reply}");
    assert!(
        partial["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("span_id must be 8")),
        "{reply}"
    );

    // A gauge point in JSON, its int64 value as a string.
    let metrics = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"queue.depth","gauge":{{"dataPoints":[{{"timeUnixNano":"{T0}","asInt":"7"}}]}}}}]}}]}}]}}"#
    );
    let reply = post_json(http, "/v1/metrics", metrics).await;
    let rejected = &reply["partialSuccess"]["rejectedDataPoints"];
    assert!(rejected.is_null() || int64(rejected) == Some(0), "{reply}");

    // Past the limit uncompressed: refused before it is decoded.
    let (status, _, reply) = post(
        http,
        "/v1/traces",
        "application/x-protobuf",
        false,
        vec![0; 64 * 1024 + 1],
    )
    .await;
    assert_eq!(status, 413, "{reply:?}");
    // At the limit: read, then refused as no OTLP request.
    let (status, _, reply) = post(
        http,
        "/v1/traces",
        "application/x-protobuf",
        false,
        vec![0; 64 * 1024],
    )
    .await;
    assert_eq!(status, 400, "{reply:?}");
    // And serving on.
    let body = traces("after", vec![span(0x0d, 0x0d, "after")]).encode_to_vec();
    let (status, _, _) = post(http, "/v1/traces", "application/x-protobuf", false, body).await;
    assert_eq!(status, 200);
    collector.shutdown().await.unwrap();

    let spans = read_table(&dir, "spans");
    let mut names: Vec<&str> = column::<StringArray>(&spans, "name")
        .iter()
        .flatten()
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["after", "grpc after", "kept"]);
    let number = read_table(&dir, "metrics_number");
    assert_eq!(
        column::<StringArray>(&number, "metric_name").value(0),
        "queue.depth"
    );
    let value = number.column_by_name("value_int").unwrap();
    assert_eq!(
        value.as_primitive::<arrow::datatypes::Int64Type>().value(0),
        7
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// POSTs an OTLP/JSON body; the answer must be a 200 in JSON.
async fn post_json(addr: std::net::SocketAddr, path: &str, body: String) -> serde_json::Value {
    let (status, content_type, reply) =
        post(addr, path, "application/json", false, body.into_bytes()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/json"),
        "{reply:?}"
    );
    serde_json::from_slice(&reply).expect("a JSON answer")
}

/// An int64 of OTLP/JSON: a string in proto3's JSON mapping, which allows a
/// number too.
fn int64(value: &serde_json::Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str()?.parse().ok())
}

async fn post_with_retry_after(addr: std::net::SocketAddr, body: Vec<u8>) -> (u16, String, Bytes) {
    send(
        addr,
        "/v1/traces",
        "application/x-protobuf",
        false,
        body,
        "retry-after",
    )
    .await
}

/// A TraceService `Export` call whose first field (`resource_spans`) holds
/// `resource_spans` as raw bytes, valid or not; returns the call's status.
async fn grpc_export_raw(endpoint: String, resource_spans: Vec<u8>) -> tonic::Status {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawRequest {
        #[prost(bytes = "vec", tag = "1")]
        resource_spans: Vec<u8>,
    }
    let request = RawRequest { resource_spans }.encode_to_vec();
    let mut client = collector::receiver::grpc::EncodedTraceClient::connect(endpoint)
        .await
        .unwrap();
    match client.export(request.into()).await {
        Ok(_) => tonic::Status::ok("accepted"),
        Err(status) => status,
    }
}
