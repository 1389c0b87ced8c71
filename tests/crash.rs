//! Crash safety: spans flow in while the collector is killed with SIGKILL and
//! restarted; every acknowledged span must be in the store exactly once.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

const BATCH: u64 = 50;

fn batch(first_id: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans = (first_id..first_id + BATCH)
        .map(|id| Span {
            trace_id: [id.to_be_bytes(), [7; 8]].concat(),
            span_id: id.to_be_bytes().to_vec(),
            name: "crash".into(),
            kind: 2,
            start_time_unix_nano: now,
            end_time_unix_nano: now + 1_000,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("crash-test".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends batches until `stop`; records what was sent and what was acknowledged.
fn sender(
    endpoint: String,
    next_id: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<HashSet<u64>>>,
    acked: Arc<Mutex<HashSet<u64>>>,
) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut id = next_id;
        let mut client: Option<TraceServiceClient<tonic::transport::Channel>> = None;
        while !stop.load(Ordering::Relaxed) {
            if client.is_none() {
                client = TraceServiceClient::connect(endpoint.clone()).await.ok();
                if client.is_none() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
            let request = batch(id);
            sent.lock().unwrap().extend(id..id + BATCH);
            let result = tokio::time::timeout(
                Duration::from_secs(5),
                client.as_mut().unwrap().export(request),
            )
            .await;
            match result {
                Ok(Ok(response)) if response.get_ref().partial_success.is_none() => {
                    acked.lock().unwrap().extend(id..id + BATCH);
                }
                // Not acknowledged: it may or may not be stored; never resent.
                _ => client = None,
            }
            id += BATCH;
        }
        id
    })
}

#[test]
fn acknowledged_spans_survive_sigkill_exactly_once() {
    let dir = TempDir::new("crash");
    let data = dir.path().join("store");
    let (grpc, http) = (free_addr(), free_addr());
    let endpoint = format!("http://{grpc}");
    let sent = Arc::new(Mutex::new(HashSet::new()));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut next_id = 1u64;
    // Kill at different points of the flush cycle.
    for run_ms in [350u64, 520, 610, 275, 800] {
        let collector = start_collector(&data, grpc, http, &["--flush-interval", "150ms"]);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (endpoint, stop, sent, acked) =
                (endpoint.clone(), stop.clone(), sent.clone(), acked.clone());
            std::thread::spawn(move || sender(endpoint, next_id, stop, sent, acked))
        };
        std::thread::sleep(Duration::from_millis(run_ms));
        collector.kill9();
        stop.store(true, Ordering::Relaxed);
        next_id = thread.join().unwrap();
    }
    // A last start replays the log; a clean stop writes everything.
    let collector = start_collector(&data, grpc, http, &["--flush-interval", "150ms"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(collector.terminate(), "collector did not stop cleanly");

    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(
        acked.len() >= 1000,
        "too little got through to prove anything: {}",
        acked.len()
    );
    let rows = sql_json(
        &data,
        "SELECT encode(CAST(span_id AS BYTEA), 'hex') AS id FROM spans WHERE service_name = 'crash-test'",
    );
    let mut stored = HashSet::new();
    for row in &rows {
        let id = u64::from_str_radix(row["id"].as_str().unwrap(), 16).unwrap();
        assert!(stored.insert(id), "span {id} stored twice");
        assert!(sent.contains(&id), "span {id} was never sent");
    }
    let lost: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged spans lost, e.g. {lost:?}",
        acked.difference(&stored).count()
    );
    // Every log segment was written to Parquet and removed.
    let wal: Vec<_> = std::fs::read_dir(data.join("_wal"))
        .unwrap()
        .flatten()
        .collect();
    let sizes: u64 = wal.iter().map(|e| e.metadata().unwrap().len()).sum();
    assert_eq!(sizes, 0, "WAL left after a clean stop: {wal:?}");
    eprintln!(
        "crash test: {} sent, {} acknowledged, {} stored",
        sent.len(),
        acked.len(),
        stored.len()
    );
}
