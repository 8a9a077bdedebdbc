//! Gitea's [`HostFixture`]: the emulator with one member account and its read-only token, and
//! one bare repository every listed repository points at.

use std::path::PathBuf;
use std::time::Duration;

use git_offsite::provider::Provider;
use git_offsite::provider::gitea::{GiteaOptions, GiteaProvider, LIMIT};
use git_offsite::provider::http::RetryPolicy;
use git_offsite::secret::Secret;

use crate::support::git::simple_repo;
use crate::support::gitea::{Emulator, Fault, READ_SCOPES, RepoOpts, Route};
use crate::support::provider_contract::HostFixture;

/// A token the emulator never issued.
pub const WRONG_TOKEN: &str = "gta_not-a-token-of-this-instance-5b1c";

pub struct Gitea {
    pub emu: Emulator,
    pub token: String,
    source: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gitea {
    pub fn new() -> Self {
        let emu = Emulator::start_blocking();
        let token = emu.add_token("backup-bot", READ_SCOPES);
        let dir = tempfile::tempdir().unwrap();
        let source = simple_repo(dir.path(), "source", "main");
        Self {
            emu,
            token,
            source,
            _dir: dir,
        }
    }

    /// The bare repository every `add_repos` repository is served from.
    pub fn source_repo(&self) -> PathBuf {
        self.source.clone()
    }

    pub fn with_token(&self, token: &str) -> GiteaProvider {
        let mut opts = GiteaOptions::new(self.emu.base_url().parse().unwrap(), Secret::new(token));
        opts.retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        };
        GiteaProvider::new(opts).unwrap()
    }
}

impl HostFixture for Gitea {
    fn provider(&self) -> Box<dyn Provider> {
        Box::new(self.with_token(&self.token))
    }

    fn provider_with_bad_credentials(&self) -> (Box<dyn Provider>, &'static str) {
        (Box::new(self.with_token(WRONG_TOKEN)), WRONG_TOKEN)
    }

    fn add_repos(&self, owner: &str, slugs: &[String]) {
        for slug in slugs {
            self.emu
                .add_repo(owner, slug, &self.source, RepoOpts::default());
        }
    }

    fn add_empty_owner(&self, owner: &str) {
        self.emu.add_org(owner);
    }

    fn page_len(&self) -> usize {
        // The provider asks for Gitea's default maximum, which the emulator serves.
        LIMIT as usize
    }

    fn list_requests(&self) -> u64 {
        self.emu.stats().list_requests
    }

    /// Gitea tokens do not expire: revoking stands in (see the stamp in `provider_contract.rs`).
    fn expire_credentials(&self) {
        self.emu.revoke_tokens();
    }

    fn rate_limit_next_list(&self, retry_after: Option<u64>) {
        self.emu
            .push_fault(Route::List, Fault::RateLimit { retry_after });
    }

    fn rate_limited(&self) -> u64 {
        self.emu.stats().rate_limited
    }
}
