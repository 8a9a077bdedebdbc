//! Uploading one bundle: through the store with the run's retry policy for transient
//! failures, then confirmed by the store's own word (a HEAD) before the repository counts as
//! backed up.

use std::sync::Arc;

use super::{BUNDLE_CONTENT_TYPE, Pipeline, SEALED_CONTENT_TYPE};
use crate::bundle::BundleInfo;
use crate::provider::RemoteRepo;
use crate::store::{Key, PutOptions, Source, StoreError};

impl Pipeline {
    pub(super) async fn upload_with_retries(
        &self,
        repo: &RemoteRepo,
        key: &Key,
        source: &Source,
        info: &BundleInfo,
    ) -> Result<(), String> {
        let observer = self.observer.clone();
        let slug = repo.slug.clone();
        let content_type = match info.encryption {
            Some(_) => SEALED_CONTENT_TYPE,
            None => BUNDLE_CONTENT_TYPE,
        };
        let opts = PutOptions {
            content_type: Some(content_type.into()),
            metadata: [("sha256".to_string(), info.sha256.clone())].into(),
            on_progress: Some(Arc::new(move |delta| observer.uploaded(&slug, delta))),
        };
        let mut delays = self.backoff();
        loop {
            debug_assert_eq!(source.size(), info.size);
            match self.store.put_source(key, source, &opts).await {
                Ok(()) => return self.confirm_upload(key, source.size(), &opts).await,
                Err(e) if is_transient(&e) && !self.cancel.is_cancelled() => match delays.next() {
                    Some(delay) => {
                        tracing::warn!(repo = %repo.full_name, error = %e, retry_in = ?delay, "upload failed; retrying");
                        self.pause(delay).await;
                    }
                    None => return Err(format!("upload: {e}")),
                },
                Err(e) => return Err(format!("upload: {e}")),
            }
        }
    }

    /// After an upload, the store's own word on what it holds: a HEAD, whose size must be the
    /// bundle's and whose `sha256` metadata (where the store keeps metadata) the one we sent.
    /// A store that acknowledged a write it did not keep fails the repository, not a restore
    /// months later.
    async fn confirm_upload(&self, key: &Key, size: u64, opts: &PutOptions) -> Result<(), String> {
        let meta = match self.store.head(key).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(format!(
                    "upload: {key} is not in the store after its upload"
                ));
            }
            Err(e) => return Err(format!("upload: cannot confirm {key}: {e}")),
        };
        if meta.size != size {
            return Err(format!(
                "upload: the store holds {} bytes at {key}, not the {size} sent",
                meta.size
            ));
        }
        let sent = opts.metadata.get("sha256");
        match (meta.metadata.get("sha256"), sent) {
            (Some(stored), Some(sent)) if stored != sent => Err(format!(
                "upload: the store reports SHA-256 {stored} for {key}, not the {sent} sent"
            )),
            _ => Ok(()),
        }
    }
}

fn is_transient(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Unreachable { .. } | StoreError::Request { .. }
    )
}
