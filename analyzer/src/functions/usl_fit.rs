//! `usl_fit(concurrency, throughput)`: the Universal Scalability Law fitted to a group's rows.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray, Float64Array, StructArray, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};
use models::usl::{self, Point};

use super::args::{DOC_SECTION, coerce_float, list_scalar};

/// The function, ready to register.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(UslFit::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UslFit {
    signature: Signature,
}

impl UslFit {
    pub fn new() -> Self {
        UslFit {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for UslFit {
    fn default() -> Self {
        Self::new()
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Fits the Universal Scalability Law X(N) = λN / (1 + σ(N−1) + κN(N−1)) to the \
         group's (concurrency, throughput) rows by bounded least squares (σ, κ, λ ≥ 0). \
         Returns a struct: sigma, kappa, lambda, their standard errors (NULL for a \
         parameter held at 0), n_star (NULL when throughput never peaks), x_max \
         (throughput at n_star, or the Amdahl ceiling λ/σ), r_squared and points. \
         Needs at least 4 rows over 3 concurrency levels, all positive.",
        "usl_fit(concurrency, throughput)",
    )
    .with_sql_example(
        "```sql\n> WITH steps AS (\n    SELECT concurrency, COUNT(*) / 4.0 AS throughput FROM requests\n    WHERE run_id = 'r1' GROUP BY concurrency)\n  SELECT usl_fit(concurrency, throughput)['n_star'] FROM steps;\n```",
    )
    .with_standard_argument("concurrency", Some("Numeric"))
    .with_standard_argument("throughput", Some("Numeric"))
    .build()
});

/// The result struct's fields, in order.
fn result_fields() -> Fields {
    let float = |name: &str| Field::new(name, DataType::Float64, true);
    Fields::from(vec![
        float("sigma"),
        float("kappa"),
        float("lambda"),
        float("sigma_se"),
        float("kappa_se"),
        float("lambda_se"),
        float("n_star"),
        float("x_max"),
        float("r_squared"),
        Field::new("points", DataType::UInt64, true),
    ])
}

impl AggregateUDFImpl for UslFit {
    fn name(&self) -> &str {
        "usl_fit"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [concurrency, throughput] = arg_types else {
            return plan_err!(
                "usl_fit takes two arguments, concurrency and throughput; got {}",
                arg_types.len()
            );
        };
        Ok(vec![
            coerce_float(self.name(), "concurrency", concurrency)?,
            coerce_float(self.name(), "throughput", throughput)?,
        ])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(result_fields()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = || DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "concurrency"),
                list(),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "throughput"),
                list(),
                true,
            )),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(UslAccumulator::default()))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// The group's points; rows where either value is NULL are skipped.
#[derive(Debug, Default)]
struct UslAccumulator {
    concurrency: Vec<f64>,
    throughput: Vec<f64>,
}

impl UslAccumulator {
    fn extend(&mut self, concurrency: &Float64Array, throughput: &Float64Array) {
        for (n, x) in concurrency.iter().zip(throughput.iter()) {
            if let (Some(n), Some(x)) = (n, x) {
                self.concurrency.push(n);
                self.throughput.push(x);
            }
        }
    }
}

impl Accumulator for UslAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.extend(
            values[0].as_primitive::<Float64Type>(),
            values[1].as_primitive::<Float64Type>(),
        );
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (concurrency, throughput) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for (n, x) in concurrency.iter().zip(throughput.iter()) {
            if let (Some(n), Some(x)) = (n, x) {
                self.extend(
                    n.as_primitive::<Float64Type>(),
                    x.as_primitive::<Float64Type>(),
                );
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            list_scalar(Float64Array::from(std::mem::take(&mut self.concurrency))),
            list_scalar(Float64Array::from(std::mem::take(&mut self.throughput))),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.concurrency.is_empty() {
            return ScalarValue::try_from(DataType::Struct(result_fields()));
        }
        let points: Vec<Point> = self
            .concurrency
            .iter()
            .zip(&self.throughput)
            .map(|(&concurrency, &throughput)| Point {
                concurrency,
                throughput,
            })
            .collect();
        let fit = match usl::fit(&points) {
            Ok(fit) => fit,
            Err(e) => return exec_err!("usl_fit: {e}"),
        };
        let p = fit.params;
        let n_star = p.peak_concurrency();
        let x_max = n_star.map_or(p.amdahl_ceiling(), |n| Some(p.throughput(n)));
        let float = |v: Option<f64>| Arc::new(Float64Array::from(vec![v])) as ArrayRef;
        let columns = vec![
            float(Some(p.sigma)),
            float(Some(p.kappa)),
            float(Some(p.lambda)),
            float(fit.sigma.standard_error),
            float(fit.kappa.standard_error),
            float(fit.lambda.standard_error),
            float(n_star),
            float(x_max),
            float(Some(fit.r_squared)),
            Arc::new(UInt64Array::from(vec![fit.points as u64])) as ArrayRef,
        ];
        let row = StructArray::try_new(result_fields(), columns, None)?;
        Ok(ScalarValue::Struct(Arc::new(row)))
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + (self.concurrency.capacity() + self.throughput.capacity()) * size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_points_merged_from_partial_states() {
        let truth = models::usl::Params {
            sigma: 0.05,
            kappa: 0.001,
            lambda: 100.0,
        };
        let levels = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
        let throughput: Vec<f64> = levels.iter().map(|&n| truth.throughput(n)).collect();
        // Two partial aggregates, merged as DataFusion does across partitions.
        let mut first = UslAccumulator::default();
        first
            .update_batch(&[
                Arc::new(Float64Array::from(levels[..3].to_vec())),
                Arc::new(Float64Array::from(throughput[..3].to_vec())),
            ])
            .unwrap();
        let mut second = UslAccumulator::default();
        second
            .update_batch(&[
                Arc::new(Float64Array::from(levels[3..].to_vec())),
                Arc::new(Float64Array::from(throughput[3..].to_vec())),
            ])
            .unwrap();
        let state: Vec<ArrayRef> = second
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        first.merge_batch(&state).unwrap();
        let ScalarValue::Struct(row) = first.evaluate().unwrap() else {
            panic!("not a struct")
        };
        let column = |name: &str| {
            row.column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .value(0)
        };
        assert!((column("sigma") - 0.05).abs() < 1e-9);
        assert!((column("kappa") - 0.001).abs() < 1e-11);
        assert!((column("lambda") - 100.0).abs() < 1e-7);
        assert!((column("n_star") - (0.95f64 / 0.001).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn too_few_points_is_an_error_not_a_nan() {
        let mut accumulator = UslAccumulator::default();
        accumulator
            .update_batch(&[
                Arc::new(Float64Array::from(vec![1.0, 2.0, 4.0])),
                Arc::new(Float64Array::from(vec![10.0, 19.0, 30.0])),
            ])
            .unwrap();
        let error = accumulator.evaluate().unwrap_err().to_string();
        assert!(error.contains("at least 4 measurements"), "{error}");
    }
}
