//! Compaction: merges a partition's small Parquet files into larger ones and
//! drops spans repeated by client retries, keeping one row per
//! (trace_id, span_id) among the files it merges.
//!
//! Each span file not known to be settled is also compared once with the
//! rest of its partition: the ids and start times of the other files whose
//! time range overlaps its own (a resend keeps its start time). A flush
//! writes its file settled, without the spans stored before
//! ([`super::writer::write_partition_after`]); files from a restart,
//! another program, or a flush with the dedupe index off are not. A span
//! that another file holds already (the same ids and start time) is
//! dropped from the file being compared, which is rewritten like a merge
//! of one file. Files are compared one at a time and each rewrite lands
//! before the next comparison, so of two copies exactly one stays.
//! [`Checked`] remembers which files were compared; after a restart, files
//! younger than [`CHECK_WITHIN`] are compared again, older ones are taken
//! as settled.
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
//! Each pass does the same for its partition first: a merge an I/O error
//! stopped half way leaves inputs that a restart would delete, so they must
//! not count as holding the spans the output left out.
//! The merged file names its inputs under `loadlens.compacted_from` in its
//! key-value metadata.
//!
//! The merged file keeps the highest write-ahead-log segment of
//! its inputs in its name, so replay after a crash skips the same rows as before.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ahash::AHashSet;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schema::Table;

use super::older;
use super::recent::SpanKey;
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
    /// Span files read to compare them with the rest of their partition.
    pub compared: usize,
}

/// Span files not in [`Checked`] and last written longer ago than this are
/// taken as settled, not compared with their partition: after a restart,
/// only the files of the last day are read again. Client retries come
/// within minutes.
pub const CHECK_WITHIN: Duration = Duration::from_secs(24 * 60 * 60);

/// The span files already compared with the rest of their partition (or
/// taken as settled). Kept by the caller from one pass to the next, so each
/// file is read for that once.
#[derive(Debug, Default)]
pub struct Checked(AHashSet<PathBuf>);

impl Checked {
    /// Takes files as compared: a flush wrote them without the spans
    /// stored before ([`super::writer::Written::settled`]).
    pub fn extend(&mut self, settled: impl IntoIterator<Item = PathBuf>) {
        self.0.extend(settled);
    }
}

/// Merges, in every partition of every table below `root`, runs of files
/// smaller than half of `target_size` until a merged file would pass
/// `target_size` bytes or [`MAX_MERGE_ROWS`] rows; then compares each span
/// file not yet `checked` with the rest of its partition (see the module
/// documentation).
pub fn compact(
    root: &Path,
    target_size: usize,
    checked: &mut Checked,
) -> Result<CompactionReport, WriteError> {
    let mut report = CompactionReport::default();
    let mut present = AHashSet::new();
    for (table, dir) in partitions(root) {
        // A merge that an error stopped half way is finished first: its
        // inputs must not count as holding the spans its output left out.
        recover_dir(&dir)?;
        let groups = groups(&dir, target_size)?;
        // Every footer of the partition is read only when there is work;
        // files flushed after this wait for the next pass.
        let work = table == Table::Spans
            && (!groups.is_empty()
                || files(&dir, is_data_file)
                    .iter()
                    .any(|p| !checked.0.contains(p)));
        let mut span_files = work.then(|| SpanFiles::read(&dir));
        for group in groups {
            let inputs: Vec<&Path> = group.iter().map(|i| i.path.as_path()).collect();
            let stored = match &span_files {
                Some(span_files) => span_files.stored_elsewhere(&inputs)?,
                None => AHashSet::new(),
            };
            let merged = merge(table, &dir, &group, &stored, &mut report)?;
            if let Some(span_files) = span_files.as_mut() {
                span_files.replaced(&inputs, merged, checked);
            }
        }
        if let Some(span_files) = span_files.as_mut() {
            compare_unchecked(&dir, span_files, checked, &mut report)?;
        }
        present.extend(files(&dir, is_data_file));
    }
    checked.0.retain(|path| present.contains(path));
    Ok(report)
}

/// Compares each span file of `dir` not yet checked with the partition's
/// other files, and rewrites it without the spans they hold.
fn compare_unchecked(
    dir: &Path,
    span_files: &mut SpanFiles,
    checked: &mut Checked,
    report: &mut CompactionReport,
) -> Result<(), WriteError> {
    let settled = SystemTime::now()
        .checked_sub(CHECK_WITHIN)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let unchecked: Vec<PathBuf> = span_files
        .0
        .iter()
        .map(|file| file.path.clone())
        .filter(|path| !checked.0.contains(path))
        .collect();
    for path in unchecked {
        let modified = fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(io_err(&path))?;
        if modified < settled {
            checked.0.insert(path);
            continue;
        }
        let stored = match span_files.stored_elsewhere(&[path.as_path()]) {
            Ok(stored) => {
                report.compared += 1;
                stored
            }
            Err(e) => {
                // Its own ids cannot be read; neither can a query's.
                eprintln!(
                    "collector: compaction leaves {} as it is: {e}",
                    path.display()
                );
                checked.0.insert(path);
                continue;
            }
        };
        if stored.is_empty() {
            checked.0.insert(path);
            continue;
        }
        let input = Input {
            rows: row_count(&path)?,
            path: path.clone(),
        };
        let merged = merge(Table::Spans, dir, &[input], &stored, report)?;
        if matches!(merged, Merged::Left) {
            checked.0.insert(path.clone());
        }
        span_files.replaced(&[path.as_path()], merged, checked);
    }
    Ok(())
}

/// A span file and the range of its start times.
#[derive(Debug)]
struct SpanFile {
    path: PathBuf,
    min_time: i64,
    max_time: i64,
}

/// The span files of a partition as the pass found them, kept up to date
/// with what it merges.
struct SpanFiles(Vec<SpanFile>);

impl SpanFiles {
    /// Every span file of `dir` whose footer can be read; the others are
    /// left out (a query fails on them too) with a message.
    fn read(dir: &Path) -> SpanFiles {
        let mut span_files = Vec::new();
        for path in files(dir, is_data_file) {
            match time_range(&path) {
                Ok((min_time, max_time)) => span_files.push(SpanFile {
                    path,
                    min_time,
                    max_time,
                }),
                Err(e) => eprintln!("collector: compaction leaves {} out: {e}", path.display()),
            }
        }
        SpanFiles(span_files)
    }

    /// The ids of `inputs`' spans that the partition's other files hold
    /// copies of: rows with the same ids and start time, looked for as a
    /// flush looks past its index ([`older::LookedFor`]). Only files whose
    /// time range overlaps the inputs' are read, and only their row groups
    /// whose times cover an input span's.
    fn stored_elsewhere(&self, inputs: &[&Path]) -> Result<AHashSet<SpanKey>, WriteError> {
        let mut ours = Vec::new();
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        for input in inputs {
            // Known unless the file was flushed after the pass listed them.
            let known = self.0.iter().find(|file| file.path == *input);
            let (lo, hi) = match known {
                Some(file) => (file.min_time, file.max_time),
                None => time_range(input)?,
            };
            (min_time, max_time) = (min_time.min(lo), max_time.max(hi));
            let spans = older::spans_of(input).map_err(invalid(input))?;
            // One input (a file compared alone) is taken as it is, not copied.
            if ours.is_empty() {
                ours = spans;
            } else {
                ours.extend(spans);
            }
        }
        // Each input is in time order: a stable sort merges their runs.
        ours.sort_by_key(|&(time, _)| time);
        let looked_for = older::LookedFor::new(ours);
        let mut stored = AHashSet::new();
        for file in &self.0 {
            let overlaps = file.min_time <= max_time && min_time <= file.max_time;
            if !overlaps || inputs.contains(&file.path.as_path()) {
                continue;
            }
            match looked_for.copies_in_file(&file.path) {
                Ok(copies) => stored.extend(copies.into_iter().map(|i| looked_for.key(i))),
                // Not counted as holding anything: nothing is dropped for it.
                Err(e) => eprintln!(
                    "collector: compaction leaves {} out: {e}",
                    file.path.display()
                ),
            }
        }
        Ok(stored)
    }

    /// Takes in what [`merge`] made of `inputs`; its output needs no
    /// comparison (it was made without the spans stored elsewhere).
    fn replaced(&mut self, inputs: &[&Path], merged: Merged, checked: &mut Checked) {
        if matches!(merged, Merged::Left) {
            return;
        }
        self.0.retain(|file| !inputs.contains(&file.path.as_path()));
        for input in inputs {
            checked.0.remove(*input);
        }
        if let Merged::Into(output) = merged {
            checked.0.insert(output.path.clone());
            self.0.push(output);
        }
    }
}

/// The smallest and largest time in a data file, from its key-value
/// metadata; a file without them (not written by loadlens) spans all time.
fn time_range(path: &Path) -> Result<(i64, i64), WriteError> {
    let meta = reader(path)?.metadata().clone();
    let value = |key: &str| -> Option<i64> {
        meta.file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_deref()?
            .parse()
            .ok()
    };
    Ok((
        value(schema::MIN_TIME_KEY).unwrap_or(i64::MIN),
        value(schema::MAX_TIME_KEY).unwrap_or(i64::MAX),
    ))
}

fn invalid(path: &Path) -> impl FnOnce(Box<dyn std::error::Error>) -> WriteError + '_ {
    move |e| WriteError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// Finishes merges that a crash interrupted; returns how many intents it found.
pub fn recover(root: &Path) -> Result<usize, WriteError> {
    let mut found = 0;
    for (_, dir) in partitions(root) {
        found += recover_dir(&dir)?;
    }
    Ok(found)
}

/// [`recover`] for one partition folder.
fn recover_dir(dir: &Path) -> Result<usize, WriteError> {
    let intents = files(dir, |name| {
        name.starts_with(".compact-") && name.ends_with(".intent")
    });
    for intent in &intents {
        let text = fs::read_to_string(intent).map_err(io_err(intent))?;
        let mut names = text.lines().filter(|l| !l.is_empty());
        let output = names.next().unwrap_or_default();
        if !output.is_empty() && dir.join(output).exists() {
            for input in names {
                remove_if_present(&dir.join(input))?;
            }
        }
        writer::sync_dir(dir)?;
        remove_if_present(intent)?;
    }
    Ok(intents.len())
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

/// What [`merge`] did with its group.
enum Merged {
    /// Nothing: files of an older schema version.
    Left,
    /// Replaced the group with this file.
    Into(SpanFile),
    /// Deleted the group: other files hold every span in it.
    Removed,
}

/// Writes the rows of `group` as one file, without repeats among them and
/// without the spans in `stored`, then deletes the group.
fn merge(
    table: Table,
    dir: &Path,
    group: &[Input],
    stored: &AHashSet<SpanKey>,
    report: &mut CompactionReport,
) -> Result<Merged, WriteError> {
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
            return Ok(Merged::Left);
        }
        batches.extend(read);
    }
    let prepared = writer::prepare(table, &batches, |key| stored.contains(key))?;
    report.files_in += group.len();
    report.rows_in += group.iter().map(|i| i.rows).sum::<usize>();
    report.rows_out += prepared.num_rows();
    report.duplicates += prepared.duplicates;
    if prepared.num_rows() == 0 {
        // No intent needed: should this stop half way, the files left hold
        // only spans stored elsewhere, and the next comparison removes them.
        for input in group {
            remove_if_present(&input.path)?;
        }
        writer::sync_dir(dir)?;
        return Ok(Merged::Removed);
    }
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
    Ok(Merged::Into(SpanFile {
        path: dir.join(output),
        min_time: prepared.min_time,
        max_time: prepared.max_time,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert;
    use crate::store::write_partition;
    use arrow::array::{Array, FixedSizeBinaryArray};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::Span;

    const T0: u64 = 1_795_435_200_000_000_000;

    /// Spans `ids` (trace and span id both `[id; n]`, so not 0), in reverse time order.
    fn spans(ids: std::ops::Range<u8>) -> ExportTraceServiceRequest {
        spans_later(ids, 0)
    }

    /// [`spans`] that started `ns` nanoseconds later.
    fn spans_later(ids: std::ops::Range<u8>, ns: u64) -> ExportTraceServiceRequest {
        let spans = ids
            .map(|id| Span {
                trace_id: vec![id; 16],
                span_id: vec![id; 8],
                name: format!("s{id}"),
                start_time_unix_nano: T0 + 1_000 * (255 - id as u64) + ns,
                end_time_unix_nano: T0 + 1_000 * (255 - id as u64) + ns + 500,
                ..Default::default()
            })
            .collect();
        crate::convert::spans::request_of(spans)
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

    fn read_batches(path: &Path) -> Vec<RecordBatch> {
        reader(path)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    /// The file of `dir` holding `rows` rows, and its size in bytes.
    fn file_of_rows(dir: &Path, rows: usize) -> (PathBuf, usize) {
        let path = files(dir, is_data_file)
            .into_iter()
            .find(|p| row_count(p).unwrap() == rows)
            .unwrap();
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        (path, size)
    }

    fn read_dir_rows(dir: &Path) -> (usize, Vec<u8>, Vec<PathBuf>) {
        let parts = files(dir, is_data_file);
        let mut ids = Vec::new();
        let mut rows = 0;
        for path in &parts {
            for batch in read_batches(path) {
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

        let mut checked = Checked::default();
        let report = compact(&root, 1 << 20, &mut checked).unwrap();
        assert_eq!(
            report,
            CompactionReport {
                merges: 1,
                files_in: 3,
                rows_in: 35,
                rows_out: 30,
                duplicates: 5,
                // The merged file was made without repeats: not read again.
                compared: 0,
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
            compact(&root, 1 << 20, &mut checked).unwrap(),
            CompactionReport::default()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn sorted(ids: &[u8]) -> Vec<u8> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids
    }

    #[test]
    fn a_resend_later_than_the_flush_window_is_dropped_from_the_later_file() {
        let root = store("late");
        // A target so small that every file counts as large: no merges.
        let target = 64;
        let mut checked = Checked::default();
        let dir = write_files(&root, &[spans(1..21)]);
        assert_eq!(
            compact(&root, target, &mut checked).unwrap(),
            CompactionReport {
                compared: 1,
                ..CompactionReport::default()
            }
        );

        // Spans 15..20 again, with new ones, long after the first copy.
        write_files(&root, &[spans(15..31)]);
        let report = compact(&root, target, &mut checked).unwrap();
        assert_eq!(
            report,
            CompactionReport {
                merges: 1,
                files_in: 1,
                rows_in: 16,
                rows_out: 10,
                duplicates: 6,
                compared: 1,
            }
        );
        let (rows, ids, parts) = read_dir_rows(&dir);
        assert_eq!((rows, parts.len()), (30, 2));
        assert_eq!(sorted(&ids), (1..31).collect::<Vec<u8>>());

        // Both files are checked now; nothing is read or done again.
        assert_eq!(
            compact(&root, target, &mut checked).unwrap(),
            CompactionReport::default()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn of_two_unchecked_files_holding_the_same_spans_exactly_one_copy_stays() {
        let root = store("pair");
        // As after a restart: neither file has been compared yet.
        let dir = write_files(&root, &[spans(1..11), spans(5..16)]);
        let report = compact(&root, 64, &mut Checked::default()).unwrap();
        assert_eq!(report.duplicates, 6);
        let (rows, ids, parts) = read_dir_rows(&dir);
        assert_eq!((rows, parts.len()), (15, 2));
        assert_eq!(sorted(&ids), (1..16).collect::<Vec<u8>>());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_file_whose_every_span_is_stored_elsewhere_is_removed() {
        let root = store("removed");
        let mut checked = Checked::default();
        let dir = write_files(&root, &[spans(1..21)]);
        compact(&root, 64, &mut checked).unwrap();
        write_files(&root, &[spans(5..11)]);
        let report = compact(&root, 64, &mut checked).unwrap();
        assert_eq!(
            report,
            CompactionReport {
                merges: 0,
                files_in: 1,
                rows_in: 6,
                rows_out: 0,
                duplicates: 6,
                compared: 1,
            }
        );
        let (rows, ids, parts) = read_dir_rows(&dir);
        assert_eq!((rows, parts.len()), (20, 1));
        assert_eq!(sorted(&ids), (1..21).collect::<Vec<u8>>());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_span_stored_elsewhere_at_another_start_time_is_not_a_copy() {
        let root = store("other-time");
        let mut checked = Checked::default();
        let dir = write_files(&root, &[spans(1..21)]);
        compact(&root, 64, &mut checked).unwrap();
        // The ids of 5..=10 again, each a nanosecond later; 11 as it was.
        write_files(&root, &[spans_later(5..11, 1), spans(11..12)]);
        let report = compact(&root, 64, &mut checked).unwrap();
        assert_eq!((report.compared, report.duplicates), (2, 1));
        let (rows, ids, _) = read_dir_rows(&dir);
        let mut expected: Vec<u8> = (1..21).chain(5..11).collect();
        expected.sort();
        assert_eq!((rows, sorted(&ids)), (26, expected));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_merge_drops_the_spans_a_file_outside_its_group_holds() {
        let root = store("outside");
        // A large file of spans 1..200, then two small ones after it; the
        // first small one resends 195..200.
        let dir = write_files(&root, &[spans(1..201), spans(195..211), spans(211..221)]);
        let size = |rows| file_of_rows(&dir, rows).1;
        // Large: at least half the target; the small ones are below it.
        let target = 2 * size(200);
        assert!(size(16) < target / 2 && size(10) < target / 2);
        let report = compact(&root, target, &mut Checked::default()).unwrap();
        assert_eq!((report.merges, report.duplicates), (1, 6));
        let (rows, ids, parts) = read_dir_rows(&dir);
        assert_eq!((rows, parts.len()), (220, 2));
        assert_eq!(sorted(&ids), (1..221).collect::<Vec<u8>>());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_merge_left_half_done_is_finished_before_files_are_compared() {
        let root = store("half-done");
        // Span 10 is in `held` and in `input`. An earlier pass merged `input`
        // into `part-0-w99` without span 10 (as `held` had it), then an I/O
        // error stopped it before `input` was deleted.
        let dir = write_files(&root, &[spans(10..11), spans(1..11)]);
        let input = file_of_rows(&dir, 10).0;
        let batches = read_batches(&input);
        let prepared = writer::prepare(Table::Spans, &batches, |key| *key == [10; 24]).unwrap();
        let name = input.file_name().unwrap().to_str().unwrap().to_string();
        writer::write_file(
            &dir,
            "part-0-w99.parquet",
            Table::Spans,
            &prepared,
            std::slice::from_ref(&name),
        )
        .unwrap();
        let intent = dir.join(".compact-3.intent");
        std::fs::write(&intent, format!("part-0-w99.parquet\n{name}\n")).unwrap();

        // The pass finishes that merge before it compares anything: `input`
        // must not count as a copy of span 10, since a restart would delete it.
        compact(&root, 64, &mut Checked::default()).unwrap();
        assert!(!intent.exists() && !input.exists());
        assert!(dir.join("part-0-w99.parquet").exists());
        let (rows, ids, _) = read_dir_rows(&dir);
        assert_eq!(rows, 10);
        assert_eq!(sorted(&ids), (1..11).collect::<Vec<u8>>());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn files_older_than_the_check_horizon_are_taken_as_settled() {
        let root = store("settled");
        let dir = write_files(&root, &[spans(1..11), spans(5..16)]);
        let long_ago = SystemTime::now() - CHECK_WITHIN - Duration::from_secs(3600);
        for path in files(&dir, is_data_file) {
            File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(long_ago))
                .unwrap();
        }
        let report = compact(&root, 64, &mut Checked::default()).unwrap();
        assert_eq!(report, CompactionReport::default());
        assert_eq!(read_dir_rows(&dir).0, 21);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn files_near_the_target_size_are_left_alone() {
        let root = store("big");
        let dir = write_files(&root, &[spans(1..11), spans(11..21)]);
        // A target so small that every file counts as large.
        let report = compact(&root, 64, &mut Checked::default()).unwrap();
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
        let batches: Vec<RecordBatch> = inputs.iter().flat_map(|p| read_batches(p)).collect();
        let prepared = writer::prepare(Table::Spans, &batches, |_| false).unwrap();
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
