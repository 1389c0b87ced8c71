//! Day-partition pruning from time filters.
//!
//! The store is partitioned by `date=YYYY-MM-DD` (UTC), but users filter on the
//! time column (`start_time >= now() - INTERVAL '1 hour'`, or Grafana's
//! `$__timeFilter(start_time)`), not on `date`. [`DayPruned`] wraps a listing
//! table and, for every bound on the time column in a query, adds the matching
//! bound on `date`, so folders of other days are never listed or opened. The
//! added filters only drop partitions that cannot hold matching rows: the
//! original filters still run on every row.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraints, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{col, lit};
use schema::layout::{DATE, utc_day};

/// A table whose `date` partitions are pruned by bounds on `time_column`.
#[derive(Debug)]
pub struct DayPruned {
    inner: Arc<dyn TableProvider>,
    time_column: &'static str,
}

impl DayPruned {
    pub fn new(inner: Arc<dyn TableProvider>, time_column: &'static str) -> Self {
        DayPruned { inner, time_column }
    }
}

#[async_trait]
impl TableProvider for DayPruned {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut filters = filters.to_vec();
        let derived: Vec<Expr> = filters
            .iter()
            .flat_map(|f| day_bounds(f, self.time_column))
            .collect();
        filters.extend(derived);
        self.inner.scan(state, projection, &filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}

/// Which side of a range a bound is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Lower,
    Upper,
    Both,
}

/// The `date` filters implied by one filter on the time column.
fn day_bounds(filter: &Expr, time_column: &str) -> Vec<Expr> {
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == time_column);
    // `strict`: the bound itself is excluded (< or >), so a range ending exactly
    // at midnight does not reach into the next day.
    let bound = |side: Side, value: &Expr, strict: bool| -> Vec<Expr> {
        let Some(nanos) = timestamp_nanos(value) else {
            return Vec::new();
        };
        let nanos = match (side, strict) {
            (Side::Lower, true) => nanos.saturating_add(1),
            (Side::Upper, true) => nanos.saturating_sub(1),
            _ => nanos,
        };
        let day = utc_day(nanos);
        match side {
            Side::Lower => vec![col(DATE).gt_eq(lit(day))],
            Side::Upper => vec![col(DATE).lt_eq(lit(day))],
            Side::Both => vec![col(DATE).eq(lit(day))],
        }
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                let mut out = day_bounds(left, time_column);
                out.extend(day_bounds(right, time_column));
                return out;
            }
            let (side, value) = if is_time(left) {
                match op {
                    Operator::Gt | Operator::GtEq => (Side::Lower, right),
                    Operator::Lt | Operator::LtEq => (Side::Upper, right),
                    Operator::Eq => (Side::Both, right),
                    _ => return Vec::new(),
                }
            } else if is_time(right) {
                match op {
                    Operator::Lt | Operator::LtEq => (Side::Lower, left),
                    Operator::Gt | Operator::GtEq => (Side::Upper, left),
                    Operator::Eq => (Side::Both, left),
                    _ => return Vec::new(),
                }
            } else {
                return Vec::new();
            };
            bound(side, value, matches!(op, Operator::Lt | Operator::Gt))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time(expr) => {
            let mut out = bound(Side::Lower, low, false);
            out.extend(bound(Side::Upper, high, false));
            out
        }
        _ => Vec::new(),
    }
}

/// Nanoseconds since the epoch of a timestamp literal, whatever its unit.
fn timestamp_nanos(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(nanos: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(Some(nanos), None))
    }

    const DAY: i64 = 86_400_000_000_000;

    #[test]
    fn a_range_on_the_time_column_bounds_the_days() {
        let filter = col("start_time")
            .gt_eq(ts(DAY))
            .and(col("start_time").lt(ts(3 * DAY + 5)));
        let bounds = day_bounds(&filter, "start_time");
        assert_eq!(
            bounds,
            vec![
                col(DATE).gt_eq(lit("1970-01-02")),
                col(DATE).lt_eq(lit("1970-01-04"))
            ]
        );
    }

    #[test]
    fn reversed_comparisons_and_between_are_understood() {
        let reversed = ts(DAY).lt(col("time"));
        assert_eq!(
            day_bounds(&reversed, "time"),
            vec![col(DATE).gt_eq(lit("1970-01-02"))]
        );
        let between = col("time").between(
            lit(ScalarValue::TimestampSecond(Some(0), None)),
            lit(ScalarValue::TimestampMillisecond(Some(1_000), None)),
        );
        assert_eq!(
            day_bounds(&between, "time"),
            vec![
                col(DATE).gt_eq(lit("1970-01-01")),
                col(DATE).lt_eq(lit("1970-01-01"))
            ]
        );
    }

    #[test]
    fn a_strict_bound_at_midnight_excludes_that_day() {
        let before = col("start_time").lt(ts(2 * DAY));
        assert_eq!(
            day_bounds(&before, "start_time"),
            vec![col(DATE).lt_eq(lit("1970-01-02"))]
        );
        let through = col("start_time").lt_eq(ts(2 * DAY));
        assert_eq!(
            day_bounds(&through, "start_time"),
            vec![col(DATE).lt_eq(lit("1970-01-03"))]
        );
    }

    #[test]
    fn other_filters_imply_nothing() {
        assert!(day_bounds(&col("start_time").not_eq(ts(0)), "start_time").is_empty());
        assert!(day_bounds(&col("end_time").gt(ts(0)), "start_time").is_empty());
        assert!(day_bounds(&col("start_time").gt(lit(5)), "start_time").is_empty());
        let or = col("start_time").gt(ts(0)).or(col("start_time").lt(ts(0)));
        assert!(day_bounds(&or, "start_time").is_empty());
    }
}
