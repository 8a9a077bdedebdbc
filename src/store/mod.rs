//! Destinations: where bundles and manifests are written.
//!
//! The trait is deliberately small (object_store-style): whole-object `put` for manifests,
//! `put_source` for bundles, plus the reads needed to check and list a backup. Bundles are
//! uploaded from a file on disk rather than from a stream because every S3 part can then be a
//! `path + offset + length` body, which the SDK can retry and size without buffering; memory
//! stays bounded by parts in flight, not by repository size. A [`Source`] may start with a
//! few bytes held in memory, which is how a bundle goes up as its header followed by the
//! mirror's pack, without a copy of the pack being written first.
//!
//! Keys are [`Key`]s built by [`crate::layout`], never raw strings, so a store never sees `..`
//! or an empty segment. Every store guarantees that a failed or cancelled `put_file` leaves no
//! object and no open multipart upload behind, and that a reader never sees a partial object.

mod choose;
#[doc(hidden)]
pub mod conformance;
pub mod fs;
pub mod s3;

pub use choose::open;

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::path::{Path, PathBuf};
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

/// The bytes of an upload: `head`, held in memory (a bundle header: KiB, not MiB), followed by
/// the first `len` bytes of the file at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub head: Bytes,
    pub path: PathBuf,
    pub len: u64,
}

impl Source {
    /// The first `len` bytes of the file at `path`.
    pub fn file(path: impl Into<PathBuf>, len: u64) -> Self {
        Self {
            head: Bytes::new(),
            path: path.into(),
            len,
        }
    }

    /// Total size in bytes.
    pub fn size(&self) -> u64 {
        self.head.len() as u64 + self.len
    }

    /// Where the `len` bytes at `offset` of the whole come from: the part of `head` they cover,
    /// then `(file offset, file length)`.
    pub fn slice(&self, offset: u64, len: u64) -> (Bytes, u64, u64) {
        let h = self.head.len() as u64;
        let end = offset.saturating_add(len).min(self.size());
        let start = offset.min(end);
        let head = self.head.slice(
            usize::try_from(start.min(h)).unwrap_or(0)..usize::try_from(end.min(h)).unwrap_or(0),
        );
        let file_start = start.saturating_sub(h);
        let file_end = end.saturating_sub(h);
        (head, file_start, file_end - file_start)
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

/// An object being downloaded: its size and metadata (known before the first byte), then its
/// bytes in order. Dropping the stream cancels the download. Memory stays at one chunk.
pub struct Download {
    pub size: u64,
    /// User metadata where the store keeps it (S3); empty otherwise.
    pub metadata: BTreeMap<String, String>,
    pub stream: futures::stream::BoxStream<'static, Result<Bytes, StoreError>>,
}

impl Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// One level of a listing (`/` as the delimiter): the objects directly in a folder and the
/// folders directly below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Objects directly under the prefix, sorted by key.
    pub objects: Vec<ObjectMeta>,
    /// Sub-folders that hold at least one object, each the full prefix ending with `/`
    /// (`git/acme/2026-11-24/`), sorted.
    pub folders: Vec<String>,
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
    /// The store refuses to delete `key` because it is under retention (S3 Object Lock).
    #[error("`{key}` is under retention{}", until.map(|u| format!(" until {}", u.format("%Y-%m-%d %H:%M:%S UTC"))).unwrap_or_default())]
    Retained {
        key: String,
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Which version of an object a conditional write expects (S3: the ETag; a directory: the
/// file's identity). Opaque: only compared, never parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

/// An object read together with its [`Version`], for a later [`Store::put_if_version`].
#[derive(Debug, Clone)]
pub struct Versioned {
    pub data: Bytes,
    pub version: Version,
}

/// One key [`Store::delete_many`] could not remove, and why.
#[derive(Debug)]
pub struct DeleteFailure {
    pub key: Key,
    pub error: StoreError,
}

/// The most keys one S3 DeleteObjects request may carry; other stores batch the same way so
/// a caller sees one behaviour.
pub const MAX_DELETE_BATCH: usize = 1000;

#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Where this store writes, for messages: `s3://bucket` or a directory path.
    fn location(&self) -> String;

    /// Whether [`PutOptions::metadata`] is kept and read back by `head` and `get_stream`
    /// (S3: yes; a local directory: no). `verify --quick` can only check a hash where it is.
    fn keeps_metadata(&self) -> bool {
        true
    }

    /// Fails fast when the destination is missing, unreachable or refuses us, before any
    /// repository is cloned.
    async fn check(&self) -> Result<(), StoreError>;

    /// Writes a small object in one request, atomically replacing any previous one.
    async fn put(&self, key: &Key, data: Bytes, opts: &PutOptions) -> Result<(), StoreError>;

    /// Writes a small object only if nothing exists at `key` (S3: PutObject with
    /// `If-None-Match: *`; a directory: a no-replace rename). Of two concurrent callers exactly
    /// one creates it. `Ok(Some(version))` when this call created it, `Ok(None)` when the key
    /// was taken (nothing written).
    async fn put_if_absent(
        &self,
        key: &Key,
        data: Bytes,
        opts: &PutOptions,
    ) -> Result<Option<Version>, StoreError>;

    /// Replaces the object at `key` only if it is still `expected` (S3: `If-Match` on the
    /// ETag): a compare-and-swap. Of two concurrent callers expecting the same version at most
    /// one succeeds. `Ok(None)` when the object changed or is gone (nothing written).
    async fn put_if_version(
        &self,
        key: &Key,
        data: Bytes,
        opts: &PutOptions,
        expected: &Version,
    ) -> Result<Option<Version>, StoreError>;

    /// The whole (small) object and its version; `None` when it does not exist.
    async fn get_versioned(&self, key: &Key) -> Result<Option<Versioned>, StoreError>;

    /// Uploads `source`. Large sources go up in parts; on any error the upload is aborted so
    /// no partial object or open multipart upload remains. A file shorter than the source says
    /// is an error, never a short object.
    async fn put_source(
        &self,
        key: &Key,
        source: &Source,
        opts: &PutOptions,
    ) -> Result<(), StoreError>;

    /// Uploads the first `size` bytes of the file at `path`: [`Store::put_source`] without a
    /// head.
    async fn put_file(
        &self,
        key: &Key,
        path: &Path,
        size: u64,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        self.put_source(key, &Source::file(path, size), opts).await
    }

    /// The whole object in memory: for manifests, never for bundles.
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError>;

    /// The object as a stream of chunks (bounded memory, no temp copy): how bundles are read
    /// back. `NotFound` when it does not exist.
    async fn get_stream(&self, key: &Key) -> Result<Download, StoreError>;

    /// `None` when the object does not exist.
    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StoreError>;

    /// Every object whose key starts with `prefix` (a plain string prefix), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// One level below `folder` (empty for the root, else ending with `/`): the objects in it
    /// and its sub-folders. How date folders are found without listing every bundle.
    async fn list_folder(&self, folder: &str) -> Result<Listing, StoreError>;

    /// Copies `from` to `to` inside the store without the bytes passing through us (S3
    /// CopyObject, UploadPartCopy for objects above 5 GiB; a hard link in a directory, or a
    /// copy where a link is impossible). Atomic like a put: a reader of `to` sees the old
    /// object or the whole copy. Metadata and content type are those of `from`.
    /// `NotFound` when `from` does not exist.
    async fn copy(&self, from: &Key, to: &Key) -> Result<(), StoreError>;

    /// Deleting a missing object is not an error.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    /// Removes `keys`, batched (S3: DeleteObjects, at most [`MAX_DELETE_BATCH`] keys a
    /// request), in the order given, batch after batch. A key already absent counts as
    /// removed. Per-key refusals come back in the list; the whole call fails only when no
    /// request could be made (the first one failed as a whole: unreachable, access denied);
    /// a later batch failing as a whole comes back as a failure for each of its keys.
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<DeleteFailure>, StoreError>;

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
    fn source_slices_cross_from_head_into_file() {
        let src = Source {
            head: Bytes::from_static(b"HEADER"),
            path: PathBuf::from("/p"),
            len: 10,
        };
        assert_eq!(src.size(), 16);
        // Entirely in the head, across the boundary, entirely in the file, past the end.
        assert_eq!(src.slice(0, 4), (Bytes::from_static(b"HEAD"), 0, 0));
        assert_eq!(src.slice(4, 5), (Bytes::from_static(b"ER"), 0, 3));
        assert_eq!(src.slice(6, 10), (Bytes::new(), 0, 10));
        assert_eq!(src.slice(10, 100), (Bytes::new(), 4, 6));
        assert_eq!(src.slice(16, 1), (Bytes::new(), 10, 0));
        // A source without a head is the file.
        assert_eq!(Source::file("/p", 9).slice(3, 4), (Bytes::new(), 3, 4));
    }

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
