//! GitHub's [`HostFixture`]: the emulator with one GitHub App, installed on every owner a
//! property uses, and one bare repository every listed repository points at.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use git_offsite::provider::Provider;
use git_offsite::provider::github::{AppKey, Credential, GithubOptions, GithubProvider};
use git_offsite::provider::http::RetryPolicy;
use git_offsite::secret::Secret;

use crate::support::git::simple_repo;
use crate::support::github::{Emulator, Fault, RepoOpts, Route, other_key, test_key};
use crate::support::provider_contract::HostFixture;

pub const APP_ID: &str = "31337";

pub struct Github {
    pub emu: Emulator,
    source: PathBuf,
    installed: Mutex<HashSet<String>>,
    _dir: tempfile::TempDir,
}

impl Github {
    pub fn new() -> Self {
        let emu = Emulator::start_blocking();
        emu.add_app(APP_ID);
        let dir = tempfile::tempdir().unwrap();
        let source = simple_repo(dir.path(), "source", "main");
        Self {
            emu,
            source,
            installed: Mutex::default(),
            _dir: dir,
        }
    }

    /// An organisation `owner` with the app installed (once).
    fn org(&self, owner: &str) {
        if self.installed.lock().unwrap().insert(owner.to_owned()) {
            self.emu.add_org(owner);
            self.emu.install(APP_ID, owner);
        }
    }

    pub fn with_key(&self, pem: &str) -> Box<dyn Provider> {
        let key = AppKey::new(APP_ID, &Secret::new(pem), "the test key").unwrap();
        let mut opts = GithubOptions::new(Credential::App(key));
        opts.api_url = self.emu.api_url().parse().unwrap();
        opts.retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        };
        Box::new(GithubProvider::new(opts).unwrap())
    }
}

impl HostFixture for Github {
    fn provider(&self) -> Box<dyn Provider> {
        self.with_key(&test_key().private_pem)
    }

    fn provider_with_bad_credentials(&self) -> (Box<dyn Provider>, &'static str) {
        // A well-formed key that is not the app's: GitHub cannot verify the JWT.
        let wrong = &other_key().private_pem;
        (self.with_key(wrong), wrong.as_str())
    }

    fn add_repos(&self, owner: &str, slugs: &[String]) {
        self.org(owner);
        for slug in slugs {
            self.emu
                .add_repo(owner, slug, &self.source, RepoOpts::default());
        }
    }

    fn add_empty_owner(&self, owner: &str) {
        self.org(owner);
    }

    fn page_len(&self) -> usize {
        // The provider asks for GitHub's maximum `per_page`.
        100
    }

    fn list_requests(&self) -> u64 {
        self.emu.stats().list_requests
    }

    fn expire_credentials(&self) {
        self.emu.expire_tokens();
    }

    fn rate_limit_next_list(&self, retry_after: Option<u64>) {
        self.emu
            .push_fault(Route::List, Fault::RateLimit { retry_after });
    }

    fn rate_limited(&self) -> u64 {
        self.emu.stats().rate_limited
    }
}
