//! The pipeline: list → (mirror → bundle → upload) per repository, concurrently → manifest.
//!
//! Policy, in one place:
//! - The destination is checked before anything is cloned, so a wrong bucket fails in a
//!   second, not after an hour of cloning.
//! - One repository failing never stops the others: its error is recorded in its manifest
//!   entry and the run ends with exit code 5. Only problems that affect every repository
//!   (credentials, listing, destination, the manifest itself) end the run early; credentials
//!   refused mid-run ([`Pipeline::refused`]) stop new repositories from starting, and the
//!   manifest still records what was done.
//! - Transient failures (network, 5xx) are retried a bounded number of times; a refused git
//!   token is renewed once (tokens expire mid-run on long backups).
//! - The manifest is written only after every repository has ended, and not at all when the
//!   run is interrupted: its presence marks a complete backup.
//! - Unless `--full`, a repository whose refs equal those of an earlier run's bundle is not
//!   cloned at all ([`incremental`] has the rules). Any doubt (the refs cannot be listed, the
//!   earlier object is gone, the copy fails) means a normal clone and upload, never a failure.
//! - A second run on the same day never makes things worse: a repository that fails keeps the
//!   good bundle and entry of the first run (the failure is still reported, and still exit 5:
//!   [`Report::failures`] is what this run did, the manifest is what the folder holds), and
//!   entries of repositories this run did not list are kept.
//! - Each repository gets a private (0700) temp dir that is removed when it is done, on failure
//!   and on interruption (the blocking git work is always awaited, never abandoned, so the dir
//!   outlives it).
//!
//! - A rerun never leaves a manifest describing a bundle it replaced: `journal` drops such an
//!   entry from the stored manifest before the first byte goes to its key.
//!
//! Beside this file: `incremental` (the pure rules of an unchanged repository), `history`
//! (reading earlier manifests), `reuse` (carrying a decision out against the store), `git`
//! (libgit2 off the async threads, with the one retry and token-renewal policy).

mod git;
pub mod history;
pub mod incremental;
mod journal;
pub mod lock;
mod reuse;
mod upload;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use self::git::name_full_disk;
pub(crate) use self::git::{blocking, make_private_tempdir};
use self::history::History;
use crate::bundle::{self, BundleInfo};
use crate::cli::UnchangedMode;
use crate::config::RepoFilter;
use crate::crypt::Recipients;
use crate::error::Error;
use crate::layout::{Layout, OwnerLayout};
use crate::manifest::{self, Manifest, RepoEntry, Status, Summary};
use crate::mirror::Deadline;
use crate::provider::{Provider, Rejected, RemoteRepo};
use crate::store::{Key, PutOptions, Source, Store, StoreError};

/// Bundles' content type: what `git` itself would call the file.
pub const BUNDLE_CONTENT_TYPE: &str = "application/x-git-bundle";
/// Encrypted bundles' content type: age has no registered media type, and the stored bytes
/// must not claim to be a bundle.
pub const SEALED_CONTENT_TYPE: &str = "application/octet-stream";
/// Uploads a crashed earlier run left open outside this run's date folder are aborted once
/// they are this old; younger ones may belong to a run of another date still going on.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

/// What one repository is doing, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listing the remote's refs to compare them with an earlier bundle.
    Compare,
    Mirror,
    Bundle,
    Upload,
}

/// Hooks for progress displays and metrics. Every method has a no-op default so an observer
/// implements only what it shows.
pub trait Observer: Send + Sync {
    fn listed(&self, _repos: &[RemoteRepo]) {}
    fn phase(&self, _slug: &str, _phase: Phase) {}
    /// Bytes received by the fetch so far (total, not a delta).
    fn received(&self, _slug: &str, _total: u64) {}
    /// The bundle is written: `size` bytes are about to be uploaded.
    fn bundled(&self, _slug: &str, _size: u64) {}
    /// Bytes just uploaded (a delta).
    fn uploaded(&self, _slug: &str, _delta: u64) {}
    /// What this run did with the repository (for a repository that failed but keeps an
    /// earlier good entry in the manifest, the failure).
    fn finished(&self, _entry: &RepoEntry) {}
}

/// An observer that shows nothing.
pub struct Quiet;
impl Observer for Quiet {}

pub struct Pipeline {
    pub provider: Arc<dyn Provider>,
    pub store: Arc<dyn Store>,
    /// The owner's folder, where earlier runs are looked up.
    pub owner_layout: OwnerLayout,
    /// This run's date folder.
    pub layout: Layout,
    pub owner: String,
    pub date: NaiveDate,
    pub jobs: usize,
    pub filter: RepoFilter,
    /// Parent of the per-repository temp dirs.
    pub tmp_dir: PathBuf,
    /// Further attempts after a transient failure of a fetch or upload.
    pub retries: u32,
    /// First pause before a retry (doubles, with jitter).
    pub retry_delay: Duration,
    /// Longest one repository's git work may take, not counting the wait for a free job
    /// (`--repo-timeout`): a fetch that trickles must not hold a job until the CronJob's
    /// deadline.
    pub repo_timeout: Duration,
    pub cancel: CancellationToken,
    pub observer: Arc<dyn Observer>,
    /// What an unchanged repository gets: a copy of its earlier bundle, or a reference.
    pub unchanged: UnchangedMode,
    /// Ignore earlier runs: clone and upload every repository.
    pub full: bool,
    /// Take over another run's lock at once, and back up into a past date that already has a
    /// complete manifest.
    pub force: bool,
    /// Encrypt every bundle to these public keys (`<slug>.bundle.age`); `None`: plain bundles.
    pub encrypt_to: Option<Arc<Recipients>>,
    /// Set by the first refusal of the provider's credentials during the run (a revoked token,
    /// a deleted consumer: [`Provider::git_auth`] answered an auth error). Every repository not
    /// yet started would fail the same way, so none is; the manifest is still written, and
    /// the run ends with the auth exit code instead of "some repositories failed".
    pub refused: std::sync::OnceLock<String>,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// What the date folder now holds (on a second run of the day, entries of the first run
    /// that this one kept, too).
    pub manifest: Manifest,
    /// Where the manifest was written, as a user would address it.
    pub manifest_location: String,
    pub elapsed: Duration,
    /// What this run did with the repositories it listed: uploaded (`ok`), `unchanged`,
    /// `empty`, `failed`, and the bytes it uploaded. This, not the manifest's summary, decides
    /// the exit code: a failure that kept an earlier good entry is still a failure.
    pub run: Summary,
    /// The repositories that failed in this run, by name.
    pub failures: Vec<Failure>,
    /// The provider's credentials were refused mid-run (see [`Pipeline::refused`]).
    pub credentials_refused: Option<String>,
}

/// A repository that failed in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub full_name: String,
    pub error: String,
    /// Today's earlier run had a good bundle of it, which the manifest still lists.
    pub kept_earlier: bool,
}

impl Report {
    /// This run's outcome (see [`Report::run`]).
    pub fn summary(&self) -> &Summary {
        &self.run
    }
}

/// One repository's result: what goes into the manifest, and what this run did.
struct Done {
    manifest: RepoEntry,
    run: RepoEntry,
}

/// A repository's path to the destination, for `--dry-run` and `list`.
#[derive(Debug, Clone)]
pub struct Planned {
    pub repo: RemoteRepo,
    pub key: Key,
}

impl Pipeline {
    /// Lists the owner's repositories (vetted: [`crate::provider::vet`]) and applies the
    /// filters, to the rejected entries too: an excluded name is not reported.
    pub async fn select(&self) -> Result<(Vec<RemoteRepo>, Vec<Rejected>), Error> {
        let listing = crate::provider::list_vetted(self.provider.as_ref(), &self.owner).await?;
        Ok((
            (listing.repos.into_iter())
                .filter(|r| self.filter.matches(&r.slug))
                .collect(),
            (listing.rejected.into_iter())
                .filter(|r| self.filter.matches(&r.slug))
                .collect(),
        ))
    }

    /// What `run` would do, without cloning or uploading: checks the destination and lists.
    /// Entries that would fail are warned about.
    pub async fn plan(&self) -> Result<Vec<Planned>, Error> {
        self.store.check().await?;
        let (repos, rejected) = self.select().await?;
        for r in &rejected {
            tracing::warn!(repo = %r.full_name, reason = %r.reason, "would fail");
        }
        repos
            .into_iter()
            .map(|repo| {
                let key = self.bundle_key(&repo.slug)?;
                Ok(Planned { repo, key })
            })
            .collect()
    }

    /// Backs up under the date folder's [`lock`]: taken before anything is read or written,
    /// released at the end, after a failure and after an interruption.
    pub async fn run(&self) -> Result<Report, Error> {
        let started = Instant::now();
        self.store.check().await?;
        // Listing first: wrong credentials or an unknown owner fail before anything is written.
        let selected = self.select().await?;
        let lock = lock::RunLock::acquire(
            self.store.clone(),
            &self.layout,
            self.force,
            lock::Timing::DEFAULT,
            self.cancel.clone(),
        )
        .await?;
        let result = self.run_locked(started, selected).await;
        let lost = lock.lost();
        lock.release().await;
        match (result, lost) {
            (Err(_), Some(lost)) => Err(lost.into()),
            (result, _) => result,
        }
    }

    async fn run_locked(
        &self,
        started: Instant,
        selected: (Vec<RemoteRepo>, Vec<Rejected>),
    ) -> Result<Report, Error> {
        let started_at = Utc::now();
        self.refuse_past_date().await?;
        self.sweep_leftovers().await;

        let (repos, rejected) = selected;
        tracing::info!(
            owner = %self.owner,
            repositories = repos.len(),
            // Bucket, prefix and owner folder (or the directory), not only the bucket.
            destination = %format!(
                "{}/{}",
                self.store.location().trim_end_matches('/'),
                self.layout.owner_prefix()
            ),
            "starting backup"
        );
        let slugs: Vec<&str> = repos.iter().map(|r| r.slug.as_str()).collect();
        let history = history::load(
            self.store.as_ref(),
            &self.owner_layout,
            self.date,
            &slugs,
            self.full,
        )
        .await;
        let mut listed: HashSet<&str> = slugs.iter().copied().collect();
        listed.extend(rejected.iter().map(|r| r.slug.as_str()));
        let mut entries = history.unlisted_today(&listed);
        if !entries.is_empty() {
            tracing::info!(
                kept = entries.len(),
                "keeping the entries of today's earlier run for repositories not listed now"
            );
        }
        self.observer.listed(&repos);

        // Two limits: comparing refs and copying an unchanged bundle are a few small requests,
        // so many repositories may be at that step at once; a clone, a bundle and an upload
        // (CPU, temp disk, bandwidth) take one of the `jobs` permits. The semaphore is fair,
        // so full backups still start largest first.
        let heavy = tokio::sync::Semaphore::new(self.jobs.max(1));
        let mut done: Vec<Done> = futures::stream::iter(largest_first(repos))
            .map(|repo| self.backup_one(repo, &history, &heavy))
            .buffer_unordered(compare_in_flight(self.jobs))
            .collect()
            .await;
        done.extend(rejected.iter().map(|r| rejected_entry(r, &history)));

        if self.cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let mut ran: Vec<RepoEntry> = Vec::with_capacity(done.len());
        let mut failures = Vec::new();
        for d in done {
            if d.run.status == Status::Failed {
                failures.push(Failure {
                    full_name: d.run.full_name.clone(),
                    error: d.run.error.clone().unwrap_or_default(),
                    kept_earlier: d.manifest.status.has_bundle(),
                });
            }
            entries.push(d.manifest);
            ran.push(d.run);
        }
        failures.sort_by(|a, b| a.full_name.cmp(&b.full_name));
        entries.sort_by(|a, b| a.slug.cmp(&b.slug));
        let manifest = Manifest {
            format: manifest::FORMAT,
            tool: crate::TOOL.to_string(),
            provider: self.provider.name().to_string(),
            owner: self.owner.clone(),
            date: self.date,
            started_at,
            finished_at: Utc::now(),
            summary: Summary::of(&entries),
            repositories: entries,
        };
        let key = self.layout.manifest();
        self.store
            .put(
                &key,
                manifest.to_json().into(),
                &PutOptions {
                    content_type: Some("application/json".into()),
                    ..PutOptions::default()
                },
            )
            .await?;
        Ok(Report {
            manifest_location: format!("{}/{}", self.store.location().trim_end_matches('/'), key),
            manifest,
            elapsed: started.elapsed(),
            run: Summary::of(&ran),
            failures,
            credentials_refused: self.refused.get().cloned(),
        })
    }

    /// Removes what crashed earlier runs left: in this date folder everything (the run lock is
    /// held, so no other run is writing there: an open upload is a killed run's), elsewhere in
    /// the owner's folder only what is older than [`STALE_UPLOAD_AGE`] (runs of other dates may
    /// be going on).
    async fn sweep_leftovers(&self) {
        let run_dir = format!("{}/", self.layout.run_dir());
        for (prefix, older_than) in [
            (run_dir.as_str(), Duration::ZERO),
            (&self.layout.owner_prefix(), STALE_UPLOAD_AGE),
        ] {
            match self.store.sweep_incomplete(prefix, older_than).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    aborted = n,
                    prefix,
                    "aborted incomplete uploads left by an earlier run"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for incomplete uploads of earlier runs")
                }
            }
        }
    }

    /// A run on a past date never overwrites that date's complete backup without `--force`:
    /// it is most likely a mistyped `--date`, and the folder is someone's restore point.
    /// Today's date reruns as before (a second run of the day improves on the first).
    async fn refuse_past_date(&self) -> Result<(), Error> {
        if self.force || self.date >= Utc::now().date_naive() {
            return Ok(());
        }
        match crate::catalog::manifest(self.store.as_ref(), &self.owner_layout, self.date).await? {
            crate::catalog::ManifestState::Complete(m) => Err(crate::config::ConfigError::Other(format!(
                "{} already holds a complete backup of `{}` (finished {}): a run on a past --date \
                 does not overwrite it; pass --force to back up into that date again",
                self.layout.run_dir(),
                self.owner,
                m.finished_at.format("%Y-%m-%d %H:%M:%S UTC")
            ))
            .into()),
            _ => Ok(()),
        }
    }

    async fn backup_one(
        &self,
        repo: RemoteRepo,
        history: &History,
        heavy: &tokio::sync::Semaphore,
    ) -> Done {
        let started = Instant::now();
        let deadline = Deadline::after(self.repo_timeout);
        if !self.cancel.is_cancelled() && self.refused.get().is_none() {
            tracing::info!(repo = %repo.full_name, "backing up");
            if let Some(done) = self.try_unchanged(&repo, history, started, deadline).await {
                self.observer.finished(&done.run);
                return done;
            }
        }
        let waiting = Instant::now();
        let permit = tokio::select! {
            p = heavy.acquire() => p.ok(),
            () = self.cancel.cancelled() => None,
        };
        let result = if self.cancel.is_cancelled() || permit.is_none() {
            Err("interrupted before it started".to_string())
        } else if let Some(reason) = self.refused.get() {
            Err(format!("not attempted: {reason}"))
        } else {
            // The wait for a free job is not the repository's time.
            let deadline = deadline.extended(waiting.elapsed());
            self.try_backup_one(&repo, history, deadline).await
        };
        drop(permit);
        let mut entry = failed_entry(&repo.slug, &repo.full_name, None);
        entry.duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(None) => {
                entry.status = Status::Empty;
                tracing::info!(repo = %repo.full_name, "empty repository: no bundle");
            }
            Ok(Some((key, info))) => {
                tracing::info!(
                    repo = %repo.full_name,
                    key = %key,
                    bytes = info.size,
                    refs = info.refs.len(),
                    pack_reused = info.pack_reused,
                    "uploaded"
                );
                entry.status = Status::Ok;
                entry.key = Some(key.to_string());
                entry.size = Some(info.size);
                entry.sha256 = Some(info.sha256);
                entry.head = info.head;
                entry.refs = info.refs;
                entry.encryption = info.encryption;
            }
            Err(message) => {
                tracing::error!(repo = %repo.full_name, error = %message, "repository failed");
                entry.error = Some(message);
            }
        }
        self.observer.finished(&entry);
        let manifest = match history.good_today(&repo.slug) {
            Some(kept) if entry.status == Status::Failed => {
                tracing::warn!(
                    repo = %repo.full_name,
                    key = kept.key.as_deref().unwrap_or(""),
                    "keeping the bundle and entry of today's earlier run"
                );
                kept.clone()
            }
            _ => entry.clone(),
        };
        Done {
            manifest,
            run: entry,
        }
    }

    /// `Ok(None)` for an empty repository. Errors are user-facing text (no secrets: the
    /// modules below never put credentials into their errors).
    async fn try_backup_one(
        &self,
        repo: &RemoteRepo,
        history: &History,
        deadline: Deadline,
    ) -> Result<Option<(Key, BundleInfo)>, String> {
        let key = self.bundle_key(&repo.slug).map_err(|e| e.to_string())?;
        let tmp = make_private_tempdir(&self.tmp_dir).map_err(|e| {
            format!(
                "cannot create a temp dir in {}: {e}",
                self.tmp_dir.display()
            )
        })?;
        let mirror_dir = tmp.path().join("mirror.git");

        self.observer.phase(&repo.slug, Phase::Mirror);
        let fetched = (self.fetch_with_retries(repo, &mirror_dir, deadline).await)
            .map_err(|e| name_full_disk(&self.tmp_dir, e))?;
        tracing::debug!(repo = %repo.full_name, refs = fetched.refs.len(), bytes = fetched.received_bytes, "fetched");
        if let Some(problem) = missing_refs(repo, fetched.refs.len()) {
            return Err(problem);
        }

        // Bundling and uploading are not cut off mid-way (their own timeouts bound them);
        // a repository already out of time does not start them.
        out_of_time(repo, deadline)?;
        self.observer.phase(&repo.slug, Phase::Bundle);
        let bundle_path = tmp.path().join(match self.encrypt_to {
            Some(_) => "repo.bundle.age",
            None => "repo.bundle",
        });
        let prepared = {
            let (m, b) = (mirror_dir.clone(), bundle_path.clone());
            let encrypt_to = self.encrypt_to.clone();
            blocking(move || bundle::prepare(&m, &b, encrypt_to.as_deref()))
                .await?
                .map_err(|e| name_full_disk(&self.tmp_dir, format!("bundle: {e}")))?
        };
        let Some((info, bytes)) = prepared else {
            return Ok(None);
        };
        self.observer.bundled(&repo.slug, info.size);
        if !info.pack_reused || info.encryption.is_some() {
            // The bundle file holds a new pack of everything (or all of it encrypted): free
            // the mirror's disk first.
            let m = mirror_dir.clone();
            let _ = blocking(move || std::fs::remove_dir_all(m)).await;
        }
        // Otherwise the upload reads the header and then the mirror's own pack.
        let source = Source {
            head: bytes.header.into(),
            path: bytes.body,
            len: bytes.body_len,
        };

        if self.cancel.is_cancelled() {
            return Err("interrupted".into());
        }
        out_of_time(repo, deadline)?;
        self.observer.phase(&repo.slug, Phase::Upload);
        self.before_overwrite(history, &key).await?;
        self.upload_with_retries(repo, &key, &source, &info).await?;
        drop(tmp);
        Ok(Some((key, info)))
    }

    /// Where this run writes a repository's bundle: `.bundle`, or `.bundle.age` when encrypting.
    fn bundle_key(&self, slug: &str) -> Result<Key, StoreError> {
        self.layout.bundle_as(slug, self.encrypt_to.is_some())
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.retry_delay)
            .with_max_delay(self.retry_delay.saturating_mul(16))
            .with_max_times(self.retries as usize)
            .with_jitter()
            .build()
    }

    /// Sleeps, cut short by cancellation.
    async fn pause(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.cancel.cancelled() => {}
        }
    }
}

/// Fails a repository whose `--repo-timeout` has passed, before its next step.
fn out_of_time(repo: &RemoteRepo, deadline: Deadline) -> Result<(), String> {
    match deadline.passed() {
        true => Err(deadline.exceeded(&format!("the backup of {}", repo.full_name))),
        false => Ok(()),
    }
}

/// A repository the listing shows with a default branch is not empty: a fetch that brings no
/// refs for it is a failure (a server or permission problem), never an `empty` entry that
/// would hide it.
fn missing_refs(repo: &RemoteRepo, refs: usize) -> Option<String> {
    match (&repo.default_branch, refs) {
        (Some(branch), 0) => Some(format!(
            "mirror: the listing shows default branch `{}`, but the fetch brought no refs",
            crate::text::escape(branch)
        )),
        _ => None,
    }
}

/// A failed entry with nothing stored yet; the caller fills in what the repository got.
fn failed_entry(slug: &str, full_name: &str, error: Option<String>) -> RepoEntry {
    RepoEntry {
        slug: slug.to_string(),
        full_name: full_name.to_string(),
        status: Status::Failed,
        key: None,
        size: None,
        sha256: None,
        head: None,
        refs: BTreeMap::new(),
        error,
        since: None,
        duration_ms: 0,
        encryption: None,
    }
}

/// A listed entry that could not be backed up: a failed entry with the reason, keeping the
/// bundle of today's earlier run if it had one (as any failure does).
fn rejected_entry(r: &Rejected, history: &History) -> Done {
    tracing::error!(repo = %r.full_name, error = %r.reason, "repository failed");
    let run = failed_entry(&r.slug, &r.full_name, Some(r.reason.clone()));
    let manifest = match history.good_today(&r.slug) {
        Some(kept) => kept.clone(),
        None => run.clone(),
    };
    Done { manifest, run }
}

/// Repositories at the ref-comparison step at once: a few times the clone jobs, since the step
/// is latency (one ref advertisement, a server-side copy), not CPU, disk or bandwidth.
fn compare_in_flight(jobs: usize) -> usize {
    (jobs.max(1) * 4).clamp(8, 32)
}

/// The order repositories are started in: largest first, as the hosting service reports sizes
/// (listing order among equals and for unknown sizes, which go last). A big repository started
/// last would run alone at the end while the other jobs sit idle; started first, the small ones
/// fill in around it. The manifest is sorted by slug, so the order shows nowhere else.
fn largest_first(mut repos: Vec<RemoteRepo>) -> Vec<RemoteRepo> {
    repos.sort_by_key(|r| std::cmp::Reverse(r.size.unwrap_or(0)));
    repos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_repositories_start_first_and_ties_keep_listing_order() {
        let repo = |slug: &str, size: Option<u64>| RemoteRepo {
            slug: slug.into(),
            full_name: format!("acme/{slug}"),
            clone_url: url::Url::parse(&format!("https://example.org/acme/{slug}.git")).unwrap(),
            size,
            updated_on: None,
            default_branch: Some("main".into()),
            is_private: Some(true),
        };
        let listed = vec![
            repo("a", Some(10)),
            repo("b", None),
            repo("c", Some(500)),
            repo("d", Some(10)),
            repo("e", Some(70)),
        ];
        let order: Vec<String> = largest_first(listed).into_iter().map(|r| r.slug).collect();
        assert_eq!(order, ["c", "e", "a", "d", "b"]);
    }
}
