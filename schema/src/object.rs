//! Stores in object storage: `s3://bucket/prefix` (any S3-compatible service)
//! or `file:///absolute/path` (a folder, through the same interface).
//!
//! S3 credentials, region and endpoint come from the standard AWS variables:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` (for MinIO, Ceph, moto…) and `AWS_ALLOW_HTTP=true` for a
//! plain-HTTP endpoint.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use url::Url;

/// A store root in object storage.
#[derive(Debug, Clone)]
pub struct ObjectRoot {
    /// The URL as given, without a trailing slash.
    pub url: Url,
    /// The bucket (or filesystem) the URL names.
    pub store: Arc<dyn ObjectStore>,
    /// The store root inside it; tables are below it.
    pub prefix: ObjectPath,
}

/// Whether `text` names object storage rather than a local folder.
pub fn is_object_url(text: &str) -> bool {
    text.starts_with("s3://") || text.starts_with("file://")
}

impl ObjectRoot {
    /// Opens `s3://bucket/prefix` or `file:///path`. Nothing is contacted yet:
    /// a wrong endpoint or credentials show on the first read or write.
    pub fn parse(text: &str) -> Result<ObjectRoot, String> {
        let trimmed = text.trim_end_matches('/');
        let url = Url::parse(trimmed).map_err(|e| format!("{text} is not a URL: {e}"))?;
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("{text} names no bucket; write s3://BUCKET/PREFIX"));
                }
                Arc::new(
                    AmazonS3Builder::from_env()
                        .with_url(trimmed)
                        .build()
                        .map_err(|e| format!("cannot use {text}: {e}"))?,
                )
            }
            "file" => Arc::new(LocalFileSystem::new()),
            other => {
                return Err(format!(
                    "{text}: object storage scheme {other}:// is not supported; use s3://BUCKET/PREFIX or file:///PATH"
                ));
            }
        };
        let prefix = ObjectPath::from_url_path(url.path())
            .map_err(|e| format!("{text}: invalid path: {e}"))?;
        Ok(ObjectRoot { url, store, prefix })
    }

    /// The URL of the scheme and bucket (`s3://bucket`), as DataFusion registers stores.
    pub fn store_url(&self) -> Url {
        let mut base = self.url.clone();
        base.set_path("");
        base
    }

    /// The URL of a folder below the root, with a trailing slash (`s3://bucket/prefix/spans/`).
    pub fn folder_url(&self, folder: &str) -> String {
        format!("{}/{folder}/", self.url.as_str().trim_end_matches('/'))
    }

    /// The object path of `relative` (slash-separated) below the root.
    pub fn child(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), ObjectPath::join)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_give_bucket_and_prefix() {
        let root = ObjectRoot::parse("s3://runs/team/loadlens/").unwrap();
        assert_eq!(root.prefix.as_ref(), "team/loadlens");
        assert_eq!(root.store_url().as_str(), "s3://runs");
        assert_eq!(root.folder_url("spans"), "s3://runs/team/loadlens/spans/");
        assert_eq!(
            root.child("spans/date=2026-11-23/part-1.parquet").as_ref(),
            "team/loadlens/spans/date=2026-11-23/part-1.parquet"
        );
    }

    #[test]
    fn other_schemes_and_missing_buckets_are_refused_with_the_fix() {
        let err = ObjectRoot::parse("gs://bucket/x").unwrap_err();
        assert!(err.contains("s3://BUCKET/PREFIX"), "{err}");
        let err = ObjectRoot::parse("s3:///x").unwrap_err();
        assert!(err.contains("names no bucket"), "{err}");
        assert!(is_object_url("file:///tmp/x"));
        assert!(!is_object_url("loadlens-data"));
    }
}
