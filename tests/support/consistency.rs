//! "The store is consistent": what every fault test checks after its runs, whatever the fault.
//!
//! A restore trusts the manifests, so a fault may cost a repository its backup but must never
//! leave a manifest pointing at something that does not restore. Checked here, with stock git:
//! every entry a manifest lists as restorable (`ok`, `unchanged`) names an object whose size
//! and SHA-256 are the entry's and which `git bundle verify` accepts; every object in the store
//! is a manifest or a bundle some manifest lists (no half-written object at a final key, no
//! staged temp file, no run lock left behind), unless the test names it as one a rerun will
//! overwrite; and on S3 no multipart upload is left open.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::git::git;
use super::readback::{Dest, sha256_hex};

/// What [`assert_consistent`] found: restorable entries as `(manifest key, slug)`.
#[derive(Debug)]
pub struct Checked {
    pub manifests: Vec<String>,
    pub restorable: Vec<(String, String)>,
}

impl Checked {
    /// Slugs restorable from the manifest of `date`.
    pub fn restorable_on(&self, date: &str) -> BTreeSet<String> {
        self.restorable
            .iter()
            .filter(|(m, _)| m.contains(&format!("/{date}/")))
            .map(|(_, s)| s.clone())
            .collect()
    }
}

/// Panics naming the first inconsistency (see the module docs). `may_stray` are keys allowed
/// to exist without a manifest listing them (what the next run of that date overwrites).
/// `scratch` is a directory for the bundles read back.
pub async fn assert_consistent(dest: &Dest<'_>, scratch: &Path, may_stray: &[&str]) -> Checked {
    std::fs::create_dir_all(scratch).unwrap();
    let keys = all_keys(dest).await;
    let manifests: Vec<String> = keys
        .iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .cloned()
        .collect();
    let mut listed = BTreeSet::new();
    let mut restorable = Vec::new();
    let verify_repo = scratch.join("verify.git");
    if !verify_repo.exists() {
        git(
            scratch,
            &["init", "-q", "--bare", verify_repo.to_str().unwrap()],
        );
    }
    for (n, mkey) in manifests.iter().enumerate() {
        let manifest: Value = serde_json::from_slice(&dest.read(mkey).await)
            .unwrap_or_else(|e| panic!("{mkey} is not JSON: {e}"));
        for (i, e) in manifest["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("{mkey} has no repositories"))
            .iter()
            .enumerate()
        {
            let status = e["status"].as_str().unwrap_or_default();
            if !matches!(status, "ok" | "unchanged") {
                assert!(
                    e["key"].is_null() || status == "pruned",
                    "{mkey}: a {status} entry names an object: {e}"
                );
                continue;
            }
            let key = e["key"].as_str().unwrap_or_else(|| panic!("{mkey}: {e}"));
            assert!(
                keys.contains(key),
                "{mkey} lists {key}, which is not in the store"
            );
            let bytes = dest.read(key).await;
            assert_eq!(e["size"], bytes.len() as u64, "{mkey}: size of {key}");
            assert_eq!(
                e["sha256"],
                sha256_hex(&bytes).as_str(),
                "{mkey}: SHA-256 of {key}"
            );
            if e["encryption"].is_null() {
                let file = scratch.join(format!("m{n}-{i}.bundle"));
                std::fs::write(&file, &bytes).unwrap();
                git(&verify_repo, &["bundle", "verify", file.to_str().unwrap()]);
                std::fs::remove_file(&file).unwrap();
            }
            listed.insert(key.to_string());
            restorable.push((mkey.clone(), e["slug"].as_str().unwrap().to_string()));
        }
    }
    let strays: Vec<&String> = keys
        .iter()
        .filter(|k| !k.ends_with("/manifest.json") && !listed.contains(*k))
        .filter(|k| !may_stray.contains(&k.as_str()))
        .collect();
    assert!(
        strays.is_empty(),
        "objects no manifest lists: {strays:?} (all keys: {keys:?})"
    );
    if let Dest::S3(s3) = dest {
        assert_eq!(
            s3.open_multipart_uploads().await,
            0,
            "multipart uploads left open"
        );
    }
    Checked {
        manifests,
        restorable,
    }
}

/// Every object in the destination: S3 keys, or paths relative to the directory.
pub async fn all_keys(dest: &Dest<'_>) -> BTreeSet<String> {
    match dest {
        Dest::S3(s3) => s3.keys().await.into_iter().collect(),
        Dest::Local(root) => {
            let mut out = BTreeSet::new();
            let mut dirs = vec![root.clone()];
            while let Some(dir) = dirs.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries {
                    let path = e.unwrap().path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else {
                        let rel = path.strip_prefix(root).unwrap();
                        out.insert(rel.to_str().unwrap().to_string());
                    }
                }
            }
            out
        }
    }
}
