//! Destinations: where bundles and manifests are written.
//!
//! The trait is deliberately small (object_store-style): whole-object `put` for manifests,
//! `put_file` for bundles, plus the reads needed to check and list a backup. Bundles are
//! uploaded from a file on disk rather than from a stream because every S3 part can then be a
//! `path + offset + length` body, which the SDK can retry and size without buffering; memory
//! stays bounded by parts in flight, not by repository size.
//!
//! Keys are [`Key`]s built by [`crate::layout`], never raw strings, so a store never sees `..`
//! or an empty segment. Every store guarantees that a failed or cancelled `put_file` leaves no
//! object and no open multipart upload behind, and that a reader never sees a partial object.

#[doc(hidden)]
pub mod conformance;
pub mod fs;
pub mod s3;

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// An object key: `/`-separated segments, none empty, `.` or `..`, no control characters,
/// no leading or trailing `/`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    pub fn new(key: impl Into<String>) -> Result<Self, StoreError> {
        let key = key.into();
        let bad = |why: &str| StoreError::InvalidKey {
            key: key.clone(),
            reason: why.to_string(),
        };
        if key.is_empty() {
            return Err(bad("empty"));
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return Err(bad("empty path segment (leading, trailing or double `/`)"));
            }
            if segment == "." || segment == ".." {
                return Err(bad("`.` or `..` segment"));
            }
            if segment.chars().any(char::is_control) {
                return Err(bad("control character"));
            }
        }
        Ok(Self(key))
    }

    /// `self/segment`; `segment` must itself be a valid key.
    pub fn join(&self, segment: &str) -> Result<Self, StoreError> {
        Key::new(format!("{}/{}", self.0, segment))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

/// Called with the number of bytes just sent, as they are sent.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

#[derive(Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*` on S3, a sidecar-free no-op on stores without metadata).
    pub metadata: BTreeMap<String, String>,
    pub on_progress: Option<ProgressFn>,
}

impl Debug for PutOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutOptions")
            .field("content_type", &self.content_type)
            .field("metadata", &self.metadata)
            .field("on_progress", &self.on_progress.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: Key,
    pub size: u64,
    /// User metadata where the store keeps it (S3); empty otherwise.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("invalid object key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("bucket `{bucket}` does not exist at {endpoint}: create it or fix --dest")]
    BucketNotFound { bucket: String, endpoint: String },
    #[error(
        "access to {target} was refused ({message}): check the credentials and the bucket policy"
    )]
    AccessDenied { target: String, message: String },
    #[error("cannot reach {target}: {message}")]
    Unreachable { target: String, message: String },
    #[error("object `{key}` not found")]
    NotFound { key: String },
    #[error("{op} `{key}` failed: {message}")]
    Request {
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upload of `{key}` was cancelled")]
    Cancelled { key: String },
    /// The destination is set up in a way we cannot work with (wrong region, no region, a
    /// bundle larger than the store allows); the message says what to change.
    #[error("{target}: {message}")]
    Misconfigured { target: String, message: String },
}

#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Where this store writes, for messages: `s3://bucket` or a directory path.
    fn location(&self) -> String;

    /// Fails fast when the destination is missing, unreachable or refuses us, before any
    /// repository is cloned.
    async fn check(&self) -> Result<(), StoreError>;

    /// Writes a small object in one request, atomically replacing any previous one.
    async fn put(&self, key: &Key, data: Bytes, opts: &PutOptions) -> Result<(), StoreError>;

    /// Uploads the `size`-byte file at `path`. Large files go up in parts; on any error the
    /// upload is aborted so no partial object or open multipart upload remains.
    async fn put_file(
        &self,
        key: &Key,
        path: &Path,
        size: u64,
        opts: &PutOptions,
    ) -> Result<(), StoreError>;

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError>;

    /// `None` when the object does not exist.
    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StoreError>;

    /// Every object whose key starts with `prefix` (a plain string prefix), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Deleting a missing object is not an error.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    /// Removes what a crashed earlier run left under `prefix` (a plain string prefix): open
    /// multipart uploads on S3, whose parts are billed until aborted, and staged temp files in
    /// a directory. Only leftovers started more than `older_than` ago are touched, so uploads a
    /// concurrent run has in flight survive. Returns how many were removed.
    async fn sweep_incomplete(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<usize, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reject_traversal_and_empty_segments() {
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", "a/\u{7}b"] {
            assert!(Key::new(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in [
            "a",
            "git/acme/2026-11-24/api.bundle",
            "ü/ñ b.bundle",
            "a/.b/c..d",
        ] {
            assert_eq!(Key::new(good).unwrap().as_str(), good);
        }
    }
}
