//! Service level objectives in the OpenSLO v1 style: the file format, error
//! budgets, multiwindow burn rates and the Prometheus rules that watch them.
//!
//! ```text
//!  slo.yaml ─▶ spec (parse, check) ─▶ analyzer runs the indicator SQL ─▶ budget (SLI, budget, burn) ─▶ loadlens slo check
//!                                  └─▶ rules (recording + multiwindow multi-burn-rate alerts) ─▶ loadlens slo rules
//! ```
//!
//! A file holds one SLO:
//!
//! ```yaml
//! apiVersion: openslo/v1
//! kind: SLO
//! metadata: { name: checkout-availability }
//! spec:
//!   service: shop
//!   indicator:
//!     metadata: { name: checkout-errors }
//!     spec:
//!       ratioMetric:
//!         bad: { metricSource: { type: loadlens, spec: { table: requests, filter: "step = 'checkout' AND is_error" } } }
//!         total: { metricSource: { type: loadlens, spec: { table: requests, filter: "step = 'checkout'" } } }
//!   timeWindow: [ { duration: 30d, isRolling: true } ]
//!   budgetingMethod: Occurrences
//!   objectives: [ { target: 0.995 } ]
//! ```

pub mod budget;
pub mod rules;
pub mod time;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use time::{Instant, Span};

/// The version of the format this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ApiVersion {
    #[serde(rename = "openslo/v1")]
    OpenSloV1,
}

/// The kind of document; only `SLO` (indicators are written inline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Kind {
    #[serde(rename = "SLO")]
    Slo,
}

/// An SLO file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Slo {
    /// `openslo/v1`.
    pub api_version: ApiVersion,
    /// `SLO`.
    pub kind: Kind,
    /// The SLO's name, used in rule labels and output.
    pub metadata: Metadata,
    /// What is measured, over which window, against which objectives.
    pub spec: SloSpec,
}

/// Name and description of an SLO or indicator.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Lowercase letters, digits and `-`, starting with a letter (a Prometheus label value and alert name part).
    #[serde(deserialize_with = "name")]
    pub name: String,
    /// A human-readable name.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// The body of an SLO. Parsed through [`RawSpec`], so rules that tie fields
/// together are checked while the file is read and their errors keep a line.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawSpec", into = "RawSpec")]
pub struct SloSpec {
    /// What the SLO promises, in words.
    pub description: Option<String>,
    /// The service the SLO belongs to.
    pub service: String,
    /// The service level indicator.
    pub indicator: Indicator,
    /// The window the budget covers.
    pub time_window: TimeWindow,
    /// How good and bad are counted.
    pub budgeting_method: BudgetingMethod,
    /// One or more objectives; each has its own budget.
    pub objectives: Vec<Objective>,
    /// PromQL series for `loadlens slo rules` (defaults: the collector's run metrics).
    pub prometheus: Option<PrometheusSeries>,
    /// Burn-rate alert windows (default: the SRE workbook's four, scaled to the window).
    pub burn_rates: Option<Vec<BurnRate>>,
}

/// [`SloSpec`] as written in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSpec {
    /// What the SLO promises, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The service the SLO belongs to.
    service: String,
    /// The service level indicator, inline.
    indicator: Indicator,
    /// Exactly one window.
    time_window: Vec<TimeWindow>,
    /// `Occurrences` or `Timeslices`.
    budgeting_method: BudgetingMethod,
    /// One or more objectives.
    objectives: Vec<Objective>,
    /// loadlens extension: the PromQL series behind the indicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prometheus: Option<PrometheusSeries>,
    /// loadlens extension: burn-rate alert windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burn_rates: Option<Vec<BurnRate>>,
}

/// A service level indicator, inline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Indicator {
    /// The indicator's name.
    pub metadata: Metadata,
    /// A ratio or a threshold metric.
    pub spec: IndicatorSpec,
}

/// Exactly one of `ratioMetric` and `thresholdMetric`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawIndicatorSpec", into = "RawIndicatorSpec")]
pub enum IndicatorSpec {
    /// Good (or bad) events over all events.
    RatioMetric(RatioMetric),
    /// Events whose value meets the objective's `op` and `value` are good.
    ThresholdMetric(ThresholdMetric),
}

/// [`IndicatorSpec`] as written (a map with one of the two keys).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawIndicatorSpec {
    /// Good (or bad) events over all events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ratio_metric: Option<RatioMetric>,
    /// Events whose value meets the objective's `op` and `value` are good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold_metric: Option<ThresholdMetric>,
}

impl TryFrom<RawIndicatorSpec> for IndicatorSpec {
    type Error = &'static str;

    fn try_from(raw: RawIndicatorSpec) -> Result<IndicatorSpec, Self::Error> {
        match (raw.ratio_metric, raw.threshold_metric) {
            (Some(r), None) => Ok(IndicatorSpec::RatioMetric(r)),
            (None, Some(t)) => Ok(IndicatorSpec::ThresholdMetric(t)),
            _ => Err("an indicator's spec needs exactly one of ratioMetric and thresholdMetric"),
        }
    }
}

impl From<IndicatorSpec> for RawIndicatorSpec {
    fn from(spec: IndicatorSpec) -> RawIndicatorSpec {
        match spec {
            IndicatorSpec::RatioMetric(r) => RawIndicatorSpec {
                ratio_metric: Some(r),
                threshold_metric: None,
            },
            IndicatorSpec::ThresholdMetric(t) => RawIndicatorSpec {
                ratio_metric: None,
                threshold_metric: Some(t),
            },
        }
    }
}

/// A ratio of event counts: `good` or `bad`, and `total`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawRatio", into = "RawRatio")]
pub struct RatioMetric {
    /// The events counted against the total.
    pub counted: Counted,
    /// All events.
    pub total: MetricSource,
}

/// Which side of the ratio the file names.
#[derive(Debug, Clone, PartialEq)]
pub enum Counted {
    Good(MetricSource),
    Bad(MetricSource),
}

/// [`RatioMetric`] as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRatio {
    /// Accepted for OpenSLO compatibility: loadlens sources are events, so this changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counter: Option<bool>,
    /// Good events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    good: Option<Source>,
    /// Bad events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bad: Option<Source>,
    /// All events.
    total: Source,
}

/// A threshold metric: one source with a value per event.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThresholdMetric {
    /// The events; its `value` is compared with each objective.
    pub metric_source: MetricSource,
}

/// `{metricSource: …}`, as OpenSLO nests it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    /// Where the events come from.
    pub metric_source: MetricSource,
}

/// The source type; only `loadlens` (SQL over the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Loadlens,
}

/// Events from the loadlens store.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricSource {
    /// `loadlens`.
    #[serde(rename = "type")]
    pub source_type: SourceType,
    /// The table or query and which rows count.
    pub spec: SqlSource,
}

/// One row per event: a table (or a query) and an optional SQL filter.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawSqlSource", into = "RawSqlSource")]
pub struct SqlSource {
    /// Where rows come from.
    pub rows: Rows,
    /// A SQL boolean expression; rows where it is not true are not events.
    pub filter: Option<String>,
    /// The event time column (default: `end_time` if the rows have it, else `time`).
    pub time: Option<String>,
    /// For threshold metrics: the SQL expression compared with the objective.
    pub value: Option<String>,
}

/// A table or view, or a whole query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Rows {
    Table(String),
    Query(String),
}

/// [`SqlSource`] as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSqlSource {
    /// A table or view of the store: `requests`, `server_spans`, `spans`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<String>,
    /// A SELECT whose rows are the events (instead of `table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    /// A SQL boolean expression over the rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    /// The event time column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    /// The value of a threshold metric, a SQL expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

/// The window the error budget covers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TimeWindow {
    /// Its length: `30d`, `4w`, or for calendar windows also `1M`, `1Q`, `1Y`.
    pub duration: Span,
    /// `true`: the last `duration` up to now; `false`: the calendar period that holds now.
    pub is_rolling: bool,
    /// Where calendar periods start (required when `isRolling` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<Calendar>,
}

/// The anchor of calendar periods.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Calendar {
    /// The start of one period: `2026-01-01 00:00:00`.
    #[serde(deserialize_with = "instant", serialize_with = "serialize_instant")]
    pub start_time: Instant,
    /// Only `UTC` (or `Etc/UTC`).
    #[serde(default = "utc", deserialize_with = "time_zone")]
    pub time_zone: String,
}

/// How the budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum BudgetingMethod {
    /// Events: the budget is `(1 − target) × total events`.
    Occurrences,
    /// Time slices: a slice is good when its good ratio reaches `timeSliceTarget`;
    /// the budget is `(1 − target) × slices in the window`.
    Timeslices,
}

/// One objective.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Objective {
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The good fraction promised (of events, or of slices), between 0 and 1 exclusive.
    #[serde(deserialize_with = "fraction")]
    pub target: f64,
    /// Threshold metrics: how an event's value compares with `value` to be good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// Threshold metrics: the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Timeslices: the good ratio a slice needs to be good.
    #[serde(
        default,
        deserialize_with = "fraction_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub time_slice_target: Option<f64>,
    /// Timeslices: the slice length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_slice_window: Option<Span>,
}

/// A comparison of a threshold metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Op {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Gt => ">",
            Op::Gte => ">=",
        }
    }
}

/// loadlens extension: Prometheus series selectors of counters behind the
/// indicator, for `loadlens slo rules`. Give `total` and one of `good` and `bad`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusSeries {
    /// Counter of good events, e.g. `loadlens_run_latency_seconds_bucket{le="0.25"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<String>,
    /// Counter of bad events, e.g. `loadlens_run_errors_total{step="checkout"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<String>,
    /// Counter of all events, e.g. `loadlens_run_requests_total{step="checkout"}`.
    pub total: String,
    /// How often Prometheus evaluates the rule group (default: its global interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Span>,
}

/// loadlens extension: one multiwindow burn-rate alert.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BurnRate {
    /// The long window (how much budget is burnt).
    pub long: Span,
    /// The short window (that it still burns).
    pub short: Span,
    /// The burn rate both windows must exceed: 1 spends the budget exactly over the window.
    #[serde(deserialize_with = "positive")]
    pub factor: f64,
    /// The alert's `severity` label, e.g. `page` or `ticket`.
    pub severity: String,
}

/// An SLO file that could not be read, with where: `file:line:column: what`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{location}: {message}")]
pub struct SloError {
    pub file: String,
    /// `:line:column`, or empty when unknown.
    pub location: String,
    pub message: String,
}

impl Slo {
    /// Reads and checks an SLO file.
    pub fn read(path: &Path) -> Result<Slo, SloError> {
        let text = std::fs::read_to_string(path).map_err(|e| SloError {
            file: path.display().to_string(),
            location: String::new(),
            message: format!("cannot read the SLO file: {e}"),
        })?;
        Slo::parse(path, &text)
    }

    /// Parses SLO text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Slo, SloError> {
        serde_norway::from_str(text).map_err(|e| SloError {
            file: path.display().to_string(),
            location: e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default(),
            message: e
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or("")
                .to_string(),
        })
    }

    /// The objective's name in output and rule labels: its display name, or its position.
    pub fn objective_name(&self, index: usize) -> String {
        self.spec.objectives[index]
            .display_name
            .clone()
            .unwrap_or_else(|| format!("objective-{}", index + 1))
    }

    /// The burn-rate alert windows: the file's, or [`budget::default_burn_rates`]
    /// scaled to the SLO window.
    pub fn burn_rates(&self) -> Vec<BurnRate> {
        self.spec.burn_rates.clone().unwrap_or_else(|| {
            budget::default_burn_rates(self.spec.time_window.duration.nominal_seconds())
        })
    }
}

impl TryFrom<RawSpec> for SloSpec {
    type Error = String;

    fn try_from(raw: RawSpec) -> Result<SloSpec, String> {
        let [time_window]: [TimeWindow; 1] = raw.time_window.try_into().map_err(|w: Vec<_>| {
            format!(
                "spec.timeWindow must hold exactly one window, not {}",
                w.len()
            )
        })?;
        match (&time_window.calendar, time_window.is_rolling) {
            (Some(_), true) => {
                return Err("spec.timeWindow: a rolling window takes no calendar; set isRolling: false for a calendar window".into());
            }
            (None, false) => {
                return Err("spec.timeWindow: a calendar window (isRolling: false) needs calendar: {startTime: \"2026-01-01 00:00:00\", timeZone: UTC}".into());
            }
            _ => {}
        }
        if time_window.is_rolling && matches!(time_window.duration, Span::Months(_)) {
            return Err(format!(
                "spec.timeWindow: a rolling window needs a fixed length (e.g. 30d), not {}",
                time_window.duration
            ));
        }
        if raw.objectives.is_empty() {
            return Err("spec.objectives needs at least one objective".into());
        }
        let threshold = matches!(raw.indicator.spec, IndicatorSpec::ThresholdMetric(_));
        if let IndicatorSpec::ThresholdMetric(t) = &raw.indicator.spec
            && t.metric_source.spec.value.is_none()
        {
            return Err(
                "spec.indicator.spec.thresholdMetric.metricSource.spec needs `value`: the SQL expression compared with each objective (e.g. latency_ms)".into(),
            );
        }
        if let IndicatorSpec::RatioMetric(r) = &raw.indicator.spec {
            let sources = [
                Some(&r.total),
                match &r.counted {
                    Counted::Good(s) | Counted::Bad(s) => Some(s),
                },
            ];
            if sources.iter().flatten().any(|s| s.spec.value.is_some()) {
                return Err("spec.indicator.spec.ratioMetric: `value` belongs to thresholdMetric sources; a ratio counts rows".into());
            }
        }
        for (i, o) in raw.objectives.iter().enumerate() {
            let at = format!("spec.objectives[{i}]");
            match (threshold, o.op.is_some(), o.value.is_some()) {
                (true, true, true) | (false, false, false) => {}
                (true, _, _) => {
                    return Err(format!(
                        "{at}: a thresholdMetric objective needs `op` (lt, lte, gt, gte) and `value`"
                    ));
                }
                (false, _, _) => {
                    return Err(format!(
                        "{at}: `op` and `value` belong to thresholdMetric indicators; a ratioMetric objective has only `target`"
                    ));
                }
            }
            let slices = o.time_slice_target.is_some() || o.time_slice_window.is_some();
            match (
                raw.budgeting_method,
                o.time_slice_target,
                o.time_slice_window,
            ) {
                (BudgetingMethod::Occurrences, _, _) if slices => {
                    return Err(format!(
                        "{at}: timeSliceTarget and timeSliceWindow need budgetingMethod: Timeslices"
                    ));
                }
                (BudgetingMethod::Timeslices, Some(_), Some(Span::Seconds(_))) => {}
                (BudgetingMethod::Timeslices, _, Some(Span::Months(_))) => {
                    return Err(format!(
                        "{at}: timeSliceWindow must be a fixed length such as 1m"
                    ));
                }
                (BudgetingMethod::Timeslices, _, _) => {
                    return Err(format!(
                        "{at}: budgetingMethod Timeslices needs timeSliceTarget (e.g. 0.95) and timeSliceWindow (e.g. 1m)"
                    ));
                }
                _ => {}
            }
            if let Some(Span::Seconds(slice)) = o.time_slice_window
                && slice > time_window.duration.nominal_seconds()
            {
                return Err(format!(
                    "{at}: timeSliceWindow {} is longer than the SLO window",
                    time::format_seconds(slice)
                ));
            }
        }
        if let Some(p) = &raw.prometheus
            && p.good.is_some() == p.bad.is_some()
        {
            return Err("spec.prometheus needs `total` and exactly one of `good` and `bad`".into());
        }
        if let Some(rates) = &raw.burn_rates {
            if rates.is_empty() {
                return Err("spec.burnRates is empty; leave it out for the default windows".into());
            }
            for (i, b) in rates.iter().enumerate() {
                let (Span::Seconds(long), Span::Seconds(short)) = (b.long, b.short) else {
                    return Err(format!(
                        "spec.burnRates[{i}]: windows must be fixed lengths such as 1h and 5m"
                    ));
                };
                if short >= long {
                    return Err(format!(
                        "spec.burnRates[{i}]: the short window ({}) must be shorter than the long one ({})",
                        b.short, b.long
                    ));
                }
            }
        }
        Ok(SloSpec {
            description: raw.description,
            service: raw.service,
            indicator: raw.indicator,
            time_window,
            budgeting_method: raw.budgeting_method,
            objectives: raw.objectives,
            prometheus: raw.prometheus,
            burn_rates: raw.burn_rates,
        })
    }
}

impl From<SloSpec> for RawSpec {
    fn from(s: SloSpec) -> RawSpec {
        RawSpec {
            description: s.description,
            service: s.service,
            indicator: s.indicator,
            time_window: vec![s.time_window],
            budgeting_method: s.budgeting_method,
            objectives: s.objectives,
            prometheus: s.prometheus,
            burn_rates: s.burn_rates,
        }
    }
}

impl TryFrom<RawRatio> for RatioMetric {
    type Error = String;

    fn try_from(raw: RawRatio) -> Result<RatioMetric, String> {
        let counted = match (raw.good, raw.bad) {
            (Some(good), None) => Counted::Good(good.metric_source),
            (None, Some(bad)) => Counted::Bad(bad.metric_source),
            _ => {
                return Err("ratioMetric needs `total` and exactly one of `good` and `bad`".into());
            }
        };
        Ok(RatioMetric {
            counted,
            total: raw.total.metric_source,
        })
    }
}

impl From<RatioMetric> for RawRatio {
    fn from(r: RatioMetric) -> RawRatio {
        let (good, bad) = match r.counted {
            Counted::Good(s) => (Some(s), None),
            Counted::Bad(s) => (None, Some(s)),
        };
        let wrap = |metric_source| Source { metric_source };
        RawRatio {
            counter: None,
            good: good.map(wrap),
            bad: bad.map(wrap),
            total: wrap(r.total),
        }
    }
}

impl TryFrom<RawSqlSource> for SqlSource {
    type Error = String;

    fn try_from(raw: RawSqlSource) -> Result<SqlSource, String> {
        let rows = match (raw.table, raw.query) {
            (Some(table), None) => {
                let valid = !table.is_empty()
                    && table
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                if !valid {
                    return Err(format!(
                        "table '{table}' is not a table name; use `query` for anything but a table or view"
                    ));
                }
                Rows::Table(table)
            }
            (None, Some(query)) => Rows::Query(query),
            _ => {
                return Err(
                    "a loadlens metric source needs exactly one of `table` (e.g. requests) and `query`"
                        .into(),
                );
            }
        };
        Ok(SqlSource {
            rows,
            filter: raw.filter,
            time: raw.time,
            value: raw.value,
        })
    }
}

impl From<SqlSource> for RawSqlSource {
    fn from(s: SqlSource) -> RawSqlSource {
        let (table, query) = match s.rows {
            Rows::Table(t) => (Some(t), None),
            Rows::Query(q) => (None, Some(q)),
        };
        RawSqlSource {
            table,
            query,
            filter: s.filter,
            time: s.time,
            value: s.value,
        }
    }
}

/// Reads a string and converts it inside the visitor, so an error points at the value itself.
fn checked_str<'de, D: serde::Deserializer<'de>, T>(
    d: D,
    check: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct Text<T>(fn(&str) -> Result<T, String>);
    impl<T> serde::de::Visitor<'_> for Text<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Text(check))
}

fn name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, |name| {
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(name.to_string())
        } else {
            Err(format!(
                "invalid name '{name}': use lowercase letters, digits and '-', starting with a letter"
            ))
        }
    })
}

/// Reads a number and checks it inside the visitor, so an error points at the value itself.
fn checked_number<'de, D: serde::Deserializer<'de>>(
    d: D,
    check: fn(f64) -> Result<f64, String>,
) -> Result<f64, D::Error> {
    struct Number(fn(f64) -> Result<f64, String>);
    impl serde::de::Visitor<'_> for Number {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<f64, E> {
            (self.0)(v).map_err(E::custom)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
    }
    d.deserialize_any(Number(check))
}

fn fraction<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    checked_number(d, |value| {
        if value > 0.0 && value < 1.0 {
            Ok(value)
        } else {
            Err(format!(
                "invalid target {value}: a fraction between 0 and 1, e.g. 0.999 for 99.9%"
            ))
        }
    })
}

fn fraction_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    fraction(d).map(Some)
}

fn positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    checked_number(d, |value| {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(format!(
                "invalid factor {value}: a burn rate above 0, e.g. 14.4"
            ))
        }
    })
}

fn instant<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
    checked_str(d, Instant::parse)
}

fn serialize_instant<S: serde::Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

fn utc() -> String {
    "UTC".into()
}

fn time_zone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, |zone| {
        if matches!(zone, "UTC" | "Etc/UTC") {
            Ok(zone.to_string())
        } else {
            Err(format!(
                "time zone '{zone}' is not supported: calendar windows are in UTC; write the start time in UTC and timeZone: UTC"
            ))
        }
    })
}

#[cfg(test)]
mod tests;
