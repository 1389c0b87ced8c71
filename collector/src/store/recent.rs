//! The ids of spans written in the last minutes, so that a span a client sends
//! again is dropped even when its first copy is already in an earlier file.
//!
//! A client resends a request whose acknowledgement it did not get: the
//! answer was lost, the request timed out, or the collector was killed after
//! the request reached the write-ahead log. The resent spans usually arrive
//! seconds later, after the first copy was flushed. A flush removes repeats
//! among its own rows; this index removes them across flushes, so a query
//! never sees the same span twice. What the index has forgotten, it
//! forgot a generation at a time, and the latest start time among the
//! forgotten ids is its horizon ([`RecentSpans::horizon`]): a flush looks
//! its spans that started at or before it up in the files instead
//! ([`super::older`]).
//!
//! Keys are the exact 24 bytes of (trace_id, span_id), never a hash of them:
//! two distinct spans must never be taken for one, or an acknowledged span
//! would be lost. The ids live in hash tables, each tagged with the number
//! of the flush that wrote it. A flush claims its spans' ids as it orders
//! its rows ([`RecentSpans::claim_all`]): one probe both finds an id written
//! before, or earlier in the same flush, and adds a new one. Once the file
//! is in place the flush is committed; should the write fail, its ids are
//! forgotten again, so that the retry keeps its rows.
//!
//! The index is split into [`SHARDS`] tables by a hash of the key, and a
//! flush claims its ids shard by shard. One hash of the whole key, keyed
//! at random per process so that no client can pick ids that all land in
//! one place, picks both the shard and the place in its table
//! ([`RecentSpans::hash`]). At the default bound the index is some 50 MB,
//! larger than the CPU's caches, so a probe of one table missed them once
//! a span (BENCHMARKS.md); a shard is some 200 KB, and stays in cache
//! while its ids are claimed.
//!
//! Flushes are grouped in generations; a generation covers at most a quarter
//! of the window and a quarter of the count bound, and expiring one sweeps
//! the table once. The index is bounded twice: by age (the window) and by
//! count (the oldest generations go first; the newest is always kept whole,
//! so the bound may be passed by one flush). At 32 to 64 bytes per span
//! (hash-table load), the default bound of 1,000,000 spans holds 30 to 70 MB,
//! and the keys of the largest flush, grouped by shard, 28 bytes each more
//! (5.6 MB at the default 200,000 rows).
//!
//! After a restart the index is rebuilt from the local files written within
//! the window ([`RecentSpans::load`]), uploaded ones included: with object
//! storage, an uploaded file stays local as `….shipped` for the window
//! ([`super::ship`]). The spans of the files it did not read count as
//! forgotten: the horizon of a partition folder takes in the latest start
//! time in their footers.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ahash::{AHashMap, AHashSet};
use arrow::array::{Array, FixedSizeBinaryArray};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::schema::types::SchemaDescriptor;
use schema::Table;

use super::compact;
use super::older::{self, Footers};

/// Memory one remembered id may take at worst: 24 bytes of key, 4 of
/// generation and a control byte, at the lowest load of a hash table (half).
pub const BYTES_PER_ID: usize = 64;

/// trace_id (16 bytes) then span_id (8 bytes).
pub type SpanKey = [u8; 24];

/// Tables the index is split into (see the module's documentation).
const SHARDS: usize = 256;

/// The shard of a key of hash `hash`: its top 8 bits.
fn shard(hash: u64) -> usize {
    (hash >> 56) as usize
}

/// The hash a shard's table places a key of hash `hash` by: the shard's
/// bits, the same for all its keys, moved from the top, where the table
/// takes the tag it compares before the key.
fn in_shard(hash: u64) -> u64 {
    hash.rotate_right(8)
}

/// A remembered id: its key and the number of the flush that wrote it.
type Remembered = (SpanKey, u32);

/// Where `key` goes in its shard's table, by a hash of `hasher`.
fn place(hasher: &foldhash::fast::RandomState, key: &SpanKey) -> u64 {
    in_shard(hasher.hash_one(key))
}

/// The key of one row of two id columns.
pub fn span_key(
    traces: &FixedSizeBinaryArray,
    spans: &FixedSizeBinaryArray,
    row: usize,
) -> SpanKey {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(traces.value(row));
    key[16..].copy_from_slice(spans.value(row));
    key
}

/// How long, and how many, span ids are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dedupe {
    /// How long a written span's id is remembered; zero turns the index off.
    pub window: Duration,
    /// Most ids remembered; past it the oldest generation is forgotten.
    pub max_spans: usize,
}

impl Default for Dedupe {
    /// Two minutes: past the 10-second export timeout and the retry backoff
    /// of the OpenTelemetry SDKs' exporters, several retries deep.
    fn default() -> Self {
        Dedupe {
            window: Duration::from_secs(120),
            max_spans: 1_000_000,
        }
    }
}

/// Ids of recently written spans.
#[derive(Debug)]
pub struct RecentSpans {
    limits: Dedupe,
    /// Every id remembered, with the number of the flush that wrote it, in
    /// the table of its [`shard`]: one probe however many generations live.
    ids: Vec<HashTable<Remembered>>,
    /// Oldest first.
    generations: VecDeque<Generation>,
    /// The number the next flush takes. Numbers grow by one per flush, in
    /// the order flushes begin, and wrap.
    next_flush: u32,
    /// A flush's keys grouped by shard, with their positions; kept from
    /// one flush to the next (28 bytes a key of the largest flush).
    grouped: Vec<(SpanKey, u32)>,
    /// Seeds the hash of every key ([`RecentSpans::hash`]).
    hasher: foldhash::fast::RandomState,
    /// Per partition folder, the latest start time among the ids of its
    /// spans forgotten so far. Per folder, so that a span dated far ahead by
    /// a client's clock puts only its own day's spans past the horizon.
    forgotten_until: AHashMap<PathBuf, i64>,
    /// The files [`RecentSpans::load`] read.
    loaded: AHashSet<PathBuf>,
    /// Per partition folder, the latest start time in the files it held
    /// when this index first wrote to it, less those [`RecentSpans::load`]
    /// read.
    unread: AHashMap<PathBuf, i64>,
    /// What the lookup of spans past the horizon knows of older files.
    pub(crate) footers: Footers,
}

#[derive(Debug)]
struct Generation {
    /// Its first flush: it holds the flushes from this one up to the next
    /// generation's first.
    first_flush: u32,
    started: Instant,
    /// Ids recorded into it.
    recorded: usize,
    /// Per partition folder its flushes wrote to, the latest start time
    /// among them.
    latest_start: AHashMap<PathBuf, i64>,
}

/// A flush adding its ids to the index: from [`RecentSpans::begin`], ended
/// by [`RecentSpans::commit`] or [`RecentSpans::abandon`].
#[derive(Debug)]
#[must_use = "a flush must be committed or abandoned"]
pub(crate) struct Flush {
    number: u32,
    /// Ids it added.
    claimed: usize,
}

impl RecentSpans {
    pub fn new(limits: Dedupe) -> Self {
        RecentSpans {
            limits,
            ids: (0..SHARDS).map(|_| HashTable::new()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            generations: VecDeque::new(),
            next_flush: 0,
            grouped: Vec::new(),
            forgotten_until: AHashMap::new(),
            loaded: AHashSet::new(),
            unread: AHashMap::new(),
            footers: Footers::default(),
        }
    }

    /// Remembers nothing.
    pub fn off() -> Self {
        Self::new(Dedupe {
            window: Duration::ZERO,
            max_spans: 0,
        })
    }

    pub fn limits(&self) -> Dedupe {
        self.limits
    }

    pub fn is_off(&self) -> bool {
        self.limits.window.is_zero() || self.limits.max_spans == 0
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.ids.iter().map(|table| table.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.iter().all(|table| table.is_empty())
    }

    /// The hash of `key`: all its 24 bytes, through foldhash seeded at
    /// random per process. Its top 8 bits pick the key's shard
    /// ([`shard`]), the rest its place in the shard's table ([`in_shard`]).
    fn hash(&self, key: &SpanKey) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn contains(&self, key: &SpanKey) -> bool {
        let hash = self.hash(key);
        self.ids[shard(hash)]
            .find(in_shard(hash), |(id, _)| id == key)
            .is_some()
    }

    /// Remembers the ids of spans that are now in a file of the partition
    /// folder `dir`; the latest of them started at `latest_start`.
    pub fn record(
        &mut self,
        keys: impl IntoIterator<Item = SpanKey>,
        dir: &Path,
        latest_start: i64,
        now: Instant,
    ) {
        if self.is_off() {
            return;
        }
        let mut flush = self.begin(now);
        for key in keys {
            let hash = self.hash(&key);
            let hasher = &self.hasher;
            let table = &mut self.ids[shard(hash)];
            let rehash = |(id, _): &Remembered| place(hasher, id);
            match table.entry(in_shard(hash), |(id, _)| *id == key, rehash) {
                Entry::Occupied(mut known) => known.get_mut().1 = flush.number,
                Entry::Vacant(vacant) => {
                    vacant.insert((key, flush.number));
                }
            }
            flush.claimed += 1;
        }
        self.commit(flush, dir, latest_start, now);
    }

    /// Starts a flush: forgets what the window has passed, and numbers it.
    pub(crate) fn begin(&mut self, now: Instant) -> Flush {
        self.expire(now);
        let number = self.next_flush;
        self.next_flush = self.next_flush.wrapping_add(1);
        Flush { number, claimed: 0 }
    }

    /// Sets `new[i]` if `keys[i]` is new, and adds it for `flush`; clears
    /// it if a file has the key already, or an earlier key of `keys` or of
    /// the flush is the same (a repeat within the flush). `new` is as long
    /// as `keys`.
    pub(crate) fn claim_all(&mut self, flush: &mut Flush, keys: &[SpanKey], new: &mut [bool]) {
        assert_eq!(keys.len(), new.len(), "a flag per key");
        // The keys' positions grouped by shard, in arrival order within a
        // shard, so that the first copy of a key is the one found new.
        let shards: Vec<u8> = keys.iter().map(|key| shard(self.hash(key)) as u8).collect();
        let mut starts = [0usize; SHARDS];
        for &s in &shards {
            starts[usize::from(s)] += 1;
        }
        let mut next = 0;
        for start in &mut starts {
            (*start, next) = (next, next + *start);
        }
        // The keys themselves are copied into their groups, not only their
        // positions: read in shard order from a flush's keys (megabytes),
        // each key was a cache miss, half of the claims' time.
        let grouped = &mut self.grouped;
        grouped.clear();
        grouped.resize(keys.len(), ([0; 24], 0));
        for (at, (key, &s)) in keys.iter().zip(&shards).enumerate() {
            let slot = &mut starts[usize::from(s)];
            // A flush holds far fewer than 4 billion rows.
            grouped[*slot] = (*key, at as u32);
            *slot += 1;
        }
        // Each start is now its shard's end. The keys' hashes are computed
        // again here rather than carried in `grouped`, which would take 8
        // more bytes a key.
        let hasher = &self.hasher;
        let rehash = |(id, _): &Remembered| place(hasher, id);
        let mut from = 0;
        for (table, end) in self.ids.iter_mut().zip(starts) {
            for &(key, at) in &grouped[from..end] {
                let spot = place(hasher, &key);
                new[at as usize] = match table.entry(spot, |(id, _)| *id == key, rehash) {
                    Entry::Occupied(_) => false,
                    Entry::Vacant(vacant) => {
                        vacant.insert((key, flush.number));
                        flush.claimed += 1;
                        true
                    }
                };
            }
            from = end;
        }
    }

    /// The flush's file is in place in the partition folder `dir`: its ids
    /// stay for the window. The latest of them started at `latest_start`;
    /// once they are forgotten, spans that started no later are looked up
    /// in files ([`Self::horizon`]).
    pub(crate) fn commit(&mut self, flush: Flush, dir: &Path, latest_start: i64, now: Instant) {
        if flush.claimed == 0 {
            return;
        }
        let quarter = self.limits.window / 4;
        let room = self.limits.max_spans.div_ceil(4);
        let open = self.generations.back().is_some_and(|newest| {
            now.saturating_duration_since(newest.started) < quarter && newest.recorded < room
        });
        if !open {
            self.generations.push_back(Generation {
                first_flush: flush.number,
                started: now,
                recorded: 0,
                latest_start: AHashMap::new(),
            });
        }
        let newest = self.generations.back_mut().expect("a generation is open");
        newest.recorded += flush.claimed;
        let latest = newest
            .latest_start
            .entry(dir.to_path_buf())
            .or_insert(i64::MIN);
        *latest = (*latest).max(latest_start);
        while self.len() > self.limits.max_spans && self.generations.len() > 1 {
            self.forget_oldest();
            self.forget_before(self.generations.front().map(|g| g.first_flush));
        }
    }

    /// The flush's file was not written: its ids are forgotten, so that a
    /// retry of it keeps its rows.
    pub(crate) fn abandon(&mut self, flush: Flush) {
        if flush.claimed > 0 {
            for table in &mut self.ids {
                table.retain(|(_, number)| *number != flush.number);
            }
        }
    }

    /// Forgets generations whose newest id is older than the window.
    fn expire(&mut self, now: Instant) {
        let span = self.limits.window / 4;
        let before = self.generations.len();
        while self.generations.front().is_some_and(|oldest| {
            now.saturating_duration_since(oldest.started + span) >= self.limits.window
        }) {
            self.forget_oldest();
        }
        if self.generations.len() < before {
            self.forget_before(self.generations.front().map(|g| g.first_flush));
        }
    }

    /// Takes the oldest generation out (its ids go in [`Self::forget_before`]).
    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.generations.pop_front() {
            for (dir, start) in oldest.latest_start {
                let latest = self.forgotten_until.entry(dir).or_insert(i64::MIN);
                *latest = (*latest).max(start);
            }
        }
    }

    /// The start time at or before which a span's copy may be stored with
    /// its id not in the index, for a flush to the partition folder `dir`:
    /// the latest start among the folder's ids forgotten, and among the
    /// spans of the files the folder held when this index first wrote to it
    /// (read from their footers then), less those [`Self::load`] read. A span
    /// that started later is stored only if the index has its id
    /// ([`super::older`]).
    pub(crate) fn horizon(&mut self, dir: &Path) -> Result<i64, super::WriteError> {
        let unread = match self.unread.get(dir) {
            Some(&unread) => unread,
            None => {
                let unread = self.footers.latest_start(dir, &self.loaded)?;
                self.unread.insert(dir.to_path_buf(), unread);
                unread
            }
        };
        let forgotten = self.forgotten_until.get(dir).copied();
        Ok(forgotten.unwrap_or(i64::MIN).max(unread))
    }

    /// Drops every id of a flush older than `oldest` (all, for `None`).
    fn forget_before(&mut self, oldest: Option<u32>) {
        match oldest {
            // Numbers grow by one per flush; `wrapping_sub` keeps the order
            // right across a wrap of u32 (four billion flushes).
            Some(oldest) => {
                let newest = self.next_flush.wrapping_sub(1);
                let live = newest.wrapping_sub(oldest);
                for table in &mut self.ids {
                    table.retain(|(_, number)| newest.wrapping_sub(*number) <= live);
                }
            }
            None => self.ids.iter_mut().for_each(|table| table.clear()),
        }
    }

    /// Reads back the ids of the span files under `root` written within the
    /// window, newest last, so a restarted collector still knows them.
    /// Returns how many files it read; a file it cannot read is skipped
    /// with a message (it is not this index's job to judge files).
    pub fn load(&mut self, root: &Path) -> usize {
        if self.is_off() {
            return 0;
        }
        let now = SystemTime::now();
        let mut recent: Vec<(SystemTime, PathBuf)> = compact::partitions(root)
            .into_iter()
            .filter(|(table, _)| *table == Table::Spans)
            // Uploaded files are kept for the window for this (see `ship`).
            .flat_map(|(_, dir)| super::older::span_files(&dir))
            .filter_map(|path| {
                let modified = path.metadata().and_then(|m| m.modified()).ok()?;
                let age = now.duration_since(modified).unwrap_or_default();
                (age < self.limits.window).then_some((modified, path))
            })
            .collect();
        // The newest files, up to the count bound (a compacted file is new
        // and may be large), then recorded oldest first.
        recent.sort_by(|a, b| b.cmp(a));
        let mut sets = Vec::new();
        let mut ids = 0;
        for (_, path) in &recent {
            if ids >= self.limits.max_spans {
                break;
            }
            match read_keys(path) {
                Ok((keys, latest_start)) => {
                    ids += keys.len();
                    sets.push((keys, path, latest_start));
                    self.loaded.insert(path.clone());
                }
                Err(e) => eprintln!(
                    "collector: cannot read span ids of {} to drop repeats of them: {e}",
                    path.display()
                ),
            }
        }
        let read = sets.len();
        let started = Instant::now();
        for (keys, path, latest_start) in sets.into_iter().rev() {
            let dir = path.parent().unwrap_or(root);
            self.record(keys, dir, latest_start, started);
        }
        read
    }
}

/// The ids of a span file's spans, and the latest start time among them.
fn read_keys(path: &Path) -> Result<(AHashSet<SpanKey>, i64), Box<dyn std::error::Error>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?;
    let latest_start = older::latest_start_of(builder.metadata());
    let mut keys = AHashSet::new();
    visit_keys_of(builder, &mut |key| {
        keys.insert(key);
    })?;
    Ok((keys, latest_start))
}

/// Calls `visit` with the (trace_id, span_id) of every row `builder`
/// reads, reading only those two columns, a batch at a time.
fn visit_keys_of(
    builder: ParquetRecordBatchReaderBuilder<std::fs::File>,
    visit: &mut dyn FnMut(SpanKey),
) -> Result<(), Box<dyn std::error::Error>> {
    let ids = [schema::spans::col::TRACE_ID, schema::spans::col::SPAN_ID];
    let mask = top_level(builder.parquet_schema(), &ids);
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let (traces, spans) = id_columns(&batch)?;
        for row in 0..batch.num_rows() {
            visit(span_key(traces, spans, row));
        }
    }
    Ok(())
}

/// The top-level columns of `schema` named in `names`: links have trace
/// and span ids of their own, which a choice by name alone would read too.
pub(super) fn top_level(schema: &SchemaDescriptor, names: &[&str]) -> ProjectionMask {
    let leaves = (0..schema.num_columns())
        .filter(
            |&i| matches!(schema.column(i).path().parts(), [name] if names.contains(&name.as_str())),
        )
        .collect::<Vec<_>>();
    ProjectionMask::leaves(schema, leaves)
}

/// The trace id and span id columns of a batch of spans, converted or read
/// from a span file.
pub(super) fn id_columns(
    batch: &arrow::record_batch::RecordBatch,
) -> Result<(&FixedSizeBinaryArray, &FixedSizeBinaryArray), arrow::error::ArrowError> {
    let column = |name: &str, width: i32| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
            .filter(|c| c.value_length() == width)
            .ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!(
                    "no {name} column of {width}-byte ids"
                ))
            })
    };
    Ok((
        column(schema::spans::col::TRACE_ID, 16)?,
        column(schema::spans::col::SPAN_ID, 8)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(range: std::ops::Range<u8>) -> AHashSet<SpanKey> {
        range.map(|i| [i; 24]).collect()
    }

    /// A partition folder, for tests that do not read it.
    fn part() -> &'static Path {
        Path::new("part")
    }

    const LIMITS: Dedupe = Dedupe {
        window: Duration::from_secs(120),
        max_spans: 1000,
    };

    #[test]
    fn ids_are_remembered_for_the_window_then_forgotten() {
        let t0 = Instant::now();
        let mut recent = RecentSpans::new(LIMITS);
        recent.record(keys(0..10), part(), 0, t0);
        assert!(recent.contains(&[3; 24]));
        assert!(!recent.contains(&[10; 24]));
        // Still within the window (the generation spans the first 30 s).
        recent.record(keys(10..20), part(), 0, t0 + Duration::from_secs(140));
        assert!(recent.contains(&[3; 24]), "forgotten inside the window");
        assert_eq!(recent.len(), 20);
        // Past the window from the end of the first generation's quarter.
        recent.record(keys(20..21), part(), 0, t0 + Duration::from_secs(151));
        assert!(!recent.contains(&[3; 24]), "kept past the window");
        assert!(recent.contains(&[15; 24]) && recent.contains(&[20; 24]));
        assert_eq!(recent.len(), 11);
    }

    #[test]
    fn flushes_within_a_quarter_share_one_generation() {
        let t0 = Instant::now();
        let mut recent = RecentSpans::new(LIMITS);
        for (i, start) in (0..100).step_by(10).enumerate() {
            recent.record(
                keys(start..start + 10),
                part(),
                0,
                t0 + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(recent.generations.len(), 1);
        assert_eq!(recent.len(), 100);
        recent.record(keys(100..110), part(), 0, t0 + Duration::from_secs(31));
        assert_eq!(recent.generations.len(), 2);
        assert_eq!(recent.len(), 110);
    }

    #[test]
    fn the_count_bound_drops_the_oldest_generations_but_never_the_newest() {
        let t0 = Instant::now();
        let mut recent = RecentSpans::new(Dedupe {
            max_spans: 25,
            ..LIMITS
        });
        recent.record(keys(0..10), part(), 500, t0);
        recent.record(keys(10..20), part(), 300, t0 + Duration::from_secs(31));
        recent.record(keys(20..30), part(), 700, t0 + Duration::from_secs(62));
        assert_eq!(recent.len(), 20);
        assert!(!recent.contains(&[0; 24]) && recent.contains(&[10; 24]));
        recent.record(keys(30..70), part(), 900, t0 + Duration::from_secs(93));
        assert_eq!(recent.len(), 40, "the newest generation is kept whole");
        assert!(recent.contains(&[69; 24]) && !recent.contains(&[29; 24]));
    }

    #[test]
    fn the_horizon_is_the_latest_start_forgotten_in_its_folder() {
        // Files not read by the index count too: see the writer's
        // `spans_past_the_horizon_are_looked_up_in_the_files_that_may_hold_them`.
        let t0 = Instant::now();
        let (dir, other) = (Path::new("day"), part());
        let mut recent = RecentSpans::new(Dedupe {
            max_spans: 25,
            ..LIMITS
        });
        assert_eq!(recent.horizon(dir).unwrap(), i64::MIN, "nothing forgotten");
        recent.record(keys(0..10), dir, 500, t0);
        // Dated far ahead, in another folder.
        recent.record(keys(10..20), other, 9_999, t0 + Duration::from_secs(31));
        assert_eq!(recent.horizon(dir).unwrap(), i64::MIN);
        // Forgets the first generation, then the second.
        recent.record(keys(20..30), dir, 800, t0 + Duration::from_secs(62));
        assert_eq!(recent.horizon(dir).unwrap(), 500);
        recent.record(keys(30..40), dir, 100, t0 + Duration::from_secs(93));
        assert_eq!(recent.horizon(dir).unwrap(), 500);
        assert_eq!(recent.horizon(other).unwrap(), 9_999);
        // The window forgets the rest but the newest; the latest start
        // forgotten only grows.
        let later = t0 + Duration::from_secs(93) + LIMITS.window;
        let flush = recent.begin(later);
        recent.abandon(flush);
        assert_eq!(recent.len(), 10);
        assert_eq!(recent.horizon(dir).unwrap(), 800);
        let flush = recent.begin(later + LIMITS.window);
        recent.abandon(flush);
        assert!(recent.is_empty());
        assert_eq!(recent.horizon(dir).unwrap(), 800);
    }

    #[test]
    fn a_busy_quarter_opens_new_generations_so_the_count_bound_holds() {
        let t0 = Instant::now();
        let mut recent = RecentSpans::new(Dedupe {
            max_spans: 40,
            ..LIMITS
        });
        // Ten flushes of ten spans within one second: four per generation at most.
        for start in (0..100).step_by(10) {
            recent.record(keys(start..start + 10), part(), 0, t0);
        }
        assert!(recent.len() <= 40, "{} ids kept", recent.len());
        assert!(recent.contains(&[99; 24]) && !recent.contains(&[0; 24]));
    }

    #[test]
    fn generation_numbers_may_wrap() {
        let t0 = Instant::now();
        let mut recent = RecentSpans::new(Dedupe {
            max_spans: 25,
            ..LIMITS
        });
        recent.next_flush = u32::MAX - 1;
        for (i, start) in (0..40).step_by(10).enumerate() {
            recent.record(
                keys(start..start + 10),
                part(),
                0,
                t0 + Duration::from_secs(31 * i as u64),
            );
        }
        // Flushes (and generations) u32::MAX - 1, u32::MAX, 0 and 1; the bound keeps the last two.
        assert_eq!(recent.len(), 20);
        assert!(recent.contains(&[20; 24]) && recent.contains(&[39; 24]));
        assert!(!recent.contains(&[19; 24]));
    }

    /// [`RecentSpans::claim_all`] of one key.
    fn claim(recent: &mut RecentSpans, flush: &mut Flush, key: SpanKey) -> bool {
        let mut new = [false];
        recent.claim_all(flush, &[key], &mut new);
        new[0]
    }

    #[test]
    fn a_flush_claims_the_first_copy_of_each_new_id_whatever_its_shard() {
        // Ids that count up, as some tracers' do, each sent up to three
        // times in a shuffled order, after a flush recorded some of them.
        let key = |n: u64| {
            let mut key = [0u8; 24];
            key[8..16].copy_from_slice(&n.to_le_bytes());
            key[16..].copy_from_slice(&(n * 3).to_le_bytes());
            key
        };
        let mut state = 0x9e37_79b9_u64;
        let keys: Vec<SpanKey> = (0..30_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                key((state >> 33) % 10_000)
            })
            .collect();
        let t0 = Instant::now();
        let mut recent = RecentSpans::new(Dedupe {
            max_spans: 100_000,
            ..LIMITS
        });
        recent.record((0..10_000).step_by(7).map(key), part(), 0, t0);
        let mut seen: AHashSet<SpanKey> = (0..10_000).step_by(7).map(key).collect();
        let expected: Vec<bool> = keys.iter().map(|k| seen.insert(*k)).collect();
        let mut flush = recent.begin(t0);
        let mut new = vec![false; keys.len()];
        recent.claim_all(&mut flush, &keys, &mut new);
        assert_eq!(new, expected);
        assert!(new.iter().any(|&n| n) && new.iter().any(|&n| !n));
        assert_eq!(flush.claimed, expected.iter().filter(|&&n| n).count());
        recent.commit(flush, part(), 0, t0);
        assert_eq!(recent.len(), seen.len());
        assert!(seen.iter().all(|key| recent.contains(key)));
        assert!(!recent.contains(&key(10_000)));
        // Ids that differ only in the high half of the trace id each have
        // a hash of their own, as random ones do: all 24 bytes are hashed.
        let high = |n: u64| {
            let mut key = [0u8; 24];
            key[..8].copy_from_slice(&n.to_le_bytes());
            key
        };
        let highs: Vec<SpanKey> = (1..2_000).map(high).collect();
        let hashes: AHashSet<u64> = highs.iter().map(|key| recent.hash(key)).collect();
        assert_eq!(hashes.len(), highs.len());
        let mut flush = recent.begin(t0);
        let mut new = vec![false; highs.len()];
        recent.claim_all(&mut flush, &highs, &mut new);
        assert!(new.iter().all(|&n| n));
        recent.commit(flush, part(), 0, t0);
        assert!(highs.iter().all(|key| recent.contains(key)));
        assert!(!recent.contains(&high(2_000)));
        // Counting ids spread over the shards.
        let mut per_shard = [0usize; SHARDS];
        (0..10_000).for_each(|n| per_shard[shard(recent.hash(&key(n)))] += 1);
        assert!(
            per_shard.iter().all(|&n| (10..=80).contains(&n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn a_flush_claims_new_ids_once_and_an_abandoned_one_gives_them_back() {
        let t0 = Instant::now();
        let mut recent = RecentSpans::new(LIMITS);
        recent.record(keys(0..10), part(), 0, t0);
        let mut flush = recent.begin(t0);
        assert!(
            !claim(&mut recent, &mut flush, [3; 24]),
            "written by an earlier flush"
        );
        assert!(claim(&mut recent, &mut flush, [10; 24]));
        assert!(
            !claim(&mut recent, &mut flush, [10; 24]),
            "a repeat within the flush"
        );
        assert!(claim(&mut recent, &mut flush, [11; 24]));
        // The file could not be written: the retry keeps its rows.
        recent.abandon(flush);
        assert_eq!(recent.len(), 10);
        assert!(!recent.contains(&[10; 24]) && recent.contains(&[3; 24]));
        let mut retry = recent.begin(t0);
        assert!(claim(&mut recent, &mut retry, [10; 24]));
        assert!(claim(&mut recent, &mut retry, [11; 24]));
        recent.commit(retry, part(), 0, t0);
        assert_eq!(recent.len(), 12);
        // Committed, they are repeats for the next flush, and leave with
        // their generation.
        let mut next = recent.begin(t0 + Duration::from_secs(1));
        assert!(!claim(&mut recent, &mut next, [11; 24]));
        recent.commit(next, part(), 0, t0 + Duration::from_secs(1));
        recent.record(keys(20..21), part(), 0, t0 + Duration::from_secs(151));
        assert!(!recent.contains(&[11; 24]) && !recent.contains(&[3; 24]));
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn files_that_cannot_be_read_back_are_skipped() {
        let root =
            std::env::temp_dir().join(format!("loadlens-recent-load-{}", std::process::id()));
        let dir = root
            .join(Table::Spans.name())
            .join("date=2026-12-04/run_id=r");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("part-1.parquet"), b"not parquet").unwrap();
        let mut recent = RecentSpans::new(LIMITS);
        assert_eq!(
            recent.load(&root),
            0,
            "an unreadable file counts as no rows"
        );
        assert!(recent.is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let mut recent = RecentSpans::new(Dedupe {
            window: Duration::ZERO,
            ..LIMITS
        });
        recent.record(keys(0..10), part(), 0, Instant::now());
        assert!(recent.is_empty() && !recent.contains(&[1; 24]));
        assert!(RecentSpans::off().is_off());
    }
}
