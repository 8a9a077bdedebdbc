//! Incremental runs end to end: the real binary against the Bitbucket emulator (which counts
//! pack requests, so "not cloned" is measured, not inferred from logs) and the real S3 server
//! (which counts requests per operation, so "no bundle bytes sent" is measured too) or the
//! local-directory store. Copied bundles are read back with stock `git clone --mirror`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git_offsite::store::{Key, Store};
use serde_json::Value;

use crate::support::bitbucket::{Fault, RepoOpts, Route};
use crate::support::git::{clone_mirror, refs_of};
use crate::support::git::{commit_on, git, simple_repo};
use crate::support::harness::{Run, SECRET, TestEnv};
use crate::support::readback::entry;
use crate::support::s3::TestS3;

const DAY1: &str = "2026-11-24";
const DAY2: &str = "2026-11-25";
const DAY3: &str = "2026-11-26";

fn head_of(repo: &Path) -> String {
    git(repo, &["symbolic-ref", "HEAD"]).trim().to_string()
}

/// A repository with what the change cases need: `main` (HEAD) with three commits, a
/// `feature` branch one commit behind, an annotated tag `v1` and a lightweight tag `lw`.
fn fixture_repo(env: &TestEnv, slug: &str) -> PathBuf {
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let repo = simple_repo(&fixtures, slug, "main");
    git(&repo, &["branch", "feature", "main~1"]);
    git(&repo, &["tag", "-a", "v1", "-m", "release 1", "main~2"]);
    git(&repo, &["tag", "lw", "main~1"]);
    env.emu.add_repo("acme", slug, &repo, RepoOpts::default());
    repo
}

/// Where a test backs up to.
enum Dest<'a> {
    Local(PathBuf),
    S3(&'a TestS3),
}

impl Dest<'_> {
    fn arg(&self) -> String {
        match self {
            Dest::Local(p) => p.to_str().unwrap().to_string(),
            Dest::S3(s3) => format!("s3://{}/git", s3.bucket),
        }
    }

    /// The key prefix of a date folder.
    fn folder(&self, date: &str) -> String {
        match self {
            Dest::Local(_) => format!("acme/{date}"),
            Dest::S3(_) => format!("git/acme/{date}"),
        }
    }

    async fn get(&self, key: &str) -> Vec<u8> {
        match self {
            Dest::Local(p) => std::fs::read(p.join(key)).unwrap_or_else(|e| panic!("{key}: {e}")),
            Dest::S3(s3) => s3.get(key).await,
        }
    }

    async fn manifest(&self, date: &str) -> Value {
        let key = format!("{}/manifest.json", self.folder(date));
        serde_json::from_slice(&self.get(&key).await).unwrap()
    }

    /// Object keys inside a date folder.
    async fn objects(&self, date: &str) -> Vec<String> {
        let folder = self.folder(date);
        match self {
            Dest::Local(p) => {
                let mut names: Vec<String> = std::fs::read_dir(p.join(&folder))
                    .map(|d| {
                        d.map(|e| format!("{folder}/{}", e.unwrap().file_name().to_str().unwrap()))
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                names
            }
            Dest::S3(s3) => s3
                .keys()
                .await
                .into_iter()
                .filter(|k| k.starts_with(&format!("{folder}/")))
                .collect(),
        }
    }
}

async fn backup(env: &TestEnv, dest: &Dest<'_>, date: &str, extra: &[&str]) -> Run {
    let d = dest.arg();
    let mut args = vec![
        "backup",
        "--owner",
        "acme",
        "--dest",
        &d,
        "--date",
        date,
        "--retry-delay",
        "10ms",
        "--retries",
        "1",
    ];
    args.extend_from_slice(extra);
    let mut cmd = env.command(&args);
    if let Dest::S3(s3) = dest {
        cmd.envs(s3.env());
    }
    let out = cmd.output().await.unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains(SECRET) && !run.stdout.contains(SECRET));
    assert!(
        env.tmp_leftovers().is_empty(),
        "temp files left: {:?}",
        env.tmp_leftovers()
    );
    run
}

fn refs_field(e: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(e["refs"].clone()).unwrap()
}

/// `git clone --mirror` of the bundle bytes gives back exactly the source's refs.
fn assert_restores(bytes: &[u8], source: &Path, scratch: &Path) {
    std::fs::create_dir_all(scratch).unwrap();
    let file = scratch.join("x.bundle");
    std::fs::write(&file, bytes).unwrap();
    let mirror = clone_mirror(&file, &scratch.join("mirror.git"));
    assert_eq!(refs_of(&mirror), refs_of(source), "restored refs");
    git(&mirror, &["fsck", "--strict", "--no-dangling"]);
}

/// The S3 requests that carry bundle or manifest bytes.
fn uploads(s3: &TestS3) -> (usize, usize, usize) {
    (
        s3.requests("PutObject"),
        s3.requests("UploadPart"),
        s3.requests("CreateMultipartUpload"),
    )
}

/// The acceptance test: a next-day rerun with nothing changed asks each remote for its refs
/// only (no pack request), sends no bundle bytes (the manifest's PutObject is the only
/// upload), copies server-side, and the copies restore. A third day carries `since`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_with_nothing_changed_clones_nothing_and_uploads_no_bundle() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    let slugs = ["alpha", "beta", "gamma"];
    let sources: Vec<PathBuf> = slugs.iter().map(|s| fixture_repo(&env, s)).collect();
    let dest = Dest::S3(&s3);

    backup(&env, &dest, DAY1, &[]).await.expect_code(0);
    let day1 = dest.manifest(DAY1).await;
    assert_eq!(env.emu.stats().pack_requests, 3, "the first run clones");

    let (packs, puts, copies) = (
        env.emu.stats().pack_requests,
        uploads(&s3),
        s3.requests("CopyObject"),
    );
    let run = backup(&env, &dest, DAY2, &[]).await;
    run.expect_code(0);
    assert_eq!(env.emu.stats().pack_requests, packs, "nothing re-cloned");
    let (p0, u0, m0) = puts;
    assert_eq!(
        uploads(&s3),
        (p0 + 1, u0, m0),
        "only the manifest is uploaded (PutObject, UploadPart, CreateMultipartUpload)"
    );
    assert_eq!(
        s3.requests("CopyObject"),
        copies + 3,
        "one server-side copy each"
    );
    assert_eq!(
        run.stderr
            .matches(&format!("unchanged since {DAY1}; copied"))
            .count(),
        3,
        "one log line per unchanged repository:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("unchanged"), "summary: {}", run.stderr);

    let day2 = dest.manifest(DAY2).await;
    assert_eq!(day2["summary"]["unchanged"], 3);
    assert_eq!(day2["summary"]["ok"], 0);
    assert_eq!(day2["summary"]["bytes"], 0);
    let scratch = env.path().join("restore");
    for (slug, source) in slugs.iter().zip(&sources) {
        let (before, now) = (entry(&day1, slug), entry(&day2, slug));
        assert_eq!(now["status"], "unchanged", "{now}");
        assert_eq!(now["since"], DAY1);
        for field in ["size", "sha256", "refs", "head"] {
            assert_eq!(now[field], before[field], "{slug}: {field}");
        }
        assert_eq!(refs_field(now), refs_of(source));
        let key = format!("{}/{slug}.bundle", dest.folder(DAY2));
        assert_eq!(now["key"], key.as_str(), "copied into today's folder");
        let bytes = dest.get(&key).await;
        assert_eq!(now["size"], bytes.len() as u64);
        assert_restores(&bytes, source, &scratch.join(slug));
    }

    // A third day: still unchanged, and `since` is carried from the first day.
    backup(&env, &dest, DAY3, &[]).await.expect_code(0);
    let day3 = dest.manifest(DAY3).await;
    assert_eq!(env.emu.stats().pack_requests, packs);
    for slug in slugs {
        assert_eq!(entry(&day3, slug)["status"], "unchanged");
        assert_eq!(entry(&day3, slug)["since"], DAY1, "{slug}");
    }
}

/// Each kind of change re-clones exactly the changed repository (one pack request) and gives
/// it an `ok` entry with the new refs; the others stay unchanged. One day per case.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_kind_of_change_reclones_exactly_that_repository() {
    let env = TestEnv::new().await;
    let dest = Dest::Local(env.path().join("backups"));
    let slugs = ["commit", "delete", "tag", "head", "same"];
    let repos: BTreeMap<&str, PathBuf> =
        slugs.iter().map(|s| (*s, fixture_repo(&env, s))).collect();
    backup(&env, &dest, "2026-11-01", &[]).await.expect_code(0);

    type Change = fn(&Path);
    let cases: [(&str, &str, Change); 4] = [
        ("2026-11-02", "commit", |r| commit_on(r, "feature")),
        ("2026-11-03", "delete", |r| {
            git(r, &["update-ref", "-d", "refs/heads/feature"]);
        }),
        ("2026-11-04", "tag", |r| {
            git(r, &["tag", "-f", "-a", "v1", "-m", "moved", "main"]);
        }),
        ("2026-11-05", "head", |r| {
            git(r, &["symbolic-ref", "HEAD", "refs/heads/feature"]);
        }),
    ];
    for (date, slug, change) in cases {
        let source = &repos[slug];
        let before = (refs_of(source), head_of(source));
        change(source);
        assert_ne!(
            (refs_of(source), head_of(source)),
            before,
            "{slug}: the case changes nothing"
        );

        let packs = env.emu.stats().pack_requests;
        backup(&env, &dest, date, &[]).await.expect_code(0);
        assert_eq!(
            env.emu.stats().pack_requests,
            packs + 1,
            "{slug}: exactly one repository re-cloned"
        );
        let m = dest.manifest(date).await;
        let e = entry(&m, slug);
        assert_eq!(e["status"], "ok", "{slug}: {e}");
        assert!(e.get("since").is_none(), "{slug}: {e}");
        assert_eq!(refs_field(e), refs_of(source), "{slug}: new refs");
        assert_eq!(e["head"], head_of(source).as_str(), "{slug}: head");
        assert_eq!(m["summary"]["ok"], 1, "{slug}");
        assert_eq!(m["summary"]["unchanged"], 4, "{slug}");
        let bytes = dest
            .get(&format!("{}/{slug}.bundle", dest.folder(date)))
            .await;
        assert_restores(&bytes, source, &env.path().join(format!("restore-{slug}")));
    }
    let last = dest.manifest("2026-11-05").await;
    assert_eq!(entry(&last, "same")["since"], "2026-11-01");
    assert_eq!(
        entry(&last, "commit")["since"],
        "2026-11-02",
        "unchanged since its re-clone"
    );
}

/// `--unchanged reference`: no copy, the key names the earlier object, today's folder holds
/// only the manifest. An earlier object that is gone means a full backup of that repository.
/// `--unchanged copy` on the local store: the object is in today's folder (a hard link).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unchanged_repositories_are_referenced_or_copied() {
    let env = TestEnv::new().await;
    let root = env.path().join("backups");
    let dest = Dest::Local(root.clone());
    let alpha = fixture_repo(&env, "alpha");
    fixture_repo(&env, "beta");
    backup(&env, &dest, DAY1, &[]).await.expect_code(0);
    let packs = env.emu.stats().pack_requests;

    let run = backup(&env, &dest, DAY2, &["--unchanged", "reference"]).await;
    run.expect_code(0);
    assert!(
        run.stderr
            .contains(&format!("unchanged since {DAY1}; referenced")),
        "{}",
        run.stderr
    );
    assert_eq!(env.emu.stats().pack_requests, packs);
    assert_eq!(
        dest.objects(DAY2).await,
        [format!("acme/{DAY2}/manifest.json")],
        "no bundle in today's folder"
    );
    let day2 = dest.manifest(DAY2).await;
    for slug in ["alpha", "beta"] {
        let e = entry(&day2, slug);
        assert_eq!(e["status"], "unchanged");
        assert_eq!(e["key"], format!("acme/{DAY1}/{slug}.bundle").as_str());
        assert_eq!(e["since"], DAY1);
    }
    let bytes = dest
        .get(entry(&day2, "alpha")["key"].as_str().unwrap())
        .await;
    assert_restores(&bytes, &alpha, &env.path().join("restore-ref"));

    // Copy mode from a referencing manifest: copied from the first object into today's
    // folder, as a hard link on the local store.
    backup(&env, &dest, DAY3, &[]).await.expect_code(0);
    assert_eq!(env.emu.stats().pack_requests, packs);
    let day3 = dest.manifest(DAY3).await;
    for slug in ["alpha", "beta"] {
        let e = entry(&day3, slug);
        assert_eq!(e["status"], "unchanged");
        assert_eq!(e["since"], DAY1);
        let key = format!("acme/{DAY3}/{slug}.bundle");
        assert_eq!(e["key"], key.as_str());
        use std::os::unix::fs::MetadataExt;
        let (copy, first) = (
            std::fs::metadata(root.join(&key)).unwrap(),
            std::fs::metadata(root.join(format!("acme/{DAY1}/{slug}.bundle"))).unwrap(),
        );
        assert_eq!(
            (copy.dev(), copy.ino()),
            (first.dev(), first.ino()),
            "a hard link"
        );
    }

    // The earlier object of `alpha` disappears: reference mode falls back to a full backup
    // of it (with a warning); `beta` is still referenced.
    // DAY3's entries name DAY3's own copies: drop that folder, so DAY2's referencing
    // manifest is the newest again.
    std::fs::remove_file(root.join(format!("acme/{DAY1}/alpha.bundle"))).unwrap();
    std::fs::remove_dir_all(root.join(format!("acme/{DAY3}"))).unwrap();
    let run = backup(&env, &dest, DAY3, &["--unchanged", "reference"]).await;
    run.expect_code(0);
    assert!(run.stderr.contains("is gone"), "{}", run.stderr);
    assert_eq!(
        env.emu.stats().pack_requests,
        packs + 1,
        "only alpha re-cloned"
    );
    let day3 = dest.manifest(DAY3).await;
    assert_eq!(entry(&day3, "alpha")["status"], "ok");
    assert_eq!(entry(&day3, "beta")["status"], "unchanged");
    assert_eq!(
        entry(&day3, "beta")["key"],
        format!("acme/{DAY1}/beta.bundle").as_str()
    );

    // Copy mode, when the copy fails (alpha's object is gone) or copies something else than
    // the entry describes (beta's object was replaced by one of another size): a full backup
    // of each, with a warning.
    std::fs::remove_file(root.join(format!("acme/{DAY3}/alpha.bundle"))).unwrap();
    std::fs::write(root.join(format!("acme/{DAY1}/beta.bundle")), b"garbage").unwrap();
    let day4 = "2026-11-27";
    let run = backup(&env, &dest, day4, &[]).await;
    run.expect_code(0);
    assert!(run.stderr.contains("cannot copy"), "{}", run.stderr);
    assert!(run.stderr.contains("has 7 bytes"), "{}", run.stderr);
    assert_eq!(env.emu.stats().pack_requests, packs + 3, "both re-cloned");
    let m = dest.manifest(day4).await;
    for slug in ["alpha", "beta"] {
        assert_eq!(entry(&m, slug)["status"], "ok", "{slug}");
        let bytes = dest.get(&format!("acme/{day4}/{slug}.bundle")).await;
        assert_eq!(entry(&m, slug)["size"], bytes.len() as u64);
    }
}

/// `--full` re-clones everything; an unreadable earlier manifest is a warning and a full run
/// with exit 0; refs that cannot be listed mean a full backup of that repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_runs_unreadable_manifests_and_failed_listings_clone_everything() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    let dest = Dest::S3(&s3);
    for slug in ["alpha", "beta"] {
        fixture_repo(&env, slug);
    }
    backup(&env, &dest, DAY1, &[]).await.expect_code(0);

    let packs = env.emu.stats().pack_requests;
    backup(&env, &dest, DAY2, &["--full"]).await.expect_code(0);
    assert_eq!(
        env.emu.stats().pack_requests,
        packs + 2,
        "--full re-clones all"
    );
    let day2 = dest.manifest(DAY2).await;
    assert_eq!(day2["summary"]["ok"], 2);
    assert_eq!(day2["summary"]["unchanged"], 0);

    // The ref listing of `alpha` fails (a 404, not retried): a full backup of it, no failure.
    env.emu
        .push_fault(Route::repo("acme", "alpha"), Fault::Status(404));
    let packs = env.emu.stats().pack_requests;
    let run = backup(&env, &dest, DAY3, &[]).await;
    run.expect_code(0);
    assert!(run.stderr.contains("cannot compare"), "{}", run.stderr);
    assert_eq!(env.emu.stats().pack_requests, packs + 1);
    let day3 = dest.manifest(DAY3).await;
    assert_eq!(entry(&day3, "alpha")["status"], "ok");
    assert_eq!(entry(&day3, "beta")["status"], "unchanged");
    assert_eq!(
        entry(&day3, "beta")["since"],
        DAY2,
        "DAY2's full run made it"
    );

    // The newest earlier manifest does not read: warning, full run, exit 0.
    s3.store()
        .put(
            &Key::new(format!("git/acme/{DAY3}/manifest.json")).unwrap(),
            bytes::Bytes::from_static(b"{\"format\": 1, \"truncat"),
            &Default::default(),
        )
        .await
        .unwrap();
    let packs = env.emu.stats().pack_requests;
    let run = backup(&env, &dest, "2026-11-27", &[]).await;
    run.expect_code(0);
    assert!(run.stderr.contains("cannot be read"), "{}", run.stderr);
    assert_eq!(env.emu.stats().pack_requests, packs + 2, "a full run");
    let m = dest.manifest("2026-11-27").await;
    assert_eq!(m["summary"]["ok"], 2);
}

/// A second run on the same day (a retried CronJob): unchanged repositories are left exactly
/// as they are, a repository that now fails keeps the first run's bundle and entry (and the
/// run still exits 5), and entries of repositories no longer listed are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_same_day_rerun_never_overwrites_good_bundles() {
    let env = TestEnv::new().await;
    let root = env.path().join("backups");
    let dest = Dest::Local(root.clone());
    let broken = fixture_repo(&env, "broken");
    fixture_repo(&env, "steady");
    fixture_repo(&env, "gone");
    backup(&env, &dest, DAY1, &[]).await.expect_code(0);
    let first = dest.manifest(DAY1).await;
    let folder = root.join(format!("acme/{DAY1}"));
    let snapshot = |slug: &str| {
        use std::os::unix::fs::MetadataExt;
        let path = folder.join(format!("{slug}.bundle"));
        let m = std::fs::metadata(&path).unwrap();
        (
            std::fs::read(&path).unwrap(),
            m.ino(),
            m.mtime_nsec(),
            m.mtime(),
        )
    };
    let before: BTreeMap<&str, _> = ["broken", "steady", "gone"]
        .iter()
        .map(|s| (*s, snapshot(s)))
        .collect();

    commit_on(&broken, "main");
    env.emu.fail_repo("acme", "broken", 500);
    env.emu.remove_repo("acme", "gone");
    let packs = env.emu.stats().pack_requests;
    // DAY1 is a past date with a complete manifest: rerunning it takes `--force`.
    let run = backup(&env, &dest, DAY1, &["--log-format", "json", "--force"]).await;
    run.expect_code(5);
    assert_eq!(env.emu.stats().pack_requests, packs, "nothing cloned");
    let summary: Value = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["event"] == "summary")
        .expect("a summary event");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["unchanged"], 1, "{summary}");
    assert_eq!(
        summary["failed_repositories"], r#"["acme/broken"]"#,
        "the JSON event's list is a debug string"
    );

    let second = dest.manifest(DAY1).await;
    for slug in ["broken", "steady", "gone"] {
        assert_eq!(
            entry(&second, slug),
            entry(&first, slug),
            "{slug}: entry kept verbatim"
        );
        assert_eq!(snapshot(slug), before[slug], "{slug}: bundle untouched");
    }
    assert_ne!(
        second["started_at"], first["started_at"],
        "the manifest was rewritten"
    );
}

/// The ref listing follows the fetch's credential rules: a token the server refuses (here,
/// expired under the first git request of the run) is renewed once and the comparison goes on,
/// so the repositories are still found unchanged instead of being cloned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_refused_during_the_comparison_is_renewed_once() {
    let env = TestEnv::new().await;
    let dest = Dest::Local(env.path().join("backups"));
    for slug in ["alpha", "beta"] {
        fixture_repo(&env, slug);
    }
    backup(&env, &dest, DAY1, &[]).await.expect_code(0);
    let before = env.emu.stats();

    env.emu.push_fault(Route::Git, Fault::ExpireTokens);
    backup(&env, &dest, DAY2, &["--jobs", "1"])
        .await
        .expect_code(0);
    let after = env.emu.stats();
    assert_eq!(after.pack_requests, before.pack_requests, "nothing cloned");
    assert!(
        after.unauthorized > before.unauthorized,
        "the token was refused"
    );
    assert!(
        after.token_requests >= before.token_requests + 2,
        "a token for the run and one renewal: {} → {}",
        before.token_requests,
        after.token_requests
    );
    let m = dest.manifest(DAY2).await;
    assert_eq!(m["summary"]["unchanged"], 2, "{m:#}");
}
