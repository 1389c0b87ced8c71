//! Rewrites of physical plans, for sessions that run their plans in this
//! process (`Store::open_with`). Their expressions and plans are not meant
//! to be serialized, so sessions of a Ballista cluster go without them.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;

mod not_null;
mod short_eq;

pub use not_null::ProvenNotNull;
pub use short_eq::ShortStringEq;

/// `plan` with every filter replaced by what `rewrite` makes of it; `None`
/// leaves the filter as it is.
fn rewrite_filters(
    plan: Arc<dyn ExecutionPlan>,
    rewrite: impl Fn(&FilterExec) -> Result<Option<Arc<dyn ExecutionPlan>>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(filter) = node.downcast_ref::<FilterExec>() else {
            return Ok(Transformed::no(node));
        };
        match rewrite(filter)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(node)),
        }
    })
    .data()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    use datafusion::prelude::SessionContext;

    /// Two sessions: one with `rule` after DataFusion's own, one without.
    pub fn sessions(
        rule: impl PhysicalOptimizerRule + Send + Sync + 'static,
    ) -> (SessionContext, SessionContext) {
        let with_rule = SessionContext::new_with_state(
            SessionStateBuilder::new()
                .with_default_features()
                .with_physical_optimizer_rule(Arc::new(rule))
                .build(),
        );
        (with_rule, SessionContext::new())
    }
}
