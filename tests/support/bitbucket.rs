//! A Bitbucket Cloud emulator: OAuth token endpoint, the paginated repository list and git smart
//! HTTP, on one loopback port, with scripted faults and counters for assertions.
//!
//! Modelled on cargo's `HttpServer` (cargo-test-support `registry.rs`): a stateful fake that
//! routes on method + path, checks auth the way the real service does, takes per-route fault
//! scripts, and stops on Drop. Its answers copy bitbucket.org's observed wire format (sources
//! next to each constant) so that a client that works here also works against bitbucket.org.
//!
//! Why a thread with its own runtime: tests often run the product as a child process and wait
//! for it with blocking calls; a server living on the test's (possibly current-thread) runtime
//! would then never be polled. The git half is [`super::git_http`] (real `git http-backend`,
//! shared by every host emulator); this module only puts Bitbucket's authentication, faults and
//! counters in front of it.
//!
//! Listed repositories are read-only, as they are for an OAuth read token. For `restore
//! --push-to` tests, [`Emulator::add_push_target`] adds an empty repository that accepts
//! `git-receive-pack` from one HTTP Basic user and password, and nothing else.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use serde_json::{Value, json};

use super::emulated::merge;
use super::git_http::{self, GitHttp, GitRequest, basic_auth, bump, head_branch};
use super::server;

pub use self::damage::Damage;
pub use self::tokens::{Budget, TokenScope};
use self::tokens::{Caller, Tokens};

mod damage;
mod tokens;

/// Bitbucket's own documented default for `expires_in` (2 h; GH eclipse/che#21291).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(7200);
/// `pagelen` without the parameter, and its documented maximum (backstage
/// plugin-bitbucket-cloud-common `Models.Paginated.pagelen`).
const DEFAULT_PAGELEN: u64 = 10;
const MAX_PAGELEN: u64 = 100;
/// The literal user name Bitbucket requires for OAuth access tokens over git (NOTES §1).
pub const GIT_TOKEN_USER: &str = "x-token-auth";
/// Challenge of a git 401. The realm is Bitbucket's (community.atlassian.com 3149693 quotes
/// `realm=Bitbucket.org HTTP`); the scheme must be Basic or git will not send credentials.
const GIT_REALM: &str = r#"Basic realm="Bitbucket.org HTTP""#;
/// Body of every 429 (SA/kb/bitbucket-cloud-rate-limit-troubleshooting).
pub const RATE_LIMIT_BODY: &str = "Rate limit for this resource has been exceeded";
/// Exact `error_description`s seen from `/site/oauth2/access_token`.
pub const INVALID_CLIENT: &str = "Invalid OAuth client credentials"; // GH harness/harness#1650
pub const PUBLIC_CONSUMER: &str = "Cannot use client_credentials with a consumer marked as \"public\". \
Calls for auto generated consumers should use urn:bitbucket:oauth2:jwt instead."; // GH composer/composer#10678
pub const NO_CALLBACK: &str = "No callback uri defined for the OAuth client."; // GH composer/composer#5335
/// API 401 messages: expired (community.atlassian.com 2079608) and unknown tokens (… 3149693).
pub const TOKEN_EXPIRED: &str = "Access token expired.";
pub const TOKEN_INVALID: &str = "Token is invalid, expired, or not supported for this endpoint.";
/// What git prints after `remote:` on a refused clone (community.atlassian.com 3213684).
const GIT_DENIED: &str = "You may not have access to this repository or it no longer exists in \
this workspace. If you think this repository exists and you have access, make sure you are \
authenticated.\n";

/// How an OAuth consumer behaves at the token endpoint.
#[derive(Debug, Clone)]
pub struct ConsumerOpts {
    /// Lifetime of each access token; `expires_in` reports it in whole seconds.
    pub token_ttl: Duration,
    /// A consumer without "This is a private consumer" ticked: `client_credentials` is refused.
    pub public: bool,
    /// `false` models a consumer Bitbucket will not issue tokens for yet. For client
    /// credentials there is no per-user grant step; the documented way a consumer is unusable
    /// is a missing callback URL ("Required for OAuth 2.0 consumers"), answered with
    /// 400 `invalid_request` / "No callback uri defined for the OAuth client." (composer#5335,
    /// jonhadfield/soba#50), so that is what this answers.
    pub authorised: bool,
    /// The Bitbucket user owning the consumer; it appears before `@` in https clone links.
    pub username: String,
    /// Space-separated `scopes` in the token answer.
    pub scopes: String,
}

impl Default for ConsumerOpts {
    fn default() -> Self {
        Self {
            token_ttl: DEFAULT_TOKEN_TTL,
            public: false,
            authorised: true,
            username: "offsite-bot".to_owned(),
            scopes: "repository".to_owned(),
        }
    }
}

/// Metadata of an emulated repository.
#[derive(Debug, Clone)]
pub struct RepoOpts {
    /// `git`, or `hg` (listed, never served: Bitbucket dropped Mercurial in 2020).
    pub scm: String,
    /// `None`: HEAD's branch of the source, or `null` when the source has no refs at all.
    pub mainbranch: Option<String>,
    pub is_private: bool,
    /// Display `name`; defaults to the slug.
    pub name: Option<String>,
    pub description: String,
    pub language: String,
    pub project_key: String,
    /// Fields merged over the listed JSON (objects merge key by key, anything else replaces):
    /// a hostile or broken API answer, e.g. `{"slug": "../x"}` or another host's clone link.
    pub patch: Option<Value>,
}

impl Default for RepoOpts {
    fn default() -> Self {
        Self {
            scm: "git".to_owned(),
            mainbranch: None,
            is_private: true,
            name: None,
            description: String::new(),
            language: String::new(),
            project_key: "PROJ".to_owned(),
            patch: None,
        }
    }
}

/// Where a scripted [`Fault`] applies. Faults are consumed one per request, in push order;
/// a git request takes its repository's queue first, then the `Git` queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /site/oauth2/access_token`.
    Token,
    /// `GET /2.0/repositories/{workspace}`.
    List,
    /// Any git smart-HTTP request.
    Git,
    /// Git requests for one repository.
    Repo { workspace: String, slug: String },
}

impl Route {
    pub fn repo(workspace: &str, slug: &str) -> Route {
        Route::Repo {
            workspace: workspace.to_owned(),
            slug: slug.to_owned(),
        }
    }
}

/// One scripted misbehaviour for one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with [`RATE_LIMIT_BODY`], with or without `Retry-After: <secs>` (Bitbucket documents
    /// no Retry-After, so clients must cope with both).
    RateLimit { retry_after: Option<u64> },
    /// This status (e.g. 500, 502, 503) with an error body.
    Status(u16),
    /// Expires every issued access token, then serves the request normally (so it fails 401).
    ExpireTokens,
    /// Revokes every access token and API token, then serves the request normally (so it
    /// fails 401): a token revoked while a run is under way.
    RevokeTokens,
    /// Waits, then serves the request normally (for concurrency and timeout tests).
    Delay(Duration),
    /// `302 Found` to this URL, before any authentication (a compromised or misconfigured
    /// git host sending the client elsewhere).
    Redirect(String),
    /// This status with this JSON body (an error document with an odd or over-long message).
    Json(u16, Value),
    /// `200` with the object `fields` plus a `"padding"` string of `bytes` bytes: a valid JSON
    /// answer of any size, streamed in 64 KiB chunks so the emulator holds none of it. With a
    /// `Content-Length` only when `declared` (a client must cap what streams in, not only
    /// trust the header).
    Padded {
        fields: Value,
        bytes: usize,
        declared: bool,
    },
}

/// Deliberately inconsistent pagination for one workspace.
#[derive(Debug, Clone, Default)]
pub struct ListQuirks {
    /// `(on_page, to_page)`: page `on_page` gets a `next` link to `to_page` (an earlier page), even
    /// when it is the last page.
    pub next_loop: Option<(u64, u64)>,
    /// A `size` that disagrees with the values served (GH atlassian-api/atlassian-python-api#652).
    pub size: Option<u64>,
    /// `(after_page, slug)`: once page `after_page` has been served, the repository is deleted
    /// (once), so later pages shift by one, as they do on bitbucket.org when a repository is
    /// deleted while a client pages through the list.
    pub delete_after_page: Option<(u64, String)>,
    /// Pages of this many values whatever `pagelen` was asked for (a server that ignores the
    /// parameter, or a proxy that merges pages): `next` links and `pagelen` say so.
    pub serve_pagelen: Option<u64>,
}

/// Counters, read with [`Emulator::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request to the token endpoint, faulted or not.
    pub token_requests: u64,
    pub token_client_credentials: u64,
    pub token_refresh: u64,
    /// Access tokens handed out over HTTP (not by [`Emulator::mint_token`]).
    pub tokens_issued: u64,
    /// Every `/2.0/...` request, and those to the repository list.
    pub api_requests: u64,
    pub list_requests: u64,
    /// Every git smart-HTTP request, and those whose body came gzip-encoded.
    pub git_requests: u64,
    pub git_gzip_requests: u64,
    /// `POST git-upload-pack` requests, faulted or not: the negotiation that sends a pack (with
    /// protocol v0, which libgit2 speaks, a ref listing alone is only the `info/refs` GET).
    pub pack_requests: u64,
    /// 429s served, on any route.
    pub rate_limited: u64,
    /// 401s served, on any route.
    pub unauthorized: u64,
    /// 5xx served (faults and failed repositories).
    pub server_errors: u64,
    /// Most git requests in flight at once (a request ends when its body has been streamed).
    pub max_concurrent_git: u64,
    /// Most `git-upload-pack` requests in flight at once (repositories being cloned).
    pub max_concurrent_packs: u64,
    /// Authenticated requests to push targets (`git-receive-pack`).
    pub push_requests: u64,
}

/// A running emulator; see the module docs. Dropping it stops the server, kills running
/// `git http-backend` children and deletes its temporary root.
pub struct Emulator {
    shared: Arc<Shared>,
    /// Dropped after the fields above, so the server stops before the root is deleted.
    _server: server::Server,
    _root: tempfile::TempDir,
}

impl Emulator {
    /// Starts an empty emulator on `127.0.0.1:0`.
    pub async fn start() -> Emulator {
        Self::start_blocking()
    }

    /// [`Emulator::start`] for synchronous tests; it never waits on the server thread.
    pub fn start_blocking() -> Emulator {
        let root = tempfile::Builder::new()
            .prefix("bitbucket-emulator-")
            .tempdir()
            .expect("emulator root");
        let bound = server::Bound::new();
        let shared = Arc::new(Shared {
            base: bound.base(),
            root: root.path().to_owned(),
            git: GitHttp::new(root.path(), "bitbucket-emulator"),
            inner: Mutex::default(),
            counters: Counters::default(),
            damage: Arc::default(),
        });
        let app = router(shared.clone());
        let server = bound.serve("bitbucket-emulator", app);
        Emulator {
            shared,
            _server: server,
            _root: root,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// `http://127.0.0.1:PORT/2.0`
    pub fn api_url(&self) -> String {
        format!("{}/2.0", self.shared.base)
    }

    /// `http://127.0.0.1:PORT/site/oauth2/access_token`
    pub fn token_url(&self) -> String {
        format!("{}/site/oauth2/access_token", self.shared.base)
    }

    /// The https-style clone URL without user info: `http://127.0.0.1:PORT/<ws>/<slug>.git`.
    pub fn git_url(&self, workspace: &str, slug: &str) -> String {
        format!("{}/{workspace}/{slug}.git", self.shared.base)
    }

    /// The emulator's private temporary directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    pub fn add_consumer(&self, key: &str, secret: &str, opts: ConsumerOpts) {
        self.shared.lock().consumers.insert(
            key.to_owned(),
            Consumer {
                secret: secret.to_owned(),
                opts,
            },
        );
    }

    /// A workspace with no repositories (listing it gives `size: 0`, not 404).
    pub fn add_workspace(&self, workspace: &str) {
        self.shared.lock().workspace_mut(workspace);
    }

    /// Lists `source` (a bare repository, served in place through a symlink, so later changes
    /// to it are visible to clients) as `<workspace>/<slug>`, after the repositories added
    /// before it. Re-adding a slug replaces it in place.
    pub fn add_repo(&self, workspace: &str, slug: &str, source: &Path, opts: RepoOpts) {
        let is_git = opts.scm == "git";
        let (mainbranch, size) = if is_git {
            let source = self.shared.git.link_repo(workspace, slug, source);
            let mainbranch = opts.mainbranch.clone().or_else(|| head_branch(&source));
            (mainbranch, dir_size(&source))
        } else {
            (None, 0)
        };
        let mut inner = self.shared.lock();
        let n = inner.next_seq();
        let repo = Repo {
            slug: slug.to_owned(),
            uuid: uuid_for(&format!("repo:{workspace}/{slug}")),
            mainbranch,
            size,
            created_on: timestamp(n, 0),
            updated_on: timestamp(n, 3_600 * 1_000_000 + 271_828),
            opts,
        };
        let ws = inner.workspace_mut(workspace);
        match ws.repos.iter_mut().find(|r| r.slug == slug) {
            Some(old) => *old = repo,
            None => ws.repos.push(repo),
        }
    }

    /// Drops a repository from the listing and from git (as if deleted on Bitbucket).
    pub fn remove_repo(&self, workspace: &str, slug: &str) {
        let mut inner = self.shared.lock();
        if let Some(ws) = inner.workspaces.get_mut(workspace) {
            ws.repos.retain(|r| r.slug != slug);
        }
        drop(inner);
        self.shared.git.unlink_repo(workspace, slug);
    }

    pub fn push_fault(&self, route: Route, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(route)
            .or_default()
            .push_back(fault);
    }

    /// Every later git request for this repository (after auth) answers `status`.
    pub fn fail_repo(&self, workspace: &str, slug: &str, status: u16) {
        self.shared
            .lock()
            .failed_repos
            .insert((workspace.to_owned(), slug.to_owned()), status);
    }

    /// Every later git answer for this repository streams at `bytes_per_sec`: the pack only, or with `refs_too` the ref advertisement as well. A trickle never
    /// trips a read timeout; libgit2 sees progress only between pkt-lines, and during the ref
    /// advertisement not at all.
    pub fn trickle_repo(&self, workspace: &str, slug: &str, bytes_per_sec: usize, refs_too: bool) {
        self.shared.lock().trickled_repos.insert(
            (workspace.to_owned(), slug.to_owned()),
            (bytes_per_sec, refs_too),
        );
    }

    /// An empty bare repository at `<workspace>/<slug>.git` that accepts pushes over smart
    /// HTTP (`git-receive-pack`, through `git http-backend`) from HTTP Basic
    /// `username:password` only, as a new Bitbucket repository does for an API token or app
    /// password. Not listed by the API; clones of it are refused. Returns its path on disk.
    pub fn add_push_target(
        &self,
        workspace: &str,
        slug: &str,
        username: &str,
        password: &str,
    ) -> PathBuf {
        let path = self.shared.git.init_bare(workspace, slug);
        self.shared.lock().push_targets.insert(
            (workspace.to_owned(), slug.to_owned()),
            (username.to_owned(), password.to_owned()),
        );
        path
    }

    /// Expires every access token issued so far (refresh tokens stay valid).
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for t in self.shared.lock().tokens.values_mut() {
            t.expires_at = now;
        }
    }

    pub fn set_list_quirks(&self, workspace: &str, quirks: ListQuirks) {
        self.shared.lock().workspace_mut(workspace).quirks = quirks;
    }

    /// Page `on_page` of `workspace` links `next` back to `to_page`.
    pub fn loop_next(&self, workspace: &str, on_page: u64, to_page: u64) {
        self.shared.lock().workspace_mut(workspace).quirks.next_loop = Some((on_page, to_page));
    }

    /// The next answer on `route` is served and then damaged on the way out ([`Damage`]).
    pub fn damage(&self, route: Route, damage: Damage) {
        self.shared.damage.push(route, damage);
    }

    /// Answers damaged so far.
    pub fn damaged(&self) -> u64 {
        self.shared.damage.served()
    }

    /// Every page of `workspace` reports `size` instead of the real total.
    pub fn lie_about_size(&self, workspace: &str, size: u64) {
        self.shared.lock().workspace_mut(workspace).quirks.size = Some(size);
    }

    /// A valid access token for `key`'s consumer without an HTTP round trip (not counted).
    pub fn mint_token(&self, key: &str) -> String {
        let mut inner = self.shared.lock();
        let opts = inner
            .consumers
            .get(key)
            .unwrap_or_else(|| panic!("no consumer {key:?}"))
            .opts
            .clone();
        inner.issue(key, &opts).0
    }

    /// Every access token issued so far (for leak scans).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.keys().cloned().collect()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let git = self.shared.git.stats();
        Stats {
            token_requests: get(&c.token_requests),
            token_client_credentials: get(&c.token_client_credentials),
            token_refresh: get(&c.token_refresh),
            tokens_issued: get(&c.tokens_issued),
            api_requests: get(&c.api_requests),
            list_requests: get(&c.list_requests),
            git_requests: git.requests,
            git_gzip_requests: git.gzip_requests,
            pack_requests: git.pack_requests,
            rate_limited: get(&c.rate_limited),
            unauthorized: get(&c.unauthorized),
            server_errors: get(&c.server_errors) + git.server_errors,
            max_concurrent_git: git.max_concurrent,
            max_concurrent_packs: git.max_concurrent_packs,
            push_requests: get(&c.push_requests),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Shared {
    base: String,
    root: PathBuf,
    git: GitHttp,
    inner: Mutex<Inner>,
    counters: Counters,
    damage: Arc<damage::Queue>,
}

#[derive(Default)]
struct Counters {
    token_requests: AtomicU64,
    token_client_credentials: AtomicU64,
    token_refresh: AtomicU64,
    tokens_issued: AtomicU64,
    api_requests: AtomicU64,
    list_requests: AtomicU64,
    rate_limited: AtomicU64,
    unauthorized: AtomicU64,
    server_errors: AtomicU64,
    push_requests: AtomicU64,
}

#[derive(Default)]
struct Inner {
    consumers: HashMap<String, Consumer>,
    tokens: HashMap<String, Token>,
    /// Refresh token → consumer key.
    refresh_tokens: HashMap<String, String>,
    workspaces: BTreeMap<String, Workspace>,
    faults: HashMap<Route, VecDeque<Fault>>,
    failed_repos: HashMap<(String, String), u16>,
    /// `(workspace, slug)` → bytes per second, and whether `info/refs` trickles too.
    trickled_repos: HashMap<(String, String), (usize, bool)>,
    /// `(workspace, slug)` → Basic credentials of an empty repository that accepts pushes.
    push_targets: HashMap<(String, String), (String, String)>,
    /// Access tokens, API tokens and the access tokens' budget.
    creds: Tokens,
    seq: u64,
}

struct Consumer {
    secret: String,
    opts: ConsumerOpts,
}

struct Token {
    username: String,
    expires_at: Instant,
}

struct Workspace {
    slug: String,
    uuid: String,
    repos: Vec<Repo>,
    quirks: ListQuirks,
}

struct Repo {
    slug: String,
    uuid: String,
    mainbranch: Option<String>,
    size: u64,
    created_on: String,
    updated_on: String,
    opts: RepoOpts,
}

enum Auth {
    Valid { username: String },
    Invalid,
    Expired,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler must not take every later request down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_token(&self, token: &str) -> Auth {
        match self.lock().tokens.get(token) {
            None => Auth::Invalid,
            Some(t) if Instant::now() >= t.expires_at => Auth::Expired,
            Some(t) => Auth::Valid {
                username: t.username.clone(),
            },
        }
    }

    /// Pops the first queued fault of the first route in `routes` that has one, and applies
    /// it: `Some(response)` ends the request, `None` lets it proceed.
    async fn fault(&self, routes: &[Route], kind: Kind) -> Option<Response> {
        let fault = {
            let mut inner = self.lock();
            routes
                .iter()
                .find_map(|r| inner.faults.get_mut(r).and_then(VecDeque::pop_front))
        }?;
        match fault {
            Fault::RateLimit { retry_after } => {
                bump(&self.counters.rate_limited);
                let mut resp = text(StatusCode::TOO_MANY_REQUESTS, RATE_LIMIT_BODY);
                if let Some(secs) = retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                Some(resp)
            }
            Fault::Status(code) => {
                let status = StatusCode::from_u16(code).expect("valid HTTP status");
                Some(self.error(kind, status))
            }
            Fault::ExpireTokens => {
                let now = Instant::now();
                for t in self.lock().tokens.values_mut() {
                    t.expires_at = now;
                }
                None
            }
            Fault::RevokeTokens => {
                self.lock().creds.revoke_all();
                None
            }
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                None
            }
            Fault::Json(code, body) => Some(json_response(
                StatusCode::from_u16(code).expect("valid HTTP status"),
                &body,
            )),
            Fault::Padded {
                fields,
                bytes,
                declared,
            } => Some(padded(&fields, bytes, declared)),
            Fault::Redirect(to) => {
                let mut resp = StatusCode::FOUND.into_response();
                resp.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(&to).expect("redirect target is a header value"),
                );
                Some(resp)
            }
        }
    }

    /// A generic error in the style of the route, counted.
    fn error(&self, kind: Kind, status: StatusCode) -> Response {
        if status.is_server_error() {
            bump(&self.counters.server_errors);
        }
        if status == StatusCode::UNAUTHORIZED {
            bump(&self.counters.unauthorized);
        }
        let reason = status.canonical_reason().unwrap_or("Error");
        match kind {
            Kind::Api => api_error(status, reason),
            Kind::Git => text(status, &format!("{reason}\n")),
        }
    }

    fn unauthorized_api(&self, message: &str) -> Response {
        bump(&self.counters.unauthorized);
        api_error(StatusCode::UNAUTHORIZED, message)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Api,
    Git,
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn workspace_mut(&mut self, slug: &str) -> &mut Workspace {
        self.workspaces
            .entry(slug.to_owned())
            .or_insert_with(|| Workspace {
                slug: slug.to_owned(),
                uuid: uuid_for(&format!("workspace:{slug}")),
                repos: Vec::new(),
                quirks: ListQuirks::default(),
            })
    }

    /// Bitbucket accepts a workspace's slug or its `{uuid}` wherever it takes `{workspace}`.
    fn workspace(&self, id: &str) -> Option<&Workspace> {
        self.workspaces
            .get(id)
            .or_else(|| self.workspaces.values().find(|w| w.uuid == id))
    }

    /// A new access token (and refresh token) for consumer `key`.
    fn issue(&mut self, key: &str, opts: &ConsumerOpts) -> (String, String) {
        let access = random_token(70);
        let refresh = random_token(18);
        self.tokens.insert(
            access.clone(),
            Token {
                username: opts.username.clone(),
                expires_at: Instant::now() + opts.token_ttl,
            },
        );
        self.refresh_tokens.insert(refresh.clone(), key.to_owned());
        (access, refresh)
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/site/oauth2/access_token", post(token))
        .route("/2.0/repositories/{workspace}", get(list_repos))
        .route("/2.0/repositories/{workspace}/", get(list_repos))
        .merge(git_http::routes(serve_git))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.damage.clone(),
            damage::layer,
        ))
        .with_state(shared)
}

type St = State<Arc<Shared>>;

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Bitbucket's API error document: `{"type": "error", "error": {"message": …}}`.
fn api_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({"type": "error", "error": {"message": message}}),
    )
}

/// The token endpoint's RFC 6749 §5.2 error document; Bitbucket answers these with 400.
fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error_description": description, "error": error}),
    )
}

/// See [`Fault::Padded`].
fn padded(fields: &Value, bytes: usize, declared: bool) -> Response {
    let mut head = fields.to_string();
    assert_eq!(head.pop(), Some('}'), "Padded fields must be a JSON object");
    if head.len() > 1 {
        head.push(',');
    }
    head.push_str(r#""padding":""#);
    let tail = Bytes::from_static(b"\"}");
    let total = head.len() + bytes + tail.len();
    const CHUNK: usize = 64 * 1024;
    let filler = Bytes::from(vec![b'x'; CHUNK]);
    let body = futures::stream::iter(
        std::iter::once(Bytes::from(head))
            .chain(
                (0..bytes.div_ceil(CHUNK))
                    .map(move |i| filler.slice(..CHUNK.min(bytes - i * CHUNK))),
            )
            .chain(std::iter::once(tail))
            .map(Ok::<_, std::io::Error>),
    );
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if declared {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    resp
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_owned(),
    )
        .into_response()
}

async fn not_found(State(s): St, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/2.0/") {
        bump(&s.counters.api_requests);
        // Verbatim from bitbucket.org for an unknown API path (GH sourcebot-dev/sourcebot#295).
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"type": "error", "error": {
                "message": "Resource not found",
                "detail": "There is no API hosted at this URL.\n\nFor information about our API's, please refer to the documentation at: https://developer.atlassian.com/bitbucket/api/2/reference/"
            }}),
        )
    } else {
        text(StatusCode::NOT_FOUND, "Not Found\n")
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `POST /site/oauth2/access_token` (DA/oauth-2): client auth by HTTP Basic, form body.
async fn token(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    bump(&s.counters.token_requests);
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let grant = form.get("grant_type").map(String::as_str);
    match grant {
        Some("client_credentials") => bump(&s.counters.token_client_credentials),
        Some("refresh_token") => bump(&s.counters.token_refresh),
        _ => {}
    }
    if let Some(resp) = s.fault(&[Route::Token], Kind::Api).await {
        return resp;
    }
    // Bitbucket documents only Basic client auth (`curl -u client_id:secret`). Without it the
    // answer is this (GH p2/OAuth2#96); credentials in the form body are not accepted here.
    let Some((key, secret)) = basic_auth(&headers) else {
        return oauth_error(
            "unauthorized_client",
            "Requests must be authenticated using OAuth client credentials",
        );
    };
    let mut inner = s.lock();
    let opts = match inner.consumers.get(&key) {
        Some(c) if c.secret == secret => c.opts.clone(),
        _ => return oauth_error("unauthorized_client", INVALID_CLIENT),
    };
    if !opts.authorised {
        return oauth_error("invalid_request", NO_CALLBACK);
    }
    let (state, refresh) = match grant {
        Some("client_credentials") if opts.public => {
            return oauth_error("invalid_grant", PUBLIC_CONSUMER);
        }
        Some("client_credentials") => ("client_credentials", None),
        Some("refresh_token") => {
            let presented = form.get("refresh_token");
            match presented.filter(|rt| inner.refresh_tokens.get(*rt) == Some(&key)) {
                Some(rt) => ("refresh_token", Some(rt.clone())),
                // Shape documented for other invalid_grant cases; exact text not observed.
                None => return oauth_error("invalid_grant", "Invalid refresh_token"),
            }
        }
        // Verbatim for a missing grant_type (GH buildbot/buildbot#2576).
        other => {
            return oauth_error(
                "invalid_grant",
                &format!("Unsupported grant type: {}", other.unwrap_or("None")),
            );
        }
    };
    // Since 2026-05-04 client credentials get no refresh token (…/t/99003).
    let _ = refresh;
    let (access, _no_refresh) = inner.issue(&key, &opts);
    drop(inner);
    bump(&s.counters.tokens_issued);
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": access,
            // Since 2026-05-04 the field is `scope` (community.developer.atlassian.com/t/99003).
            "scope": opts.scopes,
            // Whole seconds, as Bitbucket sends them; a sub-second TTL in a test reads as 0.
            "expires_in": opts.token_ttl.as_secs(),
            "token_type": "bearer",
            "state": state,
        }),
    )
}

/// `GET /2.0/repositories/{workspace}`: Bitbucket's page-numbered pagination.
async fn list_repos(
    State(s): St,
    UrlPath(workspace): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    bump(&s.counters.api_requests);
    bump(&s.counters.list_requests);
    if let Some(resp) = s.fault(&[Route::List], Kind::Api).await {
        return resp;
    }
    // Stricter than bitbucket.org, which serves anonymous callers the workspace's public
    // repositories: the product always authenticates, so a missing token is a bug worth a loud
    // 401. The message is the emulator's own (no observed text for this case).
    let caller = match s.api_caller(&headers) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let mut rate_headers = Vec::new();
    if let Caller::Access { token, .. } = &caller {
        match s.lock().creds.spend(token) {
            Ok(h) => rate_headers = h,
            Err(()) => {
                bump(&s.counters.rate_limited);
                return text(StatusCode::TOO_MANY_REQUESTS, RATE_LIMIT_BODY);
            }
        }
    }
    let (username, scope) = match caller {
        Caller::OAuth { username } | Caller::Api { username } => (username, None),
        // A token is no user; its clone links carry no `user@` (as for app users).
        Caller::Access { scope, .. } => (String::new(), Some(scope)),
    };
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    // Out-of-range values are refused, not clamped: "Invalid pagelen" (GH
    // jenkinsci/bitbucket-branch-source-plugin#1182, 2026) and "Invalid page" (GH
    // apache/devlake#4539), both 400.
    let pagelen = match param("pagelen").map(|v| v.parse::<u64>()) {
        None => DEFAULT_PAGELEN,
        Some(Ok(n)) if (1..=MAX_PAGELEN).contains(&n) => n,
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "Invalid pagelen"),
    };
    let pagelen = (s.lock().workspace(&workspace))
        .and_then(|w| w.quirks.serve_pagelen)
        .unwrap_or(pagelen);
    let page = match param("page").map(|v| v.parse::<u64>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "Invalid page"),
    };
    let inner = s.lock();
    let Some(ws) = inner.workspace(&workspace) else {
        // The message Bitbucket used when workspaces replaced teams (community.atlassian.com
        // "No workspace with identifier xxx", cited in GH christianspecht/scm-backup#50).
        return api_error(
            StatusCode::NOT_FOUND,
            &format!("No workspace with identifier '{workspace}'."),
        );
    };
    let visible: Vec<&Repo> = (ws.repos.iter())
        .filter(|r| {
            (scope.as_ref()).is_none_or(|sc| sc.sees(&ws.slug, &r.slug, &r.opts.project_key))
        })
        .collect();
    let total = visible.len() as u64;
    let last_page = total.div_ceil(pagelen).max(1);
    if page > last_page {
        return api_error(StatusCode::BAD_REQUEST, "Invalid page");
    }
    let values: Vec<Value> = visible
        .iter()
        .skip(((page - 1) * pagelen) as usize)
        .take(pagelen as usize)
        .map(|r| repo_json(&s.base, ws, r, &username))
        .collect();
    // The links repeat the request's own query with only `page` replaced, as bitbucket.org
    // does (`?pagelen=1&page=2`, GH MunifTanjim/node-bitbucket#10; `?page=2` without pagelen).
    let link = |to: u64| {
        let mut url = url::Url::parse(&s.base).expect("base URL");
        url.path_segments_mut()
            .expect("base URL has a path")
            .extend(["2.0", "repositories", &workspace]);
        url.query_pairs_mut()
            .extend_pairs(params.iter().filter(|(k, _)| k != "page"))
            .append_pair("page", &to.to_string());
        url.to_string()
    };
    let mut body = json!({
        "pagelen": pagelen,
        "size": ws.quirks.size.unwrap_or(total),
        "page": page,
        "values": values,
    });
    let next = match ws.quirks.next_loop {
        Some((on, to)) if on == page => Some(to),
        _ => (page < last_page).then_some(page + 1),
    };
    if let Some(to) = next {
        body["next"] = Value::String(link(to));
    }
    if page > 1 {
        body["previous"] = Value::String(link(page - 1));
    }
    drop(inner);
    let mut inner = s.lock();
    if let Some(ws) = inner.workspaces.get_mut(&workspace)
        && let Some((after, slug)) = ws.quirks.delete_after_page.clone()
        && after == page
    {
        ws.repos.retain(|r| r.slug != slug);
        ws.quirks.delete_after_page = None;
    }
    drop(inner);
    let mut resp = json_response(StatusCode::OK, &body);
    for (name, value) in rate_headers {
        resp.headers_mut()
            .insert(name, HeaderValue::from_str(&value).expect("header value"));
    }
    resp
}

/// One repository as `/2.0/repositories/{workspace}` lists it. Field set and formats follow a
/// captured bitbucket.org answer (GH Speakweb/dashboar `source/test/fixtures/response.ts`),
/// minus `owner`, removed in 2020 (DA bitbucket-api-teams-deprecation).
fn repo_json(base: &str, ws: &Workspace, r: &Repo, username: &str) -> Value {
    let full_name = format!("{}/{}", ws.slug, r.slug);
    let authority = base.trim_start_matches("http://");
    let host = authority.split(':').next().unwrap_or(authority);
    let api = format!("{base}/2.0/repositories/{full_name}");
    let href = |url: String| json!({ "href": url });
    let (clone, mainbranch) = if r.opts.scm == "git" {
        (
            json!([
                {"name": "https", "href": format!("http://{username}@{authority}/{full_name}.git")},
                {"name": "ssh", "href": format!("git@{host}:{full_name}.git")},
            ]),
            r.mainbranch
                .as_ref()
                .map_or(Value::Null, |b| json!({"type": "branch", "name": b})),
        )
    } else {
        (
            json!([
                {"name": "https", "href": format!("http://{username}@{authority}/{full_name}")},
                {"name": "ssh", "href": format!("ssh://hg@{host}/{full_name}")},
            ]),
            json!({"type": "named_branch", "name": "default"}),
        )
    };
    let key = &r.opts.project_key;
    let mut listed = json!({
        "type": "repository",
        "uuid": r.uuid,
        "full_name": full_name,
        "name": r.opts.name.as_deref().unwrap_or(&r.slug),
        "slug": r.slug,
        "scm": r.opts.scm,
        "is_private": r.opts.is_private,
        "size": r.size,
        "created_on": r.created_on,
        "updated_on": r.updated_on,
        "language": r.opts.language,
        "description": r.opts.description,
        "website": "",
        "fork_policy": if r.opts.is_private { "no_public_forks" } else { "allow_forks" },
        "has_issues": false,
        "has_wiki": false,
        "mainbranch": mainbranch,
        "workspace": {
            "type": "workspace",
            "uuid": ws.uuid,
            "name": ws.slug,
            "slug": ws.slug,
            "links": {
                "self": href(format!("{base}/2.0/workspaces/{}", ws.slug)),
                "html": href(format!("{base}/{}/", ws.slug)),
                "avatar": href(format!("{base}/workspaces/{}/avatar/", ws.slug)),
            },
        },
        "project": {
            "type": "project",
            "key": key,
            "uuid": uuid_for(&format!("project:{}/{key}", ws.slug)),
            "name": format!("Project {key}"),
            "links": {
                "self": href(format!("{base}/2.0/workspaces/{}/projects/{key}", ws.slug)),
                "html": href(format!("{base}/{}/workspace/projects/{key}", ws.slug)),
                "avatar": href(format!("{base}/account/user/{}/projects/{key}/avatar/32", ws.slug)),
            },
        },
        "links": {
            "self": href(api.clone()),
            "html": href(format!("{base}/{full_name}")),
            "avatar": href(format!("{base}/{full_name}/avatar/32/")),
            "pullrequests": href(format!("{api}/pullrequests")),
            "commits": href(format!("{api}/commits")),
            "forks": href(format!("{api}/forks")),
            "watchers": href(format!("{api}/watchers")),
            "branches": href(format!("{api}/refs/branches")),
            "tags": href(format!("{api}/refs/tags")),
            "downloads": href(format!("{api}/downloads")),
            "source": href(format!("{api}/src")),
            "hooks": href(format!("{api}/hooks")),
            "clone": clone,
        },
    });
    if let Some(patch) = &r.opts.patch {
        merge(&mut listed, patch);
    }
    listed
}

// ---------------------------------------------------------------------------------------------
// Git smart HTTP: Bitbucket's authentication and faults in front of [`GitHttp`].

async fn serve_git(s: Arc<Shared>, req: GitRequest) -> Response {
    let guard = s.git.begin(&req);
    let (workspace, slug) = (req.owner.clone(), req.slug.clone());
    let routes = [Route::repo(&workspace, &slug), Route::Git];
    if let Some(resp) = s.fault(&routes, Kind::Git).await {
        return resp;
    }
    let push_target = s
        .lock()
        .push_targets
        .get(&(workspace.clone(), slug.clone()))
        .cloned();
    if let Some((user, password)) = push_target {
        // A push target: Basic `user:password` or 401, then `git-receive-pack` only.
        if req
            .basic_auth()
            .is_none_or(|(u, p)| u != user || p != password)
        {
            return git_unauthorized(&s);
        }
        if !req.is_push() {
            return s.error(Kind::Git, StatusCode::FORBIDDEN);
        }
        bump(&s.counters.push_requests);
        return s.git.serve(req, guard).await;
    }
    // OAuth tokens go over git as Basic `x-token-auth:<token>` only (NOTES §1); access and
    // API tokens as `tokens` says.
    let authorised = match req.basic_auth() {
        Some((user, token)) => {
            (user == GIT_TOKEN_USER && matches!(s.check_token(&token), Auth::Valid { .. }))
                || s.git_token_authorised(&workspace, &slug, &user, &token)
        }
        None => false,
    };
    if !authorised {
        return git_unauthorized(&s);
    }
    // Read-only for listed repositories: no push, and no dumb-HTTP fallback (bitbucket.org
    // has neither for an OAuth read token).
    if !req.is_fetch() {
        return s.error(Kind::Git, StatusCode::FORBIDDEN);
    }
    let failed = {
        let inner = s.lock();
        let exists = inner.workspaces.get(&workspace).is_some_and(|w| {
            w.repos
                .iter()
                .any(|r| r.slug == slug && r.opts.scm == "git")
        });
        if !exists {
            return text(StatusCode::NOT_FOUND, "Repository not found\n");
        }
        inner
            .failed_repos
            .get(&(workspace.clone(), slug.clone()))
            .copied()
    };
    if let Some(code) = failed {
        return s.error(
            Kind::Git,
            StatusCode::from_u16(code).expect("valid HTTP status"),
        );
    }
    let trickle = s
        .lock()
        .trickled_repos
        .get(&(workspace.clone(), slug.clone()))
        .copied()
        .filter(|(_, refs_too)| {
            matches!(req.endpoint, git_http::Endpoint::UploadPack) || *refs_too
        });
    let resp = s.git.serve(req, guard).await;
    match trickle {
        Some((bytes_per_sec, _)) => trickled(resp, bytes_per_sec),
        None => resp,
    }
}

/// `resp` with its body sent a few bytes every quarter second, or one byte a second and
/// slower (see [`Emulator::trickle_repo`]).
fn trickled(resp: Response, bytes_per_sec: usize) -> Response {
    let bytes_per_sec = bytes_per_sec.max(1);
    let (step, every) = match bytes_per_sec {
        n if n >= 4 => (n / 4, Duration::from_millis(250)),
        n => (1, Duration::from_millis(1000 / n as u64)),
    };
    let (parts, body) = resp.into_parts();
    let stream = futures::stream::unfold(
        (body.into_data_stream(), Bytes::new()),
        move |(mut inner, mut pending)| async move {
            while pending.is_empty() {
                match inner.next().await? {
                    Ok(chunk) => pending = chunk,
                    Err(e) => return Some((Err(std::io::Error::other(e)), (inner, pending))),
                }
            }
            tokio::time::sleep(every).await;
            let piece = pending.split_to(step.min(pending.len()));
            Some((Ok(piece), (inner, pending)))
        },
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// A git 401 with Bitbucket's Basic challenge (git sends credentials only after one), counted.
fn git_unauthorized(s: &Shared) -> Response {
    bump(&s.counters.unauthorized);
    let mut resp = text(StatusCode::UNAUTHORIZED, GIT_DENIED);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(GIT_REALM),
    );
    resp
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Bytes on disk under `path` (Bitbucket's `size` is the repository's size in bytes).
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// A stable `{xxxxxxxx-xxxx-4xxx-xxxx-xxxxxxxxxxxx}` for a name, so answers are reproducible.
fn uuid_for(name: &str) -> String {
    let fnv = |salt: u64| {
        name.bytes().fold(0xcbf2_9ce4_8422_2325 ^ salt, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let (a, b) = (fnv(1), fnv(2));
    format!(
        "{{{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}}}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Bitbucket's timestamp format, microseconds and `+00:00` included
/// (`2013-08-13T19:29:41.479355+00:00`): repository `n` is created a day and a bit after
/// repository `n - 1`, starting 2019-03-07.
fn timestamp(n: u64, offset_micros: i64) -> String {
    const START: i64 = 1_551_962_102_900_024;
    let micros = START + n as i64 * 86_400_123_457 + offset_micros;
    chrono::DateTime::from_timestamp_micros(micros)
        .expect("timestamp in range")
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

/// An opaque token of `bytes` random bytes in standard base64: like Bitbucket's, it may contain
/// `+`, `/` and `=`, which a client must not paste into URLs unescaped.
fn random_token(bytes: usize) -> String {
    let state = RandomState::new();
    let mut raw = Vec::with_capacity(bytes + 8);
    let mut i = 0u64;
    while raw.len() < bytes {
        raw.extend_from_slice(&state.hash_one(i).to_le_bytes());
        i += 1;
    }
    raw.truncate(bytes);
    BASE64.encode(raw)
}
