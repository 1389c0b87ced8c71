//! Universal Scalability Law: bounded Levenberg–Marquardt fit and predictions.
//!
//! X(N) = λN / (1 + σ(N−1) + κN(N−1)), after N. J. Gunther, *Guerrilla Capacity
//! Planning* (2007): λ is the throughput of one request stream, σ the share of
//! work that contends for a serial resource, κ the cost of keeping N streams
//! coherent with each other. With κ > 0 throughput peaks at
//! N* = √((1−σ)/κ) and then falls; with κ = 0 it rises towards the Amdahl
//! ceiling λ/σ.
//!
//! The fit minimises the unweighted sum of squared throughput residuals with
//! σ, κ, λ ≥ 0. Standard errors come from the Jacobian at the optimum
//! (s²(JᵀJ)⁻¹ over the parameters not held at a bound); intervals use
//! Student's t with n − p degrees of freedom.

use serde::Serialize;

use crate::dist::student_t_quantile;

/// One measurement: throughput at a concurrency level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub concurrency: f64,
    pub throughput: f64,
}

/// Why a fit could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UslError {
    #[error(
        "a USL fit needs at least 4 measurements for its 3 parameters and an error estimate; got {0}. Measure more concurrency levels (e.g. a ladder of 1,2,4,8,16,32)"
    )]
    TooFewPoints(usize),
    #[error(
        "a USL fit needs at least 3 different concurrency levels; got {0}. Measure more levels"
    )]
    TooFewLevels(usize),
    #[error(
        "measurement {number} (concurrency {concurrency}, throughput {throughput}) is not a positive finite number; the USL is defined for concurrency > 0 and throughput > 0"
    )]
    NotPositive {
        /// 1-based position of the measurement in the input.
        number: usize,
        concurrency: f64,
        throughput: f64,
    },
}

/// The three USL coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Params {
    /// Contention: the serial fraction of the work.
    pub sigma: f64,
    /// Coherency: the pairwise crosstalk cost.
    pub kappa: f64,
    /// Throughput at concurrency 1 (requests per unit of time).
    pub lambda: f64,
}

impl Params {
    /// The model's denominator, 1 + σ(N−1) + κN(N−1).
    fn slowdown(&self, n: f64) -> f64 {
        1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0)
    }

    /// Predicted throughput X(N).
    pub fn throughput(&self, n: f64) -> f64 {
        self.lambda * n / self.slowdown(n)
    }

    /// Predicted latency R(N) = N / X(N) by Little's law, in the reciprocal of
    /// the throughput's time unit (seconds for requests per second).
    pub fn latency(&self, n: f64) -> f64 {
        self.slowdown(n) / self.lambda
    }

    /// N* = √((1−σ)/κ), where throughput peaks; `None` when it never does (κ = 0 or σ ≥ 1).
    pub fn peak_concurrency(&self) -> Option<f64> {
        (self.kappa > 0.0 && self.sigma < 1.0).then(|| ((1.0 - self.sigma) / self.kappa).sqrt())
    }

    /// λ/σ, the throughput that contention alone allows as N grows; `None` when σ = 0.
    pub fn amdahl_ceiling(&self) -> Option<f64> {
        (self.sigma > 0.0).then(|| self.lambda / self.sigma)
    }

    /// The largest concurrency whose predicted latency stays at or under
    /// `target` (same time unit as [`Params::latency`]). `None` when the
    /// target is below the latency at N = 1; infinite when latency never
    /// grows (σ = κ = 0).
    pub fn concurrency_for_latency(&self, target: f64) -> Option<f64> {
        // λR(N) = 1 + σ(N−1) + κN(N−1) ≤ λ·target  ⇔  κN² + (σ−κ)N + (1 − σ − λ·target) ≤ 0
        let budget = self.lambda * target;
        if budget < 1.0 {
            return None;
        }
        let (a, b, c) = (
            self.kappa,
            self.sigma - self.kappa,
            1.0 - self.sigma - budget,
        );
        if a > 0.0 {
            Some((-b + (b * b - 4.0 * a * c).sqrt()) / (2.0 * a))
        } else if b > 0.0 {
            Some(-c / b)
        } else {
            Some(f64::INFINITY)
        }
    }

    /// ∂X/∂(σ, κ, λ) at N.
    fn gradient(&self, n: f64) -> [f64; 3] {
        let d = self.slowdown(n);
        let numerator = self.lambda * n;
        [
            -numerator * (n - 1.0) / (d * d),
            -numerator * n * (n - 1.0) / (d * d),
            n / d,
        ]
    }

    fn as_array(&self) -> [f64; 3] {
        [self.sigma, self.kappa, self.lambda]
    }

    fn from_array(values: [f64; 3]) -> Params {
        Params {
            sigma: values[0],
            kappa: values[1],
            lambda: values[2],
        }
    }
}

/// Names of the parameters, in the order of [`Params::as_array`].
const NAMES: [&str; 3] = ["sigma", "kappa", "lambda"];

/// A value with its standard error and confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    /// `None` for a parameter held at its bound of 0, where the usual
    /// standard error does not apply.
    pub standard_error: Option<f64>,
    /// Lower and upper limits at [`Fit::confidence`]; the lower limit is
    /// clipped at the bound 0.
    pub interval: Option<(f64, f64)>,
}

/// A fitted model and how well it fits.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub params: Params,
    pub sigma: Estimate,
    pub kappa: Estimate,
    pub lambda: Estimate,
    /// Confidence level of the intervals (0.95).
    pub confidence: f64,
    /// 1 − SSR/SST.
    pub r_squared: f64,
    /// √(SSR / (n − free parameters)).
    pub residual_standard_error: f64,
    /// Number of measurements fitted.
    pub points: usize,
    /// Levenberg–Marquardt iterations of the best start.
    pub iterations: usize,
    /// Caveats a reader must know, in plain words (parameters at a bound,
    /// extrapolated λ).
    pub warnings: Vec<String>,
    /// s²(JᵀJ)⁻¹ over (σ, κ, λ), zero in the rows and columns of parameters at a bound.
    covariance: [[f64; 3]; 3],
    /// Student's t critical value for the intervals.
    t_critical: f64,
}

impl Fit {
    /// The throughput band at N: X(N) ± t·SE by the delta method, clipped at 0.
    pub fn throughput_band(&self, n: f64) -> (f64, f64) {
        let g = self.params.gradient(n);
        let mut variance = 0.0;
        for (i, gi) in g.iter().enumerate() {
            for (j, gj) in g.iter().enumerate() {
                variance += gi * self.covariance[i][j] * gj;
            }
        }
        let half = self.t_critical * variance.max(0.0).sqrt();
        let x = self.params.throughput(n);
        ((x - half).max(0.0), x + half)
    }
}

/// Fits the USL to `points` (any order; repeated concurrency levels allowed).
pub fn fit(points: &[Point]) -> Result<Fit, UslError> {
    for (i, p) in points.iter().enumerate() {
        let valid = |v: f64| v.is_finite() && v > 0.0;
        if !valid(p.concurrency) || !valid(p.throughput) {
            return Err(UslError::NotPositive {
                number: i + 1,
                concurrency: p.concurrency,
                throughput: p.throughput,
            });
        }
    }
    if points.len() < 4 {
        return Err(UslError::TooFewPoints(points.len()));
    }
    let mut levels: Vec<f64> = points.iter().map(|p| p.concurrency).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    if levels.len() < 3 {
        return Err(UslError::TooFewLevels(levels.len()));
    }

    let mut warnings = Vec::new();
    let has_one = points.iter().any(|p| p.concurrency == 1.0);
    if !has_one {
        warnings.push(format!(
            "no measurement at concurrency 1: λ is extrapolated from the lowest level measured ({})",
            levels[0]
        ));
    }

    let best = starting_points(points)
        .into_iter()
        .map(|start| levenberg_marquardt(points, start))
        .min_by(|a, b| a.cost.total_cmp(&b.cost))
        .expect("there is at least one starting point");
    let params = Params::from_array(best.theta);

    // Parameters held at the bound take no part in the covariance.
    let free: Vec<usize> = (0..3).filter(|&i| !best.at_bound[i]).collect();
    let dof = points.len() - free.len();
    let ssr = best.cost;
    let s2 = ssr / dof as f64;
    let t_critical = student_t_quantile(0.975, dof as f64);
    let (jtj, _) = normal_equations(points, &params);
    let mut covariance = [[0.0; 3]; 3];
    if let Some(inverse) = invert(&submatrix(&jtj, &free)) {
        for (a, &i) in free.iter().enumerate() {
            for (b, &j) in free.iter().enumerate() {
                covariance[i][j] = s2 * inverse[a][b];
            }
        }
    } else {
        warnings.push(
            "the parameters cannot be told apart from these measurements; standard errors are not available"
                .to_string(),
        );
    }
    let estimate = |i: usize| {
        let value = params.as_array()[i];
        if best.at_bound[i] || covariance[i][i] <= 0.0 {
            return Estimate {
                value,
                standard_error: None,
                interval: None,
            };
        }
        let se = covariance[i][i].sqrt();
        Estimate {
            value,
            standard_error: Some(se),
            interval: Some(((value - t_critical * se).max(0.0), value + t_critical * se)),
        }
    };
    if best.at_bound[1] {
        let ceiling = params
            .amdahl_ceiling()
            .map_or("unbounded".to_string(), |c| format!("{c:.6}"));
        warnings.push(format!(
            "κ is 0 (held at its bound): no retrograde region was measured, so N* is unbounded and throughput rises towards the Amdahl ceiling λ/σ = {ceiling}"
        ));
    }
    if best.at_bound[0] {
        warnings.push("σ is 0 (held at its bound): no contention was measured".to_string());
    }

    let mean = points.iter().map(|p| p.throughput).sum::<f64>() / points.len() as f64;
    let sst: f64 = points.iter().map(|p| (p.throughput - mean).powi(2)).sum();
    Ok(Fit {
        params,
        sigma: estimate(0),
        kappa: estimate(1),
        lambda: estimate(2),
        confidence: 0.95,
        r_squared: if sst > 0.0 { 1.0 - ssr / sst } else { 1.0 },
        residual_standard_error: s2.sqrt(),
        points: points.len(),
        iterations: best.iterations,
        warnings,
        covariance,
        t_critical,
    })
}

/// Starting points: the linearised least-squares estimate plus two generic
/// guesses; the best of the three fits is kept, so one poor start cannot
/// strand the fit in a flat region.
fn starting_points(points: &[Point]) -> Vec<[f64; 3]> {
    let lowest = points
        .iter()
        .map(|p| p.concurrency)
        .fold(f64::INFINITY, f64::min);
    let at_lowest: Vec<f64> = points
        .iter()
        .filter(|p| p.concurrency == lowest)
        .map(|p| p.throughput / p.concurrency)
        .collect();
    let lambda = at_lowest.iter().sum::<f64>() / at_lowest.len() as f64;
    // With λ fixed, λN/X − 1 = σ(N−1) + κN(N−1) is linear in σ and κ.
    let (mut a11, mut a12, mut a22, mut b1, mut b2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        let (u, v) = (p.concurrency - 1.0, p.concurrency * (p.concurrency - 1.0));
        let y = lambda * p.concurrency / p.throughput - 1.0;
        a11 += u * u;
        a12 += u * v;
        a22 += v * v;
        b1 += u * y;
        b2 += v * y;
    }
    let det = a11 * a22 - a12 * a12;
    let mut starts = vec![[0.05, 1e-4, lambda], [0.0, 0.0, lambda]];
    if det.abs() > f64::EPSILON * a11 * a22 {
        let sigma = ((b1 * a22 - b2 * a12) / det).clamp(0.0, 0.999);
        let kappa = ((a11 * b2 - a12 * b1) / det).max(0.0);
        starts.insert(0, [sigma, kappa, lambda]);
    }
    starts
}

/// The outcome of one Levenberg–Marquardt descent.
struct Descent {
    theta: [f64; 3],
    cost: f64,
    at_bound: [bool; 3],
    iterations: usize,
}

fn cost(points: &[Point], params: &Params) -> f64 {
    points
        .iter()
        .map(|p| (p.throughput - params.throughput(p.concurrency)).powi(2))
        .sum()
}

/// JᵀJ and Jᵀr at `params`, where r are the residuals X − X(N).
fn normal_equations(points: &[Point], params: &Params) -> ([[f64; 3]; 3], [f64; 3]) {
    let mut jtj = [[0.0; 3]; 3];
    let mut jtr = [0.0; 3];
    for p in points {
        let g = params.gradient(p.concurrency);
        let r = p.throughput - params.throughput(p.concurrency);
        for i in 0..3 {
            jtr[i] += g[i] * r;
            for j in 0..3 {
                jtj[i][j] += g[i] * g[j];
            }
        }
    }
    (jtj, jtr)
}

/// Levenberg–Marquardt with Marquardt's diagonal scaling (the parameters
/// differ by seven orders of magnitude) and an active set for the bounds: a
/// parameter at 0 whose gradient points below 0 is held there for the step.
fn levenberg_marquardt(points: &[Point], start: [f64; 3]) -> Descent {
    const MAX_ITERATIONS: usize = 1000;
    let mut theta = start;
    let mut current = cost(points, &Params::from_array(theta));
    let mut damping = 1e-3;
    let mut at_bound = [false; 3];
    let mut iterations = 0;
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let (jtj, jtr) = normal_equations(points, &Params::from_array(theta));
        // Jᵀr > 0 means raising the parameter lowers the cost.
        at_bound = [0, 1, 2].map(|i| theta[i] <= 0.0 && jtr[i] <= 0.0);
        let free: Vec<usize> = (0..3).filter(|&i| !at_bound[i]).collect();
        if free.is_empty() {
            break;
        }
        let mut improved = false;
        while damping < 1e20 {
            let mut system = submatrix(&jtj, &free);
            for (a, row) in system.iter_mut().enumerate() {
                row[a] += damping * row[a].max(f64::MIN_POSITIVE);
            }
            let rhs: Vec<f64> = free.iter().map(|&i| jtr[i]).collect();
            let Some(step) = solve(system, rhs) else {
                damping *= 10.0;
                continue;
            };
            let mut candidate = theta;
            for (a, &i) in free.iter().enumerate() {
                candidate[i] = (theta[i] + step[a]).max(0.0);
            }
            let next = cost(points, &Params::from_array(candidate));
            if next < current {
                let relative_step = free
                    .iter()
                    .map(|&i| (candidate[i] - theta[i]).abs() / theta[i].abs().max(1e-12))
                    .fold(0.0, f64::max);
                let relative_gain = (current - next) / current.max(f64::MIN_POSITIVE);
                theta = candidate;
                current = next;
                damping = (damping / 10.0).max(1e-15);
                improved = true;
                if relative_step < 1e-12 || relative_gain < 1e-15 {
                    return Descent {
                        theta,
                        cost: current,
                        at_bound: [0, 1, 2].map(|i| theta[i] <= 0.0),
                        iterations,
                    };
                }
                break;
            }
            damping *= 10.0;
        }
        if !improved {
            // No step lowers the cost at any damping: a minimum to machine precision.
            break;
        }
    }
    Descent {
        theta,
        cost: current,
        at_bound: [0, 1, 2].map(|i| at_bound[i] || theta[i] <= 0.0),
        iterations,
    }
}

fn submatrix(matrix: &[[f64; 3]; 3], keep: &[usize]) -> Vec<Vec<f64>> {
    keep.iter()
        .map(|&i| keep.iter().map(|&j| matrix[i][j]).collect())
        .collect()
}

/// Solves A x = b by Gaussian elimination with partial pivoting; `None` if A is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for column in 0..n {
        let pivot =
            (column..n).max_by(|&x, &y| a[x][column].abs().total_cmp(&a[y][column].abs()))?;
        if a[pivot][column].abs() < f64::MIN_POSITIVE * 1e10 {
            return None;
        }
        a.swap(column, pivot);
        b.swap(column, pivot);
        let pivot_row = a[column].clone();
        for row in column + 1..n {
            let factor = a[row][column] / pivot_row[column];
            for (target, source) in a[row][column..].iter_mut().zip(&pivot_row[column..]) {
                *target -= factor * source;
            }
            b[row] -= factor * b[column];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The inverse of a small symmetric positive-definite matrix, scaled to unit
/// diagonal first so that σ, κ and λ's different magnitudes do not lose
/// precision; `None` if it is singular.
fn invert(matrix: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = matrix.len();
    let scale: Vec<f64> = (0..n).map(|i| matrix[i][i].sqrt()).collect();
    if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return None;
    }
    let scaled: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| matrix[i][j] / (scale[i] * scale[j]))
                .collect()
        })
        .collect();
    let mut inverse = vec![vec![0.0; n]; n];
    for column in 0..n {
        let unit = (0..n).map(|i| f64::from(u8::from(i == column))).collect();
        let x = solve(scaled.clone(), unit)?;
        for row in 0..n {
            inverse[row][column] = x[row] / (scale[row] * scale[column]);
        }
    }
    Some(inverse)
}

impl Fit {
    /// The parameter estimates by name, in the order σ, κ, λ.
    pub fn estimates(&self) -> [(&'static str, &Estimate); 3] {
        [
            (NAMES[0], &self.sigma),
            (NAMES[1], &self.kappa),
            (NAMES[2], &self.lambda),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(pairs: &[(f64, f64)]) -> Vec<Point> {
        pairs
            .iter()
            .map(|&(concurrency, throughput)| Point {
                concurrency,
                throughput,
            })
            .collect()
    }

    fn exact(params: Params, levels: &[f64]) -> Vec<Point> {
        levels
            .iter()
            .map(|&n| Point {
                concurrency: n,
                throughput: params.throughput(n),
            })
            .collect()
    }

    fn close(got: f64, expected: f64, relative: f64) -> bool {
        (got - expected).abs() <= relative * expected.abs()
    }

    #[test]
    fn recovers_exact_parameters_in_any_order() {
        let truth = Params {
            sigma: 0.03,
            kappa: 2e-4,
            lambda: 850.0,
        };
        let mut data = exact(truth, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]);
        data.reverse();
        data.swap(1, 5);
        let fit = fit(&data).unwrap();
        assert!(close(fit.params.sigma, 0.03, 1e-7), "{:?}", fit.params);
        assert!(close(fit.params.kappa, 2e-4, 1e-7), "{:?}", fit.params);
        assert!(close(fit.params.lambda, 850.0, 1e-9), "{:?}", fit.params);
        assert!(fit.r_squared > 1.0 - 1e-12);
        assert!(fit.warnings.is_empty(), "{:?}", fit.warnings);
    }

    #[test]
    fn kappa_held_at_zero_when_nothing_turns_down() {
        // Amdahl data (κ = 0) with noise that would pull κ below zero.
        let truth = Params {
            sigma: 0.1,
            kappa: 0.0,
            lambda: 100.0,
        };
        let mut data = exact(truth, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
        data[5].throughput *= 1.02;
        data[4].throughput *= 1.01;
        let fit = fit(&data).unwrap();
        assert_eq!(fit.params.kappa, 0.0);
        assert_eq!(fit.kappa.standard_error, None);
        assert_eq!(fit.params.peak_concurrency(), None);
        assert!(fit.sigma.standard_error.is_some());
        assert!(
            fit.warnings.iter().any(|w| w.contains("N* is unbounded")),
            "{:?}",
            fit.warnings
        );
        let ceiling = fit.params.amdahl_ceiling().unwrap();
        assert!(ceiling > 0.0 && ceiling.is_finite());
    }

    #[test]
    fn bad_inputs_are_refused_by_name() {
        let four = points(&[(1.0, 10.0), (2.0, 19.0), (4.0, 30.0), (8.0, 35.0)]);
        assert_eq!(fit(&four[..3]), Err(UslError::TooFewPoints(3)));
        let mut negative = four.clone();
        negative[2].throughput = -1.0;
        assert!(matches!(
            fit(&negative),
            Err(UslError::NotPositive { number: 3, .. })
        ));
        let mut zero = four.clone();
        zero[0].concurrency = 0.0;
        assert!(matches!(
            fit(&zero),
            Err(UslError::NotPositive { number: 1, .. })
        ));
        let mut nan = four.clone();
        nan[3].throughput = f64::NAN;
        assert!(matches!(
            fit(&nan),
            Err(UslError::NotPositive { number: 4, .. })
        ));
        let two_levels = points(&[(1.0, 10.0), (1.0, 11.0), (2.0, 19.0), (2.0, 18.0)]);
        assert_eq!(fit(&two_levels), Err(UslError::TooFewLevels(2)));
    }

    #[test]
    fn without_concurrency_one_lambda_is_extrapolated_and_said_so() {
        let truth = Params {
            sigma: 0.05,
            kappa: 1e-3,
            lambda: 40.0,
        };
        let data = exact(truth, &[2.0, 4.0, 8.0, 16.0, 32.0]);
        let fit = fit(&data).unwrap();
        assert!(close(fit.params.lambda, 40.0, 1e-7), "{:?}", fit.params);
        assert!(
            fit.warnings.iter().any(|w| w.contains("λ is extrapolated")),
            "{:?}",
            fit.warnings
        );
    }

    #[test]
    fn predictions_agree_with_each_other() {
        let params = Params {
            sigma: 0.02671591,
            kappa: 7.690945e-4,
            lambda: 995.6486,
        };
        let n_star = params.peak_concurrency().unwrap();
        // Throughput is at its maximum at N*.
        for delta in [-1.0, -0.01, 0.01, 1.0] {
            assert!(params.throughput(n_star) > params.throughput(n_star + delta));
        }
        // Little's law, and the latency target solved back.
        assert!(close(
            params.latency(7.0),
            7.0 / params.throughput(7.0),
            1e-12
        ));
        let target = params.latency(20.0);
        assert!(close(
            params.concurrency_for_latency(target).unwrap(),
            20.0,
            1e-9
        ));
        assert_eq!(
            params.concurrency_for_latency(params.latency(1.0) * 0.5),
            None
        );
        let linear = Params {
            sigma: 0.0,
            kappa: 0.0,
            lambda: 5.0,
        };
        assert_eq!(linear.concurrency_for_latency(1.0), Some(f64::INFINITY));
        let amdahl = Params {
            sigma: 0.1,
            kappa: 0.0,
            lambda: 5.0,
        };
        let n = amdahl.concurrency_for_latency(2.0).unwrap();
        assert!(close(amdahl.latency(n), 2.0, 1e-12));
    }

    /// Seeded noise around known parameters: the 95 % intervals must cover
    /// the truth in roughly 95 % of fits (a check of the standard errors, not
    /// only of the point estimates).
    #[test]
    fn intervals_cover_the_truth_at_about_their_level() {
        let truth = Params {
            sigma: 0.04,
            kappa: 5e-4,
            lambda: 500.0,
        };
        let levels: Vec<f64> = (1..=40).map(f64::from).collect();
        let mut rng = crate::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        let trials = 400;
        let mut covered = [0; 3];
        for _ in 0..trials {
            let data: Vec<Point> = levels
                .iter()
                .map(|&n| Point {
                    concurrency: n,
                    throughput: truth.throughput(n) + 60.0 * rng.normal(),
                })
                .collect();
            let fit = fit(&data).unwrap();
            for (i, (_, estimate)) in fit.estimates().iter().enumerate() {
                let (low, high) = estimate.interval.unwrap();
                if (low..=high).contains(&truth.as_array()[i]) {
                    covered[i] += 1;
                }
            }
        }
        for (i, count) in covered.iter().enumerate() {
            let rate = f64::from(*count) / f64::from(trials);
            assert!(
                (0.90..=0.99).contains(&rate),
                "{}: coverage {rate}",
                NAMES[i]
            );
        }
    }
}
