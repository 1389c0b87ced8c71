//! Copies of 200 KiB, about the size of a request of 512 spans, whole and in the
//! pieces of `collector::bulk`, with the destination at several distances
//! past the source's place in its 4 KiB page. Both buffers begin on a page
//! and stay in cache; each line is the best of five rounds.
//!
//! Then, on Linux, copies into memory that the disk reads right after, as
//! the write-ahead log copies each request into the aligned buffer it
//! writes with O_DIRECT (`collector/src/wal.rs`). Each copy is followed by
//! a write of the destination (at the file's start each time; the log
//! writes further on) and an fdatasync, or, as a control, by a sleep of
//! 200 µs instead, about as long as the write takes: the CPU sits idle in
//! both. The destination is either the same buffer each time, as the
//! log's, or the next of a ring of them, 16 MiB in all. Those lines give
//! quantiles of the copies after the first 100 (and after the ring's
//! first pass), in µs.
//!
//!   cargo bench -p collector --bench copy [-- DIR]
//!
//! DIR, the temporary folder unless given, is where the file written
//! goes: a folder on the disk to measure, whose file system takes O_DIRECT
//! (tmpfs does not).
use std::time::Instant;

const LEN: usize = 200 * 1024;
const PAGE: usize = 4096;

/// `len` bytes of a buffer that begin on a page, and room after them.
struct Paged {
    bytes: Vec<u8>,
    start: usize,
}

impl Paged {
    fn new(len: usize) -> Self {
        let bytes = vec![1u8; len + 2 * PAGE];
        let start = (PAGE - bytes.as_ptr() as usize % PAGE) % PAGE;
        Paged { bytes, start }
    }

    /// `len` bytes from `offset` past the page the buffer begins on.
    fn at(&mut self, offset: usize, len: usize) -> &mut [u8] {
        &mut self.bytes[self.start + offset..self.start + offset + len]
    }
}

/// The best rate of five rounds of `copy`.
fn gb_per_s(copy: &mut dyn FnMut()) -> f64 {
    let rounds = 2_000;
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..rounds {
                copy();
            }
            (LEN * rounds) as f64 / started.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn main() {
    let mut from = Paged::new(LEN);
    let from = &*from.at(0, LEN);
    let mut to = Paged::new(LEN);
    println!(
        "copies of {LEN} bytes, GB/s: whole (copy_from_slice) and in pieces (collector::bulk)"
    );
    for offset in [0, 8, 13, 64, 77, 2061] {
        let whole = gb_per_s(&mut || {
            to.at(offset, LEN).copy_from_slice(from);
            std::hint::black_box(&to.bytes);
        });
        let pieces = gb_per_s(&mut || {
            collector::bulk::copy(to.at(offset, LEN), from);
            std::hint::black_box(&to.bytes);
        });
        println!(
            "destination {offset:>4} bytes further in its page: {whole:5.1} whole, {pieces:5.1} in pieces"
        );
    }
    #[cfg(target_os = "linux")]
    after_the_disk_read_it(from);
}

/// Copies of `from` in each ring.
#[cfg(target_os = "linux")]
const COPIES: usize = 1_500;

/// Copies left out of the quantiles at the start, at least.
#[cfg(target_os = "linux")]
const WARM_UP: usize = 100;

/// Microseconds each copy of `from` took into a buffer that the disk read
/// after the copy before, or after a sleep instead, for a ring of one
/// buffer and one of 16 MiB of them.
#[cfg(target_os = "linux")]
fn after_the_disk_read_it(from: &[u8]) {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::time::Duration;

    /// The file written, removed however the measurement ends.
    struct Written(std::path::PathBuf);
    impl Drop for Written {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    let dir = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .map_or_else(std::env::temp_dir, Into::into);
    let written = Written(dir.join(format!("loadlens-copy-{}", std::process::id())));
    let opened = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&written.0);
    let file = match opened {
        Ok(file) => file,
        // The file system has no O_DIRECT (EINVAL).
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!(
                "{} takes no O_DIRECT writes ({e}): give a folder on a disk, \
                 `cargo bench -p collector --bench copy -- DIR`",
                dir.display()
            );
            return;
        }
        Err(e) => {
            eprintln!("cannot create {}: {e}", written.0.display());
            return;
        }
    };
    let slot = (LEN + 13).next_multiple_of(PAGE);
    println!(
        "copies of {LEN} bytes into memory the disk read after the copy before, µs (in {}):",
        dir.display()
    );
    for buffers in [1, 16 * 1024 * 1024 / slot] {
        for disk in [true, false] {
            let mut ring = Paged::new(buffers * slot);
            let mut took = Vec::with_capacity(COPIES);
            for i in 0..COPIES {
                let at = (i % buffers) * slot;
                let started = Instant::now();
                // 13 bytes in, past a record's header, as the log copies.
                collector::bulk::copy(&mut ring.at(at, slot)[13..13 + LEN], from);
                took.push(started.elapsed());
                if !disk {
                    std::thread::sleep(Duration::from_micros(200));
                } else if let Err(e) = file
                    .write_all_at(ring.at(at, slot), 0)
                    .and_then(|()| file.sync_data())
                {
                    eprintln!("cannot write {}: {e}", written.0.display());
                    return;
                }
            }
            let mut took = took.split_off(WARM_UP.max(buffers));
            took.sort();
            let micros =
                |q: f64| took[((took.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
            let mean = took.iter().sum::<Duration>().as_secs_f64() * 1e6 / took.len() as f64;
            println!(
                "ring of {buffers:>2} ({:>5} KiB), {}: p10 {:5.1}, median {:5.1}, p90 {:5.1}, mean {:5.1}",
                buffers * slot / 1024,
                if disk {
                    "the disk read it"
                } else {
                    "a sleep instead"
                },
                micros(0.1),
                micros(0.5),
                micros(0.9),
                mean
            );
        }
    }
}
