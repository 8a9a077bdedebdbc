//! End to end: the real binary against the Bitbucket emulator (OAuth, pagination, git smart
//! HTTP through `git http-backend`) and a real S3 server, every bundle read back with stock git.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::bitbucket::{ConsumerOpts, Fault, RepoOpts, Route};
use crate::support::git::{big_repo, empty_repo, git, rich_repo, simple_repo};
use crate::support::git::{clone_mirror, refs_of};
use crate::support::harness::{SECRET, TestEnv};
use crate::support::readback::{entry, sha256_hex};
use crate::support::s3::TestS3;

const DATE: &str = "2026-11-24";

/// Reads a bundle back the way an operator would on a bad day: `git bundle verify`, then a
/// mirror clone compared ref-for-ref with the source, then a normal clone that must check out
/// the default branch.
fn assert_bundle_restores(bundle: &Path, source: &Path, default_branch: &str, scratch: &Path) {
    std::fs::create_dir_all(scratch).unwrap();
    let verify_repo = scratch.join("verify");
    git(scratch, &["init", "-q", verify_repo.to_str().unwrap()]);
    git(
        &verify_repo,
        &["bundle", "verify", bundle.to_str().unwrap()],
    );

    let mirror = clone_mirror(bundle, &scratch.join("mirror.git"));
    assert_eq!(
        refs_of(&mirror),
        refs_of(source),
        "refs restored from {} differ from the source",
        bundle.display()
    );
    git(&mirror, &["fsck", "--strict", "--no-dangling"]);

    let work = scratch.join("work");
    git(
        scratch,
        &[
            "clone",
            "-q",
            bundle.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    assert_eq!(
        git(&work, &["symbolic-ref", "HEAD"]).trim(),
        format!("refs/heads/{default_branch}")
    );
    assert_eq!(
        git(&work, &["rev-parse", "HEAD"]).trim(),
        git(
            source,
            &["rev-parse", &format!("refs/heads/{default_branch}")]
        )
        .trim()
    );
}

/// The acceptance test of the issue: >100 repositories (pagination), an empty one, one whose
/// default branch is `trunk` with tags, notes, custom refs, non-ASCII names, a binary file and
/// hundreds of refs; every bundle downloaded, verified, cloned and compared with its source.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workspace_of_over_100_repositories_round_trips_through_s3() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();

    let rich = rich_repo(&fixtures, "rich");
    let empty = empty_repo(&fixtures, "hollow");
    let mut sources: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    env.emu.add_repo("acme", "rich", &rich, RepoOpts::default());
    sources.insert("rich".into(), (rich, "trunk".into()));
    env.emu
        .add_repo("acme", "hollow", &empty, RepoOpts::default());
    env.emu.add_repo(
        "acme",
        "mercurial-relic",
        &empty,
        RepoOpts {
            scm: "hg".into(),
            ..RepoOpts::default()
        },
    );
    for i in 0..101 {
        let slug = format!("svc-{i:03}");
        let branch = if i % 10 == 0 { "develop" } else { "main" };
        let repo = simple_repo(&fixtures, &slug, branch);
        env.emu.add_repo("acme", &slug, &repo, RepoOpts::default());
        sources.insert(slug, (repo, branch.to_string()));
    }

    let mut cmd = env.command(&[
        "backup",
        "--owner",
        "acme",
        "--dest",
        &format!("s3://{}/git", s3.bucket),
        "--date",
        DATE,
        "--part-size",
        "5MiB",
    ]);
    cmd.envs(s3.env());
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains("manifest"), "summary missing:\n{stderr}");
    assert!(!stderr.contains(SECRET));
    assert!(
        env.tmp_leftovers().is_empty(),
        "temp files left: {:?}",
        env.tmp_leftovers()
    );
    assert_eq!(s3.open_multipart_uploads().await, 0);

    let prefix = format!("git/acme/{DATE}");
    let manifest: Value =
        serde_json::from_slice(&s3.get(&format!("{prefix}/manifest.json")).await).unwrap();
    assert_eq!(manifest["format"], 1);
    assert_eq!(manifest["owner"], "acme");
    assert_eq!(manifest["provider"], "bitbucket");
    assert_eq!(manifest["date"], DATE);
    let repos = manifest["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 103, "101 services + rich + hollow; hg skipped");
    assert_eq!(entry(&manifest, "hollow")["status"], "empty");
    assert!(entry(&manifest, "hollow")["key"].is_null());
    assert!(
        !s3.keys()
            .await
            .iter()
            .any(|k| k.contains("hollow") || k.contains("mercurial")),
        "no bundle for empty or non-git repositories"
    );

    let scratch = env.path().join("restore");
    for (slug, (source, branch)) in &sources {
        let e = entry(&manifest, slug);
        assert_eq!(e["status"], "ok", "{slug}: {e}");
        let key = format!("{prefix}/{slug}.bundle");
        assert_eq!(e["key"], key.as_str());
        let bytes = s3.get(&key).await;
        assert_eq!(e["size"], bytes.len() as u64);
        assert_eq!(
            e["sha256"],
            sha256_hex(&bytes).as_str(),
            "{slug}: manifest sha256"
        );
        assert_eq!(
            s3.metadata(&key).await.get("sha256").map(String::as_str),
            Some(sha256_hex(&bytes).as_str()),
            "{slug}: object metadata sha256"
        );
        assert_eq!(e["head"], format!("refs/heads/{branch}").as_str());
        let manifest_refs: BTreeMap<String, String> =
            serde_json::from_value(e["refs"].clone()).unwrap();
        assert_eq!(manifest_refs, refs_of(source), "{slug}: manifest refs");

        let file = scratch.join(format!("{slug}.bundle"));
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        assert_bundle_restores(&file, source, branch, &scratch.join(slug));
    }
    // The rich repository really exercised what it should.
    let rich_refs = refs_of(&sources["rich"].0);
    assert!(
        rich_refs.len() >= 300,
        "rich repo has {} refs",
        rich_refs.len()
    );
    assert!(rich_refs.keys().any(|r| r.starts_with("refs/notes/")));
    assert!(rich_refs.keys().any(|r| !r.is_ascii()));
    assert!(
        env.emu.stats().list_requests >= 2,
        "listing must have paged"
    );
}

/// The embedded default destination: a local directory with the same layout, written through
/// temp names (none left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_directory_destination_has_the_same_layout() {
    let env = TestEnv::new().await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let api = simple_repo(&fixtures, "api", "main");
    env.emu.add_repo("acme", "api", &api, RepoOpts::default());

    let dest = env.path().join("backups");
    env.run(&[
        "backup",
        "--owner",
        "acme",
        "--dest",
        dest.to_str().unwrap(),
        "--date",
        DATE,
    ])
    .await
    .expect_code(0);

    let day = dest.join("acme").join(DATE);
    let mut names: Vec<String> = std::fs::read_dir(&day)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["api.bundle", "manifest.json"]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(day.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        entry(&manifest, "api")["key"],
        format!("acme/{DATE}/api.bundle").as_str()
    );
    let bytes = std::fs::read(day.join("api.bundle")).unwrap();
    assert_eq!(
        entry(&manifest, "api")["sha256"],
        sha256_hex(&bytes).as_str()
    );
    assert_bundle_restores(
        &day.join("api.bundle"),
        &api,
        "main",
        &env.path().join("restore"),
    );
    assert!(env.tmp_leftovers().is_empty());

    // The default destination is ./backup in the working directory.
    let cwd = env.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = env
        .command(&["backup", "--owner", "acme", "--date", DATE])
        .current_dir(&cwd)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        cwd.join("backup/acme")
            .join(DATE)
            .join("api.bundle")
            .is_file()
    );
}

/// Faults that a long unattended run meets: rate limits on the listing, tokens expiring
/// mid-run, and one repository that cannot be cloned. The others must still be backed up,
/// the manifest must list the failure, and the exit code must be 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_are_survived_and_one_broken_repository_gives_exit_5() {
    let env = TestEnv::with_consumer(ConsumerOpts {
        token_ttl: std::time::Duration::from_secs(2),
        ..ConsumerOpts::default()
    })
    .await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    for i in 0..12 {
        let slug = format!("repo-{i:02}");
        let repo = simple_repo(&fixtures, &slug, "main");
        env.emu.add_repo("acme", &slug, &repo, RepoOpts::default());
    }
    env.emu.fail_repo("acme", "repo-07", 500);
    env.emu.push_fault(
        Route::List,
        Fault::RateLimit {
            retry_after: Some(1),
        },
    );
    env.emu
        .push_fault(Route::List, Fault::RateLimit { retry_after: None });
    env.emu.push_fault(Route::List, Fault::Status(503));

    let dest = env.path().join("backups");
    let started = std::time::Instant::now();
    let run = env
        .run(&[
            "backup",
            "--owner",
            "acme",
            "--dest",
            dest.to_str().unwrap(),
            "--date",
            DATE,
            "--jobs",
            "2",
            "--retry-delay",
            "100ms",
            "--retries",
            "1",
        ])
        .await;
    run.expect_code(5);
    assert!(run.stderr.contains("repo-07"), "{}", run.stderr);
    assert!(!run.stderr.contains(SECRET));

    let manifest: Value = serde_json::from_slice(
        &std::fs::read(dest.join("acme").join(DATE).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let failed = entry(&manifest, "repo-07");
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("500"),
        "{failed}"
    );
    assert_eq!(manifest["summary"]["ok"], 11);
    assert_eq!(manifest["summary"]["failed"], 1);
    for i in (0..12).filter(|i| *i != 7) {
        assert!(
            dest.join("acme")
                .join(DATE)
                .join(format!("repo-{i:02}.bundle"))
                .is_file()
        );
    }
    assert!(!dest.join("acme").join(DATE).join("repo-07.bundle").exists());

    let stats = env.emu.stats();
    assert!(
        stats.rate_limited >= 2,
        "429s served: {}",
        stats.rate_limited
    );
    // The run outlived the 2 s token lifetime, so it must have renewed.
    if started.elapsed() > std::time::Duration::from_secs(3) {
        assert!(
            stats.token_requests >= 2,
            "token requests: {}",
            stats.token_requests
        );
    }
    assert!(env.tmp_leftovers().is_empty());
}

/// Tokens that the server expires while clones are under way are renewed, and the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expired_mid_run_is_renewed() {
    let env = TestEnv::new().await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    for i in 0..3 {
        let slug = format!("r{i}");
        let repo = simple_repo(&fixtures, &slug, "main");
        env.emu.add_repo("acme", &slug, &repo, RepoOpts::default());
    }
    // The first git request meets an expired token: the clone must renew and go on.
    env.emu.push_fault(Route::Git, Fault::ExpireTokens);
    let dest = env.path().join("b");
    env.run(&[
        "backup",
        "--owner",
        "acme",
        "--dest",
        dest.to_str().unwrap(),
        "--jobs",
        "1",
    ])
    .await
    .expect_code(0);
    assert!(env.emu.stats().token_requests >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_consumer_secret_exits_3_and_is_never_printed() {
    let mut env = TestEnv::new().await;
    env.emu.add_workspace("acme");
    let wrong = "wrong-secret-value-7d2e";
    env.set_env("BITBUCKET_CONSUMER_SECRET", wrong);
    for log_format in ["text", "json"] {
        let run = env
            .run(&[
                "backup",
                "--owner",
                "acme",
                "--dest",
                env.path().join("b").to_str().unwrap(),
                "--log-format",
                log_format,
                "-v",
            ])
            .await;
        run.expect_code(3);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains(wrong), "secret printed:\n{all}");
        assert!(
            all.contains("BITBUCKET_CONSUMER_SECRET"),
            "should say what to fix:\n{all}"
        );
    }
    assert!(
        !env.path().join("b").join("acme").exists(),
        "nothing may be written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_exits_4_before_cloning_anything() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    env.simple_repo("acme", "api", "main");
    let mut cmd = env.command(&[
        "backup",
        "--owner",
        "acme",
        "--dest",
        "s3://no-such-bucket-here/git",
    ]);
    cmd.envs(s3.env());
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("no-such-bucket-here") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert_eq!(
        env.emu.stats().git_requests,
        0,
        "nothing should have been cloned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_workspace_is_a_clear_error_not_an_empty_backup() {
    let env = TestEnv::new().await;
    let dest = env.path().join("b");
    let run = env
        .run(&[
            "backup",
            "--owner",
            "nobody-here",
            "--dest",
            dest.to_str().unwrap(),
        ])
        .await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("nobody-here") && run.stderr.contains("--owner"),
        "{}",
        run.stderr
    );
    assert!(!dest.join("nobody-here").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_and_dry_run_writes_nothing() {
    let env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    env.simple_repo("acme", "web", "main");
    let dest = env.path().join("b");

    let run = env
        .run(&[
            "backup",
            "--owner",
            "acme",
            "--dest",
            dest.to_str().unwrap(),
            "--dry-run",
            "--exclude",
            "web",
        ])
        .await;
    run.expect_code(0);
    assert_eq!(
        run.stdout.trim(),
        format!("acme/api\tacme/{}/api.bundle", chrono_today())
    );
    assert!(!dest.join("acme").exists(), "dry run wrote something");
    assert_eq!(env.emu.stats().git_requests, 0);

    let run = env
        .run(&[
            "backup",
            "--owner",
            "acme",
            "--dest",
            dest.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .await;
    run.expect_code(0);
    let lines: Vec<Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines
        .iter()
        .find(|l| l["event"] == "summary")
        .expect("a summary event");
    assert_eq!(summary["ok"], 2);
    assert_eq!(summary["failed"], 0);
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
}

/// Repositories start largest first (by the listing's `size`), whatever their listing order:
/// with one job, the order of the "backing up" log lines is the order of work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_repository_is_started_first() {
    let env = TestEnv::new().await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    env.simple_repo("acme", "aaa-small", "main");
    env.emu.add_repo(
        "acme",
        "mmm-big",
        &big_repo(&fixtures, "mmm-big", 3 << 20),
        RepoOpts::default(),
    );
    env.simple_repo("acme", "zzz-small", "main");
    let dest = env.path().join("dest");
    let run = env
        .run(&[
            "backup",
            "--owner",
            "acme",
            "--dest",
            dest.to_str().unwrap(),
            "--jobs",
            "1",
            "--log-format",
            "json",
        ])
        .await;
    run.expect_code(0);
    let started: Vec<String> = run
        .stderr
        .lines()
        .filter(|l| l.contains("backing up"))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["repo"]
                .as_str()
                .or(v["fields"]["repo"].as_str())
                .unwrap_or_else(|| panic!("no repo field: {l}"))
                .to_owned()
        })
        .collect();
    assert_eq!(started.len(), 3, "{started:?}");
    assert_eq!(started[0], "acme/mmm-big", "listed second, started first");
}

/// SIGTERM (what Kubernetes sends) while a multipart upload is in flight: no new repositories,
/// the upload aborted, temp dirs removed, no manifest (the run is incomplete), exit 130 well
/// within a pod's grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_aborts_uploads_cleans_up_and_exits_non_zero() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    if !s3.can_inject_faults() {
        eprintln!("skipped: needs the in-process S3 server to slow uploads down");
        return;
    }
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    // `aaa-big` sorts first and is listed first, so it is among the first two in flight.
    env.emu.add_repo(
        "acme",
        "aaa-big",
        &big_repo(&fixtures, "aaa-big", 24 << 20),
        RepoOpts::default(),
    );
    for i in 0..6 {
        let slug = format!("small-{i}");
        env.simple_repo("acme", &slug, "main");
    }
    s3.slow_upload_parts(std::time::Duration::from_secs(3));

    let mut cmd = env.command(&[
        "backup",
        "--owner",
        "acme",
        "--dest",
        &format!("s3://{}/git", s3.bucket),
        "--jobs",
        "1",
        "--part-size",
        "5MiB",
        "--parts-in-flight",
        "2",
    ]);
    cmd.envs(s3.env()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while s3.open_multipart_uploads().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no multipart upload started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before the upload started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    let signalled = std::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());

    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("did not exit within 60 s of SIGTERM")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("interrupted"),
        "{stderr}"
    );
    assert_eq!(
        s3.open_multipart_uploads().await,
        0,
        "multipart upload left open"
    );
    let keys = s3.keys().await;
    assert!(
        !keys.iter().any(|k| k.ends_with("manifest.json")),
        "manifest written: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("aaa-big")),
        "partial big bundle: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("small-5")),
        "a repository started after SIGTERM"
    );
    assert!(
        env.tmp_leftovers().is_empty(),
        "temp left: {:?}",
        env.tmp_leftovers()
    );
}

fn chrono_today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}
