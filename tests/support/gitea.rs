//! A Gitea / Forgejo server for the `gitea` provider: the REST API under `/api/v1` as Gitea's
//! source behaves (NOTES §7) and real git smart HTTP through [`super::git_http`].
//!
//! What it is faithful to, and where from:
//! - **Auth** (`modules/auth/httpauth`, `services/auth`): `Authorization: token <t>` or
//!   `Bearer <t>` (scheme case-insensitive), or Basic with the token as password. No header is
//!   an anonymous caller, who sees public repositories only. An unknown or revoked token is 401
//!   `{"message":"token is required","url":…}` (the API's `reqToken`); a token without the
//!   route's scope category is 403 `token does not have at least one of required scope(s):
//!   [read:organization]` (Gitea ≥ 1.19 scoped tokens; `routers/api/v1/api.go`: `/user` and
//!   `/users/{u}/repos` need the user category, the latter and `/orgs/{org}/repos` the
//!   repository one, `/orgs/…` the organization one). `?token=` / `?access_token=` (deprecated,
//!   ignored where `DISABLE_QUERY_AUTH_TOKEN` is set) is refused here with 401 and counted: the
//!   tool must never put a token in a URL.
//! - **Listing** (`routers/api/v1/user/repo.go`, `routers/api/v1/utils/page.go`): `/orgs/{org}/repos`
//!   is 404 for a name that is not an organisation, `/users/{u}/repos` lists orgs and users alike,
//!   ordered by id. `page` is 1-based; `limit <= 0` is `DEFAULT_PAGING_NUM` (30) and
//!   `limit > MAX_RESPONSE_ITEMS` (50, [`Emulator::set_max_items`]) is clamped silently. The answer
//!   carries `X-Total-Count` (every repository of the owner) and `Link` (next/last/first/prev,
//!   built with the clamped `limit`, joined by `,` as Gitea's paginator does). Repositories the
//!   caller cannot read ([`RepoOpts::unreadable`]) take their slot in the database page and are
//!   dropped afterwards, so short pages mid-listing happen as on a real instance.
//! - **Errors**: 404 `{"errors":null,"message":"The target couldn't be found.","url":…}`
//!   (`APIContext.NotFound`). Gitea documents no rate limit; a proxy in front answers 429 with or
//!   without `Retry-After`, or 503 ([`Fault`]).
//! - **Git**: Basic with a live token as password and any user name (or the token as user name and
//!   an empty or `x-oauth-basic` password), read-only; 401 with `WWW-Authenticate: Basic
//!   realm="Gitea"` otherwise.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use self::wire::router;
use super::emulated::{dir_kb, random_hex};
use super::git_http::{GitHttp, head_branch};
use super::server;

mod wire;

/// Gitea's default `[api] MAX_RESPONSE_ITEMS`.
pub const MAX_RESPONSE_ITEMS: usize = 50;
/// Gitea's default `[api] DEFAULT_PAGING_NUM`.
pub const DEFAULT_PAGING_NUM: usize = 30;
/// Every read scope a token made with "Read" on repository, organization and user has.
pub const READ_SCOPES: &[&str] = &["read:repository", "read:organization", "read:user"];

#[derive(Debug, Clone, Default)]
pub struct RepoOpts {
    pub private: bool,
    pub fork: bool,
    pub archived: bool,
    /// A pull mirror of another host.
    pub mirror: bool,
    /// In the owner's database pages and `X-Total-Count`, but not readable by any token: dropped
    /// from the page after it is fetched, as `listUserRepos` does.
    pub unreadable: bool,
    /// Fields merged over the listed JSON (a hostile or broken answer).
    pub patch: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Any repository listing.
    List,
    /// `GET /api/v1/user`.
    User,
    /// Any git smart-HTTP request.
    Git,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 from a proxy in front, with or without `Retry-After`.
    RateLimit {
        retry_after: Option<u64>,
    },
    Status(u16),
    /// Revokes every token, then serves the request (so it fails 401).
    RevokeTokens,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub api_requests: u64,
    pub list_requests: u64,
    pub rate_limited: u64,
    pub unauthorized: u64,
    /// API requests that carried a token in the query string (must stay 0).
    pub query_tokens: u64,
    /// API requests that authenticated with `Authorization: token …`.
    pub token_scheme: u64,
    pub git_requests: u64,
}

pub struct Emulator {
    shared: Arc<Shared>,
    /// Dropped after the fields above, so the server stops before the root is deleted.
    _server: server::Server,
    _root: tempfile::TempDir,
}

struct Shared {
    base: String,
    git: GitHttp,
    inner: Mutex<Inner>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    api_requests: AtomicU64,
    list_requests: AtomicU64,
    rate_limited: AtomicU64,
    unauthorized: AtomicU64,
    query_tokens: AtomicU64,
    token_scheme: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// Lower-cased name → account (Gitea names are case-insensitive).
    accounts: BTreeMap<String, Account>,
    tokens: HashMap<String, Token>,
    faults: HashMap<Route, VecDeque<Fault>>,
    max_items: usize,
    /// Basic user names git requests carried, in order.
    git_users: Vec<String>,
    /// Lower-cased owner → a `Link` next URL served on its first page instead of the real one.
    foreign_next: HashMap<String, String>,
    seq: u64,
}

struct Account {
    name: String,
    id: u64,
    org: bool,
    repos: Vec<Repo>,
}

struct Repo {
    name: String,
    id: u64,
    default_branch: String,
    empty: bool,
    size_kib: u64,
    opts: RepoOpts,
}

struct Token {
    user: String,
    scopes: Vec<String>,
    revoked: bool,
}

impl Emulator {
    pub fn start_blocking() -> Emulator {
        let root = tempfile::Builder::new()
            .prefix("gitea-emulator-")
            .tempdir()
            .expect("emulator root");
        let bound = server::Bound::new();
        let shared = Arc::new(Shared {
            base: bound.base(),
            git: GitHttp::new(root.path(), "gitea-emulator"),
            inner: Mutex::new(Inner {
                max_items: MAX_RESPONSE_ITEMS,
                ..Inner::default()
            }),
            counters: Counters::default(),
        });
        let server = bound.serve("gitea-emulator", router(shared.clone()));
        Emulator {
            shared,
            _server: server,
            _root: root,
        }
    }

    /// `http://127.0.0.1:PORT` (the instance's base URL and git host).
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    pub fn add_org(&self, name: &str) {
        self.shared.lock().account_mut(name, true);
    }

    pub fn add_user(&self, name: &str) {
        self.shared.lock().account_mut(name, false);
    }

    /// A token of `user` with `scopes` (see [`READ_SCOPES`]); the user is created if needed.
    pub fn add_token(&self, user: &str, scopes: &[&str]) -> String {
        let token = format!("gta_{}", random_hex(40));
        let mut inner = self.shared.lock();
        inner.account_mut(user, false);
        inner.tokens.insert(
            token.clone(),
            Token {
                user: user.to_owned(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                revoked: false,
            },
        );
        token
    }

    /// A repository of `owner` (an organisation unless it exists as a user) served from `source`.
    pub fn add_repo(&self, owner: &str, name: &str, source: &Path, opts: RepoOpts) {
        let source = self.shared.git.link_repo(owner, name, source);
        let default_branch = head_branch(&source);
        let mut inner = self.shared.lock();
        inner.seq += 1;
        let repo = Repo {
            name: name.to_owned(),
            id: inner.seq,
            empty: default_branch.is_none(),
            size_kib: if default_branch.is_some() {
                1 + dir_kb(&source)
            } else {
                0
            },
            default_branch: default_branch.unwrap_or_else(|| "main".into()),
            opts,
        };
        let account = inner.account_mut(owner, true);
        match account.repos.iter_mut().find(|r| r.name == name) {
            Some(old) => *old = repo,
            None => account.repos.push(repo),
        }
    }

    /// `[api] MAX_RESPONSE_ITEMS` of the instance.
    pub fn set_max_items(&self, n: usize) {
        self.shared.lock().max_items = n;
    }

    pub fn push_fault(&self, route: Route, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(route)
            .or_default()
            .push_back(fault);
    }

    /// `owner`'s first page links `next` to `url` (another host, say).
    pub fn set_foreign_next(&self, owner: &str, url: &str) {
        self.shared
            .lock()
            .foreign_next
            .insert(owner.to_ascii_lowercase(), url.into());
    }

    /// Revokes (deletes) every token issued so far.
    pub fn revoke_tokens(&self) {
        for t in self.shared.lock().tokens.values_mut() {
            t.revoked = true;
        }
    }

    /// Basic user names git requests carried so far.
    pub fn git_users(&self) -> Vec<String> {
        self.shared.lock().git_users.clone()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            api_requests: get(&c.api_requests),
            list_requests: get(&c.list_requests),
            rate_limited: get(&c.rate_limited),
            unauthorized: get(&c.unauthorized),
            query_tokens: get(&c.query_tokens),
            token_scheme: get(&c.token_scheme),
            git_requests: self.shared.git.stats().requests,
        }
    }
}

impl Inner {
    fn account_mut(&mut self, name: &str, org: bool) -> &mut Account {
        let key = name.to_ascii_lowercase();
        if !self.accounts.contains_key(&key) {
            self.seq += 1;
            let id = self.seq;
            self.accounts.insert(
                key.clone(),
                Account {
                    name: name.to_owned(),
                    id,
                    org,
                    repos: Vec::new(),
                },
            );
        }
        self.accounts.get_mut(&key).expect("just inserted")
    }

    fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(&name.to_ascii_lowercase())
    }

    /// The live token `value`, if any.
    fn live(&self, value: &str) -> Option<&Token> {
        self.tokens.get(value).filter(|t| !t.revoked)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
