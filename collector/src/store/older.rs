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
//! times (files are sorted by time, so that is about one row group in each
//! file whose time range covers it), and compares the ids only of rows
//! that started at one of them.
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
use arrow::array::{Array, FixedSizeBinaryArray, TimestampNanosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use schema::Table;

use super::recent::{SpanKey, id_columns, span_key, top_level};
use super::writer::WriteError;
use super::{compact, ship};

/// How many times a lookup lists its partition again when files vanish
/// under it (compaction replacing them) before it gives up; the flush then
/// fails, keeps its rows, and the next one tries again.
const LISTINGS: usize = 8;

/// Files whose footers are kept at most; past it the cache starts afresh
/// (entries of other folders are not pruned as their files go).
const MAX_FOOTERS: usize = 65_536;

/// The range of start times of each row group of the span files read so
/// far, for a lookup or a horizon, so that a file's footer is read once.
/// Files are never changed in place (a rewrite has a new name), so an
/// entry stays right until its file goes.
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
    /// For each span looked for, whether a file holds a copy of it.
    pub held: Vec<bool>,
    /// Stored rows read: those of the row groups whose times cover a span
    /// looked for.
    pub rows_read: usize,
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
    /// Which of `suspects` (start time, key; sorted by time) a span file of
    /// `dir` holds a copy of: a row with the same ids and start time.
    pub(crate) fn held(
        &mut self,
        dir: &Path,
        suspects: Vec<(i64, SpanKey)>,
    ) -> Result<Lookup, WriteError> {
        let looked_for = LookedFor::new(suspects);
        listed(dir, |files| {
            self.forget_gone(dir, files);
            self.held_in(files, &looked_for)
        })
    }

    /// The latest start time in the span files of `dir` that `known` does
    /// not name, from their footers; `i64::MIN` if there are none. A file
    /// that cannot be read is left out: a query fails on it as well, and
    /// nothing is looked up in it.
    pub(crate) fn latest_start(
        &mut self,
        dir: &Path,
        known: &AHashSet<PathBuf>,
    ) -> Result<i64, WriteError> {
        listed(dir, |files| {
            self.forget_gone(dir, files);
            let mut latest = i64::MIN;
            for path in files.iter().filter(|path| !known.contains(*path)) {
                if let Some(footer) = self.footer(path)? {
                    latest = latest.max(latest_in(footer.bounds));
                }
            }
            Ok(latest)
        })
    }

    /// Drops the entries of `dir`'s files not among `files`, the folder's
    /// listing; all entries, past [`MAX_FOOTERS`].
    fn forget_gone(&mut self, dir: &Path, files: &[PathBuf]) {
        if self.0.len() > MAX_FOOTERS {
            self.0.clear();
        }
        self.0
            .retain(|path, _| path.parent() != Some(dir) || files.binary_search(path).is_ok());
    }

    /// The start-time bounds of each row group of `path`, from the cache or
    /// else its footer; `None` (with a message) if it is not Parquet.
    fn footer(&mut self, path: &Path) -> Result<Option<Footer<'_>>, Unfinished> {
        if !self.0.contains_key(path) {
            let Some(reader) = open(path)? else {
                return Ok(None);
            };
            let bounds = row_group_times(reader.metadata());
            let bounds = self.0.entry(path.to_path_buf()).or_insert(bounds);
            return Ok(Some(Footer {
                bounds,
                reader: Some(reader),
            }));
        }
        Ok(self.0.get(path).map(|bounds| Footer {
            bounds,
            reader: None,
        }))
    }

    fn held_in(&mut self, files: &[PathBuf], looked_for: &LookedFor) -> Result<Lookup, Unfinished> {
        let mut held = vec![false; looked_for.spans.len()];
        let mut rows_read = 0;
        let mut every_file_read = true;
        for path in files {
            // A file not in the cache is opened once, for its bounds and,
            // if they cover a time, its row groups.
            let Some(footer) = self.footer(path)? else {
                every_file_read = false;
                continue;
            };
            let groups = chosen(footer.bounds, |g| looked_for.covers(g));
            if groups.is_empty() {
                continue;
            }
            let reader = match footer.reader {
                Some(reader) => reader,
                None => match open(path)? {
                    Some(reader) => reader,
                    None => {
                        every_file_read = false;
                        continue;
                    }
                },
            };
            match looked_for.copies_in(reader.with_row_groups(groups)) {
                Ok((copies, rows)) => {
                    rows_read += rows;
                    for i in copies {
                        held[looked_for.places[i]] = true;
                    }
                }
                // Not counted as holding anything, not even the rows read
                // before the error: the flush's file is left for
                // compaction to compare with it.
                Err(e) => {
                    every_file_read = false;
                    eprintln!(
                        "collector: cannot read the span ids and start times of {}, to drop a flush's spans stored there already: {e}; compaction will compare the flush's file with it (if it cannot read it either, move it out of the store: queries fail on it too)",
                        path.display()
                    );
                }
            }
        }
        Ok(Lookup {
            held,
            rows_read,
            every_file_read,
        })
    }
}

/// The spans a lookup looks for, sorted by start time and then key, and
/// where each was among the spans it was made of.
pub(crate) struct LookedFor {
    spans: Vec<(i64, SpanKey)>,
    places: Vec<usize>,
}

impl LookedFor {
    /// Of `spans` (start time, key), sorted by time.
    pub(crate) fn new(mut spans: Vec<(i64, SpanKey)>) -> LookedFor {
        let mut places: Vec<usize> = (0..spans.len()).collect();
        // Sorted by time already: only spans that share a start time move.
        // (Sorting the whole took about a third of a lookup of four files.)
        let mut start = 0;
        for same_time in spans.chunk_by_mut(|a, b| a.0 == b.0) {
            let end = start + same_time.len();
            if same_time.len() > 1 {
                let mut by_key: Vec<(SpanKey, usize)> = same_time
                    .iter()
                    .map(|&(_, key)| key)
                    .zip(start..end)
                    .collect();
                by_key.sort_unstable();
                for (at, (key, place)) in (start..end).zip(by_key) {
                    (same_time[at - start].1, places[at]) = (key, place);
                }
            }
            start = end;
        }
        LookedFor { spans, places }
    }

    /// The key of the looked-for span `i` (an index [`Self::copies_in`]
    /// gives).
    pub(crate) fn key(&self, i: usize) -> SpanKey {
        self.spans[i].1
    }

    /// Whether a row group of start times `lo..=hi` may hold a copy.
    fn covers(&self, &(lo, hi): &(i64, i64)) -> bool {
        let first = self.spans.partition_point(|&(t, _)| t < lo);
        self.spans.get(first).is_some_and(|&(t, _)| t <= hi)
    }

    /// [`Self::copies_in`] the row groups of the span file `path` that
    /// may hold a copy.
    pub(crate) fn copies_in_file(
        &self,
        path: &Path,
    ) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
        let groups = chosen(&row_group_times(reader.metadata()), |g| self.covers(g));
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.copies_in(reader.with_row_groups(groups))?.0)
    }

    /// The looked-for spans (their indexes, for [`Self::key`] and
    /// `places`) that rows `reader` reads are copies of, and how many rows
    /// it read. A copy has the same start time as well as the same ids, so
    /// only a row that started when a looked-for span did has its ids
    /// compared, by a binary search among the spans of that time: the rows'
    /// times are walked beside the looked-for spans' in one pass, as a
    /// file's rows are in time order (a row earlier than the one before it,
    /// in a file another program wrote, say, is searched for). Probing a set
    /// of the looked-for ids with every row instead missed the cache on
    /// each, several times as slow (BENCHMARKS.md).
    fn copies_in(&self, reader: Reader) -> Result<(Vec<usize>, usize), Box<dyn std::error::Error>> {
        let looked_for = &self.spans[..];
        let mut copies = Vec::new();
        // The first looked-for span at or after the last row's time.
        let mut next = 0;
        let mut last = i64::MIN;
        let rows = visit_rows(reader, &mut |times, traces, spans| {
            for (row, &t) in times.values().iter().enumerate() {
                if times.is_null(row) {
                    continue;
                }
                if t < last {
                    next = looked_for.partition_point(|&(s, _)| s < t);
                }
                last = t;
                while looked_for.get(next).is_some_and(|&(s, _)| s < t) {
                    next += 1;
                }
                if looked_for.get(next).is_none_or(|&(s, _)| s != t) {
                    continue;
                }
                let same_time = &looked_for[next..];
                let same_time = &same_time[..same_time.partition_point(|&(s, _)| s == t)];
                let key = span_key(traces, spans, row);
                let first = same_time.partition_point(|(_, k)| *k < key);
                let same = same_time[first..].iter().take_while(|(_, k)| *k == key);
                copies.extend(next + first..next + first + same.count());
            }
        })?;
        Ok((copies, rows))
    }
}

/// Most spans [`spans_of`] makes room for before it reads a file, 128 MiB
/// of them: a larger file's list grows as it is read.
const MAX_ROOM: usize = 4 << 20;

/// The start time and key of every span of the span file `path` that has
/// a start time, in the file's order.
pub(crate) fn spans_of(path: &Path) -> Result<Vec<(i64, SpanKey)>, Box<dyn std::error::Error>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    // Room for the rows the footer counts, but no more than a bound: a
    // damaged footer may count anything.
    let rows = reader.metadata().file_metadata().num_rows();
    let mut found = Vec::with_capacity(usize::try_from(rows).unwrap_or(0).min(MAX_ROOM));
    visit_rows(reader, &mut |times, traces, spans| {
        let rows = times.values().iter().enumerate();
        let timed = rows.filter(|&(row, _)| times.is_valid(row));
        found.extend(timed.map(|(row, &t)| (t, span_key(traces, spans, row))));
    })?;
    Ok(found)
}

/// Calls `visit` with the start times and ids of each batch of rows
/// `reader` reads, reading only those three columns; returns the rows read.
fn visit_rows(
    reader: Reader,
    visit: &mut dyn FnMut(&TimestampNanosecondArray, &FixedSizeBinaryArray, &FixedSizeBinaryArray),
) -> Result<usize, Box<dyn std::error::Error>> {
    let time = Table::Spans.time_column();
    let columns = [
        time,
        schema::spans::col::TRACE_ID,
        schema::spans::col::SPAN_ID,
    ];
    let mask = top_level(reader.parquet_schema(), &columns);
    let mut rows = 0;
    for batch in reader.with_projection(mask).build()? {
        let batch = batch?;
        let times = batch
            .column_by_name(time)
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
            .ok_or_else(|| format!("no {time} column of nanosecond timestamps"))?;
        let (traces, spans) = id_columns(&batch)?;
        rows += batch.num_rows();
        visit(times, traces, spans);
    }
    Ok(rows)
}

/// The row groups whose bounds `covers` accepts.
fn chosen(bounds: &[(i64, i64)], covers: impl Fn(&(i64, i64)) -> bool) -> Vec<usize> {
    (0..bounds.len()).filter(|&g| covers(&bounds[g])).collect()
}

/// A span file, its footer read.
type Reader = ParquetRecordBatchReaderBuilder<File>;

/// What [`Footers`] knows of a file: the start-time bounds of its row
/// groups, and its reader if the footer was read just now.
struct Footer<'a> {
    bounds: &'a [(i64, i64)],
    reader: Option<Reader>,
}

/// A reader of `path`; `None` (with a message) if it is not Parquet.
fn open(path: &Path) -> Result<Option<Reader>, Unfinished> {
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
    latest_in(&row_group_times(meta))
}

/// The latest start time among row groups' bounds; `i64::MIN` for none.
fn latest_in(bounds: &[(i64, i64)]) -> i64 {
    bounds.iter().map(|&(_, hi)| hi).max().unwrap_or(i64::MIN)
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

/// The error of a folder whose files kept vanishing under [`LISTINGS`] listings.
fn changing(dir: &Path) -> WriteError {
    WriteError::Lookup {
        path: dir.to_path_buf(),
        source: std::io::Error::other(format!(
            "its files changed under {LISTINGS} listings in a row (compaction replacing them)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::ArrayRef;
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::store::testing::{batch, write_with_row_groups};

    const T: u64 = 1_795_392_000_000_000_000;

    /// An empty folder of its own.
    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("loadlens-older-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Spans (id, start offset from `T`) as a flush's suspects: sorted by time.
    fn suspects(spans: &[(u8, u64)]) -> Vec<(i64, SpanKey)> {
        let mut suspects: Vec<(i64, SpanKey)> = spans
            .iter()
            .map(|&(id, start)| ((T + start) as i64, [id; 24]))
            .collect();
        suspects.sort();
        suspects
    }

    /// The ids of the suspects a lookup found held, in the suspects' order.
    fn ids(lookup: &Lookup, suspects: &[(i64, SpanKey)]) -> Vec<u8> {
        assert_eq!(lookup.held.len(), suspects.len());
        let held = suspects.iter().zip(&lookup.held).filter(|(_, held)| **held);
        held.map(|((_, key), _)| key[0]).collect()
    }

    /// Spans 1 to 4 at 10, 20, 30 and 40 ns past `T`, two to a row group.
    fn four_spans(path: &Path) {
        let spans = batch(&[
            (1, T + 10, "a"),
            (2, T + 20, "b"),
            (3, T + 30, "c"),
            (4, T + 40, "d"),
        ]);
        write_with_row_groups(path, &spans, 2);
    }

    #[test]
    fn only_row_groups_whose_times_cover_a_suspect_are_read() {
        let dir = folder("groups");
        four_spans(&dir.join("part-a.parquet"));
        let mut footers = Footers::default();
        // 2 is where its time says. 3 is stored, but at 30, in the second
        // row group: a suspect at 20 is another span (a resend keeps its
        // first copy's start time), and only the first group is read. No
        // group covers 45.
        let looked_for = suspects(&[(2, 20), (3, 20), (4, 45)]);
        let lookup = footers.held(&dir, looked_for.clone()).unwrap();
        assert_eq!(ids(&lookup, &looked_for), [2]);
        assert_eq!(lookup.rows_read, 2, "one row group read");
        assert!(lookup.every_file_read);
        let looked_for = suspects(&[(3, 30), (4, 40)]);
        let lookup = footers.held(&dir, looked_for.clone()).unwrap();
        assert_eq!(ids(&lookup, &looked_for), [3, 4]);
        assert_eq!(lookup.rows_read, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_copy_has_the_same_start_time_and_the_same_ids() {
        let dir = folder("copies");
        // Out of time order, as another program might write them, a row
        // group each; two stored spans share a start time.
        let spans = batch(&[
            (4, T + 40, "d"),
            (1, T + 10, "a"),
            (2, T + 20, "b"),
            (3, T + 20, "c"),
        ]);
        write_with_row_groups(&dir.join("part-a.parquet"), &spans, 1);
        let mut footers = Footers::default();
        // 1 at 20 has a stored span's ids and another's time, 9 at 10 the
        // other way round: neither is a copy. 2 and 3 share their time with
        // each other and with 8 and 1, and 1 at 10 comes after a later row.
        // A flush's spans are in time order only, not by id within a time.
        let mut looked_for: Vec<(i64, SpanKey)> = [(1, 20), (9, 10), (8, 20), (3, 20), (4, 40)]
            .into_iter()
            .chain([(2, 20), (1, 10)])
            .map(|(id, start)| ((T + start) as i64, [id; 24]))
            .collect();
        looked_for.sort_by_key(|&(time, _)| time);
        let lookup = footers.held(&dir, looked_for.clone()).unwrap();
        assert_eq!(ids(&lookup, &looked_for), [1, 3, 2, 4]);
        assert_eq!(lookup.rows_read, 4);
        assert!(lookup.every_file_read);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_without_nanosecond_start_times_is_left_out() {
        use arrow::array::{FixedSizeBinaryArray, Int64Array};
        let dir = folder("times");
        let ids = |width: usize| {
            let ids = [[1u8; 16], [2u8; 16]].map(|id| id[..width].to_vec());
            Arc::new(FixedSizeBinaryArray::try_from_iter(ids.into_iter()).unwrap())
        };
        let other = RecordBatch::try_from_iter([
            (schema::spans::col::TRACE_ID, ids(16) as ArrayRef),
            (schema::spans::col::SPAN_ID, ids(8) as ArrayRef),
            (
                Table::Spans.time_column(),
                Arc::new(Int64Array::from(vec![(T + 10) as i64, (T + 20) as i64])) as ArrayRef,
            ),
        ])
        .unwrap();
        write_with_row_groups(&dir.join("part-a.parquet"), &other, 2);
        let looked_for = suspects(&[(1, 10)]);
        let lookup = Footers::default().held(&dir, looked_for.clone()).unwrap();
        assert_eq!(lookup.held, [false]);
        assert!(
            !lookup.every_file_read,
            "the flush's file is left to compaction"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_read_is_left_out_and_the_lookup_says_so() {
        let dir = folder("unreadable");
        four_spans(&dir.join("part-a.parquet"));
        std::fs::write(dir.join("part-b.parquet"), b"not parquet").unwrap();
        let mut footers = Footers::default();
        let looked_for = suspects(&[(1, 10)]);
        let lookup = footers.held(&dir, looked_for.clone()).unwrap();
        assert_eq!(
            ids(&lookup, &looked_for),
            [1],
            "the readable file is still read"
        );
        assert!(!lookup.every_file_read);
        // Files that are not span files are not looked at.
        std::fs::rename(dir.join("part-b.parquet"), dir.join("notes.txt")).unwrap();
        let lookup = footers.held(&dir, suspects(&[(1, 10)])).unwrap();
        assert!(lookup.every_file_read);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_footer_is_read_once_and_forgotten_when_its_file_goes() {
        let dir = folder("cache");
        let a = dir.join("part-a.parquet");
        four_spans(&a);
        let mut footers = Footers::default();
        // The horizon's read of the folder fills the cache the lookup uses.
        footers.latest_start(&dir, &AHashSet::new()).unwrap();
        assert_eq!(footers.0.get(&a).map(Vec::len), Some(2));
        // The cached bounds stand for the footer: no group covers 99, so
        // the file is not opened (it would fail to open now).
        std::fs::write(&a, b"not parquet").unwrap();
        let lookup = footers.held(&dir, suspects(&[(9, 99)])).unwrap();
        assert!(lookup.every_file_read);
        std::fs::remove_file(&a).unwrap();
        footers.held(&dir, suspects(&[(9, 99)])).unwrap();
        assert!(!footers.0.contains_key(&a), "kept after its file went");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_that_changes_under_a_look_is_listed_again() {
        let dir = folder("listed");
        four_spans(&dir.join("part-a.parquet"));
        // A compaction's output appears during the first look.
        let mut seen = Vec::new();
        let found = listed(&dir, |files| {
            seen.push(files.len());
            if seen.len() == 1 {
                four_spans(&dir.join("part-b.parquet"));
            }
            Ok(files.len())
        })
        .unwrap();
        assert_eq!((seen, found), (vec![1, 2], 2));
        // A file vanished while it was read.
        let mut looks = 0;
        let found = listed(&dir, |files| {
            looks += 1;
            if looks == 1 {
                return Err(Unfinished::Vanished);
            }
            Ok(files.len())
        })
        .unwrap();
        assert_eq!((looks, found), (2, 2));
        // A folder that never settles fails the flush, which is retried.
        let mut looks = 0;
        let error = listed(&dir, |_| -> Result<(), Unfinished> {
            looks += 1;
            Err(Unfinished::Vanished)
        })
        .unwrap_err();
        assert_eq!(looks, LISTINGS);
        assert!(
            error.to_string().contains("changed under 8 listings"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_latest_start_leaves_out_known_files_and_unreadable_ones() {
        let dir = folder("latest");
        let mut footers = Footers::default();
        assert_eq!(
            footers.latest_start(&dir, &AHashSet::new()).unwrap(),
            i64::MIN
        );
        four_spans(&dir.join("part-a.parquet"));
        let later = dir.join("part-b.parquet");
        write_with_row_groups(&later, &batch(&[(5, T + 50, "e")]), 2);
        std::fs::write(dir.join("part-c.parquet"), b"not parquet").unwrap();
        let latest = footers.latest_start(&dir, &AHashSet::new()).unwrap();
        assert_eq!(latest, (T + 50) as i64);
        let known = AHashSet::from([later]);
        let latest = footers.latest_start(&dir, &known).unwrap();
        assert_eq!(latest, (T + 40) as i64);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
