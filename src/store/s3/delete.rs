//! Batched deletes: DeleteObjects, at most [`MAX_DELETE_BATCH`] keys a request, in quiet mode
//! so the answer lists only the keys that were refused.
//!
//! DeleteObjects is one of the few operations S3 insists carry a body checksum, so even with
//! `RequestChecksumCalculation::WhenRequired` the SDK adds `x-amz-checksum-crc32`, a header
//! R2, B2 and older MinIO/Ceph refuse (NOTES §2, GH aws/aws-sdk-js-v3#6819). The checksum
//! they all accept, and AWS too, is the original one: `Content-MD5`. So each request is
//! rewritten before it is signed: the CRC32 header out, `Content-MD5` of the body in. The
//! interceptor that added the CRC32 belongs to the operation and runs before ours (the
//! operation's interceptors come before the ones `customize()` adds).

use super::S3Store;
use super::digest::content_md5;
use crate::store::{DeleteFailure, Key, MAX_DELETE_BATCH, StoreError};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

impl S3Store {
    pub(super) async fn delete_batches(
        &self,
        keys: &[Key],
    ) -> Result<Vec<DeleteFailure>, StoreError> {
        let mut failures = Vec::new();
        for (n, batch) in keys.chunks(self.delete_batch).enumerate() {
            match self.delete_batch(batch).await {
                Ok(refused) => failures.extend(refused),
                // Nothing could be removed at all: the store is unreachable or refuses us.
                Err(e) if n == 0 => return Err(e),
                Err(e) => {
                    let message = e.to_string();
                    failures.extend(batch.iter().map(|key| DeleteFailure {
                        key: key.clone(),
                        error: StoreError::Request {
                            op: "DeleteObjects",
                            key: self.target(Some(key.as_str())),
                            message: message.clone(),
                        },
                    }));
                }
            }
        }
        Ok(failures)
    }

    /// One DeleteObjects request; `Err` when the request as a whole failed.
    async fn delete_batch(&self, batch: &[Key]) -> Result<Vec<DeleteFailure>, StoreError> {
        debug_assert!(batch.len() <= MAX_DELETE_BATCH);
        if self.cancel.is_cancelled() {
            return Err(StoreError::Cancelled {
                key: batch.first().map(Key::to_string).unwrap_or_default(),
            });
        }
        let objects = batch
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k.as_str()).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.build_error(batch, e))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| self.build_error(batch, e))?;
        let first = batch.first().map(Key::as_str);
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .customize()
            .mutate_request(content_md5_instead_of_crc32)
            .send()
            .await
            .map_err(|e| self.error("DeleteObjects", first, e))?;
        Ok(out
            .errors()
            .iter()
            .filter_map(|e| {
                let key = Key::new(e.key()?.to_string()).ok()?;
                let (code, message) = (e.code().unwrap_or(""), e.message().unwrap_or(""));
                // A key deleted meanwhile (by a concurrent prune) is gone, as wanted.
                if code == "NoSuchKey" {
                    return None;
                }
                let error = key_error(&self.target(Some(key.as_str())), code, message);
                Some(DeleteFailure { key, error })
            })
            .collect())
    }

    fn build_error(&self, batch: &[Key], e: impl std::fmt::Display) -> StoreError {
        StoreError::Request {
            op: "DeleteObjects",
            key: self.target(batch.first().map(Key::as_str)),
            message: e.to_string(),
        }
    }
}

/// A per-key refusal in a DeleteObjects answer. Object Lock refusals come back as
/// `AccessDenied` naming the lock; they say nothing about until when.
fn key_error(target: &str, code: &str, message: &str) -> StoreError {
    let text = if message.is_empty() {
        code.to_string()
    } else {
        format!("{code}: {message}")
    };
    if message.to_ascii_lowercase().contains("object lock") {
        return StoreError::Retained {
            key: target.to_string(),
            until: None,
        };
    }
    match code {
        "AccessDenied" => StoreError::AccessDenied {
            target: target.to_string(),
            message: format!("DeleteObjects: {text}"),
        },
        _ => StoreError::Request {
            op: "DeleteObjects",
            key: target.to_string(),
            message: text,
        },
    }
}

fn content_md5_instead_of_crc32(req: &mut aws_sdk_s3::config::http::HttpRequest) {
    let Some(body) = req.body().bytes() else {
        return;
    };
    let md5 = content_md5(body);
    let headers = req.headers_mut();
    headers.remove("x-amz-checksum-crc32");
    headers.remove("x-amz-sdk-checksum-algorithm");
    headers.insert("content-md5", md5);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_refusals_read_as_retained() {
        let e = key_error(
            "s3://b/k",
            "AccessDenied",
            "Access Denied because object protected by object lock.",
        );
        assert!(
            matches!(e, StoreError::Retained { until: None, .. }),
            "{e:?}"
        );
        let e = key_error("s3://b/k", "AccessDenied", "Access Denied");
        assert!(matches!(e, StoreError::AccessDenied { .. }), "{e:?}");
        let e = key_error("s3://b/k", "InternalError", "");
        assert!(e.to_string().contains("InternalError"), "{e}");
    }
}
