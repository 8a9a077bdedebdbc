//! The emulator's wire: Gitea's authentication and scope checks, the repository listings with
//! their clamping and headers, error documents, faults, and git smart HTTP behind Basic auth
//! (the behaviour the parent module's doc lists, with its sources).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{Account, DEFAULT_PAGING_NUM, Fault, Repo, Route, Shared};
use crate::support::emulated::merge;
use crate::support::git_http::{self, GitRequest, basic_auth, bump};

/// Who is calling the API: `None` is anonymous.
type Caller = Option<(String, Vec<String>)>;

impl Shared {
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

pub(super) fn router(shared: Arc<Shared>) -> Router {
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
