//! What earlier runs of this owner left in the destination: the baselines an incremental run
//! compares against, and the entries a second run of the same day must not lose.
//!
//! Read once, before any repository starts, so every repository sees the same history and the
//! destination is read a bounded number of times ([`MAX_LOOKBACK`]) whatever the number of
//! repositories. Reading never fails the run: a store error or a manifest that does not read
//! is a warning, and the search stops there, so the repositories it did not resolve yet are
//! backed up in full (a manifest that cannot be trusted is no reason to trust an older one
//! about the same repositories less, but it is a sign something is off with the destination,
//! and a full backup is the safe answer).

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;

use super::incremental::Baseline;
use crate::catalog::{self, ManifestState};
use crate::layout::OwnerLayout;
use crate::manifest::{Manifest, RepoEntry};
use crate::store::Store;

/// How many earlier date folders are looked at, newest first, to find a baseline: a month of
/// nightly runs. Each costs one small GET (a folder without a manifest, an interrupted run,
/// counts too), so a destination with years of history is not read from end to end on every
/// run; a repository whose last good bundle is older than that is simply backed up in full.
pub const MAX_LOOKBACK: usize = 31;

/// What the destination says about earlier runs of this owner, read once before any
/// repository is started.
#[derive(Debug, Default)]
pub struct History {
    /// Today's manifest, when this is a second run of the same day.
    pub today: Option<Manifest>,
    /// slug → the newest entry that holds a bundle (empty with `--full`).
    baselines: HashMap<String, Baseline>,
    /// Today's manifest as it is in the store right now: [`History::today`] less the entries
    /// whose bundles this run has started to replace (see `journal`).
    pub(super) stored_today: tokio::sync::Mutex<Option<Manifest>>,
}

impl History {
    pub fn baseline(&self, slug: &str) -> Option<&Baseline> {
        self.baselines.get(slug)
    }

    /// The good entry of today's earlier run for `slug`: what a failure in this run must
    /// leave in place (its bundle is still in the store).
    pub fn good_today(&self, slug: &str) -> Option<&RepoEntry> {
        self.today
            .as_ref()?
            .entry(slug)
            .filter(|e| e.status.has_bundle())
    }

    /// Entries of today's earlier manifest for repositories this run did not list (deleted,
    /// filtered out): kept, so a second run never drops what the first one backed up.
    pub fn unlisted_today(&self, listed: &HashSet<&str>) -> Vec<RepoEntry> {
        self.today
            .iter()
            .flat_map(|m| &m.repositories)
            .filter(|e| !listed.contains(e.slug.as_str()))
            .cloned()
            .collect()
    }
}

/// Reads today's manifest (if any) and, unless `full`, finds a baseline for each of `slugs`
/// in the newest [`MAX_LOOKBACK`] earlier date folders. Stops at the first manifest that
/// cannot be read or store error (with a warning): the repositories resolved by a newer
/// manifest keep their baseline, the others are backed up in full.
pub async fn load(
    store: &dyn Store,
    owner: &OwnerLayout,
    date: NaiveDate,
    slugs: &[&str],
    full: bool,
) -> History {
    let mut history = History::default();
    let dates = match catalog::dates(store, owner).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list earlier runs; backing up every repository in full");
            return history;
        }
    };
    if dates.contains(&date) {
        match read(store, owner, date).await {
            Read::Manifest(m) => {
                history.stored_today = tokio::sync::Mutex::new(Some((*m).clone()));
                history.today = Some(*m);
            }
            Read::Missing => {}
            Read::Stop => return history,
        }
    }
    if full {
        return history;
    }
    let wanted: HashSet<&str> = slugs.iter().copied().collect();
    if let Some(today) = &history.today {
        add(&mut history.baselines, date, today, &wanted);
    }
    let earlier = dates.iter().rev().filter(|d| **d < date).take(MAX_LOOKBACK);
    for &d in earlier {
        if history.baselines.len() == wanted.len() {
            break;
        }
        match read(store, owner, d).await {
            Read::Manifest(m) => add(&mut history.baselines, d, &m, &wanted),
            Read::Missing => {}
            Read::Stop => break,
        }
    }
    history
}

/// Takes the bundle entries of `manifest` (the run of `date`) for wanted repositories not
/// resolved by a newer manifest.
fn add(
    baselines: &mut HashMap<String, Baseline>,
    date: NaiveDate,
    manifest: &Manifest,
    wanted: &HashSet<&str>,
) {
    for e in &manifest.repositories {
        if e.status.has_bundle()
            && wanted.contains(e.slug.as_str())
            && !baselines.contains_key(&e.slug)
        {
            baselines.insert(
                e.slug.clone(),
                Baseline {
                    date,
                    entry: e.clone(),
                },
            );
        }
    }
}

enum Read {
    Manifest(Box<Manifest>),
    Missing,
    /// Unreadable, or the store failed: warned about; look no further.
    Stop,
}

async fn read(store: &dyn Store, owner: &OwnerLayout, date: NaiveDate) -> Read {
    match catalog::manifest(store, owner, date).await {
        Ok(ManifestState::Complete(m)) => Read::Manifest(m),
        Ok(ManifestState::Missing) => Read::Missing,
        Ok(ManifestState::Unreadable(why)) => {
            tracing::warn!(date = %date, "the manifest of an earlier run cannot be read ({why}); repositories not found in a newer one are backed up in full");
            Read::Stop
        }
        Err(e) => {
            tracing::warn!(date = %date, error = %e, "cannot read the manifest of an earlier run; repositories not found in a newer one are backed up in full");
            Read::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Status;
    use crate::manifest::fixtures::{entry, manifest};
    use crate::store::fs::FsStore;
    use crate::store::{Key, PutOptions};

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    async fn put(store: &FsStore, key: String, bytes: Vec<u8>) {
        store
            .put(
                &Key::new(key).unwrap(),
                bytes.into(),
                &PutOptions::default(),
            )
            .await
            .unwrap();
    }

    async fn put_manifest(store: &FsStore, m: &Manifest) {
        put(
            store,
            format!("git/acme/{}/manifest.json", m.date),
            m.to_json(),
        )
        .await;
    }

    #[tokio::test]
    async fn baselines_come_from_the_newest_manifest_holding_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().to_path_buf());
        let owner = OwnerLayout::new(Some("git"), "acme").unwrap();
        let ok = Status::Ok;
        // Today's first run: `api` ok, `web` failed, `gone` is no longer listed.
        put_manifest(
            &store,
            &manifest(
                day(25),
                vec![
                    entry("api", ok, day(25)),
                    entry("web", Status::Failed, day(25)),
                    entry("gone", ok, day(25)),
                ],
            ),
        )
        .await;
        // An interrupted run: objects, no manifest. Skipped.
        put(
            &store,
            "git/acme/2026-11-24/web.bundle".into(),
            b"partial".to_vec(),
        )
        .await;
        put_manifest(
            &store,
            &manifest(
                day(23),
                vec![
                    entry("api", ok, day(23)),
                    entry("web", Status::Unchanged, day(23)),
                ],
            ),
        )
        .await;
        put_manifest(&store, &manifest(day(22), vec![entry("lib", ok, day(22))])).await;
        put(
            &store,
            "git/acme/2026-11-21/manifest.json".into(),
            b"{not json".to_vec(),
        )
        .await;
        put_manifest(&store, &manifest(day(20), vec![entry("old", ok, day(20))])).await;
        // A later folder than the run's date is never a baseline.
        put_manifest(&store, &manifest(day(26), vec![entry("new", ok, day(26))])).await;

        let slugs = ["api", "web", "lib", "old", "new", "none"];
        let h = load(&store, &owner, day(25), &slugs, false).await;
        let found = |slug: &str| h.baseline(slug).map(|b| (b.date, b.entry.status));
        assert_eq!(found("api"), Some((day(25), ok)), "today's own entry first");
        assert_eq!(
            found("web"),
            Some((day(23), Status::Unchanged)),
            "a failure is skipped"
        );
        assert_eq!(found("lib"), Some((day(22), ok)));
        assert_eq!(
            found("old"),
            None,
            "the search stops at an unreadable manifest"
        );
        assert_eq!(found("new"), None);
        assert_eq!(found("none"), None);
        assert_eq!(h.today.as_ref().map(|m| m.date), Some(day(25)));
        assert!(h.good_today("api").is_some());
        assert!(
            h.good_today("web").is_none(),
            "a failure is not worth keeping"
        );
        let listed: HashSet<&str> = slugs.into();
        let kept: Vec<String> = h
            .unlisted_today(&listed)
            .into_iter()
            .map(|e| e.slug)
            .collect();
        assert_eq!(kept, ["gone"]);

        // `--full`: today's manifest is still read (to keep its good entries), nothing else.
        let h = load(&store, &owner, day(25), &slugs, true).await;
        assert!(h.today.is_some());
        assert_eq!(h.baseline("api"), None);
        assert_eq!(h.baseline("lib"), None);

        // No manifest today: a first run of the day.
        let h = load(&store, &owner, day(24), &slugs, false).await;
        assert!(h.today.is_none());
        assert_eq!(found_in(&h, "api"), Some(day(23)));
    }

    fn found_in(h: &History, slug: &str) -> Option<NaiveDate> {
        h.baseline(slug).map(|b| b.date)
    }

    #[tokio::test]
    async fn the_search_looks_back_a_bounded_number_of_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().to_path_buf());
        let owner = OwnerLayout::new(Some("git"), "acme").unwrap();
        let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        // `old` only in the first folder, `recent` only in the 31st before the run.
        let run = first + chrono::Days::new(MAX_LOOKBACK as u64 + 1);
        put_manifest(
            &store,
            &manifest(first, vec![entry("old", Status::Ok, first)]),
        )
        .await;
        for n in 1..=MAX_LOOKBACK as u64 {
            let d = first + chrono::Days::new(n);
            let entries = if n == 1 {
                vec![entry("recent", Status::Ok, d)]
            } else {
                vec![]
            };
            put_manifest(&store, &manifest(d, entries)).await;
        }
        let h = load(&store, &owner, run, &["old", "recent"], false).await;
        assert_eq!(found_in(&h, "recent"), Some(first + chrono::Days::new(1)));
        assert_eq!(found_in(&h, "old"), None, "32 folders back is too far");
    }
}
