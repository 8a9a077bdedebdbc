//! A real S3 server for tests: `s3s-fs` over HTTP on 127.0.0.1:0, in-process, one per test,
//! with SigV4 checked by `SimpleAuth`. Requests go through a thin layer first (`faults.rs`) that
//! acts like the S3-compatible stores that broke on the SDK's defaults, injects faults, counts
//! requests, checks `Content-MD5` as S3 does (`digest.rs`) and serialises conditional writes;
//! S3 Object Lock is emulated on buckets marked so ([`TestS3::enable_object_lock`]; `lock.rs`).
//!
//! s3s-fs 0.14.1 has no ListMultipartUploads, so [`Tracked`] wraps it, remembering what
//! CreateMultipartUpload started; an upload is open while s3s-fs's `.upload-<id>.json` exists.
//! It also answers 404 for a key that is a directory on disk, as S3 would.
//!
//! The test's own assertions (`get`, `keys`, …) use a second access key that the layer lets
//! through untouched, so they neither count nor trip faults.
//!
//! With `GIT_OFFSITE_TEST_S3_ENDPOINT`, `_ACCESS_KEY`, `_SECRET_KEY` (and optionally `_BUCKET`,
//! `_REGION`) set, [`TestS3::start`] uses that server (e.g. MinIO in CI) instead: a fresh bucket
//! per test, or a fresh key prefix in `_BUCKET` (then only tests that honour
//! [`TestS3::prefix`] are isolated). Fault injection is unavailable there; tests check
//! [`TestS3::can_inject_faults`] and skip with a note. External buckets are not cleaned up.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::{
    Credentials, RequestChecksumCalculation, ResponseChecksumValidation, SharedCredentialsProvider,
};
use git_offsite::store::s3::{S3Options, S3Store};
use s3s::dto::*;
use s3s::service::S3Service;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use tokio_util::sync::CancellationToken;

use self::faults::{Faults, serve};
use self::lock::LockEmulation;

mod digest;
mod faults;
mod lock;
mod wire;

pub use self::digest::{CheckedUpload, Flip};

pub const ACCESS_KEY: &str = "git-offsite-test-ak";
/// Distinctive, so a test can grep output for a leaked secret.
pub const SECRET_KEY: &str = "git-offsite-test-sk-5f1c9e";
const HELPER_ACCESS_KEY: &str = "git-offsite-test-helper";
const HELPER_SECRET_KEY: &str = "git-offsite-test-helper-sk";
pub const REGION: &str = "us-east-1";
/// The smallest part S3 accepts; tests use it so a ~12 MiB file goes up in three parts.
pub const TEST_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Keys per DeleteObjects request of [`TestS3::store`] (S3 allows 1,000).
pub const TEST_DELETE_BATCH: usize = 2;

pub struct TestS3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// Key prefix this test owns, without a trailing `/`: `t` with a bucket of its own,
    /// `t-<random>` in a shared external bucket.
    pub prefix: String,
    helper: aws_sdk_s3::Client,
    /// The store's credentials: s3s-fs lets only an upload's initiator abort it.
    as_store: aws_sdk_s3::Client,
    /// `None` for an external server.
    local: Option<Local>,
}

struct Local {
    faults: Arc<Faults>,
    lock: Arc<LockEmulation>,
    /// s3s-fs's root, where `.upload-<id>.json` marks an open multipart upload.
    root: PathBuf,
    /// The accept loop; replaced by [`TestS3::restart`].
    server: Mutex<tokio::task::JoinHandle<()>>,
    /// What a restart serves again on the same address.
    service: S3Service,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(local) = &self.local {
            // Aborting the accept loop drops its JoinSet, which aborts every connection.
            local.server.lock().unwrap().abort();
        }
    }
}

impl TestS3 {
    /// An in-process server with a bucket, strict checksum checking on; or the external
    /// server named by `GIT_OFFSITE_TEST_S3_*`.
    pub async fn start() -> TestS3 {
        match std::env::var("GIT_OFFSITE_TEST_S3_ENDPOINT") {
            Ok(endpoint) if !endpoint.is_empty() => Self::external(endpoint).await,
            _ => Self::in_process().await,
        }
    }

    async fn in_process() -> TestS3 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let bucket = "git-offsite-test".to_string();
        std::fs::create_dir(root.join(&bucket)).unwrap();
        let lock = Arc::new(LockEmulation::default());
        let tracked = Tracked {
            fs: s3s_fs::FileSystem::new(&root).unwrap(),
            root: root.clone(),
            uploads: Mutex::default(),
            lock: lock.clone(),
        };
        let service = {
            let mut auth = s3s::auth::SimpleAuth::new();
            auth.register(ACCESS_KEY.into(), SECRET_KEY.into());
            auth.register(HELPER_ACCESS_KEY.into(), HELPER_SECRET_KEY.into());
            let mut b = s3s::service::S3ServiceBuilder::new(tracked);
            b.set_auth(auth);
            b.build()
        };
        let faults = Arc::new(Faults::strict());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoint = format!("http://{addr}");
        let server = Mutex::new(tokio::spawn(serve(
            listener,
            faults.clone(),
            service.clone(),
        )));
        TestS3 {
            helper: client(&endpoint, HELPER_ACCESS_KEY, HELPER_SECRET_KEY, REGION),
            as_store: client(&endpoint, ACCESS_KEY, SECRET_KEY, REGION),
            endpoint,
            bucket,
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            region: REGION.into(),
            prefix: "t".into(),
            local: Some(Local {
                faults,
                lock,
                root,
                server,
                service,
                addr,
                _dir: dir,
            }),
        }
    }

    async fn external(endpoint: String) -> TestS3 {
        let var = |name: &str| {
            std::env::var(format!("GIT_OFFSITE_TEST_S3_{name}"))
                .ok()
                .filter(|v| !v.is_empty())
        };
        let access_key = var("ACCESS_KEY").expect("GIT_OFFSITE_TEST_S3_ACCESS_KEY");
        let secret_key = var("SECRET_KEY").expect("GIT_OFFSITE_TEST_S3_SECRET_KEY");
        let region = var("REGION").unwrap_or_else(|| REGION.into());
        let helper = client(&endpoint, &access_key, &secret_key, &region);
        let (bucket, prefix) = match var("BUCKET") {
            Some(b) => (b, unique("t-")),
            None => {
                let b = unique("git-offsite-test-");
                helper
                    .create_bucket()
                    .bucket(&b)
                    .send()
                    .await
                    .expect("creating a test bucket");
                (b, "t".into())
            }
        };
        TestS3 {
            endpoint,
            bucket,
            access_key,
            secret_key,
            region,
            prefix,
            as_store: helper.clone(),
            helper,
            local: None,
        }
    }

    /// Explicit static credentials, endpoint and region, with fast retries; nothing from the
    /// process environment (tests run in parallel, and env vars are process-global).
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config(
            &self.endpoint,
            &self.access_key,
            &self.secret_key,
            &self.region,
        )
    }

    /// A store on this server's bucket with [`TEST_PART_SIZE`] parts.
    pub fn store(&self) -> S3Store {
        self.store_with(|_| {}, CancellationToken::new())
    }

    pub fn store_with(
        &self,
        tweak: impl FnOnce(&mut S3Options),
        cancel: CancellationToken,
    ) -> S3Store {
        let mut opts = S3Options {
            part_size: TEST_PART_SIZE,
            // So the conformance suite's 12 MiB copy goes through UploadPartCopy.
            max_single_copy: TEST_PART_SIZE,
            // So a handful of keys takes several DeleteObjects requests.
            delete_batch: TEST_DELETE_BATCH,
            ..S3Options::new(self.bucket.clone())
        };
        tweak(&mut opts);
        S3Store::from_sdk_config(&self.sdk_config(), opts, cancel).unwrap()
    }

    /// `AWS_*` variables for running the binary against this server as a child process.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_key),
            ("AWS_REGION", &self.region),
            ("AWS_ENDPOINT_URL_S3", &self.endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn can_inject_faults(&self) -> bool {
        self.local.is_some()
    }

    /// Multipart uploads started and neither completed nor aborted (under [`Self::prefix`]
    /// on an external server).
    pub async fn open_multipart_uploads(&self) -> usize {
        if let Some(local) = &self.local {
            return std::fs::read_dir(&local.root)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(".upload-") && n.ends_with(".json"))
                .count();
        }
        let out = self
            .helper
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .send()
            .await
            .expect("ListMultipartUploads");
        out.uploads().len()
    }

    fn lock(&self) -> &LockEmulation {
        &self
            .local
            .as_ref()
            .expect("Object Lock emulation needs the in-process S3 server")
            .lock
    }

    /// Makes this bucket an Object Lock bucket (so versioned), as if created with
    /// `--object-lock-enabled-for-bucket`.
    pub fn enable_object_lock(&self) {
        self.lock().enable(&self.bucket);
    }

    /// Makes this an Object Lock bucket whose default retention (GOVERNANCE, `days`) applies to
    /// every object written without lock headers.
    pub fn enable_object_lock_with_default_retention(&self, days: i32) {
        self.lock().set_default_retention(&self.bucket, days);
    }

    /// Versions hidden behind a delete marker (`bucket/key`): still stored, no longer listed.
    pub fn delete_marked(&self) -> Vec<String> {
        self.lock().hidden()
    }

    /// Moves the retain-until date of `key` to `until` (seconds since the epoch).
    pub fn set_retention(&self, key: &str, until: i64) {
        self.lock().set_retention(&self.bucket, key, until);
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        let out = self
            .helper
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GetObject {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// Writes `key` directly (not counted, no faults), with user metadata: for tests that
    /// damage a stored object on purpose.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, metadata: &[(&str, &str)]) {
        let mut req = self
            .helper
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes));
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        req.send().await.unwrap_or_else(|e| {
            panic!(
                "PutObject {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    }

    /// User metadata (`x-amz-meta-*`) of `key`.
    pub async fn metadata(&self, key: &str) -> HashMap<String, String> {
        let out = self
            .helper
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "HeadObject {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        out.metadata().cloned().unwrap_or_default()
    }

    /// Every key in the bucket (under [`Self::prefix`] in a shared bucket), sorted.
    pub async fn keys(&self) -> Vec<String> {
        let shared = self.local.is_none() && self.prefix != "t";
        let mut pages = self
            .helper
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(shared.then(|| format!("{}/", self.prefix)))
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            keys.extend(
                page.expect("ListObjectsV2")
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        keys
    }

    /// Starts a multipart upload of `key` with one part and walks away, as a crashed run would.
    pub async fn leave_incomplete_upload(&self, key: &str) {
        let created = self
            .as_store
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("CreateMultipartUpload");
        self.as_store
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(created.upload_id().unwrap())
            .part_number(1)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"partial"))
            .send()
            .await
            .expect("UploadPart");
    }
}

fn sdk_config(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access_key, secret_key, None, None, "test",
        )))
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(50)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .build()
}

/// The test's own client: path style and no optional checksums, like the store.
fn client(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> aws_sdk_s3::Client {
    let conf =
        aws_sdk_s3::config::Builder::from(&sdk_config(endpoint, access_key, secret_key, region))
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = (
        SystemTime::now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
    );
    format!(
        "{prefix}{:016x}",
        std::collections::hash_map::RandomState::new().hash_one(seed)
    )
}

// ---- s3s-fs plus ListMultipartUploads ------------------------------------------------------

struct Tracked {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    uploads: Mutex<BTreeMap<String, OpenUpload>>,
    lock: Arc<LockEmulation>,
}

struct OpenUpload {
    bucket: String,
    key: String,
    initiated: SystemTime,
}

impl Tracked {
    /// s3s-fs serves a directory as an object of its size; S3 has no such thing.
    fn is_dir(&self, bucket: &str, key: &str) -> bool {
        self.root.join(bucket).join(key).is_dir()
    }

    fn is_open(&self, upload_id: &str) -> bool {
        self.root.join(format!(".upload-{upload_id}.json")).exists()
    }
}

/// Whether an upload input carries a checksum S3 accepts for Object Lock (PutObjectInput and
/// UploadPartInput have the same fields but no common trait).
macro_rules! has_checksum {
    ($i:expr) => {
        [
            $i.content_md5.as_deref(),
            $i.checksum_crc32.as_deref(),
            $i.checksum_crc32c.as_deref(),
            $i.checksum_sha1.as_deref(),
            $i.checksum_sha256.as_deref(),
            $i.checksum_crc64nvme.as_deref(),
        ]
        .iter()
        .any(Option::is_some)
    };
}

/// The retention a write input asks for (PutObject, CopyObject, CreateMultipartUpload).
macro_rules! requested_retention {
    ($lock:expr, $i:expr) => {
        $lock.requested(
            &$i.bucket,
            $i.object_lock_mode.as_ref(),
            $i.object_lock_retain_until_date.as_ref(),
        )
    };
}

/// Generates the `S3` impl: plain delegation for the listed operations plus the custom ones.
/// A macro around the whole impl, because `#[async_trait]` must see the expanded methods.
macro_rules! s3_impl {
    (delegate { $($op:ident($input:ident) -> $output:ident;)* } custom { $($custom:tt)* }) => {
        #[async_trait::async_trait]
        impl S3 for Tracked {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$op(req).await
                }
            )*
            $($custom)*
        }
    };
}

s3_impl! {
    delegate {
        create_bucket(CreateBucketInput) -> CreateBucketOutput;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        list_buckets(ListBucketsInput) -> ListBucketsOutput;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
        list_objects(ListObjectsInput) -> ListObjectsOutput;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
        list_parts(ListPartsInput) -> ListPartsOutput;
    }
    custom {
        async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
            if self.is_dir(&req.input.bucket, &req.input.key) {
                return Err(s3_error!(NoSuchKey));
            }
            self.fs.get_object(req).await
        }

        async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
            if self.is_dir(&req.input.bucket, &req.input.key) {
                return Err(s3_error!(NoSuchKey));
            }
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let mut resp = self.fs.head_object(req).await?;
            self.lock.annotate(&bucket, &key, &mut resp.output);
            Ok(resp)
        }

        async fn get_object_lock_configuration(
            &self,
            req: S3Request<GetObjectLockConfigurationInput>,
        ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
            self.lock.configuration(&req.input.bucket).map(S3Response::new)
        }

        async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
            let i = &req.input;
            let retention = requested_retention!(self.lock, i)?;
            let checksum = has_checksum!(i);
            LockEmulation::require_checksum("Put Object", &retention, checksum)?;
            let (bucket, key) = (i.bucket.clone(), i.key.clone());
            let mut resp = self.fs.put_object(req).await?;
            resp.output.version_id = self.lock.written(&bucket, &key, retention);
            Ok(resp)
        }

        async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
            let i = &req.input;
            let retention = requested_retention!(self.lock, i)?;
            let (bucket, key) = (i.bucket.clone(), i.key.clone());
            let mut resp = self.fs.copy_object(req).await?;
            resp.output.version_id = self.lock.written(&bucket, &key, retention);
            Ok(resp)
        }

        async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
            let i = &req.input;
            let retention = self.lock.upload_retention(&i.upload_id);
            let checksum = has_checksum!(i);
            LockEmulation::require_checksum("Upload Part", &retention, checksum)?;
            // Content-MD5 is checked in front of s3s-fs (`digest.rs`).
            self.fs.upload_part(req).await
        }

        async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
            let i = &req.input;
            if !self.lock.is_enabled(&i.bucket) {
                return self.fs.delete_object(req).await;
            }
            let marker = self.lock.delete(
                &self.root,
                &i.bucket,
                &i.key,
                i.version_id.as_deref(),
                i.bypass_governance_retention == Some(true),
            )?;
            Ok(S3Response::new(DeleteObjectOutput {
                delete_marker: Some(marker),
                version_id: i.version_id.clone(),
                ..Default::default()
            }))
        }

        async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
            let i = &req.input;
            if !self.lock.is_enabled(&i.bucket) {
                return self.fs.delete_objects(req).await;
            }
            let (mut deleted, mut errors) = (Vec::new(), Vec::new());
            for o in &i.delete.objects {
                match self.lock.delete(
                    &self.root,
                    &i.bucket,
                    &o.key,
                    o.version_id.as_deref(),
                    i.bypass_governance_retention == Some(true),
                ) {
                    Ok(marker) => deleted.push(DeletedObject {
                        key: Some(o.key.clone()),
                        version_id: o.version_id.clone(),
                        delete_marker: Some(marker),
                        ..Default::default()
                    }),
                    Err(e) => errors.push(Error {
                        key: Some(o.key.clone()),
                        version_id: o.version_id.clone(),
                        code: Some(e.code().as_str().to_string()),
                        message: e.message().map(str::to_owned),
                    }),
                }
            }
            Ok(S3Response::new(DeleteObjectsOutput {
                deleted: Some(deleted),
                errors: Some(errors),
                ..Default::default()
            }))
        }

        async fn create_multipart_upload(
            &self,
            req: S3Request<CreateMultipartUploadInput>,
        ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let retention = requested_retention!(self.lock, req.input)?;
            let resp = self.fs.create_multipart_upload(req).await?;
            if let Some(id) = &resp.output.upload_id {
                self.lock.start_upload(id, retention);
                let upload = OpenUpload { bucket, key, initiated: SystemTime::now() };
                self.uploads.lock().unwrap().insert(id.clone(), upload);
            }
            Ok(resp)
        }

        async fn complete_multipart_upload(
            &self,
            req: S3Request<CompleteMultipartUploadInput>,
        ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
            let id = req.input.upload_id.clone();
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let mut resp = self.fs.complete_multipart_upload(req).await?;
            self.uploads.lock().unwrap().remove(&id);
            let retention = self.lock.finish_upload(&id);
            resp.output.version_id = self.lock.written(&bucket, &key, retention);
            Ok(resp)
        }

        async fn abort_multipart_upload(
            &self,
            req: S3Request<AbortMultipartUploadInput>,
        ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
            let id = req.input.upload_id.clone();
            if !self.is_open(&id) {
                return Err(s3_error!(NoSuchUpload));
            }
            let resp = self.fs.abort_multipart_upload(req).await?;
            self.uploads.lock().unwrap().remove(&id);
            Ok(resp)
        }

        async fn list_multipart_uploads(
            &self,
            req: S3Request<ListMultipartUploadsInput>,
        ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
            let input = req.input;
            let prefix = input.prefix.clone().unwrap_or_default();
            let max = usize::try_from(input.max_uploads.unwrap_or(1000).max(1)).unwrap_or(1000);
            let mut open: Vec<(String, String, SystemTime)> = self
                .uploads
                .lock()
                .unwrap()
                .iter()
                .filter(|(id, u)| u.bucket == input.bucket && u.key.starts_with(&prefix) && self.is_open(id))
                .map(|(id, u)| (u.key.clone(), id.clone(), u.initiated))
                .collect();
            open.sort();
            if let Some(km) = &input.key_marker {
                open.retain(|(k, id, _)| match &input.upload_id_marker {
                    Some(im) => (k, id) > (km, im),
                    None => k > km,
                });
            }
            let truncated = open.len() > max;
            open.truncate(max);
            let (next_key, next_id) = match open.last() {
                Some((k, id, _)) if truncated => (Some(k.clone()), Some(id.clone())),
                _ => (None, None),
            };
            let uploads = open
                .into_iter()
                .map(|(key, id, initiated)| MultipartUpload {
                    key: Some(key),
                    upload_id: Some(id),
                    initiated: Some(Timestamp::from(initiated)),
                    ..Default::default()
                })
                .collect();
            Ok(S3Response::new(ListMultipartUploadsOutput {
                bucket: Some(input.bucket),
                prefix: input.prefix,
                key_marker: input.key_marker,
                upload_id_marker: input.upload_id_marker,
                max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
                is_truncated: Some(truncated),
                next_key_marker: next_key,
                next_upload_id_marker: next_id,
                uploads: Some(uploads),
                ..Default::default()
            }))
        }
    }
}
