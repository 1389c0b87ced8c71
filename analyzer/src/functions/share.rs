//! A plan rewrite: `percentile` calls on the same column in one aggregate
//! share one copy of the values.
//!
//! `SELECT percentile(x, 0.5), percentile(x, 0.95), percentile(x, 0.99)`
//! would keep three copies of every value of `x`, each appended, passed
//! between the partial and the final aggregate, and appended again. It is
//! planned as one `percentile(x, [0.5, 0.95, 0.99])` (a list of answers) and
//! a projection that takes each answer out under the name the query gave it.

use std::sync::Arc;

use arrow::array::Float64Array;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::functions_nested::expr_fn::array_element;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, lit};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::args::list_scalar;

/// The rule; [`super::register`] adds it to every session.
#[derive(Debug, Default)]
pub struct SharePercentiles;

/// One `percentile(x, q)` call with a literal quantile: where it is among
/// the aggregate's expressions, and its quantile.
struct Call {
    index: usize,
    q: f64,
}

/// Calls that differ only in their quantile.
struct Shared<'a> {
    call: &'a AggregateFunction,
    calls: Vec<Call>,
}

/// `percentile(x, q)` with `q` a number, as the planner leaves it.
/// Other rules may have named it already (common subexpressions do).
fn literal_call(expr: &Expr) -> Option<(&AggregateFunction, f64)> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        expr => expr,
    };
    let Expr::AggregateFunction(call) = expr else {
        return None;
    };
    if call.func.name() != super::percentile::NAME {
        return None;
    }
    match call.params.args.as_slice() {
        [_, Expr::Literal(ScalarValue::Float64(Some(q)), _)] => Some((call, *q)),
        _ => None,
    }
}

/// Whether two calls differ at most in their quantile.
fn same_but_quantile(a: &AggregateFunction, b: &AggregateFunction) -> bool {
    let (a, b) = (&a.params, &b.params);
    a.args[0] == b.args[0]
        && a.distinct == b.distinct
        && a.filter == b.filter
        && a.order_by == b.order_by
        && a.null_treatment == b.null_treatment
}

impl OptimizerRule for SharePercentiles {
    fn name(&self) -> &str {
        "loadlens_share_percentiles"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return Ok(Transformed::no(plan));
        };
        // Grouping sets add an internal column; leave them alone.
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
        }
        let mut shared: Vec<Shared> = Vec::new();
        for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
            let Some((call, q)) = literal_call(expr) else {
                continue;
            };
            match shared.iter_mut().find(|s| same_but_quantile(s.call, call)) {
                Some(s) => s.calls.push(Call { index, q }),
                None => shared.push(Shared {
                    call,
                    calls: vec![Call { index, q }],
                }),
            }
        }
        shared.retain(|s| s.calls.len() > 1);
        if shared.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
        }

        // The new aggregate: each shared set becomes one list call, in the
        // place of its first member; `slot[i]` says where old expression i's
        // answer is (its new position, and its list index if shared).
        let mut exprs = Vec::new();
        let mut slot: Vec<Option<(usize, Option<i64>)>> = vec![None; aggregate.aggr_expr.len()];
        for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
            match shared
                .iter()
                .find(|s| s.calls.iter().any(|c| c.index == index))
            {
                None => {
                    slot[index] = Some((exprs.len(), None));
                    exprs.push(expr.clone());
                }
                Some(s) if s.calls[0].index == index => {
                    for (k, call) in s.calls.iter().enumerate() {
                        slot[call.index] = Some((exprs.len(), Some(k as i64 + 1)));
                    }
                    let quantiles = Float64Array::from_iter_values(s.calls.iter().map(|c| c.q));
                    let params = &s.call.params;
                    exprs.push(Expr::AggregateFunction(AggregateFunction {
                        func: Arc::clone(&s.call.func),
                        params: AggregateFunctionParams {
                            args: vec![
                                params.args[0].clone(),
                                Expr::Literal(list_scalar(quantiles), None),
                            ],
                            ..params.clone()
                        },
                    }));
                }
                Some(_) => {}
            }
        }
        let groups = aggregate.group_expr.len();
        let shared_aggregate = Aggregate::try_new(
            Arc::clone(&aggregate.input),
            aggregate.group_expr.clone(),
            exprs,
        )?;

        // Above it, the columns the old aggregate gave, under the same names.
        let new_schema = Arc::clone(&shared_aggregate.schema);
        let column = |position: usize| {
            let (qualifier, field) = new_schema.qualified_field(position);
            Expr::Column(Column::new(qualifier.cloned(), field.name()))
        };
        let mut columns: Vec<Expr> = (0..groups).map(column).collect();
        for (index, place) in slot.into_iter().enumerate() {
            let (position, element) = place.expect("every expression has a place");
            let (qualifier, field) = aggregate.schema.qualified_field(groups + index);
            columns.push(match element {
                None => column(groups + position),
                Some(k) => array_element(column(groups + position), lit(k))
                    .alias_qualified(qualifier.cloned(), field.name()),
            });
        }
        let projection =
            Projection::try_new(columns, Arc::new(LogicalPlan::Aggregate(shared_aggregate)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}
