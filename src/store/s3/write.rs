//! What every write request carries besides the bytes: Object Lock retention, server-side
//! encryption and the storage class, the same on a single PutObject, a multipart upload's
//! CreateMultipartUpload and a CopyObject (copies do not inherit any of them from the
//! source), plus the one checksum S3 insists on for uploads under Object Lock.
//!
//! That checksum is `Content-MD5`, set by us on exactly the PutObjects and UploadParts of an
//! object under Object Lock (asked for, or a bucket that has it, where a default retention makes
//! S3 demand it even without lock headers) and nowhere else: the client stays at `RequestChecksumCalculation::WhenRequired`
//! so the S3-compatible stores that reject flexible checksums keep working, and MD5 per part
//! means CreateMultipartUpload declares no checksum algorithm, which would oblige Complete to
//! list every part's checksum. The hash needs the bytes before the request, so a part is read
//! once to hash it (1 MiB at a time) and again to send it.

use std::io::{Read, Seek, SeekFrom};

use aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::types::{ObjectLockMode, ServerSideEncryption, StorageClass};
use base64::Engine;
use md5::{Digest, Md5};

use super::S3Store;
use crate::store::{Source, StoreError};

/// How long and how strictly every written object is retained (S3 Object Lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// Retention from the moment of each write; at least 1.
    pub days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still shorten or lift it.
    Governance,
    /// Nobody, the root account included, can delete the object before the date.
    Compliance,
}

/// Server-side encryption requested on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// `AES256`: keys managed by S3 (SSE-S3).
    S3,
    /// `aws:kms`, with the bucket's or account's default key unless one is named.
    Kms { key_id: Option<String> },
}

/// The per-object settings of every write; the default sends none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    pub object_lock: Option<ObjectLock>,
    pub sse: Option<Sse>,
    /// As S3 spells it (`STANDARD_IA`, `GLACIER_IR`, …); S3-compatible stores may have their own.
    pub storage_class: Option<String>,
}

const SECS_PER_DAY: i64 = 24 * 60 * 60;

impl WriteOptions {
    /// `x-amz-object-lock-retain-until-date` for an object written now.
    fn retain_until(&self) -> Option<aws_smithy_types::DateTime> {
        let lock = self.object_lock?;
        let until = chrono::Utc::now().timestamp() + i64::from(lock.days) * SECS_PER_DAY;
        Some(aws_smithy_types::DateTime::from_secs(until))
    }

    fn lock_mode(&self) -> Option<ObjectLockMode> {
        self.object_lock.map(|l| match l.mode {
            LockMode::Governance => ObjectLockMode::Governance,
            LockMode::Compliance => ObjectLockMode::Compliance,
        })
    }

    fn encryption(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.sse {
            None => (None, None),
            Some(Sse::S3) => (Some(ServerSideEncryption::Aes256), None),
            Some(Sse::Kms { key_id }) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
        }
    }

    fn storage_class(&self) -> Option<StorageClass> {
        self.storage_class.as_deref().map(StorageClass::from)
    }
}

impl S3Store {
    /// Whether uploads need a `Content-MD5`: with Object Lock asked for, or in a bucket that
    /// has it (found by `check`), where a default retention may apply to every upload and S3
    /// then demands a checksum even without lock headers.
    fn needs_md5(&self) -> bool {
        self.writes.object_lock.is_some() || self.lock_enabled.get() == Some(&true)
    }

    /// The `Content-MD5` of `data` when this upload needs one.
    pub(super) fn md5_of_bytes(&self, data: &[u8]) -> Option<String> {
        self.needs_md5().then(|| content_md5(data))
    }

    /// The `Content-MD5` of the `len` bytes at `offset` of `source` when this upload needs one.
    pub(super) async fn md5_of_source(
        &self,
        source: &Source,
        offset: u64,
        len: u64,
    ) -> Result<Option<String>, StoreError> {
        if !self.needs_md5() {
            return Ok(None);
        }
        md5_of_source(source, offset, len).await.map(Some)
    }
}

/// The `Content-MD5` of the `len` bytes at `offset` of `source`, read from disk off the async
/// threads with a 1 MiB buffer.
async fn md5_of_source(source: &Source, offset: u64, len: u64) -> Result<String, StoreError> {
    let (head, file_offset, file_len) = source.slice(offset, len);
    let path = source.path.clone();
    let digest = tokio::task::spawn_blocking(move || {
        let mut md5 = Md5::new();
        md5.update(&head);
        hash_file_range(&mut md5, &path, file_offset, file_len).map(|()| md5.finalize())
    })
    .await
    .map_err(|e| StoreError::Io {
        context: "cannot hash",
        path: source.path.display().to_string(),
        source: std::io::Error::other(e),
    })?
    .map_err(|e| StoreError::Io {
        context: "cannot read",
        path: source.path.display().to_string(),
        source: e,
    })?;
    Ok(encode(digest.as_slice()))
}

/// The `Content-MD5` header value of `data`, whether or not the upload needs one (the run
/// lock's small conditional writes always send it: cheap, and accepted everywhere).
pub(super) fn content_md5(data: &[u8]) -> String {
    encode(Md5::digest(data).as_slice())
}

fn encode(digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn hash_file_range(
    md5: &mut Md5,
    path: &std::path::Path,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut rest = file.take(len);
    let mut buf = vec![0u8; 1024 * 1024];
    let mut seen = 0u64;
    loop {
        let n = rest.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        seen += n as u64;
    }
    if seen < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the file ended after {} of the expected {} bytes",
                offset + seen,
                offset + len
            ),
        ));
    }
    Ok(())
}

/// Sets [`WriteOptions`] on a request that creates an object.
pub(super) trait Writes: Sized {
    fn with_writes(self, w: &WriteOptions) -> Self;
}

/// The three builders have the same setters but no common trait.
macro_rules! impl_writes {
    ($($builder:ty),*) => {$(
        impl Writes for $builder {
            fn with_writes(self, w: &WriteOptions) -> Self {
                let (sse, kms_key) = w.encryption();
                self.set_object_lock_mode(w.lock_mode())
                    .set_object_lock_retain_until_date(w.retain_until())
                    .set_server_side_encryption(sse)
                    .set_ssekms_key_id(kms_key)
                    .set_storage_class(w.storage_class())
            }
        }
    )*};
}

impl_writes!(
    PutObjectFluentBuilder,
    CreateMultipartUploadFluentBuilder,
    CopyObjectFluentBuilder
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_starts_at_the_write_and_lasts_the_days_asked_for() {
        let w = WriteOptions {
            object_lock: Some(ObjectLock {
                mode: LockMode::Compliance,
                days: 30,
            }),
            ..WriteOptions::default()
        };
        let until = w.retain_until().unwrap().secs();
        let expected = chrono::Utc::now().timestamp() + 30 * SECS_PER_DAY;
        assert!((until - expected).abs() <= 2, "{until} vs {expected}");
        assert_eq!(w.lock_mode(), Some(ObjectLockMode::Compliance));
        assert!(WriteOptions::default().retain_until().is_none());
    }

    #[test]
    fn md5_covers_exactly_the_slice_over_head_and_file_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"world!").unwrap();
        let source = Source {
            head: bytes::Bytes::from_static(b"hello "),
            path: path.clone(),
            len: 6,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let md5 = |b: &[u8]| encode(Md5::digest(b).as_slice());
        assert_eq!(
            rt.block_on(md5_of_source(&source, 0, 12)).unwrap(),
            md5(b"hello world!")
        );
        assert_eq!(
            rt.block_on(md5_of_source(&source, 3, 6)).unwrap(),
            md5(b"lo wor")
        );
        // RFC 1321: MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        let short = Source::file(&path, 10);
        let err = rt.block_on(md5_of_source(&short, 0, 10)).unwrap_err();
        assert!(err.to_string().contains("ended after 6"), "{err}");
    }
}
