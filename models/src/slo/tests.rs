//! Parsing tests for SLO files, and the seeded generator the property tests share.

use std::path::Path;

use super::*;

/// A seeded SplitMix64 generator: the same seed gives the same cases, so a
/// failing property test can be rerun as is.
pub(crate) struct Seeded(u64);

impl Seeded {
    pub(crate) fn new(seed: u64) -> Self {
        Seeded(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (0 when n is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

pub(crate) const RATIO: &str = "\
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  displayName: Checkout availability
spec:
  service: shop
  indicator:
    metadata:
      name: checkout-errors
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: loadlens
            spec:
              table: requests
              filter: \"step = 'checkout' AND is_error\"
        total:
          metricSource:
            type: loadlens
            spec:
              table: requests
              filter: \"step = 'checkout'\"
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: checkouts succeed
      target: 0.995
";

pub(crate) const THRESHOLD: &str = "\
apiVersion: openslo/v1
kind: SLO
metadata: { name: api-latency }
spec:
  service: shop
  indicator:
    metadata: { name: latency }
    spec:
      thresholdMetric:
        metricSource:
          type: loadlens
          spec: { table: requests, value: latency_ms }
  timeWindow: [ { duration: 1M, isRolling: false, calendar: { startTime: '2026-01-01 00:00:00', timeZone: UTC } } ]
  budgetingMethod: Timeslices
  objectives:
    - { target: 0.99, op: lte, value: 250, timeSliceTarget: 0.95, timeSliceWindow: 1m }
";

fn parse(text: &str) -> Result<Slo, SloError> {
    Slo::parse(Path::new("slo.yaml"), text)
}

#[test]
fn a_ratio_slo_parses() {
    let slo = parse(RATIO).unwrap();
    assert_eq!(slo.metadata.name, "checkout-availability");
    let IndicatorSpec::RatioMetric(r) = &slo.spec.indicator.spec else {
        panic!("not a ratio: {:?}", slo.spec.indicator.spec);
    };
    let Counted::Bad(bad) = &r.counted else {
        panic!("bad not read")
    };
    assert_eq!(bad.spec.rows, Rows::Table("requests".into()));
    assert_eq!(
        bad.spec.filter.as_deref(),
        Some("step = 'checkout' AND is_error")
    );
    assert_eq!(slo.spec.time_window.duration, Span::Seconds(30 * 86_400));
    assert_eq!(slo.spec.objectives[0].target, 0.995);
    assert_eq!(slo.objective_name(0), "checkouts succeed");
    assert_eq!(slo.burn_rates().len(), 4);
}

#[test]
fn a_threshold_slo_with_a_calendar_window_parses() {
    let slo = parse(THRESHOLD).unwrap();
    let w = &slo.spec.time_window;
    assert_eq!((w.duration, w.is_rolling), (Span::Months(1), false));
    assert_eq!(
        w.calendar.as_ref().unwrap().start_time.to_string(),
        "2026-01-01T00:00:00Z"
    );
    let o = &slo.spec.objectives[0];
    assert_eq!(
        (o.op, o.value, o.time_slice_window),
        (Some(Op::Lte), Some(250.0), Some(Span::Seconds(60)))
    );
    assert_eq!(slo.objective_name(0), "objective-1");
}

/// Each broken file and where its error must point: (replace, with, line:col, words).
#[test]
fn mistakes_name_line_and_column() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "      target: 0.995",
            "      targte: 0.995",
            ":32:7",
            &["unknown field `targte`"],
        ),
        (
            "      target: 0.995",
            "      target: 99.5",
            ":32:15",
            &["invalid target 99.5", "0.999"],
        ),
        ("duration: 30d", "duration: 30 days", ":27:17", &["30 days"]),
        ("openslo/v1", "openslo/v2", ":1:13", &["openslo/v1"]),
        (
            "name: checkout-availability",
            "name: Checkout",
            ":4:9",
            &["lowercase"],
        ),
        (
            "type: loadlens",
            "type: prometheus",
            ":16:19",
            &["loadlens"],
        ),
        (
            "        bad:",
            "        good:\n          metricSource: {type: loadlens, spec: {table: requests}}\n        bad:",
            "",
            &["exactly one of `good` and `bad`"],
        ),
        (
            "              table: requests\n              filter: \"step = 'checkout'\"",
            "              filter: \"step = 'checkout'\"",
            "",
            &["exactly one of `table`"],
        ),
        (
            "budgetingMethod: Occurrences",
            "budgetingMethod: Timeslices",
            "",
            &["spec.objectives[0]", "timeSliceTarget"],
        ),
    ];
    for (from, to, location, words) in cases {
        assert!(RATIO.contains(from), "{from}");
        let err = parse(&RATIO.replacen(from, to, 1)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("slo.yaml{location}")),
            "{from} → {to}: {text}"
        );
        if location.is_empty() {
            // Errors found across fields still point into the file.
            assert!(!err.location.is_empty(), "{text}");
        }
        for word in *words {
            assert!(text.contains(word), "{from} → {to}: {text}");
        }
    }
}

#[test]
fn threshold_objectives_need_op_and_value() {
    let text = THRESHOLD.replace("op: lte, value: 250, ", "");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("needs `op`"), "{err}");
    let text = THRESHOLD.replace("timeZone: UTC", "timeZone: Europe/Paris");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("slo.yaml:13:") && err.contains("UTC"),
        "{err}"
    );
    let text = THRESHOLD.replace("isRolling: false", "isRolling: true");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("rolling window takes no calendar"), "{err}");
}

pub(crate) const DEFAULTS: rules::Defaults = rules::Defaults {
    requests: "loadlens_run_requests_total",
    errors: "loadlens_run_errors_total",
    latency: "loadlens_run_latency_seconds",
    latency_buckets: &[0.1, 0.25, 0.5, 1.0],
};

#[test]
fn rules_name_every_window_and_alert() {
    let slo = parse(RATIO).unwrap();
    let text = rules::generate(&slo, &DEFAULTS, "slo.yaml").unwrap();
    for window in ["5m", "30m", "1h", "2h", "6h", "1d", "3d"] {
        assert!(
            text.contains(&format!("record: loadlens_slo:error_ratio:rate{window}\n")),
            "{window}: {text}"
        );
        assert!(text.contains(&format!(
            "(sum(rate(loadlens_run_errors_total[{window}])) or vector(0)) / sum(rate(loadlens_run_requests_total[{window}]))"
        )));
    }
    assert_eq!(
        text.matches("alert: CheckoutAvailabilityErrorBudgetBurn\n")
            .count(),
        4
    );
    assert!(
        text.contains(
            "loadlens_slo:error_ratio:rate1h{slo=\"checkout-availability\"} > (14.4 * 0.005)"
        ),
        "{text}"
    );
    assert!(text.contains("severity: ticket"));
    // A threshold at a bucket bound uses the collector's histogram; elsewhere it needs series.
    let slo = parse(THRESHOLD).unwrap();
    let text = rules::generate(&slo, &DEFAULTS, "slo.yaml").unwrap();
    assert!(
        text.contains("loadlens_run_latency_seconds_bucket{le=\"0.25\"}[1m]"),
        "{text}"
    );
    assert!(text.contains("record: loadlens_slo:slice_bad\n"), "{text}");
    assert!(
        text.contains("avg_over_time(loadlens_slo:slice_bad{slo=\"api-latency\"}[1h])"),
        "{text}"
    );
    let slo = parse(&THRESHOLD.replace("value: 250", "value: 300")).unwrap();
    let err = rules::generate(&slo, &DEFAULTS, "slo.yaml").unwrap_err();
    assert!(
        err.contains("add spec.prometheus") && err.contains("100, 250, 500, 1000"),
        "{err}"
    );
}
