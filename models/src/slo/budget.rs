//! Error budgets and burn rates, from event or time-slice counts.
//!
//! - Occurrences: the budget is `(1 − target) × total events`; each bad event spends one.
//! - Timeslices: a slice is good when its good ratio reaches the slice target; the
//!   budget is `(1 − target) × slices in the window`; each bad slice spends one.
//! - Burn rate over a window: the bad fraction in it divided by `1 − target`.
//!   At 1 the budget lasts exactly the SLO window; at 14.4, a 30-day budget's
//!   2% goes in one hour.

use std::collections::BTreeMap;

use serde::Serialize;

use super::BurnRate;
use super::time::{DAY, Span};

/// Good and total events (or slices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub good: u64,
    pub total: u64,
}

impl Counts {
    /// Events (or slices) that were not good.
    pub fn bad(self) -> u64 {
        self.total.saturating_sub(self.good)
    }

    /// Bad over total, or `None` without events.
    pub fn bad_fraction(self) -> Option<f64> {
        (self.total > 0).then(|| self.bad() as f64 / self.total as f64)
    }
}

/// The error budget of one objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    /// Good fraction (the service level indicator), or `None` without events.
    pub sli: Option<f64>,
    /// The objective's target.
    pub target: f64,
    /// Bad events (or slices) the objective allows: `(1 − target) × total`.
    pub total: f64,
    /// Bad events (or slices) so far.
    pub consumed: f64,
    /// `total − consumed`; negative once the budget is overspent.
    pub remaining: f64,
    /// `remaining / total`: 1 untouched, 0 spent, below 0 overspent; `None` without events.
    pub remaining_fraction: Option<f64>,
    /// Whether the SLI reaches the target (false without events: nothing shows it is met).
    pub met: bool,
}

/// The budget for `counts` against `target`.
pub fn budget(target: f64, counts: Counts) -> Budget {
    let total = (1.0 - target) * counts.total as f64;
    let consumed = counts.bad() as f64;
    let sli = (counts.total > 0).then(|| counts.good as f64 / counts.total as f64);
    Budget {
        sli,
        target,
        total,
        consumed,
        remaining: total - consumed,
        remaining_fraction: (total > 0.0).then(|| (total - consumed) / total),
        // Compared as counts, so a target such as 0.999 is not lost to rounding
        // at exactly the allowed number of bad events.
        met: counts.total > 0 && consumed <= total * (1.0 + 1e-12),
    }
}

/// How fast the budget burns at a bad fraction: 1 spends it over exactly the SLO window.
pub fn burn_rate(bad_fraction: f64, target: f64) -> f64 {
    bad_fraction / (1.0 - target)
}

/// The SRE workbook's multiwindow multi-burn-rate alerts for a 30-day SLO: a
/// page at 14.4 over 1h and 5m (2% of the budget in an hour) and at 6 over 6h
/// and 30m (5% in six hours); a ticket at 3 over 1d and 2h and at 1 over 3d and
/// 6h (10% each). For another window the windows scale with it and the factors
/// stay, so each alert still means the same share of the budget.
pub fn default_burn_rates(window_seconds: u64) -> Vec<BurnRate> {
    const WORKBOOK: [(u64, u64, f64, &str); 4] = [
        (3600, 300, 14.4, "page"),
        (6 * 3600, 1800, 6.0, "page"),
        (DAY, 2 * 3600, 3.0, "ticket"),
        (3 * DAY, 6 * 3600, 1.0, "ticket"),
    ];
    let scale = |s: u64| -> u64 {
        if window_seconds == 30 * DAY {
            s
        } else {
            ((s as f64 * window_seconds as f64 / (30 * DAY) as f64).round() as u64).max(1)
        }
    };
    WORKBOOK
        .iter()
        .map(|&(long, short, factor, severity)| {
            let short = scale(short);
            BurnRate {
                long: Span::Seconds(scale(long).max(short + 1)),
                short: Span::Seconds(short),
                factor,
                severity: severity.to_string(),
            }
        })
        .collect()
}

/// The window lengths (seconds) whose counts an evaluation needs.
pub fn windows_needed(rates: &[BurnRate]) -> Vec<u64> {
    let mut windows: Vec<u64> = rates
        .iter()
        .flat_map(|b| [b.long, b.short])
        .map(Span::nominal_seconds)
        .collect();
    windows.sort_unstable();
    windows.dedup();
    windows
}

/// The burn rate over one window ending at the evaluation time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowBurn {
    /// The window's length, seconds.
    pub window: u64,
    /// The part of it with data, seconds: shorter when the evaluated range (a
    /// load run) is shorter than the window.
    pub covered: u64,
    /// Good and total events (or slices) in it.
    pub counts: Counts,
    /// Bad fraction in it.
    pub bad_fraction: Option<f64>,
    /// Burn rate in it.
    pub burn_rate: Option<f64>,
}

/// One multiwindow alert: it fires when both windows burn faster than `factor`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertCheck {
    pub long: WindowBurn,
    pub short: WindowBurn,
    pub factor: f64,
    pub severity: String,
    pub firing: bool,
}

/// Everything `loadlens slo check` reports for one objective.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectiveReport {
    /// Good and total events in the evaluated range.
    pub events: Counts,
    /// Good and total slices (Timeslices only).
    pub slices: Option<Counts>,
    pub budget: Budget,
    pub alerts: Vec<AlertCheck>,
}

fn alert(rate: &BurnRate, burn: impl Fn(u64) -> WindowBurn) -> AlertCheck {
    let long = burn(rate.long.nominal_seconds());
    let short = burn(rate.short.nominal_seconds());
    let over = |w: &WindowBurn| w.burn_rate.is_some_and(|b| b > rate.factor);
    AlertCheck {
        firing: over(&long) && over(&short),
        long,
        short,
        factor: rate.factor,
        severity: rate.severity.clone(),
    }
}

/// Occurrences: `all` are the events of the evaluated range (`range` seconds
/// long, ending at the evaluation time) and `windows` the events of the last
/// `w` seconds of it, for each `w` of [`windows_needed`].
pub fn evaluate_occurrences(
    target: f64,
    all: Counts,
    windows: &BTreeMap<u64, Counts>,
    rates: &[BurnRate],
    range: u64,
) -> ObjectiveReport {
    let burn = |window: u64| {
        let counts = windows.get(&window).copied().unwrap_or_default();
        let bad_fraction = counts.bad_fraction();
        WindowBurn {
            window,
            covered: window.min(range),
            counts,
            bad_fraction,
            burn_rate: bad_fraction.map(|f| burn_rate(f, target)),
        }
    };
    ObjectiveReport {
        events: all,
        slices: None,
        budget: budget(target, all),
        alerts: rates.iter().map(|r| alert(r, burn)).collect(),
    }
}

/// The events of one time slice; slice 0 ends at the evaluation time, slice 1 before it, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub index: u64,
    pub counts: Counts,
}

/// How slices are judged and counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slicing {
    /// Slice length, seconds.
    pub slice: u64,
    /// The good ratio a slice needs to be good.
    pub slice_target: f64,
    /// Slices the budget covers (the whole SLO window, or the run's slices).
    pub budget_slices: u64,
}

impl Slicing {
    /// Whether a slice misses its target; a slice without events is good (nothing went wrong).
    pub fn is_bad(&self, counts: Counts) -> bool {
        counts.total > 0 && (counts.good as f64) < self.slice_target * counts.total as f64
    }

    /// Slices in the last `seconds` (a partial slice counts as one).
    pub fn slices_in(&self, seconds: u64) -> u64 {
        seconds.div_ceil(self.slice)
    }
}

/// Timeslices: `slices` are the slices of the evaluated range (`range` seconds,
/// ending at the evaluation time) that have events.
pub fn evaluate_timeslices(
    target: f64,
    slicing: Slicing,
    slices: &[Slice],
    rates: &[BurnRate],
    range: u64,
) -> ObjectiveReport {
    let bad_before = |n: u64| {
        slices
            .iter()
            .filter(|s| s.index < n && slicing.is_bad(s.counts))
            .count() as u64
    };
    let events = slices.iter().fold(Counts::default(), |sum, s| Counts {
        good: sum.good + s.counts.good,
        total: sum.total + s.counts.total,
    });
    let in_range = slicing.slices_in(range);
    let all = Counts {
        good: slicing.budget_slices.saturating_sub(bad_before(in_range)),
        total: slicing.budget_slices,
    };
    let burn = |window: u64| {
        let covered = window.min(range);
        let n = slicing.slices_in(covered);
        let counts = Counts {
            good: n - bad_before(n).min(n),
            total: n,
        };
        let bad_fraction = counts.bad_fraction();
        WindowBurn {
            window,
            covered,
            counts,
            bad_fraction,
            burn_rate: bad_fraction.map(|f| burn_rate(f, target)),
        }
    };
    let mut budget = budget(target, all);
    if events.total == 0 {
        // Without a single event nothing shows that any slice was good.
        budget.met = false;
        budget.sli = None;
    }
    ObjectiveReport {
        events,
        slices: Some(all),
        budget,
        alerts: rates.iter().map(|r| alert(r, burn)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::tests::Seeded;

    fn counts(good: u64, total: u64) -> Counts {
        Counts { good, total }
    }

    #[test]
    fn occurrence_budget_matches_hand_figures() {
        // 99.5% of 10,000 events allows 50 bad; 20 bad spend 40% of it.
        let b = budget(0.995, counts(9_980, 10_000));
        assert!((b.total - 50.0).abs() < 1e-9, "{b:?}");
        assert_eq!(b.consumed, 20.0);
        assert!((b.remaining - 30.0).abs() < 1e-9);
        assert!((b.remaining_fraction.unwrap() - 0.6).abs() < 1e-9);
        assert!((b.sli.unwrap() - 0.998).abs() < 1e-12);
        assert!(b.met);
        // 80 bad overspend it by 60%.
        let b = budget(0.995, counts(9_920, 10_000));
        assert!(!b.met);
        assert!((b.remaining_fraction.unwrap() + 0.6).abs() < 1e-9);
        // Exactly at the target is met, despite 1 − 0.999 not being 0.001 in binary.
        assert!(budget(0.999, counts(999_000, 1_000_000)).met);
        assert!(!budget(0.999, counts(998_999, 1_000_000)).met);
        // No events: no SLI and not met.
        let b = budget(0.99, counts(0, 0));
        assert_eq!((b.sli, b.met, b.remaining_fraction), (None, false, None));
    }

    #[test]
    fn default_windows_are_the_workbook_for_thirty_days_and_scale_otherwise() {
        let w = default_burn_rates(30 * DAY);
        let pairs: Vec<(String, String, f64)> = w
            .iter()
            .map(|b| (b.long.to_string(), b.short.to_string(), b.factor))
            .collect();
        assert_eq!(
            pairs,
            [
                ("1h".into(), "5m".into(), 14.4),
                ("6h".into(), "30m".into(), 6.0),
                ("1d".into(), "2h".into(), 3.0),
                ("3d".into(), "6h".into(), 1.0),
            ]
        );
        let week = default_burn_rates(7 * DAY);
        assert_eq!(week[0].long, Span::Seconds(840));
        assert_eq!(week[0].short, Span::Seconds(70));
        assert_eq!(week[3].long, Span::Seconds(7 * 3 * 3600 * 24 / 30));
        // 6h is both a long and a short window.
        assert_eq!(windows_needed(&w).len(), 7);
    }

    /// Property: a burn factor of `f` over a window `long` means `f × long / W`
    /// of the budget went in that window, for random counts and targets.
    #[test]
    fn burn_rate_is_the_share_of_budget_spent_per_share_of_window() {
        let mut rng = Seeded::new(11);
        for _ in 0..10_000 {
            let target = 0.9 + 0.0999 * rng.uniform();
            let total = 1 + rng.below(1_000_000);
            let bad = rng.below(total + 1);
            let window_share = 1.0 / (1 + rng.below(720)) as f64;
            let burn = burn_rate(bad as f64 / total as f64, target);
            // Events in the window were `window_share` of the SLO window's
            // events (steady traffic), so the SLO window's budget is that much larger.
            let budget_of_window = (1.0 - target) * total as f64 / window_share;
            let spent_share = bad as f64 / budget_of_window;
            assert!(
                (burn * window_share - spent_share).abs() <= 1e-9 * spent_share.max(1.0),
                "target {target} total {total} bad {bad}"
            );
            // Burning at exactly 1 over the whole window spends exactly the budget.
            let b = budget(target, counts(total - bad, total));
            let spent = b.consumed / b.total;
            assert!((spent - burn).abs() <= 1e-9 * burn.max(1.0));
            assert_eq!(b.met, burn <= 1.0 + 1e-12, "burn {burn}");
        }
    }

    /// Property: burn rates and firing are monotonic in the bad count, and an
    /// alert fires exactly when both of its windows exceed the factor.
    #[test]
    fn alerts_fire_exactly_when_both_windows_exceed_the_factor() {
        let mut rng = Seeded::new(5);
        let rates = default_burn_rates(30 * DAY);
        for _ in 0..2_000 {
            let target = [0.9, 0.99, 0.995, 0.999][rng.below(4) as usize];
            let mut windows = BTreeMap::new();
            for w in windows_needed(&rates) {
                let total = rng.below(10_000);
                let bad = rng.below(total + 1).min(rng.below(total / 10 + 2));
                windows.insert(w, counts(total - bad, total));
            }
            let all = windows[&(3 * DAY)];
            let report = evaluate_occurrences(target, all, &windows, &rates, 30 * DAY);
            for a in &report.alerts {
                let exceeds = |c: Counts| {
                    c.total > 0 && c.bad() as f64 / c.total as f64 / (1.0 - target) > a.factor
                };
                let expected =
                    exceeds(windows[&a.long.window]) && exceeds(windows[&a.short.window]);
                assert_eq!(a.firing, expected, "{a:?}");
            }
        }
    }

    #[test]
    fn windows_longer_than_the_range_are_clipped() {
        let rates = default_burn_rates(30 * DAY);
        let mut windows = BTreeMap::new();
        for w in windows_needed(&rates) {
            // A ten-minute run: windows of five minutes or more see all of it.
            windows.insert(
                w,
                if w >= 600 {
                    counts(900, 1000)
                } else {
                    counts(460, 500)
                },
            );
        }
        let report = evaluate_occurrences(0.99, counts(900, 1000), &windows, &rates, 600);
        let page = &report.alerts[0];
        assert_eq!((page.long.window, page.long.covered), (3600, 600));
        assert_eq!((page.short.window, page.short.covered), (300, 300));
        // 10% bad against a 1% budget is a burn rate of 10; the last 5 minutes, 8%: 8.
        assert!((page.long.burn_rate.unwrap() - 10.0).abs() < 1e-9);
        assert!((page.short.burn_rate.unwrap() - 8.0).abs() < 1e-9);
        assert!(!page.firing, "10 and 8 stay under 14.4");
        assert!(report.alerts[1].firing, "both over 6");
    }

    #[test]
    fn timeslices_count_bad_slices() {
        let slicing = Slicing {
            slice: 60,
            slice_target: 0.95,
            budget_slices: 60,
        };
        // One hour of one-minute slices; slices 0 and 10 miss 95%, slice 20 has no events.
        let slices: Vec<Slice> = (0..60)
            .filter(|&i| i != 20)
            .map(|i| Slice {
                index: i,
                counts: if i == 0 || i == 10 {
                    counts(90, 100)
                } else {
                    counts(100, 100)
                },
            })
            .collect();
        let rates = vec![BurnRate {
            long: Span::Seconds(3600),
            short: Span::Seconds(300),
            factor: 2.0,
            severity: "page".into(),
        }];
        let report = evaluate_timeslices(0.9, slicing, &slices, &rates, 3600);
        assert_eq!(report.slices, Some(counts(58, 60)));
        assert_eq!(report.events, counts(5_880, 5_900));
        let b = report.budget;
        assert!(
            (b.total - 6.0).abs() < 1e-9 && b.consumed == 2.0 && b.met,
            "{b:?}"
        );
        let a = &report.alerts[0];
        // Last 5 slices: 1 bad of 5 = 0.2, burn 2.0 (not above 2); the hour: 2/60.
        assert_eq!(a.short.counts, counts(4, 5));
        assert!((a.short.burn_rate.unwrap() - 2.0).abs() < 1e-9);
        assert!((a.long.bad_fraction.unwrap() - 2.0 / 60.0).abs() < 1e-12);
        assert!(!a.firing);
        assert!(slicing.is_bad(counts(94, 100)) && !slicing.is_bad(counts(95, 100)));
        assert!(!slicing.is_bad(counts(0, 0)));
    }

    /// Property: for any slice pattern, the bad slices in a window never exceed
    /// the window's slices, and widening a window never lowers its bad count.
    #[test]
    fn timeslice_windows_are_consistent() {
        let mut rng = Seeded::new(23);
        for _ in 0..500 {
            let slice = 1 + rng.below(600);
            let range = slice * (1 + rng.below(200));
            let slicing = Slicing {
                slice,
                slice_target: 0.5 + 0.49 * rng.uniform(),
                budget_slices: range / slice,
            };
            let slices: Vec<Slice> = (0..range / slice)
                .map(|index| {
                    let total = rng.below(50);
                    Slice {
                        index,
                        counts: counts(total - rng.below(total + 1) / 4, total),
                    }
                })
                .collect();
            let rates = default_burn_rates(range.max(2));
            let report = evaluate_timeslices(0.99, slicing, &slices, &rates, range);
            for a in &report.alerts {
                for w in [a.long, a.short] {
                    assert!(w.counts.good <= w.counts.total);
                    assert_eq!(w.counts.total, slicing.slices_in(w.covered));
                }
                assert!(a.long.covered >= a.short.covered);
                assert!(a.long.counts.bad() >= a.short.counts.bad());
            }
        }
    }
}
