//! Shipping finished Parquet files to object storage.
//!
//! With an object store configured, the local data folder is a staging area:
//! the write-ahead log and Parquet files are written there exactly as without
//! one, with the same crash safety. A file is then uploaded to the same path
//! below the object store's root and deleted locally, but only once no WAL
//! segment it came from is left: replay skips rows by the segment numbers in
//! the local file names, so a file whose rows could still be replayed must
//! stay. An upload is one PUT, atomic in S3, and a crash between the upload
//! and the local delete uploads the same file under the same name again.
//!
//! Several collectors can share one object store: file names carry a random
//! part, and each collector keeps its own log and staging folder.

use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt;
use schema::object::ObjectRoot;

use crate::store::writer::wal_segment_in_name;

/// What one shipping pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShipReport {
    pub files: usize,
    pub bytes: u64,
}

/// Why a file was not shipped; it stays local and the next pass retries it.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot read {path} to upload it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot upload {path} to {url}: {message}")]
    Upload {
        path: PathBuf,
        url: String,
        message: String,
    },
}

/// Uploads the Parquet files below `root` whose rows came from WAL segments
/// older than `live_segment` (the lowest segment still in the log), then
/// deletes them locally. Stops at the first failure, keeping what is left.
pub async fn ship(
    root: &Path,
    to: &ObjectRoot,
    live_segment: u64,
) -> Result<ShipReport, ShipError> {
    let mut report = ShipReport::default();
    for (path, relative) in finished_files(root, live_segment) {
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|source| ShipError::Read {
                path: path.clone(),
                source,
            })?;
        let size = bytes.len() as u64;
        to.store
            .put(&to.child(&relative), bytes.into())
            .await
            .map_err(|e| ShipError::Upload {
                path: path.clone(),
                url: to.url.to_string(),
                message: e.to_string(),
            })?;
        // Uploaded: a failed delete only means the next pass uploads it again.
        let _ = tokio::fs::remove_file(&path).await;
        report.files += 1;
        report.bytes += size;
    }
    Ok(report)
}

/// `(path, slash-separated path relative to root)` of every finished data file
/// below `root` whose WAL segment is older than `live_segment`. Folders named
/// `_…` (the log, compaction intents) and temporary files are not data.
fn finished_files(root: &Path, live_segment: u64) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, relative: &str, live: u64, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
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
                    walk(&path, &below, live, out);
                }
            } else if wal_segment_in_name(name).is_some_and(|segment| segment < live) {
                out.push((path, below));
            }
        }
    }
    let mut files = Vec::new();
    walk(root, "", live_segment, &mut files);
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loadlens-ship-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"PAR1").unwrap();
    }

    #[tokio::test]
    async fn files_whose_segments_left_the_log_move_and_the_rest_stay() {
        let root = temp("local");
        let bucket = temp("bucket");
        std::fs::create_dir_all(&bucket).unwrap();
        let partition = root.join("spans/date=2026-11-23/run_id=r1");
        let old = partition.join(format!("part-{:020}-w{:020}-00.parquet", 1, 4));
        let live = partition.join(format!("part-{:020}-w{:020}-01.parquet", 2, 5));
        let temporary = partition.join(format!(".part-{:020}-w{:020}-02.parquet.tmp", 3, 1));
        let wal = root.join("_wal/wal-00000000000000000001.log");
        for path in [&old, &live, &temporary, &wal] {
            touch(path);
        }
        let to = ObjectRoot::parse(&format!("file://{}/prefix", bucket.display())).unwrap();

        let report = ship(&root, &to, 5).await.unwrap();

        assert_eq!(report, ShipReport { files: 1, bytes: 4 });
        assert!(!old.exists() && live.exists() && temporary.exists() && wal.exists());
        let shipped = bucket
            .join("prefix/spans/date=2026-11-23/run_id=r1")
            .join(old.file_name().unwrap());
        assert_eq!(std::fs::read(shipped).unwrap(), b"PAR1");
        // Nothing left to ship until the log moves on.
        assert_eq!(ship(&root, &to, 5).await.unwrap(), ShipReport::default());
    }

    #[tokio::test]
    async fn a_failed_upload_keeps_the_file() {
        let root = temp("unreachable");
        let file = root.join(format!(
            "spans/date=2026-11-23/run_id=r1/part-{:020}-w{:020}-00.parquet",
            1, 1
        ));
        touch(&file);
        // A path below a regular file cannot be created.
        let blocker = temp("blocker");
        std::fs::write(&blocker, b"x").unwrap();
        let to = ObjectRoot::parse(&format!("file://{}/below", blocker.display())).unwrap();

        let err = ship(&root, &to, 2).await.unwrap_err();

        assert!(matches!(err, ShipError::Upload { .. }), "{err}");
        assert!(file.exists());
    }
}
