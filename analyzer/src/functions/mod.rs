//! loadlens SQL functions, registered on every session.

mod args;
pub mod bucket_sum;
pub mod critical_path;
pub mod exp_histogram_quantile;
pub mod histogram_quantile;
pub mod percentile;
pub mod percentile_sketch;
pub mod share;
pub mod time_bucket;
pub mod trace_id_hex;
pub mod usl_fit;

use std::sync::Arc;

use datafusion::optimizer::OptimizerRule;
use datafusion::prelude::SessionContext;

/// Registers every loadlens function on a session, and the plan rewrite
/// that lets `percentile` calls on one column share their values.
/// `exchange` says how the session's aggregates pass their state on:
/// within the process, or written out to other processes (Ballista).
pub fn register(ctx: &SessionContext, exchange: percentile::Exchange) {
    if !ctx
        .state()
        .optimizers()
        .iter()
        .any(|rule| rule.name() == share::SharePercentiles.name())
    {
        ctx.add_optimizer_rule(Arc::new(share::SharePercentiles));
    }
    ctx.register_udaf(percentile::udaf(exchange));
    ctx.register_udaf(percentile_sketch::udaf());
    ctx.register_udaf(bucket_sum::udaf());
    ctx.register_udaf(usl_fit::udaf());
    ctx.register_udf(time_bucket::udf());
    ctx.register_udf(trace_id_hex::udf());
    ctx.register_udf(histogram_quantile::udf());
    ctx.register_udf(exp_histogram_quantile::udf());
    ctx.register_udtf(critical_path::NAME, Arc::new(critical_path::CriticalPath));
}
