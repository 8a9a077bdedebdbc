//! Server-side copies: the bytes never leave the store. CopyObject does objects up to 5 GiB
//! in one atomic request (keeping metadata and content type: `MetadataDirective` COPY);
//! above that S3 requires a multipart upload of `UploadPartCopy` ranges, which copies no
//! metadata, so it is read from the source and set on the new upload. Like any multipart
//! upload it ends completed or aborted.

use aws_sdk_s3::types::CompletedPart;
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::S3Store;
use super::multipart::{Part, PartPlan};
use super::write::Writes;
use crate::store::{Key, Store, StoreError};

/// S3's limit for CopyObject; larger objects are copied in parts.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// `x-amz-copy-source` is `bucket/key` with the key URL-encoded; `/` stays a separator.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl S3Store {
    fn copy_source(&self, key: &Key) -> String {
        format!(
            "{}/{}",
            self.bucket,
            utf8_percent_encode(key.as_str(), COPY_SOURCE)
        )
    }

    pub(super) async fn server_copy(&self, from: &Key, to: &Key) -> Result<(), StoreError> {
        let Some(source) = self.head(from).await? else {
            return Err(StoreError::NotFound {
                key: from.to_string(),
            });
        };
        if source.size <= self.max_single_copy {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(to.as_str())
                .copy_source(self.copy_source(from))
                .with_writes(&self.writes)
                .send()
                .await
                .map_err(|e| self.error("CopyObject", Some(to.as_str()), e))?;
            return Ok(());
        }
        self.copy_in_parts(from, to, source.size).await
    }

    async fn copy_in_parts(&self, from: &Key, to: &Key, size: u64) -> Result<(), StoreError> {
        let head = self
            .head_object(from)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                key: from.to_string(),
            })?;
        let plan = PartPlan::new(size, self.part_size.max(self.max_single_copy / 10)).map_err(
            |message| StoreError::Misconfigured {
                target: self.target(Some(to.as_str())),
                message,
            },
        )?;
        self.multipart_upload(
            to,
            head.content_type().map(str::to_owned),
            head.metadata().cloned(),
            |upload_id| async move {
                futures::stream::iter(plan.parts())
                    .map(|part| self.copy_part(from, to, &upload_id, part))
                    .buffer_unordered(self.parts_in_flight)
                    .try_collect()
                    .await
            },
        )
        .await
    }

    async fn copy_part(
        &self,
        from: &Key,
        to: &Key,
        upload_id: &str,
        part: Part,
    ) -> Result<CompletedPart, StoreError> {
        let last = part.offset + part.len - 1;
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(to.as_str())
            .upload_id(upload_id)
            .part_number(part.number)
            .copy_source(self.copy_source(from))
            .copy_source_range(format!("bytes={}-{last}", part.offset))
            .send()
            .await
            .map_err(|e| self.error("UploadPartCopy", Some(to.as_str()), e))?;
        Ok(CompletedPart::builder()
            .part_number(part.number)
            .set_e_tag(
                out.copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_owned),
            )
            .build())
    }
}
