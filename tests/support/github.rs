//! A GitHub emulator (REST under `/api/v3`, as GitHub Enterprise Server serves it, git smart
//! HTTP at the root) on one loopback port, with scripted faults and counters for assertions.
//!
//! Built from GitHub's public REST docs (NOTES §5): Apps authenticate with an RS256 JWT
//! checked against the app's public key (`iat`/`exp` rules and the error texts GitHub answers),
//! installations are found per owner, installation tokens expire (a knob makes them expire
//! early), listings page with the `Link` header (`per_page` default 30, max 100, header
//! omitted on a single page), every answer carries `x-ratelimit-*`, and the primary (403 with
//! `x-ratelimit-remaining: 0`) and secondary (403/429, with or without `retry-after`) limits
//! are scripted faults. Git goes through [`super::git_http`] and takes only HTTP Basic
//! `x-access-token:<token>`.
//!
//! Why `/api/v3`: the provider derives the git host from the API URL the way it does for a GHES
//! server (same scheme, host and port), so every test exercises that derivation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::emulated::{dir_kb, merge, random_hex};
use super::git_http::{self, GitHttp, GitRequest, bump, head_branch};
use super::server;

/// Installation tokens "expire one hour from the time you create them" (GitHub docs).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// `per_page` default and maximum (docs: using pagination in the REST API).
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 100;
/// A JWT's `exp` may be at most this far ahead (docs: generating a JWT for a GitHub App).
const MAX_JWT_LIFETIME: i64 = 600;
pub const GIT_TOKEN_USER: &str = "x-access-token";
const DOCS: &str = "https://docs.github.com/rest";
/// GitHub's 401 texts: github/docs#33989, octokit/auth-app.js#698, sigmavirus24/github3.py#1050.
pub const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
pub const JWT_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
pub const JWT_EXPIRED: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
pub const JWT_IAT_FUTURE: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
pub const BAD_CREDENTIALS: &str = "Bad credentials";
pub const SECONDARY_LIMIT: &str =
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

/// An RSA key pair made once per test process with `openssl` (never committed): a test key.
pub struct TestKey {
    pub private_pem: String,
    pub public_pem: String,
}

pub fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(make_key)
}

/// A second pair, for "a key that is not the app's".
pub fn other_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(make_key)
}

fn make_key() -> TestKey {
    let dir = tempfile::tempdir().expect("key dir");
    let private = dir.path().join("app.pem");
    let public = dir.path().join("app.pub.pem");
    let p = private.to_str().unwrap();
    // `-traditional`: PKCS#1 `BEGIN RSA PRIVATE KEY`, the form GitHub hands out.
    for args in [
        vec!["genrsa", "-traditional", "-out", p, "2048"],
        vec!["rsa", "-in", p, "-pubout", "-out", public.to_str().unwrap()],
    ] {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    TestKey {
        private_pem: std::fs::read_to_string(&private).unwrap(),
        public_pem: std::fs::read_to_string(&public).unwrap(),
    }
}

/// Writes the test key's private half to `dir/name` (mode 0600) and returns the path.
pub fn write_private_key(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, &test_key().private_pem).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[derive(Debug, Clone, Default)]
pub struct RepoOpts {
    pub fork: bool,
    pub archived: bool,
    /// Public repositories are the only ones `/users/{u}/repos` shows.
    pub public: bool,
    /// Fields merged over the listed JSON (a hostile or broken answer).
    pub patch: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /app/installations/{id}/access_tokens`.
    Token,
    /// Any repository listing.
    List,
    /// Any git smart-HTTP request.
    Git,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with the secondary-limit message, with or without `retry-after`.
    RateLimit {
        retry_after: Option<u64>,
    },
    /// 403 with `x-ratelimit-remaining: 0` and a reset `reset_in` seconds ahead.
    PrimaryLimit {
        reset_in: u64,
    },
    /// 403 with the secondary-limit message, with or without `retry-after`.
    SecondaryLimit {
        retry_after: Option<u64>,
    },
    Status(u16),
    /// Expires every token issued so far, then serves the request (so it fails 401).
    ExpireTokens,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub api_requests: u64,
    pub list_requests: u64,
    pub installation_lookups: u64,
    pub tokens_issued: u64,
    pub jwt_refused: u64,
    pub rate_limited: u64,
    pub unauthorized: u64,
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
    installation_lookups: AtomicU64,
    tokens_issued: AtomicU64,
    jwt_refused: AtomicU64,
    rate_limited: AtomicU64,
    unauthorized: AtomicU64,
}

struct Inner {
    /// App id → public key (PEM).
    apps: HashMap<String, String>,
    /// Installation id → (app id, account login).
    installations: BTreeMap<u64, (String, String)>,
    accounts: BTreeMap<String, Account>,
    tokens: HashMap<String, Token>,
    faults: HashMap<Route, VecDeque<Fault>>,
    token_ttl: Duration,
    /// Claims of every JWT presented, in order.
    jwts: Vec<Value>,
    /// Owner → a `Link` next URL served on its first page instead of the real one.
    foreign_next: HashMap<String, String>,
    seq: u64,
}

struct Account {
    login: String,
    id: u64,
    org: bool,
    repos: Vec<Repo>,
}

struct Repo {
    name: String,
    id: u64,
    default_branch: String,
    size_kb: u64,
    opts: RepoOpts,
}

struct Token {
    /// `Some(id)`: an installation token; `None`: a personal token of `user`.
    installation: Option<u64>,
    user: String,
    expires_at: Instant,
}

impl Emulator {
    pub fn start_blocking() -> Emulator {
        let root = tempfile::Builder::new()
            .prefix("github-emulator-")
            .tempdir()
            .expect("emulator root");
        let bound = server::Bound::new();
        let shared = Arc::new(Shared {
            base: bound.base(),
            git: GitHttp::new(root.path(), "github-emulator"),
            inner: Mutex::new(Inner {
                apps: HashMap::new(),
                installations: BTreeMap::new(),
                accounts: BTreeMap::new(),
                tokens: HashMap::new(),
                faults: HashMap::new(),
                token_ttl: DEFAULT_TOKEN_TTL,
                jwts: Vec::new(),
                foreign_next: HashMap::new(),
                seq: 0,
            }),
            counters: Counters::default(),
        });
        let app = router(shared.clone());
        let server = bound.serve("github-emulator", app);
        Emulator {
            shared,
            _server: server,
            _root: root,
        }
    }

    pub async fn start() -> Emulator {
        Self::start_blocking()
    }

    /// `http://127.0.0.1:PORT` (the git host).
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// `http://127.0.0.1:PORT/api/v3`
    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.shared.base)
    }

    /// An app whose JWTs verify with the test key's public half.
    pub fn add_app(&self, app_id: &str) {
        self.shared
            .lock()
            .apps
            .insert(app_id.into(), test_key().public_pem.clone());
    }

    pub fn add_org(&self, login: &str) {
        self.shared.lock().account_mut(login, true);
    }

    pub fn add_user(&self, login: &str) {
        self.shared.lock().account_mut(login, false);
    }

    /// Installs `app_id` on `login` (which must exist); returns the installation id.
    pub fn install(&self, app_id: &str, login: &str) -> u64 {
        let mut inner = self.shared.lock();
        assert!(inner.accounts.contains_key(login), "no account {login}");
        let id = 1_000 + inner.next_seq();
        inner
            .installations
            .insert(id, (app_id.to_owned(), login.to_owned()));
        id
    }

    /// A personal token of `user` that sees what that user sees.
    pub fn add_personal_token(&self, user: &str) -> String {
        let token = format!("ghp_{}", random_hex(36));
        self.shared.lock().tokens.insert(
            token.clone(),
            Token {
                installation: None,
                user: user.to_owned(),
                expires_at: Instant::now() + Duration::from_secs(365 * 86_400),
            },
        );
        token
    }

    /// Lists `source` (a bare repository, served in place) as `<owner>/<name>`, creating the
    /// owner as an organisation if it does not exist.
    pub fn add_repo(&self, owner: &str, name: &str, source: &Path, opts: RepoOpts) {
        let source = self.shared.git.link_repo(owner, name, source);
        let default_branch = head_branch(&source);
        let mut inner = self.shared.lock();
        let id = inner.next_seq();
        let repo = Repo {
            name: name.to_owned(),
            id,
            size_kb: if default_branch.is_some() {
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

    pub fn push_fault(&self, route: Route, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(route)
            .or_default()
            .push_back(fault);
    }

    /// Installation tokens issued from now on live `ttl` (and `expires_at` says so).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.lock().token_ttl = ttl;
    }

    /// Expires every installation token issued so far.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for t in self.shared.lock().tokens.values_mut() {
            if t.installation.is_some() {
                t.expires_at = now;
            }
        }
    }

    /// `owner`'s first page links `next` to `url` (another host, say).
    pub fn set_foreign_next(&self, owner: &str, url: &str) {
        self.shared
            .lock()
            .foreign_next
            .insert(owner.into(), url.into());
    }

    /// Claims of every JWT presented so far.
    pub fn jwt_claims(&self) -> Vec<Value> {
        self.shared.lock().jwts.clone()
    }

    /// Every token issued so far (for leak scans).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.keys().cloned().collect()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            api_requests: get(&c.api_requests),
            list_requests: get(&c.list_requests),
            installation_lookups: get(&c.installation_lookups),
            tokens_issued: get(&c.tokens_issued),
            jwt_refused: get(&c.jwt_refused),
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

    fn account_mut(&mut self, login: &str, org: bool) -> &mut Account {
        let id = 500 + self.seq + 1;
        if !self.accounts.contains_key(login) {
            self.seq += 1;
        }
        self.accounts
            .entry(login.to_owned())
            .or_insert_with(|| Account {
                login: login.to_owned(),
                id,
                org,
                repos: Vec::new(),
            })
    }

    fn account(&self, login: &str) -> Option<&Account> {
        self.accounts
            .values()
            .find(|a| a.login.eq_ignore_ascii_case(login))
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
        let now = unix_now();
        match fault {
            Fault::RateLimit { retry_after } | Fault::SecondaryLimit { retry_after } => {
                bump(&self.counters.rate_limited);
                let status = match fault {
                    Fault::RateLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::FORBIDDEN,
                };
                let mut resp = error(status, SECONDARY_LIMIT);
                if let Some(secs) = retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                Some(resp)
            }
            Fault::PrimaryLimit { reset_in } => {
                bump(&self.counters.rate_limited);
                let mut resp = error(
                    StatusCode::FORBIDDEN,
                    "API rate limit exceeded for installation.",
                );
                let h = resp.headers_mut();
                h.insert("x-ratelimit-limit", HeaderValue::from(5000));
                h.insert("x-ratelimit-remaining", HeaderValue::from(0));
                h.insert("x-ratelimit-used", HeaderValue::from(5000));
                h.insert(
                    "x-ratelimit-reset",
                    HeaderValue::from(now + reset_in as i64),
                );
                h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
                Some(resp)
            }
            Fault::Status(code) => Some(error(
                StatusCode::from_u16(code).expect("valid status"),
                "Server Error",
            )),
            Fault::ExpireTokens => {
                let now = Instant::now();
                for t in self.lock().tokens.values_mut() {
                    if t.installation.is_some() {
                        t.expires_at = now;
                    }
                }
                None
            }
        }
    }

    /// Verifies an app's JWT as GitHub does: signature with the app's key, then `iat`/`exp`.
    fn check_jwt(&self, headers: &HeaderMap) -> Result<String, Box<Response>> {
        let refused = |message: &str| {
            bump(&self.counters.jwt_refused);
            bump(&self.counters.unauthorized);
            error(StatusCode::UNAUTHORIZED, message)
        };
        let Some(jwt) = bearer(headers) else {
            return Err(Box::new(refused(JWT_UNDECODABLE)));
        };
        let Ok(claims) = jsonwebtoken::dangerous::insecure_decode::<Value>(&jwt).map(|d| d.claims)
        else {
            return Err(Box::new(refused(JWT_UNDECODABLE)));
        };
        self.lock().jwts.push(claims.clone());
        let iss = match &claims["iss"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(Box::new(refused(JWT_UNDECODABLE))),
        };
        let Some(public) = self.lock().apps.get(&iss).cloned() else {
            return Err(Box::new(refused(JWT_UNDECODABLE)));
        };
        let key = DecodingKey::from_rsa_pem(public.as_bytes()).expect("test public key");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        if jsonwebtoken::decode::<Value>(&jwt, &key, &validation).is_err() {
            return Err(Box::new(refused(JWT_UNDECODABLE)));
        }
        let now = unix_now();
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return Err(Box::new(refused(JWT_UNDECODABLE)));
        };
        if iat > now + 30 {
            return Err(Box::new(refused(JWT_IAT_FUTURE)));
        }
        if exp <= now {
            return Err(Box::new(refused(JWT_EXPIRED)));
        }
        if exp - iat.max(now - 60) > MAX_JWT_LIFETIME + 60 || exp > now + MAX_JWT_LIFETIME {
            return Err(Box::new(refused(JWT_TOO_FAR)));
        }
        Ok(iss)
    }

    /// A valid installation or personal token: (installation, user).
    fn check_token(&self, headers: &HeaderMap) -> Result<(Option<u64>, String), Box<Response>> {
        let token = bearer(headers);
        let inner = self.lock();
        match token.and_then(|t| inner.tokens.get(&t)) {
            Some(t) if Instant::now() < t.expires_at => Ok((t.installation, t.user.clone())),
            _ => {
                drop(inner);
                bump(&self.counters.unauthorized);
                Err(Box::new(error(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS)))
            }
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/app", get(get_app))
        .route("/app/installations/{id}", get(get_installation))
        .route("/app/installations/{id}/access_tokens", post(access_token))
        .route("/orgs/{org}/installation", get(org_installation))
        .route("/users/{user}/installation", get(user_installation))
        .route("/users/{user}", get(get_user))
        .route("/user", get(get_self))
        .route("/orgs/{org}/repos", get(org_repos))
        .route("/users/{user}/repos", get(user_repos))
        .route("/installation/repositories", get(installation_repos))
        .fallback(not_found);
    Router::new()
        .nest("/api/v3", api)
        .merge(git_http::routes(serve_git))
        .with_state(shared)
}

type St = State<Arc<Shared>>;

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(5000));
    h.insert("x-ratelimit-remaining", HeaderValue::from(4999));
    h.insert("x-ratelimit-reset", HeaderValue::from(unix_now() + 3600));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    h.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    resp
}

/// GitHub's error document.
fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({"message": message, "documentation_url": DOCS, "status": status.as_u16().to_string()}),
    )
}

async fn not_found(State(s): St) -> Response {
    bump(&s.counters.api_requests);
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim().to_owned())
}

async fn get_app(State(s): St, headers: HeaderMap) -> Response {
    bump(&s.counters.api_requests);
    let app = match s.check_jwt(&headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    json_response(
        StatusCode::OK,
        &json!({"id": app.parse::<u64>().unwrap_or(0), "slug": format!("offsite-{app}"), "name": "Offsite backup"}),
    )
}

fn installation_json(id: u64, app: &str, account: &Account) -> Value {
    let kind = if account.org { "Organization" } else { "User" };
    json!({
        "id": id,
        "app_id": app.parse::<u64>().unwrap_or(0),
        "target_type": kind,
        "target_id": account.id,
        "account": {"login": account.login, "id": account.id, "type": kind},
        "repository_selection": "all",
        "permissions": {"contents": "read", "metadata": "read"},
    })
}

/// An installation of the JWT's app on `login`, looked up as `org` or user route.
fn lookup(s: &Shared, headers: &HeaderMap, login: &str, org: bool) -> Response {
    bump(&s.counters.api_requests);
    bump(&s.counters.installation_lookups);
    let app = match s.check_jwt(headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let inner = s.lock();
    let found = inner
        .account(login)
        .filter(|a| a.org == org)
        .and_then(|account| {
            inner
                .installations
                .iter()
                .find(|(_, (a, l))| *a == app && l.eq_ignore_ascii_case(&account.login))
                .map(|(id, _)| installation_json(*id, &app, account))
        });
    match found {
        Some(body) => json_response(StatusCode::OK, &body),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn org_installation(
    State(s): St,
    UrlPath(org): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    lookup(&s, &headers, &org, true)
}

async fn user_installation(
    State(s): St,
    UrlPath(user): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    lookup(&s, &headers, &user, false)
}

async fn get_installation(State(s): St, UrlPath(id): UrlPath<u64>, headers: HeaderMap) -> Response {
    bump(&s.counters.api_requests);
    let app = match s.check_jwt(&headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let inner = s.lock();
    match inner.installations.get(&id).filter(|(a, _)| *a == app) {
        Some((_, login)) => {
            let account = inner.account(login).expect("installed account");
            json_response(StatusCode::OK, &installation_json(id, &app, account))
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `POST /app/installations/{id}/access_tokens`: 201 with `token` and `expires_at`.
async fn access_token(State(s): St, UrlPath(id): UrlPath<u64>, headers: HeaderMap) -> Response {
    bump(&s.counters.api_requests);
    if let Some(resp) = s.fault(Route::Token) {
        return resp;
    }
    let app = match s.check_jwt(&headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let mut inner = s.lock();
    let Some((_, login)) = inner
        .installations
        .get(&id)
        .filter(|(a, _)| *a == app)
        .cloned()
    else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    // The stateless format rolled out in 2026 is longer than 40 characters (NOTES §5).
    let token = format!("ghs_{app}_{}", random_hex(60));
    let ttl = inner.token_ttl;
    inner.tokens.insert(
        token.clone(),
        Token {
            installation: Some(id),
            user: login,
            expires_at: Instant::now() + ttl,
        },
    );
    drop(inner);
    bump(&s.counters.tokens_issued);
    let expires = chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap();
    json_response(
        StatusCode::CREATED,
        &json!({
            "token": token,
            "expires_at": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "permissions": {"contents": "read", "metadata": "read"},
            "repository_selection": "all",
        }),
    )
}

async fn get_user(State(s): St, UrlPath(user): UrlPath<String>, headers: HeaderMap) -> Response {
    bump(&s.counters.api_requests);
    if let Err(r) = s.check_token(&headers) {
        return *r;
    }
    let inner = s.lock();
    match inner.account(&user) {
        Some(a) => json_response(
            StatusCode::OK,
            &json!({"login": a.login, "id": a.id, "type": if a.org { "Organization" } else { "User" }}),
        ),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn get_self(State(s): St, headers: HeaderMap) -> Response {
    bump(&s.counters.api_requests);
    match s.check_token(&headers) {
        Ok((None, user)) => json_response(StatusCode::OK, &json!({"login": user, "type": "User"})),
        Ok(_) => error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        ),
        Err(r) => *r,
    }
}

/// Which repositories a listing shows.
#[derive(Clone, Copy)]
enum Listing {
    Org,
    UserPublic,
    Installation,
}

async fn org_repos(
    State(s): St,
    UrlPath(org): UrlPath<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(
        &s,
        &org,
        Listing::Org,
        &format!("orgs/{org}/repos"),
        q,
        &headers,
    )
}

async fn user_repos(
    State(s): St,
    UrlPath(user): UrlPath<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(
        &s,
        &user,
        Listing::UserPublic,
        &format!("users/{user}/repos"),
        q,
        &headers,
    )
}

async fn installation_repos(State(s): St, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let installation = match s.check_token(&headers) {
        Ok((Some(id), _)) => id,
        Ok((None, _)) => {
            bump(&s.counters.api_requests);
            return error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by personal access token",
            );
        }
        Err(r) => {
            bump(&s.counters.api_requests);
            bump(&s.counters.list_requests);
            return *r;
        }
    };
    let login = s.lock().installations[&installation].1.clone();
    list(
        &s,
        &login,
        Listing::Installation,
        "installation/repositories",
        q,
        &headers,
    )
}

fn list(
    s: &Shared,
    owner: &str,
    kind: Listing,
    path: &str,
    query: Option<String>,
    headers: &HeaderMap,
) -> Response {
    bump(&s.counters.api_requests);
    bump(&s.counters.list_requests);
    if let Some(resp) = s.fault(Route::List) {
        return resp;
    }
    if let Err(r) = s.check_token(headers) {
        return *r;
    }
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |n: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    // GitHub clamps `per_page` to 100 rather than refusing it.
    let per_page = param("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_PER_PAGE)
        .clamp(1, MAX_PER_PAGE);
    let page = param("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let inner = s.lock();
    let Some(account) = inner.account(owner) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if matches!(kind, Listing::Org) && !account.org {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let visible: Vec<&Repo> = account
        .repos
        .iter()
        .filter(|r| !matches!(kind, Listing::UserPublic) || r.opts.public)
        .collect();
    let last = visible.len().div_ceil(per_page).max(1);
    let values: Vec<Value> = visible
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|r| repo_json(&s.base, account, r))
        .collect();
    let link = |to: usize| {
        let mut url = url::Url::parse(&format!("{}/api/v3/{path}", s.base)).unwrap();
        url.query_pairs_mut()
            .extend_pairs(params.iter().filter(|(k, _)| k != "page"))
            .append_pair("page", &to.to_string());
        url.to_string()
    };
    let mut links = Vec::new();
    if page < last {
        let next = match (page, inner.foreign_next.get(&account.login)) {
            (1, Some(foreign)) => foreign.clone(),
            _ => link(page + 1),
        };
        links.push(format!("<{next}>; rel=\"next\""));
        links.push(format!("<{}>; rel=\"last\"", link(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
        links.push(format!("<{}>; rel=\"first\"", link(1)));
    }
    let body = match kind {
        Listing::Installation => {
            json!({"total_count": visible.len(), "repository_selection": "all", "repositories": values})
        }
        _ => Value::Array(values),
    };
    drop(inner);
    let mut resp = json_response(StatusCode::OK, &body);
    if !links.is_empty() {
        resp.headers_mut().insert(
            header::LINK,
            HeaderValue::from_str(&links.join(", ")).unwrap(),
        );
    }
    resp
}

/// One repository as GitHub lists it (the fields of the `repository` schema a client reads).
fn repo_json(base: &str, account: &Account, r: &Repo) -> Value {
    let full_name = format!("{}/{}", account.login, r.name);
    let stamp = |n: u64| {
        chrono::DateTime::from_timestamp(1_700_000_000 + (r.id * 86_400 + n) as i64, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let mut v = json!({
        "id": r.id,
        "node_id": format!("R_kgDO{:08}", r.id),
        "name": r.name,
        "full_name": full_name,
        "private": !r.opts.public,
        "visibility": if r.opts.public { "public" } else { "private" },
        "owner": {"login": account.login, "id": account.id, "type": if account.org { "Organization" } else { "User" }},
        "html_url": format!("{base}/{full_name}"),
        "url": format!("{base}/api/v3/repos/{full_name}"),
        "clone_url": format!("{base}/{full_name}.git"),
        "git_url": format!("git://127.0.0.1/{full_name}.git"),
        "ssh_url": format!("git@127.0.0.1:{full_name}.git"),
        "fork": r.opts.fork,
        "archived": r.opts.archived,
        "disabled": false,
        "default_branch": r.default_branch,
        "size": r.size_kb,
        "created_at": stamp(0),
        "updated_at": stamp(60),
        "pushed_at": stamp(30),
    });
    if let Some(patch) = &r.opts.patch {
        merge(&mut v, patch);
    }
    v
}

/// Git: Basic `x-access-token:<token>` with a live token of an installation on the owner (or
/// a personal token), read-only.
async fn serve_git(s: Arc<Shared>, req: GitRequest) -> Response {
    let guard = s.git.begin(&req);
    if let Some(resp) = s.fault(Route::Git) {
        return resp;
    }
    let allowed = match req.basic_auth() {
        Some((user, token)) if user == GIT_TOKEN_USER => {
            let inner = s.lock();
            inner.tokens.get(&token).is_some_and(|t| {
                Instant::now() < t.expires_at
                    && match t.installation {
                        Some(id) => inner.installations[&id].1.eq_ignore_ascii_case(&req.owner),
                        None => true,
                    }
            })
        }
        _ => false,
    };
    if !allowed {
        bump(&s.counters.unauthorized);
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            "Invalid username or token. Password authentication is not supported for Git operations.\n",
        )
            .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="GitHub""#),
        );
        return resp;
    }
    if !req.is_fetch() {
        return (StatusCode::FORBIDDEN, "Permission denied\n").into_response();
    }
    let exists = s
        .lock()
        .account(&req.owner)
        .is_some_and(|a| a.repos.iter().any(|r| r.name == req.slug));
    if !exists {
        return (StatusCode::NOT_FOUND, "Repository not found.\n").into_response();
    }
    s.git.serve(req, guard).await
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
