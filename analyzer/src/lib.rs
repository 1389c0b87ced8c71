//! The analyzer: Apache DataFusion over the store.
//!
//! ```text
//!  <data>/<table>/date=…/run_id=…/*.parquet ─▶ session (tables, views, functions)
//!                                                  │
//!                      loadlens sql ◀── output (table · csv · json) ◀── SQL
//!                    loadlens serve ◀── serve (Postgres wire · HTTP JSON) ◀── SQL
//!                      loadlens usl ◀── usl (ladder steps ─▶ models::usl fit)
//!   loadlens compare · loadlens trend ◀── compare · trend (statistics in `models`) ◀── SQL
//!                loadlens slo check ◀── slo (indicator SQL ─▶ models::slo budgets, burn rates)
//! ```

pub mod bottleneck;
pub mod compare;
pub mod error;
pub mod functions;
pub mod output;
pub mod params;
pub mod pruning;
pub mod report;
mod rules;
pub mod serve;
pub mod session;
pub mod slo;
pub mod trend;
pub mod usl;

pub use error::AnalyzerError;
pub use output::Format;
pub use session::Store;

use std::sync::Arc;

/// `loadlens sql`: runs one statement (parameters already substituted) over
/// an open store, local or on a cluster, and renders the result.
pub async fn sql(store: &Store, query: &str, format: Format) -> Result<Vec<u8>, AnalyzerError> {
    let frame = store.plan(query).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .map_err(|e| AnalyzerError::from_datafusion(e, &store.table_names()))?;
    output::render(&batches, schema, format)
}
