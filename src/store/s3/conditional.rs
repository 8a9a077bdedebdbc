//! Conditional writes (NOTES §10): PutObject with `If-None-Match: *` (create only) or
//! `If-Match: <ETag>` (compare-and-swap), the primitives of the run lock.
//!
//! A failed precondition is an answer, not an error: 412 PreconditionFailed, and for If-Match
//! also 404 NoSuchKey (AWS; Ceph answers 412), become `Ok(None)`. 409
//! ConditionalRequestConflict means a concurrent write to the key was in progress; AWS says to
//! retry, so we retry once and then report the key as taken. Stores that ignore the headers
//! silently overwrite; the lock probes for that (see `backup::lock`), not this file.
//!
//! Like every other write they carry the run's encryption and storage class, but never Object
//! Lock retention (see [`S3Store::put_conditional`]), and a `Content-MD5` as every upload does.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::digest::content_md5;
use super::write::{WriteOptions, Writes};
use super::{HttpResponse, S3Store, metadata, to_i64};
use crate::store::{Key, PutOptions, StoreError, Version, Versioned};

/// How a conditional PutObject ended.
enum Outcome {
    Written(Version),
    Refused,
    Conflict,
}

impl S3Store {
    pub(super) async fn put_conditional(
        &self,
        key: &Key,
        data: Bytes,
        opts: &PutOptions,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError> {
        for attempt in 0..2 {
            match self.put_once(key, data.clone(), opts, expected).await? {
                Outcome::Written(v) => return Ok(Some(v)),
                Outcome::Refused => return Ok(None),
                Outcome::Conflict if attempt == 0 => {
                    tracing::debug!(key = %key, "conditional write conflicted with another; retrying once");
                }
                Outcome::Conflict => {}
            }
        }
        Ok(None)
    }

    async fn put_once(
        &self,
        key: &Key,
        data: Bytes,
        opts: &PutOptions,
        expected: Option<&Version>,
    ) -> Result<Outcome, StoreError> {
        let len = data.len() as u64;
        // A lock is rewritten every minute and deleted at the end: under retention every
        // rewrite would be a version kept for days, and the delete would be refused.
        let without_retention = WriteOptions {
            object_lock: None,
            ..self.writes.clone()
        };
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(to_i64(len))
            .content_md5(content_md5(&data))
            .with_writes(&without_retention)
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata(opts))
            .body(ByteStream::from(data));
        request = match expected {
            None => request.if_none_match("*"),
            Some(v) => request.if_match(&v.0),
        };
        match request.send().await {
            Ok(out) => Ok(Outcome::Written(Version(
                out.e_tag().unwrap_or_default().to_string(),
            ))),
            Err(e) => match precondition(&e, expected.is_some()) {
                Some(outcome) => Ok(outcome),
                None => Err(self.error("PutObject", Some(key.as_str()), e)),
            },
        }
    }

    pub(super) async fn get_with_etag(&self, key: &Key) -> Result<Option<Versioned>, StoreError> {
        let Some(out) = self.get_object_if_present(key).await? else {
            return Ok(None);
        };
        let version = Version(out.e_tag().unwrap_or_default().to_string());
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Request {
                op: "GetObject",
                key: self.target(Some(key.as_str())),
                message: e.to_string(),
            })?
            .into_bytes();
        Ok(Some(Versioned { data, version }))
    }
}

/// The precondition answers of a conditional PutObject; `None` for a real failure.
fn precondition<E: ProvideErrorMetadata>(
    e: &SdkError<E, HttpResponse>,
    if_match: bool,
) -> Option<Outcome> {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.as_service_error().and_then(|s| s.code());
    match (status, code) {
        (Some(412), _) | (_, Some("PreconditionFailed")) => Some(Outcome::Refused),
        (Some(409), _) | (_, Some("ConditionalRequestConflict")) => Some(Outcome::Conflict),
        (Some(404), _) | (_, Some("NoSuchKey")) if if_match => Some(Outcome::Refused),
        _ => None,
    }
}
