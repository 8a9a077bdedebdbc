//! A GitLab emulator (REST under `/api/v4`, git smart HTTP at the root, as gitlab.com and a
//! self-managed instance serve them) on one loopback port, with scripted faults and counters.
//!
//! Built from GitLab's public docs (NOTES §6, `gitlabhq/gitlabhq:doc/api/groups.md`,
//! `doc/api/rest/_index.md`, `doc/api/personal_access_tokens.md`,
//! `doc/administration/settings/user_and_ip_rate_limits.md`):
//! - tokens go in `PRIVATE-TOKEN` (or `Authorization: Bearer`); a missing or unknown one is
//!   `401 {"message":"401 Unauthorized"}`, an expired one `401 {"error":"invalid_token",
//!   "error_description":"Token is expired…"}`;
//! - `GET /groups/:id/projects`, `:id` a numeric id or the URL-encoded full path;
//!   `include_subgroups` defaults to false and `with_shared` to true (projects shared into the
//!   group are listed unless `with_shared=false`); an unknown group is
//!   `404 {"message":"404 Group Not Found"}`;
//! - offset pagination: `page` (default 1), `per_page` (default 20, max 100), `Link` with
//!   prev/next/first/last and the `x-page`, `x-per-page`, `x-next-page`, `x-prev-page`,
//!   `x-total`, `x-total-pages` headers;
//! - every answer carries `RateLimit-Limit/-Name/-Observed/-Remaining/-Reset` (Reset a Unix
//!   time); a throttled request is `429` with plain-text `Retry later`, `Retry-After` and
//!   `RateLimit-ResetTime`, and an application limit is a 429 with no header at all;
//! - git over HTTPS takes Basic auth with any non-blank user and the token as password; the
//!   repository of `group/sub/project` is at `/group/sub/project.git`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::emulated::random_hex;
use super::git_http::{Endpoint, GitHttp, GitRequest, bump, head_branch};
use super::server::{Bound, Server};

mod projects;
use self::projects::group_projects;

const DEFAULT_PER_PAGE: usize = 20;
const MAX_PER_PAGE: usize = 100;
/// gitlab.com's `throttle_authenticated_api` per minute (NOTES §6, observed).
const RATE_LIMIT: u64 = 2000;
pub const EXPIRED: &str = "Token is expired. You can either do re-authorization or token refresh.";
pub const RETRY_LATER: &str = "Retry later\n";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /groups/:id/projects`.
    List,
    /// Any git smart-HTTP request.
    Git,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 `Retry later`: with `Retry-After` and the `RateLimit-*` headers when `Some`, with no
    /// header at all (an application limit) when `None`.
    RateLimit {
        retry_after: Option<u64>,
    },
    Status(u16),
}

/// Who a token belongs to, as `GET /user` and `GET /personal_access_tokens/self` show it.
#[derive(Debug, Clone)]
pub struct TokenOpts {
    pub username: String,
    pub bot: bool,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
}

impl TokenOpts {
    /// A group access token's bot user, as GitLab names it (`group_{id}_bot_{hex}`).
    pub fn group_bot(group_id: u64) -> Self {
        Self {
            username: format!("group_{group_id}_bot_5e1f0c2a"),
            bot: true,
            scopes: vec!["read_api".into(), "read_repository".into()],
            expires_at: Some("2027-11-30".into()),
        }
    }

    pub fn person(username: &str) -> Self {
        Self {
            username: username.into(),
            bot: false,
            scopes: vec!["read_api".into(), "read_repository".into()],
            expires_at: Some("2027-01-31".into()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub api_requests: u64,
    pub list_requests: u64,
    pub rate_limited: u64,
    pub unauthorized: u64,
    pub git_requests: u64,
}

pub struct Emulator {
    shared: Arc<Shared>,
    _served: Server,
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
}

#[derive(Default)]
struct Inner {
    /// Full path → group.
    groups: BTreeMap<String, Group>,
    projects: Vec<Project>,
    tokens: HashMap<String, Token>,
    faults: HashMap<Route, VecDeque<Fault>>,
    /// Every Basic `(user, password)` a git request carried.
    git_credentials: Vec<(String, String)>,
    /// Every `(method, path?query)` of the API, in order.
    requests: Vec<String>,
    seq: u64,
}

struct Group {
    id: u64,
    /// Projects of other groups shared into this one.
    shared: Vec<u64>,
}

struct Project {
    id: u64,
    /// The group's full path (`acme/team`).
    namespace: String,
    path: String,
    empty: bool,
    default_branch: String,
}

struct Token {
    opts: TokenOpts,
    expired: bool,
}

impl Emulator {
    pub fn start_blocking() -> Emulator {
        let root = tempfile::Builder::new()
            .prefix("gitlab-emulator-")
            .tempdir()
            .expect("emulator root");
        let bound = Bound::new();
        let shared = Arc::new(Shared {
            base: bound.base(),
            git: GitHttp::new(root.path(), "gitlab-emulator"),
            inner: Mutex::default(),
            counters: Counters::default(),
        });
        let served = bound.serve("gitlab-emulator", router(shared.clone()));
        Emulator {
            shared,
            _served: served,
            _root: root,
        }
    }

    /// `http://127.0.0.1:PORT`: the instance URL (`--gitlab-url`) and the git host.
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// A group at `full_path` (`acme`, or `acme/team` for a subgroup, whose parents are
    /// created too); its id.
    pub fn add_group(&self, full_path: &str) -> u64 {
        let mut inner = self.shared.lock();
        let mut path = String::new();
        let mut id = 0;
        for segment in full_path.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(segment);
            if let Some(g) = inner.groups.get(&path) {
                id = g.id;
                continue;
            }
            id = inner.next_seq();
            inner.groups.insert(
                path.clone(),
                Group {
                    id,
                    shared: Vec::new(),
                },
            );
        }
        id
    }

    /// Lists `source` (a bare repository, served in place) as `namespace/path`, creating the
    /// group (and its parents) if needed; the project's id.
    pub fn add_project(&self, namespace: &str, path: &str, source: &Path) -> u64 {
        self.add_group(namespace);
        let source = self.shared.git.link_repo(namespace, path, source);
        let branch = head_branch(&source);
        let mut inner = self.shared.lock();
        let id = inner.next_seq();
        inner.projects.push(Project {
            id,
            namespace: namespace.into(),
            path: path.into(),
            empty: branch.is_none(),
            default_branch: branch.unwrap_or_else(|| "main".into()),
        });
        id
    }

    /// Shares project `id` into `group` (GitLab: "Share a project with a group").
    pub fn share(&self, id: u64, group: &str) {
        let mut inner = self.shared.lock();
        inner
            .groups
            .get_mut(group)
            .expect("group exists")
            .shared
            .push(id);
    }

    pub fn add_token(&self, opts: TokenOpts) -> String {
        let token = format!("glpat-{}", random_hex(20));
        self.shared.lock().tokens.insert(
            token.clone(),
            Token {
                opts,
                expired: false,
            },
        );
        token
    }

    /// Every token issued so far has expired (a group token reaching its expiry date).
    pub fn expire_tokens(&self) {
        for t in self.shared.lock().tokens.values_mut() {
            t.expired = true;
        }
    }

    pub fn push_fault(&self, route: Route, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(route)
            .or_default()
            .push_back(fault);
    }

    pub fn git_credentials(&self) -> Vec<(String, String)> {
        self.shared.lock().git_credentials.clone()
    }

    /// Every API request as `path?query`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            api_requests: get(&c.api_requests),
            list_requests: get(&c.list_requests),
            rate_limited: get(&c.rate_limited),
            unauthorized: get(&c.unauthorized),
            git_requests: self.shared.git.stats().requests,
        }
    }
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

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
        Some(match fault {
            Fault::RateLimit { retry_after } => {
                bump(&self.counters.rate_limited);
                let mut resp = (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::CONTENT_TYPE, "text/plain")],
                    RETRY_LATER,
                )
                    .into_response();
                if let Some(secs) = retry_after {
                    let reset = unix_now() + secs as i64;
                    let h = resp.headers_mut();
                    rate_limit_headers(h, 0);
                    h.insert("ratelimit-reset", HeaderValue::from(reset));
                    let at = chrono::DateTime::from_timestamp(reset, 0)
                        .unwrap()
                        .format("%a, %d %b %Y %H:%M:%S GMT")
                        .to_string();
                    h.insert("ratelimit-resettime", HeaderValue::from_str(&at).unwrap());
                    h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                resp
            }
            Fault::Status(code) => error(
                StatusCode::from_u16(code).expect("valid status"),
                &format!("{code} Internal Server Error"),
            ),
        })
    }

    /// The token of an API request: `PRIVATE-TOKEN`, else `Authorization: Bearer`.
    fn check_token(&self, headers: &HeaderMap) -> Result<TokenOpts, Box<Response>> {
        let token = headers
            .get("private-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
                v.strip_prefix("Bearer ").map(str::to_owned)
            });
        let inner = self.lock();
        let refused = |body: Value| {
            bump(&self.counters.unauthorized);
            Err(Box::new(json_response(StatusCode::UNAUTHORIZED, &body)))
        };
        match token.and_then(|t| inner.tokens.get(&t)) {
            Some(t) if t.expired => {
                refused(json!({"error": "invalid_token", "error_description": EXPIRED}))
            }
            Some(t) => Ok(t.opts.clone()),
            None => refused(json!({"message": "401 Unauthorized"})),
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/groups/{id}/projects", get(group_projects))
        .route("/user", get(get_user))
        .route("/personal_access_tokens/self", get(token_self))
        .fallback(not_found);
    Router::new()
        .nest("/api/v4", api)
        .route("/{*path}", get(serve_git).post(serve_git))
        .with_state(shared)
}

type St = State<Arc<Shared>>;

fn rate_limit_headers(h: &mut HeaderMap, remaining: u64) {
    h.insert(
        "ratelimit-name",
        HeaderValue::from_static("throttle_authenticated_api"),
    );
    h.insert("ratelimit-limit", HeaderValue::from(RATE_LIMIT));
    h.insert(
        "ratelimit-observed",
        HeaderValue::from(RATE_LIMIT - remaining),
    );
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(unix_now() + 60));
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    rate_limit_headers(resp.headers_mut(), RATE_LIMIT - 1);
    resp
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "message": message }))
}

fn record(s: &Shared, path: &str, query: &Option<String>) {
    bump(&s.counters.api_requests);
    let line = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    s.lock().requests.push(line);
}

async fn not_found(State(s): St) -> Response {
    bump(&s.counters.api_requests);
    error(StatusCode::NOT_FOUND, "404 Not Found")
}

async fn get_user(State(s): St, headers: HeaderMap) -> Response {
    record(&s, "/user", &None);
    match s.check_token(&headers) {
        Ok(t) => json_response(
            StatusCode::OK,
            &json!({"id": 99, "username": t.username, "name": t.username, "state": "active",
                    "bot": t.bot, "web_url": format!("{}/{}", s.base, t.username)}),
        ),
        Err(r) => *r,
    }
}

async fn token_self(State(s): St, headers: HeaderMap) -> Response {
    record(&s, "/personal_access_tokens/self", &None);
    match s.check_token(&headers) {
        Ok(t) => json_response(
            StatusCode::OK,
            &json!({"id": 4, "name": "git-offsite", "revoked": false, "active": true,
                    "created_at": "2026-11-30T10:00:00.000Z", "scopes": t.scopes,
                    "user_id": 99, "expires_at": t.expires_at}),
        ),
        Err(r) => *r,
    }
}

/// Git: `/<namespace…>/<project>(.git)/<endpoint>`, Basic auth with any non-blank user and a
/// live token; read-only.
async fn serve_git(
    State(s): St,
    UrlPath(path): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (repo, endpoint) = match path.rsplit_once('/') {
        Some((repo, "git-upload-pack")) => (repo, Endpoint::UploadPack),
        Some((repo, "git-receive-pack")) => (repo, Endpoint::ReceivePack),
        Some((repo, "refs")) => match repo.strip_suffix("/info") {
            Some(repo) => (repo, Endpoint::InfoRefs),
            None => return (StatusCode::NOT_FOUND, "Not Found\n").into_response(),
        },
        _ => return (StatusCode::NOT_FOUND, "Not Found\n").into_response(),
    };
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    let Some((namespace, slug)) = repo.rsplit_once('/') else {
        return (StatusCode::NOT_FOUND, "Not Found\n").into_response();
    };
    let req = GitRequest {
        owner: namespace.to_owned(),
        slug: slug.to_owned(),
        endpoint,
        query: query.unwrap_or_default(),
        headers,
        body: (endpoint != Endpoint::InfoRefs).then_some(body),
    };
    let guard = s.git.begin(&req);
    if let Some(resp) = s.fault(Route::Git) {
        return resp;
    }
    let sent = req.basic_auth();
    let allowed = {
        let mut inner = s.lock();
        if let Some(c) = &sent {
            inner.git_credentials.push(c.clone());
        }
        sent.as_ref().is_some_and(|(user, token)| {
            !user.trim().is_empty() && inner.tokens.get(token).is_some_and(|t| !t.expired)
        })
    };
    if !allowed {
        bump(&s.counters.unauthorized);
        let mut resp = (StatusCode::UNAUTHORIZED, "HTTP Basic: Access denied\n").into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="GitLab""#),
        );
        return resp;
    }
    if !req.is_fetch() {
        return (
            StatusCode::FORBIDDEN,
            "You are not allowed to push code to this project.\n",
        )
            .into_response();
    }
    let exists = s
        .lock()
        .projects
        .iter()
        .any(|p| p.namespace == req.owner && p.path == req.slug);
    if !exists {
        return (
            StatusCode::NOT_FOUND,
            "The project you were looking for could not be found.\n",
        )
            .into_response();
    }
    s.git.serve(req, guard).await
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
