//! Overload: offered twice the rate the collector sustains, it keeps its
//! resident memory under the configured bound (`--max-memory`), answers the
//! excess with retryable refusals (UNAVAILABLE + RetryInfo), and stores
//! every acknowledged span.
//!
//! First the sustainable rate is measured: sixteen concurrent requests at a
//! time, each followed at once by the next, and the acknowledged spans per
//! second is that rate. Then batches are offered at twice that rate as an open
//! loop (one every interval, answered or not), and the collector's peak RSS
//! is the kernel's count of it (`VmHWM`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use collector::convert::spans::request_of;
use collector::receiver::grpc::EncodedTraceClient;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tonic_types::StatusExt;

const BATCH: u64 = 512;
/// The bound on resident memory given to the collector.
const MEMORY_BOUND: u64 = 192 << 20;
/// The pending bound: half of the memory bound, the most it may be, so that
/// resident memory nears the bound and admission refuses for it too (the
/// debug build's peak was 150-167 MiB in 6 runs, with 329-1,036 such
/// refusals).
const PENDING_BOUND: u64 = MEMORY_BOUND / 2;
/// Ids the recent-id index keeps. Unset, it may take half the pending
/// bound (48 MiB here), and pending rows and the index alone would then
/// fill the high-water mark (144 MiB), leaving nothing for what the
/// collector holds idle: a bound the collector itself calls too small
/// ("raise max_memory"), and says so in every run. On a host fast enough
/// to send the test some 1.5 million spans, the peak passed the bound in
/// one of nine runs (debug build, 2026-12-07; 157-201 MiB in the five
/// that printed it). 200,000 ids take some 12 MiB (`BYTES_PER_ID`); with
/// them the peak was 147-165 MiB in eight runs on the same host, and the
/// two whose counters were printed refused some 3,700 requests each for
/// memory.
const RECENT_IDS: u64 = 200_000;

fn batch(first_id: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let text = |key: &str, value: String| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..Default::default()
    };
    let spans = (first_id..first_id + BATCH)
        .map(|id| Span {
            trace_id: [id.to_be_bytes(), [9; 8]].concat(),
            span_id: (id + 1).to_be_bytes().to_vec(),
            name: "GET /overload".into(),
            kind: 3,
            start_time_unix_nano: now,
            end_time_unix_nano: now + 2_000_000,
            attributes: vec![
                text(
                    "url.full",
                    format!("http://target.internal/overload?id={id}"),
                ),
                text("http.route", "/overload".into()),
                text("user_agent.original", "loadlens-overload-test/1".into()),
            ],
            ..Default::default()
        })
        .collect();
    request_of(spans)
}

#[derive(Default)]
struct Counts {
    next_batch: AtomicU64,
    acked_spans: AtomicU64,
    refused: AtomicU64,
    refused_with_retry_info: AtomicU64,
}

/// Pre-encoded batches with the span ids patched in place, so the client
/// spends next to no CPU and the collector is what limits the rate.
struct Encoded {
    bytes: Vec<u8>,
    /// Where each span's trace id and span id start.
    id_offsets: Vec<(usize, usize)>,
}

impl Encoded {
    fn new() -> Self {
        let bytes = batch(0).encode_to_vec();
        let find = |needle: &[u8]| -> usize {
            bytes
                .windows(needle.len())
                .position(|w| w == needle)
                .expect("id in the encoding")
        };
        let id_offsets = (0..BATCH)
            .map(|id| {
                // Field 1 (trace_id, 16 bytes) and field 2 (span_id, 8 bytes) of a Span.
                let trace = find(&[&[0x0a, 16][..], &id.to_be_bytes(), &[9; 8]].concat());
                let span = find(&[&[0x12, 8][..], &(id + 1).to_be_bytes()].concat());
                (trace + 2, span + 2)
            })
            .collect();
        Encoded { bytes, id_offsets }
    }

    fn with_first_id(&self, first: u64) -> bytes::Bytes {
        let mut bytes = self.bytes.clone();
        for (i, (trace, span)) in self.id_offsets.iter().enumerate() {
            let id = first + i as u64;
            bytes[*trace..*trace + 8].copy_from_slice(&id.to_be_bytes());
            bytes[*span..*span + 8].copy_from_slice(&(id + 1).to_be_bytes());
        }
        bytes.into()
    }
}

type Client = EncodedTraceClient;

async fn connect(endpoint: &str) -> Client {
    EncodedTraceClient::connect(endpoint.to_string())
        .await
        .expect("connect to the collector")
}

/// Sends one batch and records the answer.
async fn export(mut client: Client, encoded: Arc<Encoded>, counts: Arc<Counts>) {
    let first = counts.next_batch.fetch_add(1, Ordering::Relaxed) * BATCH;
    let answer = client.export(encoded.with_first_id(first)).await;
    match answer {
        Ok(answer) => {
            assert!(answer.into_inner().partial_success.is_none());
            counts.acked_spans.fetch_add(BATCH, Ordering::Relaxed);
        }
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
            counts.refused.fetch_add(1, Ordering::Relaxed);
            if status.get_details_retry_info().is_some() {
                counts
                    .refused_with_retry_info
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Connections the client opens, as several exporters would.
const CONNECTIONS: usize = 8;

async fn connections(endpoint: &str) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(connect(endpoint).await);
    }
    clients
}

/// Closed loop: `streams` senders, each sending its next batch when the last is answered.
async fn flat_out(endpoint: &str, streams: usize, counts: Arc<Counts>, until: Instant) {
    let clients = connections(endpoint).await;
    let encoded = Arc::new(Encoded::new());
    let senders: Vec<_> = (0..streams)
        .map(|i| {
            let client = clients[i % CONNECTIONS].clone();
            let (encoded, counts) = (encoded.clone(), counts.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    export(client.clone(), encoded.clone(), counts.clone()).await;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
}

/// Open loop: one batch every `every`, whether or not earlier ones were
/// answered (at most `MAX_IN_FLIGHT` at once). Returns batches not sent
/// because that many were already in flight.
async fn paced(endpoint: &str, every: Duration, counts: Arc<Counts>, until: Instant) -> u64 {
    const MAX_IN_FLIGHT: usize = 256;
    let clients = connections(endpoint).await;
    let encoded = Arc::new(Encoded::new());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut skipped = 0;
    while Instant::now() < until {
        tick.tick().await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let client =
            clients[counts.next_batch.load(Ordering::Relaxed) as usize % clients.len()].clone();
        let (encoded, counts) = (encoded.clone(), counts.clone());
        tokio::spawn(async move {
            export(client, encoded, counts).await;
            drop(slot);
        });
    }
    let _ = slots.acquire_many(MAX_IN_FLIGHT as u32).await;
    skipped
}

/// A memory figure of process `pid` in KiB: `VmRSS` (resident now) or
/// `VmHWM` (the most it was ever resident, as the kernel counts it); 0 if
/// it cannot be read.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    collector::memory::status_bytes(&status, field).unwrap_or(0) as u64 >> 10
}

#[test]
fn at_twice_the_sustainable_rate_memory_stays_bounded_and_refusals_are_retryable() {
    let dir = TempDir::new("overload");
    let (grpc, http) = (free_addr(), free_addr());
    let (bound, pending) = (MEMORY_BOUND.to_string(), PENDING_BOUND.to_string());
    // The index's bound is a file setting only.
    let config = dir.path().join("collector.yaml");
    std::fs::write(&config, format!("dedupe_max_spans: {RECENT_IDS}\n")).unwrap();
    let mut collector = start_collector(
        dir.path(),
        grpc,
        http,
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-memory",
            &bound,
            "--max-pending-bytes",
            &pending,
            "--flush-interval",
            "1s",
        ],
    );
    let pid = collector.child().id();
    let idle_kib = status_kib(pid, "VmRSS");
    let endpoint = format!("http://{grpc}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 1. The sustainable rate: what the collector acknowledges when pushed by
    // more concurrent requests than it can take.
    let calibration = Arc::new(Counts::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(5);
    runtime.block_on(flat_out(&endpoint, 16, calibration.clone(), until));
    let sustainable =
        calibration.acked_spans.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    assert!(sustainable > 0.0, "nothing was acknowledged");

    // 2. Twice that, as an open loop.
    let offered = 2.0 * sustainable;
    let every = Duration::from_secs_f64(BATCH as f64 / offered);
    let overload = Arc::new(Counts {
        next_batch: AtomicU64::new(calibration.next_batch.load(Ordering::Relaxed)),
        ..Counts::default()
    });
    let started = Instant::now();
    let until = started + Duration::from_secs(8);
    let skipped = runtime.block_on(paced(&endpoint, every, overload.clone(), until));
    let elapsed = started.elapsed().as_secs_f64();
    let sent_batches = overload.next_batch.load(Ordering::Relaxed)
        - calibration.next_batch.load(Ordering::Relaxed);
    let refused = overload.refused.load(Ordering::Relaxed);
    let peak_kib = status_kib(pid, "VmHWM");
    eprintln!(
        "sustainable {sustainable:.0} spans/s ({} requests refused while measuring it); \
         offered {:.0} spans/s; acknowledged {:.0} spans/s; {refused} of {sent_batches} requests refused, \
         {skipped} not sent (256 in flight); RSS idle {} MiB, peak {} MiB (bound {} MiB)",
        calibration.refused.load(Ordering::Relaxed),
        (sent_batches * BATCH) as f64 / elapsed,
        overload.acked_spans.load(Ordering::Relaxed) as f64 / elapsed,
        idle_kib / 1024,
        peak_kib / 1024,
        MEMORY_BOUND >> 20
    );
    assert!(
        refused > 0,
        "at twice the sustainable rate some requests must be refused"
    );
    assert_eq!(
        overload.refused_with_retry_info.load(Ordering::Relaxed),
        refused,
        "every refusal carries RetryInfo"
    );
    assert!(
        peak_kib > 0,
        "the collector's /proc/{pid}/status is readable"
    );
    let limit_kib = MEMORY_BOUND >> 10;
    assert!(
        peak_kib <= limit_kib,
        "peak RSS {peak_kib} KiB passed the bound of {limit_kib} KiB (idle {idle_kib} KiB)"
    );

    // What refused and what was written, for whoever reads a failure.
    let metrics = http_get(http, "/metrics");
    let lines = metrics.lines().filter(|l| {
        !l.starts_with('#')
            && ["refused_requests", "resident", "flushes", "files_written"]
                .iter()
                .any(|name| l.contains(name))
    });
    eprintln!("{}", lines.collect::<Vec<_>>().join("\n"));
    // The resident-memory check acted, not only the pending bound. (With
    // it turned off, the pending bound alone kept the peak at 150-151 MiB
    // in two runs here: this shows the check refuses, not that the bound
    // needs it at this setting; the unit test
    // `near_the_memory_bound_requests_are_refused_until_a_flush` covers
    // when it must.)
    let memory_refusals = metric_in(
        &metrics,
        r#"loadlens_collector_refused_requests_total{signal="traces",reason="memory"}"#,
    )
    .expect("the memory refusals' counter in /metrics");
    assert!(
        memory_refusals > 0.0,
        "no request was refused for resident memory"
    );

    // 3. Every acknowledged span is stored, once.
    assert!(collector.terminate(), "the collector stops cleanly");
    let acked = calibration.acked_spans.load(Ordering::Relaxed)
        + overload.acked_spans.load(Ordering::Relaxed);
    let rows = sql_json(
        dir.path(),
        "SELECT COUNT(*) AS n, COUNT(DISTINCT span_id) AS distinct_ids FROM spans",
    );
    assert_eq!(rows[0]["n"], serde_json::json!(acked));
    assert_eq!(rows[0]["distinct_ids"], serde_json::json!(acked));
}
