//! The store on disk: pending rows per partition, and Parquet files written
//! atomically (temporary name, fsync, rename, fsync of the folder).

mod columns;
pub mod compact;
pub(crate) mod older;
pub mod recent;
pub mod ship;
#[cfg(test)]
pub(crate) mod testing;
pub mod writer;

pub use recent::{Dedupe, RecentSpans};
pub use writer::{WriteError, Written, write_partition, write_partition_after};

use std::path::Path;

/// Calls `visit(path, file name, path relative to root)` for every file below
/// `root`, except in folders named `_…` (the log, compaction intents) or `.…`.
pub(crate) fn visit_files(root: &Path, relative: &str, visit: &mut impl FnMut(&Path, &str, &str)) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let below = if relative.is_empty() {
            name.to_string()
        } else {
            format!("{relative}/{name}")
        };
        if path.is_dir() {
            if !name.starts_with('_') && !name.starts_with('.') {
                visit_files(&path, &below, visit);
            }
        } else {
            visit(&path, name, &below);
        }
    }
}
