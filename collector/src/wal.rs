//! The write-ahead log: every accepted OTLP request is appended and fsynced
//! before it is acknowledged, and replayed after a crash.
//!
//! ```text
//!  <data>/_wal/wal-00000000000000000007.log   segments, appended in order
//!  record = magic "LLW1" · signal (u8) · length (u32 LE) · crc32 (u32 LE) · OTLP protobuf
//! ```
//! A flush rotates to a new segment, writes every pending row to Parquet, then
//! deletes the older segments. A torn record at the end of a segment (a crash
//! mid-append, never acknowledged) ends that segment's replay.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, IoSlice, Read, Write};
use std::path::{Path, PathBuf};

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

const MAGIC: &[u8; 4] = b"LLW1";
const HEADER: usize = 4 + 1 + 4 + 4;

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
    file: BufWriter<File>,
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
        let next = segments.last().map_or(1, |s| s.sequence + 1);
        let wal = Wal::create(dir, next, sync)?;
        Ok((wal, segments))
    }

    fn create(dir: PathBuf, sequence: u64, sync: bool) -> Result<Wal, WalError> {
        let path = dir.join(format!("wal-{sequence:020}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err(&path))?;
        sync_dir(&dir)?;
        Ok(Wal {
            dir,
            sequence,
            path,
            file: BufWriter::with_capacity(BUFFER, file),
            sync,
            torn: false,
        })
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
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(MAGIC);
        header[4] = signal as u8;
        header[5..9].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[9..13].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        if self.torn {
            self.rotate()?;
        }
        // One write for header and payload: a large record goes to the file
        // in a single system call, a small one into the buffer.
        write_all_vectored(&mut self.file, &header, payload).map_err(|e| {
            self.torn = true;
            err(&self.path)(e)
        })
    }

    /// Makes every appended record durable (fdatasync unless sync is off).
    pub fn commit(&mut self) -> Result<(), WalError> {
        self.file.flush().map_err(err(&self.path))?;
        if self.sync {
            self.file.get_ref().sync_data().map_err(err(&self.path))?;
        }
        Ok(())
    }

    /// Closes the active segment and starts the next; returns the closed one's number.
    pub fn rotate(&mut self) -> Result<u64, WalError> {
        self.commit()?;
        let closed = self.sequence;
        *self = Wal::create(self.dir.clone(), closed + 1, self.sync)?;
        Ok(closed)
    }

    /// Deletes every closed segment numbered `upto` or lower.
    pub fn delete_upto(dir: &Path, upto: u64) -> Result<(), WalError> {
        for entry in fs::read_dir(dir).map_err(err(dir))? {
            let path = entry.map_err(err(dir))?.path();
            let sequence = segment_sequence(&path);
            if sequence.is_some_and(|s| s <= upto) {
                fs::remove_file(&path).map_err(err(&path))?;
            }
        }
        sync_dir(dir)
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
}

/// What replaying one segment found.
#[derive(Debug, Default)]
pub struct Replayed {
    pub records: Vec<(Signal, Vec<u8>)>,
    /// Bytes at the end that did not form a whole, valid record.
    pub torn_bytes: u64,
}

/// Reads a segment's records, stopping at the first torn or corrupt one.
pub fn read_segment(path: &Path) -> Result<Replayed, WalError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(err(path))?;
    Ok(parse_segment(&data))
}

/// The records of a segment's bytes, up to the first torn or corrupt one.
pub fn parse_segment(data: &[u8]) -> Replayed {
    let mut out = Replayed::default();
    let mut at = 0usize;
    while at < data.len() {
        let Some(header) = data.get(at..at + HEADER) else {
            break;
        };
        let len = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
        let signal = Signal::from_byte(header[4]);
        let payload = data.get(at + HEADER..at + HEADER + len);
        match (header[..4] == MAGIC[..], signal, payload) {
            (true, Some(signal), Some(payload))
                if len <= MAX_RECORD && crc32fast::hash(payload) == crc =>
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

/// The number of a segment file named `wal-<number>.log`.
fn segment_sequence(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
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
        // A crash mid-append leaves half a record.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&MAGIC[..]).unwrap();
        file.write_all(&[1, 200, 0]).unwrap();
        drop(file);

        let (wal, segments) = Wal::open(&root, true).unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(wal.sequence(), segments[0].sequence + 1);
        let replayed = read_segment(&segments[0].path).unwrap();
        assert_eq!(
            replayed.records,
            vec![
                (Signal::Traces, b"first".to_vec()),
                (Signal::Metrics, b"second".to_vec())
            ]
        );
        assert_eq!(replayed.torn_bytes, 7);
        fs::remove_dir_all(&root).unwrap();
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
        let path = wal.path.clone();
        drop(wal);
        let replayed = read_segment(&path).unwrap();
        let payloads: Vec<Vec<u8>> = replayed.records.into_iter().map(|r| r.1).collect();
        assert_eq!(payloads, records);
        assert_eq!(replayed.torn_bytes, 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn after_a_torn_write_records_go_to_a_new_segment() {
        let root = temp("tear");
        let (mut wal, _) = Wal::open(&root, true).unwrap();
        let first = wal.sequence();
        wal.append(Signal::Traces, b"before").unwrap();
        // As a failed write leaves it: part of a record at the end.
        wal.file.write_all(&MAGIC[..]).unwrap();
        wal.torn = true;
        wal.append(Signal::Traces, b"after").unwrap();
        wal.commit().unwrap();
        assert_eq!(wal.sequence(), first + 1);
        drop(wal);
        let (_, segments) = Wal::open(&root, true).unwrap();
        let replayed: Vec<Replayed> = segments
            .iter()
            .map(|s| read_segment(&s.path).unwrap())
            .collect();
        assert_eq!(replayed[0].records, [(Signal::Traces, b"before".to_vec())]);
        assert_eq!(replayed[0].torn_bytes, 4);
        assert_eq!(replayed[1].records, [(Signal::Traces, b"after".to_vec())]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_flipped_bit_ends_replay_of_that_segment() {
        let root = temp("crc");
        let (mut wal, _) = Wal::open(&root, false).unwrap();
        wal.append(Signal::Traces, b"good").unwrap();
        wal.append(Signal::Traces, b"will be corrupted").unwrap();
        wal.commit().unwrap();
        let path = wal.path.clone();
        drop(wal);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let replayed = read_segment(&path).unwrap();
        assert_eq!(replayed.records.len(), 1);
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
        Wal::delete_upto(wal.dir(), first).unwrap();
        drop(wal);
        let (_, segments) = Wal::open(&root, true).unwrap();
        assert_eq!(segments.len(), 1, "only the second segment is left");
        assert_eq!(read_segment(&segments[0].path).unwrap().records[0].1, b"b");
        fs::remove_dir_all(&root).unwrap();
    }
}
