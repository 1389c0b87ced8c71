//! A monotonic clock expressed as Unix nanoseconds, so span times are both
//! comparable with other hosts' wall clocks and immune to clock steps mid-run.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Maps `Instant`s to Unix ns from one anchor taken at start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    anchor_unix_nanos: i64,
}

impl Clock {
    pub fn new() -> Self {
        let anchor = Instant::now();
        let anchor_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Clock {
            anchor,
            anchor_unix_nanos,
        }
    }

    /// Unix ns of an instant taken after the anchor.
    pub fn unix_nanos(&self, at: Instant) -> i64 {
        self.anchor_unix_nanos + at.saturating_duration_since(self.anchor).as_nanos() as i64
    }

    /// Unix ns now.
    pub fn now(&self) -> i64 {
        self.unix_nanos(Instant::now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
