//! S3 and S3-compatible stores (MinIO, Garage, Ceph RGW, R2, B2, …) through aws-sdk-s3.
//!
//! The client is configured for the lowest common denominator of S3 implementations, because
//! the SDK's defaults assume AWS:
//! - checksums only `WhenRequired`: since aws-sdk-s3 1.69 every PutObject/UploadPart carries a
//!   CRC32 (header or aws-chunked trailer) and every GetObject asks for one; MinIO, R2, B2,
//!   older Garage and Ceph reject or mis-handle those requests;
//! - path-style addressing whenever a custom endpoint is in effect (flag, `AWS_ENDPOINT_URL_S3`
//!   or `AWS_ENDPOINT_URL`), since `bucket.host` rarely resolves for self-hosted stores;
//! - stalled-stream protection off for uploads, where it reports false "0 B/s" stalls while a
//!   server is slow to answer a fully sent part; it stays on for downloads;
//! - `us-east-1` as the region for custom endpoints when none is configured.
//!
//! Large files go up as a multipart upload whose parts are `path + offset + length` bodies:
//! the SDK can retry each one (it re-reads the file) and memory stays at parts in flight, not
//! bundle size. On any failure, on cancellation and when the future is dropped, the upload is
//! aborted, because S3 bills the stored parts of an open upload until someone aborts it. A
//! crashed process cannot abort; [`Store::sweep_incomplete`] does it on the next run.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_types::service_config::ServiceConfigKey;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

use super::{Key, ObjectMeta, PutOptions, Store, StoreError};

const MIB: u64 = 1024 * 1024;
pub const DEFAULT_PART_SIZE: u64 = 16 * MIB;
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// S3's limits: every part but the last at least 5 MiB, at most 5 GiB, at most 10,000 parts.
const MIN_PART_SIZE: u64 = 5 * MIB;
const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
const MAX_PARTS: u64 = 10_000;
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

    pub fn from_sdk_config(sdk: &SdkConfig, opts: S3Options, cancel: CancellationToken) -> Result<Self, StoreError> {
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
            .stalled_stream_protection(StalledStreamProtectionConfig::enabled().upload_enabled(false).build());
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

    /// Maps an SDK failure of `op` on `key` (or the bucket) to the error the user can act on.
    fn error<E>(&self, op: &'static str, key: Option<&str>, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let f = Failure::of(&err);
        let target = self.target(key);
        if let Some(detail) = f.no_credentials {
            return StoreError::Misconfigured {
                target: self.target(None),
                message: format!(
                    "no usable AWS credentials ({detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                     pick a profile with AWS_PROFILE, or run with an IAM role"
                ),
            };
        }
        if f.unreachable {
            return StoreError::Unreachable {
                target: self.endpoint_label(),
                message: format!("{op}: {}", f.message),
            };
        }
        match (f.status, f.code.as_deref()) {
            (Some(403), _) => StoreError::AccessDenied {
                target,
                message: format!("{op}: {}", f.message),
            },
            (_, Some("NoSuchBucket")) => StoreError::BucketNotFound {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint_label(),
            },
            (Some(301), _) | (_, Some("PermanentRedirect" | "AuthorizationHeaderMalformed")) => {
                StoreError::Misconfigured {
                    target: self.target(None),
                    message: self.wrong_region(f.bucket_region.as_deref()),
                }
            }
            _ => StoreError::Request {
                op,
                key: target,
                message: f.message,
            },
        }
    }

    fn wrong_region(&self, actual: Option<&str>) -> String {
        match actual {
            Some(r) => format!(
                "the bucket is in region `{r}`, not `{}`: set AWS_REGION={r} or pass --s3-region {r}",
                self.region
            ),
            None => format!(
                "the bucket is not in region `{}` (S3 redirected the request): set AWS_REGION or pass \
                 --s3-region with the bucket's region",
                self.region
            ),
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

    async fn put_single(&self, key: &Key, path: &Path, size: u64, opts: &PutOptions) -> Result<(), StoreError> {
        let body = file_body(path, 0, size).await?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(to_i64(size))
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

    async fn put_multipart(&self, key: &Key, path: &Path, size: u64, opts: &PutOptions) -> Result<(), StoreError> {
        let plan = PartPlan::new(size, self.part_size).map_err(|message| StoreError::Misconfigured {
            target: self.target(Some(key.as_str())),
            message,
        })?;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata(opts))
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", Some(key.as_str()), e))?;
        let upload_id = created.upload_id().ok_or_else(|| StoreError::Request {
            op: "CreateMultipartUpload",
            key: self.target(Some(key.as_str())),
            message: "the response carried no upload id".into(),
        })?;
        // From here on the upload must end completed or aborted. Errors and cancellation abort
        // below (awaited, so the caller can rely on it); the guard covers a dropped future.
        let mut guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            armed: true,
        };
        let result = self
            .or_cancelled(key, self.upload_parts_and_complete(key, path, &plan, upload_id, opts))
            .await;
        guard.armed = false;
        if result.is_err()
            && let Err(e) = self.abort(key.as_str(), upload_id).await
        {
            tracing::warn!(key = %key, error = %e, "could not abort the failed multipart upload; the next run sweeps it");
        }
        result
    }

    async fn upload_parts_and_complete(
        &self,
        key: &Key,
        path: &Path,
        plan: &PartPlan,
        upload_id: &str,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        let mut parts: Vec<CompletedPart> = futures::stream::iter(plan.parts())
            .map(|part| self.upload_part(key, path, upload_id, part, opts))
            .buffer_unordered(self.parts_in_flight)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| self.error("CompleteMultipartUpload", Some(key.as_str()), e))?;
        Ok(())
    }

    async fn upload_part(
        &self,
        key: &Key,
        path: &Path,
        upload_id: &str,
        part: Part,
        opts: &PutOptions,
    ) -> Result<CompletedPart, StoreError> {
        let body = file_body(path, part.offset, part.len).await?;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(part.number)
            .content_length(to_i64(part.len))
            .body(body)
            .send()
            .await
            .map_err(|e| self.error("UploadPart", Some(key.as_str()), e))?;
        if let Some(p) = &opts.on_progress {
            p(part.len);
        }
        Ok(CompletedPart::builder()
            .part_number(part.number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }

    /// Aborting an upload that is already gone is success.
    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match abort_upload(&self.client, &self.bucket, key, upload_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(self.error("AbortMultipartUpload", Some(key), e)),
        }
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

async fn abort_upload(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), SdkError<aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadError, HttpResponse>> {
    client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .map(drop)
}

/// Aborts the upload from a spawned task if the upload future is dropped mid-way (the caller
/// gave up, e.g. a timeout or `select!`). Needs a running runtime; without one the upload stays
/// open until the next run's sweep.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %self.key, "upload dropped outside a runtime; the next run sweeps it");
            return;
        };
        let (client, bucket, key, id) = (
            self.client.clone(),
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        runtime.spawn(async move {
            if let Err(e) = abort_upload(&client, &bucket, &key, &id).await {
                tracing::warn!(key = %key, error = %chain(&e), "could not abort a dropped upload; the next run sweeps it");
            }
        });
    }
}

/// A retryable, size-hinted body: the SDK re-opens the file at `offset` on every attempt.
async fn file_body(path: &Path, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| {
            // The SDK's own wording ("`Length::Exact` was larger than …") means nothing to a user.
            let source = match std::fs::metadata(path) {
                Ok(m) if m.len() < offset + len => std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended after {} of the expected {} bytes", m.len(), offset + len),
                ),
                _ => std::io::Error::other(e),
            };
            StoreError::Io {
                context: "cannot read",
                path: path.display().to_string(),
                source,
            }
        })
}

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

/// Endpoint URLs end up in messages; a `user:password@` in one must not.
fn redact_userinfo(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => endpoint.to_string(),
    }
}

/// What the user needs from an SDK error: HTTP status, S3 code and message, never headers or
/// credentials.
struct Failure {
    status: Option<u16>,
    code: Option<String>,
    message: String,
    unreachable: bool,
    /// `x-amz-bucket-region`, sent with 301s and 400s for a wrong region.
    bucket_region: Option<String>,
    /// Why the credential chain found nothing, when that is what failed.
    no_credentials: Option<String>,
}

impl Failure {
    fn of<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let raw = err.raw_response();
        let status = raw.map(|r| r.status().as_u16());
        let bucket_region = raw.and_then(|r| r.headers().get("x-amz-bucket-region")).map(str::to_owned);
        let code = err.code().map(str::to_owned);
        let unreachable = match err {
            SdkError::TimeoutError(_) => true,
            SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
            _ => false,
        };
        let message = match (err, status) {
            (SdkError::ServiceError(_) | SdkError::ResponseError(_), Some(status)) => {
                let what = match (&code, err.message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.clone(),
                    (None, _) => {
                        let reason = http::StatusCode::from_u16(status)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("");
                        format!("HTTP {status} {reason}").trim_end().to_string()
                    }
                };
                match err.request_id() {
                    Some(id) if code.is_some() => format!("{what} (HTTP {status}, request id {id})"),
                    _ if code.is_some() => format!("{what} (HTTP {status})"),
                    _ => what,
                }
            }
            _ => chain(err),
        };
        let no_credentials = sources(err)
            .find(|e| e.downcast_ref::<CredentialsError>().is_some())
            .map(|e| chain(e));
        Self {
            status,
            code,
            message,
            unreachable,
            bucket_region,
            no_credentials,
        }
    }
}

fn sources<'a>(err: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// `outer: inner: root cause`, each message once. Unlike the SDK's `DisplayErrorContext` this
/// has no `Debug` dump of the whole error appended.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out: Vec<String> = Vec::new();
    for e in sources(err) {
        let msg = e.to_string();
        if !msg.is_empty() && !out.last().is_some_and(|last| last.ends_with(&msg)) {
            out.push(msg);
        }
    }
    out.join(": ")
}

/// One part of a multipart upload: S3 part numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    number: i32,
    offset: u64,
    len: u64,
}

/// How a file of `size` bytes is cut: equal parts (R2 requires that) except a shorter last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartPlan {
    size: u64,
    part_size: u64,
    count: u64,
}

impl PartPlan {
    /// `max(wanted, 5 MiB, ceil(size / 10,000))` rounded up to a whole MiB, so the upload never
    /// needs more than 10,000 parts.
    fn new(size: u64, wanted: u64) -> Result<Self, String> {
        let part_size = wanted.max(MIN_PART_SIZE).max(size.div_ceil(MAX_PARTS)).div_ceil(MIB) * MIB;
        if part_size > MAX_PART_SIZE {
            return Err(format!(
                "{size} bytes is more than S3 accepts in one object (10,000 parts of at most 5 GiB)"
            ));
        }
        Ok(Self {
            size,
            part_size,
            count: size.div_ceil(part_size),
        })
    }

    fn parts(&self) -> impl Iterator<Item = Part> + use<> {
        let Self { size, part_size, count } = *self;
        (0..count).map(move |i| {
            let offset = i * part_size;
            Part {
                number: i32::try_from(i + 1).expect("at most 10,000 parts"),
                offset,
                len: part_size.min(size - offset),
            }
        })
    }
}

#[async_trait]
impl Store for S3Store {
    fn location(&self) -> String {
        self.target(None)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let err = match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // HeadBucket answers have no body, so the SDK only knows 404 by name; 403 and 301
        // arrive as unhandled errors without a code and are told apart by status.
        let status = err.raw_response().map(|r| r.status().as_u16());
        if matches!(err.as_service_error(), Some(HeadBucketError::NotFound(_))) || status == Some(404) {
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
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata(opts))
            .body(ByteStream::from(data))
            .send();
        request.await.map_err(|e| self.error("PutObject", Some(key.as_str()), e))?;
        if let Some(p) = &opts.on_progress {
            p(len);
        }
        Ok(())
    }

    async fn put_file(&self, key: &Key, path: &Path, size: u64, opts: &PutOptions) -> Result<(), StoreError> {
        if self.cancel.is_cancelled() {
            return Err(StoreError::Cancelled { key: key.to_string() });
        }
        if size <= self.part_size {
            self.or_cancelled(key, self.put_single(key, path, size, opts)).await
        } else {
            self.put_multipart(key, path, size, opts).await
        }
    }

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(out) => out,
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                return Err(StoreError::NotFound { key: key.to_string() });
            }
            Err(e) => return Err(self.error("GetObject", Some(key.as_str()), e)),
        };
        let body = out.body.collect().await.map_err(|e| StoreError::Request {
            op: "GetObject",
            key: self.target(Some(key.as_str())),
            message: format!("reading the body: {}", chain(&e)),
        })?;
        Ok(body.into_bytes())
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                metadata: out.metadata().map(|m| m.clone().into_iter().collect()).unwrap_or_default(),
            })),
            Err(e)
                if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_)))
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error("HeadObject", Some(key.as_str()), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix((!prefix.is_empty()).then(|| prefix.to_string()))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", Some(prefix), e))?;
            for object in page.contents() {
                let Some(name) = object.key() else { continue };
                match Key::new(name) {
                    Ok(key) => out.push(ObjectMeta {
                        key,
                        size: object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        metadata: Default::default(),
                    }),
                    // Objects someone else put there can have keys we would never build.
                    Err(e) => tracing::debug!(error = %e, "skipping an object whose key we cannot represent"),
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", Some(key.as_str()), e))?;
        Ok(())
    }

    async fn sweep_incomplete(&self, prefix: &str, older_than: Duration) -> Result<usize, StoreError> {
        let cutoff = SystemTime::now().checked_sub(older_than).unwrap_or(SystemTime::UNIX_EPOCH);
        let (mut key_marker, mut id_marker) = (None, None);
        let mut stale = Vec::new();
        // Collect first, abort after: aborting while paging could shift the markers.
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .set_prefix((!prefix.is_empty()).then(|| prefix.to_string()))
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.error("ListMultipartUploads", Some(prefix), e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else { continue };
                // An upload without a start time might be a concurrent run's: leave it.
                let started = upload.initiated().and_then(|t| SystemTime::try_from(*t).ok());
                if started.is_some_and(|t| t <= cutoff) && key.starts_with(prefix) {
                    stale.push((key.to_string(), id.to_string()));
                }
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if page.is_truncated() != Some(true) || (key_marker.is_none() && id_marker.is_none()) {
                break;
            }
        }
        for (key, id) in &stale {
            self.abort(key, id).await?;
            tracing::info!(key = %key, upload_id = %id, "aborted a stale multipart upload");
        }
        Ok(stale.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_honours_the_minimum_and_rounds_to_a_mib() {
        assert_eq!(PartPlan::new(100 * MIB, MIB).unwrap().part_size, 5 * MIB);
        assert_eq!(PartPlan::new(100 * MIB, 16 * MIB).unwrap().part_size, 16 * MIB);
        // 8 MB (decimal) is not a whole MiB.
        assert_eq!(PartPlan::new(100 * MIB, 8_000_000).unwrap().part_size, 8 * MIB);
    }

    #[test]
    fn part_size_grows_to_stay_within_10000_parts() {
        // 200 GiB in 16 MiB parts would be 12,800 parts.
        let size = 200 * 1024 * MIB;
        let plan = PartPlan::new(size, 16 * MIB).unwrap();
        assert_eq!(plan.part_size, size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB);
        assert_eq!(plan.part_size, 21 * MIB);
        assert!(plan.count <= MAX_PARTS);
        // Exactly at the cap: 10,000 parts of 16 MiB.
        let plan = PartPlan::new(10_000 * 16 * MIB, 16 * MIB).unwrap();
        assert_eq!((plan.part_size, plan.count), (16 * MIB, 10_000));
        // One byte more no longer fits in 16 MiB parts.
        let plan = PartPlan::new(10_000 * 16 * MIB + 1, 16 * MIB).unwrap();
        assert_eq!((plan.part_size, plan.count), (17 * MIB, 9_412));
        // The largest object S3 takes, and one byte more.
        assert!(PartPlan::new(MAX_PARTS * MAX_PART_SIZE, MIB).is_ok());
        assert!(PartPlan::new(MAX_PARTS * MAX_PART_SIZE + 1, MIB).is_err());
    }

    #[test]
    fn parts_are_equal_except_the_last_and_cover_the_file() {
        let plan = PartPlan::new(12 * MIB + 3, 5 * MIB).unwrap();
        let parts: Vec<Part> = plan.parts().collect();
        assert_eq!(
            parts,
            [
                Part { number: 1, offset: 0, len: 5 * MIB },
                Part { number: 2, offset: 5 * MIB, len: 5 * MIB },
                Part { number: 3, offset: 10 * MIB, len: 2 * MIB + 3 },
            ]
        );
        let plan = PartPlan::new(10 * MIB, 5 * MIB).unwrap();
        assert_eq!(plan.parts().map(|p| p.len).collect::<Vec<_>>(), [5 * MIB, 5 * MIB]);
    }

    #[test]
    fn endpoint_userinfo_never_reaches_messages() {
        assert_eq!(redact_userinfo("http://ak:sk@minio:9000"), "http://minio:9000/");
        assert_eq!(redact_userinfo("http://minio:9000"), "http://minio:9000");
    }

    #[test]
    fn a_custom_endpoint_without_a_region_defaults_to_us_east_1_and_path_style() {
        let sdk = SdkConfig::builder()
            .endpoint_url("http://127.0.0.1:9000")
            .behavior_version(BehaviorVersion::latest())
            .build();
        let s = S3Store::from_sdk_config(&sdk, S3Options::new("b"), CancellationToken::new()).unwrap();
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.path_style);
        let conf = s.client.config();
        assert_eq!(conf.request_checksum_calculation(), Some(&RequestChecksumCalculation::WhenRequired));
        assert_eq!(conf.response_checksum_validation(), Some(&ResponseChecksumValidation::WhenRequired));
        assert!(!conf.stalled_stream_protection().unwrap().upload_enabled());

        let opts = S3Options {
            virtual_hosted: true,
            ..S3Options::new("b")
        };
        let s = S3Store::from_sdk_config(&sdk, opts, CancellationToken::new()).unwrap();
        assert!(!s.path_style);

        let aws = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        let err = S3Store::from_sdk_config(&aws, S3Options::new("b"), CancellationToken::new()).unwrap_err();
        assert!(err.to_string().contains("--s3-region"), "{err}");
        let aws = aws.to_builder().region(Region::new("eu-west-1")).build();
        let s = S3Store::from_sdk_config(&aws, S3Options::new("b"), CancellationToken::new()).unwrap();
        assert_eq!((s.region.as_str(), s.path_style, s.endpoint.as_deref()), ("eu-west-1", false, None));
    }

    /// What the default chain reports on a machine with no credentials at all.
    #[derive(Debug)]
    struct NoCredentials;

    impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            )))
        }
    }

    #[tokio::test]
    async fn missing_credentials_say_how_to_provide_them() {
        let sdk = SdkConfig::builder()
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(NoCredentials))
            .behavior_version(BehaviorVersion::latest())
            .build();
        let s = S3Store::from_sdk_config(&sdk, S3Options::new("b"), CancellationToken::new()).unwrap();
        let err = s.check().await.unwrap_err();
        assert!(matches!(err, StoreError::Misconfigured { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("no providers in chain") && msg.contains("AWS_ACCESS_KEY_ID"), "{msg}");
        assert!(!msg.contains("DispatchFailure"), "no Debug dump: {msg}");
    }

    /// Stands in for the environment: `AWS_ENDPOINT_URL_S3` as aws-config would report it.
    #[derive(Debug)]
    struct S3EndpointFromEnv;

    impl aws_types::service_config::LoadServiceConfig for S3EndpointFromEnv {
        fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
            (key.service_id() == "S3" && key.env() == "AWS_ENDPOINT_URL").then(|| "http://from-env:9000".into())
        }
    }

    #[test]
    fn aws_endpoint_url_s3_switches_to_path_style_and_an_explicit_endpoint_wins() {
        let sdk = SdkConfig::builder()
            .service_config(S3EndpointFromEnv)
            .behavior_version(BehaviorVersion::latest())
            .build();
        let s = S3Store::from_sdk_config(&sdk, S3Options::new("b"), CancellationToken::new()).unwrap();
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
