//! What only Gitea / Forgejo has, against its emulator (`support::gitea`): `limit` clamped by
//! the server and short pages mid-listing (only `Link rel="next"` ends a listing), the
//! organisation → user fallback, pull mirrors, forks, archived and empty repositories, scoped
//! tokens, `login`, and the binary end to end (backup → `git bundle verify` → restore, ref for
//! ref) with no token in anything it prints or writes. The properties every provider shares are
//! in `provider_contract` (stamped for Gitea there).

use std::path::Path;

use git_offsite::error::exit;
use git_offsite::provider::gitea::{GIT_USERNAME, GiteaProvider};
use git_offsite::provider::{Provider, ProviderError, RemoteRepo};

use crate::provider_contract::gitea_host::Gitea;
use crate::restore::assert_restored;
use crate::support::git::{empty_repo, git, rich_repo, simple_repo};
use crate::support::gitea::{Emulator, Fault, RepoOpts, Route};
use crate::support::harness::{Run, TestEnv};
use crate::support::readback::entry;

fn slugs(repos: &[RemoteRepo]) -> Vec<String> {
    repos.iter().map(|r| r.slug.clone()).collect()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

fn provider(h: &Gitea) -> GiteaProvider {
    h.with_token(&h.token)
}

/// An instance with `MAX_RESPONSE_ITEMS = 7`: the provider's `limit=50` is clamped to 7 without
/// a word, and three of the owner's repositories are unreadable, so pages 1 and 2 come back
/// short although more follow. Every readable repository is listed, in id order, by following
/// `Link` to its end, and a 503 from a proxy on the way is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamped_and_short_pages_are_followed_to_the_last_link() {
    let h = Gitea::new();
    h.emu.set_max_items(7);
    let all = names("r", 17);
    let hidden = ["r-02", "r-05", "r-09"];
    for slug in &all {
        let opts = RepoOpts {
            unreadable: hidden.contains(&slug.as_str()),
            ..RepoOpts::default()
        };
        h.emu.add_repo("acme", slug, &h.source_repo(), opts);
    }
    h.emu.push_fault(Route::List, Fault::Status(503));
    let before = h.emu.stats();
    let listing = provider(&h).list_repos("acme").await.unwrap();
    let want: Vec<String> = all
        .iter()
        .filter(|s| !hidden.contains(&s.as_str()))
        .cloned()
        .collect();
    assert_eq!(slugs(&listing.repos), want);
    let after = h.emu.stats();
    // 17 repositories at 7 a page: 3 pages, plus the 503 retried.
    assert_eq!(after.list_requests - before.list_requests, 4);
    assert_eq!(after.query_tokens, 0, "never a token in a query string");
    assert_eq!(
        after.token_scheme - before.token_scheme,
        after.api_requests - before.api_requests - 1,
        "every answered API request carried `Authorization: token …`"
    );
}

/// The emulator's own faithfulness: asking 100 gets Gitea's maximum of 50, `X-Total-Count` counts
/// every repository, and `Link` carries the clamped `limit`, joined by `,` as Gitea does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_clamps_limit_to_fifty_as_gitea_does() {
    let h = Gitea::new();
    for slug in names("r", 60) {
        h.emu
            .add_repo("acme", &slug, &h.source_repo(), RepoOpts::default());
    }
    let url = format!(
        "{}/api/v1/orgs/acme/repos?page=1&limit=100",
        h.emu.base_url()
    );
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Authorization", format!("token {}", h.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let total = resp.headers()["x-total-count"].to_str().unwrap().to_owned();
    let link = resp.headers()["link"].to_str().unwrap().to_owned();
    let page: Vec<serde_json::Value> = resp.json().await.unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(total, "60");
    assert!(link.contains("limit=50&page=2>; rel=\"next\","), "{link}");
    // A token in the query string is refused (and counted), never accepted.
    let resp = reqwest::get(format!("{url}&token={}", h.token))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(h.emu.stats().query_tokens, 1);
}

/// `/orgs/{owner}/repos` is 404 for a user; the provider then lists `/users/{owner}/repos`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_is_no_organisation_is_listed_as_a_user() {
    let h = Gitea::new();
    h.emu.add_user("alice");
    for slug in ["dotfiles", "notes"] {
        h.emu
            .add_repo("alice", slug, &h.source_repo(), RepoOpts::default());
    }
    let before = h.emu.stats().list_requests;
    let listing = provider(&h).list_repos("alice").await.unwrap();
    assert_eq!(slugs(&listing.repos), ["dotfiles", "notes"]);
    assert_eq!(listing.repos[0].full_name, "alice/dotfiles");
    assert_eq!(
        h.emu.stats().list_requests - before,
        2,
        "orgs (404), then users"
    );
}

/// Pull mirrors, forks and archived repositories are backed up like any other; an empty one is
/// listed without a default branch (Gitea names one anyway); `size` is KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_forks_and_archived_are_listed_and_empty_has_no_branch() {
    let h = Gitea::new();
    let dir = tempfile::tempdir().unwrap();
    let hollow = empty_repo(dir.path(), "hollow");
    let kinds = [
        (
            "mirror",
            RepoOpts {
                mirror: true,
                ..RepoOpts::default()
            },
        ),
        (
            "fork",
            RepoOpts {
                fork: true,
                ..RepoOpts::default()
            },
        ),
        (
            "old",
            RepoOpts {
                archived: true,
                ..RepoOpts::default()
            },
        ),
        (
            "secret",
            RepoOpts {
                private: true,
                ..RepoOpts::default()
            },
        ),
    ];
    for (slug, opts) in kinds {
        h.emu.add_repo("acme", slug, &h.source_repo(), opts);
    }
    h.emu
        .add_repo("acme", "hollow", &hollow, RepoOpts::default());
    let listing = provider(&h).list_repos("acme").await.unwrap();
    assert_eq!(
        slugs(&listing.repos),
        ["mirror", "fork", "old", "secret", "hollow"]
    );
    assert!(listing.rejected.is_empty(), "{:?}", listing.rejected);
    let by = |s: &str| listing.repos.iter().find(|r| r.slug == s).unwrap();
    assert_eq!(by("mirror").default_branch.as_deref(), Some("main"));
    assert_eq!(by("hollow").default_branch, None);
    assert_eq!(by("secret").is_private, Some(true));
    let size = by("old").size.unwrap();
    assert!(size >= 1024 && size % 1024 == 0, "KiB × 1024: {size}");
}

/// A token without `read:organization` is an auth error that names the scopes to grant.
/// A `Link` next page on another origin is not followed with the token: the listing fails as
/// an unexpected answer and the other host never sees a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_origin_is_not_followed() {
    let h = Gitea::new();
    let elsewhere = Gitea::new();
    for slug in names("r", 3) {
        h.emu
            .add_repo("acme", &slug, &h.source_repo(), RepoOpts::default());
    }
    h.emu.set_max_items(2);
    let foreign = format!("{}/api/v1/orgs/acme/repos?page=2", elsewhere.emu.base_url());
    h.emu.set_foreign_next("acme", &foreign);
    let err = provider(&h).list_repos("acme").await.unwrap_err();
    assert!(matches!(err, ProviderError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("not following it"), "{err}");
    assert_eq!(elsewhere.emu.stats().api_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_scopes_is_an_auth_error_naming_them() {
    let h = Gitea::new();
    h.emu
        .add_repo("acme", "api", &h.source_repo(), RepoOpts::default());
    let narrow = h.emu.add_token("backup-bot", &["read:repository"]);
    let err = h.with_token(&narrow).list_repos("acme").await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert_eq!(err.exit_code(), exit::AUTH);
    let shown = err.to_string();
    assert!(shown.contains("read:organization"), "{shown}");
    assert!(!shown.contains(&narrow), "{shown}");
    // Without `read:user` the listing works, and git credentials are still handed out when
    // git refused them: `GET /user`'s 403 proves the token alive.
    let no_user = h
        .emu
        .add_token("backup-bot", &["read:repository", "read:organization"]);
    let provider = h.with_token(&no_user);
    let repo = provider.list_repos("acme").await.unwrap().repos.remove(0);
    let auth = provider.git_auth(&repo, true).await.unwrap().unwrap();
    assert_eq!(auth.password.expose(), no_user);
}

/// The binary's environment for the emulator (`GITEA_URL`), and a file holding `token`.
fn gitea_env(env: &mut TestEnv, emu: &Emulator, token: &str) -> String {
    let file = env.path().join("gitea-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    env.set_env("GITEA_URL", &emu.base_url());
    file.to_str().unwrap().to_owned()
}

/// Every file under `dir` but `skip`, as text.
fn files_text(dir: &Path, skip: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        if p.is_dir() {
            files_text(&p, skip, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
}

fn printed(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verifies_and_restores_ref_for_ref_with_no_token_shown() {
    let mut env = TestEnv::new().await;
    let h = Gitea::new();
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let sources = [
        ("rich", rich_repo(&fixtures, "rich"), "trunk"),
        ("api", simple_repo(&fixtures, "api", "develop"), "develop"),
    ];
    for (slug, source, _) in &sources {
        h.emu.add_repo("acme", slug, source, RepoOpts::default());
    }
    let mirror = simple_repo(&fixtures, "upstream", "main");
    let mirror_opts = RepoOpts {
        mirror: true,
        ..RepoOpts::default()
    };
    h.emu.add_repo("acme", "upstream", &mirror, mirror_opts);
    h.emu.add_repo(
        "acme",
        "hollow",
        &empty_repo(&fixtures, "hollow"),
        RepoOpts::default(),
    );
    let tf = gitea_env(&mut env, &h.emu, &h.token);
    let dest = env.path().join("dest");
    let day = "2026-12-01";
    let run = env
        .run(&[
            "--log-format",
            "json",
            "-v",
            "backup",
            "--provider",
            "gitea",
            "--gitea-token-file",
            &tf,
            "--owner",
            "acme",
            "--dest",
            dest.to_str().unwrap(),
            "--date",
            day,
        ])
        .await;
    run.expect_code(0);
    let mut seen = printed(&run);
    let manifest = TestEnv::local_manifest(&dest, "acme", day);
    assert_eq!(manifest["provider"], "gitea", "{manifest:#}");
    assert_eq!(entry(&manifest, "hollow")["status"], "empty");
    for slug in ["rich", "api", "upstream"] {
        assert_eq!(entry(&manifest, slug)["status"], "ok", "{slug}");
    }
    let scratch = env.path().join("scratch");
    git(env.path(), &["init", "--quiet", scratch.to_str().unwrap()]);
    let all = sources.iter().map(|(s, p, b)| (*s, p.clone(), *b)).chain([(
        "upstream",
        mirror.clone(),
        "main",
    )]);
    for (slug, source, branch) in all {
        let bundle = dest.join("acme").join(day).join(format!("{slug}.bundle"));
        git(
            &scratch,
            &["bundle", "verify", "--quiet", bundle.to_str().unwrap()],
        );
        let out = env.path().join("out").join(slug);
        let run = env
            .run(&[
                "restore",
                "--owner",
                "acme",
                "--dest",
                dest.to_str().unwrap(),
                "--repo",
                slug,
                "--to",
                out.to_str().unwrap(),
            ])
            .await;
        run.expect_code(0);
        seen.push_str(&printed(&run));
        assert_restored(&out, &source, branch, false);
    }
    assert!(
        h.emu.git_users().iter().all(|u| u == GIT_USERNAME) && !h.emu.git_users().is_empty(),
        "git used the fixed user name: {:?}",
        h.emu.git_users()
    );
    assert_eq!(h.emu.stats().query_tokens, 0);

    // A revoked token: the run fails as an auth error that says to replace it.
    h.emu.revoke_tokens();
    let run = env
        .run(&[
            "list",
            "--provider",
            "gitea",
            "--gitea-token-file",
            &tf,
            "--owner",
            "acme",
        ])
        .await;
    run.expect_code(i32::from(exit::AUTH));
    assert!(run.stderr.contains("--gitea-token-file"), "{}", run.stderr);
    seen.push_str(&printed(&run));

    files_text(env.path(), Path::new(&tf), &mut seen);
    assert!(!seen.contains(&h.token), "the token leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_checks_the_token_and_the_owner_and_stores_it() {
    let mut env = TestEnv::new().await;
    let h = Gitea::new();
    h.emu
        .add_repo("acme", "api", &h.source_repo(), RepoOpts::default());
    gitea_env(&mut env, &h.emu, &h.token);
    env.set_env("GITEA_TOKEN", &h.token);
    let run = env
        .run(&["login", "--provider", "gitea", "--owner", "acme"])
        .await;
    run.expect_code(0);
    assert!(run.stderr.contains("backup-bot"), "{}", run.stderr);
    assert!(run.stderr.contains("can read `acme`"), "{}", run.stderr);
    assert!(!printed(&run).contains(&h.token));
    let stored = env.path().join("home/.config/git-offsite/credentials.toml");
    let text = std::fs::read_to_string(&stored).unwrap();
    assert!(
        text.contains("[gitea]") && text.contains(&h.token),
        "stored"
    );

    // The stored token alone is enough for a run.
    env.remove_env("GITEA_TOKEN");
    let run = env
        .run(&["list", "--provider", "gitea", "--owner", "acme"])
        .await;
    run.expect_code(0);
    assert!(run.stdout.contains("api"), "{}", run.stdout);

    // A config file alone: `[gitea]` names the instance and a token file relative to it, and
    // the source names the provider.
    let cfg = env.path().join("offsite.toml");
    let write_cfg = |table: &str, source: &str| {
        let text = format!(
            "[gitea]\nurl = \"{}\"\n{table}\n[[source]]\nprovider = \"gitea\"\nowner = \"acme\"\n{source}",
            h.emu.base_url()
        );
        std::fs::write(&cfg, text).unwrap();
    };
    write_cfg("token_file = \"gitea-token\"\n", "");
    std::fs::remove_file(&stored).unwrap();
    env.remove_env("GITEA_URL");
    let list_cfg = ["--config", cfg.to_str().unwrap(), "list"];
    let run = env.run(&list_cfg).await;
    run.expect_code(0);
    assert!(run.stdout.contains("api"), "{}", run.stdout);
    // A source's own token reference replaces the table's (a missing file here), never
    // pieced together with it.
    write_cfg(
        "token_file = \"no-such-file\"\n",
        "token_env = \"ACME_GITEA_TOKEN\"\n",
    );
    env.set_env("ACME_GITEA_TOKEN", &h.token);
    let run = env.run(&list_cfg).await;
    run.expect_code(0);
    assert!(run.stdout.contains("api"), "{}", run.stdout);

    // An unknown owner is a usage error; a refused token an auth error; neither shows it.
    env.set_env("GITEA_URL", &h.emu.base_url());
    env.set_env("GITEA_TOKEN", &h.token);
    let run = env
        .run(&["login", "--provider", "gitea", "--owner", "ghost"])
        .await;
    run.expect_code(i32::from(exit::USAGE));
    env.set_env("GITEA_TOKEN", "gta_wrong-token-0f3e");
    let run = env
        .run(&["login", "--provider", "gitea", "--owner", "acme"])
        .await;
    run.expect_code(i32::from(exit::AUTH));
    assert!(
        !printed(&run).contains("gta_wrong-token-0f3e"),
        "{}",
        run.stderr
    );
}
