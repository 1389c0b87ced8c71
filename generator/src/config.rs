//! What to run: target, load model, telemetry destination.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::plan::{LoadPlan, Shape, WARMUP, stage};
use crate::scenario::ModelName;

/// How requests arrive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum LoadModel {
    /// Open model: requests start at a constant rate, whatever the responses do.
    Open {
        /// Requests per second.
        rate: f64,
        #[serde(with = "secs")]
        duration: Duration,
    },
    /// Closed model: a fixed number of workers, each sending its next request
    /// when the previous one completes.
    Closed {
        concurrency: usize,
        #[serde(with = "secs")]
        duration: Duration,
    },
    /// A series of closed-model steps of growing concurrency, for USL fitting.
    Ladder {
        steps: Vec<usize>,
        #[serde(with = "secs")]
        step_duration: Duration,
    },
}

impl LoadModel {
    /// The stages of this model, with an optional warm-up first.
    pub fn plan(&self, max_in_flight: usize, warmup: Option<Duration>) -> LoadPlan {
        let (model, mut stages) = match self {
            LoadModel::Open { rate, duration } => (
                ModelName::Constant,
                vec![stage("main", Shape::Constant { rate: *rate }, *duration)],
            ),
            LoadModel::Closed {
                concurrency,
                duration,
            } => (
                ModelName::Closed,
                vec![stage(
                    "main",
                    Shape::Closed {
                        vus: *concurrency,
                        think: Duration::ZERO,
                    },
                    *duration,
                )],
            ),
            LoadModel::Ladder {
                steps,
                step_duration,
            } => (
                ModelName::Ladder,
                steps
                    .iter()
                    .map(|&vus| {
                        stage(
                            &format!("c={vus}"),
                            Shape::Closed {
                                vus,
                                think: Duration::ZERO,
                            },
                            *step_duration,
                        )
                    })
                    .collect(),
            ),
        };
        if let (Some(warmup), Some(first)) = (warmup.filter(|w| !w.is_zero()), stages.first()) {
            let mut warm = stage(WARMUP, first.shape, warmup);
            warm.warmup = true;
            stages.insert(0, warm);
        }
        LoadPlan {
            model,
            stages,
            max_in_flight,
            seed: None,
        }
    }

    /// Checks the numbers a user typed.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            LoadModel::Open { rate, .. } if !(rate.is_finite() && *rate > 0.0) => Err(format!(
                "--rate must be a positive number of requests per second, not {rate}"
            )),
            LoadModel::Closed { concurrency: 0, .. } => {
                Err("--concurrency must be at least 1".into())
            }
            LoadModel::Ladder { steps, .. } if steps.is_empty() || steps.contains(&0) => {
                Err("ladder steps must be concurrency levels of at least 1".into())
            }
            _ => Ok(()),
        }
    }
}

/// How to run a plan: identity, telemetry, sharding, where the ledger goes.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Run id; shared by all shards of a run.
    pub run_id: String,
    /// OTLP/gRPC endpoint of the collector; `None` turns telemetry off.
    pub collector: Option<String>,
    /// Whether to send `traceparent` (and `tracestate`) to the target.
    pub propagate: bool,
    /// Shard index and count.
    pub shard: (u32, u32),
    /// Whether to print progress to stderr.
    pub progress: bool,
    /// Store to write the ledger into; `None`: no ledger.
    pub ledger: Option<PathBuf>,
    /// Wall-clock time to start at (shards of one run start together).
    #[serde(skip)]
    pub start_at: Option<SystemTime>,
    /// Called on the ledger thread after each ledger file is written. A file's
    /// sort and Parquet encoding allocate tens of megabytes at once and free
    /// them; the `loadlens` binary passes a function that has its allocator
    /// return those pages, or a long run's RSS creeps up (BENCHMARKS.md).
    #[serde(skip)]
    pub after_ledger_file: Option<fn()>,
}

impl RunConfig {
    /// Defaults: a new run id, telemetry off, one shard, progress on, no ledger.
    pub fn new() -> Self {
        RunConfig {
            run_id: new_run_id(),
            collector: None,
            propagate: true,
            shard: (0, 1),
            progress: true,
            ledger: None,
            start_at: None,
            after_ledger_file: None,
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses `--shard i/n` (0-based i).
pub fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("invalid shard '{text}': write it as i/n with 0 <= i < n, e.g. 0/4");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Parses `--tracestate`: a W3C `tracestate` such as `vendor=value,other=x`.
pub fn parse_trace_state(text: &str) -> Result<exporter::TraceState, String> {
    exporter::TraceState::parse(text)
        .map_err(|e| format!("'{text}' does not follow W3C Trace Context: {e}"))
}

/// Parses `--start-at`: RFC 3339 UTC (`2026-11-23T10:00:00Z`) or Unix seconds.
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    let bad =
        || format!("invalid start time '{text}': give Unix seconds or UTC as 2026-11-23T10:00:00Z");
    if let Ok(secs) = text.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map(|d| UNIX_EPOCH + d)
            .map_err(|_| bad());
    }
    let t = text.trim().strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if d.len() != 3 || h.len() != 3 {
        return Err(bad());
    }
    let days = schema::layout::days_from_civil(d[0], d[1], d[2]);
    let secs = days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2];
    let frac: f64 = format!("0.{frac}").parse().map_err(|_| bad())?;
    if secs < 0 {
        return Err(bad());
    }
    Ok(UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_secs_f64(frac))
}

/// A run id that sorts by time and is safe in a path: `YYYYMMDD-HHMMSS-xxxxxx`.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let day = schema::layout::utc_day(now * 1_000_000_000).replace('-', "");
    let secs = now.rem_euclid(86_400);
    let suffix: u32 = rand::random::<u32>() & 0xff_ffff;
    format!(
        "{day}-{:02}{:02}{:02}-{suffix:06x}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub use schema::units::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_start_times_parse() {
        assert_eq!(parse_shard("2/8"), Ok((2, 8)));
        assert!(parse_shard("8/8").unwrap_err().contains("0 <= i < n"));
        assert!(parse_shard("x").is_err());
        let t = parse_start_at("2026-11-23T10:00:00.5Z").unwrap();
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert_eq!(secs, 1_795_428_000.5);
        assert_eq!(
            parse_start_at("1795428000").unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_795_428_000)
        );
        assert!(parse_start_at("tomorrow").unwrap_err().contains("UTC"));
    }

    #[test]
    fn run_ids_are_path_safe() {
        let id = new_run_id();
        assert_eq!(id.len(), "20261123-120000-abcdef".len());
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
