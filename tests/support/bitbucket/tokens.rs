//! The emulator's non-OAuth credentials: workspace/project/repository access tokens (Bearer)
//! and users' scoped API tokens (HTTP Basic with the Atlassian account email), and the
//! `X-RateLimit-*` headers Bitbucket sends to access tokens only (NOTES §1).
//!
//! What a token sees: Bitbucket filters `/2.0/repositories/{workspace}` down to what the token
//! reaches, so a repository token lists only its repository and a project token its project's
//! (GH decocms/studio#7231, 2026; GoogleContainerTools/config-sync#993). Over git, access
//! tokens use the user `x-token-auth`, API tokens `x-bitbucket-api-token-auth` (NOTES §1).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What an access token was created for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    Workspace(String),
    Project { workspace: String, key: String },
    Repository { workspace: String, slug: String },
}

impl TokenScope {
    pub(super) fn sees(&self, workspace: &str, slug: &str, project_key: &str) -> bool {
        match self {
            TokenScope::Workspace(w) => w == workspace,
            TokenScope::Project { workspace: w, key } => w == workspace && key == project_key,
            TokenScope::Repository {
                workspace: w,
                slug: s,
            } => w == workspace && s == slug,
        }
    }
}

/// The git user of a scoped API token.
pub const API_TOKEN_GIT_USER: &str = "x-bitbucket-api-token-auth";

/// An hourly budget (scaled rate limits), with a window the tests can shorten. Like Bitbucket's
/// it is a rolling window ("for every minute that passes, you will be provided that time to
/// run new requests", SA/docs/api-request-limits) and each access token has its own
/// (SA/kb/bitbucket-cloud-rate-limit-troubleshooting).
#[derive(Debug, Clone)]
pub struct Budget {
    pub limit: u64,
    pub window: Duration,
}

#[derive(Default)]
pub(super) struct Tokens {
    pub(super) access: HashMap<String, TokenScope>,
    /// `(email, token)` → Bitbucket username.
    pub(super) api: HashMap<(String, String), String>,
    pub(super) budget: Option<Budget>,
    /// Per access token: when its requests inside the window were answered, oldest first.
    pub(super) used: HashMap<String, VecDeque<Instant>>,
}

/// Who an authenticated API or git request is.
pub(super) enum Caller {
    OAuth { username: String },
    Access { token: String, scope: TokenScope },
    Api { username: String },
}

impl Tokens {
    /// Counts one request of access token `token` against its budget: `Err(())` when spent
    /// (429), else the headers to send: `X-RateLimit-Limit`, `-Resource`, and `-NearLimit`
    /// (true when fewer than 20% are left, SA/docs/api-request-limits). A refused request is
    /// not counted.
    pub(super) fn spend(&mut self, token: &str) -> Result<Vec<(&'static str, String)>, ()> {
        let Some(b) = self.budget.clone() else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        let used = self.used.entry(token.to_owned()).or_default();
        while used
            .front()
            .is_some_and(|t| now.duration_since(*t) >= b.window)
        {
            used.pop_front();
        }
        if used.len() as u64 >= b.limit {
            return Err(());
        }
        used.push_back(now);
        let left = b.limit - used.len() as u64;
        let near = left * 5 < b.limit;
        Ok(vec![
            ("x-ratelimit-limit", b.limit.to_string()),
            ("x-ratelimit-resource", "api".to_string()),
            ("x-ratelimit-nearlimit", near.to_string()),
        ])
    }
}
