//! From an acknowledged request to Parquet: every request is appended to the
//! write-ahead log and fsynced (group commit, one thread) before its rows join
//! the pending set and the client gets its answer; a flush writes the pending
//! rows and only then deletes the log segments they came from.
//!
//! ```text
//!  receiver ─(rows, OTLP bytes)─▶ WAL thread: append · fdatasync · pending += rows · ack
//!  flusher  ─rotate─▶ WAL thread: new segment, take pending ─▶ Parquet (-w<segment>) ─▶ delete old segments
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use schema::object::ObjectRoot;
use tokio::sync::{Notify, oneshot};

use crate::convert::{self, Converted, PartitionKey};
use crate::memory::MemoryLimit;
use crate::store::ship::{ShipError, ShipReport};
use crate::store::{Dedupe, RecentSpans, WriteError, write_partition_after};
use crate::telemetry::PerSignal;
use crate::wal::{self, Signal, Wal, WalError};

type Pending = BTreeMap<PartitionKey, Vec<RecordBatch>>;

/// Pending rows, shared by the WAL thread (which adds) and flushes (which take).
#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    pending_rows: AtomicUsize,
    pending_bytes: AtomicUsize,
    /// Estimated memory of requests being converted or waiting for the WAL.
    in_flight_bytes: AtomicUsize,
    /// Pending rows that trigger an early flush.
    flush_rows: usize,
    /// Pending memory that triggers an early flush (half the bound).
    flush_bytes: usize,
    full: Notify,
    stats: IngestStats,
    red: crate::red::Red,
    /// Ids in the recent-span index after the last flush.
    recent_spans: AtomicUsize,
    /// How long a group commit waits for more requests (see
    /// [`Ingest::with_commit_interval`]), in nanoseconds.
    commit_interval_nanos: AtomicU64,
}

impl Shared {
    fn new(flush_rows: usize, flush_bytes: usize) -> Self {
        Shared {
            pending: Mutex::default(),
            pending_rows: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            flush_rows,
            flush_bytes,
            full: Notify::new(),
            stats: IngestStats::default(),
            red: crate::red::Red::default(),
            recent_spans: AtomicUsize::new(0),
            commit_interval_nanos: AtomicU64::new(0),
        }
    }

    fn add(&self, batches: Vec<(PartitionKey, RecordBatch)>) {
        let rows: usize = batches.iter().map(|(_, b)| b.num_rows()).sum();
        let bytes: usize = batches.iter().map(|(_, b)| b.get_array_memory_size()).sum();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            for (key, batch) in batches {
                pending.entry(key).or_default().push(batch);
            }
        }
        let total_rows = self.pending_rows.fetch_add(rows, Ordering::Relaxed) + rows;
        let total_bytes = self.pending_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total_rows >= self.flush_rows || total_bytes >= self.flush_bytes {
            self.full.notify_one();
        }
    }
}

/// How many times its protobuf size a request is estimated to take in memory
/// once decoded and converted.
const IN_MEMORY_FACTOR: usize = 4;

/// A request's share of the memory bound, released when dropped.
#[derive(Debug)]
pub struct Admission {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared
            .in_flight_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Totals since start; rendered on `/metrics` under the names in [`crate::telemetry`].
#[derive(Debug, Default)]
pub struct IngestStats {
    pub received: PerSignal,
    pub accepted: PerSignal,
    pub rejected: PerSignal,
    /// Rows of admitted requests that were not stored (answered with a
    /// retryable error): received = accepted + rejected + dropped.
    pub dropped: PerSignal,
    /// Refused at the pending bound.
    pub refused_overloaded: PerSignal,
    /// Refused near the resident-memory bound.
    pub refused_memory: PerSignal,
    pub refused_not_stored: PerSignal,
    pub refused_unauthenticated: PerSignal,
    pub rows_written: AtomicU64,
    pub files_written: AtomicU64,
    pub flushes: AtomicU64,
    pub write_errors: AtomicU64,
    pub wal_commits: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_sync_nanos: AtomicU64,
    /// Each group commit's duration.
    pub wal_sync_duration: crate::telemetry::DurationHistogram,
    pub rows_replayed: AtomicU64,
    /// Spans dropped at flush or compaction as repeats of a (trace_id, span_id).
    pub duplicates_removed: AtomicU64,
    /// Spans a flush looked for in older files ([`crate::store::older`]).
    pub spans_looked_up: AtomicU64,
    /// Stored rows read in older files to look for them.
    pub lookup_rows_read: AtomicU64,
    pub compactions: AtomicU64,
    pub files_compacted: AtomicU64,
    pub compaction_errors: AtomicU64,
    pub files_shipped: AtomicU64,
    pub bytes_shipped: AtomicU64,
    pub ship_errors: AtomicU64,
}

/// Why a request was not acknowledged. Both are retryable.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(
        "the collector holds {pending} bytes of pending rows and requests (bound {limit}); retry after a flush"
    )]
    Overloaded { pending: usize, limit: usize },
    #[error(
        "the collector's process holds {resident} bytes, near its max_memory of {limit} \
         (requests are refused past three quarters of it); retry after a flush"
    )]
    NearMemoryBound { resident: usize, limit: usize },
    #[error("not stored: {0}")]
    NotStored(String),
}

impl SubmitError {
    /// How long a client should wait before retrying.
    pub fn retry_after(&self) -> std::time::Duration {
        match self {
            // A flush has to free memory first.
            SubmitError::Overloaded { .. } | SubmitError::NearMemoryBound { .. } => {
                std::time::Duration::from_secs(1)
            }
            SubmitError::NotStored(_) => std::time::Duration::from_millis(500),
        }
    }
}

/// What one flush wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    pub files: Vec<PathBuf>,
    pub rows: u64,
    /// Spans looked for in older files ([`crate::store::older`]).
    pub looked_up: u64,
}

/// Why rows could not be made durable or written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Ship(#[from] ShipError),
    #[error("the write-ahead log has stopped")]
    Stopped,
}

/// A request appended to the log and waiting for its commit.
type Waiting = (Signal, Converted, oneshot::Sender<Result<(), String>>);

enum Command {
    Append {
        signal: Signal,
        payload: Bytes,
        converted: Converted,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Rotate {
        reply: oneshot::Sender<Result<(u64, Pending), WalError>>,
    },
}

/// The durable ingest path.
#[derive(Debug)]
pub struct Ingest {
    root: PathBuf,
    max_pending_bytes: usize,
    wal_dir: PathBuf,
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Serializes flushes so files are never written twice for the same rows.
    flushing: tokio::sync::Mutex<()>,
    /// Where finished files go, if not only to the local folder.
    ship_to: Option<ObjectRoot>,
    /// Keeps shipping (which moves local files out of the way) and compaction
    /// (which reads and replaces them) apart.
    moving_files: tokio::sync::Mutex<()>,
    /// Span files compaction has compared with the rest of their partition.
    checked: Arc<Mutex<crate::store::compact::Checked>>,
    /// Span files flushes wrote settled, for compaction to take as compared
    /// (it holds `checked` for a whole pass; a flush must not wait on that).
    /// Kept only when compaction runs ([`Ingest::with_compaction`]).
    settled: Option<Mutex<Vec<PathBuf>>>,
    /// Ids of spans flushed lately, so a client's resend of them is dropped.
    recent: Arc<Mutex<RecentSpans>>,
    /// The bound on the process's resident memory, if one is kept.
    memory: Option<MemoryLimit>,
}

impl Ingest {
    /// Opens the WAL below `root`, replays what an earlier process left, and
    /// starts the WAL thread. `sync` false skips fdatasync (see the crate docs).
    pub fn open(
        root: PathBuf,
        flush_rows: usize,
        max_pending_bytes: usize,
        sync: bool,
    ) -> Result<Self, IngestError> {
        let (wal, segments) = Wal::open(&root, sync)?;
        let shared = Arc::new(Shared::new(flush_rows, max_pending_bytes / 2));
        let interrupted = crate::store::compact::recover(&root)?;
        if interrupted > 0 {
            eprintln!("collector: finished {interrupted} compactions a crash interrupted");
        }
        replay(&root, &segments, &shared)?;
        remove_temporary_files(&root);
        let recent = recent_spans(&root, Dedupe::default());
        shared.recent_spans.store(recent.len(), Ordering::Relaxed);
        let recent = Arc::new(Mutex::new(recent));
        let wal_dir = wal.dir().to_path_buf();
        let (tx, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("loadlens-wal".into())
            .spawn(move || wal_thread(wal, rx, thread_shared))
            .map_err(|source| WalError {
                path: wal_dir.clone(),
                source,
            })?;
        Ok(Ingest {
            root,
            max_pending_bytes,
            wal_dir,
            shared,
            commands: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            flushing: tokio::sync::Mutex::new(()),
            ship_to: None,
            moving_files: tokio::sync::Mutex::new(()),
            checked: Arc::default(),
            settled: None,
            recent,
            memory: None,
        })
    }

    /// Refuses requests, as at the pending bound, while the process's
    /// resident memory is near `memory`'s bound (see [`crate::memory`]).
    pub fn with_memory_limit(mut self, memory: MemoryLimit) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Remembers flushed spans' ids for `limits` instead of the default
    /// [`Dedupe`] (see [`crate::store::recent`]); call it before the first flush.
    pub fn with_dedupe(self, limits: Dedupe) -> Self {
        let mut recent = self.recent.lock().expect("recent spans lock");
        if recent.limits() != limits {
            *recent = recent_spans(&self.root, limits);
            self.shared
                .recent_spans
                .store(recent.len(), Ordering::Relaxed);
        }
        drop(recent);
        self
    }

    /// Span ids remembered to drop resent spans (as of the last flush).
    pub fn recent_spans(&self) -> usize {
        self.shared.recent_spans.load(Ordering::Relaxed)
    }

    /// Makes each group commit wait up to `interval` (at most
    /// [`crate::config::MAX_COMMIT_INTERVAL`]) after its first request for
    /// more to share its fsync; each acknowledgement may wait as long. Zero,
    /// the default, syncs as soon as the requests already queued are
    /// appended.
    pub fn with_commit_interval(self, interval: Duration) -> Self {
        let interval = interval.min(crate::config::MAX_COMMIT_INTERVAL);
        let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        self.shared
            .commit_interval_nanos
            .store(nanos, Ordering::Relaxed);
        self
    }

    /// Tells [`Ingest::compact`] which files flushes wrote settled, so that it
    /// does not compare them again; call it when compaction will run, or the
    /// list grows without end.
    pub fn with_compaction(mut self) -> Self {
        self.settled = Some(Mutex::default());
        self
    }

    /// Ships finished files to `to` after each flush (see [`crate::store::ship`]).
    pub fn with_object_store(mut self, to: ObjectRoot) -> Self {
        self.ship_to = Some(to);
        self
    }

    /// Uploads the files whose rows have left the log; a no-op without an
    /// object store. A failure is counted and reported, and the files stay
    /// local for the next pass: the rows are durable either way.
    pub async fn ship(&self) -> Result<ShipReport, IngestError> {
        let Some(to) = &self.ship_to else {
            return Ok(ShipReport::default());
        };
        let _moving = self.moving_files.lock().await;
        let dir = self.wal_dir.clone();
        let live = tokio::task::spawn_blocking(move || Wal::lowest_segment(&dir))
            .await
            .expect("listing segments does not panic")?
            .unwrap_or(u64::MAX);
        // Uploaded span files stay local (as `.….shipped`) for the dedupe
        // window, so the index can be read back from them after a restart.
        let keep_for = {
            let recent = self.recent.lock().expect("recent spans lock");
            if recent.is_off() {
                std::time::Duration::ZERO
            } else {
                recent.limits().window
            }
        };
        let shipped = crate::store::ship::ship(&self.root, to, live, keep_for).await;
        let stats = &self.shared.stats;
        match shipped {
            Ok(report) => {
                stats
                    .files_shipped
                    .fetch_add(report.files as u64, Ordering::Relaxed);
                stats
                    .bytes_shipped
                    .fetch_add(report.bytes, Ordering::Relaxed);
                Ok(report)
            }
            Err(e) => {
                stats.ship_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Totals since start.
    pub fn stats(&self) -> &IngestStats {
        &self.shared.stats
    }

    /// Resolves when pending rows pass the flush threshold.
    pub async fn full(&self) {
        self.shared.full.notified().await
    }

    /// Rows accepted but not yet in a Parquet file.
    pub fn pending_rows(&self) -> usize {
        self.shared.pending_rows.load(Ordering::Relaxed)
    }

    /// Memory held by pending rows.
    pub fn pending_bytes(&self) -> usize {
        self.shared.pending_bytes.load(Ordering::Relaxed)
    }

    /// The bound on pending memory above which requests are refused.
    pub fn max_pending_bytes(&self) -> usize {
        self.max_pending_bytes
    }

    /// Whether new requests would be refused now.
    pub fn overloaded(&self) -> bool {
        let (pending, in_flight) = (self.pending_bytes(), self.in_flight_bytes());
        pending + in_flight >= self.max_pending_bytes
            || self.near_memory_bound(pending, in_flight, 0).is_some()
    }

    /// The refusal for a request of `more` bytes, when admitting it would
    /// take the process's resident memory past the high-water mark of the
    /// memory bound, and rows pending or in flight hold at least an eighth
    /// of the pending bound: a flush of them frees memory worth having.
    /// Below that, the memory is mostly not theirs (the recent-id index, the
    /// allocator's free pages); refusing would free nothing and stall
    /// clients until the next timed flush, so the request is admitted. Rows
    /// then add less than that eighth, and the request, past the mark; what
    /// else the process holds there, the bound must be sized for, and the
    /// collector says so at most once a minute.
    /// (Requests in flight are not added to `more`: what they hold once
    /// converted is resident already, and what they are still to take is
    /// what the headroom above the mark is for.)
    fn near_memory_bound(
        &self,
        pending: usize,
        in_flight: usize,
        more: usize,
    ) -> Option<SubmitError> {
        let memory = self.memory.as_ref()?;
        let resident = memory.over(more)?;
        if pending + in_flight < self.worth_a_flush() {
            if memory.warn_now() {
                eprintln!(
                    "collector: the process holds {} MiB, near max_memory's {} MiB, but only {} MiB \
                     of it is rows pending or in flight; raise max_memory (or lower \
                     max_pending_bytes or dedupe_max_spans)",
                    resident >> 20,
                    memory.limit() >> 20,
                    (pending + in_flight) >> 20
                );
            }
            return None;
        }
        Some(SubmitError::NearMemoryBound {
            resident,
            limit: memory.limit(),
        })
    }

    /// Rows worth a flush when the process nears its memory bound: an eighth
    /// of the pending bound (see [`Ingest::near_memory_bound`]).
    fn worth_a_flush(&self) -> usize {
        (self.max_pending_bytes / 8).max(1)
    }

    /// Estimated memory of requests admitted but not yet pending.
    pub fn in_flight_bytes(&self) -> usize {
        self.shared.in_flight_bytes.load(Ordering::Relaxed)
    }

    /// Admits a request of `encoded` bytes before it is converted, or refuses
    /// it (cheaply: nothing is converted) when the memory bound is reached:
    /// pending rows alone at the bound, or pending rows plus the requests
    /// already in flight past it. Without the second part, requests arriving
    /// faster than the WAL takes them would queue in memory without limit.
    /// With a memory bound, also when the process's resident memory is near
    /// it ([`Ingest::with_memory_limit`]). The returned guard releases the
    /// reservation when the request is answered.
    pub fn admit(&self, signal: Signal, encoded: usize) -> Result<Admission, SubmitError> {
        // A decoded request and its Arrow rows take a few times its protobuf size.
        let estimate = encoded.saturating_mul(IN_MEMORY_FACTOR);
        let in_flight = self
            .shared
            .in_flight_bytes
            .fetch_add(estimate, Ordering::Relaxed);
        let admission = Admission {
            shared: self.shared.clone(),
            bytes: estimate,
        };
        let pending = self.pending_bytes();
        // A request alone in flight is admitted below the bound, however
        // large, so an oversized request is not refused for ever.
        let full = pending >= self.max_pending_bytes
            || (in_flight > 0 && pending + in_flight + estimate > self.max_pending_bytes);
        let refusal = if full {
            self.shared.stats.refused_overloaded.add(signal, 1);
            SubmitError::Overloaded {
                pending: pending + in_flight,
                limit: self.max_pending_bytes,
            }
        } else if let Some(refusal) = self.near_memory_bound(pending, in_flight, estimate) {
            self.shared.stats.refused_memory.add(signal, 1);
            refusal
        } else {
            return Ok(admission);
        };
        // A flush frees pending rows, and with them the memory they hold;
        // only when they hold enough to matter: with a request's worth
        // pending (the rest in flight), a flush would write a file a request
        // and free next to nothing (at a 96 MiB bound, an early version made
        // 608 flushes in 14 s).
        if pending >= self.worth_a_flush() {
            self.shared.full.notify_one();
        }
        Err(refusal)
    }

    fn send(&self, command: Command) -> Result<(), IngestError> {
        self.commands
            .lock()
            .expect("commands lock")
            .as_ref()
            .ok_or(IngestError::Stopped)?
            .send(command)
            .map_err(|_| IngestError::Stopped)
    }

    /// Makes a converted request durable; returns once it is fsynced and its
    /// rows are pending. Call it holding the request's [`Ingest::admit`]
    /// guard. An error means nothing may be acknowledged.
    pub async fn submit(
        &self,
        signal: Signal,
        payload: Bytes,
        mut converted: Converted,
    ) -> Result<(), SubmitError> {
        let stats = &self.shared.stats;
        let rows = converted.rows() as u64;
        stats.received.add(signal, rows + converted.rejected);
        stats.rejected.add(signal, converted.rejected);
        if rows == 0 {
            return Ok(());
        }
        let red = std::mem::take(&mut converted.red);
        let (ack, acked) = oneshot::channel();
        let sent = self.send(Command::Append {
            signal,
            payload,
            converted,
            ack,
        });
        // The log thread counts the rows as accepted or dropped once it
        // has them; rows it never got are dropped here.
        let result = match sent {
            Ok(()) => acked
                .await
                .unwrap_or_else(|_| Err(IngestError::Stopped.to_string())),
            Err(e) => {
                stats.dropped.add(signal, rows);
                Err(e.to_string())
            }
        };
        match result {
            Ok(()) => {
                // Counted once durable, so a refused request never shows twice.
                self.shared.red.record(&red);
                Ok(())
            }
            Err(message) => {
                stats.refused_not_stored.add(signal, 1);
                Err(SubmitError::NotStored(message))
            }
        }
    }

    /// Writes every pending partition, then deletes the WAL segments they came
    /// from. A partition that fails to write is put back and retried by the next
    /// flush; the segments stay until every partition is written.
    pub async fn flush(&self) -> Result<FlushReport, IngestError> {
        let _guard = self.flushing.lock().await;
        let (reply, replied) = oneshot::channel();
        self.send(Command::Rotate { reply })?;
        let (upto, taken) = replied.await.map_err(|_| IngestError::Stopped)??;
        self.shared.stats.flushes.fetch_add(1, Ordering::Relaxed);
        let mut report = FlushReport::default();
        let mut first_error = None;
        for (key, batches) in taken {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
            let root = self.root.clone();
            let recent = self.recent.clone();
            let shared = self.shared.clone();
            let (key, batches, written) = tokio::task::spawn_blocking(move || {
                let mut recent = recent.lock().expect("recent spans lock");
                let written = write_partition_after(&root, &key, &batches, upto, &mut recent);
                // Read by the metrics handler, which must not wait for a write.
                shared.recent_spans.store(recent.len(), Ordering::Relaxed);
                (key, batches, written)
            })
            .await
            .expect("the Parquet writer does not panic");
            let stats = &self.shared.stats;
            match written {
                Ok(written) => {
                    self.shared.pending_rows.fetch_sub(rows, Ordering::Relaxed);
                    self.shared
                        .pending_bytes
                        .fetch_sub(bytes, Ordering::Relaxed);
                    stats
                        .rows_written
                        .fetch_add(written.rows as u64, Ordering::Relaxed);
                    stats
                        .duplicates_removed
                        .fetch_add(written.duplicates as u64, Ordering::Relaxed);
                    stats
                        .spans_looked_up
                        .fetch_add(written.looked_up as u64, Ordering::Relaxed);
                    stats
                        .lookup_rows_read
                        .fetch_add(written.lookup_rows_read as u64, Ordering::Relaxed);
                    if let Some(path) = written.path {
                        if let Some(settled) = self.settled.as_ref().filter(|_| written.settled) {
                            settled
                                .lock()
                                .expect("settled files lock")
                                .push(path.clone());
                        }
                        stats.files_written.fetch_add(1, Ordering::Relaxed);
                        report.files.push(path);
                    }
                    report.rows += written.rows as u64;
                    report.looked_up += written.looked_up as u64;
                }
                Err(e) => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    let mut pending = self.shared.pending.lock().expect("pending lock");
                    let slot = pending.entry(key).or_default();
                    let newer = std::mem::replace(slot, batches);
                    slot.extend(newer);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e.into());
        }
        let dir = self.wal_dir.clone();
        tokio::task::spawn_blocking(move || Wal::retire_upto(&dir, upto))
            .await
            .expect("retiring segments does not panic")?;
        if let Err(e) = self.ship().await {
            eprintln!(
                "collector: {e}; the files stay in the local folder and the next flush retries"
            );
        }
        Ok(report)
    }

    /// Merges small files and drops repeated spans (see [`crate::store::compact`]).
    /// Runs beside flushes: it touches only files that already exist.
    pub async fn compact(
        &self,
        target_size: usize,
    ) -> Result<crate::store::compact::CompactionReport, IngestError> {
        let _moving = self.moving_files.lock().await;
        let root = self.root.clone();
        let checked = Arc::clone(&self.checked);
        let settled = match &self.settled {
            Some(settled) => std::mem::take(&mut *settled.lock().expect("settled files lock")),
            None => Vec::new(),
        };
        let done = tokio::task::spawn_blocking(move || {
            let mut checked = checked.lock().expect("checked files lock");
            checked.extend(settled);
            crate::store::compact::compact(&root, target_size, &mut checked)
        })
        .await
        .expect("compaction does not panic");
        let stats = &self.shared.stats;
        match done {
            Ok(report) => {
                stats
                    .compactions
                    .fetch_add(report.merges as u64, Ordering::Relaxed);
                stats
                    .files_compacted
                    .fetch_add(report.files_in as u64, Ordering::Relaxed);
                stats
                    .duplicates_removed
                    .fetch_add(report.duplicates as u64, Ordering::Relaxed);
                Ok(report)
            }
            Err(e) => {
                stats.compaction_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// The collector's metrics in the Prometheus text format.
    pub fn exposition(&self) -> String {
        use crate::telemetry::*;
        let stats = &self.shared.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut out = Exposition::default();
        out.per_signal(RECEIVED, &stats.received);
        out.per_signal(ACCEPTED, &stats.accepted);
        out.per_signal(REJECTED, &stats.rejected);
        out.per_signal(DROPPED, &stats.dropped);
        out.per_signal_and_reason(
            REFUSED,
            &[
                ("overloaded", &stats.refused_overloaded),
                ("memory", &stats.refused_memory),
                ("not_stored", &stats.refused_not_stored),
                ("unauthenticated", &stats.refused_unauthenticated),
            ],
        );
        out.value(WAL_COMMITS, load(&stats.wal_commits));
        out.value(WAL_BYTES, load(&stats.wal_bytes));
        out.value(WAL_SYNC_SECONDS, load(&stats.wal_sync_nanos) / 1e9);
        out.histogram(WAL_SYNC_DURATION, &stats.wal_sync_duration);
        out.value(ROWS_REPLAYED, load(&stats.rows_replayed));
        out.value(FLUSHES, load(&stats.flushes));
        out.value(FLUSH_ERRORS, load(&stats.write_errors));
        out.value(ROWS_WRITTEN, load(&stats.rows_written));
        out.value(FILES_WRITTEN, load(&stats.files_written));
        out.value(DUPLICATES_REMOVED, load(&stats.duplicates_removed));
        out.value(SPANS_LOOKED_UP, load(&stats.spans_looked_up));
        out.value(LOOKUP_ROWS_READ, load(&stats.lookup_rows_read));
        out.value(COMPACTIONS, load(&stats.compactions));
        out.value(FILES_COMPACTED, load(&stats.files_compacted));
        out.value(COMPACTION_ERRORS, load(&stats.compaction_errors));
        out.value(FILES_SHIPPED, load(&stats.files_shipped));
        out.value(BYTES_SHIPPED, load(&stats.bytes_shipped));
        out.value(SHIP_ERRORS, load(&stats.ship_errors));
        out.value(PENDING_ROWS, self.pending_rows() as f64);
        out.value(PENDING_BYTES, self.pending_bytes() as f64);
        out.value(PENDING_LIMIT_BYTES, self.max_pending_bytes as f64);
        out.value(IN_FLIGHT_BYTES, self.in_flight_bytes() as f64);
        out.value(RECENT_SPAN_IDS, self.recent_spans() as f64);
        if let Some(memory) = &self.memory {
            out.value(RESIDENT_BYTES, memory.resident() as f64);
            out.value(MEMORY_LIMIT_BYTES, memory.limit() as f64);
        }
        let mut text = out.finish();
        self.shared.red.render(&mut text);
        text
    }

    /// Stops the WAL thread after everything sent so far is committed.
    pub fn close(&self) {
        self.commands.lock().expect("commands lock").take();
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
            if let Err(e) = Wal::remove_spares(&self.wal_dir) {
                eprintln!("collector: {e}; the spare segments are reused at the next start");
            }
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.close();
    }
}

/// Group commit: take everything queued, append it, one fdatasync, then make
/// the rows pending and acknowledge.
fn wal_thread(mut wal: Wal, commands: mpsc::Receiver<Command>, shared: Arc<Shared>) {
    let mut appended_in_segment = 0u64;
    // Rows are counted as accepted or dropped here, where their fate is
    // known, rather than by the request's handler, which its client may
    // have dropped by then.
    let mut waiting: Vec<Waiting> = Vec::new();
    let commit = |wal: &mut Wal, waiting: &mut Vec<Waiting>| {
        if waiting.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        match wal.commit() {
            Ok(()) => {
                let stats = &shared.stats;
                stats.wal_commits.fetch_add(1, Ordering::Relaxed);
                let took = started.elapsed();
                stats
                    .wal_sync_nanos
                    .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                stats.wal_sync_duration.observe(took);
                for (signal, converted, ack) in waiting.drain(..) {
                    stats.accepted.add(signal, converted.rows() as u64);
                    shared.add(converted.batches);
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                for (signal, converted, ack) in waiting.drain(..) {
                    shared.stats.dropped.add(signal, converted.rows() as u64);
                    let _ = ack.send(Err(e.to_string()));
                }
            }
        }
    };
    while let Ok(first) = commands.recv() {
        // A group takes what is queued, and with an interval what arrives
        // before it ends, then shares one fsync.
        let interval = shared.commit_interval_nanos.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_nanos(interval);
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(command) = next.take() {
            taken += 1;
            match command {
                Command::Append {
                    signal,
                    payload,
                    converted,
                    ack,
                } => match wal.append(signal, &payload) {
                    Ok(()) => {
                        appended_in_segment += 1;
                        shared
                            .stats
                            .wal_bytes
                            .fetch_add(payload.len() as u64, Ordering::Relaxed);
                        waiting.push((signal, converted, ack));
                    }
                    Err(e) => {
                        shared.stats.dropped.add(signal, converted.rows() as u64);
                        let _ = ack.send(Err(e.to_string()));
                    }
                },
                Command::Rotate { reply } => {
                    commit(&mut wal, &mut waiting);
                    // Rows of every closed segment are pending now; take them
                    // together with the rotation so a flush covers exactly them.
                    let closed = if appended_in_segment > 0 {
                        wal.rotate()
                    } else {
                        Ok(wal.sequence() - 1)
                    };
                    let result = closed.map(|closed| {
                        appended_in_segment = 0;
                        let taken =
                            std::mem::take(&mut *shared.pending.lock().expect("pending lock"));
                        (closed, taken)
                    });
                    let _ = reply.send(result);
                }
            }
            // A group ends at 4096 requests, and with an interval at its
            // deadline even while requests keep coming.
            if taken >= 4096 || (interval > 0 && std::time::Instant::now() >= deadline) {
                break;
            }
            next = match commands.try_recv() {
                Ok(command) => Some(command),
                Err(_) if waiting.is_empty() => None,
                Err(_) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    (!left.is_zero())
                        .then(|| commands.recv_timeout(left).ok())
                        .flatten()
                }
            };
        }
        commit(&mut wal, &mut waiting);
    }
    if let Err(e) = wal.clear_if_unused(appended_in_segment > 0) {
        eprintln!("collector: {e}");
    }
}

/// The index of recent span ids, read back from the files flushed within its window.
fn recent_spans(root: &Path, limits: Dedupe) -> RecentSpans {
    let mut recent = RecentSpans::new(limits);
    let files = recent.load(root);
    if files > 0 {
        eprintln!(
            "collector: read the ids of {} spans from {files} recent files, to drop them if clients resend them",
            recent.len()
        );
    }
    recent
}

/// Puts the rows of the segments an earlier process left back into pending,
/// skipping partitions already written from those segments.
fn replay(root: &Path, segments: &[wal::Segment], shared: &Shared) -> Result<(), IngestError> {
    let mut written_upto: HashMap<PathBuf, u64> = HashMap::new();
    for segment in segments {
        let replayed = wal::read_segment(segment)?;
        if replayed.torn_bytes > 0 {
            eprintln!(
                "collector: {} ends with {} bytes that are not whole records of it (an unfinished record, never acknowledged, or what a reused segment file held before); ignored",
                segment.path.display(),
                replayed.torn_bytes
            );
        }
        for (signal, payload) in replayed.records {
            let converted = match signal {
                Signal::Traces => {
                    convert::spans::convert_encoded(&payload).map_err(|e| e.to_string())
                }
                Signal::Metrics => ExportMetricsServiceRequest::decode(payload.as_slice())
                    .map_err(|e| e.to_string())
                    .and_then(|r| convert::metrics::convert(&r).map_err(|e| e.to_string())),
            };
            let converted = match converted {
                Ok(converted) => converted,
                Err(e) => {
                    eprintln!(
                        "collector: cannot replay a record of {}: {e}",
                        segment.path.display()
                    );
                    continue;
                }
            };
            let mut keep = Vec::new();
            for (key, batch) in converted.batches {
                let dir = schema::layout::partition_dir_for_day(
                    root,
                    key.table,
                    &key.date,
                    key.run_id.as_deref(),
                );
                let upto = *written_upto
                    .entry(dir.clone())
                    .or_insert_with(|| crate::store::writer::highest_wal_segment(&dir));
                if upto < segment.sequence {
                    shared
                        .stats
                        .rows_replayed
                        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    keep.push((key, batch));
                }
            }
            shared.add(keep);
        }
    }
    Ok(())
}

/// Removes `.part-*.tmp` files a crash left behind mid-write.
fn remove_temporary_files(root: &Path) {
    crate::store::visit_files(root, "", &mut |path, name, _| {
        if name.starts_with(".part-") && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(path);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::write_partition;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request() -> ExportTraceServiceRequest {
        let span = |id: u8| Span {
            trace_id: vec![id; 16],
            span_id: vec![id; 8],
            name: "s".into(),
            start_time_unix_nano: 1_795_435_200_000_000_000,
            end_time_unix_nano: 1_795_435_200_000_001_000,
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(1), span(2), span(3)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// An empty folder of this test process named `loadlens-<name>-<pid>`.
    fn fresh_root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("loadlens-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    /// A log segment as a crash leaves it, optionally with its rows already in a
    /// Parquet file that records segment `written` (the crash came between the
    /// Parquet write and the segment's deletion).
    fn crashed_store(name: &str, written: Option<u64>) -> (PathBuf, u64) {
        let root = fresh_root(&format!("replay-{name}"));
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        let segment = wal.sequence();
        wal.append(Signal::Traces, &request().encode_to_vec())
            .unwrap();
        wal.commit().unwrap();
        drop(wal);
        if let Some(upto) = written {
            let converted = convert::spans::convert(&request()).unwrap();
            for (key, batch) in converted.batches {
                write_partition(&root, &key, &[batch], upto).unwrap();
            }
        }
        (root, segment)
    }

    /// `--no-fsync` acknowledges without fdatasync, but only once the
    /// records are written to the operating system: a crash of the process
    /// alone loses nothing acknowledged.
    #[tokio::test]
    async fn without_fsync_acknowledged_rows_survive_a_crash_of_the_process() {
        let root = fresh_root("nofsync");
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, false).unwrap();
        submit(&ingest, &request()).await;
        // The crash: no flush and no clean stop; the log is left as it is.
        std::mem::forget(ingest);
        let reopened = Ingest::open(root.clone(), usize::MAX, usize::MAX, false).unwrap();
        assert_eq!(reopened.stats().rows_replayed.load(Ordering::Relaxed), 3);
        assert_eq!(reopened.flush().await.unwrap().rows, 3);
        drop(reopened);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn replay_restores_rows_never_written() {
        let (root, _) = crashed_store("unwritten", None);
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
        assert_eq!(ingest.stats().rows_replayed.load(Ordering::Relaxed), 3);
        assert_eq!(ingest.pending_rows(), 3);
        drop(ingest);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn replay_skips_rows_already_in_parquet() {
        let (root, segment) = crashed_store("written", Some(1));
        assert_eq!(segment, 1);
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
        assert_eq!(ingest.stats().rows_replayed.load(Ordering::Relaxed), 0);
        assert_eq!(ingest.pending_rows(), 0);
        drop(ingest);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_file_from_an_older_segment_does_not_hide_newer_rows() {
        let (root, segment) = crashed_store("older", Some(0));
        assert_eq!(segment, 1);
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
        assert_eq!(ingest.stats().rows_replayed.load(Ordering::Relaxed), 3);
        drop(ingest);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// What the memory test's process "holds", in bytes.
    static FAKE_RESIDENT: AtomicUsize = AtomicUsize::new(0);

    fn fake_resident() -> Option<usize> {
        Some(FAKE_RESIDENT.load(Ordering::Relaxed))
    }

    /// Near the resident-memory bound, requests are refused while rows
    /// pending or in flight hold an eighth of the pending bound (a flush or
    /// their answer will free memory), and admitted while they do not (it
    /// would free nothing). A flush is asked for when the pending rows alone
    /// hold that eighth.
    #[tokio::test]
    async fn near_the_memory_bound_requests_are_refused_until_a_flush() {
        const MIB: usize = 1 << 20;
        let root = fresh_root("memory");
        // The pending bound: sixteen times what one request's rows hold, so
        // that two requests' rows are the eighth.
        let probe = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
        submit(&probe, &request()).await;
        let rows_bytes = probe.pending_bytes();
        drop(probe);
        std::fs::remove_dir_all(&root).unwrap();
        FAKE_RESIDENT.store(100 * MIB, Ordering::Relaxed);
        let limit = 400 * MIB;
        let ingest = Ingest::open(root.clone(), usize::MAX, 16 * rows_bytes, true)
            .unwrap()
            .with_memory_limit(MemoryLimit::reading(limit, fake_resident).unwrap());
        let refresh = || std::thread::sleep(Duration::from_millis(5));
        let flush_asked = || async {
            tokio::time::timeout(Duration::from_millis(50), ingest.full())
                .await
                .is_ok()
        };
        let refused = |admitted: Result<Admission, SubmitError>| match admitted {
            Err(SubmitError::NearMemoryBound { resident, limit: l }) => {
                assert_eq!((resident, l), (350 * MIB, limit));
                true
            }
            Err(other) => panic!("{other}"),
            Ok(_) => false,
        };
        assert!(!refused(ingest.admit(Signal::Traces, 1000)));
        // Past the high-water mark (300 MiB), with nothing pending: admitted.
        FAKE_RESIDENT.store(350 * MIB, Ordering::Relaxed);
        refresh();
        assert!(!refused(ingest.admit(Signal::Traces, 1000)));
        // One request's rows pending, a sixteenth: admitted.
        submit(&ingest, &request()).await;
        assert!(!refused(ingest.admit(Signal::Traces, 1000)));
        assert!(!ingest.overloaded());
        // Two, an eighth: refused, and a flush asked for.
        submit(&ingest, &request()).await;
        assert!(refused(ingest.admit(Signal::Traces, 1000)));
        assert!(ingest.overloaded());
        assert!(flush_asked().await);
        // (The same three spans twice: the flush stores them once.)
        assert_eq!(ingest.flush().await.unwrap().rows, 3);
        assert_eq!(ingest.pending_bytes(), 0);
        // Nothing pending, but an eighth in flight: refused, and no flush
        // asked for, as the rows are not pending yet.
        let in_flight = ingest.admit(Signal::Traces, rows_bytes).unwrap();
        assert!(refused(ingest.admit(Signal::Traces, 1000)));
        assert!(!flush_asked().await);
        drop(in_flight);
        assert!(!refused(ingest.admit(Signal::Traces, 1000)));
        // Below the mark, rows pending refuse nothing.
        submit(&ingest, &request()).await;
        submit(&ingest, &request()).await;
        FAKE_RESIDENT.store(200 * MIB, Ordering::Relaxed);
        refresh();
        assert!(!refused(ingest.admit(Signal::Traces, 1000)));
        let metrics = ingest.exposition();
        assert!(
            metrics.contains(
                "loadlens_collector_refused_requests_total{signal=\"traces\",reason=\"memory\"} 2"
            ),
            "{metrics}"
        );
        assert!(metrics.contains(&format!("loadlens_collector_memory_limit_bytes {limit}")));
        assert!(metrics.contains(&format!("loadlens_collector_resident_bytes {}", 200 * MIB)));
        drop(ingest);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A request that reaches a stopped collector is not stored: its rows
    /// count as dropped, so received = accepted + rejected + dropped.
    #[tokio::test]
    async fn rows_not_stored_count_as_dropped() {
        let root = fresh_root("dropped");
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
        submit(&ingest, &request()).await;
        ingest.close();
        let payload = Bytes::from(request().encode_to_vec());
        let converted = convert::spans::convert(&request()).unwrap();
        let refused = ingest.submit(Signal::Traces, payload, converted).await;
        assert!(
            matches!(refused, Err(SubmitError::NotStored(_))),
            "{refused:?}"
        );
        let stats = ingest.stats();
        let count = |c: &PerSignal| c.get(Signal::Traces);
        assert_eq!(
            (
                count(&stats.received),
                count(&stats.accepted),
                count(&stats.dropped)
            ),
            (6, 3, 3)
        );
        assert_eq!(count(&stats.rejected), 0);
        let text = ingest.exposition();
        assert!(
            text.contains("loadlens_collector_dropped_items_total{signal=\"traces\"} 3\n"),
            "{text}"
        );
        // The one commit, in the fsync histogram.
        assert!(
            text.contains("loadlens_collector_wal_sync_duration_seconds_count 1\n"),
            "{text}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A client that leaves while its request waits for the commit: the
    /// rows are stored, and counted as accepted, so received = accepted +
    /// rejected + dropped still holds.
    #[tokio::test]
    async fn rows_made_durable_after_their_client_left_count_as_accepted() {
        let root = fresh_root("left");
        let ingest = Arc::new(
            Ingest::open(root.clone(), usize::MAX, usize::MAX, true)
                .unwrap()
                .with_commit_interval(Duration::from_millis(500)),
        );
        let waiting = tokio::spawn({
            let ingest = ingest.clone();
            async move { submit(&ingest, &request()).await }
        });
        // The commit waits out its interval; the client does not.
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiting.abort();
        let stats = ingest.stats();
        let count = |c: &PerSignal| c.get(Signal::Traces);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while count(&stats.accepted) == 0 {
            assert!(std::time::Instant::now() < deadline, "never committed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!((count(&stats.received), count(&stats.accepted)), (3, 3));
        assert_eq!(count(&stats.dropped), 0);
        assert_eq!(ingest.flush().await.unwrap().rows, 3);
        ingest.close();
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Requests 50 ms apart: with a commit interval they share one fsync,
    /// without one each has its own.
    #[tokio::test]
    async fn a_commit_interval_lets_later_requests_share_an_fsync() {
        for (interval, commits) in [(Duration::from_secs(1), 1), (Duration::ZERO, 2)] {
            let root = fresh_root(&format!("commit-{}", interval.as_millis()));
            let ingest = Arc::new(
                Ingest::open(root.clone(), usize::MAX, usize::MAX, true)
                    .unwrap()
                    .with_commit_interval(interval),
            );
            let first = tokio::spawn({
                let ingest = ingest.clone();
                async move { submit(&ingest, &request()).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            submit(&ingest, &request()).await;
            first.await.unwrap();
            let stats = ingest.stats();
            assert_eq!(
                stats.wal_commits.load(Ordering::Relaxed),
                commits,
                "{interval:?}"
            );
            assert_eq!(ingest.flush().await.unwrap().rows, 3, "{interval:?}");
            ingest.close();
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    #[tokio::test]
    async fn a_flush_after_replay_empties_the_log() {
        let (root, _) = crashed_store("flush", None);
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
        let report = ingest.flush().await.unwrap();
        assert_eq!(report.rows, 3);
        ingest.close();
        let left: Vec<_> = std::fs::read_dir(root.join(wal::WAL_DIR))
            .unwrap()
            .flatten()
            .filter(|e| e.metadata().unwrap().len() > 0)
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Submits `request` as a receiver does.
    async fn submit(ingest: &Ingest, request: &ExportTraceServiceRequest) {
        let payload = Bytes::from(request.encode_to_vec());
        let converted = convert::spans::convert(request).unwrap();
        let _admission = ingest.admit(Signal::Traces, payload.len()).unwrap();
        ingest
            .submit(Signal::Traces, payload, converted)
            .await
            .unwrap();
    }

    fn duplicates(ingest: &Ingest) -> u64 {
        ingest.stats().duplicates_removed.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn spans_resent_after_a_flush_or_a_restart_are_stored_once() {
        let root = fresh_root("resend");
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
        submit(&ingest, &request()).await;
        let first = ingest.flush().await.unwrap();
        assert_eq!((first.rows, first.files.len()), (3, 1));
        assert_eq!(ingest.recent_spans(), 3);
        // The client never saw the answer and sends the same spans again.
        submit(&ingest, &request()).await;
        let again = ingest.flush().await.unwrap();
        assert_eq!((again.rows, again.files.len()), (0, 0));
        assert_eq!(duplicates(&ingest), 3);
        ingest.close();
        drop(ingest);

        // A restarted collector reads the ids back from the file.
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
        assert_eq!(ingest.recent_spans(), 3);
        submit(&ingest, &request()).await;
        assert_eq!(ingest.flush().await.unwrap().rows, 0);
        assert_eq!(duplicates(&ingest), 3);

        // Without the index the resend would be stored a second time.
        let ingest = ingest.with_dedupe(Dedupe {
            window: std::time::Duration::ZERO,
            max_spans: 0,
        });
        assert_eq!(ingest.recent_spans(), 0);
        submit(&ingest, &request()).await;
        assert_eq!(ingest.flush().await.unwrap().rows, 3);
        // ... until compaction compares the two files (a target of one byte:
        // both count as large, so this is the comparison, not a merge).
        let compacted = ingest.compact(1).await.unwrap();
        assert_eq!(
            (compacted.rows_in, compacted.rows_out, compacted.duplicates),
            (3, 0, 3)
        );
        let mut span_files = 0;
        crate::store::visit_files(&root.join("spans"), "", &mut |_, name, _| {
            span_files += usize::from(name.ends_with(".parquet"));
        });
        assert_eq!(span_files, 1);
        ingest.close();
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A file a flush wrote settled is not compared when the flush told
    /// compaction (`with_compaction`); otherwise compaction compares it once.
    #[tokio::test]
    async fn compaction_takes_the_files_flushes_wrote_settled_as_compared() {
        for told in [true, false] {
            let root = fresh_root(&format!("settled-{told}"));
            let mut ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true).unwrap();
            if told {
                ingest = ingest.with_compaction();
            }
            submit(&ingest, &request()).await;
            assert_eq!(ingest.flush().await.unwrap().files.len(), 1);
            // A target of one byte: every file counts as large, no merges.
            let first = ingest.compact(1).await.unwrap();
            assert_eq!(first.compared, usize::from(!told), "told: {told}");
            assert_eq!(first.duplicates, 0);
            // Compared or not, once is enough.
            assert_eq!(ingest.compact(1).await.unwrap().compared, 0);
            ingest.close();
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    #[tokio::test]
    async fn spans_resent_after_their_file_was_uploaded_and_a_restart_are_stored_once() {
        let (root, bucket) = (fresh_root("resend-shipped"), fresh_root("resend-bucket"));
        std::fs::create_dir_all(&bucket).unwrap();
        let to = || ObjectRoot::parse(&format!("file://{}", bucket.display())).unwrap();
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true)
            .unwrap()
            .with_object_store(to());
        submit(&ingest, &request()).await;
        let first = ingest.flush().await.unwrap();
        assert_eq!(first.rows, 3);
        let uploaded = |dir: &Path, suffix: &str| {
            let mut found = 0;
            crate::store::visit_files(dir, "", &mut |_, name, _| {
                found += usize::from(name.ends_with(suffix));
            });
            found
        };
        assert_eq!(uploaded(&bucket, ".parquet"), 1);
        // Uploaded, and kept locally for the window, but not as data.
        assert_eq!(uploaded(&root, ".parquet"), 0);
        assert_eq!(uploaded(&root, ".parquet.shipped"), 1);
        ingest.close();
        drop(ingest);

        // A restarted collector reads the ids back from the kept file.
        let ingest = Ingest::open(root.clone(), usize::MAX, usize::MAX, true)
            .unwrap()
            .with_object_store(to());
        assert_eq!(ingest.recent_spans(), 3);
        submit(&ingest, &request()).await;
        assert_eq!(ingest.flush().await.unwrap().rows, 0);
        assert_eq!(duplicates(&ingest), 3);
        assert_eq!(uploaded(&bucket, ".parquet"), 1);
        ingest.close();
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&bucket).unwrap();
    }
}
