//! Crash safety: spans flow in while the collector is killed with SIGKILL and
//! restarted; every acknowledged span must be in the store exactly once.
//! And a resend that comes after the collector's index of recent span ids
//! has forgotten the first copy is still stored once, and a stop is not held
//! for ever by a client that answers nothing.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

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

/// A batch sent and not yet acknowledged: its first id and the request, kept
/// to be sent again byte for byte, as an OTLP exporter retries.
type Unacked = Option<(u64, ExportTraceServiceRequest)>;

/// Sends batches until `stop`; records what was sent and what was
/// acknowledged. A batch that is not acknowledged is sent again, unchanged,
/// until it is: its first copy may already be stored, and must not be
/// stored twice. Returns the next id, the batch still unacknowledged, and
/// how many times a batch was sent again.
fn sender(
    endpoint: String,
    next_id: u64,
    mut unacked: Unacked,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<HashSet<u64>>>,
    acked: Arc<Mutex<HashSet<u64>>>,
) -> (u64, Unacked, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut id = next_id;
        let mut resent = 0;
        let mut client: Option<TraceServiceClient<tonic::transport::Channel>> = None;
        while !stop.load(Ordering::Relaxed) {
            if client.is_none() {
                client = TraceServiceClient::connect(endpoint.clone()).await.ok();
                if client.is_none() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
            let (first, request) = match unacked.take() {
                Some(batch) => {
                    resent += 1;
                    batch
                }
                None => {
                    sent.lock().unwrap().extend(id..id + BATCH);
                    id += BATCH;
                    (id - BATCH, batch(id - BATCH))
                }
            };
            let result = tokio::time::timeout(
                Duration::from_secs(5),
                client.as_mut().unwrap().export(request.clone()),
            )
            .await;
            match result {
                Ok(Ok(response)) if response.get_ref().partial_success.is_none() => {
                    acked.lock().unwrap().extend(first..first + BATCH);
                }
                // Not acknowledged: it may or may not be stored; send it again.
                _ => {
                    unacked = Some((first, request));
                    client = None;
                }
            }
        }
        (id, unacked, resent)
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
    let mut unacked: Unacked = None;
    let mut resent = 0;
    // An index of recent ids a few batches long: resends are dropped by it,
    // or, once it has forgotten their first copy, by a lookup in the files.
    let config = dir.path().join("collector.yaml");
    std::fs::write(&config, "dedupe_max_spans: 200\n").unwrap();
    let config = config.to_string_lossy().into_owned();
    let flags = ["--config", &config, "--flush-interval", "150ms"];
    // Kill at different points of the flush cycle.
    for run_ms in [350u64, 520, 610, 275, 800] {
        let collector = start_collector(&data, grpc, http, &flags);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (endpoint, stop, sent, acked) =
                (endpoint.clone(), stop.clone(), sent.clone(), acked.clone());
            let unacked = unacked.take();
            std::thread::spawn(move || sender(endpoint, next_id, unacked, stop, sent, acked))
        };
        std::thread::sleep(Duration::from_millis(run_ms));
        collector.kill9();
        stop.store(true, Ordering::Relaxed);
        let (next, left, again) = thread.join().unwrap();
        (next_id, unacked) = (next, left);
        resent += again;
    }
    // A last start replays the log and takes the batch left unacknowledged;
    // a clean stop writes everything.
    let collector = start_collector(&data, grpc, http, &flags);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (endpoint, stop, sent, acked) =
            (endpoint.clone(), stop.clone(), sent.clone(), acked.clone());
        std::thread::spawn(move || sender(endpoint, next_id, unacked, stop, sent, acked))
    };
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    resent += thread.join().unwrap().2;
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
    // Every Parquet file reads whole, every column of every row, and holds
    // the rows its footer counts; and the last, clean start removed the
    // temporary files the kills left mid-write.
    let files = schema::layout::parquet_files(&data);
    assert!(!files.is_empty(), "no Parquet files under {data:?}");
    for path in &files {
        let file = std::fs::File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{path:?} has no readable footer: {e}"));
        let footer_rows = reader.metadata().file_metadata().num_rows();
        let mut read = 0;
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap_or_else(|e| panic!("{path:?} does not read: {e}"));
            read += batch.num_rows() as i64;
        }
        assert_eq!(read, footer_rows, "{path:?}");
    }
    let temporary: Vec<_> = files_below(&data)
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temporary.is_empty(), "temporary files left: {temporary:?}");
    // Every log segment was written to Parquet and removed.
    let wal: Vec<_> = std::fs::read_dir(data.join("_wal"))
        .unwrap()
        .flatten()
        .collect();
    let sizes: u64 = wal.iter().map(|e| e.metadata().unwrap().len()).sum();
    assert_eq!(sizes, 0, "WAL left after a clean stop: {wal:?}");
    eprintln!(
        "crash test: {} sent, {} acknowledged, {} stored, {resent} batches sent again",
        sent.len(),
        acked.len(),
        stored.len()
    );
}

/// Waits up to 20 s for `done` (of the collector's metrics) to hold; `what`
/// names it in the failure.
fn await_metrics(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}: not in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `/metrics` says `rows` rows were written to Parquet.
fn await_rows(http: std::net::SocketAddr, rows: f64) {
    await_metrics(&format!("{rows} rows written"), || {
        metric(http, "loadlens_collector_written_rows_total") >= rows
    });
}

#[test]
fn a_resend_the_index_has_forgotten_is_still_stored_once() {
    let dir = TempDir::new("late-resend");
    let data = dir.path().join("store");
    let config = dir.path().join("collector.yaml");
    // An index of 100 ids, and no compaction: the flush alone must find
    // the first copy.
    std::fs::write(&config, "dedupe_max_spans: 100\ncompaction_interval: 0s\n").unwrap();
    let (grpc, http) = (free_addr(), free_addr());
    let config = config.to_string_lossy().into_owned();
    let collector = start_collector(
        &data,
        grpc,
        http,
        &["--config", &config, "--flush-interval", "50ms"],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = batch(1);
    runtime.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
        // Five flushes of 50 spans each, one after the other.
        for k in 0..5u64 {
            let request = if k == 0 {
                first.clone()
            } else {
                batch(1 + k * BATCH)
            };
            client.export(request).await.unwrap();
            await_rows(http, ((k + 1) * BATCH) as f64);
        }
        assert!(
            metric(http, "loadlens_collector_recent_span_ids") <= 150.0,
            "the index still holds the first batch"
        );
        client.export(first).await.unwrap();
    });
    // Flushed, whether written again or dropped.
    await_metrics("the resend flushed", || {
        metric(http, "loadlens_collector_written_rows_total")
            + metric(http, "loadlens_collector_duplicate_spans_removed_total")
            >= (6 * BATCH) as f64
    });
    // Read while the collector runs: no compaction has touched the files.
    let rows = sql_json(
        &data,
        "SELECT count(*) AS spans, count(DISTINCT span_id) AS ids FROM spans WHERE service_name = 'crash-test'",
    );
    assert_eq!(rows[0]["spans"], 250, "{rows:?}");
    assert_eq!(rows[0]["ids"], 250, "{rows:?}");
    assert_eq!(metric(http, "loadlens_collector_written_rows_total"), 250.0);
    assert_eq!(
        metric(http, "loadlens_collector_duplicate_spans_removed_total"),
        BATCH as f64
    );
    assert!(metric(http, "loadlens_collector_spans_looked_up_total") >= BATCH as f64);
    assert!(metric(http, "loadlens_collector_lookup_rows_read_total") >= BATCH as f64);
    drop(runtime);
    assert!(collector.terminate(), "collector did not stop cleanly");
}

#[test]
fn a_stop_does_not_wait_for_ever_on_a_client_that_answers_nothing() {
    let dir = TempDir::new("silent-client");
    let (grpc, http) = (free_addr(), free_addr());
    let collector = start_collector(&dir.path().join("store"), grpc, http, &[]);
    // A client that opened an HTTP/2 connection and then answers nothing (a
    // paused process): the stop waits for it only for its grace period.
    let mut silent = std::net::TcpStream::connect(grpc).unwrap();
    // The connection preface, then an empty SETTINGS frame.
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stopping = std::time::Instant::now();
    assert!(collector.terminate(), "collector did not stop cleanly");
    assert!(
        stopping.elapsed() >= collector::SHUTDOWN_GRACE,
        "stopped in {:?}: the silent connection did not hold the stop",
        stopping.elapsed()
    );
    drop(silent);
}
