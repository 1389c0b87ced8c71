//! A scenario compiled for running: templates parsed, names resolved to
//! indexes, feeders loaded, the load model turned into stages. Every mistake
//! is found here, before the first request, and named with its place in the file.

use std::path::PathBuf;
use std::time::Duration;

use exporter::TraceState;
use http::{HeaderName, Method};

use crate::http::Keep;
use crate::scenario::check::{Check, Extractor};
use crate::scenario::feeder::Feeder;
use crate::scenario::template::Template;
use crate::scenario::{
    AuthSpec, ExtractSpec, HttpVersion, ModelName, OAuth2Spec, ScenarioError, ScenarioFile,
};
use crate::thresholds::Threshold;

/// Everything a run needs to know about what to send.
#[derive(Debug)]
pub struct Plan {
    /// Scenario name.
    pub name: String,
    pub requests: Vec<RequestPlan>,
    /// The weighted mix: each choice is one iteration.
    pub choices: Vec<Choice>,
    pub feeders: Vec<Feeder>,
    pub http: HttpSettings,
    pub auth: Option<AuthPlan>,
    pub load: LoadPlan,
    pub thresholds: Vec<Threshold>,
    pub sampling: Sampling,
    /// The W3C `tracestate` of every request the run starts, if any.
    pub trace_state: Option<TraceState>,
}

/// One request, ready to render.
#[derive(Debug)]
pub struct RequestPlan {
    pub name: String,
    pub method: Method,
    pub url: Template,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Option<Template>,
    pub checks: Vec<Check>,
    pub extract: Vec<(String, Extractor)>,
    /// What of the response checks and extractors read (else the body is
    /// only counted and the headers are not kept).
    pub keep: Keep,
}

/// One entry of the mix: a request or a flow.
#[derive(Debug, Clone)]
pub struct Choice {
    pub name: String,
    /// Indexes into `Plan::requests`, in order.
    pub steps: Vec<usize>,
    /// Cumulative weight up to and including this choice.
    pub cumulative: f64,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub version: HttpVersion,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// Most requests on the wire at once.
    pub connections: Option<usize>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            version: HttpVersion::Auto,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            ca_file: None,
            insecure_skip_verify: false,
            connections: None,
        }
    }
}

/// Where tokens come from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    OAuth2(OAuth2Spec),
    Login {
        /// Index of the login request.
        request: usize,
        token: Extractor,
        expires_in: Option<Extractor>,
        ttl: Duration,
    },
}

/// The token provider's settings.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub source: TokenSource,
    pub header: HeaderName,
    pub prefix: String,
    pub refresh_before: Option<Duration>,
}

/// The load, as stages run one after another.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub model: ModelName,
    pub stages: Vec<Stage>,
    /// Most iterations in flight (open models).
    pub max_in_flight: usize,
    pub seed: Option<u64>,
}

/// One stage of the load.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub shape: Shape,
    pub duration: Duration,
    /// Warm-up: measured, traced, but left out of the summary and thresholds.
    pub warmup: bool,
}

/// The stage name warm-up requests carry.
pub const WARMUP: &str = "warmup";

/// How iterations start during a stage. Rates are for the whole run (all shards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Evenly spaced arrivals.
    Constant { rate: f64 },
    /// Arrivals whose rate moves linearly from `from` to `to`.
    Ramp { from: f64, to: f64 },
    /// Exponentially distributed gaps with mean 1/rate.
    Poisson { rate: f64 },
    /// `vus` virtual users, each starting its next iteration when the last
    /// ends, after `think`.
    Closed { vus: usize, think: Duration },
}

impl Shape {
    /// The rate or concurrency the stage aims at (its end rate for a ramp).
    pub fn target(&self) -> f64 {
        match *self {
            Shape::Constant { rate } | Shape::Poisson { rate } => rate,
            Shape::Ramp { to, .. } => to,
            Shape::Closed { vus, .. } => vus as f64,
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self, Shape::Closed { .. })
    }
}

/// Which request spans are exported.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// Probability an ordinary request is traced.
    pub ratio: f64,
    /// Requests slower than this are always kept.
    pub keep_slower_than: Duration,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            ratio: 1.0,
            keep_slower_than: Duration::from_secs(1),
        }
    }
}

/// The W3C `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Default in-flight bound of open models.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

impl Plan {
    /// Compiles a scenario file for shard `shard.0` of `shard.1`.
    pub fn compile(file: &ScenarioFile, shard: (u32, u32)) -> Result<Plan, ScenarioError> {
        let s = &file.scenario;
        let err = |path: &[&str], message: String| file.error(path, message);
        if s.requests.is_empty() {
            return Err(err(&["requests"], "the scenario has no requests".into()));
        }

        let mut feeders = Vec::new();
        for (name, spec) in &s.feeders {
            let feeder = Feeder::load(name, &file.resolve(&spec.file), spec.mode, shard)
                .map_err(|m| err(&["feeders", name, "file"], m))?;
            feeders.push(feeder);
        }
        let feeder_columns: Vec<(String, Vec<String>)> = feeders
            .iter()
            .map(|f| (f.name.clone(), f.columns.clone()))
            .collect();
        // Names templates may read: every extracted value.
        let vars: Vec<&str> = s
            .requests
            .values()
            .flat_map(|r| r.extract.keys().map(String::as_str))
            .collect();

        let trace_state = match &s.tracestate {
            Some(text) => Some(TraceState::parse(text).map_err(|e| {
                err(
                    &["tracestate"],
                    format!("tracestate '{text}' does not follow W3C Trace Context: {e}"),
                )
            })?),
            None => None,
        };

        let base = s.base_url.as_deref().map(|b| b.trim_end_matches('/'));
        let mut requests = Vec::new();
        for (name, spec) in &s.requests {
            let at = |key: &'static str| ["requests", name, key];
            let method: Method = spec.method.to_ascii_uppercase().parse().map_err(|_| {
                err(
                    &at("method"),
                    format!("'{}' is not an HTTP method", spec.method),
                )
            })?;
            let url = match (spec.url.starts_with('/'), base) {
                (true, Some(base)) => format!("{base}{}", spec.url),
                (true, None) => {
                    return Err(err(
                        &at("url"),
                        format!("'{}' is a path but the scenario has no base_url", spec.url),
                    ));
                }
                (false, _) => spec.url.clone(),
            };
            let url =
                Template::parse(&url, &feeder_columns, &vars).map_err(|m| err(&at("url"), m))?;
            if let Some(literal) = url.as_literal() {
                crate::http::check_url(literal).map_err(|m| err(&at("url"), m))?;
            }
            let mut headers = Vec::new();
            for (key, value) in s.headers.iter().chain(&spec.headers) {
                let header = HeaderName::from_bytes(key.as_bytes())
                    .map_err(|_| err(&at("headers"), format!("'{key}' is not a header name")))?;
                if header == TRACESTATE && trace_state.is_some() {
                    // Two sources would leave the span's trace state
                    // saying something other than what was sent.
                    let place = if spec.headers.contains_key(key) {
                        vec!["requests", name.as_str(), "headers", key.as_str()]
                    } else {
                        vec!["headers", key.as_str()]
                    };
                    return Err(err(
                        &place,
                        "a tracestate header and the top-level tracestate key are both given; \
                         keep the key, which is sent beside traceparent and recorded on each span"
                            .into(),
                    ));
                }
                let value = Template::parse(value, &feeder_columns, &vars)
                    .map_err(|m| err(&["requests", name, "headers", key], m))?;
                // A request's own header replaces the scenario-wide one.
                headers.retain(|(h, _)| *h != header);
                headers.push((header, value));
            }
            let body = spec
                .body
                .as_deref()
                .map(|b| Template::parse(b, &feeder_columns, &vars))
                .transpose()
                .map_err(|m| err(&at("body"), m))?;
            let checks = spec
                .checks
                .iter()
                .map(Check::compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| err(&at("checks"), m))?;
            let extract = spec
                .extract
                .iter()
                .map(|(var, e)| {
                    Extractor::compile(e)
                        .map(|x| (var.clone(), x))
                        .map_err(|m| err(&["requests", name, "extract", var], m))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let keep = Keep {
                body: checks.iter().any(Check::reads_body)
                    || extract.iter().any(|(_, x)| x.reads_body()),
                headers: checks.iter().any(Check::reads_headers)
                    || extract.iter().any(|(_, x)| x.reads_headers()),
            };
            requests.push(RequestPlan {
                name: name.clone(),
                method,
                url,
                headers,
                body,
                checks,
                extract,
                keep,
            });
        }
        let index_of = |name: &str| requests.iter().position(|r| r.name == name);
        let request_names = || {
            requests
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };

        let mut flows = Vec::new();
        for (name, steps) in &s.flows {
            if s.requests.contains_key(name) {
                return Err(err(
                    &["flows", name],
                    format!("'{name}' names both a request and a flow; rename one"),
                ));
            }
            if steps.is_empty() {
                return Err(err(&["flows", name], format!("flow '{name}' has no steps")));
            }
            let steps = steps
                .iter()
                .map(|step| {
                    index_of(step).ok_or_else(|| {
                        err(
                            &["flows", name],
                            format!(
                                "flow '{name}': '{step}' is not a request (requests: {})",
                                request_names()
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            flows.push((name.clone(), steps));
        }

        let mut weights: Vec<(String, f64)> = s.mix.iter().map(|(k, v)| (k.clone(), *v)).collect();
        if weights.is_empty() {
            weights = if flows.is_empty() {
                requests.iter().map(|r| (r.name.clone(), 1.0)).collect()
            } else {
                flows.iter().map(|(n, _)| (n.clone(), 1.0)).collect()
            };
        }
        let mut choices = Vec::new();
        let mut total = 0.0;
        for (name, weight) in weights {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(err(
                    &["mix", &name],
                    format!("the weight of '{name}' must be a number ≥ 0, not {weight}"),
                ));
            }
            let steps = match (flows.iter().find(|(n, _)| *n == name), index_of(&name)) {
                (Some((_, steps)), _) => steps.clone(),
                (None, Some(i)) => vec![i],
                (None, None) => {
                    return Err(err(
                        &["mix", &name],
                        format!("'{name}' in the mix is neither a request nor a flow"),
                    ));
                }
            };
            if weight == 0.0 {
                continue;
            }
            total += weight;
            choices.push(Choice {
                name,
                steps,
                cumulative: total,
            });
        }
        if choices.is_empty() {
            return Err(err(&["mix"], "every weight in the mix is 0".into()));
        }

        let http = HttpSettings {
            version: s.http.version,
            timeout: s.http.timeout.unwrap_or(Duration::from_secs(10)),
            connect_timeout: s
                .http
                .connect_timeout
                .or(s.http.timeout)
                .unwrap_or(Duration::from_secs(10)),
            ca_file: s.http.ca_file.as_deref().map(|f| file.resolve(f)),
            insecure_skip_verify: s.http.insecure_skip_verify,
            connections: match s.http.connections {
                Some(0) => {
                    return Err(err(
                        &["http", "connections"],
                        "connections must be at least 1".into(),
                    ));
                }
                other => other,
            },
        };

        let auth = s
            .auth
            .as_ref()
            .map(|a| auth_plan(file, a, &requests))
            .transpose()?;
        let load = load_plan(file)?;
        let mut thresholds = Vec::new();
        for (metric, specs) in &s.thresholds {
            for spec in specs {
                let threshold = Threshold::parse(metric, spec, &requests)
                    .map_err(|m| err(&["thresholds", metric], m))?;
                thresholds.push(threshold);
            }
        }
        let sampling = Sampling {
            ratio: match s.telemetry.sample {
                None => 1.0,
                Some(r) if (0.0..=1.0).contains(&r) => r,
                Some(r) => {
                    return Err(err(
                        &["telemetry", "sample"],
                        format!("sample is a fraction from 0 to 1, not {r}"),
                    ));
                }
            },
            keep_slower_than: s
                .telemetry
                .keep_slower_than
                .unwrap_or(Sampling::default().keep_slower_than),
        };
        let name = s.name.clone().unwrap_or_else(|| {
            file.path
                .file_stem()
                .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
        });
        Ok(Plan {
            name,
            requests,
            choices,
            feeders,
            http,
            auth,
            load,
            thresholds,
            sampling,
            trace_state,
        })
    }

    /// A plan with one request and no file: `loadlens run --url … --rate …`.
    pub fn quick(url: &str, method: &str, load: LoadPlan) -> Result<Plan, String> {
        crate::http::check_url(url)?;
        let method: Method = method
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| format!("'{method}' is not an HTTP method"))?;
        let path = url
            .parse::<http::Uri>()
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        let url = Template::parse(url, &[], &[])?;
        Ok(Plan {
            name: "quick".into(),
            requests: vec![RequestPlan {
                name: format!("{method} {path}"),
                method,
                url,
                headers: Vec::new(),
                body: None,
                checks: Vec::new(),
                extract: Vec::new(),
                keep: Keep::default(),
            }],
            choices: vec![Choice {
                name: "request".into(),
                steps: vec![0],
                cumulative: 1.0,
            }],
            feeders: Vec::new(),
            http: HttpSettings::default(),
            auth: None,
            load,
            thresholds: Vec::new(),
            sampling: Sampling::default(),
            trace_state: None,
        })
    }

    /// Picks a choice for `u` uniform in [0, 1).
    pub fn pick(&self, u: f64) -> &Choice {
        let total = self.choices.last().map_or(1.0, |c| c.cumulative);
        let x = u * total;
        let i = self.choices.partition_point(|c| c.cumulative <= x);
        &self.choices[i.min(self.choices.len() - 1)]
    }
}

fn auth_plan(
    file: &ScenarioFile,
    spec: &AuthSpec,
    requests: &[RequestPlan],
) -> Result<AuthPlan, ScenarioError> {
    let err = |path: &[&str], m: String| file.error(path, m);
    let source = match (&spec.oauth2, &spec.login) {
        (Some(oauth2), None) => {
            crate::http::check_url(&oauth2.token_url)
                .map_err(|m| err(&["auth", "oauth2", "token_url"], m))?;
            TokenSource::OAuth2(oauth2.clone())
        }
        (None, Some(login)) => {
            let request = requests
                .iter()
                .position(|r| r.name == login.request)
                .ok_or_else(|| {
                    err(
                        &["auth", "login", "request"],
                        format!("'{}' is not a request of the scenario", login.request),
                    )
                })?;
            let compile = |key: &str, spec: &ExtractSpec| {
                Extractor::compile(spec).map_err(|m| err(&["auth", "login", key], m))
            };
            TokenSource::Login {
                request,
                token: compile("token", &login.token)?,
                expires_in: login
                    .expires_in
                    .as_ref()
                    .map(|e| compile("expires_in", e))
                    .transpose()?,
                ttl: login.ttl.unwrap_or(Duration::from_secs(300)),
            }
        }
        _ => {
            return Err(err(
                &["auth"],
                "auth needs exactly one of oauth2 and login".into(),
            ));
        }
    };
    let header = HeaderName::from_bytes(spec.header.as_bytes()).map_err(|_| {
        err(
            &["auth", "header"],
            format!("'{}' is not a header name", spec.header),
        )
    })?;
    Ok(AuthPlan {
        source,
        header,
        prefix: spec.prefix.clone(),
        refresh_before: spec.refresh_before,
    })
}

fn load_plan(file: &ScenarioFile) -> Result<LoadPlan, ScenarioError> {
    let spec = &file.scenario.load;
    let err = |key: &str, m: String| file.error(&["load", key], m);
    let need_duration = || {
        spec.duration.filter(|d| !d.is_zero()).ok_or_else(|| {
            err(
                "model",
                format!("the {} model needs a duration", spec.model.as_str()),
            )
        })
    };
    let need_rate = || match spec.rate {
        Some(r) if r.is_finite() && r > 0.0 => Ok(r),
        Some(r) => Err(err(
            "rate",
            format!("rate must be a positive number of iterations per second, not {r}"),
        )),
        None => Err(err(
            "model",
            format!("the {} model needs a rate", spec.model.as_str()),
        )),
    };
    let think = spec.think_time.unwrap_or_default();
    let stages = match spec.model {
        ModelName::Constant => vec![stage(
            "main",
            Shape::Constant { rate: need_rate()? },
            need_duration()?,
        )],
        ModelName::Poisson => vec![stage(
            "main",
            Shape::Poisson { rate: need_rate()? },
            need_duration()?,
        )],
        ModelName::Closed => {
            let vus = spec
                .vus
                .filter(|&v| v > 0)
                .ok_or_else(|| err("model", "the closed model needs vus (at least 1)".into()))?;
            vec![stage(
                "main",
                Shape::Closed { vus, think },
                need_duration()?,
            )]
        }
        ModelName::Ladder => {
            if spec.steps.is_empty() || spec.steps.contains(&0) {
                return Err(err(
                    "steps",
                    "ladder steps are concurrency levels of at least 1".into(),
                ));
            }
            let step_duration = spec
                .step_duration
                .filter(|d| !d.is_zero())
                .ok_or_else(|| err("model", "the ladder model needs step_duration".into()))?;
            spec.steps
                .iter()
                .map(|&vus| {
                    stage(
                        &format!("c={vus}"),
                        Shape::Closed { vus, think },
                        step_duration,
                    )
                })
                .collect()
        }
        ModelName::Ramping => {
            if spec.stages.is_empty() {
                return Err(err(
                    "model",
                    "the ramping model needs stages: [{duration, target}, …]".into(),
                ));
            }
            let mut from = spec.start_rate.unwrap_or(0.0);
            let mut stages = Vec::new();
            for (i, s) in spec.stages.iter().enumerate() {
                if !(s.target.is_finite() && s.target >= 0.0 && from.is_finite() && from >= 0.0) {
                    return Err(err("stages", format!("stage {}: rates must be ≥ 0", i + 1)));
                }
                stages.push(stage(
                    &format!("stage-{}", i + 1),
                    Shape::Ramp { from, to: s.target },
                    s.duration,
                ));
                from = s.target;
            }
            stages
        }
    };
    let mut stages = stages;
    if let Some(warmup) = spec.warmup.filter(|d| !d.is_zero()) {
        let shape = match stages[0].shape {
            Shape::Ramp { to, .. } => Shape::Constant { rate: to.max(1.0) },
            other => other,
        };
        let mut first = stage(WARMUP, shape, warmup);
        first.warmup = true;
        stages.insert(0, first);
    }
    let max_in_flight = match spec.max_in_flight {
        Some(0) => {
            return Err(err(
                "max_in_flight",
                "max_in_flight must be at least 1".into(),
            ));
        }
        Some(n) => n,
        None => DEFAULT_MAX_IN_FLIGHT,
    };
    Ok(LoadPlan {
        model: spec.model,
        stages,
        max_in_flight,
        seed: spec.seed,
    })
}

/// A measured stage.
pub fn stage(name: &str, shape: Shape, duration: Duration) -> Stage {
    Stage {
        name: name.to_string(),
        shape,
        duration,
        warmup: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn compile(text: &str) -> Result<Plan, String> {
        let file = ScenarioFile::parse(Path::new("s.yaml"), text.to_string())
            .map_err(|e| e.to_string())?;
        Plan::compile(&file, (0, 1)).map_err(|e| e.to_string())
    }

    const BASE: &str = "\
base_url: http://127.0.0.1:9/
requests:
  login:
    method: post
    url: /login
    extract:
      token: { json: $.token }
  items:
    url: /items/{{rand_int 1 9}}
    headers: { authorization: 'Bearer {{token}}' }
flows:
  buy: [login, items]
mix:
  buy: 1
  items: 3
load:
  model: constant
  rate: 10
  duration: 1s
";

    #[test]
    fn a_scenario_compiles_to_choices_and_stages() {
        let plan = compile(BASE).unwrap();
        assert_eq!(plan.requests[0].name, "items"); // sorted by name
        assert_eq!(plan.requests[1].method, Method::POST);
        let buy = plan.choices.iter().find(|c| c.name == "buy").unwrap();
        assert_eq!(buy.steps, [1, 0]);
        assert_eq!(plan.pick(0.0).name, "buy");
        assert_eq!(plan.pick(0.3).name, "items");
        assert_eq!(plan.pick(0.999).name, "items");
        assert_eq!(plan.load.stages.len(), 1);
        assert_eq!(plan.load.stages[0].shape, Shape::Constant { rate: 10.0 });
    }

    #[test]
    fn mistakes_are_named_with_their_place() {
        let err = compile(&BASE.replace("buy: [login, items]", "buy: [login, itemz]")).unwrap_err();
        assert!(
            err.starts_with("s.yaml:12:3: flow 'buy': 'itemz' is not a request"),
            "{err}"
        );
        let err = compile(&BASE.replace("Bearer {{token}}", "Bearer {{tokn}}")).unwrap_err();
        assert!(err.starts_with("s.yaml:10:"), "{err}");
        assert!(err.contains("'{{tokn}}' is not a template value"), "{err}");
        let err = compile(&BASE.replace("  items: 3", "  itemz: 3")).unwrap_err();
        assert!(err.starts_with("s.yaml:15:3:"), "{err}");
        let err = compile(&BASE.replace("rate: 10", "rate: -1")).unwrap_err();
        assert!(
            err.contains("load") || err.starts_with("s.yaml:18:"),
            "{err}"
        );
        let err = compile(&BASE.replace("model: constant", "model: closed")).unwrap_err();
        assert!(err.contains("needs vus"), "{err}");
    }

    #[test]
    fn warmup_and_ramps_become_stages() {
        let text = BASE.replace(
            "  model: constant\n  rate: 10\n  duration: 1s\n",
            "  model: ramping\n  warmup: 2s\n  stages:\n    - { duration: 5s, target: 50 }\n    - { duration: 5s, target: 10 }\n",
        );
        let plan = compile(&text).unwrap();
        let stages = &plan.load.stages;
        assert_eq!(stages.len(), 3);
        assert!(stages[0].warmup);
        assert_eq!(stages[0].name, WARMUP);
        assert_eq!(
            stages[1].shape,
            Shape::Ramp {
                from: 0.0,
                to: 50.0
            }
        );
        assert_eq!(
            stages[2].shape,
            Shape::Ramp {
                from: 50.0,
                to: 10.0
            }
        );
    }

    #[test]
    fn a_trace_state_is_checked_and_kept_in_one_place() {
        let plan = compile(&format!("tracestate: 'a=1 , b@c=2'\n{BASE}")).unwrap();
        assert_eq!(plan.trace_state.unwrap().as_str(), "a=1,b@c=2");
        assert!(compile(BASE).unwrap().trace_state.is_none());
        // A value that breaks the W3C grammar: where, what, and what to write.
        let err = compile(&format!("{BASE}tracestate: 'a=1,Vendor=x'\n")).unwrap_err();
        assert!(
            err.starts_with("s.yaml:20:1: tracestate 'a=1,Vendor=x'"),
            "{err}"
        );
        assert!(
            err.contains("member 2: key 'Vendor' is not a W3C key; a key is up to 256 of a-z"),
            "{err}"
        );
        let err = compile(&format!("tracestate: 'a=1,a=2'\n{BASE}")).unwrap_err();
        assert!(err.starts_with("s.yaml:1:1: "), "{err}");
        assert!(err.contains("'a' appears more than once"), "{err}");
        // A tracestate header beside the key is refused where it is written.
        let text = format!("tracestate: a=1\n{BASE}").replace(
            "headers: { authorization",
            "headers: { TraceState: b=2, authorization",
        );
        let err = compile(&text).unwrap_err();
        assert!(err.starts_with("s.yaml:11:16: "), "{err}");
        assert!(err.contains("keep the key"), "{err}");
        let text = format!("tracestate: a=1\nheaders:\n  tracestate: b=2\n{BASE}");
        let err = compile(&text).unwrap_err();
        assert!(err.starts_with("s.yaml:3:3: "), "{err}");
        // Without the key a tracestate header is one header among others.
        let text = BASE.replace(
            "headers: { authorization",
            "headers: { tracestate: b=2, authorization",
        );
        assert!(compile(&text).unwrap().trace_state.is_none());
    }
}
