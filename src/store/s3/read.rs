//! Reading back: streamed downloads and one-level listings (`/` as the delimiter).

use aws_sdk_s3::operation::get_object::GetObjectError;
use futures::StreamExt;

use super::S3Store;
use super::errors::chain;
use crate::store::{Download, Key, Listing, ObjectMeta, StoreError};

impl S3Store {
    /// GetObject, with a missing key as `None`: the one place a 404 on a read is told apart.
    pub(super) async fn get_object_if_present(
        &self,
        key: &Key,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e)
                if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_)))
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error("GetObject", Some(key.as_str()), e)),
        }
    }

    pub(super) async fn download(&self, key: &Key) -> Result<Download, StoreError> {
        let out = self
            .get_object_if_present(key)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
        let size = out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let metadata = out
            .metadata()
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        let target = self.target(Some(key.as_str()));
        // One chunk at a time, as the SDK reads them off the connection; nothing is buffered
        // beyond what the consumer has not taken yet.
        let stream = futures::stream::unfold(Some(out.body), move |body| {
            let target = target.clone();
            async move {
                let mut body = body?;
                match body.next().await? {
                    Ok(bytes) => Some((Ok(bytes), Some(body))),
                    Err(e) => Some((
                        Err(StoreError::Request {
                            op: "GetObject",
                            key: target,
                            message: format!("reading the body: {}", chain(&e)),
                        }),
                        None,
                    )),
                }
            }
        });
        Ok(Download {
            size,
            metadata,
            stream: stream.boxed(),
        })
    }

    pub(super) async fn list_one_level(&self, folder: &str) -> Result<Listing, StoreError> {
        if !(folder.is_empty() || folder.ends_with('/')) {
            return Err(StoreError::InvalidKey {
                key: folder.to_string(),
                reason: "a folder is empty (the root) or ends with `/`".into(),
            });
        }
        self.list_objects(folder, Some("/")).await
    }

    /// Every page of ListObjectsV2 under `prefix`: with a delimiter, the objects of one level
    /// and its sub-folders (common prefixes); without, every object below, recursively.
    pub(super) async fn list_objects(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<Listing, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_prefix((!prefix.is_empty()).then(|| prefix.to_string()))
            .into_paginator()
            .send();
        let mut listing = Listing::default();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", Some(prefix), e))?;
            for object in page.contents() {
                let Some(name) = object.key() else { continue };
                match Key::new(name) {
                    Ok(key) => listing.objects.push(ObjectMeta {
                        key,
                        size: object
                            .size()
                            .and_then(|n| u64::try_from(n).ok())
                            .unwrap_or(0),
                        metadata: Default::default(),
                    }),
                    // Objects someone else put there can have keys we would never build.
                    Err(e) => {
                        tracing::debug!(error = %e, "skipping an object whose key we cannot represent")
                    }
                }
            }
            for p in page.common_prefixes() {
                if let Some(p) = p.prefix()
                    && p.len() > prefix.len()
                {
                    listing.folders.push(p.to_string());
                }
            }
        }
        listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
        listing.folders.sort();
        listing.folders.dedup();
        Ok(listing)
    }
}
