//! Bounds on what a server can make the tool do (issue 9): every HTTP body is read with a size
//! cap, server text quoted in an error is cut short, and a git fetch that trickles is stopped
//! by the per-repository deadline.
//!
//! Bounded memory follows from the caps; nothing here measures memory or time beyond a
//! watchdog that keeps a broken build from hanging the suite.

use std::time::Duration;

use git_offsite::healthcheck::{Healthcheck, HealthcheckError};
use git_offsite::provider::bitbucket::{BitbucketOptions, BitbucketProvider, RetryPolicy};
use git_offsite::provider::{Provider, ProviderError};
use git_offsite::secret::Secret;
use serde_json::json;

use crate::support::bitbucket::{ConsumerOpts, Emulator, Fault, Route};
use crate::support::harness::TestEnv;
use crate::support::readback::entry;

const KEY: &str = "bounds-key";
const SECRET: &str = "bounds-secret-0c9a4e";
const WS: &str = "acme";
/// Far beyond every cap: a page or token answer this large is refused, not read.
const HUGE: usize = 20 << 20;

async fn emulator() -> Emulator {
    let emu = Emulator::start().await;
    emu.add_consumer(KEY, SECRET, ConsumerOpts::default());
    emu.add_workspace(WS);
    emu
}

fn provider(emu: &Emulator) -> BitbucketProvider {
    BitbucketProvider::new(BitbucketOptions {
        api_url: emu.api_url().parse().unwrap(),
        token_url: emu.token_url().parse().unwrap(),
        git_url: None,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(10),
        },
        user_agent: "git-offsite-tests".into(),
        ..BitbucketOptions::new(KEY, Secret::new(SECRET))
    })
    .unwrap()
}

/// A page that is valid JSON (so only the cap can refuse it), far over the page cap.
fn huge_page(declared: bool) -> Fault {
    Fault::Padded {
        fields: json!({"pagelen": 100, "values": []}),
        bytes: HUGE,
        declared,
    }
}

/// One line, no terminal control characters, and not the whole of what the server sent.
fn assert_quoted(text: &str, longest: usize) {
    assert!(!text.contains(['\n', '\r', '\u{1b}']), "{text:?}");
    assert!(text.contains('…'), "not cut short: {text}");
    assert!(
        text.chars().count() < longest,
        "{} chars: {text}",
        text.chars().count()
    );
}

// ---------------------------------------------------------------- capped bodies

#[tokio::test]
async fn a_page_declared_larger_than_the_cap_is_refused_before_it_is_read() {
    let emu = emulator().await;
    emu.push_fault(Route::List, huge_page(true));

    let err = provider(&emu).list_repos(WS).await.unwrap_err();

    assert!(matches!(err, ProviderError::Decode { .. }), "{err:?}");
    assert!(!err.is_transient(), "an over-cap answer is not retried");
    let shown = err.to_string();
    assert!(
        shown.contains("/2.0/repositories/acme") && shown.contains("8.0 MiB"),
        "names the URL and the cap: {shown}"
    );
    assert_eq!(emu.stats().list_requests, 1, "not retried");
}

/// Through the CLI: a streamed (chunked, no Content-Length) page far over the cap fails the run
/// with the exit code of a source failure and one line that names the URL and the cap; nothing
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_oversized_page_fails_the_run_with_one_line_and_exit_6() {
    let env = TestEnv::new().await;
    env.emu.add_workspace(WS);
    env.simple_repo(WS, "api", "main");
    env.emu.push_fault(Route::List, huge_page(false));

    let (run, dest) = env.backup_dated(WS, "2026-03-01").await;

    run.expect_code(6);
    let last = run.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ")
            && last.contains("/2.0/repositories/acme")
            && last.contains("larger than 8.0 MiB"),
        "{}",
        run.stderr
    );
    assert!(last.len() < 300, "{last}");
    assert!(!dest.join(WS).join("2026-03-01").exists(), "nothing stored");
    assert!(env.tmp_leftovers().is_empty());
}

#[tokio::test]
async fn a_huge_token_answer_is_refused() {
    let emu = emulator().await;
    // A token answer that would be accepted (and the token used) if it were read whole.
    let fields =
        json!({"access_token": "padded-token", "token_type": "bearer", "expires_in": 7200});
    for declared in [false, true] {
        emu.push_fault(
            Route::Token,
            Fault::Padded {
                fields: fields.clone(),
                bytes: HUGE,
                declared,
            },
        );
        let err = provider(&emu)
            .git_auth(&crate::provider::any_repo(), false)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Decode { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains("/site/oauth2/access_token") && shown.contains("64.0 KiB"),
            "declared={declared}: {shown}"
        );
        assert!(!shown.contains("padded-token"), "{shown}");
    }
    assert_eq!(emu.stats().token_requests, 2, "neither was retried");
}

// ---------------------------------------------------------------- truncated server text

/// A message of many lines and control characters, far longer than an error line should be.
fn long_message() -> String {
    format!(
        "Access denied\r\n\u{1b}[2K{}\nforged: line",
        "because ".repeat(1_000)
    )
}

#[tokio::test]
async fn a_long_api_error_message_is_quoted_short() {
    let emu = emulator().await;
    emu.push_fault(
        Route::List,
        Fault::Json(
            403,
            json!({"type": "error", "error": {"message": long_message()}}),
        ),
    );

    let err = provider(&emu).list_repos(WS).await.unwrap_err();

    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("Access denied"), "{shown}");
    assert!(
        shown.contains("Repositories → Read"),
        "guidance kept: {shown}"
    );
    assert_quoted(&shown, 700);
}

#[tokio::test]
async fn a_long_oauth_error_description_is_quoted_short() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Token,
        Fault::Json(
            400,
            json!({"error": "invalid_grant", "error_description": long_message()}),
        ),
    );

    let err = provider(&emu)
        .git_auth(&crate::provider::any_repo(), false)
        .await
        .unwrap_err();

    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("invalid_grant: Access denied"), "{shown}");
    assert_quoted(&shown, 900);
}

/// A monitoring service answering an error with a long page: the warning quotes its start.
#[tokio::test]
async fn a_long_healthcheck_error_body_is_quoted_short() {
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .fallback(|| async { (StatusCode::BAD_REQUEST, format!("<html>{}", long_message())) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let hc = Healthcheck::new(&format!("http://{addr}/check-uuid"))
        .unwrap()
        .with_retries(0, Duration::ZERO);
    let err = hc.start().await.unwrap_err();

    let HealthcheckError::Status { status, body, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 400);
    assert!(body.starts_with("<html>Access denied"), "{body}");
    assert_quoted(&err.to_string(), 500);
}

// ---------------------------------------------------------------- the per-repository deadline

/// libgit2's own stop: a pack that trickles in (progress pkt-lines every second or so, never a
/// pause long enough for the read timeout) ends at the deadline's first callback, as
/// `TimedOut`, instead of running for the minute the trickle would take.
#[test]
fn a_trickling_pack_is_stopped_at_the_fetch_deadline() {
    use git_offsite::mirror::{self, Deadline, FetchOptions, MirrorError};
    use git_offsite::provider::GitAuth;

    let emu = Emulator::start_blocking();
    emu.add_consumer(KEY, SECRET, ConsumerOpts::default());
    let tmp = tempfile::tempdir().unwrap();
    let source = crate::support::git::simple_repo(tmp.path(), "source", "main");
    emu.add_repo(WS, "slow", &source, Default::default());
    emu.trickle_repo(WS, "slow", 48, false);
    let auth = GitAuth {
        username: crate::support::bitbucket::GIT_TOKEN_USER.into(),
        password: Secret::new(emu.mint_token(KEY)),
    };
    let url = url::Url::parse(&emu.git_url(WS, "slow")).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let dir = tmp.path().join("mirror.git");

    let deadline = Deadline::after(Duration::from_secs(1));
    let err = mirror::fetch(
        &dir,
        &FetchOptions {
            url: &url,
            auth: Some(&auth),
            cancel: &cancel,
            deadline: Some(deadline),
            on_progress: None,
        },
    )
    .unwrap_err();

    assert!(matches!(err, MirrorError::TimedOut { .. }), "{err:?}");
    assert!(!err.is_transient(), "not retried");
    assert_eq!(
        err.to_string(),
        format!("fetch of {url} did not finish within 1s (--repo-timeout)")
    );
}

/// A run whose watchdog-bounded child is stopped at the end of the test either way.
async fn finish(child: tokio::process::Child, watchdog: Duration) -> crate::support::harness::Run {
    let out = tokio::time::timeout(watchdog, child.wait_with_output())
        .await
        .expect("the run did not end before the watchdog")
        .unwrap();
    crate::support::harness::Run::from_output(out)
}

/// The pipeline's stop: the ref advertisement itself trickles (libgit2 calls no callback while
/// it reads one), so only the pipeline giving up on the attempt ends it. The repository fails
/// with the `--repo-timeout` message, the next one is backed up, the run exits 5, nothing is
/// stored for the slow one and its temp dir is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_repository_fails_at_its_timeout_and_the_run_goes_on() {
    let env = TestEnv::new().await;
    env.simple_repo(WS, "fast", "main");
    env.simple_repo(WS, "slow", "main");
    // 1 B/s: the advertisement alone would take minutes, past the watchdog.
    env.emu.trickle_repo(WS, "slow", 1, true);
    let dest = env.path().join("dest");
    let mut cmd = env.command(&[
        "backup",
        "-o",
        WS,
        "--dest",
        dest.to_str().unwrap(),
        "--date",
        "2026-03-02",
        "--repo-timeout",
        "3s",
        "--jobs",
        "2",
    ]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());

    let run = finish(cmd.spawn().unwrap(), Duration::from_secs(120)).await;

    run.expect_code(5);
    let manifest = TestEnv::local_manifest(&dest, WS, "2026-03-02");
    let slow = entry(&manifest, "slow");
    assert_eq!(slow["status"], "failed", "{slow}");
    let error = slow["error"].as_str().unwrap();
    assert!(
        error.contains("did not finish within 3s (--repo-timeout)"),
        "{error}"
    );
    assert_eq!(entry(&manifest, "fast")["status"], "ok");
    let folder = dest.join(WS).join("2026-03-02");
    assert!(folder.join("fast.bundle").is_file());
    assert!(
        !folder.join("slow.bundle").exists(),
        "nothing stored for it"
    );
    assert!(
        env.tmp_leftovers().is_empty(),
        "temp left: {:?}",
        env.tmp_leftovers()
    );
}

/// SIGTERM while a fetch trickles (inside the ref advertisement, where libgit2 polls nothing):
/// the run still ends as interrupted, with its temp dirs removed and nothing written, long
/// before the kill a pod gets 120 s after SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_trickling_fetch_ends_the_run_cleanly() {
    let env = TestEnv::new().await;
    env.simple_repo(WS, "slow", "main");
    env.emu.trickle_repo(WS, "slow", 1, true);
    let dest = env.path().join("dest");
    let mut cmd = env.command(&["backup", "-o", WS, "--dest", dest.to_str().unwrap()]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();

    // Signal once the fetch is under way (its git request is in flight, and trickling).
    let started = std::time::Instant::now();
    while env.emu.stats().git_requests == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no fetch started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    let run = finish(child, Duration::from_secs(120)).await;

    run.expect_code(130);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    assert!(
        env.tmp_leftovers().is_empty(),
        "temp left: {:?}",
        env.tmp_leftovers()
    );
    let written: Vec<_> = walk(&dest);
    assert!(
        !written
            .iter()
            .any(|p| p.ends_with("manifest.json") || p.extension().is_some_and(|e| e == "bundle")),
        "{written:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}
