//! The scenario file (`loadlens run scenario.yaml`): what to request, in what
//! mix, at what load, and which thresholds decide pass or fail.
//!
//! ```yaml
//! name: shop
//! base_url: http://127.0.0.1:8081
//! headers: { accept: application/json }
//! tracestate: shop=load-test
//! feeders:
//!   users: { file: users.csv, mode: unique }
//! requests:
//!   login:
//!     method: POST
//!     url: /login
//!     body: '{"user": "{{users.name}}"}'
//!     extract: { token: { json: $.token } }
//!   items:
//!     url: /api/items?page={{rand_int 1 10}}
//!     headers: { authorization: "Bearer {{token}}" }
//!     checks: [ { status: 200 }, { body_contains: items } ]
//! flows:
//!   browse: [login, items]
//! mix: { browse: 1, items: 9 }
//! load: { model: constant, rate: 200, duration: 30s, warmup: 5s }
//! thresholds:
//!   http_req_duration: ["p(99)<250", "p(95)<100"]
//!   errors: ["rate<0.01"]
//! ```
//!
//! Every key is checked: a typo is an error naming the file, line and column.

pub mod check;
pub mod feeder;
pub mod locate;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// A scenario file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Scenario name, recorded with the run (default: the file's stem).
    #[serde(default)]
    pub name: Option<String>,
    /// Prefix for request URLs that start with `/`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Protocol settings shared by every request.
    #[serde(default)]
    pub http: HttpSpec,
    /// Headers sent with every request (a request's own headers win).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// W3C `tracestate` sent beside `traceparent` with every request and
    /// recorded as each request span's trace state: `vendor=value,other=x`.
    #[serde(default)]
    pub tracestate: Option<String>,
    /// Row sources for templates: `{{feeder.column}}`.
    #[serde(default)]
    pub feeders: BTreeMap<String, FeederSpec>,
    /// A token shared by all virtual users, sent as a header on every request.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    /// Named requests.
    pub requests: BTreeMap<String, RequestSpec>,
    /// Named sequences of requests; values extracted by one step feed the next.
    #[serde(default)]
    pub flows: BTreeMap<String, Vec<String>>,
    /// Relative weights of requests and flows (default: every flow, or else
    /// every request, weight 1).
    #[serde(default)]
    pub mix: BTreeMap<String, f64>,
    /// The load model.
    pub load: LoadSpec,
    /// Pass/fail criteria in the k6 style, by metric.
    #[serde(default)]
    pub thresholds: BTreeMap<String, Vec<ThresholdSpec>>,
    /// Telemetry settings.
    #[serde(default)]
    pub telemetry: TelemetrySpec,
}

/// Protocol settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `auto` (HTTP/2 when TLS negotiates it, else HTTP/1.1), `http1`, or
    /// `http2` (over TLS; over `http://` this is h2c with prior knowledge).
    #[serde(default)]
    pub version: HttpVersion,
    /// Per-request timeout, from send to the end of the body (default 10s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    /// TCP (and TLS) connect timeout (default: the request timeout). It
    /// bounds the name lookup too, separately: a new connection may take
    /// the lookup's timeout plus one connect timeout per address.
    #[serde(default, deserialize_with = "duration_opt")]
    pub connect_timeout: Option<Duration>,
    /// Extra PEM file of CA certificates to trust besides the built-in roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Most requests on the wire at once (like wrk's connections); more wait
    /// in the generator, which counts as latency but not as service time.
    /// Default: no limit besides `max_in_flight`.
    #[serde(default)]
    pub connections: Option<usize>,
}

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    #[default]
    Auto,
    Http1,
    Http2,
}

/// A CSV (with a header row) or JSON (array of objects) file of rows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeederSpec {
    /// Path, relative to the scenario file.
    pub file: PathBuf,
    /// `sequential` (round robin), `random`, or `unique` (each row once).
    #[serde(default)]
    pub mode: FeederMode,
}

/// How rows are handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeederMode {
    #[default]
    Sequential,
    Random,
    Unique,
}

/// One named request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// HTTP method (default GET).
    #[serde(default = "get")]
    pub method: String,
    /// URL, absolute or starting with `/` (then `base_url` is prepended). Templated.
    pub url: String,
    /// Request headers. Values are templated.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body. Templated.
    #[serde(default)]
    pub body: Option<String>,
    /// What the response must satisfy; a failed check is error type `check_failed`.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Values to take from the response into later steps: `{{name}}`.
    #[serde(default)]
    pub extract: BTreeMap<String, ExtractSpec>,
}

fn get() -> String {
    "GET".into()
}

/// One check on a response.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Allowed status codes: `200` or `[200, 204]`.
    #[serde(default)]
    pub status: Option<OneOrMany<u16>>,
    /// A header that must be present; with `equals`/`contains`/`matches`, its value.
    #[serde(default)]
    pub header: Option<String>,
    /// The whole header value.
    #[serde(default)]
    pub equals: Option<String>,
    /// A substring of the header value.
    #[serde(default)]
    pub contains: Option<String>,
    /// A regular expression the header value (or, without `header`, the body) matches.
    #[serde(default)]
    pub matches: Option<String>,
    /// A substring of the body.
    #[serde(default)]
    pub body_contains: Option<String>,
}

/// Where an extracted value comes from: exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractSpec {
    /// A JSON path into the body: `$.items[0].id`, `$['key']`.
    #[serde(default)]
    pub json: Option<String>,
    /// A regular expression on the body; the first capture group (or the match).
    #[serde(default)]
    pub regex: Option<String>,
    /// A response header.
    #[serde(default)]
    pub header: Option<String>,
}

impl ExtractSpec {
    pub fn json(path: &str) -> Self {
        ExtractSpec {
            json: Some(path.into()),
            ..Default::default()
        }
    }

    pub fn regex(pattern: &str) -> Self {
        ExtractSpec {
            regex: Some(pattern.into()),
            ..Default::default()
        }
    }

    pub fn header(name: &str) -> Self {
        ExtractSpec {
            header: Some(name.into()),
            ..Default::default()
        }
    }
}

/// `x` or `[x, y]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![x.clone()],
            OneOrMany::Many(xs) => xs.clone(),
        }
    }
}

/// A token provider: OAuth2 client credentials, or a login request of the scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// OAuth2 client-credentials grant.
    #[serde(default)]
    pub oauth2: Option<OAuth2Spec>,
    /// A request of the scenario that returns a token.
    #[serde(default)]
    pub login: Option<LoginSpec>,
    /// Header that carries the token (default `authorization`).
    #[serde(default = "authorization")]
    pub header: String,
    /// Prefix of the header value (default `Bearer `).
    #[serde(default = "bearer")]
    pub prefix: String,
    /// Refresh this long before expiry (default: a fifth of the token's lifetime).
    #[serde(default, deserialize_with = "duration_opt")]
    pub refresh_before: Option<Duration>,
}

fn authorization() -> String {
    "authorization".into()
}

fn bearer() -> String {
    "Bearer ".into()
}

/// OAuth2 client credentials (RFC 6749 §4.4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Spec {
    pub token_url: String,
    pub client_id: String,
    #[serde(skip_serializing)]
    pub client_secret: String,
    #[serde(default)]
    pub scope: Option<String>,
}

/// A login request whose response holds the token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSpec {
    /// Name of a request in `requests`.
    pub request: String,
    /// Where the token is in the response.
    pub token: ExtractSpec,
    /// Where its lifetime in seconds is (`expires_in`), if the response says.
    #[serde(default)]
    pub expires_in: Option<ExtractSpec>,
    /// Lifetime to assume when the response does not say (default 5m).
    #[serde(default, deserialize_with = "duration_opt")]
    pub ttl: Option<Duration>,
}

/// The load model and its parameters; which fields apply depends on `model`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// `constant`, `ramping`, `poisson`, `closed` or `ladder`.
    pub model: ModelName,
    /// Iterations per second (constant, poisson).
    #[serde(default)]
    pub rate: Option<f64>,
    /// How long to send load (constant, poisson, closed).
    #[serde(default, deserialize_with = "duration_opt")]
    pub duration: Option<Duration>,
    /// Ramping: `{duration, target}` stages; the rate moves linearly to each target.
    #[serde(default)]
    pub stages: Vec<StageSpec>,
    /// Rate at the start of the first ramping stage (default 0).
    #[serde(default)]
    pub start_rate: Option<f64>,
    /// Virtual users (closed).
    #[serde(default)]
    pub vus: Option<usize>,
    /// Pause between a virtual user's iterations (closed, ladder).
    #[serde(default, deserialize_with = "duration_opt")]
    pub think_time: Option<Duration>,
    /// Concurrency of each step (ladder).
    #[serde(default)]
    pub steps: Vec<usize>,
    /// How long each step lasts (ladder).
    #[serde(default, deserialize_with = "duration_opt")]
    pub step_duration: Option<Duration>,
    /// Warm-up before measuring, at the first stage's load; its requests are
    /// tagged `stage = 'warmup'` and left out of the summary and thresholds.
    #[serde(default, deserialize_with = "duration_opt")]
    pub warmup: Option<Duration>,
    /// Most iterations in flight (open models); arrivals beyond it are dropped and counted.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Seed for Poisson arrivals and random choices (default: random).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The load models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelName {
    #[default]
    Constant,
    Ramping,
    Poisson,
    Closed,
    Ladder,
}

impl ModelName {
    /// The name as written in a scenario and stored in the `runs` table.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Constant => "constant",
            ModelName::Ramping => "ramping",
            ModelName::Poisson => "poisson",
            ModelName::Closed => "closed",
            ModelName::Ladder => "ladder",
        }
    }
}

/// One stage of a ramping arrival rate.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
    /// Iterations per second at the end of the stage.
    pub target: f64,
}

/// `"p(99)<250"`, or with options `{threshold: "rate<0.05", abort_on_fail: true}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ThresholdSpec {
    Plain(String),
    Full {
        threshold: String,
        #[serde(default, alias = "abortOnFail")]
        abort_on_fail: bool,
    },
}

/// Telemetry settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySpec {
    /// Fraction of successful, ordinary requests whose spans are exported
    /// (default 1: all). Errors and slow outliers are always kept.
    #[serde(default)]
    pub sample: Option<f64>,
    /// Requests slower than this are always kept when sampling (default 1s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub keep_slower_than: Option<Duration>,
}

/// Why a scenario could not be used; printed as `file:line:column: message`.
#[derive(Debug, thiserror::Error)]
#[error("{file}{location}: {message}")]
pub struct ScenarioError {
    pub file: String,
    /// `:line:column`, or empty when unknown.
    pub location: String,
    pub message: String,
}

impl ScenarioError {
    pub(crate) fn at(file: &Path, text: &str, path: &[&str], message: impl Into<String>) -> Self {
        ScenarioError {
            file: file.display().to_string(),
            location: locate::key(text, path)
                .map(|(line, column)| format!(":{line}:{column}"))
                .unwrap_or_default(),
            message: message.into(),
        }
    }
}

/// A parsed scenario with where it came from.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub path: PathBuf,
    pub text: String,
    pub scenario: Scenario,
}

impl ScenarioFile {
    /// Reads and parses a scenario file.
    pub fn read(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            location: String::new(),
            message: format!("cannot read the scenario: {e}"),
        })?;
        Self::parse(path, text)
    }

    /// Parses scenario text; `path` names it in errors and anchors relative files.
    pub fn parse(path: &Path, text: String) -> Result<Self, ScenarioError> {
        let scenario: Scenario = serde_norway::from_str(&text).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            location: e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default(),
            message: e.to_string().split(" at line ").next().unwrap_or("").into(),
        })?;
        Ok(ScenarioFile {
            path: path.to_path_buf(),
            text,
            scenario,
        })
    }

    /// An error about the value at a key path, located in the file when possible.
    pub fn error(&self, path: &[&str], message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(&self.path, &self.text, path, message)
    }

    /// A file named by the scenario, relative to the scenario's folder.
    pub fn resolve(&self, file: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.to_path_buf(),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// `30s`, `500ms` or a plain number of seconds. A visitor rather than an
/// untagged enum, so a bad value's error keeps its line and column.
struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration such as 500ms, 30s, 2m or 1h")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
        schema::units::parse_duration(text).map_err(E::custom)
    }

    fn visit_f64<E: serde::de::Error>(self, seconds: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| E::custom(format!("invalid duration {seconds}: must be ≥ 0 seconds")))
    }

    fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(seconds))
    }

    fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<Duration, E> {
        u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("invalid duration {seconds}: must be ≥ 0 seconds")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ScenarioFile, ScenarioError> {
        ScenarioFile::parse(Path::new("s.yaml"), text.to_string())
    }

    const MINIMAL: &str = "requests:\n  home:\n    url: http://127.0.0.1/\nload:\n  model: constant\n  rate: 10\n  duration: 2s\n";

    #[test]
    fn a_minimal_scenario_parses_with_defaults() {
        let file = parse(MINIMAL).unwrap();
        let s = &file.scenario;
        assert_eq!(s.requests["home"].method, "GET");
        assert_eq!(s.load.model, ModelName::Constant);
        assert_eq!(s.load.duration, Some(Duration::from_secs(2)));
        assert_eq!(s.http.version, HttpVersion::Auto);
    }

    #[test]
    fn unknown_keys_name_file_line_and_column() {
        let text = MINIMAL.replace("    url:", "    ur1: x\n    url:");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("s.yaml:3:5: "), "{err}");
        assert!(err.contains("unknown field `ur1`"), "{err}");
    }

    #[test]
    fn type_errors_name_file_line_and_column() {
        let text = MINIMAL.replace("rate: 10", "rate: fast");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("s.yaml:6:"), "{err}");
        assert!(err.contains("rate"), "{err}");
        let text = MINIMAL.replace("duration: 2s", "duration: 2 weeks");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("s.yaml:7:"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn thresholds_take_plain_and_full_forms() {
        let text = format!(
            "{MINIMAL}thresholds:\n  http_req_duration: [\"p(99)<250\"]\n  errors:\n    - threshold: rate<0.01\n      abortOnFail: true\n"
        );
        let file = parse(&text).unwrap();
        let errors = &file.scenario.thresholds["errors"];
        assert!(matches!(
            &errors[0],
            ThresholdSpec::Full { abort_on_fail: true, threshold } if threshold == "rate<0.01"
        ));
    }
}
