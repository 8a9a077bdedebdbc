//! `provider_suite!` stamps one test per property of `support::provider_contract` for each
//! provider against its host's emulator, so a failure names both
//! (`bitbucket::lists_every_page`) and one broken property does not hide the others.

use std::path::PathBuf;
use std::time::Duration;

use git_offsite::provider::Provider;
use git_offsite::provider::bitbucket::consumer::ConsumerCredentials;
use git_offsite::provider::bitbucket::credential::BitbucketCredential;
use git_offsite::provider::bitbucket::{BitbucketOptions, BitbucketProvider, RetryPolicy};
use git_offsite::secret::Secret;

use crate::support::bitbucket::{ConsumerOpts, Emulator, Fault, RepoOpts, Route, TokenScope};
use crate::support::git::simple_repo;
use crate::support::provider_contract::{self as contract, HostFixture};

/// `provider_suite!(name, fixture)` stamps every property; a host whose tokens cannot be
/// renewed names the property that replaces `a_token_expiring_mid_run_is_renewed` as a third
/// argument (and says why at its stamp).
macro_rules! provider_suite {
    ($name:ident, $fixture:expr) => {
        provider_suite!($name, $fixture, a_token_expiring_mid_run_is_renewed);
    };
    ($name:ident, $fixture:expr, $renewal:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lists_every_page() {
                contract::lists_every_page(&$fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_empty_owner_lists_nothing() {
                contract::an_empty_owner_lists_nothing(&$fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_unknown_owner_is_owner_not_found() {
                contract::an_unknown_owner_is_owner_not_found(&$fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_credentials_are_an_auth_error() {
                contract::bad_credentials_are_an_auth_error(&$fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $renewal() {
                contract::$renewal(&$fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rate_limited_with_retry_after_is_retried() {
                contract::rate_limited_with_retry_after_is_retried(&$fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rate_limited_without_retry_after_is_retried() {
                contract::rate_limited_without_retry_after_is_retried(&$fixture).await;
            }
        }
    };
}

provider_suite!(bitbucket, Bitbucket::new());
provider_suite!(bitbucket_access_token, Bitbucket::token(false));
provider_suite!(bitbucket_api_token, Bitbucket::token(true));
provider_suite!(github, github_host::Github::new());
// A GitLab group or personal access token cannot be renewed by the backup (rotating it revokes
// the old one, which other jobs may hold): its fixture says `renewable() == false`, so the
// renewal property checks that expiry fails clearly instead.
provider_suite!(gitlab, gitlab_host::Gitlab::new());
// A Gitea access token does not expire by itself and cannot be renewed (there is no refresh
// grant for it): the renewal property becomes "a token revoked mid-run fails clearly".
provider_suite!(
    gitea,
    gitea_host::Gitea::new(),
    a_token_revoked_mid_run_fails_clearly
);

/// The GitHub fixture: an App installed on every owner (the organisation-owned credential).
pub mod github_host;

/// The Gitea fixture: an organisation member's read-only token.
pub mod gitea_host;

/// The GitLab fixture: a group access token (not renewable).
pub mod gitlab_host;

const KEY: &str = "contract-key";
const SECRET: &str = "contract-secret-5d1e";
const EMAIL: &str = "contract@example.com";
const WRONG_SECRET: &str = "not-the-contract-secret-77a0";

/// The Bitbucket emulator with one consumer and one bare repository that every listed
/// repository points at (listing never reads it).
struct Bitbucket {
    emu: Emulator,
    /// `None`: the OAuth consumer; `Some(api)`: an access token (`false`) or an API token.
    token: Option<bool>,
    source: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bitbucket {
    fn new() -> Self {
        let emu = Emulator::start_blocking();
        emu.add_consumer(KEY, SECRET, ConsumerOpts::default());
        let dir = tempfile::tempdir().unwrap();
        let source = simple_repo(dir.path(), "source", "main");
        Self {
            emu,
            token: None,
            source,
            _dir: dir,
        }
    }

    /// A workspace access token for `acme` (or an API token, with `api`), no consumer.
    fn token(api: bool) -> Self {
        let f = Self::new();
        match api {
            false => f
                .emu
                .add_access_token(SECRET, TokenScope::Workspace("acme".into())),
            true => f.emu.add_api_token(EMAIL, SECRET, "someone"),
        }
        Self {
            token: Some(api),
            ..f
        }
    }

    fn with_secret(&self, secret: &str) -> Box<dyn Provider> {
        let credential = match self.token {
            None => BitbucketCredential::Consumer(ConsumerCredentials {
                key: KEY.into(),
                secret: Secret::new(secret),
                key_source: "test",
                secret_source: "test",
            }),
            Some(false) => BitbucketCredential::AccessToken {
                token: Secret::new(secret),
            },
            Some(true) => BitbucketCredential::ApiToken {
                email: EMAIL.into(),
                token: Secret::new(secret),
            },
        };
        Box::new(
            BitbucketProvider::new(BitbucketOptions {
                api_url: self.emu.api_url().parse().unwrap(),
                token_url: self.emu.token_url().parse().unwrap(),
                git_url: None,
                retry: RetryPolicy {
                    max_attempts: 4,
                    base_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(20),
                },
                user_agent: "git-offsite-contract".into(),
                ..BitbucketOptions::with(credential)
            })
            .unwrap(),
        )
    }
}

impl HostFixture for Bitbucket {
    fn provider(&self) -> Box<dyn Provider> {
        self.with_secret(SECRET)
    }

    fn provider_with_bad_credentials(&self) -> (Box<dyn Provider>, &'static str) {
        (self.with_secret(WRONG_SECRET), WRONG_SECRET)
    }

    fn add_repos(&self, owner: &str, slugs: &[String]) {
        for slug in slugs {
            self.emu
                .add_repo(owner, slug, &self.source, RepoOpts::default());
        }
    }

    fn add_empty_owner(&self, owner: &str) {
        self.emu.add_workspace(owner);
    }

    fn page_len(&self) -> usize {
        // The provider asks for Bitbucket's maximum.
        100
    }

    fn list_requests(&self) -> u64 {
        self.emu.stats().list_requests
    }

    fn expire_credentials(&self) {
        match self.token {
            None => self.emu.expire_tokens(),
            Some(false) => self.emu.revoke_access_token(SECRET),
            Some(true) => self.emu.revoke_api_token(EMAIL, SECRET),
        }
    }

    fn renewable(&self) -> bool {
        self.token.is_none()
    }

    fn rate_limit_next_list(&self, retry_after: Option<u64>) {
        self.emu
            .push_fault(Route::List, Fault::RateLimit { retry_after });
    }

    fn rate_limited(&self) -> u64 {
        self.emu.stats().rate_limited
    }
}
