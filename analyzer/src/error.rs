//! Analyzer errors, split into the user's mistakes and the environment's.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzerError {
    #[error(
        "data directory '{0}' does not exist; run 'loadlens quickstart' to create one, or pass --data DIR"
    )]
    NoDataDir(PathBuf),
    #[error("'{0}' is not a directory; pass the store's root folder with --data DIR")]
    NotADirectory(PathBuf),
    /// The statement is wrong: syntax, unknown table or column, bad arguments.
    #[error("{0}")]
    Query(String),
    /// The query needed more memory than the limit, even after spilling to disk.
    #[error(
        "the query needs more memory than --memory-limit allows, even spilling to disk ({0}); narrow it with a WHERE on run_id or time, or raise --memory-limit"
    )]
    MemoryLimit(String),
    /// The statement is fine but running it failed.
    #[error("query failed: {0}")]
    Execution(String),
    /// Input other than SQL is wrong: a missing run, a bad CSV, data a model cannot use.
    #[error("{0}")]
    Input(String),
    #[error("cannot render the result as {format}: {message}")]
    Output {
        format: &'static str,
        message: String,
    },
}

impl AnalyzerError {
    /// Whether the user can fix it by changing their input (exit 2) or not (exit 3).
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            AnalyzerError::Execution(_)
                | AnalyzerError::Output { .. }
                | AnalyzerError::MemoryLimit(_)
        )
    }

    /// Sorts a DataFusion error into a query mistake or an execution failure.
    pub fn from_datafusion(e: DataFusionError, tables: &[String]) -> Self {
        // With span collection on, planning errors know where in the statement they are.
        let position = e.diagnostic().and_then(|d| d.span).map(|span| {
            format!(
                " (at line {}, column {})",
                span.start.line, span.start.column
            )
        });
        let root = e.find_root();
        match root {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..) => {
                let message = root.to_string();
                let hint = if message.contains("table") && message.contains("not found") {
                    format!("; tables: {}", tables.join(", "))
                } else {
                    String::new()
                };
                // Parser errors already name the line and column.
                let position = position
                    .filter(|_| !message.contains(" at Line: "))
                    .unwrap_or_default();
                AnalyzerError::Query(format!("invalid SQL: {message}{position}{hint}"))
            }
            DataFusionError::ResourcesExhausted(message) => {
                AnalyzerError::MemoryLimit(message.clone())
            }
            DataFusionError::NotImplemented(message) => {
                AnalyzerError::Query(format!("not supported: {message}"))
            }
            other => AnalyzerError::Execution(other.to_string()),
        }
    }
}
