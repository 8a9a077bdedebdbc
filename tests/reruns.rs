//! Reruns, overlaps and old dates never corrupt a snapshot: the date folder's run lock (a
//! real overlap of two binaries, a stale lock, `--force`), the past-date refusal, and an
//! interrupted same-day rerun whose manifest must still hold for every entry.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::git::{big_repo, commit_on, git};
use crate::support::harness::{Run, SECRET, TestEnv};
use crate::support::readback::sha256_hex;
use crate::support::s3::TestS3;

const PAST: &str = "2026-11-24";

fn today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

fn args<'a>(dest: &'a str, date: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "backup",
        "--owner",
        "acme",
        "--dest",
        dest,
        "--date",
        date,
        "--retry-delay",
        "10ms",
        "--retries",
        "1",
    ];
    a.extend_from_slice(extra);
    a
}

async fn local(env: &TestEnv, dest: &Path, date: &str, extra: &[&str]) -> Run {
    let run = env.run(&args(dest.to_str().unwrap(), date, extra)).await;
    assert!(!run.stderr.contains(SECRET) && !run.stdout.contains(SECRET));
    run
}

/// A lock as another host's run would have written it, last refreshed `age` ago.
fn foreign_lock(age: chrono::Duration) -> Vec<u8> {
    let refreshed = chrono::Utc::now() - age;
    serde_json::to_vec(&serde_json::json!({
        "host": "other-node-7",
        "pid": 4242,
        "run_id": "feedc0ffee",
        "started_at": refreshed - chrono::Duration::minutes(5),
        "refreshed_at": refreshed,
    }))
    .unwrap()
}

fn lock_path(dest: &Path, date: &str) -> PathBuf {
    dest.join("acme").join(format!(".lock-{date}"))
}

/// Two binaries on one owner and date at once: the second stops with exit 7 and a message that
/// names the holder, when it was refreshed, when it goes stale and `--force`, and touches
/// nothing; the first keeps going, and SIGTERM releases its lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_overlapping_run_stops_and_the_first_releases_its_lock_on_sigterm() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    if !s3.can_inject_faults() {
        eprintln!("skipped: needs the in-process S3 server to slow uploads down");
        return;
    }
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    env.emu.add_repo(
        "acme",
        "big",
        &big_repo(&fixtures, "big", 12 << 20),
        Default::default(),
    );
    s3.slow_upload_parts(Duration::from_secs(3));
    let dest = format!("s3://{}/git", s3.bucket);
    let date = today();
    let lock_key = format!("git/acme/.lock-{date}");

    let mut first = env.command(&args(&dest, &date, &["--part-size", "5MiB"]));
    first.envs(s3.env()).stderr(std::process::Stdio::piped());
    let first = first.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s3.open_multipart_uploads().await == 0 {
        assert!(Instant::now() < deadline, "no upload started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s3.keys().await.contains(&lock_key),
        "the first run holds the lock"
    );
    let lock_before = s3.get(&lock_key).await;
    let puts = s3.requests("PutObject") + s3.requests("CreateMultipartUpload");
    let locks = s3.requests("LockObject");

    let mut second = env.command(&args(&dest, &date, &[]));
    second.envs(s3.env());
    let second = Run::from_output(second.output().await.unwrap());
    second.expect_code(7);
    let holder: Value = serde_json::from_slice(&lock_before).unwrap();
    let msg = &second.stderr;
    for part in [
        "another run holds the lock",
        &lock_key,
        holder["run_id"].as_str().unwrap(),
        "last refreshed",
        "stale",
        "10 min",
        "--force",
    ] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    assert_eq!(
        s3.requests("PutObject") + s3.requests("CreateMultipartUpload"),
        puts,
        "the second run wrote nothing"
    );
    assert!(s3.requests("LockObject") > locks, "it did try the lock");
    assert_eq!(
        s3.get(&lock_key).await,
        lock_before,
        "the lock is untouched"
    );

    let pid = first.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(60), first.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = s3.keys().await;
    assert!(
        !keys.iter().any(|k| k.contains(".lock-")),
        "the interrupted run released its lock (and the probes are gone): {keys:?}"
    );
}

/// A lock left by a killed run is taken over once it is older than the stale age, and at once
/// with `--force`; a fresh one is not. Every run releases its lock at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lock_is_taken_over_and_force_takes_a_fresh_one() {
    let env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    let dest = env.path().join("dest");
    let date = today();
    let lock = lock_path(&dest, &date);
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();

    std::fs::write(&lock, foreign_lock(chrono::Duration::minutes(11))).unwrap();
    let run = local(&env, &dest, &date, &[]).await;
    run.expect_code(0);
    assert!(
        run.stderr.contains("took over the lock") && run.stderr.contains("other-node-7"),
        "{}",
        run.stderr
    );
    assert!(!lock.exists(), "released at the end");

    std::fs::write(&lock, foreign_lock(chrono::Duration::minutes(2))).unwrap();
    let held = local(&env, &dest, &date, &[]).await;
    held.expect_code(7);
    assert!(
        held.stderr.contains("other-node-7 (pid 4242"),
        "{}",
        held.stderr
    );
    assert!(lock.exists(), "a fresh lock is left alone");
    local(&env, &dest, &date, &["--force"]).await.expect_code(0);
    assert!(!lock.exists(), "taken over with --force, then released");
    let leftovers: Vec<_> = std::fs::read_dir(lock.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "probe or temp files left: {leftovers:?}"
    );
}

/// A past `--date` that already holds a complete manifest is refused (exit 2, naming
/// `--force`) and left byte for byte as it was; `--force` backs up into it again. Today's
/// date reruns as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_date_with_a_complete_manifest_needs_force() {
    let env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    let dest = env.path().join("dest");
    local(&env, &dest, PAST, &[]).await.expect_code(0);
    let manifest = dest.join("acme").join(PAST).join("manifest.json");
    let bundle = dest.join("acme").join(PAST).join("api.bundle");
    let (m0, b0) = (
        std::fs::read(&manifest).unwrap(),
        sha256_hex(&std::fs::read(&bundle).unwrap()),
    );

    let refused = local(&env, &dest, PAST, &[]).await;
    refused.expect_code(2);
    assert!(
        refused.stderr.contains(PAST)
            && refused.stderr.contains("complete backup")
            && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(&manifest).unwrap(), m0, "manifest untouched");
    assert_eq!(
        sha256_hex(&std::fs::read(&bundle).unwrap()),
        b0,
        "bundle untouched"
    );
    assert!(
        !lock_path(&dest, PAST).exists(),
        "the refusing run released its lock"
    );

    local(&env, &dest, PAST, &["--force"]).await.expect_code(0);
    assert_ne!(
        std::fs::read(&manifest).unwrap(),
        m0,
        "rewritten with --force"
    );

    let date = today();
    local(&env, &dest, &date, &[]).await.expect_code(0);
    local(&env, &dest, &date, &[]).await.expect_code(0);
}

/// A same-day rerun interrupted (SIGTERM) after it replaced one bundle and while it uploads
/// another: the manifest left behind describes no replaced bundle; every entry it lists has
/// the SHA-256 the manifest records. (Before the fix, the small repository's entry kept its
/// old checksum beside the new object.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_rerun_leaves_no_entry_for_a_replaced_bundle() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    if !s3.can_inject_faults() {
        eprintln!("skipped: needs the in-process S3 server to slow uploads down");
        return;
    }
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let big = big_repo(&fixtures, "big", 12 << 20);
    env.emu.add_repo("acme", "big", &big, Default::default());
    let small = env.simple_repo("acme", "small", "main");
    let dest = format!("s3://{}/git", s3.bucket);
    let date = today();
    let run_args = args(&dest, &date, &["--part-size", "5MiB", "--jobs", "2"]);
    let mut first = env.command(&run_args);
    first.envs(s3.env());
    Run::from_output(first.output().await.unwrap()).expect_code(0);
    let manifest_key = format!("git/acme/{date}/manifest.json");
    let small_key = format!("git/acme/{date}/small.bundle");
    let small_before = sha256_hex(&s3.get(&small_key).await);

    // Both change; the big one's upload crawls, so the small one is replaced first.
    for repo in [&big, &small] {
        let branch = git(repo, &["symbolic-ref", "--short", "HEAD"]);
        commit_on(repo, branch.trim());
    }
    s3.slow_upload_parts(Duration::from_secs(3));
    let mut rerun = env.command(&run_args);
    rerun.envs(s3.env()).stderr(std::process::Stdio::piped());
    let rerun = rerun.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sha256_hex(&s3.get(&small_key).await) == small_before
        || s3.open_multipart_uploads().await == 0
    {
        assert!(Instant::now() < deadline, "the rerun never got there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = rerun.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(60), rerun.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let manifest: Value = serde_json::from_slice(&s3.get(&manifest_key).await).unwrap();
    let entries = manifest["repositories"].as_array().unwrap();
    for e in entries {
        let key = e["key"].as_str().unwrap();
        assert_eq!(
            sha256_hex(&s3.get(key).await),
            e["sha256"].as_str().unwrap(),
            "{key}: the manifest's checksum must hold for the stored object"
        );
    }
    // Both were being replaced: the stored manifest lists neither any more (the next run backs
    // them up again), and still reads as today's manifest.
    assert_eq!(manifest["date"], date.as_str());
}

/// A store that acknowledges an upload but keeps something else fails that repository (the
/// HEAD after the upload disagrees on the size): exit 5, the reason in the output and in the
/// manifest, never an `ok` entry for a bundle that does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_store_did_not_keep_fails_the_repository() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    if !s3.can_inject_faults() {
        eprintln!("skipped: needs the in-process S3 server to lose data");
        return;
    }
    env.simple_repo("acme", "api", "main");
    s3.truncate_bundle_puts();
    let dest = format!("s3://{}/git", s3.bucket);
    let date = today();
    let mut cmd = env.command(&args(&dest, &date, &[]));
    cmd.envs(s3.env());
    let run = Run::from_output(cmd.output().await.unwrap());
    run.expect_code(5);
    assert!(
        run.stderr.contains("not the") && run.stderr.contains("bytes"),
        "{}",
        run.stderr
    );
    let manifest: Value =
        serde_json::from_slice(&s3.get(&format!("git/acme/{date}/manifest.json")).await).unwrap();
    let e = &manifest["repositories"][0];
    assert_eq!(e["status"], "failed", "{manifest}");
    assert!(e["error"].as_str().unwrap().contains("bytes"), "{manifest}");
}
