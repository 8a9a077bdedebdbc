//! `Manifest::from_json`: what `snapshots`, `verify`, `restore`, `prune` and incremental runs
//! read back from a store that others can write to.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use git_offsite::manifest::{Encryption, Manifest, RepoEntry, Status, Summary};
use proptest::prelude::*;

use super::{config, garbled, one_line};

const KEY: &str = "git/acme/2026-11-24/manifest.json";

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
}

/// Any text, control characters included (`any::<String>()` has none).
fn text() -> impl Strategy<Value = String> {
    "(?s:.){0,12}"
}

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(vec![
        Status::Ok,
        Status::Unchanged,
        Status::Empty,
        Status::Failed,
        Status::Pruned,
        Status::Unknown,
    ])
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(s, ns)| DateTime::from_timestamp(s, ns).expect("in range"))
}

fn day() -> impl Strategy<Value = NaiveDate> {
    (0i64..40_000)
        .prop_map(|d| NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(d as u64))
}

fn encryption() -> impl Strategy<Value = Encryption> {
    (text(), "sha256:[0-9a-f]{64}", any::<u64>(), "[0-9a-f]{64}").prop_map(
        |(scheme, recipients, plaintext_size, plaintext_sha256)| Encryption {
            scheme,
            recipients,
            plaintext_size,
            plaintext_sha256,
        },
    )
}

fn entry() -> impl Strategy<Value = RepoEntry> {
    (
        (text(), text(), status(), prop::option::of(text())),
        // Any size: a manifest from a store can claim anything.
        (
            prop::option::of(any::<u64>()),
            prop::option::of("[0-9a-f]{64}"),
        ),
        (
            prop::option::of("refs/heads/[a-z]{1,8}"),
            prop::collection::btree_map("refs/[a-z/]{1,12}", "[0-9a-f]{40}", 0..4),
            prop::option::of(text()),
        ),
        (
            prop::option::of(day()),
            any::<u64>(),
            prop::option::of(encryption()),
        ),
    )
        .prop_map(
            |(
                (slug, full_name, status, key),
                (size, sha256),
                (head, refs, error),
                (since, duration_ms, encryption),
            )| {
                RepoEntry {
                    slug,
                    full_name,
                    status,
                    key,
                    size,
                    sha256,
                    head,
                    refs: refs.into_iter().collect::<BTreeMap<_, _>>(),
                    error,
                    since,
                    duration_ms,
                    encryption,
                }
            },
        )
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        1u32..5,
        text(),
        time(),
        time(),
        prop::collection::vec(entry(), 0..6),
    )
        .prop_map(
            |(format, tool, started_at, finished_at, repositories)| Manifest {
                format,
                tool,
                provider: "bitbucket".into(),
                owner: "acme".into(),
                date: date(),
                started_at,
                finished_at,
                // Set by the test, so that a panic in it is a shrunk test failure.
                summary: Summary::default(),
                repositories,
            },
        )
}

/// What the tool computes from any manifest it reads must not panic either.
fn check_any(bytes: &[u8]) {
    match Manifest::from_json(bytes, KEY, "acme", date()) {
        Ok(m) => {
            let s = Summary::of(&m.repositories);
            assert_eq!(
                s.ok + s.unchanged + s.empty + s.failed + s.pruned,
                m.repositories.len()
            );
            let _ = m.restorable_bytes();
            let back = Manifest::from_json(&m.to_json(), KEY, "acme", date()).unwrap();
            assert_eq!(back, m);
        }
        Err(e) => {
            let text = e.to_string();
            one_line(&text);
            assert!(text.contains(KEY), "{text}");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifest_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_any(&bytes);
    }

    #[test]
    fn manifest_garbled_manifests_error_cleanly(
        bytes in manifest().prop_flat_map(|m| garbled(m.to_json()))
    ) {
        check_any(&bytes);
    }

    #[test]
    fn manifest_generated_manifests_read_back_equal(m in manifest()) {
        let m = Manifest { summary: Summary::of(&m.repositories), ..m };
        let back = Manifest::from_json(&m.to_json(), KEY, "acme", date()).unwrap();
        prop_assert_eq!(&back, &m);
        let sizes = m.repositories.iter().filter(|r| r.status.has_bundle()).filter_map(|r| r.size);
        prop_assert_eq!(
            m.restorable_bytes(),
            sizes.fold(0u64, u64::saturating_add)
        );
    }

    /// Owner and date come from the folder: a manifest that claims another refuses to read,
    /// and says so on one line whatever the claim holds.
    #[test]
    fn manifest_misplaced_names_both_places_on_one_line(owner in text(), m in manifest()) {
        prop_assume!(owner != "acme");
        let moved = Manifest { owner: owner.clone(), ..m };
        let e = Manifest::from_json(&moved.to_json(), KEY, "acme", date()).unwrap_err();
        let text = e.to_string();
        one_line(&text);
        prop_assert!(text.contains(KEY) && text.contains("acme 2026-11-24"), "{}", text);
    }
}

/// Found by `manifest_generated_manifests_read_back_equal`: two bundles whose sizes add past
/// `u64::MAX` (only a damaged or hostile manifest says so) overflowed `Summary::of`, which
/// `prune` runs on every manifest it rewrites.
#[test]
fn manifest_summary_of_huge_sizes_saturates() {
    let big = |slug: &str| RepoEntry {
        slug: slug.into(),
        full_name: format!("acme/{slug}"),
        status: Status::Ok,
        key: None,
        size: Some(u64::MAX - 1),
        sha256: None,
        head: None,
        refs: BTreeMap::new(),
        error: None,
        since: None,
        duration_ms: 0,
        encryption: None,
    };
    let entries = [big("a"), big("b")];
    assert_eq!(Summary::of(&entries).bytes, u64::MAX);
}
