//! Multipart uploads: how a file is cut into parts, sending them with bounded concurrency,
//! and making sure every upload ends completed or aborted (S3 bills the parts of an open
//! upload until someone aborts it), plus the sweep for uploads a crashed run left open.
//!
//! A failure that outlasts the SDK's retries, such as a store restarting, usually also fails
//! the abort that follows at once. Such an upload is remembered and its abort tried again
//! before the next multipart upload starts and after each one completes: once the store is
//! back it goes, instead of staying open (and billed) until the next run's sweep. Each try is
//! one more request under the client's retry policy, never a retry loop of its own.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

use super::body::source_body;
use super::digest::source_md5;
use super::errors::chain;
use super::write::Writes;
use super::{
    HttpResponse, MAX_PART_SIZE, MAX_PARTS, MIB, MIN_PART_SIZE, S3Store, metadata, to_i64,
};
use crate::store::{Key, PutOptions, Source, StoreError};

impl S3Store {
    pub(super) async fn put_multipart(
        &self,
        key: &Key,
        source: &Source,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        let plan = PartPlan::new(source.size(), self.part_size).map_err(|message| {
            StoreError::Misconfigured {
                target: self.target(Some(key.as_str())),
                message,
            }
        })?;
        self.multipart_upload(
            key,
            opts.content_type.clone(),
            metadata(opts),
            |upload_id| async move {
                futures::stream::iter(plan.parts())
                    .map(|part| self.upload_part(key, source, &upload_id, part, opts))
                    .buffer_unordered(self.parts_in_flight)
                    .try_collect()
                    .await
            },
        )
        .await
    }

    /// One multipart upload from start to end: create it, let `parts` send every part (given
    /// the upload id), complete it. From creation on it ends completed or aborted: errors and
    /// cancellation abort here (awaited, so the caller can rely on it), and a guard aborts from
    /// a spawned task if this future is dropped. Shared by uploads and server-side copies.
    pub(super) async fn multipart_upload<F, Fut>(
        &self,
        key: &Key,
        content_type: Option<String>,
        metadata: Option<HashMap<String, String>>,
        parts: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Vec<CompletedPart>, StoreError>>,
    {
        self.abort_unaborted().await;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_content_type(content_type)
            .set_metadata(metadata)
            .with_writes(&self.writes)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", Some(key.as_str()), e))?;
        let upload_id = created.upload_id().ok_or_else(|| StoreError::Request {
            op: "CreateMultipartUpload",
            key: self.target(Some(key.as_str())),
            message: "the response carried no upload id".into(),
        })?;
        let mut guard = AbortOnDrop::new(self, key.as_str(), upload_id);
        let result = self
            .or_cancelled(key, async {
                let mut parts = parts(upload_id.to_string()).await?;
                parts.sort_by_key(|p| p.part_number());
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key.as_str())
                    .upload_id(upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.error("CompleteMultipartUpload", Some(key.as_str()), e))?;
                Ok(())
            })
            .await;
        if result.is_err()
            && let Err(e) = self.abort(key.as_str(), upload_id).await
        {
            tracing::warn!(key = %key, error = %e, "could not abort the failed multipart upload; trying again after the next upload, else the next run sweeps it");
            (self.unaborted.lock().unwrap()).push((key.to_string(), upload_id.to_string()));
        }
        // Disarmed only now: if this future is dropped while the abort above is in flight, the
        // guard still sends one.
        guard.disarm();
        if result.is_ok() {
            self.abort_unaborted().await;
        }
        result
    }

    /// Tries once more to abort the uploads whose abort failed; keeps those that fail again.
    async fn abort_unaborted(&self) {
        let pending = std::mem::take(&mut *self.unaborted.lock().unwrap());
        for (key, id) in pending {
            match self.abort(&key, &id).await {
                Ok(()) => {
                    tracing::info!(key = %key, upload_id = %id, "aborted a failed multipart upload")
                }
                Err(e) => {
                    tracing::debug!(key = %key, error = %e, "still cannot abort the failed multipart upload");
                    self.unaborted.lock().unwrap().push((key, id));
                }
            }
        }
    }

    async fn upload_part(
        &self,
        key: &Key,
        source: &Source,
        upload_id: &str,
        part: Part,
        opts: &PutOptions,
    ) -> Result<CompletedPart, StoreError> {
        let md5 = source_md5(source, part.offset, part.len).await?;
        let body = source_body(source, part.offset, part.len).await?;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(part.number)
            .content_length(to_i64(part.len))
            .content_md5(md5)
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
    pub(super) async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match abort_upload(&self.client, &self.bucket, key, upload_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(self.error("AbortMultipartUpload", Some(key), e)),
        }
    }

    pub(super) async fn sweep(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<usize, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
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
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                // An upload without a start time might be a concurrent run's: leave it.
                let started = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok());
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

async fn abort_upload(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<
    (),
    SdkError<
        aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadError,
        HttpResponse,
    >,
> {
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
pub(super) struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortOnDrop {
    pub(super) fn new(store: &S3Store, key: &str, upload_id: &str) -> Self {
        Self {
            client: store.client.clone(),
            bucket: store.bucket.clone(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            armed: true,
        }
    }

    /// The upload ended (completed, or aborted by an awaited call).
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
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

/// One part of a multipart upload: S3 part numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Part {
    pub(super) number: i32,
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// How a file of `size` bytes is cut: equal parts (R2 requires that) except a shorter last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartPlan {
    size: u64,
    part_size: u64,
    count: u64,
}

impl PartPlan {
    /// `max(wanted, 5 MiB, ceil(size / 10,000))` rounded up to a whole MiB, so the upload never
    /// needs more than 10,000 parts.
    pub(super) fn new(size: u64, wanted: u64) -> Result<Self, String> {
        let part_size = wanted
            .max(MIN_PART_SIZE)
            .max(size.div_ceil(MAX_PARTS))
            .div_ceil(MIB)
            * MIB;
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

    pub(super) fn parts(&self) -> impl Iterator<Item = Part> + use<> {
        let Self {
            size,
            part_size,
            count,
        } = *self;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_honours_the_minimum_and_rounds_to_a_mib() {
        assert_eq!(PartPlan::new(100 * MIB, MIB).unwrap().part_size, 5 * MIB);
        assert_eq!(
            PartPlan::new(100 * MIB, 16 * MIB).unwrap().part_size,
            16 * MIB
        );
        // 8 MB (decimal) is not a whole MiB.
        assert_eq!(
            PartPlan::new(100 * MIB, 8_000_000).unwrap().part_size,
            8 * MIB
        );
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
                Part {
                    number: 1,
                    offset: 0,
                    len: 5 * MIB
                },
                Part {
                    number: 2,
                    offset: 5 * MIB,
                    len: 5 * MIB
                },
                Part {
                    number: 3,
                    offset: 10 * MIB,
                    len: 2 * MIB + 3
                },
            ]
        );
        let plan = PartPlan::new(10 * MIB, 5 * MIB).unwrap();
        assert_eq!(
            plan.parts().map(|p| p.len).collect::<Vec<_>>(),
            [5 * MIB, 5 * MIB]
        );
    }
}
