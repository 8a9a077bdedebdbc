//! Carrying out an [`incremental`](super::incremental) decision against the store.
//!
//! The rules are pure and live in `incremental`; this is the part that talks to the remote
//! (its refs) and the store (copy, head). Every step that could go wrong here (the refs
//! cannot be listed, the earlier object is gone or has another size, the copy fails) ends in
//! a warning and a normal clone and upload of the repository: an incremental run must never
//! back up less than a full one would.

use std::time::Instant;

use super::history::History;
use super::incremental::{self, Decision};
use super::{Done, Phase, Pipeline};
use crate::manifest::{RepoEntry, Status};
use crate::mirror::Deadline;
use crate::provider::RemoteRepo;
use crate::store::Key;

impl Pipeline {
    /// `Some` when the repository is unchanged since an earlier run and the earlier bundle
    /// serves again (copied, referenced or, from today's earlier run, kept); `None` means a
    /// normal backup: no baseline, a change, or any doubt (warned about).
    pub(super) async fn try_unchanged(
        &self,
        repo: &RemoteRepo,
        history: &History,
        started: Instant,
        deadline: Deadline,
    ) -> Option<Done> {
        let baseline = history.baseline(&repo.slug)?;
        let key = self.bundle_key(&repo.slug).ok()?;
        self.observer.phase(&repo.slug, Phase::Compare);
        let remote = match self.ls_remote_with_retries(repo, deadline).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(repo = %repo.full_name, error = %e, "cannot compare with the earlier bundle; backing up in full");
                return None;
            }
        };
        let run = incremental::Run {
            date: self.date,
            owner: &self.owner_layout,
            key: key.as_str(),
            mode: self.unchanged,
            recipients: self.encrypt_to.as_ref().map(|r| r.fingerprint()),
        };
        let fallback = |why: String| {
            tracing::warn!(repo = %repo.full_name, "{why}; backing up in full");
        };
        let (mut entry, verb) = match incremental::decide(&remote, baseline, &run) {
            Decision::Backup(why) => {
                tracing::info!(repo = %repo.full_name, "changed: {why}");
                return None;
            }
            Decision::Keep(entry) => {
                if let Err(why) = self.check_object(&entry).await {
                    fallback(why);
                    return None;
                }
                let since = entry.since.unwrap_or(baseline.date);
                tracing::info!(repo = %repo.full_name, since = %since, "unchanged since {since}; kept from today's earlier run");
                // The manifest keeps the entry verbatim; this run did nothing with it.
                let mut run = entry.clone();
                run.status = Status::Unchanged;
                run.since = Some(since);
                return Some(Done {
                    manifest: entry,
                    run,
                });
            }
            Decision::Copy { from, entry } => {
                if let Err(why) = self.before_overwrite(history, &key).await {
                    fallback(why);
                    return None;
                }
                let copied = match Key::new(from) {
                    Ok(from) => self.store.copy(&from, &key).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = copied {
                    fallback(format!("cannot copy the earlier bundle ({e})"));
                    return None;
                }
                // One HEAD: a bundle replaced by hand (another size) must not be taken for the
                // one whose checksum the entry carries.
                if let Err(why) = self.check_object(&entry).await {
                    fallback(why);
                    return None;
                }
                (entry, "copied")
            }
            Decision::Reference(entry) => {
                if let Err(why) = self.check_object(&entry).await {
                    fallback(why);
                    return None;
                }
                (entry, "referenced")
            }
        };
        let since = entry.since.unwrap_or(baseline.date);
        tracing::info!(
            repo = %repo.full_name,
            since = %since,
            key = entry.key.as_deref().unwrap_or(""),
            "unchanged since {since}; {verb}"
        );
        entry.full_name = repo.full_name.clone();
        entry.duration_ms = started.elapsed().as_millis() as u64;
        Some(Done {
            manifest: entry.clone(),
            run: entry,
        })
    }

    /// The object an entry names is there, with the entry's size.
    pub(super) async fn check_object(&self, entry: &RepoEntry) -> Result<(), String> {
        let name = entry.key.as_deref().unwrap_or("");
        let key = Key::new(name).map_err(|e| e.to_string())?;
        match self.store.head(&key).await {
            Ok(Some(meta)) if Some(meta.size) == entry.size => Ok(()),
            Ok(Some(meta)) => Err(format!(
                "the bundle {key} has {} bytes, not the {} of its manifest entry",
                meta.size,
                entry.size.unwrap_or(0)
            )),
            Ok(None) => Err(format!("the bundle {key} is gone")),
            Err(e) => Err(format!("cannot check the bundle {key}: {e}")),
        }
    }
}
