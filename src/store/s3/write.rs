//! What every write request carries besides the bytes: Object Lock retention, server-side
//! encryption and the storage class, the same on a single PutObject, a multipart upload's
//! CreateMultipartUpload and a CopyObject (copies do not inherit any of them from the
//! source). The `Content-MD5` every upload carries, which Object Lock also demands, is
//! `digest.rs`'s.

use aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::types::{ObjectLockMode, ServerSideEncryption, StorageClass};

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
}
