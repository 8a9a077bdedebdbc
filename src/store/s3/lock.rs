//! Object Lock beyond the request headers: checking at the start that the bucket has it, and
//! deleting so that retention is respected and reported rather than papered over.
//!
//! Object Lock protects *versions*: in a lock bucket (always versioned) a DELETE of a bare key
//! succeeds but only adds a delete marker, hiding an object that stays stored and billed until
//! its retention ends; DeleteObjects with bare keys does the same. So in a bucket with Object
//! Lock (asked for with `--object-lock-mode`, or found by one GetObjectLockConfiguration at the
//! first delete of a run, so `prune` needs no lock flags), a delete works on versions, one key
//! at a time (a few in parallel) rather than in DeleteObjects batches: HEAD the key for its
//! current version and retain-until date; a date in the future is [`StoreError::Retained`]
//! (nothing is sent); otherwise that version is deleted for good, and the HEAD is repeated
//! because an earlier version (a same-day rerun's overwrite) may now be current. A delete S3
//! still refuses with AccessDenied (a retention we could not see, a clock ahead of ours) is
//! reported as retained too when HEAD showed a date, else as the access error it is.

use std::collections::HashSet;

use futures::StreamExt;

use aws_sdk_s3::error::ProvideErrorMetadata;
use chrono::{DateTime, Utc};

use super::S3Store;
use crate::store::{DeleteFailure, Key, StoreError};

/// The codes S3 and S3-compatible stores give for a bucket without Object Lock: AWS's, and the
/// one some implementations (and older docs) use.
const LOCK_NOT_CONFIGURED: [&str; 2] = [
    "ObjectLockConfigurationNotFoundError",
    "NoSuchObjectLockConfiguration",
];

/// More versions of one key than a backup ever writes; a server that keeps answering with
/// versions past this is not deleting them.
const MAX_VERSIONS: usize = 1000;

impl S3Store {
    /// With Object Lock asked for: the bucket must have it enabled, or every object would be
    /// written without the protection the user relies on (S3 ignores nothing here: it rejects
    /// lock headers on a bucket without lock, but only at the first upload).
    pub(super) async fn check_object_lock(&self) -> Result<(), StoreError> {
        let not_enabled = |why: &str| StoreError::Misconfigured {
            target: self.target(None),
            message: format!(
                "{why}, so --object-lock-mode cannot be honoured: use a bucket created with Object Lock \
                 enabled, or drop --object-lock-mode / object_lock_mode"
            ),
        };
        match self.lock_configuration().await? {
            Some(true) => Ok(()),
            Some(false) => Err(not_enabled("Object Lock is not enabled on this bucket")),
            None => Err(not_enabled("this S3 server does not implement Object Lock")),
        }
    }

    /// GetObjectLockConfiguration: `Some(enabled)`, or `None` from a server without the API.
    async fn lock_configuration(&self) -> Result<Option<bool>, StoreError> {
        let enabled = match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Some(
                out.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| e.as_str() == "Enabled"),
            ),
            Err(e) if e.code().is_some_and(|c| LOCK_NOT_CONFIGURED.contains(&c)) => Some(false),
            Err(e)
                if e.code() == Some("NotImplemented")
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 501) =>
            {
                None
            }
            Err(e) => return Err(self.error("GetObjectLockConfiguration", None, e)),
        };
        // Remembered for the deletes of this run.
        let _ = self.lock_enabled.set(enabled == Some(true));
        Ok(enabled)
    }

    /// Whether deletes must respect retention: lock asked for, or found on the bucket (asked
    /// once a run). A server that cannot tell (no such API, no permission) is taken as without.
    pub(super) async fn bucket_has_lock(&self) -> bool {
        if self.writes.object_lock.is_some() {
            return true;
        }
        if let Some(known) = self.lock_enabled.get() {
            return *known;
        }
        match self.lock_configuration().await {
            Ok(enabled) => enabled == Some(true),
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell whether the bucket has Object Lock; deleting as without");
                false
            }
        }
    }

    /// [`Store::delete_many`](crate::store::Store::delete_many) in a lock bucket: every key
    /// through [`Self::delete_versions`], a few at once, failures per key. The call as a whole
    /// fails only when the first key shows the store itself refusing or unreachable.
    pub(super) async fn delete_versions_many(
        &self,
        keys: &[Key],
    ) -> Result<Vec<DeleteFailure>, StoreError> {
        // Owned keys: a closure over `&Key` trips the compiler's higher-ranked lifetime check
        // inside `#[async_trait]`.
        let mut results = futures::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                let result = self.delete_versions(&key).await;
                (key, result)
            })
            .buffered(self.parts_in_flight);
        let mut failures = Vec::new();
        let mut first = true;
        while let Some((key, result)) = results.next().await {
            match result {
                Ok(()) => {}
                Err(
                    e @ (StoreError::AccessDenied { .. }
                    | StoreError::Unreachable { .. }
                    | StoreError::BucketNotFound { .. }
                    | StoreError::Misconfigured { .. }
                    | StoreError::Cancelled { .. }),
                ) if first => return Err(e),
                Err(error) => failures.push(DeleteFailure { key, error }),
            }
            first = false;
        }
        Ok(failures)
    }

    /// Deletes every version of `key`, newest first, unless one is still retained.
    pub(super) async fn delete_versions(&self, key: &Key) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        while seen.len() < MAX_VERSIONS {
            let Some((version, until)) = self.current_version(key).await? else {
                return Ok(());
            };
            if let Some(until) = until.filter(|u| *u > Utc::now()) {
                return Err(StoreError::Retained {
                    key: key.to_string(),
                    until: Some(until),
                });
            }
            // An unversioned object (a bucket that never had versioning): a plain delete is final.
            let Some(version) = version.filter(|v| v != "null") else {
                return self.delete_key(key, None).await;
            };
            if !seen.insert(version.clone()) {
                break;
            }
            match self.delete_key(key, Some(&version)).await {
                Err(StoreError::AccessDenied { .. }) if until.is_some() => {
                    return Err(StoreError::Retained {
                        key: key.to_string(),
                        until,
                    });
                }
                other => other?,
            }
        }
        Err(StoreError::Request {
            op: "DeleteObject",
            key: self.target(Some(key.as_str())),
            message: "the server keeps answering with the version just deleted".into(),
        })
    }

    /// The current version id and retain-until date of `key`; `None` when it does not exist.
    async fn current_version(
        &self,
        key: &Key,
    ) -> Result<Option<(Option<String>, Option<DateTime<Utc>>)>, StoreError> {
        Ok(self.head_object(key).await?.map(|out| {
            let until = out
                .object_lock_retain_until_date()
                .and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()));
            (out.version_id().map(str::to_owned), until)
        }))
    }

    /// One DeleteObject, of the key or of one version of it.
    pub(super) async fn delete_key(
        &self,
        key: &Key,
        version: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", Some(key.as_str()), e))?;
        Ok(())
    }
}
