//! Critical path of a trace and its attribution to operations, with Amdahl's what-if bound.
//!
//! The critical path of a span is the chain of work that decided when it
//! ended. Walking backwards from the span's end: its last-finishing child is on
//! the path; before that child started, the latest child that had ended by
//! then; and so on. Time between those children, when none of them was
//! running, is the span's own (self) time on the path. Each child on the path
//! is walked the same way, so the path of a trace is a sequence of intervals,
//! each owned by exactly one span, that together cover the root from its start
//! to its end.
//!
//! Rules, chosen so the intervals always add up to the root's duration:
//!
//! - Only parent/child edges count. Links (OpenTelemetry's FOLLOWS_FROM) never
//!   make a span a child: a span without a parent that is not the root is
//!   *detached* and left out.
//! - A child is clamped to its parent's interval; a child that outlives its
//!   parent (or starts before it, under clock skew) counts only for the part
//!   inside. A child entirely outside its parent is not on the path.
//! - A child that overlaps the one chosen after it is not on the path: the
//!   parent waited for the later one, and the time before that started is the
//!   parent's own.
//! - A span whose parent is missing from the trace (the parent was lost or not
//!   sampled) is *reattached* to the root, the only ancestor known for sure.
//! - A span id seen twice (a resent span) counts once, the first time.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One span of a trace, as the critical path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span<K> {
    /// The span id.
    pub id: u64,
    /// The parent span id; `None` for a root.
    pub parent: Option<u64>,
    /// Start time, ns.
    pub start: i64,
    /// End time, ns.
    pub end: i64,
    /// What the time is attributed to, e.g. (service, operation).
    pub key: K,
}

/// One interval of the critical path, owned by one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the span in the input slice.
    pub span: usize,
    /// Start, ns.
    pub start: i64,
    /// End, ns.
    pub end: i64,
}

impl Segment {
    /// Length in ns.
    pub fn len(&self) -> i64 {
        self.end - self.start
    }

    /// Whether the segment has no length.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// The critical path of one trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracePath {
    /// Index of the root span.
    pub root: usize,
    /// The root's duration, ns: the sum of the segments' lengths.
    pub duration: i64,
    /// The path in time order; no two segments overlap, and none is empty.
    pub segments: Vec<Segment>,
    /// Per input span: its self time (clamped duration minus the time any of
    /// its clamped children ran), ns; `None` for spans outside the root's tree
    /// (detached, repeated ids, or a cycle in corrupt data).
    pub self_time: Vec<Option<i64>>,
    /// Spans whose parent was missing, walked as children of the root.
    pub reattached: usize,
    /// Spans left out: roots other than `root`, and spans only they reach.
    pub detached: usize,
}

impl TracePath {
    /// Time on the path per input span, ns (zero for spans not on it).
    pub fn on_path(&self) -> Vec<i64> {
        let mut totals = vec![0; self.self_time.len()];
        for segment in &self.segments {
            totals[segment.span] += segment.len();
        }
        totals
    }
}

/// Why no path could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the trace has no spans")]
    Empty,
    #[error("root index {root} is out of range for a trace of {spans} spans")]
    NoSuchRoot { root: usize, spans: usize },
}

/// The root a trace's path starts from when none is named: the longest span
/// without a parent (the earliest on a tie), else the longest span whose
/// parent is missing.
pub fn find_root<K>(spans: &[Span<K>]) -> Option<usize> {
    let ids: HashSet<u64> = spans.iter().map(|s| s.id).collect();
    let longest = |orphan: bool| {
        (0..spans.len())
            .filter(|&i| match spans[i].parent {
                None => !orphan,
                Some(parent) => orphan && !ids.contains(&parent),
            })
            .min_by_key(|&i| (spans[i].start - spans[i].end, spans[i].start, i))
    };
    longest(false).or_else(|| longest(true))
}

/// The critical path of the tree under `spans[root]`.
pub fn critical_path<K>(spans: &[Span<K>], root: usize) -> Result<TracePath, PathError> {
    if spans.is_empty() {
        return Err(PathError::Empty);
    }
    if root >= spans.len() {
        return Err(PathError::NoSuchRoot {
            root,
            spans: spans.len(),
        });
    }
    // The first span with each id; later copies are resent duplicates.
    let mut first: HashMap<u64, usize> = HashMap::with_capacity(spans.len());
    first.insert(spans[root].id, root);
    for (i, span) in spans.iter().enumerate() {
        first.entry(span.id).or_insert(i);
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut reattached = 0;
    for (i, span) in spans.iter().enumerate() {
        if i == root || first[&span.id] != i {
            continue;
        }
        // A span without a parent is a root of its own: detached.
        if let Some(parent) = span.parent {
            match first.get(&parent) {
                Some(&p) => children[p].push(i),
                None => {
                    children[root].push(i);
                    reattached += 1;
                }
            }
        }
    }

    let root_span = &spans[root];
    let (root_start, root_end) = (root_span.start, root_span.end.max(root_span.start));
    let mut self_time = vec![None; spans.len()];
    let mut segments = Vec::new();
    // Depth-first without recursion, so a deep trace cannot overflow the stack.
    let mut stack = vec![Frame::new(spans, &children, root, root_start, root_end)];
    while let Some(frame) = stack.last_mut() {
        if self_time[frame.span].is_none() {
            self_time[frame.span] = Some(frame.self_time());
        }
        let next = frame.next_on_path();
        let span = frame.span;
        match next {
            Some((child, start, end)) => {
                if frame.cursor > end {
                    segments.push(Segment {
                        span,
                        start: end,
                        end: frame.cursor,
                    });
                }
                frame.cursor = start;
                let child_frame = Frame::new(spans, &children, child, start, end);
                stack.push(child_frame);
            }
            None => {
                if frame.cursor > frame.start {
                    segments.push(Segment {
                        span,
                        start: frame.start,
                        end: frame.cursor,
                    });
                }
                // Children off the path still get their self time.
                let off_path = std::mem::take(&mut frame.off_path);
                stack.pop();
                for (child, start, end) in off_path {
                    mark_self_times(spans, &children, child, start, end, &mut self_time);
                }
            }
        }
    }
    segments.sort_by_key(|s| s.start);
    let in_tree = self_time.iter().filter(|t| t.is_some()).count();
    let unique = first.len();
    Ok(TracePath {
        root,
        duration: root_end - root_start,
        segments,
        self_time,
        reattached,
        detached: unique - in_tree,
    })
}

/// A span being walked: its clamped interval, its clamped children by end
/// time (latest first), and how far back the path has come.
struct Frame {
    span: usize,
    start: i64,
    end: i64,
    cursor: i64,
    /// (child, clamped start, clamped end), latest end first.
    children: Vec<(usize, i64, i64)>,
    next: usize,
    off_path: Vec<(usize, i64, i64)>,
}

impl Frame {
    fn new<K>(
        spans: &[Span<K>],
        children: &[Vec<usize>],
        span: usize,
        start: i64,
        end: i64,
    ) -> Self {
        let clamped = clamp_children(spans, &children[span], start, end);
        Frame {
            span,
            start,
            end,
            cursor: end,
            children: clamped,
            next: 0,
            off_path: Vec::new(),
        }
    }

    /// The latest-ending child that ended by the cursor; children passed over
    /// (they overlap the path) are kept for their self times.
    fn next_on_path(&mut self) -> Option<(usize, i64, i64)> {
        while let Some(&(child, start, end)) = self.children.get(self.next) {
            self.next += 1;
            if end <= self.cursor && end > start {
                return Some((child, start, end));
            }
            self.off_path.push((child, start, end));
        }
        None
    }

    /// The span's time not covered by any of its clamped children.
    fn self_time(&self) -> i64 {
        (self.end - self.start) - covered(&self.children)
    }
}

/// Children clamped to `[start, end]`, latest end first (then latest start, then input order).
fn clamp_children<K>(
    spans: &[Span<K>],
    children: &[usize],
    start: i64,
    end: i64,
) -> Vec<(usize, i64, i64)> {
    let mut clamped: Vec<(usize, i64, i64)> = children
        .iter()
        .map(|&c| {
            let s = spans[c].start.clamp(start, end);
            let e = spans[c].end.clamp(s, end);
            (c, s, e)
        })
        .collect();
    clamped.sort_by_key(|&(c, s, e)| (std::cmp::Reverse(e), std::cmp::Reverse(s), c));
    clamped
}

/// Length of the union of the intervals.
fn covered(intervals: &[(usize, i64, i64)]) -> i64 {
    let mut sorted: Vec<(i64, i64)> = intervals.iter().map(|&(_, s, e)| (s, e)).collect();
    sorted.sort_unstable();
    let mut total = 0;
    let mut reach = i64::MIN;
    for (s, e) in sorted {
        let s = s.max(reach);
        if e > s {
            total += e - s;
            reach = e;
        }
    }
    total
}

/// Self times of a subtree that is not on the path.
fn mark_self_times<K>(
    spans: &[Span<K>],
    children: &[Vec<usize>],
    span: usize,
    start: i64,
    end: i64,
    self_time: &mut [Option<i64>],
) {
    let mut stack = vec![(span, start, end)];
    while let Some((span, start, end)) = stack.pop() {
        if self_time[span].is_some() {
            continue;
        }
        let clamped = clamp_children(spans, &children[span], start, end);
        self_time[span] = Some((end - start) - covered(&clamped));
        stack.extend(clamped);
    }
}

/// Amdahl's bound: the most the whole can speed up when a part that takes
/// `share` of the time becomes `factor` times faster.
///
/// `1 / ((1 − share) + share / factor)`. It is a bound, not a forecast: once
/// the part shrinks, another branch may become the critical path.
pub fn amdahl_speedup(share: f64, factor: f64) -> f64 {
    1.0 / ((1.0 - share) + share / factor)
}

/// Critical-path totals of one key across traces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyTotals {
    /// Spans with this key in the traces' trees.
    pub calls: u64,
    /// Traces whose tree holds at least one such span.
    pub traces: u64,
    /// Time on the critical path, summed over traces, ns.
    pub path_ns: i64,
    /// Self time, summed over calls, ns.
    pub self_ns: i64,
    /// Per trace that holds the key: its share of that trace's duration.
    pub shares: Vec<f64>,
}

/// Critical paths of many traces, summed by key.
#[derive(Debug, Clone)]
pub struct Attribution<K> {
    /// Traces added (with a positive duration).
    pub traces: u64,
    /// Sum of the traces' durations, ns.
    pub duration_ns: i64,
    /// Per trace: its duration, ns.
    pub durations: Vec<i64>,
    /// Spans reattached to their trace's root because their parent was missing.
    pub reattached: u64,
    /// Spans left out because no parent edge joins them to the root.
    pub detached: u64,
    /// Totals per key.
    pub keys: BTreeMap<K, KeyTotals>,
}

impl<K> Default for Attribution<K> {
    fn default() -> Self {
        Attribution {
            traces: 0,
            duration_ns: 0,
            durations: Vec::new(),
            reattached: 0,
            detached: 0,
            keys: BTreeMap::new(),
        }
    }
}

/// One key's line of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySummary<K> {
    pub key: K,
    /// Spans with this key.
    pub calls: u64,
    /// Traces holding the key.
    pub traces: u64,
    /// Median over all traces of the key's share of the trace's duration (0 where absent).
    pub share_p50: f64,
    /// 95th percentile of the same.
    pub share_p95: f64,
    /// Time on the path over total duration, all traces together.
    pub share: f64,
    /// Mean time on the path per trace (all traces), ns.
    pub path_mean_ns: f64,
    /// Mean self time per call, ns.
    pub self_mean_ns: f64,
    /// Amdahl's bound on the end-to-end speed-up if the key were twice as fast.
    pub speedup_if_2x: f64,
}

/// A quantile of values (which it may reorder); `None` for none.
pub type Quantile = fn(&mut [f64], f64) -> Option<f64>;

impl<K: Clone + Ord> Attribution<K> {
    /// Adds one trace's path. A trace of zero duration has no shares and is skipped.
    pub fn add(&mut self, spans: &[Span<K>], path: &TracePath) {
        if path.duration <= 0 {
            return;
        }
        self.traces += 1;
        self.duration_ns += path.duration;
        self.durations.push(path.duration);
        self.reattached += path.reattached as u64;
        self.detached += path.detached as u64;
        let on_path = path.on_path();
        let mut in_trace: BTreeMap<&K, i64> = BTreeMap::new();
        for (i, span) in spans.iter().enumerate() {
            let Some(self_ns) = path.self_time[i] else {
                continue;
            };
            let totals = self.keys.entry(span.key.clone()).or_default();
            totals.calls += 1;
            totals.self_ns += self_ns;
            *in_trace.entry(&span.key).or_default() += on_path[i];
        }
        for (key, ns) in in_trace {
            let totals = self.keys.get_mut(key).expect("added above");
            totals.traces += 1;
            totals.path_ns += ns;
            totals.shares.push(ns as f64 / path.duration as f64);
        }
    }

    /// One line per key, largest total share first.
    pub fn summary(&self, quantile: Quantile) -> Vec<KeySummary<K>> {
        let mut lines: Vec<KeySummary<K>> = self
            .keys
            .iter()
            .map(|(key, totals)| {
                // Traces without the key count as a share of zero.
                let absent = self.traces as usize - totals.shares.len();
                let mut shares: Vec<f64> = std::iter::repeat_n(0.0, absent)
                    .chain(totals.shares.iter().copied())
                    .collect();
                let share = if self.duration_ns > 0 {
                    totals.path_ns as f64 / self.duration_ns as f64
                } else {
                    0.0
                };
                KeySummary {
                    key: key.clone(),
                    calls: totals.calls,
                    traces: totals.traces,
                    share_p50: quantile(&mut shares, 0.5).unwrap_or(0.0),
                    share_p95: quantile(&mut shares, 0.95).unwrap_or(0.0),
                    share,
                    path_mean_ns: totals.path_ns as f64 / self.traces.max(1) as f64,
                    self_mean_ns: totals.self_ns as f64 / totals.calls.max(1) as f64,
                    speedup_if_2x: amdahl_speedup(share, 2.0),
                }
            })
            .collect();
        lines.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.key.cmp(&b.key)));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(
        id: u64,
        parent: Option<u64>,
        start: i64,
        end: i64,
        key: &'static str,
    ) -> Span<&'static str> {
        Span {
            id,
            parent,
            start,
            end,
            key,
        }
    }

    /// The path as (key, start, end), in time order.
    fn path_of(spans: &[Span<&'static str>], root: usize) -> Vec<(&'static str, i64, i64)> {
        let path = critical_path(spans, root).unwrap();
        check_invariants(spans, &path);
        path.segments
            .iter()
            .map(|s| (spans[s.span].key, s.start, s.end))
            .collect()
    }

    /// Segments tile the root exactly: in order, touching, inside the root.
    fn check_invariants(spans: &[Span<&'static str>], path: &TracePath) {
        let root = &spans[path.root];
        let mut at = root.start;
        for segment in &path.segments {
            assert!(!segment.is_empty(), "{path:?}");
            assert_eq!(segment.start, at, "gap or overlap in {path:?}");
            at = segment.end;
        }
        if !path.segments.is_empty() {
            assert_eq!(at, root.end, "{path:?}");
        }
        let total: i64 = path.segments.iter().map(Segment::len).sum();
        assert_eq!(total, path.duration);
    }

    /// A generator CLIENT span, the API's SERVER span, its CLIENT call and the
    /// database's SERVER span, as the demo system produces them.
    fn demo_trace() -> Vec<Span<&'static str>> {
        vec![
            span(1, None, 0, 100, "generator"),
            span(2, Some(1), 5, 95, "api"),
            span(3, Some(2), 30, 90, "api-call"),
            span(4, Some(3), 32, 88, "db"),
        ]
    }

    #[test]
    fn a_chain_from_the_generators_client_span_splits_into_each_tiers_own_time() {
        let spans = demo_trace();
        assert_eq!(find_root(&spans), Some(0));
        assert_eq!(
            path_of(&spans, 0),
            [
                ("generator", 0, 5),
                ("api", 5, 30),
                ("api-call", 30, 32),
                ("db", 32, 88),
                ("api-call", 88, 90),
                ("api", 90, 95),
                ("generator", 95, 100),
            ]
        );
        let path = critical_path(&spans, 0).unwrap();
        assert_eq!(path.on_path(), [10, 30, 4, 56]);
        assert_eq!(path.self_time, [Some(10), Some(30), Some(4), Some(56)]);
        assert_eq!((path.reattached, path.detached), (0, 0));
    }

    #[test]
    fn of_parallel_children_only_the_last_to_finish_is_on_the_path() {
        // Fan-out: three calls start together; the parent waits for the slowest.
        let spans = vec![
            span(1, None, 0, 100, "root"),
            span(2, Some(1), 10, 40, "fast"),
            span(3, Some(1), 10, 90, "slow"),
            span(4, Some(1), 10, 60, "medium"),
        ];
        assert_eq!(
            path_of(&spans, 0),
            [("root", 0, 10), ("slow", 10, 90), ("root", 90, 100)]
        );
        let path = critical_path(&spans, 0).unwrap();
        // Off-path children still have their self time.
        assert_eq!(path.self_time, [Some(20), Some(30), Some(80), Some(50)]);
    }

    #[test]
    fn sequential_children_are_all_on_the_path() {
        let spans = vec![
            span(1, None, 0, 100, "root"),
            span(2, Some(1), 10, 30, "first"),
            span(3, Some(1), 40, 70, "second"),
            span(4, Some(1), 70, 95, "third"),
        ];
        assert_eq!(
            path_of(&spans, 0),
            [
                ("root", 0, 10),
                ("first", 10, 30),
                ("root", 30, 40),
                ("second", 40, 70),
                ("third", 70, 95),
                ("root", 95, 100),
            ]
        );
    }

    #[test]
    fn a_child_overlapping_the_next_one_on_the_path_is_passed_over() {
        // "early" is still running when "late" starts; the path follows "late"
        // back to its start, then looks for a child that had ended by then:
        // only "before" qualifies, so "early" is not on the path.
        let spans = vec![
            span(1, None, 0, 100, "root"),
            span(2, Some(1), 5, 15, "before"),
            span(3, Some(1), 20, 60, "early"),
            span(4, Some(1), 50, 90, "late"),
        ];
        assert_eq!(
            path_of(&spans, 0),
            [
                ("root", 0, 5),
                ("before", 5, 15),
                ("root", 15, 50),
                ("late", 50, 90),
                ("root", 90, 100),
            ]
        );
        let path = critical_path(&spans, 0).unwrap();
        // The parent's self time excludes every child's time; the path's does not.
        assert_eq!(path.self_time[0], Some(100 - 10 - 70));
    }

    #[test]
    fn a_child_that_outlives_its_parent_counts_only_inside_it() {
        // The db span ends after the call that waited for it (an async
        // reply), and one span lies wholly after its parent ended.
        let spans = vec![
            span(1, None, 0, 100, "root"),
            span(2, Some(1), 10, 60, "call"),
            span(3, Some(2), 20, 80, "db"),
            span(4, Some(2), 70, 75, "late"),
            // Starts before its parent (clock skew): clamped at the front too.
            span(5, Some(1), -20, 5, "skewed"),
        ];
        assert_eq!(
            path_of(&spans, 0),
            [
                ("skewed", 0, 5),
                ("root", 5, 10),
                ("call", 10, 20),
                ("db", 20, 60),
                ("root", 60, 100),
            ]
        );
        let path = critical_path(&spans, 0).unwrap();
        // Clamped to nothing: a self time of zero, no time on the path.
        assert_eq!(path.self_time[3], Some(0));
        assert_eq!(path.on_path()[3], 0);
        assert_eq!(path.self_time[2], Some(40));
    }

    #[test]
    fn spans_whose_parent_is_missing_are_walked_under_the_root() {
        // The API's spans were lost; the db span's parent (the API's call) is
        // not in the trace.
        let spans = vec![
            span(1, None, 0, 100, "generator"),
            span(4, Some(3), 32, 88, "db"),
        ];
        assert_eq!(
            path_of(&spans, 0),
            [("generator", 0, 32), ("db", 32, 88), ("generator", 88, 100)]
        );
        let path = critical_path(&spans, 0).unwrap();
        assert_eq!((path.reattached, path.detached), (1, 0));
    }

    #[test]
    fn without_a_parentless_span_the_longest_orphan_is_the_root() {
        // The generator's span was dropped: both tiers' top spans are orphans.
        let spans = vec![
            span(4, Some(3), 32, 88, "db"),
            span(2, Some(1), 5, 95, "api"),
            span(3, Some(2), 30, 90, "api-call"),
        ];
        assert_eq!(find_root(&spans), Some(1));
        assert_eq!(
            path_of(&spans, 1),
            [
                ("api", 5, 30),
                ("api-call", 30, 32),
                ("db", 32, 88),
                ("api-call", 88, 90),
                ("api", 90, 95),
            ]
        );
    }

    #[test]
    fn linked_spans_are_not_children_even_when_they_finish_last() {
        // A FOLLOWS_FROM span carries a link to the root, not a parent: it is
        // a root of its own and is left out, though it ends last.
        let spans = vec![
            span(1, None, 0, 100, "root"),
            span(2, Some(1), 10, 50, "child"),
            span(3, None, 20, 200, "follows-from"),
            span(4, Some(3), 30, 190, "under-follows-from"),
        ];
        assert_eq!(find_root(&spans), Some(2), "the longest parentless span");
        assert_eq!(
            path_of(&spans, 0),
            [("root", 0, 10), ("child", 10, 50), ("root", 50, 100)]
        );
        let path = critical_path(&spans, 0).unwrap();
        assert_eq!((path.reattached, path.detached), (0, 2));
        assert_eq!(path.self_time[2], None);
        assert_eq!(path.self_time[3], None);
    }

    #[test]
    fn a_resent_span_counts_once() {
        let mut spans = demo_trace();
        spans.push(spans[3].clone());
        let path = critical_path(&spans, 0).unwrap();
        assert_eq!(path.on_path(), [10, 30, 4, 56, 0]);
        assert_eq!(path.self_time[4], None);
        assert_eq!(path.detached, 0);
    }

    #[test]
    fn a_cycle_in_corrupt_data_neither_hangs_nor_joins_the_path() {
        let spans = vec![
            span(1, None, 0, 100, "root"),
            span(2, Some(3), 10, 50, "a"),
            span(3, Some(2), 10, 50, "b"),
            span(4, Some(4), 10, 50, "own-parent"),
        ];
        assert_eq!(path_of(&spans, 0), [("root", 0, 100)]);
        assert_eq!(critical_path(&spans, 0).unwrap().detached, 3);
    }

    #[test]
    fn a_deep_trace_does_not_overflow_the_stack() {
        let depth = 200_000;
        let spans: Vec<Span<&'static str>> = (0..depth)
            .map(|i| {
                span(
                    i as u64 + 1,
                    (i > 0).then_some(i as u64),
                    i,
                    2 * depth - i,
                    "nested",
                )
            })
            .collect();
        let path = critical_path(&spans, 0).unwrap();
        assert_eq!(path.segments.len(), 2 * depth as usize - 1);
        assert_eq!(path.duration, 2 * depth);
    }

    #[test]
    fn random_traces_always_tile_their_root() {
        // xorshift: random trees with spans outside their parents, lost
        // parents, extra roots and repeated ids.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..2_000 {
            let n = 1 + next(30) as usize;
            let spans: Vec<Span<&'static str>> = (0..n)
                .map(|i| {
                    let start = next(1_000) as i64 - 100;
                    let end = start + next(600) as i64;
                    let parent = match (i, next(10)) {
                        (0, _) | (_, 0) => None,
                        (_, 1) => Some(1_000 + next(5)),
                        _ => Some(next(i as u64) + 1),
                    };
                    span(next(n as u64 + 2) + 1, parent, start, end, "x")
                })
                .collect();
            let root = find_root(&spans).unwrap_or(0);
            let path = critical_path(&spans, root).unwrap();
            check_invariants(&spans, &path);
            for segment in &path.segments {
                let owner = &spans[segment.span];
                assert!(
                    owner.start <= segment.start && segment.end <= owner.end,
                    "{path:?}"
                );
                assert!(path.self_time[segment.span].is_some());
            }
            let unique: HashSet<u64> = spans.iter().map(|s| s.id).collect();
            let in_tree = path.self_time.iter().flatten().count();
            assert_eq!(in_tree + path.detached, unique.len(), "{spans:?}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let none: Vec<Span<&'static str>> = Vec::new();
        assert_eq!(critical_path(&none, 0), Err(PathError::Empty));
        assert_eq!(
            critical_path(&demo_trace(), 4),
            Err(PathError::NoSuchRoot { root: 4, spans: 4 })
        );
    }

    #[test]
    fn amdahl_bounds_the_speed_up() {
        assert_eq!(amdahl_speedup(0.0, 2.0), 1.0);
        assert_eq!(amdahl_speedup(1.0, 2.0), 2.0);
        assert!((amdahl_speedup(0.5, 2.0) - 4.0 / 3.0).abs() < 1e-12);
        assert!((amdahl_speedup(0.9, 10.0) - 1.0 / 0.19).abs() < 1e-12);
    }

    /// Nearest-rank quantile, enough for the tests.
    fn nearest_rank(values: &mut [f64], q: f64) -> Option<f64> {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        (n > 0).then(|| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
    }

    #[test]
    fn attribution_sums_shares_over_traces_and_counts_absent_keys_as_zero() {
        let mut attribution = Attribution::default();
        let first = demo_trace();
        attribution.add(&first, &critical_path(&first, 0).unwrap());
        // A second trace, twice as long, that never reaches the database.
        let second = vec![
            span(1, None, 0, 200, "generator"),
            span(2, Some(1), 0, 200, "api"),
        ];
        attribution.add(&second, &critical_path(&second, 0).unwrap());
        // A trace of zero duration is skipped.
        let empty = vec![span(1, None, 5, 5, "generator")];
        attribution.add(&empty, &critical_path(&empty, 0).unwrap());

        assert_eq!(attribution.traces, 2);
        assert_eq!(attribution.duration_ns, 300);
        let summary = attribution.summary(nearest_rank);
        let keys: Vec<&str> = summary.iter().map(|s| s.key).collect();
        // api: 30 + 200 of 300; db: 56; generator: 10; api-call: 4.
        assert_eq!(keys, ["api", "db", "generator", "api-call"]);
        let api = &summary[0];
        assert_eq!((api.calls, api.traces), (2, 2));
        assert!((api.share - 230.0 / 300.0).abs() < 1e-12);
        assert!((api.share_p50 - 0.3).abs() < 1e-12);
        assert!((api.share_p95 - 1.0).abs() < 1e-12);
        assert!((api.path_mean_ns - 115.0).abs() < 1e-12);
        assert!((api.self_mean_ns - 115.0).abs() < 1e-12);
        let db = &summary[1];
        assert_eq!((db.calls, db.traces), (1, 1));
        assert_eq!(db.share_p50, 0.0, "absent from one trace of two");
        assert!((db.share_p95 - 0.56).abs() < 1e-12);
        assert!((db.speedup_if_2x - amdahl_speedup(56.0 / 300.0, 2.0)).abs() < 1e-12);
        let total: f64 = summary.iter().map(|s| s.share).sum();
        assert!((total - 1.0).abs() < 1e-12, "shares add up to {total}");
    }
}
