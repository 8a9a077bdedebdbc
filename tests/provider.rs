//! `BitbucketProvider` against the emulator: pagination, clone links, retries, token renewal,
//! and error messages that say what to fix without ever showing a secret.
//!
//! The provider runs in-process here (not through the CLI) so each test can count exactly what
//! reached the emulator: one token request too many is a bug on a 1,000 calls/h budget.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git_offsite::provider::bitbucket::{BitbucketOptions, BitbucketProvider, RetryPolicy};
use git_offsite::provider::{Provider, ProviderError, RemoteRepo};
use git_offsite::secret::Secret;

use crate::support::bitbucket::{ConsumerOpts, Emulator, Fault, RepoOpts, Route};
use crate::support::git::simple_repo;

const KEY: &str = "prov-key";
const SECRET: &str = "prov-secret-7f3c1e";
const WS: &str = "acme";
/// Attempts per request in these tests; delays are milliseconds so retries cost nothing.
const ATTEMPTS: u32 = 4;

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: ATTEMPTS,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    }
}

fn provider_with(emu: &Emulator, key: &str, secret: &str) -> BitbucketProvider {
    BitbucketProvider::new(BitbucketOptions {
        api_url: emu.api_url().parse().unwrap(),
        token_url: emu.token_url().parse().unwrap(),
        git_url: None,
        retry: fast_retry(),
        user_agent: "git-offsite-tests".into(),
        ..BitbucketOptions::new(key, Secret::new(secret))
    })
    .unwrap()
}

fn provider(emu: &Emulator) -> BitbucketProvider {
    provider_with(emu, KEY, SECRET)
}

/// The repository credentials are asked for; one Bitbucket token covers them all.
pub(crate) fn any_repo() -> RemoteRepo {
    RemoteRepo {
        slug: "api".into(),
        full_name: format!("{WS}/api"),
        clone_url: "https://bitbucket.org/acme/api.git".parse().unwrap(),
        size: None,
        updated_on: None,
        default_branch: Some("main".into()),
        is_private: None,
    }
}

/// An emulator with one consumer, and a fixture directory holding one bare repository that
/// every listed repository points at (listing never reads it; one is enough).
struct Fixture {
    emu: Emulator,
    source: PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture(consumer: ConsumerOpts) -> Fixture {
    let emu = Emulator::start().await;
    emu.add_consumer(KEY, SECRET, consumer);
    emu.add_workspace(WS);
    let dir = tempfile::tempdir().unwrap();
    let source = simple_repo(dir.path(), "source", "main");
    Fixture {
        emu,
        source,
        _dir: dir,
    }
}

impl Fixture {
    fn add_repos(&self, n: usize) {
        for i in 0..n {
            self.emu.add_repo(
                WS,
                &format!("repo-{i:03}"),
                &self.source,
                RepoOpts::default(),
            );
        }
    }
}

#[tokio::test]
async fn lists_every_page_maps_fields_and_skips_hg() {
    let f = fixture(ConsumerOpts::default()).await;
    f.add_repos(150);
    f.emu.add_repo(
        WS,
        "old-hg",
        &f.source,
        RepoOpts {
            scm: "hg".into(),
            ..RepoOpts::default()
        },
    );
    f.emu.add_repo(
        WS,
        "develop-first",
        &f.source,
        RepoOpts {
            mainbranch: Some("develop".into()),
            is_private: false,
            ..RepoOpts::default()
        },
    );
    // `size` disagrees with the values: only `next` may end the listing.
    f.emu.lie_about_size(WS, 7);

    let repos = provider(&f.emu).list_repos(WS).await.unwrap().repos;

    assert_eq!(
        repos.len(),
        151,
        "150 + develop-first, without the hg repository"
    );
    assert!(repos.iter().all(|r| r.slug != "old-hg"));
    assert_eq!(repos[0].slug, "repo-000", "the service's order is kept");
    assert_eq!(repos[0].full_name, "acme/repo-000");
    assert_eq!(repos[0].default_branch.as_deref(), Some("main"));
    assert_eq!(repos[0].is_private, Some(true));
    assert!(repos[0].size.is_some_and(|s| s > 0));
    assert!(repos[0].updated_on.is_some());
    for r in &repos {
        assert_eq!(
            r.clone_url.as_str(),
            f.emu.git_url(WS, &r.slug),
            "no user info"
        );
        assert_eq!(r.clone_url.username(), "");
    }
    let last = repos.last().unwrap();
    assert_eq!(last.slug, "develop-first");
    assert_eq!(last.default_branch.as_deref(), Some("develop"));
    assert_eq!(last.is_private, Some(false));

    let stats = f.emu.stats();
    assert_eq!(
        stats.api_requests, 2,
        "152 listed at pagelen=100 is two pages"
    );
    assert_eq!(stats.token_requests, 1);
}

#[tokio::test]
async fn empty_workspace_and_odd_names_list_fine() {
    let f = fixture(ConsumerOpts::default()).await;
    f.emu.add_workspace("team one/ü");
    let p = provider(&f.emu);
    assert!(p.list_repos("team one/ü").await.unwrap().repos.is_empty());
    assert!(p.list_repos(WS).await.unwrap().repos.is_empty());
}

#[tokio::test]
async fn rate_limits_with_and_without_retry_after_are_waited_out() {
    let f = fixture(ConsumerOpts::default()).await;
    f.add_repos(120);
    f.emu.push_fault(
        Route::List,
        Fault::RateLimit {
            retry_after: Some(1),
        },
    );
    f.emu
        .push_fault(Route::List, Fault::RateLimit { retry_after: None });

    let started = Instant::now();
    let repos = provider(&f.emu).list_repos(WS).await.unwrap().repos;

    assert_eq!(repos.len(), 120);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 must be honoured, took {:?}",
        started.elapsed()
    );
    let stats = f.emu.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.api_requests, 2 + 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let f = fixture(ConsumerOpts::default()).await;
    f.add_repos(3);
    f.emu.push_fault(Route::List, Fault::Status(500));
    f.emu.push_fault(Route::List, Fault::Status(503));
    f.emu.push_fault(Route::Token, Fault::Status(502));

    let repos = provider(&f.emu).list_repos(WS).await.unwrap().repos;

    assert_eq!(repos.len(), 3);
    let stats = f.emu.stats();
    assert_eq!(stats.server_errors, 3);
    assert_eq!(
        stats.token_requests, 2,
        "the 502 from the token endpoint was retried"
    );
    assert_eq!(stats.api_requests, 3);
}

#[tokio::test]
async fn persistent_rate_limit_gives_up_after_the_budget() {
    let f = fixture(ConsumerOpts::default()).await;
    f.add_repos(3);
    for _ in 0..ATTEMPTS + 5 {
        f.emu
            .push_fault(Route::List, Fault::RateLimit { retry_after: None });
    }

    let err = provider(&f.emu).list_repos(WS).await.unwrap_err();

    assert!(
        matches!(
            err,
            ProviderError::RateLimited {
                attempts: ATTEMPTS,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(f.emu.stats().rate_limited, u64::from(ATTEMPTS));
}

#[tokio::test]
async fn a_next_link_loop_is_detected() {
    let f = fixture(ConsumerOpts::default()).await;
    f.add_repos(250);
    f.emu.loop_next(WS, 3, 2);

    let err = provider(&f.emu).list_repos(WS).await.unwrap_err();

    match &err {
        ProviderError::PaginationLoop { url } => assert!(url.contains("page=2"), "{url}"),
        other => panic!("expected PaginationLoop, got {other:?}"),
    }
    assert_eq!(
        f.emu.stats().api_requests,
        3,
        "stops before re-reading a page"
    );
}

#[tokio::test]
async fn unknown_workspace_is_owner_not_found() {
    let f = fixture(ConsumerOpts::default()).await;

    let err = provider(&f.emu)
        .list_repos("nobody-here")
        .await
        .unwrap_err();

    match &err {
        ProviderError::OwnerNotFound { kind, owner, .. } => {
            assert_eq!(*kind, "workspace");
            assert_eq!(owner, "nobody-here");
        }
        other => panic!("expected OwnerNotFound, got {other:?}"),
    }
    assert!(err.to_string().contains("--owner"), "{err}");
}

#[tokio::test]
async fn wrong_secret_says_which_settings_to_fix_without_showing_it() {
    let f = fixture(ConsumerOpts::default()).await;
    let wrong = "wrong-secret-d41d8cd9";
    let p = provider_with(&f.emu, KEY, wrong);

    let err = p.list_repos(WS).await.unwrap_err();

    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    let shown = format!("{err} | {err:?} | {p:?}");
    assert!(!shown.contains(wrong), "{shown}");
    for hint in [
        "--consumer-key",
        "--consumer-secret",
        "BITBUCKET_CONSUMER_KEY",
        "BITBUCKET_CONSUMER_SECRET",
    ] {
        assert!(shown.contains(hint), "missing {hint}: {err}");
    }
    assert_eq!(
        f.emu.stats().token_requests,
        1,
        "a refused secret is not retried"
    );
    assert_eq!(f.emu.stats().api_requests, 0);

    let err = provider_with(&f.emu, "no-such-key", SECRET)
        .git_auth(&any_repo(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(SECRET));
}

#[tokio::test]
async fn public_consumer_is_told_to_become_private() {
    let f = fixture(ConsumerOpts {
        public: true,
        ..ConsumerOpts::default()
    })
    .await;

    let err = provider(&f.emu).list_repos(WS).await.unwrap_err();

    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert!(
        err.to_string().contains("This is a private consumer"),
        "{err}"
    );
}

#[tokio::test]
async fn unusable_consumer_error_carries_the_consent_url() {
    let f = fixture(ConsumerOpts {
        authorised: false,
        ..ConsumerOpts::default()
    })
    .await;
    let p = provider(&f.emu);

    let err = p.check_login(Some(WS)).await.unwrap_err();

    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    let consent = p.consent_url();
    assert_eq!(
        consent,
        format!(
            "{}/site/oauth2/authorize?client_id={KEY}&response_type=code",
            f.emu.base_url()
        )
    );
    assert!(err.to_string().contains(&consent), "{err}");
}

#[tokio::test]
async fn check_login_reports_scopes_and_the_first_page() {
    let f = fixture(ConsumerOpts::default()).await;
    f.add_repos(101);
    let p = provider(&f.emu);

    let check = p.check_login(None).await.unwrap();
    assert_eq!(check.scopes, ["repository"]);
    assert_eq!(check.token_lifetime, Duration::from_secs(7200));
    assert!(check.first_page.is_none());

    let check = p.check_login(Some(WS)).await.unwrap();
    let page = check.first_page.unwrap();
    assert_eq!((page.git_repos, page.more), (100, true));
    assert_eq!(
        f.emu.stats().token_requests,
        2,
        "login always proves the secret anew"
    );

    let err = p.check_login(Some("ghost")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::OwnerNotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn check_login_flags_a_consumer_without_repository_read() {
    let f = fixture(ConsumerOpts {
        scopes: "account pipeline".into(),
        ..ConsumerOpts::default()
    })
    .await;

    let err = provider(&f.emu).check_login(None).await.unwrap_err();

    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("Repositories → Read"), "{err}");
}

#[tokio::test]
async fn token_expiring_mid_listing_costs_exactly_one_renewal() {
    let f = fixture(ConsumerOpts::default()).await;
    f.add_repos(250);
    // Faults go one per request: page 1 passes, page 2 finds every token expired (401).
    f.emu.push_fault(Route::List, Fault::Delay(Duration::ZERO));
    f.emu.push_fault(Route::List, Fault::ExpireTokens);

    let repos = provider(&f.emu).list_repos(WS).await.unwrap().repos;

    assert_eq!(repos.len(), 250);
    let stats = f.emu.stats();
    assert_eq!(stats.unauthorized, 1);
    assert_eq!(
        stats.token_requests, 2,
        "one token, plus exactly one renewal"
    );
    assert_eq!(stats.api_requests, 3 + 1);
}

#[tokio::test]
async fn a_token_close_to_expiry_is_renewed_before_use() {
    // 3 s lifetime: renewed once less than 0.6 s (a fifth) remains, before Bitbucket refuses it.
    let f = fixture(ConsumerOpts {
        token_ttl: Duration::from_secs(3),
        ..ConsumerOpts::default()
    })
    .await;
    f.add_repos(2);
    let p = provider(&f.emu);

    let first = p
        .git_auth(&any_repo(), false)
        .await
        .unwrap()
        .expect("the provider hands out git credentials");
    assert_eq!(first.username, "x-token-auth");
    assert_eq!(
        p.git_auth(&any_repo(), false)
            .await
            .unwrap()
            .expect("the provider hands out git credentials")
            .password,
        first.password,
        "a fresh token is reused"
    );
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let second = p
        .git_auth(&any_repo(), false)
        .await
        .unwrap()
        .expect("the provider hands out git credentials");
    assert_ne!(second.password, first.password);
    p.list_repos(WS).await.unwrap();

    let stats = f.emu.stats();
    assert_eq!(stats.token_requests, 2);
    assert_eq!(
        stats.unauthorized, 0,
        "renewed before expiry, never refused"
    );
}

#[tokio::test]
async fn a_token_refused_even_after_renewal_is_an_auth_error() {
    // Tokens that are dead on arrival: the renewal cannot help, and the error must say so.
    let f = fixture(ConsumerOpts {
        token_ttl: Duration::ZERO,
        ..ConsumerOpts::default()
    })
    .await;

    let err = provider(&f.emu).list_repos(WS).await.unwrap_err();

    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    let stats = f.emu.stats();
    assert_eq!(stats.unauthorized, 2, "one retry with a new token, no more");
    assert_eq!(stats.token_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_token_request() {
    let f = fixture(ConsumerOpts::default()).await;
    let p = Arc::new(provider(&f.emu));
    // A slow token endpoint widens the window in which the callers pile up.
    f.emu
        .push_fault(Route::Token, Fault::Delay(Duration::from_millis(200)));
    let burst = |refresh: bool| {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move {
                    p.git_auth(&any_repo(), refresh)
                        .await
                        .unwrap()
                        .expect("the provider hands out git credentials")
                        .password
                })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };

    let tokens = burst(false).await;
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_eq!(f.emu.stats().token_requests, 1);

    // Sixteen clones refused at once (say the token was revoked) renew once, not sixteen times.
    f.emu
        .push_fault(Route::Token, Fault::Delay(Duration::from_millis(200)));
    let renewed = burst(true).await;
    assert!(renewed.iter().all(|t| *t == renewed[0]));
    assert_ne!(renewed[0], tokens[0]);
    assert_eq!(f.emu.stats().token_requests, 2);

    // A later, separate refusal still gets a new token.
    let again = p
        .git_auth(&any_repo(), true)
        .await
        .unwrap()
        .expect("the provider hands out git credentials")
        .password;
    assert_ne!(again, renewed[0]);
    assert_eq!(f.emu.stats().token_requests, 3);
}

#[tokio::test]
async fn unreachable_service_is_a_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = BitbucketProvider::new(BitbucketOptions {
        api_url: format!("http://127.0.0.1:{port}/2.0").parse().unwrap(),
        token_url: format!("http://127.0.0.1:{port}/site/oauth2/access_token")
            .parse()
            .unwrap(),
        retry: fast_retry(),
        ..BitbucketOptions::new(KEY, Secret::new(SECRET))
    })
    .unwrap();

    let err = p.list_repos(WS).await.unwrap_err();

    assert!(matches!(err, ProviderError::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .contains(&format!("after {ATTEMPTS} attempts")),
        "{err}"
    );
}

/// Everything the provider logs at TRACE level, plus its errors and `Debug` output, must be
/// free of the consumer secret, its Basic-auth encoding and every access token.
#[tokio::test]
async fn secrets_and_tokens_never_reach_logs_errors_or_debug() {
    use base64::Engine;

    let f = fixture(ConsumerOpts::default()).await;
    f.add_repos(120);
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    // Current-thread runtime: every task of this test, reqwest's included, logs here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let p = provider(&f.emu);
    f.emu
        .push_fault(Route::List, Fault::RateLimit { retry_after: None });
    f.emu.push_fault(Route::List, Fault::Delay(Duration::ZERO));
    f.emu.push_fault(Route::List, Fault::ExpireTokens);
    p.list_repos(WS).await.unwrap();
    let before = p
        .git_auth(&any_repo(), false)
        .await
        .unwrap()
        .expect("the provider hands out git credentials");
    let after = p
        .git_auth(&any_repo(), true)
        .await
        .unwrap()
        .expect("the provider hands out git credentials");
    let wrong = provider_with(&f.emu, KEY, "not-the-secret-e3b0c442");
    let err = wrong.list_repos(WS).await.unwrap_err();

    let mut shown = logs.contents();
    shown.push_str(&format!(
        "{p:?} {wrong:?} {before:?} {after:?} {err} {err:?}"
    ));
    assert!(
        shown.contains("retrying"),
        "the 429 should have been logged: {shown}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:{SECRET}"));
    for needle in [
        SECRET,
        "not-the-secret-e3b0c442",
        &basic,
        before.password.expose(),
        after.password.expose(),
    ] {
        assert!(!shown.contains(needle), "{needle:?} leaked:\n{shown}");
    }
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
