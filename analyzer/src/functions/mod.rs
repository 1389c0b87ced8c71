//! loadlens SQL functions, registered on every session.

mod args;
pub mod bucket_sum;
pub mod critical_path;
pub mod exp_histogram_quantile;
pub mod histogram_quantile;
pub mod percentile;
pub mod percentile_sketch;
pub mod time_bucket;
pub mod trace_id_hex;
pub mod usl_fit;

use std::sync::Arc;

use datafusion::prelude::SessionContext;

/// Registers every loadlens function on a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(percentile::udaf());
    ctx.register_udaf(percentile_sketch::udaf());
    ctx.register_udaf(bucket_sum::udaf());
    ctx.register_udaf(usl_fit::udaf());
    ctx.register_udf(time_bucket::udf());
    ctx.register_udf(trace_id_hex::udf());
    ctx.register_udf(histogram_quantile::udf());
    ctx.register_udf(exp_histogram_quantile::udf());
    ctx.register_udtf(critical_path::NAME, Arc::new(critical_path::CriticalPath));
}
