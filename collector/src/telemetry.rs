//! The collector's own metrics: every name it exposes is declared here, once,
//! and `/metrics` renders them in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::wal::Signal;

/// A counter, gauge or histogram the collector exposes.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: "counter",
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: "gauge",
    }
}

pub const RECEIVED: Metric = counter(
    "loadlens_collector_received_items_total",
    "Spans or metric data points in requests admitted under the memory bound, by signal.",
);
pub const ACCEPTED: Metric = counter(
    "loadlens_collector_accepted_items_total",
    "Spans or data points made durable and acknowledged, by signal.",
);
pub const REJECTED: Metric = counter(
    "loadlens_collector_rejected_items_total",
    "Spans or data points rejected as invalid (partial success), by signal.",
);
pub const DROPPED: Metric = counter(
    "loadlens_collector_dropped_items_total",
    "Spans or data points of admitted requests that were not stored (the log failed or the collector was stopping); their clients got a retryable answer. Received = accepted + rejected + dropped.",
);
pub const REFUSED: Metric = counter(
    "loadlens_collector_refused_requests_total",
    "Requests refused with a retryable answer, by signal and reason (overloaded, memory, not_stored, unauthenticated).",
);
pub const WAL_COMMITS: Metric = counter(
    "loadlens_collector_wal_commits_total",
    "Group commits of the write-ahead log (one fdatasync each).",
);
pub const WAL_BYTES: Metric = counter(
    "loadlens_collector_wal_bytes_total",
    "Bytes appended to the write-ahead log.",
);
pub const WAL_SYNC_DURATION: Metric = Metric {
    name: "loadlens_collector_wal_sync_duration_seconds",
    help: "Time each group commit of the write-ahead log took (flush and fdatasync), as a histogram.",
    kind: "histogram",
};
pub const WAL_SYNC_SECONDS: Metric = counter(
    "loadlens_collector_wal_sync_seconds_total",
    "Time spent in fdatasync of the write-ahead log; divide by commits for the mean.",
);
pub const ROWS_REPLAYED: Metric = counter(
    "loadlens_collector_replayed_rows_total",
    "Rows recovered from the write-ahead log at start.",
);
pub const FLUSHES: Metric = counter(
    "loadlens_collector_flushes_total",
    "Flushes of pending rows to Parquet.",
);
pub const FLUSH_ERRORS: Metric = counter(
    "loadlens_collector_flush_errors_total",
    "Partitions that failed to write; their rows stay pending and are retried.",
);
pub const ROWS_WRITTEN: Metric = counter(
    "loadlens_collector_written_rows_total",
    "Rows written to Parquet.",
);
pub const FILES_WRITTEN: Metric = counter(
    "loadlens_collector_written_files_total",
    "Parquet files written.",
);
pub const DUPLICATES_REMOVED: Metric = counter(
    "loadlens_collector_duplicate_spans_removed_total",
    "Spans dropped at flush or compaction because their (trace_id, span_id) was already stored (client retries).",
);
pub const COMPACTIONS: Metric = counter(
    "loadlens_collector_compactions_total",
    "Groups of small Parquet files merged into one.",
);
pub const FILES_COMPACTED: Metric = counter(
    "loadlens_collector_compacted_files_total",
    "Parquet files replaced by compaction.",
);
pub const COMPACTION_ERRORS: Metric = counter(
    "loadlens_collector_compaction_errors_total",
    "Compactions that failed; their input files are left as they were.",
);
pub const FILES_SHIPPED: Metric = counter(
    "loadlens_collector_shipped_files_total",
    "Parquet files uploaded to object storage (and then removed locally).",
);
pub const BYTES_SHIPPED: Metric = counter(
    "loadlens_collector_shipped_bytes_total",
    "Bytes of Parquet uploaded to object storage.",
);
pub const SHIP_ERRORS: Metric = counter(
    "loadlens_collector_ship_errors_total",
    "Uploads to object storage that failed; the files stay local and are retried after the next flush.",
);
pub const PENDING_ROWS: Metric = gauge(
    "loadlens_collector_pending_rows",
    "Rows acknowledged and in the write-ahead log, not yet in Parquet.",
);
pub const PENDING_BYTES: Metric = gauge(
    "loadlens_collector_pending_bytes",
    "Memory held by pending rows; requests are refused above the configured bound.",
);
pub const IN_FLIGHT_BYTES: Metric = gauge(
    "loadlens_collector_in_flight_bytes",
    "Estimated memory of requests admitted and not yet pending (counted against the bound).",
);
pub const SPANS_LOOKED_UP: Metric = counter(
    "loadlens_collector_spans_looked_up_total",
    "Spans a flush looked for in older files, as they started at or before the horizon of the recent-id index (resends past it, stragglers, spans of a day not written to since start); if it grows with the rate, raise dedupe_max_spans.",
);
pub const LOOKUP_ROWS_READ: Metric = counter(
    "loadlens_collector_lookup_rows_read_total",
    "Stored rows read to look for those spans: the rows of every row group whose start times cover one of them. What a lookup costs grows with it.",
);
pub const RECENT_SPAN_IDS: Metric = gauge(
    "loadlens_collector_recent_span_ids",
    "Ids of spans flushed within the dedupe window, kept to drop spans that clients resend.",
);
pub const PENDING_LIMIT_BYTES: Metric = gauge(
    "loadlens_collector_pending_limit_bytes",
    "The configured bound on pending memory.",
);
pub const RESIDENT_BYTES: Metric = gauge(
    "loadlens_collector_resident_bytes",
    "The process's resident memory, as admission last read it.",
);
pub const MEMORY_LIMIT_BYTES: Metric = gauge(
    "loadlens_collector_memory_limit_bytes",
    "The configured bound on the process's resident memory (max_memory).",
);

/// A counter per OTLP signal.
#[derive(Debug, Default)]
pub struct PerSignal {
    traces: AtomicU64,
    metrics: AtomicU64,
}

impl PerSignal {
    pub fn add(&self, signal: Signal, n: u64) {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
        }
        .fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, signal: Signal) -> u64 {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
        }
        .load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of [`DurationHistogram`]'s buckets: an fsync
/// takes from tens of microseconds (a fast SSD) to hundreds of milliseconds
/// (a busy network disk).
pub const DURATION_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Durations counted into [`DURATION_BUCKETS`], from any thread.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// Per bucket, not cumulative; the last counts what no bound holds.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let at = DURATION_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Renders metrics in the Prometheus text exposition format.
#[derive(Debug, Default)]
pub struct Exposition(String);

impl Exposition {
    fn header(&mut self, metric: Metric) {
        let _ = writeln!(self.0, "# HELP {} {}", metric.name, metric.help);
        let _ = writeln!(self.0, "# TYPE {} {}", metric.name, metric.kind);
    }

    /// One unlabelled sample.
    pub fn value(&mut self, metric: Metric, value: f64) {
        self.header(metric);
        let _ = writeln!(self.0, "{} {value}", metric.name);
    }

    /// One sample per signal.
    pub fn per_signal(&mut self, metric: Metric, values: &PerSignal) {
        self.header(metric);
        self.signal_samples(metric, "", values);
    }

    /// Samples labelled by signal and reason.
    pub fn per_signal_and_reason(&mut self, metric: Metric, values: &[(&str, &PerSignal)]) {
        self.header(metric);
        for (reason, per_signal) in values {
            self.signal_samples(metric, &format!(",reason=\"{reason}\""), per_signal);
        }
    }

    /// A sample per signal, with `more_labels` (`,key="value"`…) after the signal.
    fn signal_samples(&mut self, metric: Metric, more_labels: &str, values: &PerSignal) {
        for (label, signal) in [("traces", Signal::Traces), ("metrics", Signal::Metrics)] {
            let _ = writeln!(
                self.0,
                "{}{{signal=\"{label}\"{more_labels}}} {}",
                metric.name,
                values.get(signal)
            );
        }
    }

    /// A histogram: cumulative buckets, then the sum and the count.
    pub fn histogram(&mut self, metric: Metric, values: &DurationHistogram) {
        self.header(metric);
        let mut cumulative = 0;
        for (at, count) in values.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = DURATION_BUCKETS
                .get(at)
                .map_or_else(|| "+Inf".to_string(), f64::to_string);
            let _ = writeln!(self.0, "{}_bucket{{le=\"{le}\"}} {cumulative}", metric.name);
        }
        let sum = values.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(self.0, "{}_sum {sum}", metric.name);
        let _ = writeln!(self.0, "{}_count {cumulative}", metric.name);
    }

    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_as_a_cumulative_histogram() {
        let fsyncs = DurationHistogram::default();
        for micros in [80, 300, 300, 2_000_000] {
            fsyncs.observe(Duration::from_micros(micros));
        }
        let mut out = Exposition::default();
        out.histogram(WAL_SYNC_DURATION, &fsyncs);
        let text = out.finish();
        let name = WAL_SYNC_DURATION.name;
        assert!(
            text.contains(&format!("# TYPE {name} histogram\n")),
            "{text}"
        );
        for (le, count) in [
            ("0.0001", 1),
            ("0.00025", 1),
            ("0.0005", 3),
            ("1", 3),
            ("+Inf", 4),
        ] {
            assert!(
                text.contains(&format!("{name}_bucket{{le=\"{le}\"}} {count}\n")),
                "{le}: {text}"
            );
        }
        assert!(text.contains(&format!("{name}_sum 2.00068\n")), "{text}");
        assert!(text.contains(&format!("{name}_count 4\n")), "{text}");
    }

    #[test]
    fn renders_the_text_format() {
        let per = PerSignal::default();
        per.add(Signal::Traces, 3);
        let mut out = Exposition::default();
        out.per_signal(RECEIVED, &per);
        out.value(PENDING_ROWS, 7.0);
        let text = out.finish();
        assert!(text.contains("# TYPE loadlens_collector_received_items_total counter\n"));
        assert!(text.contains("loadlens_collector_received_items_total{signal=\"traces\"} 3\n"));
        assert!(text.contains("loadlens_collector_received_items_total{signal=\"metrics\"} 0\n"));
        assert!(text.contains("loadlens_collector_pending_rows 7\n"));
    }
}
