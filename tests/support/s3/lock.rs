//! S3 Object Lock for the test server, which s3s-fs does not have: buckets marked lock-enabled
//! answer GetObjectLockConfiguration, keep the retention each write asked for, refuse uploads
//! with lock parameters but no checksum, and refuse to delete a version still retained.
//!
//! Wire behaviour follows the AWS API reference:
//! - GetObjectLockConfiguration: `ObjectLockEnabled=Enabled` on a lock bucket, else 404
//!   `ObjectLockConfigurationNotFoundError` "Object Lock configuration does not exist for this
//!   bucket";
//! - PutObject/CreateMultipartUpload/CopyObject with `x-amz-object-lock-*` on a bucket without
//!   lock: 400 InvalidRequest "Bucket is missing Object Lock Configuration";
//! - a bucket default retention (`DefaultRetention` in the configuration) applies to every write
//!   without lock headers, and with it the checksum rule below ("also when the bucket default
//!   retention applies", GH kopia/kopia#711);
//! - PutObject with lock parameters, and every UploadPart of an upload created with them,
//!   without `Content-MD5` or an `x-amz-checksum-*`: 400 InvalidRequest "Content-MD5 OR
//!   x-amz-checksum- HTTP header is required for Put Object requests with Object Lock
//!   parameters" (the UploadPart text names Upload Part). A Content-MD5 that does not match the
//!   part is 400 BadDigest (s3s-fs checks it for PutObject itself);
//! - HEAD of an object in a lock bucket carries `x-amz-version-id` and, when retained,
//!   `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date`;
//! - DELETE of a bare key in a lock (so versioned) bucket adds a delete marker: the object
//!   disappears from GET, HEAD and listings, its version stays stored; DELETE of a version still
//!   retained is 403 AccessDenied "Access Denied because object protected by object lock."
//!   (governance mode yields to `x-amz-bypass-governance-retention: true`); DeleteObjects
//!   reports the same per key.
//!
//! Simplified: one version per key (an overwrite replaces the recorded one, where AWS would keep
//! both); a hidden (delete-marked) version is moved out of the bucket directory and only
//! counted; a bucket's default retention is always GOVERNANCE for whole days.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use s3s::dto::*;
use s3s::{S3Result, s3_error};

#[derive(Default)]
pub(super) struct LockEmulation {
    enabled: Mutex<HashSet<String>>,
    /// Bucket → default retention in days.
    default_days: Mutex<HashMap<String, i32>>,
    /// (bucket, key) → the current version and its retention.
    objects: Mutex<BTreeMap<(String, String), Version>>,
    /// Upload id → the retention its CreateMultipartUpload asked for.
    uploads: Mutex<HashMap<String, Option<Retention>>>,
    /// Versions hidden behind a delete marker, as `bucket/key`.
    hidden: Mutex<Vec<String>>,
    next_version: AtomicU64,
}

#[derive(Clone)]
struct Version {
    id: String,
    retention: Option<Retention>,
}

#[derive(Clone)]
pub(super) struct Retention {
    mode: ObjectLockMode,
    until: Timestamp,
}

impl Retention {
    /// Seconds since the epoch; `Timestamp` only formats.
    fn until_secs(&self) -> i64 {
        let mut buf = Vec::new();
        self.until
            .format(TimestampFormat::EpochSeconds, &mut buf)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        text.split('.').next().unwrap().parse().unwrap()
    }

    fn in_force(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        self.until_secs() > now
    }
}

impl LockEmulation {
    pub(super) fn enable(&self, bucket: &str) {
        self.enabled.lock().unwrap().insert(bucket.to_string());
    }

    pub(super) fn set_default_retention(&self, bucket: &str, days: i32) {
        self.enable(bucket);
        self.default_days
            .lock()
            .unwrap()
            .insert(bucket.to_string(), days);
    }

    fn default_days(&self, bucket: &str) -> Option<i32> {
        self.default_days.lock().unwrap().get(bucket).copied()
    }

    pub(super) fn is_enabled(&self, bucket: &str) -> bool {
        self.enabled.lock().unwrap().contains(bucket)
    }

    pub(super) fn configuration(&self, bucket: &str) -> S3Result<GetObjectLockConfigurationOutput> {
        if !self.is_enabled(bucket) {
            return Err(s3_error!(
                ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket"
            ));
        }
        Ok(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(
                    ObjectLockEnabled::ENABLED,
                )),
                rule: self.default_days(bucket).map(|days| ObjectLockRule {
                    default_retention: Some(DefaultRetention {
                        days: Some(days),
                        mode: Some(ObjectLockRetentionMode::from_static(
                            ObjectLockRetentionMode::GOVERNANCE,
                        )),
                        years: None,
                    }),
                }),
            }),
        })
    }

    /// The retention a write asks for, refused on a bucket without lock.
    pub(super) fn requested(
        &self,
        bucket: &str,
        mode: Option<&ObjectLockMode>,
        until: Option<&Timestamp>,
    ) -> S3Result<Option<Retention>> {
        if mode.is_none() && until.is_none() {
            let Some(days) = self.default_days(bucket) else {
                return Ok(None);
            };
            let until =
                std::time::SystemTime::now() + std::time::Duration::from_secs(days as u64 * 86_400);
            return Ok(Some(Retention {
                mode: ObjectLockMode::from_static(ObjectLockMode::GOVERNANCE),
                until: Timestamp::from(until),
            }));
        }
        if !self.is_enabled(bucket) {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        match (mode, until) {
            (Some(mode), Some(until)) => Ok(Some(Retention {
                mode: mode.clone(),
                until: until.clone(),
            })),
            _ => Err(s3_error!(
                InvalidRequest,
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
            )),
        }
    }

    /// AWS's rule for uploads with lock parameters.
    pub(super) fn require_checksum(
        what: &str,
        retention: &Option<Retention>,
        has_checksum: bool,
    ) -> S3Result<()> {
        if retention.is_some() && !has_checksum {
            return Err(s3_error!(
                InvalidRequest,
                "Content-MD5 OR x-amz-checksum- HTTP header is required for {} requests with Object Lock parameters",
                what
            ));
        }
        Ok(())
    }

    pub(super) fn start_upload(&self, upload_id: &str, retention: Option<Retention>) {
        self.uploads
            .lock()
            .unwrap()
            .insert(upload_id.to_string(), retention);
    }

    pub(super) fn upload_retention(&self, upload_id: &str) -> Option<Retention> {
        self.uploads
            .lock()
            .unwrap()
            .get(upload_id)
            .cloned()
            .flatten()
    }

    pub(super) fn finish_upload(&self, upload_id: &str) -> Option<Retention> {
        self.uploads.lock().unwrap().remove(upload_id).flatten()
    }

    /// A new current version of `key`; its id, `None` in a bucket without lock (unversioned).
    pub(super) fn written(
        &self,
        bucket: &str,
        key: &str,
        retention: Option<Retention>,
    ) -> Option<String> {
        if !self.is_enabled(bucket) {
            return None;
        }
        let id = format!("v{}", self.next_version.fetch_add(1, Ordering::SeqCst) + 1);
        self.objects.lock().unwrap().insert(
            (bucket.to_string(), key.to_string()),
            Version {
                id: id.clone(),
                retention,
            },
        );
        Some(id)
    }

    /// What HEAD adds for `key`: version id, lock mode and retain-until date.
    pub(super) fn annotate(&self, bucket: &str, key: &str, out: &mut HeadObjectOutput) {
        let objects = self.objects.lock().unwrap();
        let Some(v) = objects.get(&(bucket.to_string(), key.to_string())) else {
            return;
        };
        out.version_id = Some(v.id.clone());
        if let Some(r) = &v.retention {
            out.object_lock_mode = Some(r.mode.clone());
            out.object_lock_retain_until_date = Some(r.until.clone());
        }
    }

    /// A DELETE in a lock bucket, done here (s3s-fs would just remove the file). `Ok(true)`
    /// when a delete marker was added.
    pub(super) fn delete(
        &self,
        root: &Path,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        bypass_governance: bool,
    ) -> S3Result<bool> {
        let id = (bucket.to_string(), key.to_string());
        let mut objects = self.objects.lock().unwrap();
        let path = root.join(bucket).join(key);
        let Some(version) = version else {
            // A delete marker: hide the current version, keep its bytes.
            if path.is_file() {
                let hidden = root.join(".versions");
                std::fs::create_dir_all(&hidden).unwrap();
                let n = self.next_version.fetch_add(1, Ordering::SeqCst);
                std::fs::rename(&path, hidden.join(format!("{n}"))).unwrap();
                objects.remove(&id);
                self.hidden.lock().unwrap().push(format!("{bucket}/{key}"));
            }
            return Ok(true);
        };
        let Some(current) = objects.get(&id) else {
            return Ok(false);
        };
        if current.id != version {
            return Ok(false);
        }
        if let Some(r) = &current.retention
            && r.in_force()
            && !(bypass_governance && r.mode.as_str() == ObjectLockMode::GOVERNANCE)
        {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied because object protected by object lock."
            ));
        }
        objects.remove(&id);
        remove_file(&path);
        Ok(false)
    }

    pub(super) fn hidden(&self) -> Vec<String> {
        self.hidden.lock().unwrap().clone()
    }

    /// Sets the retention of `key` as PutObjectRetention would (tests use it to let one expire).
    pub(super) fn set_retention(&self, bucket: &str, key: &str, until_secs: i64) {
        let mut objects = self.objects.lock().unwrap();
        let v = objects
            .get_mut(&(bucket.to_string(), key.to_string()))
            .unwrap_or_else(|| panic!("{key} has no version in a lock bucket"));
        let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(until_secs as u64);
        let mode = v
            .retention
            .as_ref()
            .map(|r| r.mode.clone())
            .unwrap_or_else(|| ObjectLockMode::from_static(ObjectLockMode::GOVERNANCE));
        v.retention = Some(Retention {
            mode,
            until: Timestamp::from(until),
        });
    }
}

fn remove_file(path: &PathBuf) {
    if path.is_file() {
        std::fs::remove_file(path).unwrap();
    }
}
