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

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Auth, Emulator, GIT_TOKEN_USER, Shared, TOKEN_EXPIRED, TOKEN_INVALID, bearer, text};
use crate::support::git_http::{basic_auth, bump};

/// The plain-text 401 body of a failed HTTP Basic login on the API (GH
/// GearPlug/bitbucket-python#10, renovatebot/renovate#20533).
pub const LOGIN_FAILED: &str = "Login failed due to incorrect login credentials or method.
For information on authentication methods for Bitbucket Cloud APIs, visit:
    https://developer.atlassian.com/cloud/bitbucket/rest/intro/#authentication
If you are unsure of which login details or login method to use, visit:
    https://support.atlassian.com/bitbucket-cloud/docs/log-into-or-connect-to-bitbucket-cloud/
";

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

impl Emulator {
    /// A workspace, project or repository access token (Bearer; git user `x-token-auth`).
    pub fn add_access_token(&self, token: &str, scope: TokenScope) {
        self.shared
            .lock()
            .creds
            .access
            .insert(token.to_owned(), scope);
    }

    /// Revokes an access token: from now on it answers 401.
    pub fn revoke_access_token(&self, token: &str) {
        self.shared.lock().creds.access.remove(token);
    }

    /// A user's scoped API token: Basic `email:token` on the API, `x-bitbucket-api-token-auth`
    /// (or `username`) over git.
    pub fn add_api_token(&self, email: &str, token: &str, username: &str) {
        (self.shared.lock().creds.api)
            .insert((email.to_owned(), token.to_owned()), username.to_owned());
    }

    /// Revokes an API token.
    pub fn revoke_api_token(&self, email: &str, token: &str) {
        (self.shared.lock().creds.api).remove(&(email.to_owned(), token.to_owned()));
    }

    /// The access tokens' request budget per window (Bitbucket: per rolling hour).
    pub fn set_access_token_budget(&self, budget: Budget) {
        self.shared.lock().creds.budget = Some(budget);
    }
}

impl Shared {
    /// Who an API request is: an OAuth token or access token (Bearer), or an API token (Basic
    /// email:token); else the 401 Bitbucket answers.
    pub(super) fn api_caller(&self, headers: &HeaderMap) -> Result<Caller, Box<Response>> {
        if let Some(t) = bearer(headers) {
            return match self.check_token(&t) {
                Auth::Valid { username } => Ok(Caller::OAuth { username }),
                Auth::Expired => Err(Box::new(self.unauthorized_api(TOKEN_EXPIRED))),
                Auth::Invalid => match self.lock().creds.access.get(&t) {
                    Some(scope) => Ok(Caller::Access {
                        token: t.clone(),
                        scope: scope.clone(),
                    }),
                    None => Err(Box::new(self.unauthorized_api(TOKEN_INVALID))),
                },
            };
        }
        if let Some((email, token)) = basic_auth(headers) {
            return match self.lock().creds.api.get(&(email, token)) {
                Some(username) => Ok(Caller::Api {
                    username: username.clone(),
                }),
                // Wrong email or token (or a removed app password): bitbucket.org answers
                // Basic failures with a plain-text 401, not its JSON error document.
                None => {
                    bump(&self.counters.unauthorized);
                    Err(Box::new(text(StatusCode::UNAUTHORIZED, LOGIN_FAILED)))
                }
            };
        }
        Err(Box::new(self.unauthorized_api(
            "Authentication credentials were not provided.",
        )))
    }

    /// Whether Basic `user:token` on git smart-HTTP is an access token that reaches
    /// `workspace/slug` (user `x-token-auth`) or an API token (user
    /// `x-bitbucket-api-token-auth`, or its Bitbucket username).
    pub(super) fn git_token_authorised(
        &self,
        workspace: &str,
        slug: &str,
        user: &str,
        token: &str,
    ) -> bool {
        let inner = self.lock();
        if user == GIT_TOKEN_USER {
            return inner.creds.access.get(token).is_some_and(|scope| {
                (inner.workspaces.get(workspace)).is_some_and(|w| {
                    (w.repos.iter())
                        .any(|r| r.slug == slug && scope.sees(workspace, slug, &r.opts.project_key))
                })
            });
        }
        (inner.creds.api.iter())
            .any(|((_, t), name)| t == token && (user == API_TOKEN_GIT_USER || user == name))
    }
}

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
    /// Every access and API token stops working (a [`super::Fault::RevokeTokens`]).
    pub(super) fn revoke_all(&mut self) {
        self.access.clear();
        self.api.clear();
    }

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
