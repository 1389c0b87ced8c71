//! `loadlens usl`: a run's ladder steps (or a CSV) fitted to the Universal Scalability Law.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use models::usl::{self, Fit, Point};
use serde_json::{Value, json};

use crate::{AnalyzerError, Store, params};

/// The query that turns a run's ladder steps into (concurrency, throughput) points.
const LADDER_SQL: &str = include_str!("../../queries/concurrency_throughput.sql");

/// Which concurrency a run's steps are fitted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    /// The level the generator was asked to hold.
    #[default]
    Configured,
    /// Throughput × mean latency (Little's law): what the system actually saw.
    Measured,
}

impl std::str::FromStr for Concurrency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "configured" => Ok(Concurrency::Configured),
            "measured" => Ok(Concurrency::Measured),
            other => Err(format!(
                "unknown concurrency '{other}': use configured or measured"
            )),
        }
    }
}

/// What the report should predict besides the fit itself.
#[derive(Debug, Clone, Default)]
pub struct Questions {
    /// Concurrency levels to predict throughput and latency at; empty: the
    /// measured levels, N* and 2·N*.
    pub predict: Vec<f64>,
    /// A latency target in seconds (for runs; in the reciprocal of the
    /// throughput's time unit for CSV input): the largest concurrency that meets it.
    pub latency_target: Option<f64>,
}

/// A fit with where its points came from.
#[derive(Debug)]
pub struct Report {
    /// "run ID" or "FILE".
    pub source: String,
    pub points: Vec<Point>,
    pub fit: Fit,
    pub questions: Questions,
}

/// The (concurrency, throughput) points of a run's ladder steps, warm-up excluded.
pub async fn run_points(
    store: &Store,
    run: &str,
    concurrency: Concurrency,
) -> Result<Vec<Point>, AnalyzerError> {
    let sql = params::substitute(
        LADDER_SQL,
        &BTreeMap::from([("run".to_string(), run.to_string())]),
    )?;
    let batches = store.query(&sql).await?;
    let column = match concurrency {
        Concurrency::Configured => "concurrency",
        Concurrency::Measured => "measured_concurrency",
    };
    let mut points = Vec::new();
    let mut without_level = 0;
    for batch in &batches {
        let level = arrow::compute::cast(
            batch
                .column_by_name(column)
                .expect("the ladder query names it"),
            &DataType::Float64,
        )
        .map_err(|e| AnalyzerError::Execution(e.to_string()))?;
        let level = level.as_primitive::<Float64Type>();
        let throughput = batch
            .column_by_name("throughput")
            .expect("the ladder query names it")
            .as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            if level.is_null(row) || throughput.is_null(row) {
                without_level += 1;
                continue;
            }
            points.push(Point {
                concurrency: level.value(row),
                throughput: throughput.value(row),
            });
        }
    }
    if points.is_empty() {
        let message = if without_level > 0 {
            format!(
                "run '{run}' has no concurrency ladder steps (its requests carry no concurrency level); run a ladder (load model 'ladder', or 'loadlens quickstart'), or fit a CSV with --csv"
            )
        } else {
            format!(
                "run '{run}' has no requests outside warm-up in {}; list the runs with: loadlens sql \"SELECT DISTINCT run_id FROM requests\"",
                store.root().display()
            )
        };
        return Err(AnalyzerError::Input(message));
    }
    Ok(points)
}

/// Reads `concurrency,throughput` points from a CSV file with a header row;
/// other columns are ignored.
pub fn csv_points(path: &Path) -> Result<Vec<Point>, AnalyzerError> {
    let shown = path.display();
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| AnalyzerError::Input(format!("cannot read '{shown}': {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| AnalyzerError::Input(format!("{shown}: {e}")))?
        .clone();
    let position = |name: &str| {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
            AnalyzerError::Input(format!(
                "{shown}:1: no '{name}' column; the header must name 'concurrency' and 'throughput'"
            ))
        })
    };
    let (n_at, x_at) = (position("concurrency")?, position("throughput")?);
    let mut points = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| AnalyzerError::Input(format!("{shown}: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        let number = |at: usize, name: &str| {
            let text = record.get(at).unwrap_or("").trim();
            text.parse::<f64>().map_err(|_| {
                AnalyzerError::Input(format!("{shown}:{line}: {name} '{text}' is not a number"))
            })
        };
        points.push(Point {
            concurrency: number(n_at, "concurrency")?,
            throughput: number(x_at, "throughput")?,
        });
    }
    Ok(points)
}

/// Fits `points` and keeps what is needed to report on them.
pub fn report(
    source: String,
    points: Vec<Point>,
    questions: Questions,
) -> Result<Report, AnalyzerError> {
    let fit = usl::fit(&points).map_err(|e| AnalyzerError::Input(format!("{source}: {e}")))?;
    Ok(Report {
        source,
        points,
        fit,
        questions,
    })
}

impl Report {
    /// The levels to predict at: as asked, or the measured ones (powers of two
    /// up to the highest when there are many) plus N* and 2·N*.
    fn prediction_levels(&self) -> Vec<f64> {
        if !self.questions.predict.is_empty() {
            return self.questions.predict.clone();
        }
        let mut levels: Vec<f64> = self.points.iter().map(|p| p.concurrency).collect();
        levels.sort_by(f64::total_cmp);
        levels.dedup();
        if levels.len() > 10 {
            let highest = levels[levels.len() - 1];
            levels = std::iter::successors(Some(1.0), |n| Some(n * 2.0))
                .take_while(|n| *n <= highest)
                .chain([highest])
                .collect();
        }
        if let Some(n_star) = self.fit.params.peak_concurrency() {
            levels.extend([n_star.round().max(1.0), (2.0 * n_star).round()]);
        }
        levels.sort_by(f64::total_cmp);
        levels.dedup();
        levels
    }

    /// The report as JSON; σ, κ, λ and N* are top-level keys.
    pub fn to_json(&self) -> Value {
        let fit = &self.fit;
        let p = fit.params;
        let n_star = p.peak_concurrency();
        let estimates: serde_json::Map<String, Value> = fit
            .estimates()
            .iter()
            .map(|(name, e)| (name.to_string(), json!(e.standard_error)))
            .collect();
        let intervals: serde_json::Map<String, Value> = fit
            .estimates()
            .iter()
            .map(|(name, e)| (name.to_string(), json!(e.interval.map(|(l, h)| [l, h]))))
            .collect();
        let predictions: Vec<Value> = self
            .prediction_levels()
            .into_iter()
            .map(|n| {
                let (low, high) = fit.throughput_band(n);
                json!({
                    "concurrency": n,
                    "throughput": p.throughput(n),
                    "throughput_low": low,
                    "throughput_high": high,
                    "latency": p.latency(n),
                })
            })
            .collect();
        let measurements: Vec<Value> = self
            .points
            .iter()
            .map(|pt| {
                let fitted = p.throughput(pt.concurrency);
                json!({
                    "concurrency": pt.concurrency,
                    "throughput": pt.throughput,
                    "fitted": fitted,
                    "residual": pt.throughput - fitted,
                })
            })
            .collect();
        json!({
            "source": self.source,
            "sigma": p.sigma,
            "kappa": p.kappa,
            "lambda": p.lambda,
            "n_star": n_star,
            "x_max": n_star.map(|n| p.throughput(n)),
            "one_over_sigma": (p.sigma > 0.0).then(|| 1.0 / p.sigma),
            "amdahl_ceiling": p.amdahl_ceiling(),
            "latency_at_1": p.latency(1.0),
            "r_squared": fit.r_squared,
            "residual_standard_error": fit.residual_standard_error,
            "points": fit.points,
            "standard_errors": estimates,
            "confidence_level": fit.confidence,
            "confidence_intervals": intervals,
            "latency_target": self.questions.latency_target.map(|target| json!({
                "latency": target,
                "max_concurrency": p.concurrency_for_latency(target).map(finite_or_null),
            })),
            "predictions": predictions,
            "measurements": measurements,
            "warnings": fit.warnings,
        })
    }

    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let fit = &self.fit;
        let p = fit.params;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "USL fit of {} ({} measurements, R² = {:.4})",
            self.source, fit.points, fit.r_squared
        );
        let labels = [
            ("σ contention", "sigma"),
            ("κ coherency", "kappa"),
            ("λ rate at N=1", "lambda"),
        ];
        for ((label, _), (_, estimate)) in labels.iter().zip(fit.estimates()) {
            let spread = match (estimate.standard_error, estimate.interval) {
                (Some(se), Some((low, high))) => format!(
                    "± {}   95% CI [{}, {}]",
                    significant(se),
                    significant(low),
                    significant(high)
                ),
                _ => "(held at 0)".to_string(),
            };
            let _ = writeln!(
                out,
                "  {label:<15} {:>12}   {spread}",
                significant(estimate.value)
            );
        }
        match p.peak_concurrency() {
            Some(n_star) => {
                let _ = writeln!(
                    out,
                    "  {:<15} {:>12}   X(N*) = {}",
                    "N* peak",
                    significant(n_star),
                    significant(p.throughput(n_star))
                );
            }
            None => {
                let _ = writeln!(out, "  {:<15} {:>12}", "N* peak", "unbounded");
            }
        }
        if let Some(ceiling) = p.amdahl_ceiling() {
            let _ = writeln!(
                out,
                "  {:<15} {:>12}   (1/σ = {})",
                "Amdahl ceiling",
                significant(ceiling),
                significant(1.0 / p.sigma)
            );
        }
        if let Some(target) = self.questions.latency_target {
            let answer = match p.concurrency_for_latency(target) {
                Some(n) if n.is_finite() => format!("up to N = {}", significant(n)),
                Some(_) => "at any concurrency".to_string(),
                None => "at no concurrency (even N = 1 is slower)".to_string(),
            };
            let _ = writeln!(out, "  latency ≤ {} {answer}", significant(target));
        }
        let _ = writeln!(
            out,
            "\n  {:>10} {:>14} {:>27} {:>12}",
            "N", "throughput", "95% band", "latency"
        );
        for n in self.prediction_levels() {
            let (low, high) = fit.throughput_band(n);
            let band = format!("[{}, {}]", significant(low), significant(high));
            let _ = writeln!(
                out,
                "  {:>10} {:>14} {:>27} {:>12}",
                significant(n).trim_end_matches('0').trim_end_matches('.'),
                significant(p.throughput(n)),
                band,
                significant(p.latency(n))
            );
        }
        for warning in &fit.warnings {
            let _ = writeln!(out, "\nnote: {warning}");
        }
        out
    }
}

/// JSON cannot hold infinity: an unbounded answer is null, with the text saying why.
fn finite_or_null(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}

/// Six significant digits, without an exponent for everyday magnitudes.
fn significant(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-4..9).contains(&magnitude) {
        return format!("{value:.5e}");
    }
    let decimals = (5 - magnitude).max(0) as usize;
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits_read_naturally() {
        assert_eq!(significant(0.02671591), "0.0267159");
        assert_eq!(significant(995.6486), "995.649");
        assert_eq!(significant(12341.7457), "12341.7");
        assert_eq!(significant(7.69095e-4), "0.000769095");
        assert_eq!(significant(3.2e-7), "3.20000e-7");
    }

    #[test]
    fn csv_errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("loadlens-usl-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.csv");
        std::fs::write(&file, "concurrency,throughput\n1,10\n2,abc\n").unwrap();
        let error = csv_points(&file).unwrap_err().to_string();
        assert!(
            error.ends_with("bad.csv:3: throughput 'abc' is not a number"),
            "{error}"
        );
        std::fs::write(&file, "n,x\n1,10\n").unwrap();
        let error = csv_points(&file).unwrap_err().to_string();
        assert!(error.contains("no 'concurrency' column"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
