//! GitLab's [`HostFixture`]: the emulator with one group access token that sees every group a
//! property uses, and one bare repository every listed project points at.

use std::path::PathBuf;
use std::time::Duration;

use git_offsite::provider::Provider;
use git_offsite::provider::gitlab::{GitlabOptions, GitlabProvider};
use git_offsite::provider::http::RetryPolicy;
use git_offsite::secret::Secret;

use crate::support::git::simple_repo;
use crate::support::gitlab::{Emulator, Fault, Route, TokenOpts};
use crate::support::provider_contract::HostFixture;

pub const WRONG_TOKEN: &str = "glpat-not-the-contract-token-3f9a";

pub struct Gitlab {
    pub emu: Emulator,
    pub token: String,
    source: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gitlab {
    pub fn new() -> Self {
        let emu = Emulator::start_blocking();
        let token = emu.add_token(TokenOpts::group_bot(1));
        let dir = tempfile::tempdir().unwrap();
        let source = simple_repo(dir.path(), "source", "main");
        Self {
            emu,
            token,
            source,
            _dir: dir,
        }
    }

    pub fn with_token(&self, token: &str) -> Box<dyn Provider> {
        let mut opts = GitlabOptions::new(Secret::new(token));
        opts.url = self.emu.base_url().parse().unwrap();
        opts.retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        };
        Box::new(GitlabProvider::new(opts).unwrap())
    }
}

impl HostFixture for Gitlab {
    fn provider(&self) -> Box<dyn Provider> {
        self.with_token(&self.token)
    }

    fn provider_with_bad_credentials(&self) -> (Box<dyn Provider>, &'static str) {
        (self.with_token(WRONG_TOKEN), WRONG_TOKEN)
    }

    fn add_repos(&self, owner: &str, slugs: &[String]) {
        for slug in slugs {
            self.emu.add_project(owner, slug, &self.source);
        }
    }

    fn add_empty_owner(&self, owner: &str) {
        self.emu.add_group(owner);
    }

    fn page_len(&self) -> usize {
        // The provider asks for GitLab's maximum `per_page`.
        100
    }

    fn list_requests(&self) -> u64 {
        self.emu.stats().list_requests
    }

    fn expire_credentials(&self) {
        self.emu.expire_tokens();
    }

    /// A group or personal access token cannot be renewed by the backup (rotating it through
    /// the API revokes the old one, which other jobs may hold).
    fn renewable(&self) -> bool {
        false
    }

    fn rate_limit_next_list(&self, retry_after: Option<u64>) {
        self.emu
            .push_fault(Route::List, Fault::RateLimit { retry_after });
    }

    fn rate_limited(&self) -> u64 {
        self.emu.stats().rate_limited
    }
}
