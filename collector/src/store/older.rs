//! Which of a flush's spans the older files of its partition hold already.
//!
//! The recent-id index ([`super::recent`]) is bounded, so it cannot answer
//! for every span ever stored. What it has forgotten, though, it forgot
//! whole, a generation at a time, and each generation remembers the latest
//! start time among its ids, per partition folder; files a folder held
//! when the index first wrote to it, less those it read at start, are
//! known by their footers. So every stored span that started after
//! the index's *horizon* ([`super::RecentSpans::horizon`]) is in the index,
//! and only a flush's spans that started at or before it (a resend later
//! than the index reaches, a straggler, a very long span) need to be looked
//! up in files. A resend keeps its first copy's start time, so the lookup
//! reads only the row groups whose time statistics cover one of those
//! times: files are sorted by time, so that is about one row group in each
//! file whose time range covers it.
//!
//! The lookup runs before the flush's file is written, so a query never sees
//! a span twice, however late the resend came. Nothing can add a copy
//! between the lookup and the file's rename: flushes run one at a time, and
//! compaction only merges and trims files that already hold the spans
//! (each merged file appears before its inputs go). Compaction may replace
//! files while they are looked up, though: a listed file that is gone when
//! it is opened, or a listing that differs from one taken after the lookup,
//! makes the lookup start again, so that a copy is not missed between a
//! file that went and its replacement that the listing did not see yet.
//!
//! Uploaded files still in the local folder (`….shipped`, kept for the
//! dedupe window) are looked up too; files only in the bucket are not.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ahash::{AHashMap, AHashSet};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use schema::Table;

use super::recent::{SpanKey, visit_keys_of};
use super::writer::WriteError;
use super::{compact, ship};

/// How many times a lookup lists its partition again when files vanish
/// under it (compaction replacing them) before it gives up; the flush then
/// fails, keeps its rows, and the next one tries again.
const LISTINGS: usize = 8;

/// Files whose footers are kept at most; past it the cache starts afresh
/// (entries of other folders are not pruned as their files go).
const MAX_FOOTERS: usize = 65_536;

/// The range of start times of each row group of the span files looked up
/// so far, so that a file's footer is read once. Files are never changed in
/// place (a rewrite has a new name), so an entry stays right until its file
/// goes.
#[derive(Debug, Default)]
pub(crate) struct Footers(AHashMap<PathBuf, Vec<(i64, i64)>>);

/// The span files of a partition folder, uploaded ones still kept included.
pub(crate) fn span_files(dir: &Path) -> Vec<PathBuf> {
    compact::files(dir, |name| {
        compact::is_data_file(name) || ship::is_shipped_file(name)
    })
}

/// What a lookup found.
pub(crate) struct Lookup {
    /// The ids looked for that a file holds.
    pub held: AHashSet<SpanKey>,
    /// False if a file could not be decoded and was left out.
    pub every_file_read: bool,
}

/// Why a look at a partition's files was not finished.
enum Unfinished {
    /// A file went while it was being read: list again.
    Vanished,
    /// A file could not be opened: the flush fails, keeps its rows, and is
    /// retried.
    Failed(WriteError),
}

impl Footers {
    /// The ids among `suspects` (start time, key; sorted by time) that a
    /// span file of `dir` holds.
    pub(crate) fn held(
        &mut self,
        dir: &Path,
        suspects: &[(i64, SpanKey)],
    ) -> Result<Lookup, WriteError> {
        let times: Vec<i64> = suspects.iter().map(|&(time, _)| time).collect();
        let keys: AHashSet<SpanKey> = suspects.iter().map(|&(_, key)| key).collect();
        if self.0.len() > MAX_FOOTERS {
            self.0.clear();
        }
        listed(dir, |files| {
            self.0
                .retain(|path, _| path.parent() != Some(dir) || files.binary_search(path).is_ok());
            self.held_in(files, &times, &keys)
        })
    }

    fn held_in(
        &mut self,
        files: &[PathBuf],
        times: &[i64],
        keys: &AHashSet<SpanKey>,
    ) -> Result<Lookup, Unfinished> {
        let mut held = AHashSet::new();
        let mut every_file_read = true;
        for path in files {
            let covers = |&(lo, hi): &(i64, i64)| {
                let first = times.partition_point(|&t| t < lo);
                times.get(first).is_some_and(|&t| t <= hi)
            };
            // A file not in the cache is opened once, for its bounds and,
            // if they cover a time, its row groups.
            let (groups, opened) = match self.0.get(path) {
                Some(bounds) => (chosen(bounds, covers), None),
                None => {
                    let Some(builder) = open(path)? else {
                        every_file_read = false;
                        continue;
                    };
                    let bounds = row_group_times(builder.metadata());
                    let groups = chosen(&bounds, covers);
                    self.0.insert(path.clone(), bounds);
                    (groups, Some(builder))
                }
            };
            if groups.is_empty() {
                continue;
            }
            let builder = match opened {
                Some(builder) => builder,
                None => match open(path)? {
                    Some(builder) => builder,
                    None => {
                        every_file_read = false;
                        continue;
                    }
                },
            };
            let mut in_file = Vec::new();
            let read = visit_keys_of(builder.with_row_groups(groups), &mut |key| {
                if keys.contains(&key) {
                    in_file.push(key);
                }
            });
            match read {
                Ok(()) => held.extend(in_file),
                // Not counted as holding anything, not even the rows read
                // before the error; a query fails on it too.
                Err(e) => {
                    every_file_read = false;
                    eprintln!(
                        "collector: cannot read span ids in {}, to drop a flush's spans stored there already: {e}; the file is left out (queries fail on it too); move it out of the store",
                        path.display()
                    );
                }
            }
        }
        Ok(Lookup {
            held,
            every_file_read,
        })
    }
}

/// The row groups whose bounds `covers` accepts.
fn chosen(bounds: &[(i64, i64)], covers: impl Fn(&(i64, i64)) -> bool) -> Vec<usize> {
    (0..bounds.len()).filter(|&g| covers(&bounds[g])).collect()
}

/// A reader of `path`; `None` (with a message) if it is not Parquet.
fn open(path: &Path) -> Result<Option<ParquetRecordBatchReaderBuilder<File>>, Unfinished> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(Unfinished::Vanished),
        Err(source) => {
            return Err(Unfinished::Failed(WriteError::Lookup {
                path: path.to_path_buf(),
                source,
            }));
        }
    };
    match ParquetRecordBatchReaderBuilder::try_new(file) {
        Ok(builder) => Ok(Some(builder)),
        Err(e) => {
            eprintln!(
                "collector: cannot read the footer of {}: {e}; the file is left out (queries fail on it too); move it out of the store",
                path.display()
            );
            Ok(None)
        }
    }
}

/// The smallest and largest start time of each row group of a span file,
/// from its statistics; a row group without them may hold any time.
pub(crate) fn row_group_times(meta: &ParquetMetaData) -> Vec<(i64, i64)> {
    let schema = meta.file_metadata().schema_descr();
    let time = Table::Spans.time_column();
    let column = (0..schema.num_columns())
        .find(|&i| matches!(schema.column(i).path().parts(), [name] if name == time));
    meta.row_groups()
        .iter()
        .map(|group| {
            let stats = column.and_then(|c| group.column(c).statistics());
            match stats {
                Some(Statistics::Int64(s)) => (
                    s.min_opt().copied().unwrap_or(i64::MIN),
                    s.max_opt().copied().unwrap_or(i64::MAX),
                ),
                _ => (i64::MIN, i64::MAX),
            }
        })
        .collect()
}

/// The latest start time in a span file, from its row groups' statistics;
/// `i64::MIN` if it has none.
pub(crate) fn latest_start_of(meta: &ParquetMetaData) -> i64 {
    row_group_times(meta)
        .iter()
        .map(|&(_, hi)| hi)
        .max()
        .unwrap_or(i64::MIN)
}

/// The latest start time in the span files of `dir` that `known` does not
/// name, from their footers; `i64::MIN` if there are none.
pub(crate) fn latest_start(dir: &Path, known: &AHashSet<PathBuf>) -> Result<i64, WriteError> {
    listed(dir, |files| latest_start_in(files, known))
}

/// Runs `look` over the span files of `dir`, again while files vanish under
/// it or the folder lists differently afterwards (see the module's
/// documentation), at most [`LISTINGS`] times.
fn listed<T>(
    dir: &Path,
    mut look: impl FnMut(&[PathBuf]) -> Result<T, Unfinished>,
) -> Result<T, WriteError> {
    for _ in 0..LISTINGS {
        let files = span_files(dir);
        match look(&files) {
            Ok(found) if span_files(dir) == files => return Ok(found),
            Ok(_) | Err(Unfinished::Vanished) => continue,
            Err(Unfinished::Failed(e)) => return Err(e),
        }
    }
    Err(changing(dir))
}

fn latest_start_in(files: &[PathBuf], known: &AHashSet<PathBuf>) -> Result<i64, Unfinished> {
    let mut latest = i64::MIN;
    for path in files.iter().filter(|path| !known.contains(*path)) {
        // Unreadable: a query fails on it as well, and nothing is looked
        // up in it.
        if let Some(builder) = open(path)? {
            latest = latest.max(latest_start_of(builder.metadata()));
        }
    }
    Ok(latest)
}

/// The error of a folder whose files kept vanishing under [`LISTINGS`] listings.
fn changing(dir: &Path) -> WriteError {
    WriteError::Lookup {
        path: dir.to_path_buf(),
        source: std::io::Error::other(format!(
            "its files changed under {LISTINGS} listings in a row (compaction replacing them)"
        )),
    }
}
