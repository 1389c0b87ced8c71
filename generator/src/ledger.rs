//! The run's ledger: one row per scheduled iteration step, written by the
//! generator straight into the store (`ledger/date=…/run_id=…/`), not through
//! the telemetry pipeline. It is the independent record reconciliation checks
//! the spans against, so a loss on the OTLP path cannot also erase the
//! evidence of what was sent. Rows are never dropped: when the writer falls
//! behind, request tasks wait for room.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampNanosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use collector::convert::PartitionKey;
use schema::Table;
use tokio::sync::mpsc;

/// One row.
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub intended_start: i64,
    pub sent_at: Option<i64>,
    pub end_time: Option<i64>,
    pub request_id: i64,
    /// Index into the step names.
    pub step: u32,
    /// Index into the stage names.
    pub stage: u32,
    pub vu: i64,
    pub status: Option<u16>,
    pub error_type: Option<&'static str>,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub span_exported: bool,
}

/// Rows per file. The buffer, and the sort and encode copies made when it is
/// written, are what the ledger costs in memory (about 30 MB at this size),
/// however long the run.
const ROWS_PER_FILE: usize = 65_536;

/// Rows taken from the queue at once, and how long the writer waits for
/// more when it found fewer. The queue holds 65,536 rows: at 5 ms, room for
/// 13 million rows a second.
const RECEIVE_AT_ONCE: usize = 4096;
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// Where ledger rows go; cheap to clone.
#[derive(Debug, Clone)]
pub struct LedgerSink {
    tx: mpsc::Sender<Message>,
}

#[derive(Debug)]
enum Message {
    Row(LedgerRow),
    /// Everything before this is written; stop.
    Finish,
}

impl LedgerSink {
    /// Queues a row, waiting if the writer is behind.
    pub async fn write(&self, row: LedgerRow) {
        // Fails only after `finish`, when no request is in flight any more.
        let _ = self.tx.send(Message::Row(row)).await;
    }

    /// Queues a row from a thread outside the async runtime.
    pub fn write_blocking(&self, row: LedgerRow) {
        let _ = self.tx.blocking_send(Message::Row(row));
    }
}

/// Totals of the written ledger.
#[derive(Debug, Clone, Default)]
pub struct LedgerReport {
    pub rows: u64,
    pub files: Vec<PathBuf>,
    /// The first write error, if any (rows after it were not written).
    pub error: Option<String>,
}

/// The writer thread.
#[derive(Debug)]
pub struct LedgerWriter {
    thread: std::thread::JoinHandle<LedgerReport>,
    tx: mpsc::Sender<Message>,
}

/// Names the writer resolves step and stage indexes with.
#[derive(Debug, Clone)]
pub struct Names {
    pub steps: Vec<String>,
    pub stages: Vec<String>,
}

impl LedgerWriter {
    /// Starts writing rows of `run_id`, shard `shard`, under the store `root`;
    /// `after_file` runs on the writer thread after each file is written.
    pub fn start(
        root: PathBuf,
        run_id: String,
        shard: u32,
        names: Names,
        after_file: Option<fn()>,
    ) -> (LedgerSink, Self) {
        let (tx, mut rx) = mpsc::channel::<Message>(1 << 16);
        let thread = std::thread::Builder::new()
            .name("loadlens-ledger".into())
            .spawn(move || {
                let mut report = LedgerReport::default();
                let mut rows = Vec::with_capacity(ROWS_PER_FILE);
                let mut received = Vec::with_capacity(RECEIVE_AT_ONCE);
                'receive: while rx.blocking_recv_many(&mut received, RECEIVE_AT_ONCE) > 0 {
                    let full = received.len() == RECEIVE_AT_ONCE;
                    for message in received.drain(..) {
                        let Message::Row(row) = message else {
                            break 'receive;
                        };
                        rows.push(row);
                        if rows.len() >= ROWS_PER_FILE {
                            flush(&root, &run_id, shard, &names, &mut rows, &mut report);
                            after_file.inspect(|f| f());
                        }
                    }
                    if !full {
                        // Let rows gather: a wake-up per few hundred rows, not
                        // one per row, which on a busy core costs the request
                        // tasks a context switch each time.
                        std::thread::sleep(GATHER);
                    }
                }
                flush(&root, &run_id, shard, &names, &mut rows, &mut report);
                after_file.inspect(|f| f());
                report
            })
            .expect("spawn the ledger writer thread");
        (LedgerSink { tx: tx.clone() }, LedgerWriter { thread, tx })
    }

    /// Writes every row queued so far and stops; call it when no request is in flight.
    pub async fn finish(self) -> LedgerReport {
        let _ = self.tx.send(Message::Finish).await;
        tokio::task::spawn_blocking(move || self.thread.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| LedgerReport {
                error: Some("the ledger writer stopped unexpectedly".into()),
                ..Default::default()
            })
    }
}

fn flush(
    root: &std::path::Path,
    run_id: &str,
    shard: u32,
    names: &Names,
    rows: &mut Vec<LedgerRow>,
    report: &mut LedgerReport,
) {
    if rows.is_empty() || report.error.is_some() {
        rows.clear();
        return;
    }
    // A run that crosses midnight writes one file per day.
    rows.sort_by_key(|r| r.intended_start);
    let mut start = 0;
    while start < rows.len() {
        let day = schema::layout::utc_day(rows[start].intended_start);
        let end = start
            + rows[start..]
                .iter()
                .position(|r| schema::layout::utc_day(r.intended_start) != day)
                .unwrap_or(rows.len() - start);
        let result = batch(&rows[start..end], shard, names)
            .map_err(|e| e.to_string())
            .and_then(|batch| {
                let key = PartitionKey {
                    table: Table::Ledger,
                    date: day.clone(),
                    run_id: Some(run_id.to_string()),
                };
                collector::store::write_partition(root, &key, &[batch], 0)
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(written) => {
                report.rows += written.rows as u64;
                report.files.extend(written.path);
            }
            Err(e) => {
                report.error = Some(e);
                break;
            }
        }
        start = end;
    }
    rows.clear();
}

fn batch(
    rows: &[LedgerRow],
    shard: u32,
    names: &Names,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = rows.len();
    let mut intended = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut sent = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut end = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut shards = Int32Builder::with_capacity(n);
    let mut ids = Int64Builder::with_capacity(n);
    let mut steps = StringBuilder::new();
    let mut stages = StringBuilder::new();
    let mut vus = Int64Builder::with_capacity(n);
    let mut status = Int32Builder::with_capacity(n);
    let mut errors = StringBuilder::new();
    let mut trace = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut exported = BooleanBuilder::with_capacity(n);
    for r in rows {
        intended.append_value(r.intended_start);
        sent.append_option(r.sent_at);
        end.append_option(r.end_time);
        shards.append_value(shard as i32);
        ids.append_value(r.request_id);
        steps.append_option(names.steps.get(r.step as usize));
        stages.append_option(names.stages.get(r.stage as usize));
        vus.append_value(r.vu);
        status.append_option(r.status.map(i32::from));
        errors.append_option(r.error_type);
        trace.append_value(r.trace_id)?;
        span.append_value(r.span_id)?;
        exported.append_value(r.span_exported);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(intended.finish()),
        Arc::new(sent.finish()),
        Arc::new(end.finish()),
        Arc::new(shards.finish()),
        Arc::new(ids.finish()),
        Arc::new(steps.finish()),
        Arc::new(stages.finish()),
        Arc::new(vus.finish()),
        Arc::new(status.finish()),
        Arc::new(errors.finish()),
        Arc::new(trace.finish()),
        Arc::new(span.finish()),
        Arc::new(exported.finish()),
    ];
    RecordBatch::try_new(Table::Ledger.file_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            steps: vec!["home".into()],
            stages: vec!["main".into()],
        }
    }

    /// A finished request `i`, scheduled at `intended_start`.
    fn row(i: i64, intended_start: i64) -> LedgerRow {
        LedgerRow {
            intended_start,
            sent_at: Some(intended_start + 1),
            end_time: Some(intended_start + 2),
            request_id: i,
            step: 0,
            stage: 0,
            vu: i,
            status: Some(200),
            error_type: None,
            trace_id: [1; 16],
            span_id: [2; 8],
            span_exported: true,
        }
    }

    #[tokio::test]
    async fn rows_land_in_the_run_partition_of_their_day() {
        let root = std::env::temp_dir().join(format!("loadlens-ledger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (sink, writer) = LedgerWriter::start(root.clone(), "r1".into(), 2, names(), None);
        let day = 86_400 * 1_000_000_000i64;
        for i in 0..10 {
            // Five rows before midnight, five after.
            sink.write(row(i, 20_000 * day - 5 + i)).await;
        }
        let report = writer.finish().await;
        drop(sink);
        assert_eq!(report.error, None);
        assert_eq!(report.rows, 10);
        assert_eq!(report.files.len(), 2, "{:?}", report.files);
        assert!(
            report
                .files
                .iter()
                .all(|f| f.to_string_lossy().contains("run_id=r1"))
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn the_hook_runs_after_every_file() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        fn count() {
            CALLS.fetch_add(1, Ordering::SeqCst);
        }
        let root =
            std::env::temp_dir().join(format!("loadlens-ledger-hook-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (sink, writer) =
            LedgerWriter::start(root.clone(), "r1".into(), 0, names(), Some(count));
        let t0 = 20_000 * 86_400 * 1_000_000_000i64;
        for i in 0..ROWS_PER_FILE as i64 + 1 {
            sink.write(row(i, t0 + i)).await;
        }
        let report = writer.finish().await;
        drop(sink);
        assert_eq!(report.error, None);
        assert_eq!(report.rows, ROWS_PER_FILE as u64 + 1);
        // One full file while rows arrive, and the last row's file at the end.
        assert_eq!(report.files.len(), 2, "{:?}", report.files);
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
        let _ = std::fs::remove_dir_all(&root);
    }
}
