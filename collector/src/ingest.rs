//! Accepted rows wait here, grouped by partition, until a flush writes them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arrow::record_batch::RecordBatch;
use tokio::sync::Notify;

use crate::convert::{Converted, PartitionKey};
use crate::store::{WriteError, write_partition};

/// Pending rows and the totals of everything received.
#[derive(Debug)]
pub struct Ingest {
    root: PathBuf,
    flush_rows: usize,
    pending: Mutex<BTreeMap<PartitionKey, Vec<RecordBatch>>>,
    pending_rows: AtomicUsize,
    /// Serializes flushes so files are never written twice for the same rows.
    flushing: tokio::sync::Mutex<()>,
    /// Woken when pending rows pass `flush_rows`.
    pub(crate) full: Notify,
    pub stats: IngestStats,
}

/// Totals since start.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub rows_accepted: AtomicU64,
    pub items_rejected: AtomicU64,
    pub rows_written: AtomicU64,
    pub files_written: AtomicU64,
    pub write_errors: AtomicU64,
}

/// What one flush wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    pub files: Vec<PathBuf>,
    pub rows: u64,
}

impl Ingest {
    pub fn new(root: PathBuf, flush_rows: usize) -> Self {
        Ingest {
            root,
            flush_rows,
            pending: Mutex::new(BTreeMap::new()),
            pending_rows: AtomicUsize::new(0),
            flushing: tokio::sync::Mutex::new(()),
            full: Notify::new(),
            stats: IngestStats::default(),
        }
    }

    /// Takes the rows of one converted request.
    pub fn accept(&self, converted: Converted) {
        let rows = converted.rows();
        self.stats
            .items_rejected
            .fetch_add(converted.rejected, Ordering::Relaxed);
        if rows == 0 {
            return;
        }
        {
            let mut pending = self.pending.lock().expect("pending lock");
            for (key, batch) in converted.batches {
                pending.entry(key).or_default().push(batch);
            }
        }
        self.stats
            .rows_accepted
            .fetch_add(rows as u64, Ordering::Relaxed);
        if self.pending_rows.fetch_add(rows, Ordering::Relaxed) + rows >= self.flush_rows {
            self.full.notify_one();
        }
    }

    /// Rows accepted but not yet in a Parquet file.
    pub fn pending_rows(&self) -> usize {
        self.pending_rows.load(Ordering::Relaxed)
    }

    /// Writes every pending partition. A partition that fails to write is put
    /// back, so its rows are tried again by the next flush.
    pub async fn flush(&self) -> Result<FlushReport, WriteError> {
        let _guard = self.flushing.lock().await;
        let taken = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        let mut report = FlushReport::default();
        let mut first_error = None;
        for (key, batches) in taken {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let root = self.root.clone();
            let result = tokio::task::spawn_blocking(move || {
                let written = write_partition(&root, &key, &batches);
                (key, batches, written)
            })
            .await
            .expect("the Parquet writer does not panic");
            match result {
                (_, _, Ok(path)) => {
                    self.pending_rows.fetch_sub(rows, Ordering::Relaxed);
                    self.stats
                        .rows_written
                        .fetch_add(rows as u64, Ordering::Relaxed);
                    self.stats.files_written.fetch_add(1, Ordering::Relaxed);
                    report.rows += rows as u64;
                    report.files.push(path);
                }
                (key, batches, Err(e)) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    let mut pending = self.pending.lock().expect("pending lock");
                    let slot = pending.entry(key).or_default();
                    let newer = std::mem::replace(slot, batches);
                    slot.extend(newer);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}
