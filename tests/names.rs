//! Issue 9, "Untrusted names": what the API lists is checked before it names a file, a key or
//! a line on a terminal, and one bad entry never stops the others.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::bitbucket::{ListQuirks, RepoOpts};
use crate::support::git::empty_repo;
use crate::support::harness::TestEnv;
use crate::support::readback::entry;

const DATE: &str = "2026-11-24";

fn manifest(dest: &std::path::Path) -> serde_json::Value {
    TestEnv::local_manifest(dest, "acme", DATE)
}

fn patched(patch: Value) -> RepoOpts {
    RepoOpts {
        patch: Some(patch),
        ..RepoOpts::default()
    }
}

/// Unsafe slugs, a `full_name` of another owner, an entry with no clone link, and control
/// characters meant for the terminal: each is a failed repository with a reason, the good one
/// is backed up, nothing is written outside the date folder, and no raw control character
/// reaches stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_fail_alone_and_names_are_escaped() {
    let env = TestEnv::new().await;
    env.simple_repo("acme", "good", "main");
    let source = env.simple_repo("acme", "src", "main");
    let href = |slug: &str| format!("{}/acme/{slug}.git", env.emu.base_url());
    for (name, patch) in [
        ("dotdot", json!({"slug": "..", "full_name": "acme/.."})),
        (
            "traversal",
            json!({"slug": "../../escape", "full_name": "acme/../../escape"}),
        ),
        ("dash", json!({"slug": "-rf", "full_name": "acme/-rf"})),
        ("other-owner", json!({"full_name": "evil/other-owner"})),
        ("nolink", json!({"links": {"clone": []}})),
        (
            "ansi",
            json!({"slug": "ansi\u{1b}[2J\r", "full_name": "acme/ansi\u{1b}[2J\r"}),
        ),
        (
            "branchy",
            json!({"mainbranch": {"type": "branch", "name": "main\u{1b}]0;pwned\u{7}\nERROR forged"}}),
        ),
    ] {
        let mut patch = patch;
        if name != "nolink" {
            patch["links"] = json!({"clone": [{"name": "https", "href": href("src")}]});
        }
        env.emu.add_repo("acme", name, &source, patched(patch));
    }
    let (run, dest) = env.backup_dated("acme", DATE).await;
    run.expect_code(5);
    let m = manifest(&dest);
    assert_eq!(entry(&m, "good")["status"], "ok");
    assert_eq!(entry(&m, "src")["status"], "ok");
    let failed: Vec<&Value> = m["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 6, "{m:#}");
    for f in &failed {
        let error = f["error"].as_str().unwrap();
        assert!(
            error.contains("unsafe name")
                || error.contains("not `acme/other-owner`")
                || error.contains("no https clone link"),
            "{f}"
        );
        assert!(
            !f["slug"].as_str().unwrap().contains(['\u{1b}', '\r']),
            "{f}"
        );
    }
    // `branchy` is a safe name: backed up, its branch text kept only as data.
    assert_eq!(entry(&m, "branchy")["status"], "ok");
    let everything: Vec<_> = walk(&dest);
    assert!(
        everything
            .iter()
            .all(|p| p.starts_with(dest.join("acme").join(DATE))),
        "{everything:?}"
    );
    assert!(!env.path().join("escape.bundle").exists());
    for c in ['\u{1b}', '\r', '\u{7}'] {
        assert!(!run.stderr.contains(c), "{c:?} in {:?}", run.stderr);
    }
    assert!(!run.stderr.lines().any(|l| l.starts_with("ERROR forged")));

    // `list` shows the same: the table is escaped, the rejected ones are named on stderr.
    let list = env.run(&["list", "-o", "acme"]).await;
    list.expect_code(0);
    for c in ['\u{1b}', '\r', '\u{7}'] {
        assert!(
            !list.stdout.contains(c) && !list.stderr.contains(c),
            "{c:?}"
        );
    }
    assert!(
        list.stderr.contains("cannot be backed up"),
        "{}",
        list.stderr
    );
    assert!(!list.stdout.lines().any(|l| l.starts_with("ERROR forged")));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// One slug listed twice: with the same clone link it is backed up once; with different ones
/// it is reported as failed and nothing is written for it (one key cannot hold two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_slugs_are_reported_not_uploaded_twice() {
    let env = TestEnv::new().await;
    let source = env.simple_repo("acme", "twin", "main");
    env.simple_repo("acme", "clash", "main");
    let href = |slug: &str| format!("{}/acme/{slug}.git", env.emu.base_url());
    env.emu.add_repo(
        "acme",
        "twin-copy",
        &source,
        patched(json!({"slug": "twin", "full_name": "acme/twin",
            "links": {"clone": [{"name": "https", "href": href("twin")}]}})),
    );
    env.emu.add_repo(
        "acme",
        "clash-other",
        &source,
        patched(json!({"slug": "clash", "full_name": "acme/clash"})),
    );
    let (run, dest) = env.backup_dated("acme", DATE).await;
    run.expect_code(5);
    let m = manifest(&dest);
    let slugs: Vec<&str> = m["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["clash", "twin"], "{m:#}");
    assert_eq!(entry(&m, "twin")["status"], "ok");
    let clash = entry(&m, "clash");
    assert_eq!(clash["status"], "failed");
    assert!(
        clash["error"].as_str().unwrap().contains("more than once"),
        "{clash}"
    );
    assert!(!dest.join("acme").join(DATE).join("clash.bundle").exists());
    assert!(run.stderr.contains("listed twice"), "{}", run.stderr);
}

/// The listing names a default branch, yet the fetch brings no refs (a server or permission
/// problem): that is a failure, not an `empty` repository that would hide it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_branch_without_refs_is_a_failure_not_empty() {
    let env = TestEnv::new().await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    env.emu.add_repo(
        "acme",
        "hollow",
        &empty_repo(&fixtures, "hollow"),
        RepoOpts::default(),
    );
    env.emu.add_repo(
        "acme",
        "gone",
        &empty_repo(&fixtures, "gone"),
        RepoOpts {
            mainbranch: Some("main".into()),
            ..RepoOpts::default()
        },
    );
    let (run, dest) = env.backup_dated("acme", DATE).await;
    run.expect_code(5);
    let m = manifest(&dest);
    assert_eq!(entry(&m, "hollow")["status"], "empty");
    let gone = entry(&m, "gone");
    assert_eq!(gone["status"], "failed");
    assert!(
        gone["error"].as_str().unwrap().contains("no refs"),
        "{gone}"
    );
}

/// A repository deleted while the listing pages through (Bitbucket pages by offset, so every
/// later repository moves up one place): the repository that slid onto the page already read
/// must not go missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_whose_pages_shift_misses_no_repository() {
    let env = TestEnv::new().await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let source = crate::support::git::simple_repo(&fixtures, "src", "main");
    // 102 repositories: page 1 holds r000..r099 at pagelen 100, page 2 the rest.
    let slugs: Vec<String> = (0..102).map(|i| format!("r{i:03}")).collect();
    for s in &slugs {
        env.emu.add_repo("acme", s, &source, RepoOpts::default());
    }
    env.emu.set_list_quirks(
        "acme",
        ListQuirks {
            delete_after_page: Some((1, "r000".into())),
            ..ListQuirks::default()
        },
    );
    let run = env.run(&["list", "-o", "acme", "--json"]).await;
    run.expect_code(0);
    let listed: Vec<String> = serde_json::from_str::<Vec<Value>>(&run.stdout)
        .unwrap()
        .iter()
        .map(|r| r["slug"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = slugs[1..].to_vec();
    want.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, want, "r100 slid onto page 1 after it was read");
    assert!(run.stderr.contains("listing again"), "{}", run.stderr);
}
