//! How much memory a request's rows take once converted, for requests of a
//! few shapes: what the pending-memory bound is charged for them
//! (`get_array_memory_size`, the capacity of every buffer). BENCHMARKS.md
//! quotes it, run at the commits it names.
//!
//! ```text
//! cargo run --release -p collector --example request_memory
//! ```

use collector::convert::spans::request_of;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use schema::attr;

/// 2026-11-23T00:00:00Z.
const T0: u64 = 1_795_392_000_000_000_000;

fn main() {
    let shapes: [(&str, Vec<Span>); 6] = [
        ("8 spans, 3 attributes each", generator_like(8)),
        ("1,024 spans, 3 attributes each", generator_like(1_024)),
        ("1 span, then 50,000 empty ones", {
            let mut spans = generator_like(1);
            spans.resize(50_001, Span::default());
            spans
        }),
        ("10,000 spans of ids and times only", ids_and_times(10_000)),
        ("2,000 spans, each of its own run", own_runs(2_000)),
        ("4,000 spans, each of its own run", own_runs(4_000)),
    ];
    println!(
        "{:<36} {:>11} {:>7} {:>9} {:>8} {:>14}",
        "request", "encoded", "rows", "rejected", "files", "rows' memory"
    );
    for (name, spans) in shapes {
        let bytes = request_of(spans).encode_to_vec();
        let converted = collector::convert::spans::convert_encoded(&bytes).expect("converts");
        let memory = converted.memory();
        println!(
            "{name:<36} {:>11} {:>7} {:>9} {:>8} {:>14}",
            bytes.len(),
            converted.rows(),
            converted.rejected,
            converted.batches.len(),
            memory
        );
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Spans with unique ids and times a microsecond apart.
fn ids_and_times(n: u64) -> Vec<Span> {
    (0..n)
        .map(|i| Span {
            trace_id: (i + 1).to_be_bytes().repeat(2),
            span_id: (i + 1).to_be_bytes().to_vec(),
            start_time_unix_nano: T0 + i * 1_000,
            end_time_unix_nano: T0 + i * 1_000 + 500,
            ..Default::default()
        })
        .collect()
}

/// Spans with a name, a URL, a request id and one attribute of no column.
fn generator_like(n: u64) -> Vec<Span> {
    let mut spans = ids_and_times(n);
    for (i, span) in spans.iter_mut().enumerate() {
        span.name = "GET /api/items".into();
        span.attributes = vec![
            kv(
                attr::URL_FULL,
                Value::StringValue("http://shop.internal/api/items".into()),
            ),
            kv(attr::REQUEST_ID, Value::IntValue(i as i64)),
            kv("custom", Value::StringValue("a".into())),
        ];
    }
    spans
}

/// Spans each carrying a run id of its own, so each is a partition.
fn own_runs(n: u64) -> Vec<Span> {
    let mut spans = ids_and_times(n);
    for (i, span) in spans.iter_mut().enumerate() {
        span.name = "GET /".into();
        span.attributes = vec![kv(attr::RUN_ID, Value::StringValue(format!("run-{i}")))];
    }
    spans
}
