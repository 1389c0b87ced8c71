//! The write-ahead log: every accepted OTLP request is appended and fsynced
//! before it is acknowledged, and replayed after a crash.
//!
//! ```text
//!  <data>/_wal/wal-00000000000000000007.log   segments, appended in order
//!  <data>/_wal/spare-00000000000000000005.log  closed segments kept for reuse
//!  record = magic "LLW2" · signal (u8) · length (u32 LE) · crc32 (u32 LE) · OTLP protobuf
//! ```
//! A flush rotates to a new segment, writes every pending row to Parquet, then
//! retires the older segments: up to [`SPARES`] are renamed to spares, the
//! rest deleted. A new segment is a spare renamed, when there is one, and is
//! written over from its start. Writing over blocks the file already has
//! spares the file system allocating them and the page cache setting up
//! its pages again, which with fresh files was about a third of the log's
//! cost (BENCHMARKS.md).
//!
//! With fsync on, on Linux, a segment is written with O_DIRECT where the
//! file system allows it ([`Direct`]): records go from an aligned buffer
//! straight to the disk in whole 4 KiB blocks, the last, partial one
//! written again with the next commit, so the page cache neither copies
//! them nor writes them back at `fdatasync`. That cost about a third less
//! CPU per byte logged (`benches/wal_io.py`, BENCHMARKS.md). The bytes past
//! the last record of a block are zeros, which replay tells apart as the
//! end; the format is the same either way.
//!
//! A record's CRC covers the segment's number, then the payload, so what a
//! reused file still holds from its earlier life fails the check and ends
//! the replay, just as a torn record at the end of a segment (a crash
//! mid-append, never acknowledged) does. Segments of the first format
//! (magic "LLW1", CRC of the payload alone) still replay; they are never
//! reused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Which OTLP export a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces = 1,
    Metrics = 2,
}

impl Signal {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Signal::Traces),
            2 => Some(Signal::Metrics),
            _ => None,
        }
    }
}

const MAGIC: &[u8; 4] = b"LLW2";
/// The first format, whose CRC covers the payload alone.
const MAGIC_V1: &[u8; 4] = b"LLW1";
const HEADER: usize = 4 + 1 + 4 + 4;

/// Closed segments kept for reuse, at most. A collector has one segment
/// open and one being flushed, so two spares let every new segment be a
/// reused one.
pub const SPARES: usize = 2;

/// Records smaller than this are gathered in memory and written with the
/// next ones; larger ones (a generator's batch is about 100 KB) go straight
/// to the file, header and payload in one write, as copying them first
/// would cost more than the write saves.
const BUFFER: usize = 64 * 1024;

/// Records larger than this are refused at append and treated as corruption at replay.
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Folder of the WAL below the store root; the leading underscore keeps it out
/// of every table glob.
pub const WAL_DIR: &str = "_wal";

#[derive(Debug, thiserror::Error)]
#[error("write-ahead log {path}: {source}")]
pub struct WalError {
    pub path: PathBuf,
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError {
        path: path.to_path_buf(),
        source,
    }
}

/// The active segment and its folder.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    sequence: u64,
    path: PathBuf,
    file: Sink,
    sync: bool,
    /// A write to this segment failed part-way. Replay stops at the torn
    /// record, so nothing may follow it here: the next append moves to a
    /// new segment, after committing the records before the tear.
    torn: bool,
}

/// A closed segment found at start, to replay.
#[derive(Debug, Clone)]
pub struct Segment {
    pub sequence: u64,
    pub path: PathBuf,
}

impl Wal {
    /// Opens the WAL folder: returns the segments left by the last process (to
    /// replay) and a fresh active segment numbered after them.
    pub fn open(root: &Path, sync: bool) -> Result<(Wal, Vec<Segment>), WalError> {
        let dir = root.join(WAL_DIR);
        fs::create_dir_all(&dir).map_err(err(&dir))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(&dir).map_err(err(&dir))? {
            let path = entry.map_err(err(&dir))?.path();
            let sequence = segment_sequence(&path);
            if let Some(sequence) = sequence {
                segments.push(Segment { sequence, path });
            }
        }
        segments.sort_by_key(|s| s.sequence);
        // Numbers go on after the spares' too: a spare holds records of its
        // own number and lower, which must never pass for a new segment's.
        let next = segments
            .iter()
            .map(|s| s.sequence)
            .chain(spares(&dir)?.into_iter().map(|(sequence, _)| sequence))
            .max()
            .map_or(1, |last| last + 1);
        let wal = Wal::create(dir, next, sync)?;
        Ok((wal, segments))
    }

    /// The segment numbered `sequence`: a spare renamed if there is one,
    /// else a new file.
    fn create(dir: PathBuf, sequence: u64, sync: bool) -> Result<Wal, WalError> {
        let path = dir.join(format!("wal-{sequence:020}.log"));
        // Written over from the start; what lies past the new records is
        // the file's earlier life, which replay tells apart.
        let reused = reuse_spare(&dir, &path)?;
        let open = |direct: bool| {
            let mut options = OpenOptions::new();
            options.write(true);
            if !reused {
                options.create(true).truncate(true);
            }
            if direct {
                direct_io(&mut options);
            }
            options.open(&path)
        };
        // Without fsync, writes that wait for the disk would only slow the
        // log down: it stays in the page cache.
        let direct = match sync && DIRECT_IO && !DIRECT_REFUSED.load(Ordering::Relaxed) {
            true => match open(true) {
                Ok(file) => Some(file),
                // The file system has no O_DIRECT (EINVAL).
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => None,
                Err(e) => return Err(err(&path)(e)),
            },
            false => None,
        };
        let file = match direct {
            Some(file) => Sink::Direct(Direct::new(file)),
            None => Sink::Buffered(BufWriter::with_capacity(
                BUFFER,
                open(false).map_err(err(&path))?,
            )),
        };
        sync_dir(&dir)?;
        Ok(Wal {
            dir,
            sequence,
            path,
            file,
            sync,
            torn: false,
        })
    }

    /// Whether the active segment is written with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        matches!(self.file, Sink::Direct(_))
    }

    /// The active segment's number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Appends records without syncing; call [`Wal::commit`] before acknowledging.
    pub fn append(&mut self, signal: Signal, payload: &[u8]) -> Result<(), WalError> {
        if payload.len() > MAX_RECORD {
            return Err(WalError {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "record too large"),
            });
        }
        if self.torn {
            self.rotate()?;
        }
        // After any rotation: the CRC covers the number of the segment
        // the record goes to.
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(MAGIC);
        header[4] = signal as u8;
        header[5..9].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[9..13].copy_from_slice(&checksum(self.sequence, payload).to_le_bytes());
        match &mut self.file {
            // One write for header and payload: a large record goes to the
            // file in a single system call, a small one into the buffer.
            Sink::Buffered(file) => write_all_vectored(file, &header, payload).map_err(|e| {
                self.torn = true;
                err(&self.path)(e)
            }),
            Sink::Direct(direct) => {
                direct.push(&header);
                direct.push(payload);
                Ok(())
            }
        }
    }

    /// Makes every appended record durable (fdatasync unless sync is off).
    /// After a failure the segment counts as torn: records that did not
    /// reach the disk would end its replay, so no later record may follow
    /// them here, or it would be acknowledged and then lost.
    pub fn commit(&mut self) -> Result<(), WalError> {
        let sync = self.sync;
        if let Sink::Direct(direct) = &mut self.file {
            match direct.write() {
                // The file system took O_DIRECT at open but refuses these
                // writes (a block size past 4 KiB, say): the page cache,
                // from here on and for later segments.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    DIRECT_REFUSED.store(true, Ordering::Relaxed);
                    if let Err(e) = self.fall_back_to_buffered() {
                        self.torn = true;
                        return Err(err(&self.path)(e));
                    }
                }
                Err(e) => {
                    self.torn = true;
                    return Err(err(&self.path)(e));
                }
                Ok(()) => {}
            }
        }
        let result = match &mut self.file {
            Sink::Buffered(file) => file.flush().map(|()| file.get_ref()),
            Sink::Direct(direct) => Ok(&direct.file),
        }
        .and_then(|file| if sync { file.sync_data() } else { Ok(()) });
        if result.is_err() {
            self.torn = true;
        }
        result.map_err(err(&self.path))
    }

    /// Goes on writing the active segment through the page cache: the
    /// bytes held for the next direct write are written buffered, from the
    /// same offset, and records follow them.
    fn fall_back_to_buffered(&mut self) -> io::Result<()> {
        let Sink::Direct(direct) = &self.file else {
            return Ok(());
        };
        let mut file = OpenOptions::new().write(true).open(&self.path)?;
        file.seek(SeekFrom::Start(direct.at))?;
        let mut file = BufWriter::with_capacity(BUFFER, file);
        file.write_all(&direct.buf[direct.start..direct.start + direct.len])?;
        self.file = Sink::Buffered(file);
        Ok(())
    }

    /// Closes the active segment and starts the next; returns the closed one's number.
    pub fn rotate(&mut self) -> Result<u64, WalError> {
        self.commit()?;
        let closed = self.sequence;
        *self = Wal::create(self.dir.clone(), closed + 1, self.sync)?;
        Ok(closed)
    }

    /// Retires every closed segment numbered `upto` or lower: their rows
    /// are in Parquet files. Up to [`SPARES`] become spares, the rest are
    /// deleted.
    pub fn retire_upto(dir: &Path, upto: u64) -> Result<(), WalError> {
        let mut spare_room = SPARES.saturating_sub(spares(dir)?.len());
        for entry in fs::read_dir(dir).map_err(err(dir))? {
            let path = entry.map_err(err(dir))?.path();
            let Some(sequence) = segment_sequence(&path).filter(|s| *s <= upto) else {
                continue;
            };
            if spare_room > 0 && of_this_format(&path)? {
                let spare = dir.join(format!("spare-{sequence:020}.log"));
                fs::rename(&path, &spare).map_err(err(&path))?;
                spare_room -= 1;
            } else {
                fs::remove_file(&path).map_err(err(&path))?;
            }
        }
        sync_dir(dir)
    }

    /// Deletes the spares, for a clean stop: they only save time, and a
    /// stopped collector should leave no log behind.
    pub fn remove_spares(dir: &Path) -> Result<(), WalError> {
        for (_, path) in spares(dir)? {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(&path)(e)),
                _ => {}
            }
        }
        sync_dir(dir)
    }

    /// Empties the active segment if no record was appended to it, so that a
    /// reused file's earlier life is not left as a log after a clean stop.
    pub fn clear_if_unused(&mut self, appended: bool) -> Result<(), WalError> {
        if appended {
            return Ok(());
        }
        let file = match &mut self.file {
            Sink::Buffered(file) => {
                file.flush().map_err(err(&self.path))?;
                file.get_ref()
            }
            Sink::Direct(direct) => &direct.file,
        };
        file.set_len(0).map_err(err(&self.path))?;
        file.sync_data().map_err(err(&self.path))
    }

    /// The lowest segment still in `dir` (`None` when it holds none): rows
    /// from older segments are all in Parquet files.
    pub fn lowest_segment(dir: &Path) -> Result<Option<u64>, WalError> {
        let mut lowest = None;
        for entry in fs::read_dir(dir).map_err(err(dir))? {
            if let Some(sequence) = segment_sequence(&entry.map_err(err(dir))?.path()) {
                lowest = Some(lowest.map_or(sequence, |l: u64| l.min(sequence)));
            }
        }
        Ok(lowest)
    }

    /// The WAL folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[cfg(test)]
    fn segment(&self) -> Segment {
        Segment {
            sequence: self.sequence,
            path: self.path.clone(),
        }
    }
}

/// What replaying one segment found.
#[derive(Debug, Default)]
pub struct Replayed {
    pub records: Vec<(Signal, Vec<u8>)>,
    /// Bytes at the end that did not form a whole, valid record.
    pub torn_bytes: u64,
}

/// Reads a segment's records, stopping at the first torn or corrupt one.
pub fn read_segment(segment: &Segment) -> Result<Replayed, WalError> {
    let path = &segment.path;
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(err(path))?;
    Ok(parse_segment(&data, segment.sequence))
}

/// The records of the bytes of segment `sequence`, up to the first torn or
/// corrupt one, or the first left from the file's earlier life. The first
/// record's magic sets the format; a record of the other ends the replay.
pub fn parse_segment(data: &[u8], sequence: u64) -> Replayed {
    let mut out = Replayed::default();
    let mut at = 0usize;
    let format = data.get(..4);
    while at < data.len() {
        let Some(header) = data.get(at..at + HEADER) else {
            break;
        };
        let len = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
        let signal = Signal::from_byte(header[4]);
        let payload = data.get(at + HEADER..at + HEADER + len);
        let expected = |payload: &[u8]| match format {
            Some(magic) if magic == MAGIC => checksum(sequence, payload),
            _ => crc32fast::hash(payload),
        };
        let known = matches!(format, Some(m) if m == MAGIC || m == MAGIC_V1);
        match (known && Some(&header[..4]) == format, signal, payload) {
            (true, Some(signal), Some(payload))
                if len <= MAX_RECORD && expected(payload) == crc =>
            {
                out.records.push((signal, payload.to_vec()));
                at += HEADER + len;
            }
            _ => break,
        }
    }
    out.torn_bytes = (data.len() - at) as u64;
    out
}

/// A record's CRC: the segment's number, then the payload.
fn checksum(sequence: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&sequence.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The spares in `dir`, by number.
fn spares(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut spares = Vec::new();
    for entry in fs::read_dir(dir).map_err(err(dir))? {
        let path = entry.map_err(err(dir))?.path();
        if let Some(sequence) = numbered(&path, "spare-") {
            spares.push((sequence, path));
        }
    }
    Ok(spares)
}

/// Renames a spare to `path`; false when there is none to take.
fn reuse_spare(dir: &Path, path: &Path) -> Result<bool, WalError> {
    for (_, spare) in spares(dir)? {
        match fs::rename(&spare, path) {
            Ok(()) => return Ok(true),
            // Taken or removed meanwhile: try the next.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&spare)(e)),
        }
    }
    Ok(false)
}

/// Whether a segment is of this format, and so may be reused: stale records
/// of the first format would pass their check in a reused file.
fn of_this_format(path: &Path) -> Result<bool, WalError> {
    let mut magic = [0u8; 4];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) => Ok(&magic == MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(err(path)(e)),
    }
}

/// The number of a segment file named `wal-<number>.log`.
fn segment_sequence(path: &Path) -> Option<u64> {
    numbered(path, "wal-")
}

/// The number of a file named `<prefix><number>.log`.
fn numbered(path: &Path, prefix: &str) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(prefix)?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// How records reach the active segment.
#[derive(Debug)]
enum Sink {
    /// Through the page cache: small records gathered in the buffer, large
    /// ones written straight from the request.
    Buffered(BufWriter<File>),
    /// With O_DIRECT.
    Direct(Direct),
}

/// Whether segments are opened with O_DIRECT when the log is fsynced.
const DIRECT_IO: bool = cfg!(target_os = "linux");

/// Set once a direct write was refused: later segments are buffered.
static DIRECT_REFUSED: AtomicBool = AtomicBool::new(false);

#[cfg(target_os = "linux")]
fn direct_io(options: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(libc::O_DIRECT);
}

#[cfg(not(target_os = "linux"))]
fn direct_io(_: &mut OpenOptions) {}

/// O_DIRECT writes go to the disk in whole blocks of this size, from memory
/// aligned to it, at file offsets that are multiples of it.
const BLOCK: usize = 4096;

/// An aligned buffer past this size is given back after a commit: one
/// large request should not keep its memory for the segment's life.
const DIRECT_KEEP: usize = 8 * 1024 * 1024;

/// A segment written with O_DIRECT. The buffer holds the segment's bytes
/// from `at` on: the partial block the last commit ended in, then the
/// records appended since. A commit writes them in whole blocks, zeros
/// past the last record, and keeps the partial block, to write again with
/// the records after it. Writing a block again puts the same bytes where
/// earlier records are, so a write torn by a crash leaves those intact,
/// sector by sector.
#[derive(Debug)]
struct Direct {
    file: File,
    buf: Vec<u8>,
    /// Where in `buf` the held bytes begin: an address that is a multiple
    /// of [`BLOCK`].
    start: usize,
    /// Bytes held.
    len: usize,
    /// The file offset of the first byte held, a multiple of [`BLOCK`].
    at: u64,
}

impl Direct {
    fn new(file: File) -> Self {
        let mut direct = Direct {
            file,
            buf: Vec::new(),
            start: 0,
            len: 0,
            at: 0,
        };
        direct.reserve(BUFFER);
        direct
    }

    /// Room for `more` bytes past those held, and for padding them to a
    /// whole block.
    fn reserve(&mut self, more: usize) {
        let need = (self.len + more).next_multiple_of(BLOCK);
        if self.start + need <= self.buf.len() {
            return;
        }
        let mut buf = vec![0u8; need.max(2 * self.buf.len().saturating_sub(BLOCK)) + BLOCK];
        let start = (BLOCK - buf.as_ptr() as usize % BLOCK) % BLOCK;
        buf[start..start + self.len].copy_from_slice(&self.buf[self.start..self.start + self.len]);
        (self.buf, self.start) = (buf, start);
    }

    fn push(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        let end = self.start + self.len;
        crate::bulk::copy(&mut self.buf[end..end + bytes.len()], bytes);
        self.len += bytes.len();
    }

    /// Writes the bytes held, in whole blocks, and keeps the last partial
    /// block for the next write.
    fn write(&mut self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.len == 0 {
            return Ok(());
        }
        let padded = self.len.next_multiple_of(BLOCK);
        let (start, end) = (self.start, self.start + self.len);
        self.buf[end..start + padded].fill(0);
        self.file
            .write_all_at(&self.buf[start..start + padded], self.at)?;
        let whole = self.len / BLOCK * BLOCK;
        self.buf.copy_within(start + whole..end, start);
        self.at += whole as u64;
        self.len -= whole;
        if self.buf.len() > DIRECT_KEEP {
            let held = self.buf[start..start + self.len].to_vec();
            (self.buf, self.start, self.len) = (Vec::new(), 0, 0);
            self.reserve(BUFFER);
            self.push(&held);
        }
        Ok(())
    }
}

/// Writes `a` then `b`, in as few calls as the writer takes.
fn write_all_vectored(file: &mut impl Write, a: &[u8], b: &[u8]) -> io::Result<()> {
    let mut parts = [IoSlice::new(a), IoSlice::new(b)];
    let mut parts = &mut parts[..];
    while !parts.is_empty() {
        match file.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loadlens-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let root = temp("torn");
        let (mut wal, old) = Wal::open(&root, true).unwrap();
        assert!(old.is_empty());
        wal.append(Signal::Traces, b"first").unwrap();
        wal.append(Signal::Metrics, b"second").unwrap();
        wal.commit().unwrap();
        let path = wal.path.clone();
        drop(wal);
        // A crash mid-append leaves half a record after the last whole one
        // (with O_DIRECT, zeros follow it to the end of the block).
        let end = (2 * HEADER + 11) as u64;
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[&MAGIC[..], &[1, 200, 0]].concat(), end)
            .unwrap();
        let length = file.metadata().unwrap().len();
        drop(file);

        let (wal, segments) = Wal::open(&root, true).unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(wal.sequence(), segments[0].sequence + 1);
        let replayed = read_segment(&segments[0]).unwrap();
        assert_eq!(
            replayed.records,
            vec![
                (Signal::Traces, b"first".to_vec()),
                (Signal::Metrics, b"second".to_vec())
            ]
        );
        assert_eq!(replayed.torn_bytes, length - end);
        fs::remove_dir_all(&root).unwrap();
    }

    /// Whether a file in `dir` takes a block written with O_DIRECT from
    /// aligned memory: found here without [`Direct`], which it checks.
    fn takes_direct_writes(dir: &Path) -> bool {
        use std::os::unix::fs::FileExt;
        fs::create_dir_all(dir).unwrap();
        let path = dir.join("probe");
        let mut options = OpenOptions::new();
        options.create(true).write(true);
        direct_io(&mut options);
        let Ok(file) = options.open(&path) else {
            return false;
        };
        let memory = vec![7u8; 2 * BLOCK];
        let at = memory.as_ptr().align_offset(BLOCK);
        let taken = file.write_all_at(&memory[at..at + BLOCK], 0).is_ok();
        fs::remove_file(&path).unwrap();
        DIRECT_IO && taken
    }

    /// Bytes written to the segment as they are, past the records: what a
    /// write that failed part-way leaves.
    fn write_raw(wal: &mut Wal, bytes: &[u8]) {
        match &mut wal.file {
            Sink::Buffered(file) => file.write_all(bytes).unwrap(),
            Sink::Direct(direct) => direct.push(bytes),
        }
    }

    /// With fsync on (O_DIRECT where the file system has it), records of
    /// every size replay in order across many commits: each commit ends
    /// in a partial block, written again with the next.
    #[test]
    fn records_committed_one_by_one_replay_in_order() {
        let root = temp("direct");
        let direct = takes_direct_writes(&root);
        if DIRECT_IO && !direct {
            eprintln!("the temporary folder's file system has no O_DIRECT: buffered");
        }
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        assert_eq!(wal.is_direct(), direct);
        // The last size passes what the aligned buffer keeps after a commit.
        let sizes = [
            1,
            10,
            BLOCK - HEADER,
            BLOCK,
            3 * BLOCK + 5,
            100_000,
            0,
            7,
            2 * BUFFER + 1,
            DIRECT_KEEP + 1,
        ];
        let records: Vec<Vec<u8>> = (0..40)
            .map(|i| {
                (0..sizes[i % sizes.len()])
                    .map(|j| (i * 7 + j) as u8)
                    .collect()
            })
            .collect();
        for (i, record) in records.iter().enumerate() {
            wal.append(Signal::Traces, record).unwrap();
            // Some commits of one record, some of several.
            if i % 3 != 1 {
                wal.commit().unwrap();
            }
            if let Sink::Direct(direct) = &wal.file {
                let address = direct.buf.as_ptr() as usize + direct.start;
                assert_eq!(address % BLOCK, 0, "aligned memory");
                assert_eq!(direct.at % BLOCK as u64, 0, "an aligned offset");
            }
        }
        wal.commit().unwrap();
        // Where the file system takes direct writes, none fell back.
        assert_eq!(wal.is_direct(), direct, "direct writes were refused");
        assert!(!direct || !DIRECT_REFUSED.load(Ordering::Relaxed));
        let segment = wal.segment();
        let bytes = fs::read(&segment.path).unwrap();
        let logged: usize = records.iter().map(|r| HEADER + r.len()).sum();
        if wal.is_direct() {
            assert_eq!(bytes.len() % BLOCK, 0, "whole blocks only");
            assert!(
                bytes[logged..].iter().all(|&b| b == 0),
                "zeros past the records"
            );
        }
        drop(wal);
        let replayed = read_segment(&segment).unwrap();
        let payloads: Vec<Vec<u8>> = replayed.records.into_iter().map(|r| r.1).collect();
        assert_eq!(payloads, records);
        assert_eq!(replayed.torn_bytes, (bytes.len() - logged) as u64);
        fs::remove_dir_all(&root).unwrap();
    }

    /// A commit that ends on a block's end keeps no partial block: the next
    /// one begins a block of its own. A repeat of the first record there,
    /// left from the buffer, would replay twice but for the zeros after it.
    #[test]
    fn a_commit_that_ends_a_block_leaves_the_next_its_own() {
        let root = temp("boundary");
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        let whole = vec![5u8; BLOCK - HEADER];
        wal.append(Signal::Traces, &whole).unwrap();
        wal.commit().unwrap();
        wal.append(Signal::Metrics, b"short").unwrap();
        wal.commit().unwrap();
        let segment = wal.segment();
        if wal.is_direct() {
            let bytes = fs::read(&segment.path).unwrap();
            assert_eq!(bytes.len(), 2 * BLOCK);
            assert!(
                bytes[BLOCK + HEADER + 5..].iter().all(|&b| b == 0),
                "zeros past the records"
            );
        }
        drop(wal);
        let replayed = read_segment(&segment).unwrap();
        assert_eq!(
            replayed.records,
            [
                (Signal::Traces, whole),
                (Signal::Metrics, b"short".to_vec())
            ]
        );
        fs::remove_dir_all(&root).unwrap();
    }

    /// Where direct writes are refused after the open, the segment goes on
    /// through the page cache from where the direct writes ended.
    #[test]
    fn a_segment_falls_back_to_the_page_cache_with_its_records() {
        let root = temp("fallback");
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        // The first three pass two blocks, so the bytes held start past 0.
        let records: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vec![i; 3000 * usize::from(i) + 3])
            .collect();
        for record in &records[..3] {
            wal.append(Signal::Traces, record).unwrap();
        }
        wal.commit().unwrap();
        wal.append(Signal::Traces, &records[3]).unwrap();
        wal.fall_back_to_buffered().unwrap();
        assert!(!wal.is_direct());
        wal.commit().unwrap();
        for record in &records[4..] {
            wal.append(Signal::Traces, record).unwrap();
            wal.commit().unwrap();
        }
        let (payloads, _) = closed_payloads(wal);
        assert_eq!(payloads, records);
        fs::remove_dir_all(&root).unwrap();
    }

    /// The payloads the active segment replays once `wal` is dropped, and
    /// the bytes past them.
    fn closed_payloads(wal: Wal) -> (Vec<Vec<u8>>, u64) {
        let segment = wal.segment();
        drop(wal);
        let replayed = read_segment(&segment).unwrap();
        let payloads = replayed.records.into_iter().map(|r| r.1).collect();
        (payloads, replayed.torn_bytes)
    }

    #[test]
    fn small_and_large_records_replay_in_order() {
        let root = temp("sizes");
        let (mut wal, _) = Wal::open(&root, false).unwrap();
        // Around the buffer's size: buffered, written straight, and both
        // after one another.
        let sizes = [10, BUFFER - HEADER, BUFFER, 3 * BUFFER + 7, 1, 100_000, 5];
        let records: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        for record in &records {
            wal.append(Signal::Traces, record).unwrap();
        }
        wal.commit().unwrap();
        let (payloads, torn_bytes) = closed_payloads(wal);
        assert_eq!(payloads, records);
        assert_eq!(torn_bytes, 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn after_a_torn_write_records_go_to_a_new_segment() {
        let root = temp("tear");
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        let first = wal.sequence();
        wal.append(Signal::Traces, b"before").unwrap();
        // As a failed write leaves it: part of a record at the end.
        write_raw(&mut wal, &MAGIC[..]);
        wal.torn = true;
        wal.append(Signal::Traces, b"after").unwrap();
        wal.commit().unwrap();
        assert_eq!(wal.sequence(), first + 1);
        drop(wal);
        let (_, segments) = Wal::open(&root, true).unwrap();
        let replayed: Vec<Replayed> = segments.iter().map(|s| read_segment(s).unwrap()).collect();
        assert_eq!(replayed[0].records, [(Signal::Traces, b"before".to_vec())]);
        let length = fs::metadata(&segments[0].path).unwrap().len();
        assert_eq!(replayed[0].torn_bytes, length - (HEADER + 6) as u64);
        assert!(replayed[0].torn_bytes >= 4);
        assert_eq!(replayed[1].records, [(Signal::Traces, b"after".to_vec())]);
        fs::remove_dir_all(&root).unwrap();
    }

    /// A commit that fails (here a full disk) leaves the segment torn, so
    /// nothing more is appended behind records that may not be on disk.
    #[test]
    fn after_a_failed_commit_nothing_more_goes_to_that_segment() {
        let root = temp("failed-commit");
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        wal.file = Sink::Buffered(BufWriter::with_capacity(BUFFER, full));
        wal.append(Signal::Traces, b"buffered").unwrap();
        assert!(wal.commit().is_err(), "/dev/full takes no data");
        assert!(wal.torn);
        // The next append first tries to close the torn segment, which
        // still fails: the record is refused, not written behind the gap.
        let sequence = wal.sequence();
        assert!(wal.append(Signal::Traces, b"next").is_err());
        assert_eq!(wal.sequence(), sequence);

        // The same with direct writes: what failed is still held, to be
        // written again, at the same offset.
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        wal.file = Sink::Direct(Direct::new(full));
        wal.append(Signal::Traces, b"held").unwrap();
        assert!(wal.commit().is_err(), "/dev/full takes no data");
        assert!(wal.torn);
        let Sink::Direct(direct) = &wal.file else {
            panic!("still direct");
        };
        assert_eq!((direct.at, direct.len), (0, HEADER + 4));
        assert!(wal.append(Signal::Traces, b"next").is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_flipped_bit_ends_replay_of_that_segment() {
        let root = temp("crc");
        let (mut wal, _) = Wal::open(&root, false).unwrap();
        wal.append(Signal::Traces, b"good").unwrap();
        wal.append(Signal::Traces, b"will be corrupted").unwrap();
        wal.commit().unwrap();
        let segment = wal.segment();
        drop(wal);
        let path = segment.path.clone();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let replayed = read_segment(&segment).unwrap();
        assert_eq!(replayed.records.len(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    /// A closed segment of `records` (each 100 bytes of one value),
    /// retired to a spare; returns its number.
    fn spare_of(wal: &mut Wal, records: &[u8]) -> u64 {
        for &value in records {
            wal.append(Signal::Traces, &[value; 100]).unwrap();
        }
        let closed = wal.rotate().unwrap();
        Wal::retire_upto(wal.dir(), closed).unwrap();
        closed
    }

    #[test]
    fn a_reused_segment_replays_only_its_own_records() {
        let root = temp("reuse");
        // Without fsync, so through the page cache: with O_DIRECT, zeros
        // would follow the new records to the end of their block, over the
        // old record this test leaves in place.
        let (mut wal, _) = Wal::open(&root, false).unwrap();
        let old = spare_of(&mut wal, &[1, 2, 3]);
        assert_eq!(spares(wal.dir()).unwrap().len(), 1);
        // The next segment is the spare, renamed, and written from its start.
        wal.rotate().unwrap();
        assert!(spares(wal.dir()).unwrap().is_empty());
        let reused = wal.segment();
        assert_eq!(fs::metadata(&reused.path).unwrap().len(), 3 * 113);
        // Two records of the same sizes: the old third record lies right
        // after them, whole, and must not replay as this segment's.
        wal.append(Signal::Metrics, &[7; 100]).unwrap();
        wal.append(Signal::Traces, &[8; 100]).unwrap();
        wal.commit().unwrap();
        drop(wal);
        let replayed = read_segment(&reused).unwrap();
        assert_eq!(
            replayed.records,
            [
                (Signal::Metrics, vec![7; 100]),
                (Signal::Traces, vec![8; 100])
            ]
        );
        assert_eq!(replayed.torn_bytes, 113);
        // The same bytes as the old segment's pass its check.
        let bytes = fs::read(&reused.path).unwrap();
        assert_eq!(parse_segment(&bytes[226..], old).records.len(), 1);

        // Reused but never written (a crash right after the rename): nothing.
        let (mut wal, _) = Wal::open(&root, false).unwrap();
        assert!(wal.sequence() > reused.sequence);
        spare_of(&mut wal, &[4, 5]);
        wal.rotate().unwrap();
        let unwritten = wal.segment();
        drop(wal);
        let replayed = read_segment(&unwritten).unwrap();
        assert!(replayed.records.is_empty());
        assert_eq!(replayed.torn_bytes, 2 * 113);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn numbers_go_on_after_the_spares() {
        let root = temp("numbers");
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        let spare = spare_of(&mut wal, &[1]);
        let active = wal.segment();
        drop(wal);
        // Only the spare is left, say after a clean stop that could not
        // remove it.
        fs::remove_file(&active.path).unwrap();
        let (wal, segments) = Wal::open(&root, true).unwrap();
        assert!(segments.is_empty());
        assert!(wal.sequence() > spare, "{} after {spare}", wal.sequence());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn at_most_two_spares_are_kept_and_a_clean_stop_leaves_none() {
        let root = temp("spares");
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        for value in 1..=3 {
            wal.append(Signal::Traces, &[value; 10]).unwrap();
            wal.rotate().unwrap();
        }
        Wal::retire_upto(wal.dir(), wal.sequence() - 1).unwrap();
        assert_eq!(spares(wal.dir()).unwrap().len(), SPARES);
        let files = || fs::read_dir(root.join(WAL_DIR)).unwrap().count();
        assert_eq!(files(), SPARES + 1);
        // With the spares there already, a retired segment is deleted.
        let closed = wal.dir().join(format!("wal-{:020}.log", 3));
        fs::write(&closed, MAGIC).unwrap();
        Wal::retire_upto(wal.dir(), 3).unwrap();
        assert_eq!(spares(wal.dir()).unwrap().len(), SPARES);
        assert!(!closed.exists());
        // The next segment takes a spare, which holds its old records until
        // a clean stop empties it.
        wal.rotate().unwrap();
        assert!(fs::metadata(&wal.path).unwrap().len() > 0);
        Wal::retire_upto(wal.dir(), wal.sequence() - 1).unwrap();
        wal.clear_if_unused(true).unwrap();
        assert!(fs::metadata(&wal.path).unwrap().len() > 0);
        wal.clear_if_unused(false).unwrap();
        Wal::remove_spares(wal.dir()).unwrap();
        assert_eq!(files(), 1);
        assert_eq!(fs::metadata(&wal.path).unwrap().len(), 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn segments_of_the_first_format_replay_and_are_never_reused() {
        let root = temp("v1");
        let dir = root.join(WAL_DIR);
        fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::new();
        for payload in [&b"one"[..], b"two"] {
            bytes.extend_from_slice(MAGIC_V1);
            bytes.push(Signal::Traces as u8);
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            bytes.extend_from_slice(payload);
        }
        fs::write(dir.join(format!("wal-{:020}.log", 4)), &bytes).unwrap();
        let (wal, segments) = Wal::open(&root, true).unwrap();
        let replayed = read_segment(&segments[0]).unwrap();
        assert_eq!(replayed.records.len(), 2);
        assert_eq!(replayed.torn_bytes, 0);
        Wal::retire_upto(wal.dir(), 4).unwrap();
        assert!(spares(wal.dir()).unwrap().is_empty(), "deleted, not kept");
        // Nor does a record of one format follow one of the other.
        let mut mixed = bytes.clone();
        mixed[bytes.len() - 3 - HEADER..][..4].copy_from_slice(MAGIC);
        assert_eq!(parse_segment(&mixed, 4).records.len(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn rotation_and_deletion() {
        let root = temp("rotate");
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        let first = wal.sequence();
        wal.append(Signal::Traces, b"a").unwrap();
        assert_eq!(wal.rotate().unwrap(), first);
        wal.append(Signal::Traces, b"b").unwrap();
        wal.commit().unwrap();
        Wal::retire_upto(wal.dir(), first).unwrap();
        drop(wal);
        let (_, segments) = Wal::open(&root, true).unwrap();
        assert_eq!(segments.len(), 1, "only the second segment is left");
        assert_eq!(read_segment(&segments[0]).unwrap().records[0].1, b"b");
        fs::remove_dir_all(&root).unwrap();
    }
}
