//! `critical_path(run [, step])`: a table function with the bottleneck report of a run, one row per operation.
//!
//! ```sql
//! > SELECT service, operation, round(100 * share, 1) AS pct, speedup_if_2x
//!   FROM critical_path('my-run') ORDER BY share DESC LIMIT 5;
//! > SELECT * FROM critical_path('my-run', 'GET /api/orders');
//! ```
//!
//! Columns: `service`, `operation`, `kind`, `calls`, `traces`, `share` (time
//! on the critical path over all end-to-end time), `share_p50` and
//! `share_p95` (per-trace share across the run's traces, 0 where the operation
//! is absent), `path_ms_mean` (per trace), `self_ms_mean` (per call) and
//! `speedup_if_2x` (Amdahl's bound on the end-to-end speed-up if the
//! operation's own time were halved). The rules are those of
//! `loadlens bottleneck` (see `models::critical_path`).
//!
//! The report is computed when the query runs, by queries over `requests` and
//! `spans` in the same session; arguments are checked when it is planned.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::AnalyzerError;
use crate::bottleneck;

/// The name the function is registered under.
pub const NAME: &str = "critical_path";

/// The table function, ready to register with `register_udtf`.
#[derive(Debug, Default)]
pub struct CriticalPath;

impl TableFunctionImpl for CriticalPath {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let (run, step) = match exprs {
            [run] => (string_argument(run, "run")?, None),
            [run, step] => (
                string_argument(run, "run")?,
                Some(string_argument(step, "step")?),
            ),
            _ => {
                return plan_err!(
                    "{NAME} takes a run id and optionally a step (request name), e.g. \
                     {NAME}('my-run') or {NAME}('my-run', 'GET /api/orders'); got {} arguments",
                    exprs.len()
                );
            }
        };
        Ok(Arc::new(CriticalPathTable { run, step }))
    }
}

/// A string literal argument.
fn string_argument(expr: &Expr, name: &str) -> Result<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Ok(s.clone()),
        other => plan_err!(
            "{NAME}: the {name} must be a string literal such as '{}', got {other}",
            if name == "run" {
                "my-run"
            } else {
                "GET /api/orders"
            }
        ),
    }
}

/// The report of one run, computed when scanned.
#[derive(Debug)]
struct CriticalPathTable {
    run: String,
    step: Option<String>,
}

#[async_trait]
impl TableProvider for CriticalPathTable {
    fn schema(&self) -> SchemaRef {
        bottleneck::operations_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(session) = state.as_any().downcast_ref::<SessionState>() else {
            return Err(DataFusionError::Internal(format!(
                "{NAME} needs a DataFusion SessionState to query the store"
            )));
        };
        // The report's queries run in the caller's session: same tables,
        // functions and memory pool.
        let ctx = SessionContext::new_with_state(session.clone());
        let report = bottleneck::analyze(&ctx, &self.run, self.step.as_deref())
            .await
            .map_err(to_datafusion)?;
        let batch = report.operations_batch().map_err(to_datafusion)?;
        MemTable::try_new(self.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// Keeps the user's mistakes (an unknown run) distinct from failures.
fn to_datafusion(e: AnalyzerError) -> DataFusionError {
    if e.is_usage() {
        DataFusionError::Plan(e.to_string())
    } else {
        DataFusionError::Execution(e.to_string())
    }
}
