//! loadlens SQL functions, registered on every session.

pub mod percentile;

use datafusion::prelude::SessionContext;

/// Registers every loadlens function on a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(percentile::udaf());
}
