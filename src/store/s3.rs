//! S3 and S3-compatible stores (MinIO, Garage, Ceph RGW, R2, B2, …) through aws-sdk-s3.
//!
//! The client is configured for the lowest common denominator of S3 implementations, because
//! the SDK's defaults assume AWS (`client.rs`).
//!
//! Large files go up as a multipart upload whose parts are `path + offset + length` bodies:
//! the SDK can retry each one (it re-reads the file) and memory stays at parts in flight, not
//! bundle size. On any failure, on cancellation and when the future is dropped, the upload is
//! aborted, because S3 bills the stored parts of an open upload until someone aborts it. A
//! crashed process cannot abort; [`Store::sweep_incomplete`] does it on the next run.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use self::body::source_body;
use self::digest::{content_md5, source_md5};
use self::write::Writes;
use super::{
    DeleteFailure, Download, Key, Listing, MAX_DELETE_BATCH, ObjectMeta, PutOptions, Source, Store,
    StoreError, Version, Versioned,
};

mod body;
mod client;
mod conditional;
mod copy;
mod delete;
mod digest;
mod errors;
mod lock;
mod multipart;
mod read;
mod write;

pub use client::{CONNECT_TIMEOUT, DEFAULT_TIMEOUT, STALL_GRACE};
pub use copy::MAX_SINGLE_COPY;
pub use write::{LockMode, ObjectLock, Sse, WriteOptions};

const MIB: u64 = 1024 * 1024;
pub const DEFAULT_PART_SIZE: u64 = 16 * MIB;
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// S3's limits: every part but the last at least 5 MiB, at most 5 GiB, at most 10,000 parts.
const MIN_PART_SIZE: u64 = 5 * MIB;
const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
const MAX_PARTS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    pub bucket: String,
    /// Wins over `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// Keep virtual-hosted addressing (`bucket.host`) even with a custom endpoint.
    pub virtual_hosted: bool,
    /// Wanted part size; grown (and rounded up to 1 MiB) as S3's limits require.
    pub part_size: u64,
    pub parts_in_flight: usize,
    /// Wins over the AWS chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Objects above this are copied with UploadPartCopy instead of CopyObject: S3's limit
    /// (5 GiB) unless a test wants to exercise the multipart path with small objects.
    pub max_single_copy: u64,
    /// Keys per DeleteObjects request: S3's limit ([`MAX_DELETE_BATCH`]) unless a test wants
    /// several requests from a few keys.
    pub delete_batch: usize,
    /// Object Lock, encryption and storage class of every object written.
    pub writes: WriteOptions,
    /// Longest a request attempt may wait for its answer, and may take in all (`--s3-timeout`).
    pub timeout: Duration,
}

impl S3Options {
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            endpoint: None,
            virtual_hosted: false,
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            region: None,
            max_single_copy: MAX_SINGLE_COPY,
            delete_batch: MAX_DELETE_BATCH,
            writes: WriteOptions::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// The custom endpoint in effect, for messages; `None` means AWS.
    endpoint: Option<String>,
    region: String,
    path_style: bool,
    part_size: u64,
    parts_in_flight: usize,
    max_single_copy: u64,
    delete_batch: usize,
    writes: WriteOptions,
    /// Whether the bucket has Object Lock, once asked (see `lock.rs`); shared by clones.
    lock_enabled: Arc<tokio::sync::OnceCell<bool>>,
    /// Failed uploads whose abort failed too, to abort later (see `multipart.rs`).
    unaborted: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    cancel: CancellationToken,
}

impl fmt::Debug for S3Store {
    // By hand: the client's config holds the credentials provider.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .field("parts_in_flight", &self.parts_in_flight)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// The endpoint for messages: the URL, or "AWS S3 (<region>)".
    fn endpoint_label(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("AWS S3 ({})", self.region),
        }
    }

    fn target(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("s3://{}/{}", self.bucket, k),
            None => format!("s3://{}", self.bucket),
        }
    }

    /// `fut`, unless the run is cancelled first.
    async fn or_cancelled<T>(
        &self,
        key: &Key,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::select! {
            r = fut => r,
            () = self.cancel.cancelled() => Err(StoreError::Cancelled { key: key.to_string() }),
        }
    }

    /// The whole HeadObject answer (metadata, content type, version, retention); `None` when
    /// the object does not exist.
    async fn head_object(&self, key: &Key) -> Result<Option<HeadObjectOutput>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e)
                if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_)))
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error("HeadObject", Some(key.as_str()), e)),
        }
    }

    async fn put_single(
        &self,
        key: &Key,
        source: &Source,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        let size = source.size();
        let md5 = source_md5(source, 0, size).await?;
        let body = source_body(source, 0, size).await?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(to_i64(size))
            .content_md5(md5)
            .with_writes(&self.writes)
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata(opts))
            .body(body)
            .send()
            .await
            .map_err(|e| self.error("PutObject", Some(key.as_str()), e))?;
        if let Some(p) = &opts.on_progress {
            p(size);
        }
        Ok(())
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

fn metadata(opts: &PutOptions) -> Option<HashMap<String, String>> {
    (!opts.metadata.is_empty()).then(|| opts.metadata.clone().into_iter().collect())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for S3Store {
    fn location(&self) -> String {
        self.target(None)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let err = match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) if self.writes.object_lock.is_some() => return self.check_object_lock().await,
            Ok(_) => {
                // Whether deletes must go by version.
                self.bucket_has_lock().await;
                return Ok(());
            }
            Err(e) => e,
        };
        // HeadBucket answers have no body, so the SDK only knows 404 by name; 403 and 301
        // arrive as unhandled errors without a code and are told apart by status.
        let status = err.raw_response().map(|r| r.status().as_u16());
        if matches!(err.as_service_error(), Some(HeadBucketError::NotFound(_)))
            || status == Some(404)
        {
            return Err(StoreError::BucketNotFound {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint_label(),
            });
        }
        Err(match (self.error("HeadBucket", None, err), status) {
            (StoreError::Request { op, key, message }, Some(400)) => StoreError::Request {
                op,
                key,
                message: format!(
                    "{message}; the answer has no details, usually the region is wrong (--s3-region) or \
                     the endpoint is not an S3 API"
                ),
            },
            (other, _) => other,
        })
    }

    async fn put(&self, key: &Key, data: Bytes, opts: &PutOptions) -> Result<(), StoreError> {
        let len = data.len() as u64;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(to_i64(len))
            .content_md5(content_md5(&data))
            .with_writes(&self.writes)
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata(opts))
            .body(ByteStream::from(data))
            .send();
        request
            .await
            .map_err(|e| self.error("PutObject", Some(key.as_str()), e))?;
        if let Some(p) = &opts.on_progress {
            p(len);
        }
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &Key,
        data: Bytes,
        opts: &PutOptions,
    ) -> Result<Option<Version>, StoreError> {
        self.put_conditional(key, data, opts, None).await
    }

    async fn put_if_version(
        &self,
        key: &Key,
        data: Bytes,
        opts: &PutOptions,
        expected: &Version,
    ) -> Result<Option<Version>, StoreError> {
        self.put_conditional(key, data, opts, Some(expected)).await
    }

    async fn get_versioned(&self, key: &Key) -> Result<Option<Versioned>, StoreError> {
        self.get_with_etag(key).await
    }

    async fn put_source(
        &self,
        key: &Key,
        source: &Source,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        if self.cancel.is_cancelled() {
            return Err(StoreError::Cancelled {
                key: key.to_string(),
            });
        }
        if source.size() <= self.part_size {
            self.or_cancelled(key, self.put_single(key, source, opts))
                .await
        } else {
            self.put_multipart(key, source, opts).await
        }
    }

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        use futures::TryStreamExt;
        let download = self.download(key).await?;
        let mut body = Vec::with_capacity(usize::try_from(download.size).unwrap_or(0));
        let mut stream = download.stream;
        while let Some(chunk) = stream.try_next().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    async fn get_stream(&self, key: &Key) -> Result<Download, StoreError> {
        self.download(key).await
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.head_object(key).await?.map(|out| ObjectMeta {
            key: key.clone(),
            size: out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            metadata: out
                .metadata()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default(),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        Ok(self.list_objects(prefix, None).await?.objects)
    }

    async fn list_folder(&self, folder: &str) -> Result<Listing, StoreError> {
        self.list_one_level(folder).await
    }

    async fn copy(&self, from: &Key, to: &Key) -> Result<(), StoreError> {
        if self.cancel.is_cancelled() {
            return Err(StoreError::Cancelled {
                key: to.to_string(),
            });
        }
        self.server_copy(from, to).await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        if self.bucket_has_lock().await {
            return self.delete_versions(key).await;
        }
        self.delete_key(key, None).await
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<DeleteFailure>, StoreError> {
        if self.bucket_has_lock().await {
            return self.delete_versions_many(keys).await;
        }
        self.delete_batches(keys).await
    }

    async fn sweep_incomplete(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<usize, StoreError> {
        self.sweep(prefix, older_than).await
    }
}
