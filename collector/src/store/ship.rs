//! Shipping finished Parquet files to object storage.
//!
//! With an object store configured, the local data folder is a staging area:
//! the write-ahead log and Parquet files are written there exactly as without
//! one, with the same crash safety. A file is then uploaded to the same path
//! below the object store's root and leaves the local folder, but only once
//! no WAL segment it came from is left: replay skips rows by the segment
//! numbers in the local file names, so a file whose rows could still be
//! replayed must stay. An upload is one PUT, atomic in S3, and a crash
//! between the upload and the local rename or delete uploads the same file
//! under the same name again.
//!
//! An uploaded span file is not deleted at once: it is renamed to
//! `.part-….parquet.shipped` and kept for the dedupe window, so that after a
//! restart the index of recent span ids ([`crate::store::recent`]) still
//! knows its spans and a client's resend of them is dropped. The name is
//! hidden and does not end in `.parquet`, so no reader takes it for data
//! (not shipping, compaction, the analyzer, DuckDB's `*.parquet` globs or
//! pyarrow's datasets, which skip names starting with `.`); later passes
//! delete it once it is older than the window. Files of other tables go at
//! once: the index holds span ids only.
//!
//! Several collectors can share one object store: file names carry a random
//! part, and each collector keeps its own log and staging folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use object_store::ObjectStoreExt;
use schema::object::ObjectRoot;

use crate::store::visit_files;
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

/// How an uploaded span file is renamed while it is kept: `.` + name + this.
const SHIPPED_SUFFIX: &str = ".shipped";

/// The name an uploaded data file is kept under.
fn shipped_name(name: &str) -> String {
    format!(".{name}{SHIPPED_SUFFIX}")
}

/// Whether a file name is that of an uploaded data file kept for the window.
pub(crate) fn is_shipped_file(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|name| name.strip_suffix(SHIPPED_SUFFIX))
        .is_some_and(crate::store::compact::is_data_file)
}

/// Uploads the Parquet files below `root` whose rows came from WAL segments
/// older than `live_segment` (the lowest segment still in the log). Span files
/// are then kept as `.part-….parquet.shipped` for `keep_spans_for`, other
/// files (and span files when it is zero) deleted. Kept files written
/// `keep_spans_for` ago or longer are deleted. Stops at the first failure,
/// keeping what is left.
pub async fn ship(
    root: &Path,
    to: &ObjectRoot,
    live_segment: u64,
    keep_spans_for: Duration,
) -> Result<ShipReport, ShipError> {
    let mut report = ShipReport::default();
    let (finished, expired) = {
        let root = root.to_path_buf();
        tokio::task::spawn_blocking(move || survey(&root, live_segment, keep_spans_for))
            .await
            .unwrap_or_default()
    };
    for path in expired {
        let _ = tokio::fs::remove_file(path).await;
    }
    let spans = format!("{}/", schema::Table::Spans.name());
    for (path, relative) in finished {
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
        // Uploaded: a failed rename or delete only means the next pass
        // uploads it again, under the same name.
        let name = path.file_name().and_then(|n| n.to_str());
        let _ = match name {
            Some(name) if relative.starts_with(&spans) && !keep_spans_for.is_zero() => {
                tokio::fs::rename(&path, path.with_file_name(shipped_name(name))).await
            }
            _ => tokio::fs::remove_file(&path).await,
        };
        report.files += 1;
        report.bytes += size;
    }
    Ok(report)
}

/// Files to upload, with their paths relative to the root, and kept files to delete.
type Survey = (Vec<(PathBuf, String)>, Vec<PathBuf>);

/// One walk below `root`: `(path, slash-separated path relative to root)` of
/// every finished data file whose WAL segment is older than `live_segment`
/// (temporary and kept files are not data), sorted; and the kept files to
/// delete, those written `keep_for` ago or longer (by their modification
/// time, which the rename keeps) or more than `keep_for` in the future (the
/// clock was set back).
fn survey(root: &Path, live_segment: u64, keep_for: Duration) -> Survey {
    let now = SystemTime::now();
    let expired_at = |path: &Path| {
        let Ok(modified) = path.metadata().and_then(|m| m.modified()) else {
            return false;
        };
        match now.duration_since(modified) {
            Ok(age) => age >= keep_for,
            Err(ahead) => ahead.duration() > keep_for,
        }
    };
    let (mut finished, mut expired) = (Vec::new(), Vec::new());
    visit_files(root, "", &mut |path, name, relative| {
        if wal_segment_in_name(name).is_some_and(|segment| segment < live_segment) {
            finished.push((path.to_path_buf(), relative.to_string()));
        } else if is_shipped_file(name) && expired_at(path) {
            expired.push(path.to_path_buf());
        }
    });
    finished.sort();
    (finished, expired)
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

        let report = ship(&root, &to, 5, Duration::ZERO).await.unwrap();

        assert_eq!(report, ShipReport { files: 1, bytes: 4 });
        assert!(!old.exists() && live.exists() && temporary.exists() && wal.exists());
        let shipped = bucket
            .join("prefix/spans/date=2026-11-23/run_id=r1")
            .join(old.file_name().unwrap());
        assert_eq!(std::fs::read(shipped).unwrap(), b"PAR1");
        // Nothing left to ship until the log moves on.
        assert_eq!(
            ship(&root, &to, 5, Duration::ZERO).await.unwrap(),
            ShipReport::default()
        );
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

        let err = ship(&root, &to, 2, Duration::ZERO).await.unwrap_err();

        assert!(matches!(err, ShipError::Upload { .. }), "{err}");
        assert!(file.exists());
    }

    #[tokio::test]
    async fn uploaded_files_are_kept_for_the_window_then_deleted() {
        let root = temp("kept");
        let bucket = temp("kept-bucket");
        std::fs::create_dir_all(&bucket).unwrap();
        let name = format!("part-{:020}-w{:020}-00.parquet", 1, 1);
        let file = root.join("spans/date=2026-11-23/run_id=r1").join(&name);
        let metrics = root.join("metrics_number/date=2026-11-23").join(&name);
        touch(&file);
        touch(&metrics);
        let kept = file.with_file_name(format!(".{name}.shipped"));
        let to = ObjectRoot::parse(&format!("file://{}", bucket.display())).unwrap();
        let window = Duration::from_secs(120);

        let report = ship(&root, &to, 2, window).await.unwrap();

        assert_eq!(report.files, 2);
        assert!(!file.exists() && kept.exists());
        // The index holds span ids only: other files need not stay.
        assert_eq!(
            std::fs::read_dir(metrics.parent().unwrap())
                .unwrap()
                .count(),
            0
        );
        assert!(is_shipped_file(kept.file_name().unwrap().to_str().unwrap()));
        // Kept, but neither data nor uploaded again.
        assert_eq!(
            ship(&root, &to, 2, window).await.unwrap(),
            ShipReport::default()
        );
        assert!(kept.exists());
        // Once written longer ago than the window, it goes.
        let written = SystemTime::now() - Duration::from_secs(121);
        std::fs::File::options()
            .write(true)
            .open(&kept)
            .unwrap()
            .set_modified(written)
            .unwrap();
        ship(&root, &to, 2, window).await.unwrap();
        assert!(!kept.exists());
        assert!(
            bucket
                .join("spans/date=2026-11-23/run_id=r1")
                .join(&name)
                .exists()
        );
    }
}
