//! Compaction: merges a partition's small Parquet files into larger ones and
//! drops spans repeated by client retries, keeping one row per
//! (trace_id, span_id).
//!
//! A merge is crash-safe through an intent file written before the new file
//! appears:
//!
//! ```text
//!  .compact-<id>.intent (output + inputs, fsynced) ─▶ output (tmp, fsync, rename, fsync dir)
//!    ─▶ delete inputs, fsync dir ─▶ delete intent
//! ```
//!
//! [`recover`] finishes what a crash interrupted: if the output exists the
//! inputs still listed are deleted, otherwise the inputs stay and only the
//! intent goes (its temporary output is removed with the other temporary files).
//! The merged file names its inputs under `loadlens.compacted_from` in its
//! key-value metadata.
//!
//! The merged file keeps the highest write-ahead-log segment of
//! its inputs in its name, so replay after a crash skips the same rows as before.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schema::Table;

use super::recent::RecentSpans;
use super::writer::{self, WriteError};

/// Most rows one merge holds in memory (eight row groups).
const MAX_MERGE_ROWS: usize = 8 * writer::ROW_GROUP_ROWS;

/// What a compaction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// Merges done (each wrote one file).
    pub merges: usize,
    /// Files replaced.
    pub files_in: usize,
    pub rows_in: usize,
    pub rows_out: usize,
    /// Spans dropped as repeats of a (trace_id, span_id).
    pub duplicates: usize,
}

/// Merges, in every partition of every table below `root`, runs of files
/// smaller than half of `target_size` until a merged file would pass
/// `target_size` bytes or [`MAX_MERGE_ROWS`] rows.
pub fn compact(root: &Path, target_size: usize) -> Result<CompactionReport, WriteError> {
    let mut report = CompactionReport::default();
    for (table, dir) in partitions(root) {
        for group in groups(&dir, target_size)? {
            merge(table, &dir, &group, &mut report)?;
        }
    }
    Ok(report)
}

/// Finishes merges that a crash interrupted; returns how many intents it found.
pub fn recover(root: &Path) -> Result<usize, WriteError> {
    let mut found = 0;
    for (_, dir) in partitions(root) {
        for intent in files(&dir, |name| {
            name.starts_with(".compact-") && name.ends_with(".intent")
        }) {
            found += 1;
            let text = fs::read_to_string(&intent).map_err(io_err(&intent))?;
            let mut names = text.lines().filter(|l| !l.is_empty());
            let output = names.next().unwrap_or_default();
            if !output.is_empty() && dir.join(output).exists() {
                for input in names {
                    remove_if_present(&dir.join(input))?;
                }
            }
            writer::sync_dir(&dir)?;
            remove_if_present(&intent)?;
        }
    }
    Ok(found)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io { path, source }
}

fn remove_if_present(path: &Path) -> Result<(), WriteError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Every `<table>/<date=…>/<run_id=…>` folder below `root`.
pub(super) fn partitions(root: &Path) -> Vec<(Table, PathBuf)> {
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs
    };
    let mut out = Vec::new();
    for table in Table::ALL {
        for day in subdirs(&root.join(table.name())) {
            for run in subdirs(&day) {
                out.push((table, run));
            }
        }
    }
    out
}

/// Files in `dir` whose names pass `keep`, sorted by name (for data files: by time).
pub(super) fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(&keep))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Whether a file name is a finished data file (`part-….parquet`).
pub(super) fn is_data_file(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

/// One file to merge, with its size and rows.
struct Input {
    path: PathBuf,
    rows: usize,
}

/// Runs of consecutive small files to merge, each of two or more files.
fn groups(dir: &Path, target_size: usize) -> Result<Vec<Vec<Input>>, WriteError> {
    let mut groups = Vec::new();
    let mut group: Vec<Input> = Vec::new();
    let (mut bytes, mut rows) = (0usize, 0usize);
    let mut close = |group: &mut Vec<Input>| {
        if group.len() > 1 {
            groups.push(std::mem::take(group));
        }
        group.clear();
    };
    for path in files(dir, is_data_file) {
        let size = fs::metadata(&path).map_err(io_err(&path))?.len() as usize;
        // A large file is never merged, and ends the run before it.
        let file_rows = if size < target_size / 2 {
            row_count(&path)?
        } else {
            usize::MAX
        };
        if file_rows > MAX_MERGE_ROWS {
            close(&mut group);
            (bytes, rows) = (0, 0);
            continue;
        }
        if bytes + size > target_size || rows + file_rows > MAX_MERGE_ROWS {
            close(&mut group);
            (bytes, rows) = (0, 0);
        }
        bytes += size;
        rows += file_rows;
        group.push(Input {
            path,
            rows: file_rows,
        });
    }
    close(&mut group);
    Ok(groups)
}

fn reader(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, WriteError> {
    let file = File::open(path).map_err(io_err(path))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| WriteError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

fn row_count(path: &Path) -> Result<usize, WriteError> {
    Ok(reader(path)?.metadata().file_metadata().num_rows() as usize)
}

/// The WAL segment in a data file's name (`part-<time>-w<segment>-<random>`).
fn segment(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| writer::wal_segment_in_name(n.to_str()?))
        .unwrap_or(0)
}

fn merge(
    table: Table,
    dir: &Path,
    group: &[Input],
    report: &mut CompactionReport,
) -> Result<(), WriteError> {
    let mut batches: Vec<RecordBatch> = Vec::new();
    for input in group {
        let read = reader(&input.path)?
            .with_batch_size(64 * 1024)
            .build()
            .and_then(|r| r.collect::<Result<Vec<_>, _>>().map_err(Into::into))
            .map_err(|e| WriteError::Io {
                path: input.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        // Files of an older schema version would not concatenate; leave them.
        if read
            .first()
            .is_some_and(|b| b.schema().fields() != table.file_schema().fields())
        {
            return Ok(());
        }
        batches.extend(read);
    }
    let prepared = writer::prepare(table, &batches, &RecentSpans::off())?;
    let wal_segment = group.iter().map(|i| segment(&i.path)).max().unwrap_or(0);
    let output = writer::file_name(prepared.min_time, wal_segment);
    let inputs: Vec<String> = group
        .iter()
        .filter_map(|i| i.path.file_name()?.to_str().map(String::from))
        .collect();

    let intent = dir.join(format!(".compact-{:016x}.intent", rand::random::<u64>()));
    let mut file = File::create(&intent).map_err(io_err(&intent))?;
    writeln!(file, "{output}\n{}", inputs.join("\n")).map_err(io_err(&intent))?;
    file.sync_all().map_err(io_err(&intent))?;
    drop(file);
    writer::sync_dir(dir)?;

    writer::write_file(dir, &output, table, &prepared, &inputs)?;
    for input in group {
        remove_if_present(&input.path)?;
    }
    writer::sync_dir(dir)?;
    remove_if_present(&intent)?;

    report.merges += 1;
    report.files_in += group.len();
    report.rows_in += group.iter().map(|i| i.rows).sum::<usize>();
    report.rows_out += prepared.num_rows();
    report.duplicates += prepared.duplicates;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert;
    use crate::store::write_partition;
    use arrow::array::{Array, FixedSizeBinaryArray};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    const T0: u64 = 1_795_435_200_000_000_000;

    /// Spans `ids` (trace and span id both `[id; n]`, so not 0), in reverse time order.
    fn spans(ids: std::ops::Range<u8>) -> ExportTraceServiceRequest {
        let spans = ids
            .map(|id| Span {
                trace_id: vec![id; 16],
                span_id: vec![id; 8],
                name: format!("s{id}"),
                start_time_unix_nano: T0 + 1_000 * (255 - id as u64),
                end_time_unix_nano: T0 + 1_000 * (255 - id as u64) + 500,
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

    fn store(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("loadlens-compact-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    /// Writes each request as its own file, recording WAL segment 10 + i.
    fn write_files(root: &Path, requests: &[ExportTraceServiceRequest]) -> PathBuf {
        let mut dir = PathBuf::new();
        for (i, request) in requests.iter().enumerate() {
            for (key, batch) in convert::spans::convert(request).unwrap().batches {
                dir = write_partition(root, &key, &[batch], 10 + i as u64)
                    .unwrap()
                    .path
                    .unwrap()
                    .parent()
                    .unwrap()
                    .to_path_buf();
            }
        }
        dir
    }

    fn read_dir_rows(dir: &Path) -> (usize, Vec<u8>, Vec<PathBuf>) {
        let parts = files(dir, is_data_file);
        let mut ids = Vec::new();
        let mut rows = 0;
        for path in &parts {
            for batch in reader(path).unwrap().build().unwrap() {
                let batch = batch.unwrap();
                rows += batch.num_rows();
                let span_ids = batch
                    .column_by_name("span_id")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<FixedSizeBinaryArray>()
                    .unwrap()
                    .clone();
                ids.extend((0..span_ids.len()).map(|i| span_ids.value(i)[0]));
            }
        }
        (rows, ids, parts)
    }

    #[test]
    fn small_files_merge_into_one_sorted_file_without_repeated_spans() {
        let root = store("merge");
        // Three flushes; the second repeats spans 5..10 (a client retry).
        let dir = write_files(&root, &[spans(1..11), spans(6..21), spans(21..31)]);
        assert_eq!(read_dir_rows(&dir).0, 35);

        let report = compact(&root, 1 << 20).unwrap();
        assert_eq!(
            report,
            CompactionReport {
                merges: 1,
                files_in: 3,
                rows_in: 35,
                rows_out: 30,
                duplicates: 5,
            }
        );
        let (rows, ids, parts) = read_dir_rows(&dir);
        assert_eq!(rows, 30);
        assert_eq!(parts.len(), 1);
        // Sorted by start time, which runs opposite to the id.
        assert_eq!(ids, (1..31).rev().collect::<Vec<u8>>());
        // The merged file keeps the highest WAL segment and names its inputs.
        assert_eq!(segment(&parts[0]), 12);
        assert_eq!(crate::store::writer::highest_wal_segment(&dir), 12);
        let meta = reader(&parts[0]).unwrap().metadata().clone();
        let from = meta
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .find(|kv| kv.key == writer::COMPACTED_FROM_KEY)
            .and_then(|kv| kv.value.clone())
            .unwrap();
        assert_eq!(from.split(',').count(), 3);

        // A second pass has nothing left to do.
        assert_eq!(
            compact(&root, 1 << 20).unwrap(),
            CompactionReport::default()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn files_near_the_target_size_are_left_alone() {
        let root = store("big");
        let dir = write_files(&root, &[spans(1..11), spans(11..21)]);
        // A target so small that every file counts as large.
        let report = compact(&root, 64).unwrap();
        assert_eq!(report.merges, 0);
        assert_eq!(read_dir_rows(&dir).2.len(), 2);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn recovery_finishes_a_merge_whose_output_exists_and_undoes_one_that_does_not() {
        let root = store("recover");
        let dir = write_files(&root, &[spans(1..11), spans(11..21)]);
        let inputs = read_dir_rows(&dir).2;
        let names: Vec<String> = inputs
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();

        // Crash after the intent, before the output: nothing is lost.
        std::fs::write(
            dir.join(".compact-1.intent"),
            format!("part-never-written.parquet\n{}\n", names.join("\n")),
        )
        .unwrap();
        assert_eq!(recover(&root).unwrap(), 1);
        assert_eq!(read_dir_rows(&dir).0, 20);

        // Crash after the output was renamed in, before the inputs were deleted:
        // both would be visible, so recovery deletes the inputs.
        let batches: Vec<RecordBatch> = inputs
            .iter()
            .flat_map(|p| reader(p).unwrap().build().unwrap().map(|b| b.unwrap()))
            .collect();
        let prepared = writer::prepare(Table::Spans, &batches, &RecentSpans::off()).unwrap();
        writer::write_file(
            &dir,
            "part-merged-w11.parquet",
            Table::Spans,
            &prepared,
            &names,
        )
        .unwrap();
        std::fs::write(
            dir.join(".compact-2.intent"),
            format!("part-merged-w11.parquet\n{}\n", names.join("\n")),
        )
        .unwrap();
        assert_eq!(read_dir_rows(&dir).0, 40);
        assert_eq!(recover(&root).unwrap(), 1);
        let (rows, _, parts) = read_dir_rows(&dir);
        assert_eq!((rows, parts.len()), (20, 1));
        assert!(files(&dir, |n| n.ends_with(".intent")).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
