//! The fuzz targets' property on the stable toolchain: valid OTLP bodies
//! mutated at random (bit flips, truncation, splices, byte runs), each run
//! through the receiver's decoding. Every input gives rows or a 4xx refusal;
//! nothing panics. `fuzz/` explores far more with libFuzzer; this keeps the
//! property in every test run.

use collector::receiver::http::decode_like_export;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
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
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
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
