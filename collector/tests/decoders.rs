//! The fuzz targets' property on the stable toolchain: valid OTLP bodies
//! mutated at random (bit flips, truncation, splices, byte runs), each run
//! through the receiver's decoding. Every input gives rows or a 4xx refusal;
//! nothing panics. `fuzz/` explores far more with libFuzzer; this keeps the
//! property in every test run.

use collector::convert::spans::request_of;
use collector::receiver::http::decode_like_export;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const T0: u64 = 1_795_435_200_000_000_000;

fn traces() -> ExportTraceServiceRequest {
    let spans = (1..=8u8)
        .map(|i| Span {
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            parent_span_id: if i > 1 { vec![1; 8] } else { vec![] },
            name: format!("op {i}"),
            kind: 2,
            start_time_unix_nano: T0 + i as u64,
            end_time_unix_nano: T0 + 1_000 * i as u64,
            attributes: vec![
                KeyValue {
                    key: "http.response.status_code".into(),
                    value: Some(AnyValue {
                        value: Some(Value::IntValue(200 + i as i64)),
                    }),
                    ..Default::default()
                },
                KeyValue {
                    key: "loadlens.run.id".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("fuzz".into())),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .collect();
    request_of(spans)
}

fn metrics() -> ExportMetricsServiceRequest {
    let gauge = Metric {
        name: "queue.depth".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: T0,
                value: Some(number_data_point::Value::AsInt(7)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let histogram = Metric {
        name: "latency".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: T0,
                count: 6,
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![0.1, 1.0],
                sum: Some(3.5),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![gauge, histogram],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=data.len());
        match rng.random_range(0..5) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => data.truncate(at),
            2 => {
                let run = rng.random_range(1..16);
                let byte = rng.random();
                data.splice(at..at, std::iter::repeat_n(byte, run));
            }
            3 if !data.is_empty() => {
                // Copy a slice of the input elsewhere (length fields now lie).
                let from = rng.random_range(0..data.len());
                let len = rng.random_range(0..=(data.len() - from).min(32));
                let piece = data[from..from + len].to_vec();
                data.splice(at..at, piece);
            }
            _ => {
                let i = at.min(data.len());
                data.insert(i, rng.random());
            }
        }
    }
    data
}

fn check(metrics: bool, content_type: &str, gzip: bool, body: &[u8]) -> bool {
    match decode_like_export(metrics, content_type, gzip, body, 1 << 20) {
        Ok(_) => true,
        Err((status, text)) => {
            assert!(
                (400..500).contains(&status),
                "status {status} ({text}) for {body:?}"
            );
            false
        }
    }
}

#[test]
fn mutated_bodies_get_rows_or_a_client_error() {
    let mut rng = StdRng::seed_from_u64(0x6c6f_6164);
    let seeds = [
        (false, "application/x-protobuf", traces().encode_to_vec()),
        (true, "application/x-protobuf", metrics().encode_to_vec()),
        (
            false,
            "application/json",
            serde_json::to_vec(&traces()).unwrap(),
        ),
        (
            true,
            "application/json",
            serde_json::to_vec(&metrics()).unwrap(),
        ),
    ];
    for (metrics, content_type, seed) in &seeds {
        assert!(
            check(*metrics, content_type, false, seed),
            "the seed itself decodes"
        );
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3_000 {
            let body = mutate(&mut rng, seed);
            if check(*metrics, content_type, false, &body) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // Both outcomes occur, so the mutations reach past the first check.
        assert!(
            accepted > 0 && refused > 0,
            "{content_type}: {accepted} accepted, {refused} refused"
        );
    }
    // Gzip streams with damage inside.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &traces().encode_to_vec()).unwrap();
    let gz = gz.finish().unwrap();
    for _ in 0..1_000 {
        check(
            false,
            "application/x-protobuf",
            true,
            &mutate(&mut rng, &gz),
        );
    }
}

/// A request with every part the wire walk reads: resource and scope
/// attributes, all scalar value types, status, events, links, a parent, a
/// `loadlens.run` span, spans of two runs, and strings that are not ASCII.
fn rich_traces() -> ExportTraceServiceRequest {
    let value = |v: Value| Some(AnyValue { value: Some(v) });
    let kv = |key: &str, v: Value| KeyValue {
        key: key.into(),
        value: value(v),
        ..Default::default()
    };
    let attributes = |i: u8| {
        vec![
            kv("http.request.method", Value::StringValue("GET".into())),
            kv("http.response.status_code", Value::IntValue(200 + i as i64)),
            kv("http.route", Value::StringValue("/élan/{id}".into())),
            kv("loadlens.request.id", Value::IntValue(i as i64)),
            kv("loadlens.step", Value::StringValue("browse".into())),
            kv("loadlens.intended_start", Value::IntValue(T0 as i64)),
            kv("retry", Value::BoolValue(i.is_multiple_of(2))),
            kv("ratio", Value::DoubleValue(0.25 * i as f64)),
            kv("blob", Value::BytesValue(vec![0xde, i])),
            kv("indexed", Value::StringValueStrindex(i as i32)),
            kv(
                "http.response.status_code",
                Value::StringValue("dup".into()),
            ),
            KeyValue {
                key: "empty".into(),
                value: None,
                ..Default::default()
            },
            kv(
                "loadlens.run.id",
                Value::StringValue(if i.is_multiple_of(3) { "r2" } else { "r1" }.into()),
            ),
        ]
    };
    let spans: Vec<Span> = (1..=6u8)
        .map(|i| Span {
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            parent_span_id: if i > 1 { vec![1; 8] } else { vec![] },
            trace_state: if i == 2 { "k=v".into() } else { String::new() },
            flags: 0x301,
            name: if i == 6 {
                "loadlens.run".into()
            } else {
                format!("GET /élan/{i}")
            },
            kind: 3,
            start_time_unix_nano: T0 + i as u64,
            end_time_unix_nano: T0 + 1_000_000 * i as u64,
            attributes: attributes(i),
            dropped_attributes_count: 1,
            events: vec![Event {
                time_unix_nano: T0 + 5,
                name: "exception".into(),
                attributes: vec![kv("exception.type", Value::StringValue("Timeout".into()))],
                dropped_attributes_count: 0,
            }],
            links: vec![Link {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                trace_state: "a=b".into(),
                attributes: vec![kv("why", Value::StringValue("retry".into()))],
                dropped_attributes_count: 0,
                flags: 1,
            }],
            status: Some(Status {
                message: if i == 4 { "boom".into() } else { String::new() },
                code: if i == 4 { 2 } else { 1 },
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("checkout".into())),
                    kv("deployment.environment", Value::StringValue("load".into())),
                    kv("host.cores", Value::IntValue(2)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "loadlens".into(),
                    version: "0.1".into(),
                    attributes: vec![kv("scope.attr", Value::BoolValue(true))],
                    dropped_attributes_count: 0,
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The collector reads spans straight from the protobuf bytes when it can
/// (`convert/wire.rs`) and leaves everything else to prost. Whenever the walk
/// gives rows, prost must accept the same bytes and give the same rows:
/// checked here on mutated requests, and by the `otlp_traces_walk` fuzz target.
#[test]
fn the_wire_walk_gives_prost_rows_or_defers_to_prost() {
    let seeds = [rich_traces().encode_to_vec(), traces().encode_to_vec()];
    for seed in &seeds {
        assert_eq!(
            collector::convert::spans::wire_agrees_with_prost(seed),
            Ok(true),
            "the walk handles a request as OTLP exporters write it"
        );
    }
    // A nested value is left to prost, and the rows still come.
    let mut nested = rich_traces();
    nested.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "list".into(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::IntValue(1)),
                    }],
                })),
            }),
            ..Default::default()
        });
    let nested = nested.encode_to_vec();
    assert_eq!(
        collector::convert::spans::wire_agrees_with_prost(&nested),
        Ok(false)
    );
    assert_eq!(
        collector::convert::spans::convert_encoded(&nested)
            .unwrap()
            .rows(),
        6
    );

    let mut rng = StdRng::seed_from_u64(0x7769_7265);
    let (mut walked, mut deferred) = (0, 0);
    for seed in &seeds {
        for _ in 0..20_000 {
            let body = mutate(&mut rng, seed);
            match collector::convert::spans::wire_agrees_with_prost(&body) {
                Ok(true) => walked += 1,
                Ok(false) => deferred += 1,
                Err(difference) => panic!("{difference}\ninput: {body:?}"),
            }
        }
    }
    // Many mutations keep a valid request (a flipped bit in a value), many do
    // not; both paths must have been taken for the check to mean anything.
    assert!(
        walked > 1_000 && deferred > 1_000,
        "{walked} walked, {deferred} deferred"
    );
}
