//! The bound `max_memory` sets on the collector's resident memory.
//!
//! The pending-memory bound (`max_pending_bytes`) counts what the collector
//! can estimate: rows waiting for a flush and requests being converted. Its
//! process also holds rows being written, Parquet encoders, the recent-id
//! index, transport buffers and the allocator's free pages, none of which
//! that estimate sees. So admission also reads what the kernel says the
//! process holds (`VmRSS`) and refuses new requests once that, with the
//! new request's estimate, would pass the high-water mark: the bound less a
//! headroom for the growth no refusal can stop (a flush under way, requests
//! admitted and still converting, requests already in the transports).
//!
//! Resident memory that nothing pending will free (the recent-id index,
//! the allocator keeping pages) never makes the collector refuse for ever:
//! it refuses only while rows pending or in flight hold an eighth of the
//! pending bound, which a flush frees (`Ingest::admit`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How stale a reading of resident memory may be before admission reads it
/// again. Reading `/proc/self/status` costs some microseconds; at this age
/// it is read at most 500 times a second however many requests come, and
/// what was admitted since is counted by its estimate.
const REFRESH: Duration = Duration::from_millis(2);

/// How often the warning that the bound is too small may repeat.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The share of the bound kept free for growth that refusals cannot stop.
const HEADROOM_DIVISOR: usize = 4;

/// The resident-memory bound and the latest reading of resident memory.
#[derive(Debug)]
pub struct MemoryLimit {
    limit: usize,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the latest reading.
    read_at: AtomicU64,
    resident: AtomicUsize,
    /// Reads the resident memory: [`resident_bytes`], or a fake in tests.
    read: fn() -> Option<usize>,
    /// Nanoseconds after `epoch` of the latest warning, 0 before any.
    warned_at: AtomicU64,
}

/// Why a memory bound cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum MemoryLimitError {
    #[error(
        "max_memory needs the process's resident memory, which this system does not give \
         (no VmRSS in /proc/self/status); leave max_memory unset"
    )]
    Unreadable,
    #[error(
        "max_memory {limit} bytes leaves {high_water} bytes before requests are refused, \
         but the collector already holds {resident} bytes; raise max_memory"
    )]
    TooSmall {
        limit: usize,
        high_water: usize,
        resident: usize,
    },
}

impl MemoryLimit {
    /// A bound of `limit` bytes on this process's resident memory; an error
    /// if the system does not report resident memory, or the process
    /// already holds more than the bound lets it hold before refusing.
    pub fn new(limit: usize) -> Result<Self, MemoryLimitError> {
        Self::reading(limit, resident_bytes)
    }

    /// A bound kept on what `read` says the process holds.
    pub(crate) fn reading(
        limit: usize,
        read: fn() -> Option<usize>,
    ) -> Result<Self, MemoryLimitError> {
        let resident = read().ok_or(MemoryLimitError::Unreadable)?;
        let memory = MemoryLimit {
            limit,
            epoch: Instant::now(),
            read_at: AtomicU64::new(0),
            resident: AtomicUsize::new(resident),
            read,
            warned_at: AtomicU64::new(0),
        };
        if resident >= memory.high_water() {
            return Err(MemoryLimitError::TooSmall {
                limit,
                high_water: memory.high_water(),
                resident,
            });
        }
        Ok(memory)
    }

    /// The bound, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Resident memory past which no new request is admitted while rows
    /// pending or in flight hold an eighth of the pending bound.
    pub fn high_water(&self) -> usize {
        self.limit - self.limit / HEADROOM_DIVISOR
    }

    /// The process's resident memory, read at most [`REFRESH`] ago.
    pub fn resident(&self) -> usize {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let read_at = self.read_at.load(Ordering::Relaxed);
        let stale = now.saturating_sub(read_at) >= REFRESH.as_nanos() as u64;
        // One caller reads; the others use the reading it replaces.
        if stale
            && self
                .read_at
                .compare_exchange(read_at, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && let Some(resident) = (self.read)()
        {
            self.resident.store(resident, Ordering::Relaxed);
        }
        self.resident.load(Ordering::Relaxed)
    }

    /// Whether to warn that the process is past the high-water mark though
    /// little is pending (so requests are admitted past it): true at most
    /// once a minute.
    pub fn warn_now(&self) -> bool {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let last = self.warned_at.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_nanos() as u64;
        due && self
            .warned_at
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The resident memory, when it and `more` bytes would pass the
    /// high-water mark.
    pub fn over(&self, more: usize) -> Option<usize> {
        let resident = self.resident();
        (resident.saturating_add(more) > self.high_water()).then_some(resident)
    }
}

/// This process's resident memory, from `/proc/self/status`, or `None` where
/// the system does not give it.
pub fn resident_bytes() -> Option<usize> {
    status_bytes(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS")
}

/// A memory figure of a `/proc/PID/status` text, in bytes: `VmRSS`
/// (resident now), `VmHWM` (the most ever resident), and the like.
pub fn status_bytes(status: &str, field: &str) -> Option<usize> {
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_vm_rss_in_kib() {
        let status = "Name:\tloadlens\nVmPeak:\t  900 kB\nVmRSS:\t   35112 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(status_bytes(status, "VmRSS"), Some(35112 * 1024));
        assert_eq!(status_bytes(status, "VmPeak"), Some(900 * 1024));
        assert_eq!(status_bytes("Name:\tkthread\n", "VmRSS"), None);
        assert!(resident_bytes().is_some(), "Linux gives VmRSS");
    }

    #[test]
    fn a_bound_below_what_the_process_holds_is_refused_at_once() {
        let resident = resident_bytes().unwrap();
        match MemoryLimit::new(resident) {
            Err(MemoryLimitError::TooSmall { limit, .. }) => assert_eq!(limit, resident),
            other => panic!("{other:?}"),
        }
        let roomy = MemoryLimit::new(8 * resident + (1 << 30)).unwrap();
        assert_eq!(roomy.over(0), None);
    }
}
