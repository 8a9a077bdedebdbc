//! What only GitHub has, against its emulator: the App's JWT claims, installation lookup per
//! owner (organisation, user, a fixed id), the forks and archived filters, the `Link` origin
//! check, primary and secondary rate limits, renewal before expiry, the personal-token
//! fallback, and the binary end to end (backup → `git bundle verify` → restore, ref for ref)
//! with no secret in what it prints. The properties every provider shares are in
//! `provider_contract` (stamped for GitHub there).

use std::path::PathBuf;
use std::time::Duration;

use git_offsite::error::exit;
use git_offsite::provider::github::{
    AppKey, Credential, GithubOptions, GithubProvider, JWT_BACKDATE, JWT_LIFETIME,
};
use git_offsite::provider::http::RetryPolicy;
use git_offsite::provider::{Provider, ProviderError};
use git_offsite::secret::Secret;

use crate::provider_contract::github_host::APP_ID;
use crate::restore::assert_restored;
use crate::support::git::{empty_repo, git, rich_repo, simple_repo};
use crate::support::github::{Emulator, Fault, RepoOpts, Route, test_key, write_private_key};
use crate::support::harness::TestEnv;

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    }
}

fn options(emu: &Emulator, credential: Credential) -> GithubOptions {
    let mut opts = GithubOptions::new(credential);
    opts.api_url = emu.api_url().parse().unwrap();
    opts.retry = retry();
    opts
}

fn app() -> Credential {
    Credential::App(AppKey::new(APP_ID, &Secret::new(&test_key().private_pem), "test").unwrap())
}

fn app_provider(emu: &Emulator) -> GithubProvider {
    GithubProvider::new(options(emu, app())).unwrap()
}

/// An emulator with the app, organisation `acme` (app installed) and a fixture repository.
struct Host {
    emu: Emulator,
    source: PathBuf,
    _dir: tempfile::TempDir,
}

fn host() -> Host {
    let emu = Emulator::start_blocking();
    emu.add_app(APP_ID);
    emu.add_org("acme");
    emu.install(APP_ID, "acme");
    let dir = tempfile::tempdir().unwrap();
    let source = simple_repo(dir.path(), "source", "main");
    Host {
        emu,
        source,
        _dir: dir,
    }
}

impl Host {
    fn repo(&self, owner: &str, name: &str, opts: RepoOpts) {
        self.emu.add_repo(owner, name, &self.source, opts);
    }
}

fn slugs(repos: &[git_offsite::provider::RemoteRepo]) -> Vec<&str> {
    repos.iter().map(|r| r.slug.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_jwt_is_rs256_backdated_a_minute_and_lives_under_ten() {
    let h = host();
    h.repo("acme", "api", RepoOpts::default());
    let before = chrono::Utc::now().timestamp();
    app_provider(&h.emu).list_repos("acme").await.unwrap();
    let after = chrono::Utc::now().timestamp();
    let claims = h.emu.jwt_claims();
    assert!(!claims.is_empty(), "the listing went through the app's JWT");
    for c in &claims {
        let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
        assert_eq!(c["iss"], APP_ID);
        assert!(
            iat >= before - JWT_BACKDATE && iat <= after - JWT_BACKDATE,
            "{c}"
        );
        assert!(
            exp - after <= 600 && exp - before >= JWT_LIFETIME - 1,
            "{c}"
        );
    }
    assert_eq!(h.emu.stats().jwt_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installations_are_found_for_organisations_and_users_or_fixed() {
    let h = host();
    h.repo("acme", "api", RepoOpts::default());
    h.emu.add_user("octo");
    let octo = h.emu.install(APP_ID, "octo");
    h.repo("octo", "dotfiles", RepoOpts::default());
    h.emu.add_org("bare");
    let p = app_provider(&h.emu);
    assert_eq!(slugs(&p.list_repos("acme").await.unwrap().repos), ["api"]);
    // A user's private repositories come through the installation listing.
    let user = p.list_repos("octo").await.unwrap();
    assert_eq!(slugs(&user.repos), ["dotfiles"]);
    assert_eq!(user.repos[0].is_private, Some(true));
    // An organisation without the app is not found (exit 2, "check --owner").
    let e = p.list_repos("bare").await.unwrap_err();
    assert!(matches!(e, ProviderError::OwnerNotFound { .. }), "{e:?}");
    assert_eq!(e.exit_code(), exit::USAGE);
    // A fixed installation is used as given, and checked against the owner.
    let mut opts = options(&h.emu, app());
    opts.installation_id = Some(octo);
    let fixed = GithubProvider::new(opts).unwrap();
    let lookups = h.emu.stats().installation_lookups;
    assert_eq!(
        slugs(&fixed.list_repos("octo").await.unwrap().repos),
        ["dotfiles"]
    );
    assert_eq!(
        h.emu.stats().installation_lookups,
        lookups,
        "no owner lookup"
    );
    let e = fixed.list_repos("acme").await.unwrap_err();
    assert!(matches!(e, ProviderError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains("is on `octo`, not on `acme`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_and_archived_repositories_can_be_left_out() {
    let h = host();
    h.repo("acme", "api", RepoOpts::default());
    h.repo(
        "acme",
        "forked",
        RepoOpts {
            fork: true,
            ..RepoOpts::default()
        },
    );
    h.repo(
        "acme",
        "old",
        RepoOpts {
            archived: true,
            ..RepoOpts::default()
        },
    );
    let all = app_provider(&h.emu).list_repos("acme").await.unwrap();
    assert_eq!(slugs(&all.repos), ["api", "forked", "old"]);
    for (forks, archived, want) in [
        (true, false, vec!["api", "old"]),
        (false, true, vec!["api", "forked"]),
        (true, true, vec!["api"]),
    ] {
        let mut opts = options(&h.emu, app());
        opts.exclude_forks = forks;
        opts.exclude_archived = archived;
        let listing = GithubProvider::new(opts)
            .unwrap()
            .list_repos("acme")
            .await
            .unwrap();
        assert_eq!(
            slugs(&listing.repos),
            want,
            "forks {forks} archived {archived}"
        );
        assert!(listing.rejected.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_origin_is_not_followed() {
    let h = host();
    for i in 0..101 {
        h.repo("acme", &format!("r{i:03}"), RepoOpts::default());
    }
    // Another port on this machine stands for another host; nothing may reach it.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let foreign = format!(
        "http://127.0.0.1:{}/api/v3/orgs/acme/repos?page=2",
        elsewhere.local_addr().unwrap().port()
    );
    h.emu.set_foreign_next("acme", &foreign);
    let e = app_provider(&h.emu).list_repos("acme").await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    assert!(e.to_string().contains("not following it"), "{e}");
    assert!(
        elsewhere.accept().is_err(),
        "the token was sent to another origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_and_secondary_limits_are_waited_out_and_403_denials_are_not() {
    let h = host();
    h.repo("acme", "api", RepoOpts::default());
    let p = app_provider(&h.emu);
    h.emu
        .push_fault(Route::List, Fault::PrimaryLimit { reset_in: 1 });
    h.emu.push_fault(
        Route::List,
        Fault::SecondaryLimit {
            retry_after: Some(1),
        },
    );
    h.emu
        .push_fault(Route::List, Fault::SecondaryLimit { retry_after: None });
    let started = std::time::Instant::now();
    assert_eq!(slugs(&p.list_repos("acme").await.unwrap().repos), ["api"]);
    assert_eq!(h.emu.stats().rate_limited, 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the reset and the Retry-After were waited for: {:?}",
        started.elapsed()
    );
    // Installation tokens cannot reach this endpoint: a plain 403 is a permission error.
    let token = p
        .git_auth(&p.list_repos("acme").await.unwrap().repos[0], false)
        .await
        .unwrap()
        .unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/user", h.emu.api_url()))
        .bearer_auth(token.password.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installation_tokens_are_renewed_before_they_expire() {
    let h = host();
    h.repo("acme", "api", RepoOpts::default());
    h.emu.set_token_ttl(Duration::from_secs(2));
    let p = app_provider(&h.emu);
    let repo = p.list_repos("acme").await.unwrap().repos.remove(0);
    let first = p.git_auth(&repo, false).await.unwrap().unwrap();
    assert_eq!(first.username, "x-access-token");
    assert_eq!(
        p.git_auth(&repo, false)
            .await
            .unwrap()
            .unwrap()
            .password
            .expose(),
        first.password.expose()
    );
    let issued = h.emu.stats().tokens_issued;
    // Within the last fifth of its two seconds, the token is replaced before anyone sees a 401.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let second = p.git_auth(&repo, false).await.unwrap().unwrap();
    assert_ne!(second.password.expose(), first.password.expose());
    assert_eq!(h.emu.stats().tokens_issued, issued + 1);
    assert_eq!(h.emu.stats().unauthorized, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_token_lists_orgs_fully_and_users_publicly() {
    let h = host();
    h.repo("acme", "api", RepoOpts::default());
    h.emu.add_user("octo");
    h.repo(
        "octo",
        "public",
        RepoOpts {
            public: true,
            ..RepoOpts::default()
        },
    );
    h.repo("octo", "private", RepoOpts::default());
    let token = h.emu.add_personal_token("octo");
    let p = GithubProvider::new(options(&h.emu, Credential::Token(Secret::new(&token)))).unwrap();
    let org = p.list_repos("acme").await.unwrap();
    assert_eq!(slugs(&org.repos), ["api"]);
    assert_eq!(
        slugs(&p.list_repos("octo").await.unwrap().repos),
        ["public"]
    );
    let auth = p.git_auth(&org.repos[0], true).await.unwrap().unwrap();
    assert_eq!(
        (auth.username.as_str(), auth.password.expose()),
        ("x-access-token", token.as_str())
    );
    let e = p.list_repos("ghost").await.unwrap_err();
    assert!(matches!(e, ProviderError::OwnerNotFound { .. }), "{e:?}");
    let bad = "ghp_not-a-real-token-5a5a";
    let p = GithubProvider::new(options(&h.emu, Credential::Token(Secret::new(bad)))).unwrap();
    let e = p.list_repos("acme").await.unwrap_err();
    assert!(matches!(e, ProviderError::Auth { .. }), "{e:?}");
    let shown = format!("{e} {e:?} {p:?}");
    assert!(
        !shown.contains(bad) && shown.contains("GITHUB_TOKEN"),
        "{shown}"
    );
}

/// The binary's environment for GitHub: the app's id and key file, no Bitbucket variables.
fn github_env(env: &mut TestEnv, emu: &Emulator) -> PathBuf {
    for k in [
        "BITBUCKET_API_URL",
        "BITBUCKET_TOKEN_URL",
        "BITBUCKET_CONSUMER_KEY",
        "BITBUCKET_CONSUMER_SECRET",
    ] {
        env.remove_env(k);
    }
    let key = write_private_key(env.path(), "app.pem");
    env.set_env("GITHUB_API_URL", &emu.api_url());
    env.set_env("GITHUB_APP_ID", APP_ID);
    env.set_env("GITHUB_APP_PRIVATE_KEY_FILE", key.to_str().unwrap());
    key
}

/// What must never appear in anything the binary prints.
fn assert_no_secret(emu: &Emulator, printed: &str) {
    let pem = &test_key().private_pem;
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!printed.contains(body_line), "the private key leaked");
    for token in emu.issued_tokens() {
        assert!(!printed.contains(&token), "a token leaked: {printed}");
    }
    assert!(!printed.contains("eyJ"), "a JWT leaked: {printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verifies_and_restores_ref_for_ref_with_no_secret_printed() {
    let mut env = TestEnv::new().await;
    let emu = Emulator::start().await;
    emu.add_app(APP_ID);
    emu.add_org("acme");
    emu.install(APP_ID, "acme");
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let sources = [
        ("rich", rich_repo(&fixtures, "rich"), "trunk"),
        ("api", simple_repo(&fixtures, "api", "main"), "main"),
    ];
    for (slug, source, _) in &sources {
        emu.add_repo("acme", slug, source, RepoOpts::default());
    }
    emu.add_repo(
        "acme",
        "hollow",
        &empty_repo(&fixtures, "hollow"),
        RepoOpts::default(),
    );
    github_env(&mut env, &emu);
    let dest = env.path().join("dest");
    let day = "2026-11-24";
    let run = env
        .run(&[
            "--log-format",
            "json",
            "-v",
            "backup",
            "--provider",
            "github",
            "--owner",
            "acme",
            "--dest",
            dest.to_str().unwrap(),
            "--date",
            day,
        ])
        .await;
    run.expect_code(0);
    assert_no_secret(&emu, &format!("{}{}", run.stdout, run.stderr));
    let manifest = TestEnv::local_manifest(&dest, "acme", day);
    assert_eq!(manifest["provider"], "github", "{manifest:#}");
    let scratch = env.path().join("scratch");
    git(env.path(), &["init", "--quiet", scratch.to_str().unwrap()]);
    for (slug, source, branch) in &sources {
        let bundle = dest.join("acme").join(day).join(format!("{slug}.bundle"));
        git(
            &scratch,
            &["bundle", "verify", "--quiet", bundle.to_str().unwrap()],
        );
        let out = env.path().join("out").join(slug);
        env.run(&[
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
        .await
        .expect_code(0);
        assert_restored(&out, source, branch, false);
    }
    // A refused credential says what to fix and shows no key either.
    env.set_env("GITHUB_APP_ID", "999");
    let run = env
        .run(&["list", "--provider", "github", "--owner", "acme"])
        .await;
    run.expect_code(i32::from(exit::AUTH));
    assert!(run.stderr.contains("--github-app-id"), "{}", run.stderr);
    assert_no_secret(&emu, &format!("{}{}", run.stdout, run.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_explains_the_app_and_warns_about_personal_tokens() {
    let mut env = TestEnv::new().await;
    let h = host();
    h.repo("acme", "api", RepoOpts::default());
    github_env(&mut env, &h.emu);
    let run = env
        .run(&["login", "--provider", "github", "--owner", "acme"])
        .await;
    run.expect_code(0);
    assert!(run.stderr.contains("can read `acme`"), "{}", run.stderr);
    assert!(!run.stderr.contains("one person"), "{}", run.stderr);
    let stored = env.path().join("home/.config/git-offsite/credentials.toml");
    let text = std::fs::read_to_string(&stored).unwrap();
    assert!(
        text.contains("[github]") && text.contains("app_id"),
        "stored"
    );

    for k in ["GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY_FILE"] {
        env.remove_env(k);
    }
    let token = h.emu.add_personal_token("octo");
    env.set_env("GITHUB_TOKEN", &token);
    let run = env
        .run(&["login", "--provider", "github", "--owner", "acme"])
        .await;
    run.expect_code(0);
    assert!(
        run.stderr.contains("ties the backups to one person"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&token));

    env.remove_env("GITHUB_TOKEN");
    let run = env.run(&["login", "--provider", "github"]).await;
    run.expect_code(i32::from(exit::USAGE));
    for step in [
        "Contents → Read-only",
        "Metadata → Read-only",
        "Install App",
        "--github-app-id",
    ] {
        assert!(run.stderr.contains(step), "{step}: {}", run.stderr);
    }
}

/// A `[[source]]` carries its own credentials over `[github]`: one owner through the app, the
/// other (where the app is not installed) through its own token; neither is mixed with the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_uses_its_own_credentials_over_the_github_table() {
    let mut env = TestEnv::new().await;
    let emu = Emulator::start().await;
    emu.add_app(APP_ID);
    emu.add_org("acme");
    emu.add_org("labs");
    emu.install(APP_ID, "acme");
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    emu.add_repo(
        "acme",
        "api",
        &simple_repo(&fixtures, "api", "main"),
        RepoOpts::default(),
    );
    emu.add_repo(
        "labs",
        "lab-tool",
        &simple_repo(&fixtures, "lab-tool", "main"),
        RepoOpts::default(),
    );
    github_env(&mut env, &emu);
    for k in [
        "GITHUB_APP_ID",
        "GITHUB_APP_PRIVATE_KEY_FILE",
        "GITHUB_TOKEN",
    ] {
        env.remove_env(k);
    }
    write_private_key(env.path(), "app.pem");
    std::fs::write(
        env.path().join("labs.token"),
        emu.add_personal_token("octo"),
    )
    .unwrap();
    let config = env.path().join("git-offsite.toml");
    let write = |labs_keys: &str| {
        std::fs::write(
            &config,
            format!(
                "[github]\napp_id = \"{APP_ID}\"\nprivate_key_file = \"app.pem\"\n\n\
                 [[source]]\nprovider = \"github\"\nowner = \"acme\"\n\n\
                 [[source]]\nprovider = \"github\"\nowner = \"labs\"\n{labs_keys}"
            ),
        )
        .unwrap();
    };
    write("token_file = \"labs.token\"\n");
    let run = env
        .run(&["--config", config.to_str().unwrap(), "list"])
        .await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("acme/api") && run.stdout.contains("labs/lab-tool"),
        "{}",
        run.stdout
    );
    assert_no_secret(&emu, &format!("{}{}", run.stdout, run.stderr));
    // Without its own token, labs gets the app, which is not installed there.
    write("");
    let run = env
        .run(&["--config", config.to_str().unwrap(), "list"])
        .await;
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("labs"), "{}", run.stderr);
}
