//! What a flush pays to look up, in its partition's files, the spans that
//! started at or before the recent-id index's horizon
//! (`collector/src/store/older.rs`): the case of an exporter that replays
//! spans it held back while other services kept writing to the same day.
//!
//! A partition folder gets FILES files of 200,000 spans each, 2 µs apart
//! (0.4 s of spans a file), with random ids, as flushes write them. Then,
//! for K = 1, 2, 4, … while K ≤ FILES, one flush of 200,000 spans that
//! started within the last K files' time is timed: 100,000 spans stored
//! there, spread evenly, resent, and 100,000 new spans at random times
//! among them, all at or before the horizon, so all are looked up and the
//! resends dropped. Against it, a flush after the horizon with the same
//! rows in and out: 100,000 spans that an earlier flush of the same index
//! wrote (untimed), which its probe drops, and 100,000 new ones. Each
//! flush has a new index that read no files, whose horizon is the folder's
//! latest stored start, and its files are removed after it. Each line gives
//! the best of three of each, the difference (the lookup's cost) and the
//! stored rows the lookup read; the last line, the least-squares line of
//! the cost against the rows read: a fixed part, and a part per row.
//!
//!   cargo bench -p collector --bench lookup [-- FILES]
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use collector::convert::PartitionKey;
use collector::store::{Dedupe, RecentSpans, Written, write_partition, write_partition_after};
use opentelemetry_proto::tonic::trace::v1::Span;

const SPANS_PER_FILE: u64 = 200_000;
/// 2026-12-07T00:00:00Z in nanoseconds.
const DAY: u64 = 1_796_601_600_000_000_000;
const APART: u64 = 2_000;

/// A 64-bit generator of ids (xorshift*).
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A trace id and a span id.
    fn pair(&mut self) -> (u128, u64) {
        (
            u128::from(self.next()) << 64 | u128::from(self.next()),
            self.next(),
        )
    }
}

fn span((trace, id): (u128, u64), start: u64) -> Span {
    Span {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        name: "GET /checkout".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_500_000,
        ..Default::default()
    }
}

/// The spans as one converted batch, and their partition.
fn batch(spans: Vec<Span>) -> (PartitionKey, RecordBatch) {
    let request = collector::convert::spans::request_of(spans);
    let mut converted = collector::convert::spans::convert(&request).expect("spans convert");
    assert_eq!(converted.batches.len(), 1, "one partition");
    converted.batches.pop().expect("a batch")
}

/// One timed flush: how long it took, the files to remove after it, and
/// what it wrote.
struct Timed {
    took: Duration,
    files: Vec<PathBuf>,
    written: Written,
}

/// The best time of three runs of `flush`, and what the last wrote.
fn best_of_three(mut flush: impl FnMut() -> Timed) -> (Duration, Written) {
    let mut best = Duration::MAX;
    let mut written = Written::default();
    for _ in 0..3 {
        let timed = flush();
        best = best.min(timed.took);
        written = timed.written;
        for file in timed.files {
            std::fs::remove_file(file).expect("the flush's file is removed");
        }
    }
    (best, written)
}

/// The least-squares line through `points` (x, y): intercept and slope.
fn line(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(xy, xx), p| {
        (xy + (p.0 - mx) * (p.1 - my), xx + (p.0 - mx) * (p.0 - mx))
    });
    let slope = sxy / sxx;
    (my - slope * mx, slope)
}

fn main() {
    let files: u64 = match std::env::args().nth(1).filter(|a| a != "--bench") {
        Some(n) => n.parse().expect("FILES is a count of files"),
        None => 16,
    };
    let root = std::env::temp_dir().join(format!("loadlens-lookup-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut ids = Ids(0x9e37_79b9_7f4a_7c15);
    // Every stored span's ids, in start order.
    let mut stored = Vec::new();
    let started = Instant::now();
    let mut key = None;
    for file in 0..files {
        let spans: Vec<Span> = (0..SPANS_PER_FILE)
            .map(|i| {
                let pair = ids.pair();
                stored.push(pair);
                span(pair, DAY + (file * SPANS_PER_FILE + i) * APART)
            })
            .collect();
        let (partition, rows) = batch(spans);
        write_partition(&root, &partition, &[rows], file + 1).expect("a file is written");
        key = Some(partition);
    }
    let key = key.expect("at least one file");
    let horizon = DAY + (files * SPANS_PER_FILE - 1) * APART;
    println!(
        "{files} files of {SPANS_PER_FILE} spans written in {:.1} s; each flush below holds {SPANS_PER_FILE} spans",
        started.elapsed().as_secs_f64()
    );
    let segment = files + 1;
    let write = |rows: &RecordBatch, recent: &mut RecentSpans| {
        let written =
            write_partition_after(&root, &key, std::slice::from_ref(rows), segment, recent)
                .expect("the flush is written");
        let path = written.path.clone().expect("the flush holds new spans");
        (path, written)
    };
    // After the horizon, no lookup: half the rows an earlier flush wrote.
    let half = SPANS_PER_FILE / 2;
    let earlier: Vec<(u128, u64)> = (0..half).map(|_| ids.pair()).collect();
    let at = |i: u64| horizon + (i + 1) * APART;
    let (_, first_flush) = batch(
        (0..half)
            .map(|i| span(earlier[i as usize], at(i)))
            .collect(),
    );
    let mut spans: Vec<Span> = (0..half)
        .map(|i| span(earlier[i as usize], at(i)))
        .collect();
    spans.extend((half..SPANS_PER_FILE).map(|i| span(ids.pair(), at(i))));
    let (_, after) = batch(spans);
    let (plain, written) = best_of_three(|| {
        let mut recent = RecentSpans::new(Dedupe::default());
        let (first, _) = write(&first_flush, &mut recent);
        let started = Instant::now();
        let (path, written) = write(&after, &mut recent);
        Timed {
            took: started.elapsed(),
            files: vec![first, path],
            written,
        }
    });
    assert_eq!(
        written.duplicates as u64, half,
        "the index drops the earlier spans"
    );
    assert_eq!(
        written.looked_up, 0,
        "nothing is looked up after the horizon"
    );
    let mut covered = 1;
    // (stored rows read, lookup ms) of each flush.
    let mut points = Vec::new();
    while covered <= files {
        // Half the flush resends spans spread evenly over the last
        // `covered` files; the other half is new spans at random times
        // among them.
        let first = (files - covered) * SPANS_PER_FILE;
        let range = files * SPANS_PER_FILE - first;
        let step = (range / (SPANS_PER_FILE / 2)).max(1);
        let mut spans: Vec<Span> = (first..files * SPANS_PER_FILE)
            .step_by(step as usize)
            .take((SPANS_PER_FILE / 2) as usize)
            .map(|at| span(stored[at as usize], DAY + at * APART))
            .collect();
        let resends = spans.len();
        while (spans.len() as u64) < SPANS_PER_FILE {
            let at = first + ids.next() % range;
            spans.push(span(ids.pair(), DAY + at * APART));
        }
        let (_, late) = batch(spans);
        let (took, written) = best_of_three(|| {
            let mut recent = RecentSpans::new(Dedupe::default());
            let started = Instant::now();
            let (path, written) = write(&late, &mut recent);
            Timed {
                took: started.elapsed(),
                files: vec![path],
                written,
            }
        });
        assert_eq!(written.duplicates, resends, "every resend is found");
        let lookup = took.saturating_sub(plain).as_secs_f64() * 1e3;
        points.push((written.lookup_rows_read as f64, lookup));
        println!(
            "{covered:>3} files covered: flush {:7.1} ms against {:6.1} ms after the horizon; lookup {lookup:7.1} ms, {} stored rows read",
            took.as_secs_f64() * 1e3,
            plain.as_secs_f64() * 1e3,
            written.lookup_rows_read,
        );
        covered *= 2;
    }
    if points.len() > 1 {
        let (fixed, per_row) = line(&points);
        println!(
            "lookup ≈ {fixed:.1} ms + {:.1} ns per stored row read (the least-squares line through the {} flushes)",
            per_row * 1e6,
            points.len()
        );
    }
    std::fs::remove_dir_all(&root).expect("the bench's folder is removed");
}
