//! What a prune would do, worked out from what the destination holds, without touching it:
//! which date folders the policy keeps, which objects go, and which manifests stay behind
//! rewritten. Pure, so every hazard is unit-tested without a store.
//!
//! The hazard: a folder the policy removes may hold a bundle that must stay — one a kept
//! manifest references (`--unchanged reference`), or a repository's newest good bundle when
//! newer snapshots no longer have one (the repository was deleted, renamed or hidden at the
//! host, or keeps failing). Deleting that folder's manifest would make the folder look like
//! an interrupted run to the next prune, which would delete the bundle, and the repository
//! would be forgotten. So such a folder keeps its manifest, rewritten to list what it still
//! holds and mark the rest `pruned` ([`Action::Partial`]); it stays a complete snapshot that
//! `snapshots`, `verify` and `restore` read.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Days, NaiveDate};

use crate::catalog::ManifestState;
use crate::layout::OwnerLayout;
use crate::manifest::{Manifest, RepoEntry};
use crate::retention::Policy;
use crate::store::{Key, ObjectMeta};

/// What the destination holds in one date folder.
#[derive(Debug, Clone)]
pub struct Folder {
    pub date: NaiveDate,
    /// Every object in it, the manifest too.
    pub objects: Vec<ObjectMeta>,
    pub manifest: ManifestState,
}

/// What happens to a date folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Kept by a rule (or because it is today's, or from the future): untouched.
    Keep,
    /// Every object removed.
    Remove,
    /// Removed but for bundles that must stay; its manifest is rewritten to list only those.
    Partial,
    /// Not touched, not counted: a recent incomplete run, or an unreadable manifest.
    Leave,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Remove => "remove",
            Action::Partial => "partial",
            Action::Leave => "leave",
        }
    }
}

/// A repository found in some manifest but not in the newest snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vanished {
    pub slug: String,
    /// The newest snapshot that lists it.
    pub last_seen: NaiveDate,
    /// The snapshot whose entry holds its newest good bundle, if any.
    pub bundle_of: Option<NaiveDate>,
    /// Whether that bundle is kept (`false`: `--forget-vanished-after` let it go).
    pub kept: bool,
}

#[derive(Debug, Clone)]
pub struct FolderPlan {
    pub date: NaiveDate,
    pub state: &'static str,
    pub action: Action,
    /// Why: the rules that keep it, or why it goes or stays, and what it keeps.
    pub reasons: Vec<String>,
    /// Objects to remove, oldest folder first, bundles before the manifest.
    pub remove: Vec<ObjectMeta>,
    /// The manifest object, removed once every object above is gone (not for
    /// [`Action::Partial`]).
    pub remove_manifest: Option<ObjectMeta>,
    /// The manifest of a complete folder that is not kept: what a rewrite starts from.
    pub manifest: Option<Box<Manifest>>,
    /// Entries (slugs) that must stay listed: [`Action::Partial`] when not empty.
    pub stay: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub folders: Vec<FolderPlan>,
    pub vanished: Vec<Vanished>,
}

pub struct PlanOptions<'a> {
    pub owner: &'a OwnerLayout,
    pub policy: &'a Policy,
    pub today: NaiveDate,
    /// Forget a vanished repository's last bundle when it was last seen more than this many
    /// days before the newest snapshot.
    pub forget_vanished_after: Option<u64>,
}

/// Why a key must stay: the snapshots whose entries list it.
type Protected = BTreeMap<String, BTreeSet<String>>;

pub fn plan(folders: &[Folder], opts: &PlanOptions<'_>) -> Plan {
    let complete: BTreeMap<NaiveDate, &Manifest> = folders
        .iter()
        .filter_map(|f| f.manifest.manifest().map(|m| (f.date, m)))
        .collect();
    let dates: Vec<NaiveDate> = complete.keys().copied().collect();
    let mut kept: BTreeMap<NaiveDate, Vec<String>> = opts
        .policy
        .apply(&dates)
        .into_iter()
        .map(|(d, why)| (d, why.iter().map(ToString::to_string).collect()))
        .collect();
    for &d in dates.iter().filter(|d| **d >= opts.today) {
        // A run may be writing today's folder; a future one is somebody's clock problem.
        let why = if d == opts.today {
            "today"
        } else {
            "future date"
        };
        kept.entry(d).or_default().push(why.into());
    }

    // Every bundle a kept manifest lists stays, wherever it lies.
    let mut protected: Protected = BTreeMap::new();
    for (date, m) in &complete {
        if kept.contains_key(date) {
            for e in m.repositories.iter().filter(|e| e.status.has_bundle()) {
                if let Some(k) = &e.key {
                    protected
                        .entry(k.clone())
                        .or_default()
                        .insert(format!("referenced by {date}"));
                }
            }
        }
    }
    // Entries of removed manifests that must stay listed: (date, slug).
    let mut listed: BTreeSet<(NaiveDate, String)> = BTreeSet::new();
    let vanished = newest_bundles(&complete, &kept, opts, &mut protected, &mut listed);

    let folders = folders
        .iter()
        .map(|f| folder_plan(f, opts, &kept, &protected, &listed))
        .collect();
    Plan { folders, vanished }
}

/// For every repository any manifest lists: its newest good bundle stays, even when newer
/// snapshots do not have one, unless it vanished longer ago than `forget_vanished_after`.
fn newest_bundles(
    complete: &BTreeMap<NaiveDate, &Manifest>,
    kept: &BTreeMap<NaiveDate, Vec<String>>,
    opts: &PlanOptions<'_>,
    protected: &mut Protected,
    listed: &mut BTreeSet<(NaiveDate, String)>,
) -> Vec<Vanished> {
    let Some(newest) = complete.keys().next_back().copied() else {
        return Vec::new();
    };
    let mut last_seen: BTreeMap<&str, NaiveDate> = BTreeMap::new();
    let mut last_bundle: BTreeMap<&str, (NaiveDate, &RepoEntry)> = BTreeMap::new();
    for (date, m) in complete {
        for e in &m.repositories {
            last_seen.insert(&e.slug, *date);
            if e.status.has_bundle() && e.key.is_some() {
                last_bundle.insert(&e.slug, (*date, e));
            }
        }
    }
    let mut vanished = Vec::new();
    for (slug, seen) in last_seen {
        let bundle = last_bundle.get(slug);
        let gone = seen < newest;
        let forget = gone
            && opts.forget_vanished_after.is_some_and(|days| {
                newest
                    .checked_sub_days(Days::new(days))
                    .is_some_and(|cut| seen < cut)
            });
        if gone {
            vanished.push(Vanished {
                slug: slug.to_string(),
                last_seen: seen,
                bundle_of: bundle.map(|(d, _)| *d),
                kept: bundle.is_some() && !forget,
            });
        }
        let Some((date, entry)) = bundle else {
            continue;
        };
        if forget || kept.contains_key(date) {
            continue;
        }
        let key = entry.key.clone().expect("filtered above");
        let why = if gone {
            format!("last bundle of vanished `{slug}`")
        } else {
            format!("last good bundle of `{slug}`")
        };
        protected.entry(key).or_default().insert(why);
        listed.insert((*date, slug.to_string()));
    }
    vanished
}

fn folder_plan(
    f: &Folder,
    opts: &PlanOptions<'_>,
    kept: &BTreeMap<NaiveDate, Vec<String>>,
    protected: &Protected,
    listed: &BTreeSet<(NaiveDate, String)>,
) -> FolderPlan {
    let manifest_key = opts.owner.run(f.date).manifest();
    let mut p = FolderPlan {
        date: f.date,
        state: "complete",
        action: Action::Keep,
        reasons: Vec::new(),
        remove: Vec::new(),
        remove_manifest: None,
        manifest: None,
        stay: BTreeSet::new(),
    };
    let manifest = match &f.manifest {
        ManifestState::Complete(m) => m,
        ManifestState::Missing => {
            p.state = "incomplete";
            // Older than a day: yesterday's folder may belong to a run still going.
            let stale = opts
                .today
                .checked_sub_days(Days::new(1))
                .is_some_and(|y| f.date < y);
            if !stale {
                p.action = Action::Leave;
                p.reasons
                    .push("incomplete: a run may still be writing it".into());
                return p;
            }
            p.action = Action::Remove;
            p.reasons
                .push("incomplete (no manifest), older than a day".into());
            p.remove = removable(f, protected, &manifest_key, &mut p.reasons);
            return p;
        }
        ManifestState::Unreadable(why) => {
            p.state = "unreadable";
            p.action = Action::Leave;
            p.reasons
                .push(format!("manifest unreadable, left alone: {why}"));
            return p;
        }
    };
    if let Some(why) = kept.get(&f.date) {
        p.reasons = why.clone();
        return p;
    }
    p.reasons.push("no rule keeps it".into());
    p.remove = removable(f, protected, &manifest_key, &mut p.reasons);
    let stay: BTreeSet<String> = manifest
        .repositories
        .iter()
        .filter(|e| listed.contains(&(f.date, e.slug.clone())))
        .map(|e| e.slug.clone())
        .collect();
    if stay.is_empty() {
        p.action = Action::Remove;
        p.remove_manifest = f.objects.iter().find(|o| o.key == manifest_key).cloned();
    } else {
        p.action = Action::Partial;
        p.reasons.push(format!(
            "manifest kept for {}",
            stay.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    p.manifest = Some(manifest.clone());
    p.stay = stay;
    p
}

/// The folder's objects but its manifest and the protected ones (named in `reasons`).
fn removable(
    f: &Folder,
    protected: &Protected,
    manifest: &Key,
    reasons: &mut Vec<String>,
) -> Vec<ObjectMeta> {
    let mut out = Vec::new();
    for o in &f.objects {
        if o.key == *manifest {
            continue;
        }
        match protected.get(o.key.as_str()) {
            Some(why) => {
                let name = o.key.as_str().rsplit('/').next().unwrap_or(o.key.as_str());
                let why: Vec<&str> = why.iter().map(String::as_str).collect();
                reasons.push(format!("keeps {name} ({})", why.join(", ")));
            }
            None => out.push(o.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Status;
    use crate::manifest::fixtures::{entry, manifest};
    use crate::retention::Count;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn owner() -> OwnerLayout {
        OwnerLayout::new(Some("git"), "acme").unwrap()
    }

    fn meta(key: String) -> ObjectMeta {
        ObjectMeta {
            key: Key::new(key).unwrap(),
            size: 10,
            metadata: BTreeMap::new(),
        }
    }

    /// A complete folder: the manifest plus a bundle for each `ok` entry lying in it.
    fn folder(date: NaiveDate, entries: Vec<RepoEntry>) -> Folder {
        let mut objects = vec![meta(format!("git/acme/{date}/manifest.json"))];
        for e in &entries {
            if let Some(k) = e.key.as_ref().filter(|k| k.contains(&date.to_string())) {
                objects.push(meta(k.clone()));
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Folder {
            date,
            objects,
            manifest: ManifestState::Complete(Box::new(manifest(date, entries))),
        }
    }

    fn run(folders: &[Folder], last: u32, today: NaiveDate, forget: Option<u64>) -> Plan {
        let policy = Policy {
            last: Some(Count::N(last)),
            ..Policy::default()
        };
        let owner = owner();
        plan(
            folders,
            &PlanOptions {
                owner: &owner,
                policy: &policy,
                today,
                forget_vanished_after: forget,
            },
        )
    }

    fn of(p: &Plan, date: NaiveDate) -> &FolderPlan {
        p.folders.iter().find(|f| f.date == date).unwrap()
    }

    fn removed(f: &FolderPlan) -> Vec<&str> {
        f.remove.iter().map(|o| o.key.as_str()).collect()
    }

    #[test]
    fn a_referenced_bundle_stays_and_its_folder_manifest_goes() {
        // Day 20 made `web`; days 21 and 22 reference it (`--unchanged reference`).
        let ok = Status::Ok;
        let folders = [
            folder(
                day(20),
                vec![entry("api", ok, day(20)), entry("web", ok, day(20))],
            ),
            folder(
                day(21),
                vec![
                    entry("api", ok, day(21)),
                    entry("web", Status::Unchanged, day(20)),
                ],
            ),
            folder(
                day(22),
                vec![
                    entry("api", ok, day(22)),
                    entry("web", Status::Unchanged, day(20)),
                ],
            ),
        ];
        let p = run(&folders, 1, day(25), None);
        assert_eq!(of(&p, day(22)).action, Action::Keep);
        let d20 = of(&p, day(20));
        assert_eq!(removed(d20), ["git/acme/2026-11-20/api.bundle"]);
        assert!(
            d20.reasons
                .iter()
                .any(|r| r.contains("web.bundle") && r.contains("referenced by 2026-11-22")),
            "{:?}",
            d20.reasons
        );
        // The kept manifest of day 22 lists it, so day 20's manifest need not stay.
        assert_eq!(d20.action, Action::Remove);
        assert!(d20.remove_manifest.is_some());
        let d21 = of(&p, day(21));
        assert_eq!(removed(d21), ["git/acme/2026-11-21/api.bundle"]);
        assert!(p.vanished.is_empty());
    }

    #[test]
    fn a_vanished_repository_keeps_its_last_bundle_and_the_manifest_listing_it() {
        let ok = Status::Ok;
        let folders = [
            folder(
                day(10),
                vec![entry("api", ok, day(10)), entry("old", ok, day(10))],
            ),
            folder(
                day(11),
                vec![entry("api", ok, day(11)), entry("old", ok, day(11))],
            ),
            folder(
                day(12),
                vec![
                    entry("api", ok, day(12)),
                    entry("old", Status::Failed, day(12)),
                ],
            ),
            folder(day(13), vec![entry("api", ok, day(13))]),
        ];
        let p = run(&folders, 1, day(20), None);
        let d11 = of(&p, day(11));
        assert_eq!(d11.action, Action::Partial);
        assert_eq!(removed(d11), ["git/acme/2026-11-11/api.bundle"]);
        assert!(d11.remove_manifest.is_none());
        assert_eq!(d11.stay.iter().collect::<Vec<_>>(), ["old"]);
        // The older bundle of `old` and the failed day go entirely.
        assert_eq!(of(&p, day(10)).action, Action::Remove);
        assert_eq!(removed(of(&p, day(10))).len(), 2);
        assert_eq!(of(&p, day(12)).action, Action::Remove);
        assert_eq!(
            p.vanished,
            [Vanished {
                slug: "old".into(),
                last_seen: day(12),
                bundle_of: Some(day(11)),
                kept: true
            }]
        );
        // Last seen day 12, newest snapshot day 13: forgotten after 0 days, not after 1.
        let p = run(&folders, 1, day(20), Some(1));
        assert_eq!(of(&p, day(11)).action, Action::Partial);
        let p = run(&folders, 1, day(20), Some(0));
        assert_eq!(of(&p, day(11)).action, Action::Remove);
        assert!(!p.vanished[0].kept);
    }

    #[test]
    fn a_failing_repository_keeps_its_last_good_bundle() {
        let ok = Status::Ok;
        let folders = [
            folder(day(10), vec![entry("api", ok, day(10))]),
            folder(day(11), vec![entry("api", Status::Failed, day(11))]),
        ];
        let p = run(&folders, 1, day(20), None);
        let d10 = of(&p, day(10));
        assert_eq!(d10.action, Action::Partial);
        assert!(d10.remove.is_empty());
        assert!(
            d10.reasons
                .iter()
                .any(|r| r.contains("last good bundle of `api`")),
            "{:?}",
            d10.reasons
        );
        assert!(p.vanished.is_empty(), "still listed: not vanished");
    }

    #[test]
    fn incomplete_unreadable_and_today_folders() {
        let ok = Status::Ok;
        let today = day(20);
        let interrupted = |date: NaiveDate| Folder {
            date,
            objects: vec![meta(format!("git/acme/{date}/api.bundle"))],
            manifest: ManifestState::Missing,
        };
        let folders = [
            interrupted(day(17)),
            interrupted(day(18)),
            interrupted(day(19)),
            Folder {
                date: day(15),
                objects: vec![meta("git/acme/2026-11-15/manifest.json".into())],
                manifest: ManifestState::Unreadable("bad json".into()),
            },
            folder(day(16), vec![entry("api", ok, day(16))]),
            folder(today, vec![entry("api", ok, today)]),
            folder(day(21), vec![entry("api", ok, day(21))]),
        ];
        let p = run(&folders, 1, today, None);
        assert_eq!(of(&p, day(17)).action, Action::Remove);
        assert_eq!(removed(of(&p, day(17))), ["git/acme/2026-11-17/api.bundle"]);
        assert_eq!(of(&p, day(18)).action, Action::Remove, "two days old");
        assert_eq!(
            of(&p, day(19)).action,
            Action::Leave,
            "yesterday's may be running"
        );
        assert_eq!(of(&p, day(15)).action, Action::Leave);
        assert!(of(&p, day(15)).remove.is_empty());
        assert_eq!(of(&p, day(16)).action, Action::Remove);
        // `last 1` keeps the future folder; today's stays regardless.
        assert_eq!(of(&p, day(21)).action, Action::Keep);
        assert_eq!(of(&p, today).action, Action::Keep);
        assert_eq!(of(&p, today).reasons, ["today"]);
    }
}
