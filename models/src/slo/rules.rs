//! Prometheus recording and multiwindow multi-burn-rate alerting rules for an SLO.
//!
//! For each objective, one recording rule per window holds the bad fraction
//! (`loadlens_slo:error_ratio:rate<window>`); each alert compares a long and a
//! short window with `factor × (1 − target)`. Timeslices objectives first
//! record whether the trailing slice was bad (`loadlens_slo:slice_bad`) and
//! average that over each window, so a window's value is its share of bad slices.

use serde::Serialize;

use super::time::format_seconds;
use super::{BudgetingMethod, IndicatorSpec, Op, PrometheusSeries, Slo, Span};

/// The loadlens metrics the rules use when the SLO file has no `prometheus` section.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Counter of requests, e.g. `loadlens_run_requests_total`.
    pub requests: &'static str,
    /// Counter of failed requests, e.g. `loadlens_run_errors_total`.
    pub errors: &'static str,
    /// Latency histogram in seconds (with `_bucket` and `_count`), e.g. `loadlens_run_latency_seconds`.
    pub latency: &'static str,
    /// The histogram's bucket upper bounds, seconds.
    pub latency_buckets: &'static [f64],
}

/// The error-ratio recording rule name for a window.
pub fn error_ratio_record(window: u64) -> String {
    format!("loadlens_slo:error_ratio:rate{}", format_seconds(window))
}

/// The recording rule that holds whether the trailing slice was bad.
pub const SLICE_BAD_RECORD: &str = "loadlens_slo:slice_bad";
/// The recording rule that holds each objective's target.
pub const OBJECTIVE_RECORD: &str = "loadlens_slo:objective:ratio";

#[derive(Debug, Serialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Serialize)]
struct Group {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Rule {
    Record {
        record: String,
        expr: String,
        labels: Labels,
    },
    Alert {
        alert: String,
        expr: String,
        labels: Labels,
        annotations: Labels,
    },
}

/// Labels or annotations, in the order given.
#[derive(Debug, Clone)]
struct Labels(Vec<(String, String)>);

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A number as PromQL and people write it: at most 12 significant digits, no trailing zeros.
pub fn number(x: f64) -> String {
    let text = format!("{:.12}", x);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".into()
    } else {
        text.into()
    }
}

/// The alert name: the SLO name in CamelCase, then `ErrorBudgetBurn`.
pub fn alert_name(slo: &str) -> String {
    let camel: String = slo
        .split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{camel}ErrorBudgetBurn")
}

/// The PromQL series of the SLO: the file's, or the defaults for its indicator.
pub fn series(
    slo: &Slo,
    defaults: &Defaults,
    objective: usize,
) -> Result<PrometheusSeries, String> {
    if let Some(p) = &slo.spec.prometheus {
        return Ok(p.clone());
    }
    match &slo.spec.indicator.spec {
        IndicatorSpec::RatioMetric(_) => Ok(PrometheusSeries {
            good: None,
            bad: Some(defaults.errors.to_string()),
            total: defaults.requests.to_string(),
            interval: None,
        }),
        IndicatorSpec::ThresholdMetric(t) => {
            let o = &slo.spec.objectives[objective];
            let value = t.metric_source.spec.value.as_deref().unwrap_or_default();
            let bound = o.value.unwrap_or_default() / 1000.0;
            let bucket = defaults
                .latency_buckets
                .iter()
                .find(|&&b| (b - bound).abs() <= 1e-9 * b.abs().max(1e-9));
            match (value.trim(), o.op, bucket) {
                ("latency_ms", Some(Op::Lt | Op::Lte), Some(le)) => Ok(PrometheusSeries {
                    good: Some(format!("{}_bucket{{le=\"{le}\"}}", defaults.latency)),
                    bad: None,
                    total: format!("{}_count", defaults.latency),
                    interval: None,
                }),
                _ => Err(format!(
                    "objective {}: no default Prometheus series for value `{value}` {} {}: the defaults cover `latency_ms` lt/lte one of the {} bucket bounds ({} ms); add spec.prometheus with good (or bad) and total series selectors",
                    objective + 1,
                    o.op.map_or("?", Op::sql),
                    number(o.value.unwrap_or_default()),
                    defaults.latency,
                    defaults
                        .latency_buckets
                        .iter()
                        .map(|b| number(b * 1000.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// The bad fraction over a window as PromQL, from counters.
fn error_ratio(series: &PrometheusSeries, window: u64) -> String {
    let w = format_seconds(window);
    let total = format!("sum(rate({}[{w}]))", series.total);
    match (&series.bad, &series.good) {
        // No series until the first error: count that as zero errors.
        (Some(bad), _) => format!("(sum(rate({bad}[{w}])) or vector(0)) / {total}"),
        (None, Some(good)) => format!("1 - (sum(rate({good}[{w}])) or vector(0)) / {total}"),
        (None, None) => unreachable!("checked when the file was read"),
    }
}

/// The rules file (YAML) for `slo`.
pub fn generate(slo: &Slo, defaults: &Defaults, source: &str) -> Result<String, String> {
    let name = &slo.metadata.name;
    let rates = slo.burn_rates();
    let windows = super::budget::windows_needed(&rates);
    let several = slo.spec.objectives.len() > 1;
    let mut groups = Vec::new();
    for (i, objective) in slo.spec.objectives.iter().enumerate() {
        let series = series(slo, defaults, i)?;
        let mut labels = vec![("slo".to_string(), name.clone())];
        if several {
            labels.push(("objective".to_string(), slo.objective_name(i)));
        }
        let selector = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        let budget = number(1.0 - objective.target);
        let mut records = vec![Rule::Record {
            record: OBJECTIVE_RECORD.to_string(),
            expr: format!("vector({})", number(objective.target)),
            labels: Labels(labels.clone()),
        }];
        let window_ratio =
            |window: u64| match (slo.spec.budgeting_method, objective.time_slice_window) {
                (BudgetingMethod::Timeslices, Some(_)) => {
                    format!(
                        "avg_over_time({SLICE_BAD_RECORD}{{{selector}}}[{}])",
                        format_seconds(window)
                    )
                }
                _ => error_ratio(&series, window),
            };
        if let (BudgetingMethod::Timeslices, Some(Span::Seconds(slice)), Some(slice_target)) = (
            slo.spec.budgeting_method,
            objective.time_slice_window,
            objective.time_slice_target,
        ) {
            records.push(Rule::Record {
                record: SLICE_BAD_RECORD.to_string(),
                expr: format!(
                    "({}) > bool {}",
                    error_ratio(&series, slice),
                    number(1.0 - slice_target)
                ),
                labels: Labels(labels.clone()),
            });
        }
        for &w in &windows {
            records.push(Rule::Record {
                record: error_ratio_record(w),
                expr: window_ratio(w),
                labels: Labels(labels.clone()),
            });
        }
        let mut alerts = Vec::new();
        for rate in &rates {
            let (long, short) = (rate.long.nominal_seconds(), rate.short.nominal_seconds());
            let threshold = format!("({} * {budget})", number(rate.factor));
            let mut alert_labels = vec![("severity".to_string(), rate.severity.clone())];
            alert_labels.extend(labels.clone());
            alert_labels.push(("long_window".into(), format_seconds(long)));
            alert_labels.push(("short_window".into(), format_seconds(short)));
            let what = slo
                .metadata
                .display_name
                .clone()
                .unwrap_or_else(|| name.clone());
            alerts.push(Rule::Alert {
                alert: alert_name(name),
                expr: format!(
                    "{}{{{selector}}} > {threshold}\nand\n{}{{{selector}}} > {threshold}\n",
                    error_ratio_record(long),
                    error_ratio_record(short)
                ),
                labels: Labels(alert_labels),
                annotations: Labels(vec![
                    (
                        "summary".into(),
                        format!(
                            "{what}: error budget burning over {}x as fast as the objective allows",
                            number(rate.factor)
                        ),
                    ),
                    (
                        "description".into(),
                        format!(
                            "The bad fraction over the last {} and {} exceeds {} x (1 - {}); at this rate the {} budget lasts {}.",
                            format_seconds(long),
                            format_seconds(short),
                            number(rate.factor),
                            number(objective.target),
                            slo.spec.time_window.duration,
                            format_seconds(
                                (slo.spec.time_window.duration.nominal_seconds() as f64 / rate.factor) as u64
                            )
                        ),
                    ),
                ]),
            });
        }
        let suffix = if several {
            format!("-{}", i + 1)
        } else {
            String::new()
        };
        groups.push(Group {
            name: format!("loadlens-slo-{name}{suffix}-recording"),
            interval: series.interval.map(|s| s.to_string()),
            rules: records,
        });
        groups.push(Group {
            name: format!("loadlens-slo-{name}{suffix}-alerts"),
            interval: series.interval.map(|s| s.to_string()),
            rules: alerts,
        });
    }
    let yaml = serde_norway::to_string(&RuleFile { groups }).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Prometheus rules for SLO {name}, generated by `loadlens slo rules {source}`.\n# Regenerate rather than edit.\n{yaml}"
    ))
}

/// Escapes a PromQL label value inside double quotes.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}
