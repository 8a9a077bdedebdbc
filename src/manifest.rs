//! `manifest.json`: what one run backed up, written last.
//!
//! It is the index an operator reads on a bad day: which repositories are there, which failed
//! and why, and the SHA-256 of every bundle so a download can be checked before it is trusted.
//! Fields are only ever added (`format` stays 1 while old readers keep working).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Bundle uploaded.
    Ok,
    /// The repository has no refs: nothing to bundle (git refuses empty bundles).
    Empty,
    /// Mirror, bundle or upload failed; `error` says why.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoEntry {
    pub slug: String,
    pub full_name: String,
    pub status: Status,
    /// Object key of the bundle (`None` unless `ok`).
    pub key: Option<String>,
    pub size: Option<u64>,
    /// Hex SHA-256 of the bundle bytes (also stored as object metadata `sha256` on S3).
    pub sha256: Option<String>,
    /// The ref HEAD points to in the bundle, e.g. `refs/heads/main`.
    pub head: Option<String>,
    pub refs: BTreeMap<String, String>,
    pub error: Option<String>,
    /// Wall time spent on this repository.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub ok: usize,
    pub empty: usize,
    pub failed: usize,
    /// Total bytes of the bundles uploaded.
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
    pub summary: Summary,
    pub repositories: Vec<RepoEntry>,
}

impl Summary {
    pub fn of(entries: &[RepoEntry]) -> Self {
        let mut s = Summary::default();
        for e in entries {
            match e.status {
                Status::Ok => {
                    s.ok += 1;
                    s.bytes += e.size.unwrap_or(0);
                }
                Status::Empty => s.empty += 1,
                Status::Failed => s.failed += 1,
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
            duration_ms: 5,
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
        let back: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }
}
