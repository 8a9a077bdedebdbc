//! What only GitLab has, against its emulator: the group listing's parameters (subgroups in,
//! shared projects out), the token's kind at `login` (group bot or person, expiry), an expired
//! token named as such, and the binary end to end (backup → `git bundle verify` → restore, ref
//! for ref) with git sent `oauth2` and the token, and no secret in what it prints. The
//! properties every provider shares are in `provider_contract` (stamped for GitLab there).

use std::path::Path;
use std::time::Duration;

use git_offsite::error::exit;
use git_offsite::provider::gitlab::{GitlabOptions, GitlabProvider};
use git_offsite::provider::http::RetryPolicy;
use git_offsite::provider::{Provider, ProviderError};
use git_offsite::secret::Secret;

use crate::restore::assert_restored;
use crate::support::git::{empty_repo, git, rich_repo, simple_repo};
use crate::support::gitlab::{EXPIRED, Emulator, TokenOpts};
use crate::support::harness::{Run, TestEnv};
use crate::support::readback::{DAY1, DAY2, Dest, OWNER, entry};
use crate::support::s3::TestS3;

fn provider(emu: &Emulator, token: &str) -> GitlabProvider {
    let mut opts = GitlabOptions::new(Secret::new(token));
    opts.url = emu.base_url().parse().unwrap();
    opts.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    };
    GitlabProvider::new(opts).unwrap()
}

fn gitlab_env(env: &mut TestEnv, emu: &Emulator, token: &str) {
    env.set_env("GITLAB_URL", &emu.base_url());
    env.set_env("GITLAB_TOKEN", token);
}

fn assert_no_secret(token: &str, run: &Run) {
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(!printed.contains(token), "the token leaked: {printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subgroups_are_listed_and_projects_shared_into_the_group_are_not() {
    let emu = Emulator::start_blocking();
    let token = emu.add_token(TokenOpts::group_bot(1));
    let dir = tempfile::tempdir().unwrap();
    let source = simple_repo(dir.path(), "source", "main");
    emu.add_project("acme", "api", &source);
    emu.add_project("acme/team", "tools", &source);
    let theirs = emu.add_project("partner", "shared", &source);
    emu.share(theirs, "acme");
    let listing = provider(&emu, &token).list_repos("acme").await.unwrap();
    let slugs: Vec<&str> = listing.repos.iter().map(|r| r.slug.as_str()).collect();
    assert_eq!(slugs, ["api", "team/tools"]);
    assert!(listing.rejected.is_empty(), "{:?}", listing.rejected);
    let asked = emu.requests();
    assert!(
        asked.iter().all(|r| !r.contains("/projects?")
            || (r.contains("include_subgroups=true") && r.contains("with_shared=false"))),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_named_by_its_full_path() {
    let emu = Emulator::start_blocking();
    let token = emu.add_token(TokenOpts::group_bot(1));
    let dir = tempfile::tempdir().unwrap();
    let source = simple_repo(dir.path(), "source", "main");
    emu.add_project("acme/team", "tools", &source);
    let listing = provider(&emu, &token)
        .list_repos("acme/team")
        .await
        .unwrap();
    assert_eq!(listing.repos.len(), 1, "{listing:?}");
    assert_eq!(listing.repos[0].full_name, "acme/team/tools");
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.starts_with("/groups/acme%2Fteam/projects?")),
        "{:?}",
        emu.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_an_auth_error_saying_so() {
    let emu = Emulator::start_blocking();
    let token = emu.add_token(TokenOpts::group_bot(1));
    emu.add_group("acme");
    let p = provider(&emu, &token);
    p.list_repos("acme").await.unwrap();
    emu.expire_tokens();
    let err = p.list_repos("acme").await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert_eq!(err.exit_code(), exit::AUTH);
    let shown = err.to_string();
    assert!(
        shown.contains(EXPIRED) && shown.contains("GITLAB_TOKEN"),
        "{shown}"
    );
    assert!(!shown.contains(&token), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verifies_and_restores_ref_for_ref_with_no_secret_printed() {
    let mut env = TestEnv::new().await;
    let emu = Emulator::start_blocking();
    let token = emu.add_token(TokenOpts::group_bot(1));
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let sources = [
        ("rich", rich_repo(&fixtures, "rich"), "trunk"),
        ("api", simple_repo(&fixtures, "api", "main"), "main"),
    ];
    for (slug, source, _) in &sources {
        emu.add_project("acme", slug, source);
    }
    emu.add_project("acme", "hollow", &empty_repo(&fixtures, "hollow"));
    gitlab_env(&mut env, &emu, &token);
    let dest = env.path().join("dest");
    let day = "2026-11-24";
    let run = backup(&env, &dest, day).await;
    run.expect_code(0);
    assert_no_secret(&token, &run);
    let manifest = TestEnv::local_manifest(&dest, "acme", day);
    assert_eq!(manifest["provider"], "gitlab", "{manifest:#}");
    let creds = emu.git_credentials();
    assert!(!creds.is_empty());
    assert!(
        creds.iter().all(|(u, p)| u == "oauth2" && p == &token),
        "git got only oauth2 and the token"
    );
    let scratch = env.path().join("scratch");
    git(env.path(), &["init", "--quiet", scratch.to_str().unwrap()]);
    for (slug, source, branch) in &sources {
        let bundle = dest.join("acme").join(day).join(format!("{slug}.bundle"));
        git(
            &scratch,
            &["bundle", "verify", "--quiet", bundle.to_str().unwrap()],
        );
        restore(&env, &dest, slug, &env.path().join("out").join(slug))
            .await
            .expect_code(0);
        assert_restored(&env.path().join("out").join(slug), source, branch, false);
    }
    env.set_env("GITLAB_TOKEN", "glpat-wrong-token-0000");
    let run = env
        .run(&["list", "--provider", "gitlab", "--owner", "acme"])
        .await;
    run.expect_code(i32::from(exit::AUTH));
    assert!(run.stderr.contains("GITLAB_TOKEN"), "{}", run.stderr);
    assert_no_secret("glpat-wrong-token-0000", &run);
}

async fn backup(env: &TestEnv, dest: &Path, day: &str) -> Run {
    env.run(&[
        "--log-format",
        "json",
        "-v",
        "backup",
        "--provider",
        "gitlab",
        "--owner",
        "acme",
        "--dest",
        dest.to_str().unwrap(),
        "--date",
        day,
    ])
    .await
}

async fn restore(env: &TestEnv, dest: &Path, repo: &str, to: &Path) -> Run {
    env.run(&[
        "restore",
        "--owner",
        "acme",
        "--dest",
        dest.to_str().unwrap(),
        "--repo",
        repo,
        "--to",
        to.to_str().unwrap(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_tells_a_group_bot_from_a_person_and_shows_the_expiry() {
    let mut env = TestEnv::new().await;
    let emu = Emulator::start_blocking();
    let dir = tempfile::tempdir().unwrap();
    emu.add_project("acme", "api", &simple_repo(dir.path(), "source", "main"));
    let bot = emu.add_token(TokenOpts::group_bot(1));
    gitlab_env(&mut env, &emu, &bot);
    let run = env
        .run(&["login", "--provider", "gitlab", "--owner", "acme"])
        .await;
    run.expect_code(0);
    for said in [
        "group access token",
        "group_1_bot_",
        "2027-11-30",
        "can read `acme`",
    ] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    assert!(!run.stderr.contains("one person"), "{}", run.stderr);
    assert_no_secret(&bot, &run);
    let stored = env.path().join("home/.config/git-offsite/credentials.toml");
    let text = std::fs::read_to_string(&stored).unwrap();
    assert!(text.contains("[gitlab]") && text.contains(&bot), "stored");

    let mut narrow = TokenOpts::person("alice");
    narrow.scopes = vec!["read_api".into()];
    let person = emu.add_token(narrow);
    env.set_env("GITLAB_TOKEN", &person);
    let run = env.run(&["login", "--provider", "gitlab"]).await;
    run.expect_code(0);
    for said in [
        "personal token",
        "`alice`",
        "ties the backups to one person",
        "lacks the read_repository scope",
    ] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    assert_no_secret(&person, &run);

    env.remove_env("GITLAB_TOKEN");
    let run = env.run(&["login", "--provider", "gitlab"]).await;
    run.expect_code(i32::from(exit::USAGE));
    for step in ["Access tokens", "read_api", "read_repository", "Reporter"] {
        assert!(run.stderr.contains(step), "{step}: {}", run.stderr);
    }
}

/// Projects in subgroups end to end on S3: `team/tools` is stored as
/// `<prefix>/acme/<date>/team/tools.bundle`, restored by its nested slug and under
/// `restore --all` as `team/tools/`, verified, copied forward by an unchanged second run, and
/// pruned with the rest of its date folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_projects_back_up_restore_verify_and_prune() {
    nested_round_trip(true).await;
}

/// The same on a local directory, where a nested slug is a real sub-directory: pruning the
/// date folder leaves no empty `team/` behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_projects_round_trip_on_a_local_directory() {
    nested_round_trip(false).await;
}

async fn nested_round_trip(on_s3: bool) {
    let mut env = TestEnv::new().await;
    let emu = Emulator::start_blocking();
    let token = emu.add_token(TokenOpts::group_bot(1));
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let sources = [
        ("api", simple_repo(&fixtures, "api", "main"), "main"),
        ("team/tools", rich_repo(&fixtures, "tools"), "trunk"),
        (
            "team/deep/x",
            simple_repo(&fixtures, "x", "develop"),
            "develop",
        ),
    ];
    for (slug, source, _) in &sources {
        let (sub, path) = slug.rsplit_once('/').map_or(("", *slug), |(s, p)| (s, p));
        let group = if sub.is_empty() {
            OWNER.to_string()
        } else {
            format!("{OWNER}/{sub}")
        };
        emu.add_project(&group, path, source);
    }
    gitlab_env(&mut env, &emu, &token);
    let s3 = TestS3::start().await;
    let dest = if on_s3 {
        Dest::S3(&s3)
    } else {
        Dest::Local(env.path().join("dest"))
    };
    let d = dest.arg();
    for day in [DAY1, DAY2] {
        let run = dest
            .run(
                &env,
                &[
                    "backup",
                    "--provider",
                    "gitlab",
                    "--owner",
                    OWNER,
                    "--dest",
                    &d,
                    "--date",
                    day,
                ],
            )
            .await;
        run.expect_code(0);
        assert_no_secret(&token, &run);
    }
    let day1 = date_keys(&dest, DAY1).await;
    for name in [
        "api.bundle",
        "team/tools.bundle",
        "team/deep/x.bundle",
        "manifest.json",
    ] {
        assert!(day1.contains(&dest.key(DAY1, name)), "{name}: {day1:?}");
    }
    let manifest = dest.manifest(DAY2).await;
    let e = entry(&manifest, "team/tools");
    assert_eq!(e["full_name"], "acme/team/tools", "{e}");
    assert_eq!(e["key"], dest.key(DAY2, "team/tools.bundle"), "{e}");

    let one = env.path().join("one");
    dest.read_command(
        &env,
        "restore",
        &[
            "--repo",
            "team/tools",
            "--date",
            DAY1,
            "--to",
            one.to_str().unwrap(),
        ],
    )
    .await
    .expect_code(0);
    assert_restored(&one, &sources[1].1, "trunk", false);
    let all = env.path().join("all");
    dest.read_command(&env, "restore", &["--all", "--to", all.to_str().unwrap()])
        .await
        .expect_code(0);
    for (slug, source, branch) in &sources {
        assert_restored(&all.join(slug), source, branch, false);
    }
    let run = dest
        .read_command(&env, "verify", &["--repo", "team/deep/x"])
        .await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("team/deep/x") && run.stdout.contains("ok"),
        "{}",
        run.stdout
    );

    dest.read_command(&env, "prune", &["--keep-last", "1"])
        .await
        .expect_code(0);
    assert!(
        date_keys(&dest, DAY1).await.is_empty(),
        "{:?}",
        date_keys(&dest, DAY1).await
    );
    if let Dest::Local(root) = &dest {
        let folder = root.join(OWNER).join(DAY1);
        assert!(!folder.exists(), "{} is left behind", folder.display());
    }
    let day2 = date_keys(&dest, DAY2).await;
    assert!(
        day2.contains(&dest.key(DAY2, "team/deep/x.bundle")),
        "{day2:?}"
    );
    let after = env.path().join("after-prune");
    dest.read_command(
        &env,
        "restore",
        &["--repo", "team/deep/x", "--to", after.to_str().unwrap()],
    )
    .await
    .expect_code(0);
    assert_restored(&after, &sources[2].1, "develop", false);
}

/// Every key (local: relative path, as [`Dest::key`] spells it) in the date folder `day` of
/// `acme`, through the destination's own listing.
async fn date_keys(dest: &Dest<'_>, day: &str) -> Vec<String> {
    use git_offsite::store::Store;
    let (store, folder): (Box<dyn Store>, String) = match dest {
        Dest::S3(s3) => (
            Box::new(s3.store()),
            format!("{}/{OWNER}/{day}/", s3.prefix),
        ),
        Dest::Local(root) => (
            Box::new(git_offsite::store::fs::FsStore::new(root.clone())),
            format!("{OWNER}/{day}/"),
        ),
    };
    store
        .list(&folder)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect()
}
