//! Incremental runs: which repositories can skip the clone because an earlier run's bundle is
//! still exact.
//!
//! Most repositories do not change overnight, and a nightly run that clones and uploads every
//! one of them again moves the whole workspace every day. A bundle restores exactly the refs
//! written into its manifest entry, so when the remote still advertises the same refs (every
//! name and object id) and the same default branch, that bundle *is* today's backup. Asking
//! the remote costs one ref advertisement per repository; no pack is requested.
//!
//! The rules, kept here as a pure function ([`decide`]) so they can be read and tested as a
//! table:
//!
//! - The baseline of a repository is the entry of the newest manifest (same destination and
//!   owner) that holds it as `ok` or `unchanged`: today's, on a second run of the same day,
//!   else the newest earlier one ([`super::history::load`]).
//! - Anything that differs (a ref added, deleted or moved, the default branch) or an entry that
//!   is not fit to be reused (no key, size or checksum, a key outside the owner's folder or of
//!   another repository) means a normal clone and upload.
//! - Same refs, baseline from today: the entry stays as it is, nothing is copied.
//! - Same refs, earlier baseline: `--unchanged copy` copies the bundle server-side into
//!   today's folder (every date folder stays self-contained); `--unchanged reference` points
//!   the entry at the earlier object. Either way the entry is `unchanged`, with the earlier
//!   size, checksum, refs and head, and `since` = the date of the run that made the bundle.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use crate::cli::UnchangedMode;
use crate::layout::OwnerLayout;
use crate::manifest::{RepoEntry, Status};
use crate::mirror::RemoteRefs;

/// An earlier run's entry for one repository (`ok` or `unchanged`), with its folder's date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    pub date: NaiveDate,
    pub entry: RepoEntry,
}

/// What to do with one repository whose remote refs are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Clone and upload as usual; why, for the log.
    Backup(String),
    /// The baseline is today's: keep its entry exactly as it is; nothing is copied.
    Keep(RepoEntry),
    /// Copy the object `from` server-side to `entry.key` (this run's folder).
    Copy { from: String, entry: RepoEntry },
    /// No copy: `entry.key` is the earlier object, which must still exist with `entry.size`.
    Reference(RepoEntry),
}

/// The run asking: its date folder and mode.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub date: NaiveDate,
    pub owner: &'a OwnerLayout,
    /// Where this run writes the repository's bundle.
    pub key: &'a str,
    pub mode: UnchangedMode,
    /// The fingerprint of the keys this run encrypts to; `None` when it writes plain bundles.
    pub recipients: Option<&'a str>,
}

/// The rules of the module doc. `remote` is what the remote advertises now, `baseline` the
/// newest earlier entry holding a bundle. The entry returned for `Copy` and `Reference` is
/// the baseline's with `status`, `key` and `since` set (the caller sets `full_name` and
/// `duration_ms` from this run).
pub fn decide(remote: &RemoteRefs, baseline: &Baseline, run: &Run<'_>) -> Decision {
    let e = &baseline.entry;
    if !e.status.has_bundle() {
        return Decision::Backup(format!("the entry of {} holds no bundle", baseline.date));
    }
    let (Some(key), Some(_), Some(_)) = (&e.key, e.size, &e.sha256) else {
        return Decision::Backup(format!(
            "the entry of {} lacks a key, size or checksum",
            baseline.date
        ));
    };
    match run.owner.parse_bundle_key(key) {
        Some((_, slug)) if slug == e.slug => {}
        _ => {
            return Decision::Backup(format!(
                "the entry of {} names `{key}`, which is not a bundle of this repository in the owner's folder",
                baseline.date
            ));
        }
    }
    if let Some(why) = encryption_change(e.recipients(), run.recipients) {
        return Decision::Backup(format!("the bundle of {} {why}", baseline.date));
    }
    if remote.refs.is_empty() {
        return Decision::Backup("the remote has no refs".into());
    }
    if let Some(change) = ref_change(&e.refs, &remote.refs) {
        return Decision::Backup(format!("{change} since {}", baseline.date));
    }
    if remote.head != e.head {
        return Decision::Backup(format!(
            "the default branch changed from {} to {} since {}",
            e.head.as_deref().unwrap_or("none"),
            remote.head.as_deref().unwrap_or("none"),
            baseline.date
        ));
    }
    if baseline.date == run.date {
        return Decision::Keep(e.clone());
    }
    let since = match e.status {
        // Carried along a chain of unchanged runs; an entry without it (written by hand or by
        // an older version) dates from its own run at the latest.
        Status::Unchanged => e.since.unwrap_or(baseline.date),
        _ => baseline.date,
    };
    let mut entry = e.clone();
    entry.status = Status::Unchanged;
    entry.since = Some(since);
    entry.error = None;
    match run.mode {
        UnchangedMode::Copy => {
            entry.key = Some(run.key.to_string());
            Decision::Copy {
                from: key.clone(),
                entry,
            }
        }
        UnchangedMode::Reference => Decision::Reference(entry),
    }
}

/// Why an earlier bundle's encryption does not do for this run, in words; `None` when it
/// does (both plain, or both encrypted to the same set of keys).
fn encryption_change(before: Option<&str>, now: Option<&str>) -> Option<&'static str> {
    match (before, now) {
        (None, None) => None,
        (Some(a), Some(b)) if a == b => None,
        (None, Some(_)) => Some("is not encrypted, and this run encrypts"),
        (Some(_), None) => Some("is encrypted, and this run writes plain bundles"),
        (Some(_), Some(_)) => Some("is encrypted to other recipients than this run's"),
    }
}

/// The first difference between two ref maps, in words; `None` when they are equal.
fn ref_change(before: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Option<String> {
    if before == now {
        return None;
    }
    let changed = before
        .keys()
        .chain(now.keys())
        .filter(|name| before.get(*name) != now.get(*name))
        .collect::<BTreeSet<_>>();
    let first = changed.iter().next()?;
    let what = match (before.get(*first), now.get(*first)) {
        (None, _) => "is new",
        (_, None) => "was deleted",
        _ => "moved",
    };
    let more = match changed.len() {
        1 => String::new(),
        n => format!(" (and {} more refs changed)", n - 1),
    };
    Some(format!("{first} {what}{more}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn refs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(n, o)| (n.to_string(), o.to_string()))
            .collect()
    }

    /// The repository as yesterday's (24th) run bundled it.
    fn good_refs() -> BTreeMap<String, String> {
        refs(&[
            ("refs/heads/main", A),
            ("refs/heads/dev", B),
            ("refs/tags/v1", C),
        ])
    }

    fn entry(status: Status, date: NaiveDate) -> RepoEntry {
        RepoEntry {
            slug: "api".into(),
            full_name: "acme/api".into(),
            status,
            key: Some(format!("git/acme/{date}/api.bundle")),
            size: Some(1234),
            sha256: Some("ab".repeat(32)),
            head: Some("refs/heads/main".into()),
            refs: good_refs(),
            error: None,
            since: None,
            duration_ms: 7,
            encryption: None,
        }
    }

    fn remote(refs: BTreeMap<String, String>, head: &str) -> RemoteRefs {
        RemoteRefs {
            refs,
            head: Some(head.into()).filter(|h: &String| !h.is_empty()),
        }
    }

    enum Want {
        Backup(&'static str),
        Keep,
        /// from, key, since
        Copy(&'static str, &'static str, NaiveDate),
        /// key, since
        Reference(&'static str, NaiveDate),
    }

    #[test]
    fn decisions() {
        let owner = OwnerLayout::new(Some("git"), "acme").unwrap();
        let today_key = "git/acme/2026-11-25/api.bundle";
        let same = || remote(good_refs(), "refs/heads/main");
        let with = |f: &dyn Fn(&mut BTreeMap<String, String>)| {
            let mut r = good_refs();
            f(&mut r);
            remote(r, "refs/heads/main")
        };
        let ok24 = Baseline {
            date: day(24),
            entry: entry(Status::Ok, day(24)),
        };
        // Copied on the 24th from the 20th's bundle.
        let unchanged24 = Baseline {
            date: day(24),
            entry: RepoEntry {
                since: Some(day(20)),
                ..entry(Status::Unchanged, day(24))
            },
        };
        // Referenced on the 24th: the key is still the 20th's object.
        let referenced24 = Baseline {
            date: day(24),
            entry: RepoEntry {
                since: Some(day(20)),
                ..entry(Status::Unchanged, day(20))
            },
        };
        let ok_today = Baseline {
            date: day(25),
            entry: entry(Status::Ok, day(25)),
        };
        let edit = |b: &Baseline, f: &dyn Fn(&mut RepoEntry)| {
            let mut b = b.clone();
            f(&mut b.entry);
            b
        };
        use UnchangedMode::{Copy, Reference};
        let k24 = "git/acme/2026-11-24/api.bundle";
        let k20 = "git/acme/2026-11-20/api.bundle";
        let set = |name: &'static str, oid: &'static str| {
            with(&move |r| {
                r.insert(name.into(), oid.into());
            })
        };
        let del = |name: &'static str| {
            with(&move |r| {
                r.remove(name);
            })
        };
        // One line per case: name, remote now, baseline, mode, expected decision.
        #[rustfmt::skip]
        let cases: Vec<(&str, RemoteRefs, Baseline, UnchangedMode, Want)> = vec![
            ("same refs, copy", same(), ok24.clone(), Copy, Want::Copy(k24, today_key, day(24))),
            ("same refs, reference", same(), ok24.clone(), Reference, Want::Reference(k24, day(24))),
            ("an unchanged baseline carries its since", same(), unchanged24.clone(), Copy,
                Want::Copy(k24, today_key, day(20))),
            ("a referenced baseline keeps pointing at the first object", same(), referenced24.clone(),
                Reference, Want::Reference(k20, day(20))),
            ("a referenced baseline is copied from the first object", same(), referenced24, Copy,
                Want::Copy(k20, today_key, day(20))),
            ("unchanged without since dates from its own run", same(),
                edit(&unchanged24, &|e| e.since = None), Copy, Want::Copy(k24, today_key, day(24))),
            ("today's baseline is kept (copy)", same(), ok_today.clone(), Copy, Want::Keep),
            ("today's baseline is kept (reference)", same(), ok_today.clone(), Reference, Want::Keep),
            ("a new commit on a branch", set("refs/heads/dev", A), ok24.clone(), Copy,
                Want::Backup("refs/heads/dev moved since 2026-11-24")),
            ("same names, one oid differs", set("refs/heads/main", C), ok24.clone(), Reference,
                Want::Backup("refs/heads/main moved")),
            ("a deleted branch", del("refs/heads/dev"), ok24.clone(), Copy,
                Want::Backup("refs/heads/dev was deleted")),
            ("a new branch", set("refs/heads/zzz", A), ok24.clone(), Copy,
                Want::Backup("refs/heads/zzz is new")),
            ("a moved tag", set("refs/tags/v1", A), ok24.clone(), Copy,
                Want::Backup("refs/tags/v1 moved")),
            ("several changes are counted", with(&|r| *r = refs(&[("refs/heads/x", A)])),
                ok24.clone(), Copy, Want::Backup("and 3 more refs changed")),
            ("a change beats today's baseline", del("refs/tags/v1"), ok_today, Copy,
                Want::Backup("refs/tags/v1 was deleted")),
            ("the default branch changed", remote(good_refs(), "refs/heads/dev"), ok24.clone(), Copy,
                Want::Backup("default branch changed from refs/heads/main to refs/heads/dev")),
            ("the default branch is gone", remote(good_refs(), ""), ok24.clone(), Copy,
                Want::Backup("default branch changed from refs/heads/main to none")),
            ("the remote is empty now", remote(BTreeMap::new(), ""), ok24.clone(), Copy,
                Want::Backup("no refs")),
            ("a failed entry is no baseline", same(), edit(&ok24, &|e| e.status = Status::Failed),
                Copy, Want::Backup("holds no bundle")),
            ("no checksum", same(), edit(&ok24, &|e| e.sha256 = None), Copy, Want::Backup("checksum")),
            ("no size", same(), edit(&ok24, &|e| e.size = None), Copy, Want::Backup("size")),
            ("no key", same(), edit(&ok24, &|e| e.key = None), Reference, Want::Backup("key")),
            ("a key outside the owner's folder", same(),
                edit(&ok24, &|e| e.key = Some("elsewhere/acme/2026-11-24/api.bundle".into())),
                Reference, Want::Backup("not a bundle of this repository")),
            ("another repository's bundle", same(),
                edit(&ok24, &|e| e.key = Some("git/acme/2026-11-24/web.bundle".into())),
                Copy, Want::Backup("not a bundle of this repository")),
        ];
        for (name, remote, baseline, mode, want) in cases {
            let run = Run {
                date: day(25),
                owner: &owner,
                key: today_key,
                mode,
                recipients: None,
            };
            let got = decide(&remote, &baseline, &run);
            let unchanged = |e: &RepoEntry, key: &str, since: NaiveDate| {
                assert_eq!(e.status, Status::Unchanged, "{name}");
                assert_eq!(e.key.as_deref(), Some(key), "{name}");
                assert_eq!(e.since, Some(since), "{name}");
                assert_eq!(
                    (&e.refs, &e.head, e.size, &e.sha256),
                    (
                        &baseline.entry.refs,
                        &baseline.entry.head,
                        baseline.entry.size,
                        &baseline.entry.sha256
                    ),
                    "{name}: refs, head, size and checksum come from the baseline"
                );
            };
            match (&want, &got) {
                (Want::Backup(why), Decision::Backup(got_why)) => {
                    assert!(got_why.contains(why), "{name}: {got_why:?} lacks {why:?}")
                }
                (Want::Keep, Decision::Keep(e)) => assert_eq!(e, &baseline.entry, "{name}"),
                (Want::Copy(from, key, since), Decision::Copy { from: f, entry }) => {
                    assert_eq!(f, from, "{name}");
                    unchanged(entry, key, *since);
                }
                (Want::Reference(key, since), Decision::Reference(entry)) => {
                    unchanged(entry, key, *since)
                }
                _ => panic!("{name}: got {got:?}"),
            }
        }
    }

    /// An earlier bundle serves again only when it is encrypted exactly as this run would
    /// encrypt it: plain for plain, and to the same set of keys.
    #[test]
    fn encryption_must_match_the_run() {
        let owner = OwnerLayout::new(Some("git"), "acme").unwrap();
        let same = remote(good_refs(), "refs/heads/main");
        let sealed = |fp: &str, date: NaiveDate| RepoEntry {
            key: Some(format!("git/acme/{date}/api.bundle.age")),
            encryption: Some(crate::manifest::Encryption {
                scheme: "age".into(),
                recipients: fp.into(),
                plaintext_size: 1000,
                plaintext_sha256: "cd".repeat(32),
            }),
            ..entry(Status::Ok, date)
        };
        let plain24 = Baseline {
            date: day(24),
            entry: entry(Status::Ok, day(24)),
        };
        let sealed24 = Baseline {
            date: day(24),
            entry: sealed("sha256:aa", day(24)),
        };
        let sealed_today = Baseline {
            date: day(25),
            entry: sealed("sha256:aa", day(25)),
        };
        let run = |recipients, key| Run {
            date: day(25),
            owner: &owner,
            key,
            mode: UnchangedMode::Copy,
            recipients,
        };
        let plain_key = "git/acme/2026-11-25/api.bundle";
        let sealed_key = "git/acme/2026-11-25/api.bundle.age";
        let backup = |d: Decision| match d {
            Decision::Backup(why) => why,
            other => panic!("expected a full backup, got {other:?}"),
        };
        let why = backup(decide(&same, &plain24, &run(Some("sha256:aa"), sealed_key)));
        assert!(why.contains("not encrypted"), "{why}");
        let why = backup(decide(&same, &sealed24, &run(None, plain_key)));
        assert!(why.contains("plain"), "{why}");
        let why = backup(decide(
            &same,
            &sealed24,
            &run(Some("sha256:bb"), sealed_key),
        ));
        assert!(why.contains("other recipients"), "{why}");
        let why = backup(decide(&same, &sealed_today, &run(None, plain_key)));
        assert!(why.contains("plain"), "today's baseline too: {why}");
        match decide(&same, &sealed24, &run(Some("sha256:aa"), sealed_key)) {
            Decision::Copy { from, entry } => {
                assert_eq!(from, "git/acme/2026-11-24/api.bundle.age");
                assert_eq!(entry.key.as_deref(), Some(sealed_key));
                assert_eq!(entry.encryption, sealed24.entry.encryption);
            }
            other => panic!("same keys: copy, got {other:?}"),
        }
    }
}
