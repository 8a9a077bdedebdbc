//! `restore` end to end: real backups (local directory and S3) restored with the binary and
//! read back with stock git: ref-for-ref equal to the source, default branch checked out,
//! `git fsck --strict` clean. Then the ways a restore must refuse or fail without leaving
//! anything that looks like a finished repository.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::git::{git, git_output, show_refs};
use crate::support::harness::TestEnv;
use crate::support::readback::{DAY1, DAY2, Dest, OWNER, entry_mut, fixtures, names_in};
use crate::support::s3::TestS3;

/// What stock git says about a restored repository: every ref and HEAD equal to the source,
/// `fsck --strict` clean, and (non-bare) a clean working tree on the default branch.
pub(crate) fn assert_restored(dir: &Path, source: &Path, branch: &str, bare: bool) {
    assert_eq!(
        show_refs(dir),
        show_refs(source),
        "refs of {} differ from the source",
        dir.display()
    );
    git(dir, &["fsck", "--strict", "--no-dangling"]);
    let is_bare = git(dir, &["rev-parse", "--is-bare-repository"]);
    assert_eq!(is_bare.trim(), if bare { "true" } else { "false" });
    if !bare {
        assert_eq!(
            git(dir, &["symbolic-ref", "HEAD"]).trim(),
            format!("refs/heads/{branch}")
        );
        assert_eq!(
            git(dir, &["status", "--porcelain"]),
            "",
            "a clean working tree"
        );
        assert!(dir.join("README.md").is_file() || dir.join("assets/blob.bin").is_file());
    }
}

/// Nothing but `expected` in `parent`: no `.x.restore-*` temp dirs left.
fn assert_only(parent: &Path, expected: &[&str]) {
    assert_eq!(names_in(parent), expected, "in {}", parent.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_restores_ref_for_ref_from_both_stores() {
    let env = TestEnv::new().await;
    let sources = fixtures(&env);
    let s3 = TestS3::start().await;
    let local = Dest::Local(env.path().join("backups"));
    let remote = Dest::S3(&s3);
    for (n, dest) in [&local, &remote].into_iter().enumerate() {
        dest.backup(&env, DAY1).await;
        let out = env.path().join(format!("out-{n}"));
        for (slug, (source, branch)) in &sources {
            let work = out.join(slug);
            let run = dest
                .read_command(
                    &env,
                    "restore",
                    &["--repo", slug, "--to", work.to_str().unwrap()],
                )
                .await;
            run.expect_code(0);
            assert!(
                run.stderr.contains(&format!("restored `{slug}`")),
                "{}",
                run.stderr
            );
            assert_restored(&work, source, branch, false);

            let bare = out.join(format!("{slug}.git"));
            dest.read_command(
                &env,
                "restore",
                &[
                    "--repo",
                    slug,
                    "--to",
                    bare.to_str().unwrap(),
                    "--bare",
                    "--date",
                    DAY1,
                ],
            )
            .await
            .expect_code(0);
            assert_restored(&bare, source, branch, true);
        }
        // The rich repository's binary file came back byte for byte.
        let blob = git(&out.join("rich"), &["hash-object", "assets/blob.bin"]);
        let want = git(
            &sources["rich"].0,
            &["rev-parse", "refs/heads/trunk:assets/blob.bin"],
        );
        assert_eq!(blob, want);
        // An empty repository has nothing to restore: a usage error, nothing written.
        let hollow = out.join("hollow");
        let run = dest
            .read_command(
                &env,
                "restore",
                &[
                    "--repo",
                    "hollow",
                    "--to",
                    hollow.to_str().unwrap(),
                    "--date",
                    DAY1,
                ],
            )
            .await;
        run.expect_code(2);
        assert!(run.stderr.contains("empty"), "{}", run.stderr);
        let run = dest
            .read_command(
                &env,
                "restore",
                &["--repo", "nonesuch", "--to", hollow.to_str().unwrap()],
            )
            .await;
        run.expect_code(2);
        assert!(run.stderr.contains("nonesuch"), "{}", run.stderr);
        assert_only(
            &out,
            &["api", "api.git", "rich", "rich.git", "web", "web.git"],
        );
    }
    assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
}

/// `--all`: every repository with a bundle into `DIR/<slug>`, the empty one skipped with a
/// line; a broken bundle fails (exit 5, named) while the others are still restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_restores_every_repository_and_names_the_failures() {
    let env = TestEnv::new().await;
    let sources = fixtures(&env);
    let dest = Dest::Local(env.path().join("backups"));
    dest.backup(&env, DAY1).await;

    let out = env.path().join("all");
    let run = dest
        .read_command(
            &env,
            "restore",
            &["--all", "--to", out.to_str().unwrap(), "--jobs", "2"],
        )
        .await;
    run.expect_code(0);
    assert!(
        run.stderr.contains("skipping `hollow`: empty repository"),
        "{}",
        run.stderr
    );
    for (slug, (source, branch)) in &sources {
        assert_restored(&out.join(slug), source, branch, false);
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(slug.as_str()) && l.contains("restored")),
            "{}",
            run.stdout
        );
    }
    assert_only(&out, &["api", "rich", "web"]);

    // Bare, with one bundle damaged.
    let key = dest.key(DAY1, "web.bundle");
    let mut bytes = dest.read(&key).await;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    dest.write(&key, bytes, None).await;
    let bare = env.path().join("all-bare");
    let run = dest
        .read_command(
            &env,
            "restore",
            &["--all", "--bare", "--to", bare.to_str().unwrap()],
        )
        .await;
    run.expect_code(5);
    assert!(
        run.stderr
            .contains("1 of 3 repositories could not be restored: web"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("web") && l.contains("FAILED")),
        "{}",
        run.stdout
    );
    for slug in ["api", "rich"] {
        let (source, branch) = &sources[slug];
        assert_restored(&bare.join(format!("{slug}.git")), source, branch, true);
    }
    assert_only(&bare, &["api.git", "rich.git"]);
}

/// A non-empty `--to` is refused before anything is read; a bundle whose SHA-256 does not
/// match stops with a clear error and leaves nothing at `--to` (nor a temp dir beside it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_a_bad_bundle_leave_nothing_behind() {
    let env = TestEnv::new().await;
    env.simple_repo(OWNER, "api", "main");
    let dest = Dest::Local(env.path().join("backups"));
    dest.backup(&env, DAY1).await;

    let busy = env.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("precious.txt"), b"mine").unwrap();
    let run = dest
        .read_command(
            &env,
            "restore",
            &["--repo", "api", "--to", busy.to_str().unwrap()],
        )
        .await;
    run.expect_code(2);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(
        run.stderr.contains(busy.to_str().unwrap()) && run.stderr.contains("not empty"),
        "{}",
        run.stderr
    );
    assert_only(&busy, &["precious.txt"]);
    assert_only(env.path(), &["backups", "busy", "fixtures", "home", "tmp"]);

    // An empty directory is fine, and is what the restore becomes.
    let empty = env.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    dest.read_command(
        &env,
        "restore",
        &["--repo", "api", "--to", empty.to_str().unwrap()],
    )
    .await
    .expect_code(0);
    assert!(empty.join(".git").is_dir());

    // One bit of the pack flipped: the indexer might even accept the bytes; the SHA-256 not.
    let key = dest.key(DAY1, "api.bundle");
    let mut bytes = dest.read(&key).await;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    dest.write(&key, bytes, None).await;
    let parent = env.path().join("restores");
    let target = parent.join("api");
    let run = dest
        .read_command(
            &env,
            "restore",
            &["--repo", "api", "--to", target.to_str().unwrap()],
        )
        .await;
    run.expect_code(5);
    assert!(
        run.stderr.contains("SHA-256 mismatch") && run.stderr.contains("`api`"),
        "{}",
        run.stderr
    );
    assert!(!target.exists(), "nothing at --to");
    assert_only(&parent, &[]);
    assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
}

/// A later manifest with an `unchanged` entry whose key is the earlier day's bundle (what the
/// incremental backup writes in reference mode) restores, with `--date` that later day and
/// with `latest`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_entry_restores_through_its_reference() {
    let env = TestEnv::new().await;
    let api = env.simple_repo(OWNER, "api", "main");
    let dest = Dest::Local(env.path().join("backups"));
    let Dest::Local(root) = &dest else {
        unreachable!()
    };
    dest.backup(&env, DAY1).await;
    dest.backup(&env, DAY2).await;
    let mut manifest = dest.manifest(DAY2).await;
    let day1 = dest.manifest(DAY1).await;
    let mut entry = day1["repositories"][0].clone();
    assert_eq!(entry["slug"], "api");
    entry["status"] = "unchanged".into();
    entry["since"] = DAY1.into();
    *entry_mut(&mut manifest, "api") = entry;
    dest.write_manifest(DAY2, &manifest).await;
    // Day 2's own copy is gone: only the reference can restore it.
    std::fs::remove_file(root.join(dest.key(DAY2, "api.bundle"))).unwrap();

    for (n, date) in [Some(DAY2), None].into_iter().enumerate() {
        let to = env.path().join(format!("restored-{n}"));
        let mut args = vec!["--repo", "api", "--to", to.to_str().unwrap()];
        if let Some(d) = date {
            args.extend(["--date", d]);
        }
        let run = dest.read_command(&env, "restore", &args).await;
        run.expect_code(0);
        assert!(
            run.stderr.contains(DAY2),
            "restored from the later snapshot: {}",
            run.stderr
        );
        assert_restored(&to, &api, "main", false);
    }
}

/// `--push-to` a new, empty repository over smart HTTP: Basic auth from
/// GIT_OFFSITE_PUSH_USERNAME/PASSWORD, every ref pushed, the password never printed, no
/// temp dir left; a wrong password and a non-empty target both fail with exit 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_an_empty_remote_over_http() {
    const USER: &str = "restorer";
    const PASSWORD: &str = "push-pw-7c1d2e9a";
    let mut env = TestEnv::new().await;
    let sources = fixtures(&env);
    let dest = Dest::Local(env.path().join("backups"));
    dest.backup(&env, DAY1).await;
    let target = env.emu.add_push_target("newhome", "rich", USER, PASSWORD);
    let url = env.emu.git_url("newhome", "rich");

    // Wrong password first: refused, the password is not echoed anywhere.
    env.set_env("GIT_OFFSITE_PUSH_USERNAME", USER);
    env.set_env("GIT_OFFSITE_PUSH_PASSWORD", "not-the-password");
    let refused = env.emu.stats().unauthorized;
    let run = dest
        .read_command(&env, "restore", &["--repo", "rich", "--push-to", &url])
        .await;
    run.expect_code(5);
    assert!(
        run.stderr.contains("refused the credentials"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password") && !run.stdout.contains("not-the-password"));
    assert_eq!(git(&target, &["for-each-ref"]), "", "nothing was pushed");
    // One 401 asking for credentials, one refusing them; no replays of the wrong password.
    assert_eq!(env.emu.stats().unauthorized - refused, 2);

    env.set_env("GIT_OFFSITE_PUSH_PASSWORD", PASSWORD);
    let pushes = env.emu.stats().push_requests;
    let run = dest
        .read_command(&env, "restore", &["--repo", "rich", "--push-to", &url])
        .await;
    run.expect_code(0);
    assert!(
        env.emu.stats().push_requests > pushes,
        "went through the emulator's receive-pack"
    );
    assert!(run.stderr.contains("pushed"), "{}", run.stderr);
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(PASSWORD), "password printed:\n{text}");
    }
    let mut want = show_refs(&sources["rich"].0);
    let mut got = show_refs(&target);
    // HEAD is the server's own (a new repository's default); every ref must match.
    want.remove("HEAD");
    got.remove("HEAD");
    assert_eq!(got, want);
    git(&target, &["fsck", "--strict", "--no-dangling"]);
    assert!(
        env.tmp_leftovers().is_empty(),
        "the temp restore is removed: {:?}",
        env.tmp_leftovers()
    );

    // Again: the target is no longer empty, so nothing is overwritten.
    let run = dest
        .read_command(&env, "restore", &["--repo", "rich", "--push-to", &url])
        .await;
    run.expect_code(5);
    assert!(run.stderr.contains("not empty"), "{}", run.stderr);

    // With --to as well, the restore stays and is pushed from there.
    let second = env.emu.add_push_target("newhome", "api", USER, PASSWORD);
    let to = env.path().join("api");
    let url = env.emu.git_url("newhome", "api");
    dest.read_command(
        &env,
        "restore",
        &[
            "--repo",
            "api",
            "--to",
            to.to_str().unwrap(),
            "--push-to",
            &url,
        ],
    )
    .await
    .expect_code(0);
    assert_restored(&to, &sources["api"].0, "main", false);
    let pushed = git_output(&second, &["rev-parse", "refs/heads/main"]);
    assert_eq!(
        String::from_utf8_lossy(&pushed.stdout),
        git(&sources["api"].0, &["rev-parse", "refs/heads/main"])
    );
}

/// Ctrl-C while the bundle is downloading: exit 130 at once (not when the slow store answers),
/// the temp dir beside the target removed, nothing at `--to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_removes_the_unfinished_restore() {
    let env = TestEnv::new().await;
    env.simple_repo(OWNER, "api", "main");
    let s3 = TestS3::start().await;
    if !s3.can_inject_faults() {
        eprintln!("skipped: needs the in-process S3 server to slow downloads down");
        return;
    }
    let dest = Dest::S3(&s3);
    dest.backup(&env, DAY1).await;
    s3.slow_bundle_downloads(Duration::from_secs(60));

    let parent = env.path().join("restores");
    let target = parent.join("api");
    let mut cmd = env.command(&[
        "restore",
        "--owner",
        OWNER,
        "--dest",
        &dest.arg(),
        "--repo",
        "api",
        "--to",
        target.to_str().unwrap(),
    ]);
    cmd.envs(s3.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    // The restore is under way once its temp dir exists beside the target.
    let started = Instant::now();
    while !names_in(&parent)
        .iter()
        .any(|n| n.starts_with(".api.restore-"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no temp dir appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let interrupted = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("restore stops soon after SIGINT")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        interrupted.elapsed() < Duration::from_secs(20),
        "did not wait for the store"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!target.exists());
    assert_only(&parent, &[]);
    assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
}

/// The real incremental backup in reference mode: day 2's entries are `unchanged` and point at
/// day 1's bundles. `verify --date all --deep` and `restore --date <day 2>` follow them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_mode_snapshot_verifies_and_restores() {
    let env = TestEnv::new().await;
    let sources = fixtures(&env);
    let dest = Dest::Local(env.path().join("backups"));
    dest.backup(&env, DAY1).await;
    let arg = dest.arg();
    dest.run(
        &env,
        &[
            "backup",
            "--owner",
            OWNER,
            "--dest",
            &arg,
            "--date",
            DAY2,
            "--unchanged",
            "reference",
        ],
    )
    .await
    .expect_code(0);
    let manifest = dest.manifest(DAY2).await;
    for r in manifest["repositories"].as_array().unwrap() {
        if r["slug"] != "hollow" {
            assert_eq!(r["status"], "unchanged", "{r}");
            assert_eq!(
                r["key"],
                dest.key(DAY1, &format!("{}.bundle", r["slug"].as_str().unwrap()))
            );
        }
    }
    let run = dest
        .read_command(&env, "verify", &["--date", "all", "--deep"])
        .await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("a reference to the bundle of {DAY1}")),
        "{}",
        run.stdout
    );

    let out = env.path().join("restored");
    let run = dest
        .read_command(
            &env,
            "restore",
            &["--all", "--date", DAY2, "--to", out.to_str().unwrap()],
        )
        .await;
    run.expect_code(0);
    for (slug, (source, branch)) in &sources {
        assert_restored(&out.join(slug), source, branch, false);
    }
}
