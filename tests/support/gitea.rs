//! A Gitea / Forgejo server for the `gitea` provider: the REST API under `/api/v1` as Gitea's
//! source behaves (NOTES §7) and real git smart HTTP through [`super::git_http`].
//!
//! What it is faithful to, and where from:
//! - **Auth** (`modules/auth/httpauth`, `services/auth`): `Authorization: token <t>` or
//!   `Bearer <t>` (scheme case-insensitive), or Basic with the token as password. No header is
//!   an anonymous caller, who sees public repositories only. An unknown or revoked token is 401
//!   `{"message":"token is required","url":…}` (the API's `reqToken`); a token without the
//!   route's scope category is 403 `token does not have at least one of required scope(s):
//!   [read:organization]` (Gitea ≥ 1.19 scoped tokens). `?token=` / `?access_token=` (deprecated,
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
use std::future::IntoFuture;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::git_http::{self, GitHttp, GitRequest, basic_auth, bump, head_branch};
use super::github::{dir_kb, random_hex};

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
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            base: format!("http://127.0.0.1:{port}"),
            git: GitHttp::new(root.path(), "gitea-emulator"),
            inner: Mutex::new(Inner {
                max_items: MAX_RESPONSE_ITEMS,
                ..Inner::default()
            }),
            counters: Counters::default(),
        });
        let app = router(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("gitea-emulator".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        res = axum::serve(listener, app).into_future() => res.expect("emulator server"),
                        _ = rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .expect("spawn emulator thread");
        Emulator {
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
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

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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

/// Who is calling the API: `None` is anonymous.
type Caller = Option<(String, Vec<String>)>;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fault(&self, route: Route) -> Option<Response> {
        let fault = self
            .lock()
            .faults
            .get_mut(&route)
            .and_then(VecDeque::pop_front)?;
        match fault {
            Fault::RateLimit { retry_after } => {
                bump(&self.counters.rate_limited);
                let mut resp =
                    (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response();
                if let Some(secs) = retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                Some(resp)
            }
            Fault::Status(code) => Some(
                (
                    StatusCode::from_u16(code).expect("valid status"),
                    "emulated failure\n",
                )
                    .into_response(),
            ),
            Fault::RevokeTokens => {
                for t in self.lock().tokens.values_mut() {
                    t.revoked = true;
                }
                None
            }
        }
    }

    fn swagger(&self) -> String {
        format!("{}/api/swagger", self.base)
    }

    /// Gitea's `APIError` document.
    fn error(&self, status: StatusCode, message: &str) -> Response {
        json_response(status, &json!({"message": message, "url": self.swagger()}))
    }

    fn not_found(&self) -> Response {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"errors": null, "message": "The target couldn't be found.", "url": self.swagger()}),
        )
    }

    /// The caller of an API request, or the 401 Gitea answers.
    fn caller(&self, query: &str, headers: &HeaderMap) -> Result<Caller, Box<Response>> {
        let refused = || {
            bump(&self.counters.unauthorized);
            Box::new(self.error(StatusCode::UNAUTHORIZED, "token is required"))
        };
        if url::form_urlencoded::parse(query.as_bytes())
            .any(|(k, _)| k == "token" || k == "access_token")
        {
            bump(&self.counters.query_tokens);
            return Err(refused());
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value.to_str().unwrap_or_default();
        let token = match value.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("token") => {
                bump(&self.counters.token_scheme);
                t.trim().to_owned()
            }
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim().to_owned(),
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("basic") => {
                basic_auth(headers).map(|(_, p)| p).unwrap_or_default()
            }
            _ => return Err(refused()),
        };
        let inner = self.lock();
        match inner.live(&token) {
            Some(t) => Ok(Some((t.user.clone(), t.scopes.clone()))),
            None => Err(refused()),
        }
    }

    /// 403 unless `caller` (when authenticated) has `scope`; anonymous callers pass (they see
    /// public data only).
    fn require(&self, caller: &Caller, scope: &str) -> Result<(), Box<Response>> {
        match caller {
            Some((_, scopes)) if !scopes.iter().any(|s| s == scope || write_of(s, scope)) => {
                Err(Box::new(self.error(
                    StatusCode::FORBIDDEN,
                    &format!("token does not have at least one of required scope(s): [{scope}]"),
                )))
            }
            _ => Ok(()),
        }
    }
}

/// `write:x` includes `read:x`.
fn write_of(have: &str, want: &str) -> bool {
    want.strip_prefix("read:")
        .is_some_and(|cat| have.strip_prefix("write:") == Some(cat))
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/user", get(get_self))
        .route("/orgs/{org}/repos", get(org_repos))
        .route("/users/{user}/repos", get(user_repos))
        .fallback(api_not_found);
    Router::new()
        .nest("/api/v1", api)
        .merge(git_http::routes(serve_git))
        .with_state(shared)
}

type St = State<Arc<Shared>>;

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn api_not_found(State(s): St) -> Response {
    bump(&s.counters.api_requests);
    s.not_found()
}

async fn get_self(State(s): St, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    bump(&s.counters.api_requests);
    if let Some(resp) = s.fault(Route::User) {
        return resp;
    }
    let caller = match s.caller(&q.unwrap_or_default(), &headers) {
        Ok(Some(c)) => Some(c),
        Ok(None) => {
            bump(&s.counters.unauthorized);
            return s.error(StatusCode::UNAUTHORIZED, "token is required");
        }
        Err(r) => return *r,
    };
    if let Err(r) = s.require(&caller, "read:user") {
        return *r;
    }
    let user = caller.expect("authenticated").0;
    let inner = s.lock();
    let account = inner.account(&user).expect("token users exist");
    json_response(
        StatusCode::OK,
        &json!({"id": account.id, "login": account.name, "full_name": "", "email": format!("{}@noreply.localhost", account.name)}),
    )
}

async fn org_repos(
    State(s): St,
    UrlPath(org): UrlPath<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(&s, &org, true, q.unwrap_or_default(), &headers)
}

async fn user_repos(
    State(s): St,
    UrlPath(user): UrlPath<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(&s, &user, false, q.unwrap_or_default(), &headers)
}

fn list(s: &Shared, owner: &str, org: bool, query: String, headers: &HeaderMap) -> Response {
    bump(&s.counters.api_requests);
    bump(&s.counters.list_requests);
    if let Some(resp) = s.fault(Route::List) {
        return resp;
    }
    let caller = match s.caller(&query, headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let scope = if org {
        "read:organization"
    } else {
        "read:user"
    };
    if let Err(r) = s
        .require(&caller, scope)
        .and_then(|()| s.require(&caller, "read:repository"))
    {
        return *r;
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |n: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.parse::<i64>().ok())
    };
    let inner = s.lock();
    // `GetListOptions` + `ToCorrectPageSize`: ≤0 is the default, above the maximum is clamped.
    let limit = match param("limit").unwrap_or(0) {
        n if n <= 0 => DEFAULT_PAGING_NUM,
        n => (n as usize).min(inner.max_items),
    };
    let page = param("page").unwrap_or(1).max(1) as usize;
    let Some(account) = inner.account(owner) else {
        return s.not_found();
    };
    if org && !account.org {
        return s.not_found();
    }
    // The database query: public repositories for an anonymous caller, all for a member.
    let in_db: Vec<&Repo> = account
        .repos
        .iter()
        .filter(|r| caller.is_some() || !r.opts.private)
        .collect();
    let total = in_db.len();
    let values: Vec<Value> = in_db
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .filter(|r| !r.opts.unreadable)
        .map(|r| repo_json(&s.base, account, r))
        .collect();
    let last = total.div_ceil(limit).max(1);
    let kind = if org { "orgs" } else { "users" };
    let link = |to: usize| {
        let mut url =
            url::Url::parse(&format!("{}/api/v1/{kind}/{}/repos", s.base, account.name)).unwrap();
        url.query_pairs_mut()
            .extend_pairs(params.iter().filter(|(k, _)| k != "page" && k != "limit"))
            .append_pair("limit", &limit.to_string())
            .append_pair("page", &to.to_string());
        url.to_string()
    };
    let mut links = Vec::new();
    if page < last {
        let next = match (
            page,
            inner.foreign_next.get(&account.name.to_ascii_lowercase()),
        ) {
            (1, Some(foreign)) => foreign.clone(),
            _ => link(page + 1),
        };
        links.push(format!("<{next}>; rel=\"next\""));
        links.push(format!("<{}>; rel=\"last\"", link(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", link(1)));
        links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
    }
    let mut resp = json_response(StatusCode::OK, &Value::Array(values));
    drop(inner);
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if !links.is_empty() {
        h.insert(
            header::LINK,
            HeaderValue::from_str(&links.join(",")).unwrap(),
        );
    }
    resp
}

/// One repository as Gitea's `convert.ToRepo` renders it (the fields a client reads).
fn repo_json(base: &str, account: &Account, r: &Repo) -> Value {
    let full_name = format!("{}/{}", account.name, r.name);
    let stamp = chrono::DateTime::from_timestamp(1_700_000_000 + (r.id * 86_400) as i64, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut v = json!({
        "id": r.id,
        "owner": {"id": account.id, "login": account.name, "username": account.name},
        "name": r.name,
        "full_name": full_name,
        "description": "",
        "empty": r.empty,
        "private": r.opts.private,
        "fork": r.opts.fork,
        "template": false,
        "mirror": r.opts.mirror,
        "archived": r.opts.archived,
        "size": r.size_kib,
        "html_url": format!("{base}/{full_name}"),
        "ssh_url": format!("ssh://git@127.0.0.1:2222/{full_name}.git"),
        "clone_url": format!("{base}/{full_name}.git"),
        "default_branch": r.default_branch,
        "created_at": stamp,
        "updated_at": stamp,
        "permissions": {"admin": false, "push": false, "pull": true},
    });
    if let Some(patch) = &r.opts.patch {
        merge(&mut v, patch);
    }
    v
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Git: Basic with a live token as the password (any user name), or the token as the user name
/// with an empty or `x-oauth-basic` password; read-only.
async fn serve_git(s: Arc<Shared>, req: GitRequest) -> Response {
    let guard = s.git.begin(&req);
    if let Some(resp) = s.fault(Route::Git) {
        return resp;
    }
    let allowed = match req.basic_auth() {
        Some((user, pass)) => {
            let mut inner = s.lock();
            inner.git_users.push(user.clone());
            inner.live(&pass).is_some()
                || ((pass.is_empty() || pass == "x-oauth-basic") && inner.live(&user).is_some())
        }
        None => false,
    };
    if !allowed {
        bump(&s.counters.unauthorized);
        let mut resp = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="Gitea""#),
        );
        return resp;
    }
    if !req.is_fetch() {
        return (StatusCode::FORBIDDEN, "User permission denied\n").into_response();
    }
    let readable = s.lock().account(&req.owner).is_some_and(|a| {
        a.repos
            .iter()
            .any(|r| r.name == req.slug && !r.opts.unreadable)
    });
    if !readable {
        return (StatusCode::NOT_FOUND, "Repository not found\n").into_response();
    }
    s.git.serve(req, guard).await
}
