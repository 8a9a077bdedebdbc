//! `manifest.json`: what one run backed up, written last.
//!
//! It is the index an operator reads on a bad day: which repositories are there, which failed
//! and why, and the SHA-256 of every bundle so a download can be checked before it is trusted.
//! Fields are only ever added (`format` stays 1 while old readers keep working), and the reader
//! ([`Manifest::from_json`]) tolerates what it does not know: unknown fields are ignored, an
//! unknown status reads as [`Status::Unknown`], and fields added later default when absent, so
//! manifests written by older and newer versions of the tool both read.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Bundle uploaded.
    Ok,
    /// The remote's refs equal those of an earlier run's bundle, so nothing was cloned: `key`
    /// is a copy of that bundle in this folder (`--unchanged copy`) or the earlier object
    /// itself (`--unchanged reference`); `since` is the date of the run that made it.
    Unchanged,
    /// The repository has no refs: nothing to bundle (git refuses empty bundles).
    Empty,
    /// Mirror, bundle or upload failed; `error` says why.
    Failed,
    /// The bundle was removed by `prune` (the snapshot was not kept, but this manifest stays
    /// because the folder still holds a bundle that must stay). Older versions read it as
    /// `unknown`: not restorable, which is the truth.
    Pruned,
    /// A status written by a newer version of the tool: not restorable by this one.
    #[serde(other)]
    Unknown,
}

impl Status {
    /// A bundle that restores this repository is at `key`.
    pub fn has_bundle(self) -> bool {
        matches!(self, Status::Ok | Status::Unchanged)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unchanged => "unchanged",
            Status::Empty => "empty",
            Status::Failed => "failed",
            Status::Pruned => "pruned",
            Status::Unknown => "unknown",
        }
    }
}

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("manifest {key} is not valid: {message}")]
    Invalid { key: String, message: String },
    #[error("manifest {key} is for {found}, but it lies in the folder of {expected}")]
    Misplaced {
        key: String,
        found: String,
        expected: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoEntry {
    pub slug: String,
    #[serde(default)]
    pub full_name: String,
    pub status: Status,
    /// Object key of the bundle (`None` unless `ok` or `unchanged`). With `--unchanged
    /// reference` it can name an object in an earlier date folder.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    /// Hex SHA-256 of the bundle bytes (also stored as object metadata `sha256` on S3).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The ref HEAD points to in the bundle, e.g. `refs/heads/main`.
    #[serde(default)]
    pub head: Option<String>,
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
    #[serde(default)]
    pub error: Option<String>,
    /// For `unchanged`: the date of the run that made the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<NaiveDate>,
    /// Wall time spent on this repository.
    #[serde(default)]
    pub duration_ms: u64,
    /// Set when the bundle is stored encrypted (`<slug>.bundle.age`); `size` and `sha256`
    /// are then those of the stored (encrypted) object, this holds the plaintext bundle's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How an encrypted bundle was encrypted, and what it decrypts to. No key material: the
/// recipients are only a fingerprint, so an incremental run can tell whether an earlier
/// bundle was encrypted to the same keys as this run would use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `age`.
    pub scheme: String,
    /// `sha256:<hex>` of the recipients' public keys ([`crate::crypt::Recipients::fingerprint`]).
    pub recipients: String,
    /// Size of the plaintext bundle.
    pub plaintext_size: u64,
    /// Hex SHA-256 of the plaintext bundle.
    pub plaintext_sha256: String,
}

impl RepoEntry {
    /// The recipients' fingerprint of an encrypted entry; `None` for a plain bundle.
    pub fn recipients(&self) -> Option<&str> {
        self.encryption.as_ref().map(|e| e.recipients.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub ok: usize,
    #[serde(default)]
    pub unchanged: usize,
    pub empty: usize,
    pub failed: usize,
    /// Entries whose bundle `prune` removed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pruned: usize,
    /// Total bytes of the bundles uploaded by this run (`ok`; unchanged ones send none).
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tool: String,
    pub provider: String,
    pub owner: String,
    pub date: NaiveDate,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(default)]
    pub summary: Summary,
    pub repositories: Vec<RepoEntry>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Summary {
    pub fn of(entries: &[RepoEntry]) -> Self {
        let mut s = Summary::default();
        for e in entries {
            match e.status {
                Status::Ok => {
                    s.ok += 1;
                    // Saturating: a manifest read back may claim any sizes.
                    s.bytes = s.bytes.saturating_add(e.size.unwrap_or(0));
                }
                Status::Unchanged => s.unchanged += 1,
                Status::Empty => s.empty += 1,
                Status::Failed | Status::Unknown => s.failed += 1,
                Status::Pruned => s.pruned += 1,
            }
        }
        s
    }
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        v.push(b'\n');
        v
    }

    /// Reads the manifest stored at `key` (named in errors) and checks that it belongs where
    /// it lies: its owner and date are those of its folder. A manifest of a later format is
    /// read as far as this version understands it.
    pub fn from_json(
        bytes: &[u8],
        key: &str,
        owner: &str,
        date: NaiveDate,
    ) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid {
            key: key.to_string(),
            message: crate::text::escape(&e.to_string()).into_owned(),
        })?;
        if m.format == 0 {
            return Err(ManifestError::Invalid {
                key: key.to_string(),
                message: "format 0 is not a git-offsite manifest format".into(),
            });
        }
        if m.owner != owner || m.date != date {
            return Err(ManifestError::Misplaced {
                key: key.to_string(),
                found: format!("{} {}", crate::text::escape(&m.owner), m.date),
                expected: format!("{owner} {date}"),
            });
        }
        Ok(m)
    }

    pub fn entry(&self, slug: &str) -> Option<&RepoEntry> {
        self.repositories.iter().find(|r| r.slug == slug)
    }

    /// Bytes of the bundles this snapshot restores (`ok` and `unchanged`).
    pub fn restorable_bytes(&self) -> u64 {
        self.repositories
            .iter()
            .filter(|r| r.status.has_bundle())
            .filter_map(|r| r.size)
            .fold(0, u64::saturating_add)
    }
}

/// Entries and manifests of owner `acme` under prefix `git`, for unit tests that need a
/// history (`backup::history`, `prune::plan`).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// An entry of `slug`; with a bundle (`ok`, `unchanged`), it lies in `date`'s folder.
    pub fn entry(slug: &str, status: Status, date: NaiveDate) -> RepoEntry {
        RepoEntry {
            slug: slug.into(),
            full_name: format!("acme/{slug}"),
            status,
            key: status
                .has_bundle()
                .then(|| format!("git/acme/{date}/{slug}.bundle")),
            size: Some(10),
            sha256: Some("ab".repeat(32)),
            head: Some("refs/heads/main".into()),
            refs: [("refs/heads/main".to_string(), "1".repeat(40))].into(),
            error: (status == Status::Failed).then(|| "boom".into()),
            since: None,
            duration_ms: 1,
            encryption: None,
        }
    }

    pub fn manifest(date: NaiveDate, entries: Vec<RepoEntry>) -> Manifest {
        Manifest {
            format: FORMAT,
            tool: "t".into(),
            provider: "bitbucket".into(),
            owner: "acme".into(),
            date,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            summary: Summary::of(&entries),
            repositories: entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_the_documented_field_names() {
        let entry = RepoEntry {
            slug: "api".into(),
            full_name: "acme/api".into(),
            status: Status::Ok,
            key: Some("git/acme/2026-11-24/api.bundle".into()),
            size: Some(12345),
            sha256: Some("ab".repeat(32)),
            head: Some("refs/heads/main".into()),
            refs: [("refs/heads/main".to_string(), "1".repeat(40))].into(),
            error: None,
            since: None,
            duration_ms: 5,
            encryption: None,
        };
        let m = Manifest {
            format: FORMAT,
            tool: crate::TOOL.into(),
            provider: "bitbucket".into(),
            owner: "acme".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            summary: Summary::of(std::slice::from_ref(&entry)),
            repositories: vec![entry],
        };
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(v["format"], 1);
        assert_eq!(
            v["tool"],
            format!("git-offsite {}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(v["date"], "2026-11-24");
        let r = &v["repositories"][0];
        for field in [
            "slug",
            "full_name",
            "status",
            "key",
            "size",
            "sha256",
            "head",
            "refs",
            "error",
        ] {
            assert!(r.get(field).is_some(), "missing {field}");
        }
        assert_eq!(r["status"], "ok");
        assert!(r["error"].is_null());
        assert_eq!(v["summary"]["bytes"], 12345);
        assert!(
            r.get("since").is_none(),
            "only unchanged entries carry `since`"
        );
        let back = Manifest::from_json(&m.to_json(), "k", "acme", m.date).unwrap();
        assert_eq!(back, m);
    }

    /// A manifest written before `unchanged` existed (no `since`, no `summary.unchanged`)
    /// reads; one from a newer version with unknown fields and statuses reads too.
    #[test]
    fn the_reader_tolerates_older_and_newer_manifests() {
        let old = r#"{"format":1,"tool":"git-offsite 0.1.0","provider":"bitbucket","owner":"acme",
          "date":"2026-11-24","started_at":"2026-11-24T01:00:00Z","finished_at":"2026-11-24T01:05:00Z",
          "summary":{"ok":1,"empty":0,"failed":0,"bytes":10},
          "repositories":[{"slug":"api","full_name":"acme/api","status":"ok","key":"acme/2026-11-24/api.bundle",
            "size":10,"sha256":"00","head":"refs/heads/main","refs":{"refs/heads/main":"11"},"error":null,"duration_ms":3}]}"#;
        let date = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let m = Manifest::from_json(old.as_bytes(), "k", "acme", date).unwrap();
        assert_eq!(m.summary.unchanged, 0);
        assert_eq!(m.repositories[0].since, None);
        assert_eq!(m.restorable_bytes(), 10);

        let newer = r#"{"format":2,"tool":"git-offsite 9","provider":"bitbucket","owner":"acme",
          "date":"2026-11-24","started_at":"2026-11-24T01:00:00Z","finished_at":"2026-11-24T01:05:00Z",
          "encryption":{"recipients":1},
          "repositories":[{"slug":"api","status":"teleported","key":null,"hologram":true},
            {"slug":"web","status":"unchanged","key":"acme/2026-11-20/web.bundle","size":5,"since":"2026-11-20"}]}"#;
        let m = Manifest::from_json(newer.as_bytes(), "k", "acme", date).unwrap();
        assert_eq!(m.repositories[0].status, Status::Unknown);
        assert!(!m.repositories[0].status.has_bundle());
        assert_eq!(m.repositories[1].status, Status::Unchanged);
        assert_eq!(
            m.repositories[1].since,
            NaiveDate::from_ymd_opt(2026, 11, 20)
        );
        assert_eq!(m.restorable_bytes(), 5);

        let e = Manifest::from_json(old.as_bytes(), "k", "other", date).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
        let e = Manifest::from_json(b"{not json", "the/key", "acme", date).unwrap_err();
        assert!(e.to_string().contains("the/key"), "{e}");
    }
}
