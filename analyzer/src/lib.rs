//! The analyzer: Apache DataFusion over the store.
//!
//! ```text
//!  <data>/<table>/date=…/run_id=…/*.parquet ─▶ session (tables, views, functions)
//!                                                  │
//!                      loadlens sql ◀── output (table · csv · json) ◀── SQL
//!                    loadlens serve ◀── serve (Postgres wire · HTTP JSON) ◀── SQL
//! ```

pub mod error;
pub mod functions;
pub mod output;
pub mod pruning;
pub mod serve;
pub mod session;

pub use error::AnalyzerError;
pub use output::Format;
pub use session::Store;

use std::path::Path;

/// `loadlens sql`: runs one statement over the store and renders the result.
pub async fn sql(data_dir: &Path, query: &str, format: Format) -> Result<String, AnalyzerError> {
    let store = Store::open(data_dir).await?;
    let batches = store.query(query).await?;
    output::render(&batches, format)
}
