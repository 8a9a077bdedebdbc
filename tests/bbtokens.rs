//! Bitbucket's token credentials end to end: a workspace or repository access token (Bearer,
//! git user `x-token-auth`) and a user's scoped API token (Basic email:token, git user
//! `x-bitbucket-api-token-auth`) back up and restore like the OAuth consumer; exactly one kind
//! may be set; a revoked token fails clearly (exit 3) and is never printed.

use std::time::{Duration, Instant};

use git_offsite::provider::Provider;
use git_offsite::provider::bitbucket::credential::BitbucketCredential;
use git_offsite::provider::bitbucket::{BitbucketOptions, BitbucketProvider, RetryPolicy};
use git_offsite::secret::Secret;
use reqwest::StatusCode;

use crate::restore::assert_restored;
use crate::support::bitbucket::{
    Budget, ConsumerOpts, Emulator, Fault, ListQuirks, RATE_LIMIT_BODY, RepoOpts, Route, TokenScope,
};
use crate::support::git::simple_repo;
use crate::support::harness::{Run, TestEnv};

const WS: &str = "acme";
const ACCESS: &str = "ATCTT3xFfGN0-access-token-value";
const API: &str = "ATATT3xFfGF0-api-token-value";
const EMAIL: &str = "backup@example.com";

/// A test env without the consumer's variables, with `acme/one` and `acme/two`.
async fn env() -> (TestEnv, std::path::PathBuf) {
    let mut env = TestEnv::new().await;
    env.remove_env("BITBUCKET_CONSUMER_KEY");
    env.remove_env("BITBUCKET_CONSUMER_SECRET");
    let one = env.simple_repo(WS, "one", "main");
    env.simple_repo(WS, "two", "main");
    (env, one)
}

/// [`env`] with a workspace access token for `acme` in `BITBUCKET_ACCESS_TOKEN`.
async fn access_env() -> TestEnv {
    let (mut env, _) = env().await;
    env.emu
        .add_access_token(ACCESS, TokenScope::Workspace(WS.into()));
    env.set_env("BITBUCKET_ACCESS_TOKEN", ACCESS);
    env
}

/// The run says the access token was revoked or expired, and never shows it.
fn assert_says_revoked(run: &Run) {
    assert!(
        run.stderr
            .contains("the access token was revoked or expired"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(ACCESS) && !run.stdout.contains(ACCESS));
}

fn token_file(env: &TestEnv, name: &str, value: &str) -> String {
    let p = env.path().join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p.to_str().unwrap().to_string()
}

fn slugs(manifest: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = manifest["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slug"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_access_token_backs_up_and_restores() {
    let (env, one) = env().await;
    env.emu
        .add_access_token(ACCESS, TokenScope::Workspace(WS.into()));
    let file = token_file(&env, "at", ACCESS);
    let extra = ["--access-token-file", &file];
    let (run, dest) = env.backup_dated_with(WS, "2026-12-01", &extra).await;
    let d = dest.to_str().unwrap();
    run.expect_code(0);
    assert!(!run.stderr.contains(ACCESS) && !run.stdout.contains(ACCESS));
    let manifest = TestEnv::local_manifest(&dest, WS, "2026-12-01");
    assert_eq!(slugs(&manifest), ["one", "two"]);
    // The emulator saw no token grant: the access token went straight to the API and git.
    assert_eq!(env.emu.stats().token_requests, 0);
    let out = env.path().join("restored");
    env.run(&[
        "restore",
        "--owner",
        WS,
        "--dest",
        d,
        "--repo",
        "one",
        "--to",
        out.to_str().unwrap(),
    ])
    .await
    .expect_code(0);
    assert_restored(&out, &one, "main", false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_access_token_sees_only_its_repository() {
    let (mut env, _) = env().await;
    env.emu.add_access_token(
        ACCESS,
        TokenScope::Repository {
            workspace: WS.into(),
            slug: "two".into(),
        },
    );
    env.set_env("BITBUCKET_ACCESS_TOKEN", ACCESS);
    let (run, dest) = env.backup_dated(WS, "2026-12-01").await;
    run.expect_code(0);
    assert_eq!(
        slugs(&TestEnv::local_manifest(&dest, WS, "2026-12-01")),
        ["two"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_backs_up_with_the_account_email() {
    let (mut env, _) = env().await;
    env.emu.add_api_token(EMAIL, API, "backup-person");
    env.set_env("BITBUCKET_API_TOKEN", API);
    // Without the email: a one-line usage error naming the flag.
    let (run, _) = env.backup_dated(WS, "2026-12-01").await;
    run.expect_code(2);
    assert!(run.stderr.contains("--email"), "{}", run.stderr);
    // With the flags instead of the environment.
    env.remove_env("BITBUCKET_API_TOKEN");
    let file = token_file(&env, "api", API);
    let extra = ["--email", EMAIL, "--api-token-file", &file];
    let (run, dest) = env.backup_dated_with(WS, "2026-12-01", &extra).await;
    run.expect_code(0);
    assert!(!run.stderr.contains(API));
    assert_eq!(
        slugs(&TestEnv::local_manifest(&dest, WS, "2026-12-01")),
        ["one", "two"]
    );
    env.set_env("BITBUCKET_API_TOKEN", API);
    // The wrong email is refused like a wrong token, with Bitbucket's plain-text reason.
    env.set_env("BITBUCKET_EMAIL", "someone@example.com");
    let (run, _) = env.backup_dated(WS, "2026-12-02").await;
    run.expect_code(3);
    assert!(run.stderr.contains("revoked or expired"), "{}", run.stderr);
    assert!(run.stderr.contains("Login failed due to"), "{}", run.stderr);
    assert!(!run.stderr.contains(API), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_credential_kinds_are_a_usage_error() {
    let (mut env, _) = env().await;
    env.set_env("BITBUCKET_ACCESS_TOKEN", ACCESS);
    env.set_env("BITBUCKET_CONSUMER_KEY", "k");
    env.set_env("BITBUCKET_CONSUMER_SECRET", "s");
    let (run, _) = env.backup_dated(WS, "2026-12-01").await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("exactly one") && run.stderr.contains("--access-token-file"),
        "{}",
        run.stderr
    );
    let errors: Vec<&str> = (run.stderr.lines())
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    assert!(!run.stderr.contains(ACCESS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_access_token_fails_clearly_and_is_never_printed() {
    let env = access_env().await;
    env.backup_dated(WS, "2026-12-01").await.0.expect_code(0);
    env.emu.revoke_access_token(ACCESS);
    let (run, _) = env.backup_dated(WS, "2026-12-02").await;
    run.expect_code(3);
    assert_says_revoked(&run);
}

/// An access token revoked mid-run (after the listing, at the first clone) cannot be renewed:
/// git's refusal fails each repository with the reason instead of sending the token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_revoked_mid_run_fails_the_clones_clearly() {
    let env = access_env().await;
    env.emu
        .push_fault(Route::repo(WS, "one"), Fault::RevokeTokens);
    env.emu
        .push_fault(Route::repo(WS, "two"), Fault::RevokeTokens);
    // One job: the first repository meets the revoked token, the second is not attempted.
    let (run, dest) = env
        .backup_dated_with(WS, "2026-12-01", &["--jobs", "1"])
        .await;
    // An auth failure, not "some repositories failed": every later one would fail the same way.
    run.expect_code(3);
    assert!(run.stderr.contains("git was refused at"), "{}", run.stderr);
    assert_says_revoked(&run);
    // The manifest is still written and says what happened to each.
    let manifest = TestEnv::local_manifest(&dest, WS, "2026-12-01");
    let errors: Vec<&str> = manifest["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "failed", "{manifest:#}");
            r["error"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.starts_with("not attempted"))
            .count(),
        1,
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_names_the_kind_and_warns_about_api_tokens() {
    let (mut env, _) = env().await;
    env.emu.add_api_token(EMAIL, API, "backup-person");
    env.set_env("BITBUCKET_API_TOKEN", API);
    env.set_env("BITBUCKET_EMAIL", EMAIL);
    let run = env.run(&["login", "--owner", WS]).await;
    run.expect_code(0);
    assert!(run.stderr.contains("API token"), "{}", run.stderr);
    assert!(
        run.stderr.contains("belongs to one person"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(API));
    // What login stored is used by the next run, with nothing in the environment.
    env.remove_env("BITBUCKET_API_TOKEN");
    env.remove_env("BITBUCKET_EMAIL");
    env.backup_dated(WS, "2026-12-01").await.0.expect_code(0);
}

/// A provider for `emu` with an access token, fast retries and the emulator's rate window.
fn access_provider(emu: &Emulator, rate_window: Duration) -> BitbucketProvider {
    BitbucketProvider::new(BitbucketOptions {
        api_url: emu.api_url().parse().unwrap(),
        token_url: emu.token_url().parse().unwrap(),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(10),
        },
        rate_window,
        ..BitbucketOptions::with(BitbucketCredential::AccessToken {
            token: Secret::new(ACCESS),
        })
    })
    .unwrap()
}

/// An access token's budget (here 10 requests per rolling 2 s) is paced from
/// `X-RateLimit-NearLimit`: a listing of 15 pages slows down before the limit and never sees a
/// 429, instead of spending the budget at once and then waiting out 429s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_slows_down_before_its_rate_limit() {
    let emu = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = simple_repo(dir.path(), "source", "main");
    for i in 0..15 {
        emu.add_repo(WS, &format!("repo-{i:02}"), &source, RepoOpts::default());
    }
    // One repository a page: 15 listing requests.
    let quirks = ListQuirks {
        serve_pagelen: Some(1),
        ..ListQuirks::default()
    };
    emu.set_list_quirks(WS, quirks);
    emu.add_access_token(ACCESS, TokenScope::Workspace(WS.into()));
    let window = Duration::from_secs(2);
    emu.set_access_token_budget(Budget { limit: 10, window });
    let provider = access_provider(&emu, window);
    let started = Instant::now();
    let listing = provider.list_repos(WS).await.unwrap();
    let took = started.elapsed();
    assert_eq!(listing.repos.len(), 15);
    let stats = emu.stats();
    assert_eq!(stats.rate_limited, 0, "paced before the limit: {stats:?}");
    assert_eq!(stats.list_requests, 15, "{stats:?}");
    // 15 requests through 10 per window: the run waited for the window to roll.
    assert!(took >= Duration::from_millis(1500), "{took:?}");
}

/// As Bitbucket does (NOTES §1), the emulator sends `X-RateLimit-*` to access tokens only, not
/// to OAuth tokens or API tokens; `NearLimit` turns true below a fifth of the budget, and a
/// spent budget answers 429 with Bitbucket's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_sends_rate_limit_headers_to_access_tokens_only() {
    let emu = Emulator::start().await;
    emu.add_consumer("k", "s", ConsumerOpts::default());
    emu.add_workspace(WS);
    emu.add_access_token(ACCESS, TokenScope::Workspace(WS.into()));
    emu.add_api_token(EMAIL, API, "backup-person");
    emu.set_access_token_budget(Budget {
        limit: 10,
        window: Duration::from_secs(600),
    });
    let url = format!("{}/repositories/{WS}", emu.api_url());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let oauth = client.get(&url).bearer_auth(emu.mint_token("k"));
    let api = client.get(&url).basic_auth(EMAIL, Some(API));
    for req in [oauth, api] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            !resp
                .headers()
                .keys()
                .any(|k| k.as_str().starts_with("x-ratelimit")),
            "{:?}",
            resp.headers()
        );
    }
    let mut near = Vec::new();
    for _ in 0..10 {
        let resp = client.get(&url).bearer_auth(ACCESS).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["x-ratelimit-limit"], "10");
        assert_eq!(h["x-ratelimit-resource"], "api");
        near.push(h["x-ratelimit-nearlimit"].to_str().unwrap().to_string());
    }
    // Left after each request: 9 … 0; "near" below a fifth (2).
    let expected: Vec<&str> = [vec!["false"; 8], vec!["true"; 2]].concat();
    assert_eq!(near, expected);
    let resp = client.get(&url).bearer_auth(ACCESS).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.text().await.unwrap(), RATE_LIMIT_BODY);
    assert_eq!(emu.stats().rate_limited, 1);
}

/// Access tokens are per workspace, so each `[[source]]` names its own (a file, a variable);
/// the `[bitbucket]` table's consumer is not mixed in beside them (it would be a second kind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_carries_its_own_workspace_access_token() {
    const LABS: &str = "ATCTT3xFfGN0-labs-token-value";
    let (mut env, _) = env().await;
    env.simple_repo("labs", "lab", "main");
    env.emu
        .add_access_token(ACCESS, TokenScope::Workspace(WS.into()));
    env.emu
        .add_access_token(LABS, TokenScope::Workspace("labs".into()));
    token_file(&env, "acme.token", ACCESS);
    token_file(&env, "consumer.secret", "a-consumer-secret");
    env.set_env("LABS_TOKEN", LABS);
    let config = env.path().join("git-offsite.toml");
    std::fs::write(
        &config,
        "[bitbucket]\nconsumer_key = \"K\"\nconsumer_secret_file = \"consumer.secret\"\n\n\
         [[source]]\nowner = \"acme\"\naccess_token_file = \"acme.token\"\n\n\
         [[source]]\nowner = \"labs\"\naccess_token_env = \"LABS_TOKEN\"\n",
    )
    .unwrap();
    let run = env
        .run(&["--config", config.to_str().unwrap(), "list"])
        .await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("acme/one") && run.stdout.contains("labs/lab"),
        "{}",
        run.stdout
    );
    for t in [ACCESS, LABS] {
        assert!(!run.stderr.contains(t) && !run.stdout.contains(t));
    }
    assert_eq!(env.emu.stats().token_requests, 0, "no consumer grant");
}
