//! The emulator's non-OAuth credentials: workspace/project/repository access tokens (Bearer)
//! and users' scoped API tokens (HTTP Basic with the Atlassian account email), and the
//! `X-RateLimit-*` headers Bitbucket sends to access tokens only (NOTES §1).
//!
//! What a token sees: Bitbucket filters `/2.0/repositories/{workspace}` down to what the token
//! reaches, so a repository token lists only its repository and a project token its project's
//! (GH decocms/studio#7231, 2026; GoogleContainerTools/config-sync#993). Over git, access
//! tokens use the user `x-token-auth`, API tokens `x-bitbucket-api-token-auth` (NOTES §1).

use std::collections::HashMap;
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

/// An hourly budget (scaled rate limits), with a window the tests can shorten.
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
    /// Start of the current window and requests counted in it.
    pub(super) used: Option<(Instant, u64)>,
}

/// Who an authenticated API or git request is.
pub(super) enum Caller {
    OAuth { username: String },
    Access(TokenScope),
    Api { username: String },
}

impl Tokens {
    /// Counts one access-token request against the budget: `Err(())` when spent (429), else
    /// the headers to send: `X-RateLimit-Limit`, `-Resource`, and `-NearLimit` (true when
    /// fewer than 20% are left, SA/docs/api-request-limits).
    pub(super) fn spend(&mut self) -> Result<Vec<(&'static str, String)>, ()> {
        let Some(b) = self.budget.clone() else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        let (start, used) = match self.used {
            Some((start, used)) if now.duration_since(start) < b.window => (start, used),
            _ => (now, 0),
        };
        if used >= b.limit {
            self.used = Some((start, used));
            return Err(());
        }
        self.used = Some((start, used + 1));
        let near = (b.limit - used - 1) * 5 < b.limit;
        Ok(vec![
            ("x-ratelimit-limit", b.limit.to_string()),
            ("x-ratelimit-resource", "api".to_string()),
            ("x-ratelimit-nearlimit", near.to_string()),
        ])
    }
}
