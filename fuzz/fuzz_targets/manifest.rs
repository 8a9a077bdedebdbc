//! The manifest reader (`Manifest::from_json`) on arbitrary bytes: what `snapshots`, `verify`,
//! `restore`, `prune` and incremental runs read back from a store.
//!
//! Beyond "no panic": a manifest that reads lies where it was read from (owner, date, a real
//! format); what the tool then computes from it (its summary, as `prune` rewrites it, and the
//! restorable bytes `snapshots` shows) cannot panic; written back out it reads back equal;
//! and a refusal is one line that names the manifest's key.
#![no_main]

use chrono::NaiveDate;
use git_offsite::manifest::{Manifest, Summary};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "git/acme/2026-11-24/manifest.json";

fuzz_target!(|data: &[u8]| {
    let date = NaiveDate::from_ymd_opt(2026, 11, 24).expect("a date");
    // The folder the seeds lie in, and the folder the bytes themselves claim (when they
    // name one), so that mutated owners and dates still reach the checks below.
    let mut places = vec![("acme".to_string(), date)];
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
        && let (Some(owner), Some(d)) = (v["owner"].as_str(), v["date"].as_str())
        && let Ok(d) = d.parse::<NaiveDate>()
    {
        places.push((owner.to_string(), d));
    }
    for (owner, date) in places {
        match Manifest::from_json(data, KEY, &owner, date) {
            Ok(m) => check(m, &owner, date),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(KEY), "{text}");
                assert!(!text.contains('\n'), "{text:?}");
            }
        }
    }
});

fn check(mut m: Manifest, owner: &str, date: NaiveDate) {
    assert!(m.format != 0);
    assert_eq!((m.owner.as_str(), m.date), (owner, date));
    let summary = Summary::of(&m.repositories);
    let counted = summary.ok + summary.unchanged + summary.empty + summary.failed + summary.pruned;
    assert_eq!(counted, m.repositories.len());
    let restorable = m.restorable_bytes();
    assert!(
        m.repositories
            .iter()
            .filter(|r| r.status.has_bundle())
            .all(|r| r.size.unwrap_or(0) <= restorable)
    );
    // What `prune` does to a manifest it keeps: recompute the summary, write it back.
    m.summary = summary;
    let written = m.to_json();
    let back = Manifest::from_json(&written, KEY, owner, date).expect("a written manifest reads");
    assert_eq!(back, m);
    assert_eq!(back.to_json(), written);
}
