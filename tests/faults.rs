//! Faults to survive (issue 9), each injected on loopback while the real binary runs: the S3
//! server restarting, throttling and resetting connections; the API's 5xx/429 storms,
//! malformed, truncated and oversized answers; git connections cut mid-pack, a corrupt pack,
//! a repository deleted after listing; a full temp disk; SIGKILL and a rerun. Each test checks
//! the whole contract: a clear message, the exit code, and a store in which nothing a manifest
//! points to is partial or corrupt ([`assert_consistent`]).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::bitbucket::{Damage, Fault, ListQuirks, RepoOpts, Route};
use crate::support::consistency::{all_keys, assert_consistent};
use crate::support::git::{big_repo, simple_repo};
use crate::support::harness::{Run, SECRET, TestEnv};
use crate::support::readback::{Dest, entry};
use crate::support::s3::TestS3;

const OWNER: &str = "acme";

fn today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// `backup --owner acme --dest <dest>` with quick retries, plus `extra`.
fn backup_args<'a>(dest: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "backup",
        "--owner",
        OWNER,
        "--dest",
        dest,
        "--retry-delay",
        "50ms",
    ];
    if !extra.contains(&"--retries") {
        a.extend(["--retries", "2"]);
    }
    a.extend_from_slice(extra);
    a
}

async fn backup(env: &TestEnv, dest: &Dest<'_>, extra: &[&str]) -> Run {
    let arg = dest.arg();
    let run = dest.run(env, &backup_args(&arg, extra)).await;
    assert!(
        !run.stderr.contains(SECRET) && !run.stdout.contains(SECRET),
        "secret printed"
    );
    run
}

/// `n` small repositories `small-<i>` and, if `big` > 0, `aaa-big` of about `big` bytes
/// (listed first, so it is among the first in flight).
fn workspace(env: &TestEnv, small: usize, big: u64) {
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    if big > 0 {
        let repo = big_repo(&fixtures, "aaa-big", big);
        env.emu
            .add_repo(OWNER, "aaa-big", &repo, RepoOpts::default());
    }
    for i in 0..small {
        let slug = format!("small-{i}");
        let repo = simple_repo(&fixtures, &slug, "main");
        env.emu.add_repo(OWNER, &slug, &repo, RepoOpts::default());
    }
}

fn slugs(small: usize, big: bool) -> Vec<String> {
    let mut all: Vec<String> = (0..small).map(|i| format!("small-{i}")).collect();
    if big {
        all.push("aaa-big".into());
    }
    all.sort();
    all
}

fn local_manifest(dest: &Path, date: &str) -> Value {
    TestEnv::local_manifest(dest, OWNER, date)
}

/// Skips (with a note) when the S3 server is external and cannot inject faults.
async fn fault_s3() -> Option<TestS3> {
    let s3 = TestS3::start().await;
    if s3.can_inject_faults() {
        Some(s3)
    } else {
        eprintln!("skipped: needs the in-process S3 server to inject faults");
        None
    }
}

// ---- the S3 server -------------------------------------------------------------------------

/// The S3 server goes down for two seconds while parts of a multipart upload are in flight,
/// then comes back on the same port with the same disk. The retry policy rides it out: the
/// run succeeds, every bundle restores, and no upload is left open (the interrupted one is
/// completed on retry or aborted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_restart_during_a_multipart_upload_is_ridden_out() {
    let Some(s3) = fault_s3().await else { return };
    let env = TestEnv::new().await;
    workspace(&env, 2, 16 << 20);
    s3.slow_upload_parts(Duration::from_millis(800));
    let dest = Dest::S3(&s3);
    let arg = dest.arg();
    let args = backup_args(
        &arg,
        &["--jobs=1", "--part-size=5MiB", "--parts-in-flight=2"],
    );
    let mut cmd = env.command(&args);
    cmd.envs(s3.env());
    let child = cmd.output();
    let restart = async {
        let deadline = Instant::now() + Duration::from_secs(90);
        while s3.requests("UploadPart") == 0 {
            assert!(Instant::now() < deadline, "no part was ever uploaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s3.restart(Duration::from_secs(2)).await;
        s3.slow_upload_parts(Duration::ZERO);
    };
    let (out, ()) = tokio::join!(child, restart);
    let run = Run::from_output(out.unwrap());
    run.expect_code(0);
    assert_eq!(s3.restarts(), 1);
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        slugs(2, true)
    );
    assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
}

/// `503 SlowDown` and connection resets on every kind of request a backup makes (uploads,
/// parts, completes, HEADs, listings): all retried, the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_down_and_connection_resets_are_retried() {
    let Some(s3) = fault_s3().await else { return };
    let env = TestEnv::new().await;
    workspace(&env, 3, 12 << 20);
    let script: &[(&'static str, usize, usize)] = &[
        // (operation, SlowDowns, resets)
        ("PutObject", 2, 1),
        ("UploadPart", 2, 2),
        ("CreateMultipartUpload", 1, 1),
        ("CompleteMultipartUpload", 1, 1),
        ("HeadObject", 1, 1),
        ("ListObjectsV2", 1, 1),
    ];
    for &(op, slow, reset) in script {
        s3.slow_down(op, slow);
        s3.reset_connections(op, reset);
    }
    let dest = Dest::S3(&s3);
    let run = backup(&env, &dest, &["--part-size", "5MiB"]).await;
    run.expect_code(0);
    let scripted: usize = script.iter().map(|(_, s, r)| s + r).sum();
    assert_eq!(
        s3.scripted_served().len(),
        scripted,
        "every scripted fault was met: {:?}",
        s3.scripted_served()
    );
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        slugs(3, true)
    );
}

/// A store that keeps answering `503 SlowDown` to writes: each bundle fails after the retry
/// budget, the manifest cannot be written, and the run says so with exit 4. Nothing is left
/// that a manifest could point to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persistent_slow_down_fails_with_exit_4_and_stores_nothing() {
    let Some(s3) = fault_s3().await else { return };
    let env = TestEnv::new().await;
    workspace(&env, 2, 0);
    s3.slow_down("PutObject", 10_000);
    let dest = Dest::S3(&s3);
    let run = backup(&env, &dest, &["--retries", "0"]).await;
    run.expect_code(4);
    assert!(
        run.stderr.contains("SlowDown") && run.stderr.contains("manifest.json"),
        "{}",
        run.stderr
    );
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert!(checked.manifests.is_empty());
    assert!(s3.keys().await.is_empty(), "{:?}", s3.keys().await);
}

// ---- a killed run --------------------------------------------------------------------------

/// SIGKILL while a multipart upload is in flight leaves the run lock, an open upload and temp
/// dirs behind. A normal rerun is refused with exit 7 (the lock is held and not yet stale) and
/// changes nothing; the operator's rerun with `--force` takes the lock, aborts the killed
/// run's upload and writes a complete, verifiable snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_run_then_a_rerun_refused_and_a_forced_rerun_completes() {
    let Some(s3) = fault_s3().await else { return };
    let env = TestEnv::new().await;
    workspace(&env, 3, 16 << 20);
    s3.slow_upload_parts(Duration::from_secs(2));
    let dest = Dest::S3(&s3);
    let arg = dest.arg();
    let args = backup_args(
        &arg,
        &["--jobs=1", "--part-size=5MiB", "--parts-in-flight=1"],
    );
    let mut cmd = env.command(&args);
    cmd.envs(s3.env());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while s3.open_multipart_uploads().await == 0 {
        assert!(Instant::now() < deadline, "no multipart upload started");
        assert!(child.try_wait().unwrap().is_none(), "exited too early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    s3.slow_upload_parts(Duration::ZERO);
    let lock_key = format!("{}/{OWNER}/.lock-{}", s3.prefix, today());
    let before = s3.keys().await;
    assert!(before.contains(&lock_key), "{before:?}");
    assert_eq!(s3.open_multipart_uploads().await, 1);

    let held = backup(&env, &dest, &[]).await;
    held.expect_code(7);
    assert!(
        held.stderr.contains("--force") && held.stderr.contains("lock"),
        "{}",
        held.stderr
    );
    assert_eq!(s3.keys().await, before, "a refused rerun changes nothing");

    let forced = backup(&env, &dest, &["--force"]).await;
    forced.expect_code(0);
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        slugs(3, true)
    );
    assert!(!s3.keys().await.contains(&lock_key), "lock released");
}

// ---- the API -------------------------------------------------------------------------------

/// 5xx and 429 storms on the listing, with and without `Retry-After`: within the retry budget
/// the run completes; a storm that outlasts it ends with exit 6 naming the status, before
/// anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_5xx_and_429_storms_are_waited_out_or_fail_with_exit_6() {
    let env = TestEnv::new().await;
    workspace(&env, 2, 0);
    for fault in [
        Fault::Status(503),
        Fault::RateLimit {
            retry_after: Some(1),
        },
        Fault::Status(500),
        Fault::RateLimit { retry_after: None },
        Fault::Status(502),
    ] {
        env.emu.push_fault(Route::List, fault);
    }
    let dir = env.path().join("dest");
    let dest = Dest::Local(dir.clone());
    backup(&env, &dest, &["--date", "2026-11-24"])
        .await
        .expect_code(0);
    assert_eq!(env.emu.stats().rate_limited, 2);

    for _ in 0..40 {
        env.emu.push_fault(Route::List, Fault::Status(503));
    }
    let run = backup(&env, &dest, &["--date", "2026-11-25"]).await;
    run.expect_code(6);
    assert!(
        run.stderr.contains("503") && run.stderr.contains("/2.0/repositories/acme"),
        "{}",
        run.stderr
    );
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(checked.manifests.len(), 1, "{:?}", checked.manifests);
    assert_eq!(
        checked
            .restorable_on("2026-11-24")
            .into_iter()
            .collect::<Vec<_>>(),
        slugs(2, false)
    );
    assert!(!dir.join(OWNER).join("2026-11-25").exists());
}

/// A listing answer that is not JSON, or JSON that stops half-way with a correct length, is
/// not retried (the server meant it): exit 6 naming the URL, nothing written. A body cut off
/// mid-transfer is a broken connection: retried, and the run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_truncated_json_fail_clearly_and_a_cut_body_is_retried() {
    let env = TestEnv::new().await;
    workspace(&env, 2, 0);
    let dir = env.path().join("dest");
    let dest = Dest::Local(dir.clone());
    for damage in [
        Damage::Replace("<html><body>502 Bad Gateway</body></html>".into()),
        Damage::Replace(r#"{"values": [{"slug": "small-0", "links": "#.into()),
        Damage::Truncate,
    ] {
        env.emu.damage(Route::List, damage.clone());
        let run = backup(&env, &dest, &[]).await;
        run.expect_code(6);
        assert!(
            run.stderr.contains("unexpected answer from")
                && run.stderr.contains("/2.0/repositories/acme"),
            "{damage:?}: {}",
            run.stderr
        );
        assert!(all_keys(&dest).await.is_empty(), "{damage:?}");
    }
    assert_eq!(env.emu.damaged(), 3);

    env.emu.damage(Route::List, Damage::Cut { after: 40 });
    backup(&env, &dest, &[]).await.expect_code(0);
    assert_eq!(env.emu.damaged(), 4);
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        slugs(2, false)
    );
}

/// A server that ignores `pagelen` and answers 2,000 values where 100 were asked (a few MiB,
/// under the page cap of `git_offsite::http`): the listing takes what it is given and follows
/// `next`, so it is complete, without duplicates. A page over the cap fails the run (exit 6;
/// `bounds::a_streamed_oversized_page_fails_the_run_with_one_line_and_exit_6`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_far_larger_than_asked_still_lists_everything_once() {
    let env = TestEnv::new().await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let source = simple_repo(&fixtures, "shared", "main");
    let total = 2_150;
    for i in 0..total {
        let opts = RepoOpts {
            mainbranch: Some("main".into()),
            ..RepoOpts::default()
        };
        env.emu.add_repo(OWNER, &format!("r{i:05}"), &source, opts);
    }
    env.emu.set_list_quirks(
        OWNER,
        ListQuirks {
            serve_pagelen: Some(2_000),
            ..ListQuirks::default()
        },
    );
    let run = env.run(&["list", "--owner", OWNER, "--json"]).await;
    run.expect_code(0);
    let repos: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let mut listed: Vec<String> = repos
        .iter()
        .map(|r| r["slug"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(listed.len(), total, "listed once each");
    assert_eq!(repos.len(), total);
    assert_eq!(env.emu.stats().list_requests, 2, "two pages of 2,000");
}

// ---- git -----------------------------------------------------------------------------------

/// The connection breaks off in the middle of the pack: retried, the run completes. When it
/// breaks every time, that repository fails (exit 5) with the reason, the others are backed
/// up, and its temp dir is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_reset_mid_pack_is_retried_and_then_fails_only_that_repository() {
    let env = TestEnv::new().await;
    workspace(&env, 2, 2 << 20);
    let big = Route::repo(OWNER, "aaa-big");
    env.emu.damage(big.clone(), Damage::Cut { after: 200_000 });
    let dir = env.path().join("dest");
    let dest = Dest::Local(dir.clone());
    backup(&env, &dest, &["--date", "2026-11-24"])
        .await
        .expect_code(0);
    assert_eq!(env.emu.damaged(), 1);

    for _ in 0..10 {
        env.emu.damage(big.clone(), Damage::Cut { after: 200_000 });
    }
    let run = backup(&env, &dest, &["--date", "2026-11-25", "--full"]).await;
    run.expect_code(5);
    let manifest = local_manifest(&dir, "2026-11-25");
    let failed = entry(&manifest, "aaa-big");
    assert_eq!(failed["status"], "failed");
    assert!(run.stderr.contains("aaa-big"), "{}", run.stderr);
    assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on("2026-11-25")
            .into_iter()
            .collect::<Vec<_>>(),
        slugs(2, false)
    );
    assert_eq!(checked.restorable_on("2026-11-24").len(), 3);
}

/// A pack with one byte flipped (framing intact) is refused by libgit2's indexer: that
/// repository fails with the reason and no bundle, the others are backed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_pack_fails_only_that_repository() {
    let env = TestEnv::new().await;
    workspace(&env, 3, 0);
    for _ in 0..10 {
        env.emu
            .damage(Route::repo(OWNER, "small-1"), Damage::CorruptPack);
    }
    let dir = env.path().join("dest");
    let dest = Dest::Local(dir.clone());
    let run = backup(&env, &dest, &[]).await;
    run.expect_code(5);
    assert!(env.emu.damaged() >= 1);
    let manifest = local_manifest(&dir, &today());
    let failed = entry(&manifest, "small-1");
    assert_eq!(failed["status"], "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("mirror"), "{error}");
    assert!(run.stderr.contains("small-1"), "{}", run.stderr);
    assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        ["small-0", "small-2"]
    );
}

/// A repository listed and then deleted before it is cloned: it fails with a message that says
/// it is gone (exit 5); the others are backed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_deleted_between_listing_and_cloning_fails_clearly() {
    let env = TestEnv::new().await;
    workspace(&env, 3, 0);
    env.emu.set_list_quirks(
        OWNER,
        ListQuirks {
            delete_after_page: Some((1, "small-2".into())),
            ..ListQuirks::default()
        },
    );
    let dir = env.path().join("dest");
    let dest = Dest::Local(dir.clone());
    let run = backup(&env, &dest, &[]).await;
    run.expect_code(5);
    let manifest = local_manifest(&dir, &today());
    let gone = entry(&manifest, "small-2");
    assert_eq!(gone["status"], "failed");
    let error = gone["error"].as_str().unwrap();
    assert!(
        error.contains("404") || error.contains("not found") || error.contains("no longer"),
        "{error}"
    );
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        ["small-0", "small-1"]
    );
}

// ---- the temp disk -------------------------------------------------------------------------

/// A temp disk that fills up while the big repository is fetched (`RLIMIT_FSIZE` on the
/// binary, with SIGXFSZ ignored, so writes past 1 MiB fail with EFBIG as they would with
/// ENOSPC: no privileges needed). That repository fails with a message naming the directory,
/// its temp files are removed, the others are backed up (exit 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_temp_disk_is_named_cleaned_up_and_the_others_continue() {
    let Some(s3) = fault_s3().await else { return };
    let env = TestEnv::new().await;
    workspace(&env, 2, 4 << 20);
    let dest = Dest::S3(&s3);
    let arg = dest.arg();
    let tmp = env.path().join("small-tmp");
    let tmp_arg = tmp.to_str().unwrap().to_string();
    let args = backup_args(&arg, &["--tmp-dir", &tmp_arg]);
    let mut cmd = env.command(&args);
    cmd.envs(s3.env());
    // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit).
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = Run::from_output(cmd.output().await.unwrap());
    run.expect_code(5);
    let manifest = dest.manifest(&today()).await;
    let full = entry(&manifest, "aaa-big");
    assert_eq!(full["status"], "failed");
    let error = full["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("the temp dir {tmp_arg} is full")) && error.contains("--tmp-dir"),
        "{error}"
    );
    assert!(run.stderr.contains(&tmp_arg), "{}", run.stderr);
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        slugs(2, false)
    );
}
