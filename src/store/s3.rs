//! S3 and S3-compatible stores (MinIO, Garage, Ceph RGW, R2, B2, …) through aws-sdk-s3.
//!
//! The client is configured for the lowest common denominator of S3 implementations, because
//! the SDK's defaults assume AWS:
//! - checksums only `WhenRequired`: since aws-sdk-s3 1.69 every PutObject/UploadPart carries a
//!   CRC32 (header or aws-chunked trailer) and every GetObject asks for one; MinIO, R2, B2,
//!   older Garage and Ceph reject or mis-handle those requests. Uploads carry the checksum
//!   they all accept, `Content-MD5`, instead, and a `BadDigest` answer is retried like a 500
//!   (`digest.rs`);
//! - path-style addressing whenever a custom endpoint is in effect (flag, `AWS_ENDPOINT_URL_S3`
//!   or `AWS_ENDPOINT_URL`), since `bucket.host` rarely resolves for self-hosted stores;
//! - every request bounded: [`CONNECT_TIMEOUT`] to connect, and [`S3Options::timeout`]
//!   (`--s3-timeout`) both until the first byte of the answer and for each attempt, so a server
//!   that stops answering costs the SDK's retries times that, not hours;
//! - stalled-stream protection on for uploads and downloads (under 1 B/s for a second fails the
//!   attempt), with a grace period of [`STALL_GRACE`] instead of the SDK's 5 s, which reports
//!   false "0 B/s" stalls on slow or back-pressured links and while a server is slow to answer
//!   a fully sent part;
//! - `us-east-1` as the region for custom endpoints when none is configured.
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
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_types::service_config::ServiceConfigKey;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use self::body::source_body;
use self::digest::{CorruptedInFlight, content_md5, source_md5};
use self::errors::redact_userinfo;
use self::write::Writes;
use super::{
    DeleteFailure, Download, Key, Listing, MAX_DELETE_BATCH, ObjectMeta, PutOptions, Source, Store,
    StoreError, Version, Versioned,
};

mod body;
mod conditional;
mod copy;
mod delete;
mod digest;
mod errors;
mod lock;
mod multipart;
mod read;
mod write;

pub use copy::MAX_SINGLE_COPY;
pub use write::{LockMode, ObjectLock, Sse, WriteOptions};

const MIB: u64 = 1024 * 1024;
pub const DEFAULT_PART_SIZE: u64 = 16 * MIB;
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// S3's limits: every part but the last at least 5 MiB, at most 5 GiB, at most 10,000 parts.
const MIN_PART_SIZE: u64 = 5 * MIB;
const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
const MAX_PARTS: u64 = 10_000;
/// Time to open a connection to the S3 endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--s3-timeout`: how long one request attempt may take, body upload included
/// (a 16 MiB part at 256 kbit/s takes about 9 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a transfer may run below 1 B/s before the attempt fails as stalled.
pub const STALL_GRACE: Duration = Duration::from_secs(60);
/// Where S3-compatible stores that ignore regions are happy, and what the SDK signs with.
const CUSTOM_ENDPOINT_REGION: &str = "us-east-1";

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
    /// Credentials, region and endpoint from the standard AWS chain: environment, shared
    /// config/credentials files, web identity (IRSA), ECS and IMDS.
    pub async fn from_env(opts: S3Options, cancel: CancellationToken) -> Result<Self, StoreError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &opts.region {
            loader = loader.region(Region::new(region.clone()));
        }
        Self::from_sdk_config(&loader.load().await, opts, cancel)
    }

    pub fn from_sdk_config(
        sdk: &SdkConfig,
        opts: S3Options,
        cancel: CancellationToken,
    ) -> Result<Self, StoreError> {
        let endpoint = opts.endpoint.clone().or_else(|| configured_endpoint(sdk));
        let region = match (&opts.region, sdk.region(), &endpoint) {
            (Some(r), _, _) => r.clone(),
            (None, Some(r), _) => r.to_string(),
            (None, None, Some(_)) => CUSTOM_ENDPOINT_REGION.to_string(),
            (None, None, None) => {
                return Err(StoreError::Misconfigured {
                    target: format!("s3://{}", opts.bucket),
                    message: "no AWS region configured: set AWS_REGION, a region in ~/.aws/config, or pass --s3-region"
                        .into(),
                });
            }
        };
        let path_style = endpoint.is_some() && !opts.virtual_hosted;
        let mut b = aws_sdk_s3::config::Builder::from(sdk)
            .region(Region::new(region.clone()))
            .force_path_style(path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_classifier(CorruptedInFlight)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(opts.timeout)
                    .operation_attempt_timeout(opts.timeout)
                    .build(),
            )
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(STALL_GRACE)
                    .build(),
            );
        if let Some(e) = &opts.endpoint {
            b = b.endpoint_url(e);
        }
        Ok(Self {
            client: Client::from_conf(b.build()),
            bucket: opts.bucket,
            endpoint: endpoint.map(|e| redact_userinfo(&e)),
            region,
            path_style,
            part_size: opts.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            parts_in_flight: opts.parts_in_flight.max(1),
            max_single_copy: opts.max_single_copy.clamp(MIN_PART_SIZE, MAX_SINGLE_COPY),
            delete_batch: opts.delete_batch.clamp(1, MAX_DELETE_BATCH),
            writes: opts.writes,
            lock_enabled: Arc::default(),
            cancel,
        })
    }

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

/// The endpoint the SDK will use, mirroring `aws_sdk_s3::config::Builder::from(&SdkConfig)`:
/// one set in code wins, then `AWS_ENDPOINT_URL_S3` / the profile's s3 `endpoint_url`, then
/// `AWS_ENDPOINT_URL`. Needed because the built config does not expose it, and a custom
/// endpoint is what switches on path-style addressing.
fn configured_endpoint(sdk: &SdkConfig) -> Option<String> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_owned);
    }
    let key = ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_endpoint_without_a_region_defaults_to_us_east_1_and_path_style() {
        let sdk = SdkConfig::builder()
            .endpoint_url("http://127.0.0.1:9000")
            .behavior_version(BehaviorVersion::latest())
            .build();
        let s =
            S3Store::from_sdk_config(&sdk, S3Options::new("b"), CancellationToken::new()).unwrap();
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.path_style);
        let conf = s.client.config();
        assert_eq!(
            conf.request_checksum_calculation(),
            Some(&RequestChecksumCalculation::WhenRequired)
        );
        assert_eq!(
            conf.response_checksum_validation(),
            Some(&ResponseChecksumValidation::WhenRequired)
        );
        let stall = conf.stalled_stream_protection().unwrap();
        assert!(stall.upload_enabled() && stall.download_enabled());
        assert_eq!(stall.grace_period(), STALL_GRACE);
        let t = conf.timeout_config().unwrap();
        assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(t.read_timeout(), Some(DEFAULT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(DEFAULT_TIMEOUT));

        let opts = S3Options {
            virtual_hosted: true,
            ..S3Options::new("b")
        };
        let s = S3Store::from_sdk_config(&sdk, opts, CancellationToken::new()).unwrap();
        assert!(!s.path_style);

        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        let err = S3Store::from_sdk_config(&aws, S3Options::new("b"), CancellationToken::new())
            .unwrap_err();
        assert!(err.to_string().contains("--s3-region"), "{err}");
        let aws = aws.to_builder().region(Region::new("eu-west-1")).build();
        let s =
            S3Store::from_sdk_config(&aws, S3Options::new("b"), CancellationToken::new()).unwrap();
        assert_eq!(
            (s.region.as_str(), s.path_style, s.endpoint.as_deref()),
            ("eu-west-1", false, None)
        );
    }

    /// Stands in for the environment: `AWS_ENDPOINT_URL_S3` as aws-config would report it.
    #[derive(Debug)]
    struct S3EndpointFromEnv;

    impl aws_types::service_config::LoadServiceConfig for S3EndpointFromEnv {
        fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
            (key.service_id() == "S3" && key.env() == "AWS_ENDPOINT_URL")
                .then(|| "http://from-env:9000".into())
        }
    }

    #[test]
    fn aws_endpoint_url_s3_switches_to_path_style_and_an_explicit_endpoint_wins() {
        let sdk = SdkConfig::builder()
            .service_config(S3EndpointFromEnv)
            .behavior_version(BehaviorVersion::latest())
            .build();
        let s =
            S3Store::from_sdk_config(&sdk, S3Options::new("b"), CancellationToken::new()).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://from-env:9000"));
        assert!(s.path_style);
        assert_eq!(s.region, "us-east-1");
        let opts = S3Options {
            endpoint: Some("http://explicit:9000".into()),
            ..S3Options::new("b")
        };
        let s = S3Store::from_sdk_config(&sdk, opts, CancellationToken::new()).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://explicit:9000"));
    }
}
