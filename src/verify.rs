//! Checking stored bundles against their manifests, without trusting either.
//!
//! A backup nobody has read back is a hope, not a backup: objects rot, uploads get cut,
//! people edit manifests. `verify` answers "would these restore?" at three costs:
//!
//! - **quick**: `HEAD` per object: it exists with the manifest's size and `sha256` metadata.
//!   Nothing is downloaded (a store without metadata can only vouch for the size, and says so).
//! - **standard**: every bundle is streamed through [`crate::bundle::read`] (bounded memory,
//!   no temp copy): size and SHA-256 as the manifest says, and the header's refs exactly the
//!   manifest's refs, the HEAD line at the manifest's head.
//! - **deep**: also index the pack with libgit2 into a private temp dir and walk everything
//!   reachable from every ref ([`crate::bundle::walk`]), which catches a bundle whose bytes
//!   are exactly what was written but which never was complete.
//!
//! Every repository gets an [`Outcome`]; one failing never stops the others, and the
//! [`VerifyReport`] is a value the command renders, not a side effect. Manifest keys are
//! untrusted: one outside the owner's folder is a failure and is never read.

pub mod promise;

use std::path::Path;

use chrono::NaiveDate;
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backup::{blocking, make_private_tempdir};
use crate::bundle::read::{Discard, Expected, PackIndexer, Verified};
use crate::bundle::walk;
use crate::catalog::{self, ManifestState};
use crate::config::{DateChoice, RepoFilter, VerifyLevel};
use crate::crypt::Identities;
use crate::crypt::read::{self as crypt_read, DecryptError};
use crate::layout::OwnerLayout;
use crate::manifest::{RepoEntry, Status};
use crate::store::{Key, Store, StoreError};

use self::promise::{bundle_fields, check_header, tips};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Failed,
    /// A date folder without a manifest (an interrupted run): not a failure.
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Failed => "FAILED",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One row: a repository of a snapshot, or (without `repository`) a whole date folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub repository: Option<String>,
    pub date: NaiveDate,
    pub result: Verdict,
    pub detail: String,
    /// The bundle's key, where the manifest names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub owner: String,
    pub level: &'static str,
    /// Date folders looked at.
    pub snapshots: Vec<NaiveDate>,
    /// Sorted by date, then repository (date-folder rows first).
    pub results: Vec<Outcome>,
    pub summary: Counts,
}

impl VerifyReport {
    pub fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.results.iter().filter(|o| o.result == Verdict::Failed)
    }
}

/// Problems that stop `verify` before any bundle is looked at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no complete snapshot of `{owner}` at this destination{}",
        if *incomplete > 0 { format!(" ({incomplete} date folders without a manifest)") } else { String::new() })]
    NoSnapshot { owner: String, incomplete: usize },
    #[error("there is no snapshot of `{owner}` dated {date}{}",
        if available.is_empty() { String::new() } else { format!(" (there are: {})", available.join(", ")) })]
    NoSuchDate {
        owner: String,
        date: NaiveDate,
        available: Vec<String>,
    },
}

pub fn level_name(level: VerifyLevel) -> &'static str {
    match level {
        VerifyLevel::Quick => "quick",
        VerifyLevel::Standard => "standard",
        VerifyLevel::Deep => "deep",
    }
}

/// The date folders `choice` names, with their manifests. `latest` is the newest complete
/// snapshot, preceded by any newer folders without a manifest (shown as skipped: an operator
/// must see that last night's run did not finish).
pub async fn select(
    store: &dyn Store,
    owner: &OwnerLayout,
    choice: DateChoice,
) -> Result<Vec<(NaiveDate, ManifestState)>, VerifyError> {
    let dates = catalog::dates(store, owner).await?;
    match choice {
        DateChoice::Date(date) => {
            if !dates.contains(&date) {
                return Err(VerifyError::NoSuchDate {
                    owner: owner.owner().to_string(),
                    date,
                    available: dates.iter().map(|d| d.to_string()).collect(),
                });
            }
            // Named explicitly, a folder without a manifest is a failure, not a skip.
            let state = match catalog::manifest(store, owner, date).await? {
                ManifestState::Missing => ManifestState::Unreadable(format!(
                    "no manifest: the backup of {date} did not finish (interrupted or still running)"
                )),
                state => state,
            };
            Ok(vec![(date, state)])
        }
        DateChoice::All => {
            let mut out = Vec::new();
            for date in dates {
                out.push((date, catalog::manifest(store, owner, date).await?));
            }
            if !out.iter().any(|(_, s)| s.manifest().is_some()) {
                return Err(VerifyError::NoSnapshot {
                    owner: owner.owner().to_string(),
                    incomplete: out.len(),
                });
            }
            Ok(out)
        }
        DateChoice::Latest => {
            let mut newer = Vec::new();
            for date in dates.into_iter().rev() {
                let state = catalog::manifest(store, owner, date).await?;
                let complete = state.manifest().is_some();
                newer.push((date, state));
                if complete {
                    newer.reverse();
                    return Ok(newer);
                }
            }
            Err(VerifyError::NoSnapshot {
                owner: owner.owner().to_string(),
                incomplete: newer.len(),
            })
        }
    }
}

/// What to check and where.
pub struct Verifier<'a> {
    pub store: &'a dyn Store,
    pub owner: &'a OwnerLayout,
    pub level: VerifyLevel,
    /// Parent of the `--deep` temp repositories.
    pub tmp_dir: &'a Path,
    pub jobs: usize,
    pub cancel: &'a CancellationToken,
    /// Decrypts encrypted bundles; without it they are checked by their stored bytes only
    /// (and `--deep` fails on them).
    pub identity: Option<&'a Identities>,
}

impl Verifier<'_> {
    /// Checks every repository of `snapshots` that `filter` admits, `jobs` at a time.
    pub async fn run(
        &self,
        snapshots: &[(NaiveDate, ManifestState)],
        filter: &RepoFilter,
    ) -> VerifyReport {
        let mut results = Vec::new();
        let mut entries = Vec::new();
        for (date, state) in snapshots {
            let folder = |result, detail: String| Outcome {
                repository: None,
                date: *date,
                result,
                detail,
                key: None,
            };
            match state {
                ManifestState::Complete(m) => entries.extend(
                    m.repositories
                        .iter()
                        .filter(|e| filter.matches(&e.slug))
                        .map(|e| (*date, e)),
                ),
                ManifestState::Missing => results.push(folder(
                    Verdict::Skipped,
                    "no manifest: an interrupted (or still running) backup".into(),
                )),
                ManifestState::Unreadable(why) => {
                    results.push(folder(Verdict::Failed, why.clone()))
                }
            }
        }
        let checked: Vec<Outcome> = futures::stream::iter(entries)
            .map(|(date, entry)| self.entry(date, entry))
            .buffer_unordered(self.jobs.max(1))
            .collect()
            .await;
        results.extend(checked);
        results.sort_by(|a, b| (a.date, &a.repository).cmp(&(b.date, &b.repository)));
        let mut summary = Counts::default();
        for r in &results {
            match r.result {
                Verdict::Ok => summary.ok += 1,
                Verdict::Failed => summary.failed += 1,
                Verdict::Skipped => summary.skipped += 1,
            }
        }
        VerifyReport {
            owner: self.owner.owner().to_string(),
            level: level_name(self.level),
            snapshots: snapshots.iter().map(|(d, _)| *d).collect(),
            results,
            summary,
        }
    }

    /// One repository of the snapshot of `date`.
    pub async fn entry(&self, date: NaiveDate, entry: &RepoEntry) -> Outcome {
        let (result, detail) = match self.check(date, entry).await {
            Ok(detail) => (Verdict::Ok, detail),
            Err(why) => (Verdict::Failed, why),
        };
        Outcome {
            repository: Some(entry.slug.clone()),
            date,
            result,
            detail,
            key: entry.key.clone(),
        }
    }

    async fn check(&self, date: NaiveDate, entry: &RepoEntry) -> Result<String, String> {
        match entry.status {
            Status::Ok | Status::Unchanged => {}
            Status::Empty => return Ok("empty repository: no bundle".into()),
            Status::Pruned => return Ok("removed by prune: no bundle".into()),
            Status::Failed | Status::Unknown => {
                return Err(match &entry.error {
                    Some(e) => format!("failed in backup: {e}"),
                    None => format!("failed in backup (status `{}`)", entry.status.as_str()),
                });
            }
        }
        if self.cancel.is_cancelled() {
            return Err("interrupted".into());
        }
        let (key, size, sha256) = bundle_fields(self.owner, entry)?;
        let from = match self.owner.parse_bundle_key(key.as_str()) {
            Some((d, _)) if d != date => format!(" (a reference to the bundle of {d})"),
            _ => String::new(),
        };
        let detail = match self.level {
            VerifyLevel::Quick => self.quick(&key, size, sha256).await?,
            VerifyLevel::Standard | VerifyLevel::Deep => {
                self.download(&key, size, sha256, entry).await?
            }
        };
        Ok(detail + &from)
    }

    async fn quick(&self, key: &Key, size: u64, sha256: &str) -> Result<String, String> {
        let meta = match self.store.head(key).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(format!("bundle missing: {key}")),
            Err(e) => return Err(e.to_string()),
        };
        if meta.size != size {
            return Err(format!(
                "the stored object is {} bytes, the manifest says {size}",
                meta.size
            ));
        }
        if !self.store.keeps_metadata() {
            return Ok(format!(
                "{}: size only (no metadata on this store)",
                human(size)
            ));
        }
        match meta.metadata.get("sha256") {
            None => Err("the stored object has no sha256 metadata".into()),
            Some(m) if !m.eq_ignore_ascii_case(sha256) => Err(format!(
                "the object's sha256 metadata {m} differs from the manifest's {sha256}"
            )),
            Some(_) => Ok(format!(
                "{}: size and sha256 metadata match (not downloaded)",
                human(size)
            )),
        }
    }

    /// Standard and deep: stream the bundle, check what the manifest says, and for deep,
    /// index the pack and walk it.
    async fn download(
        &self,
        key: &Key,
        size: u64,
        sha256: &str,
        entry: &RepoEntry,
    ) -> Result<String, String> {
        let download = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Err("interrupted".into()),
            d = self.store.get_stream(key) => d,
        };
        let download = match download {
            Ok(d) => d,
            Err(StoreError::NotFound { .. }) => return Err(format!("bundle missing: {key}")),
            Err(e) => return Err(e.to_string()),
        };
        let expected = Expected {
            size: Some(size),
            sha256: Some(sha256),
        };
        let encryption = entry.encryption.as_ref();
        if encryption.is_some() && self.identity.is_none() {
            if self.level == VerifyLevel::Deep {
                return Err(DecryptError::NoIdentity {
                    key: key.to_string(),
                }
                .to_string());
            }
            let size = crypt_read::check_sealed(download, expected, self.cancel)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(format!(
                "{}: encrypted; SHA-256 of the stored bytes matches (pass --identity to check the contents)",
                human(size)
            ));
        }
        if self.level != VerifyLevel::Deep {
            let v = crypt_read::read_stored(
                download,
                key.as_str(),
                expected,
                encryption,
                self.identity,
                &mut Discard,
                self.cancel,
            )
            .await
            .map_err(|e| e.to_string())?;
            check_header(&v.header, entry)?;
            return Ok(matched(&v, entry));
        }
        let tmp = make_private_tempdir(self.tmp_dir).map_err(|e| {
            format!(
                "cannot create a temp dir in {}: {e}",
                self.tmp_dir.display()
            )
        })?;
        let git_dir = tmp.path().join("verify.git");
        let result = self.deep(download, key, expected, entry, &git_dir).await;
        // The indexer and the walk are done (both awaited); the removal is blocking too.
        let _ = blocking(move || drop(tmp)).await;
        result
    }

    async fn deep(
        &self,
        download: crate::store::Download,
        key: &Key,
        expected: Expected<'_>,
        entry: &RepoEntry,
        git_dir: &Path,
    ) -> Result<String, String> {
        let dir = git_dir.to_path_buf();
        blocking(move || {
            git2::Repository::init_opts(
                &dir,
                git2::RepositoryInitOptions::new()
                    .bare(true)
                    .external_template(false),
            )
            .map(drop)
            .map_err(|e| e.message().to_owned())
        })
        .await??;
        let mut indexer = PackIndexer::start(git_dir.to_path_buf());
        let checked = crypt_read::read_stored(
            download,
            key.as_str(),
            expected,
            entry.encryption.as_ref(),
            self.identity,
            &mut indexer,
            self.cancel,
        )
        .await
        .map_err(|e| e.to_string())
        .and_then(|v| check_header(&v.header, entry).map(|()| v))
        .and_then(|v| match v.header.prerequisites.len() {
            0 => Ok(v),
            n => Err(format!(
                "the bundle needs {n} prerequisite objects from another bundle"
            )),
        });
        let v = match checked {
            Ok(v) => v,
            Err(e) => {
                indexer.abort().await;
                return Err(e);
            }
        };
        indexer.commit().await?;
        let tips = tips(&v.header)?;
        let dir = git_dir.to_path_buf();
        let walked = blocking(move || {
            let repo = git2::Repository::open(&dir).map_err(|e| e.message().to_owned())?;
            walk::check(&repo, &tips)
        })
        .await??;
        Ok(format!(
            "{}; {}, {}, {}, {}, all present",
            matched(&v, entry),
            count(walked.commits, "commit"),
            count(walked.trees, "tree"),
            count(walked.blobs, "blob"),
            count(walked.tags, "tag"),
        ))
    }
}

fn matched(v: &Verified, entry: &RepoEntry) -> String {
    let decrypted = if entry.encryption.is_some() {
        "decrypted; "
    } else {
        ""
    };
    format!(
        "{}: {decrypted}SHA-256 and {} match",
        human(v.size),
        count(v.header.refs.len() as u64, "ref")
    )
}

/// `1 ref`, `3 refs`.
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

pub fn human(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}
