//! The client side: a store whose queries run on a Ballista cluster.

use std::path::Path;

use analyzer::AnalyzerError;
use analyzer::session::{Store, Tables};
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::node;

/// Opens the store at `root` (a folder every executor sees at the same path,
/// or an object-storage URL) with its queries planned here and run by the
/// Ballista scheduler at `scheduler` (`df://HOST:PORT`).
pub async fn connect(scheduler: &str, root: &Path) -> Result<Store, AnalyzerError> {
    if !scheduler.starts_with("df://") {
        return Err(AnalyzerError::Input(format!(
            "--ballista {scheduler}: a scheduler URL looks like df://HOST:50050"
        )));
    }
    let mut config = SessionConfig::new_with_ballista().with_information_schema(true);
    // Keep token positions so planning errors can say where they are.
    config.options_mut().sql_parser.collect_spans = true;
    let state =
        node::session_state(config, None).map_err(|e| AnalyzerError::Execution(e.to_string()))?;
    let ctx = SessionContext::remote_with_state(scheduler, state)
        .await
        .map_err(|e| {
            AnalyzerError::Execution(format!(
                "cannot reach the Ballista scheduler at {scheduler}: {e}"
            ))
        })?;
    Store::attach(ctx, root, Tables::Portable).await
}
