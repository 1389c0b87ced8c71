//! The load models: when each iteration of a stage is due, and how many run
//! at once. Open models schedule arrivals on the clock whatever the target
//! does; a shard takes every n-th arrival of the whole run's schedule, so n
//! shards together send exactly what one process would.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::plan::{Shape, Stage};
use crate::stats::LATE_AFTER;

/// Offsets from the stage start of this shard's arrivals, in order.
pub fn arrivals(
    shape: Shape,
    duration: Duration,
    shard: (u32, u32),
    seed: u64,
) -> Box<dyn Iterator<Item = Duration> + Send> {
    let (index, count) = (u64::from(shard.0), u64::from(shard.1.max(1)));
    let limit = duration.as_secs_f64();
    // The g-th arrival of the whole run, for g = index, index + count, …
    let global = move |k: u64| global_arrival(k, shard);
    match shape {
        Shape::Constant { rate } => Box::new(
            (0u64..)
                .map(move |k| global(k) as f64 / rate)
                .take_while(move |&t| t < limit)
                .map(Duration::from_secs_f64),
        ),
        Shape::Ramp { from, to } => {
            // Arrivals so far N(t) = from·t + (to − from)·t²/(2D); the g-th
            // arrival is at N(t) = g, solved in a form stable for any sign.
            let a = (to - from) / (2.0 * limit);
            Box::new(
                (0u64..)
                    .map(move |k| {
                        let g = global(k) as f64;
                        if g == 0.0 {
                            return 0.0;
                        }
                        let disc = from * from + 4.0 * a * g;
                        if disc < 0.0 {
                            return f64::INFINITY;
                        }
                        let denominator = from + disc.sqrt();
                        if denominator > 0.0 {
                            2.0 * g / denominator
                        } else {
                            f64::INFINITY
                        }
                    })
                    .take_while(move |&t| t < limit)
                    .map(Duration::from_secs_f64),
            )
        }
        Shape::Poisson { rate } => {
            // Each shard is an independent Poisson process at rate / n; their
            // superposition is a Poisson process at the full rate.
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (index << 32));
            let shard_rate = rate / count as f64;
            let mut t = 0.0;
            Box::new(
                std::iter::from_fn(move || {
                    let u: f64 = rng.random();
                    t += -(1.0 - u).ln() / shard_rate;
                    Some(t)
                })
                .take_while(move |&t| t < limit)
                .map(Duration::from_secs_f64),
            )
        }
        Shape::Closed { .. } => Box::new(std::iter::empty()),
    }
}

/// The index in the whole schedule of this shard's `k`-th arrival: shard i
/// of n takes arrivals i, i + n, i + 2n, …, so no two shards share one.
/// Counted over all the run's stages, it is also the arrival's virtual user.
pub fn global_arrival(k: u64, shard: (u32, u32)) -> u64 {
    k * u64::from(shard.1.max(1)) + u64::from(shard.0)
}

/// Virtual users of a closed stage this shard runs, as global VU numbers.
pub fn shard_vus(vus: usize, shard: (u32, u32)) -> impl Iterator<Item = u64> {
    let (index, count) = (u64::from(shard.0), u64::from(shard.1.max(1)));
    (0..vus as u64).filter(move |vu| vu % count == index)
}

/// Runs stage `index` to its end (or an abort); returns how long it took.
pub async fn run_stage(
    engine: &Arc<Engine>,
    index: usize,
    stage: &Stage,
    max_in_flight: usize,
    seed: u64,
) -> Duration {
    let start = Instant::now();
    let end = start + stage.duration;
    match stage.shape {
        Shape::Closed { vus, think } => {
            let mut workers = tokio::task::JoinSet::new();
            for vu in shard_vus(vus, engine.shard) {
                let engine = engine.clone();
                workers.spawn(async move {
                    loop {
                        // One clock read serves as the check and the start.
                        let now = Instant::now();
                        if now >= end || engine.aborted() {
                            break;
                        }
                        engine.iteration(index, vu, now).await;
                        if !think.is_zero() {
                            // Thinking ends with the stage: a think time
                            // past its end would only stretch its seconds.
                            let next = (Instant::now() + think).min(end);
                            tokio::time::sleep_until(next.into()).await;
                        }
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        shape => {
            // Arrivals are dispatched by a thread of their own: tokio's timer
            // has millisecond resolution, a thread's sleep is an order of
            // magnitude finer, and every microsecond of dispatch lateness
            // would count as latency.
            let permits = Arc::new(Semaphore::new(max_in_flight));
            let schedule = arrivals(shape, stage.duration, engine.shard, seed);
            let runtime = tokio::runtime::Handle::current();
            let dispatcher = {
                let (engine, permits) = (engine.clone(), permits.clone());
                std::thread::Builder::new()
                    .name("loadlens-arrivals".into())
                    .spawn(move || {
                        dispatch(&engine, &runtime, index, (start, end), schedule, &permits)
                    })
                    .expect("spawn the arrival thread")
            };
            let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
            // Wait for every iteration still in flight.
            let _ = permits.acquire_many(max_in_flight as u32).await;
        }
    }
    start.elapsed()
}

/// Sleeps until `at`, finishing the last stretch of a long wait by spinning:
/// a thread's sleep overshoots by tens of microseconds, and arrivals spaced a
/// millisecond or more apart are cheap to time exactly. Short gaps (high
/// rates) only sleep, so the thread never spins for long. A long gap (a low
/// rate, a ramp near zero) is slept in slices, so that an abort or Ctrl-C
/// ends the stage within one slice, not at the next arrival.
fn wait_until(at: Instant, aborted: impl Fn() -> bool) {
    const SPIN: Duration = Duration::from_micros(120);
    const SLICE: Duration = Duration::from_millis(100);
    while at.saturating_duration_since(Instant::now()) > SLICE + SPIN {
        if aborted() {
            return;
        }
        std::thread::sleep(SLICE);
    }
    let now = Instant::now();
    if now >= at {
        return;
    }
    let gap = at - now;
    if gap < Duration::from_micros(500) {
        std::thread::sleep(gap);
        return;
    }
    std::thread::sleep(gap - SPIN);
    while Instant::now() < at {
        std::hint::spin_loop();
    }
}

/// Starts each arrival of `schedule` on the runtime at its time, or counts it
/// dropped when `max_in_flight` iterations are already running; then waits
/// for the stage's `(start, end)` to end, or an abort.
fn dispatch(
    engine: &Arc<Engine>,
    runtime: &tokio::runtime::Handle,
    index: usize,
    (start, end): (Instant, Instant),
    schedule: Box<dyn Iterator<Item = Duration> + Send>,
    permits: &Arc<Semaphore>,
) {
    for offset in schedule {
        let intended = start + offset;
        wait_until(intended, || engine.aborted());
        if engine.aborted() {
            break;
        }
        // Each arrival is a virtual user of its own, numbered across shards
        // and, counting on from the stages before, across stages.
        let arrival = engine.next_arrival.fetch_add(1, Ordering::Relaxed);
        let vu = global_arrival(arrival, engine.shard);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            engine.dropped(index, vu, intended);
            continue;
        };
        let late = Instant::now().saturating_duration_since(intended) > LATE_AFTER;
        engine.recorder.arrival(index, false, late);
        let engine = engine.clone();
        runtime.spawn(async move {
            engine.iteration(index, vu, intended).await;
            drop(permit);
        });
    }
    // The stage lasts its whole duration though its last arrival comes
    // before the end (1 / rate before, or much more when a ramp goes down
    // to zero): its rate is per second of the stage, not of the stretch up
    // to the last arrival.
    wait_until(end, || engine.aborted());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_wait_for_the_next_arrival_ends_at_an_abort() {
        use std::sync::atomic::AtomicBool;
        let aborted = Arc::new(AtomicBool::new(false));
        let flag = aborted.clone();
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        wait_until(started + Duration::from_secs(10), || {
            aborted.load(Ordering::Relaxed)
        });
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        setter.join().unwrap();
        // Without an abort, the wait still ends at its time, not before.
        let started = Instant::now();
        wait_until(started + Duration::from_millis(250), || false);
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    fn secs(shape: Shape, d: f64, shard: (u32, u32)) -> Vec<f64> {
        arrivals(shape, Duration::from_secs_f64(d), shard, 7)
            .map(|t| t.as_secs_f64())
            .collect()
    }

    #[test]
    fn constant_rate_shards_interleave_into_the_single_schedule() {
        let shape = Shape::Constant { rate: 100.0 };
        let one = secs(shape, 1.0, (0, 1));
        assert_eq!(one.len(), 100);
        let mut merged: Vec<f64> = (0..4).flat_map(|i| secs(shape, 1.0, (i, 4))).collect();
        merged.sort_by(f64::total_cmp);
        assert_eq!(merged, one);
        // 3 shards of a rate that does not divide evenly still add up.
        let total: usize = (0..3)
            .map(|i| secs(Shape::Constant { rate: 10.0 }, 1.0, (i, 3)).len())
            .sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn a_ramp_sends_the_area_under_its_rate() {
        // 0 → 100/s over 10 s: 500 arrivals, denser at the end.
        let t = secs(
            Shape::Ramp {
                from: 0.0,
                to: 100.0,
            },
            10.0,
            (0, 1),
        );
        assert_eq!(t.len(), 500);
        let first_half = t.iter().filter(|&&x| x < 5.0).count();
        assert_eq!(first_half, 125);
        // 100 → 0/s: 500 as well, denser at the start.
        let t = secs(
            Shape::Ramp {
                from: 100.0,
                to: 100.0,
            },
            2.0,
            (0, 1),
        );
        assert_eq!(t.len(), 200);
        let t = secs(
            Shape::Ramp {
                from: 100.0,
                to: 0.0,
            },
            10.0,
            (0, 1),
        );
        assert!((499..=500).contains(&t.len()), "{}", t.len());
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn poisson_arrivals_average_the_rate() {
        let t = secs(Shape::Poisson { rate: 1000.0 }, 20.0, (0, 1));
        // 20,000 expected; the standard deviation is √20,000 ≈ 141.
        assert!((19_400..=20_600).contains(&t.len()), "{}", t.len());
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        // Exponential gaps: standard deviation equals the mean.
        assert!((var.sqrt() / mean - 1.0).abs() < 0.05, "{mean} {var}");
    }

    #[test]
    fn shards_split_virtual_users_without_overlap() {
        let all: Vec<u64> = shard_vus(10, (0, 1)).collect();
        let mut merged: Vec<u64> = (0..3).flat_map(|i| shard_vus(10, (i, 3))).collect();
        merged.sort();
        assert_eq!(merged, all);
    }

    #[test]
    fn arrivals_are_numbered_across_shards_without_overlap() {
        // A Poisson shard's arrivals are not the single schedule's, but
        // their numbers still never meet another shard's.
        for shape in [
            Shape::Constant { rate: 100.0 },
            Shape::Poisson { rate: 100.0 },
        ] {
            let mut ids: Vec<u64> = (0..3)
                .flat_map(|i| {
                    let shard = (i, 3);
                    let n = arrivals(shape, Duration::from_secs(1), shard, 7).count() as u64;
                    (0..n).map(move |k| global_arrival(k, shard))
                })
                .collect();
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), n, "{shape:?}");
        }
        // At a constant rate an arrival's number is its place in the whole
        // run's schedule: the g-th arrival is due at g / rate.
        for i in 0..4 {
            let shard = (i, 4);
            let schedule = arrivals(
                Shape::Constant { rate: 100.0 },
                Duration::from_secs(1),
                shard,
                7,
            );
            for (k, at) in schedule.enumerate() {
                let g = global_arrival(k as u64, shard);
                assert_eq!(at, Duration::from_secs_f64(g as f64 / 100.0));
            }
        }
        assert_eq!(global_arrival(5, (0, 1)), 5);
        assert_eq!(global_arrival(5, (2, 4)), 22);
    }
}
