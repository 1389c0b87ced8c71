//! What to run: target, load model, telemetry destination.

use std::time::Duration;

use serde::Serialize;

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
    /// `open`, `closed` or `ladder`, as stored in the `runs` table.
    pub fn name(&self) -> &'static str {
        match self {
            LoadModel::Open { .. } => "open",
            LoadModel::Closed { .. } => "closed",
            LoadModel::Ladder { .. } => "ladder",
        }
    }
}

/// One run of the generator.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Run id; shared by all shards of a run.
    pub run_id: String,
    /// Scenario name.
    pub scenario: String,
    /// Target URL (http only for now).
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// The load model.
    pub model: LoadModel,
    /// OTLP/gRPC endpoint of the collector; `None` turns telemetry off.
    pub collector: Option<String>,
    /// Most requests in flight at once (open model); arrivals beyond it are dropped and counted.
    pub max_in_flight: usize,
    /// Per-request timeout.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Whether to send `traceparent` to the target.
    pub propagate: bool,
    /// Shard index and count.
    pub shard: (u32, u32),
    /// Whether to print progress lines to stderr.
    pub progress: bool,
}

impl RunConfig {
    /// Defaults for a quick run against one URL.
    pub fn new(url: impl Into<String>, model: LoadModel) -> Self {
        RunConfig {
            run_id: new_run_id(),
            scenario: "quick".into(),
            url: url.into(),
            method: "GET".into(),
            model,
            collector: None,
            max_in_flight: 10_000,
            timeout: Duration::from_secs(10),
            propagate: true,
            shard: (0, 1),
            progress: true,
        }
    }
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
    fn run_ids_are_path_safe() {
        let id = new_run_id();
        assert_eq!(id.len(), "20261123-120000-abcdef".len());
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
