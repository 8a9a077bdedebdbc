//! GitLab (gitlab.com and self-managed): a group access token or a personal token, a group's
//! projects with its subgroups', git credentials.
//!
//! Why it looks the way it does:
//! - **Credentials**: a group access token is the group's own credential (its bot user survives
//!   people leaving; Reporter with `read_api` + `read_repository` is read-only), so the README
//!   and `login` lead with it; a personal token is the fallback, and `login` warns about it. The
//!   API takes it in `PRIVATE-TOKEN`; git takes user `oauth2` and the token as password (any
//!   non-blank user works for access tokens, `oauth2` for OAuth ones too; NOTES §6). GitLab's
//!   tokens cannot be renewed by their holder without revoking the old one, so a refused token
//!   is an auth error naming the likely cause (expiry: group tokens live at most a year).
//! - **Listing**: `GET /groups/:id/projects` with the group's full path as `:id`,
//!   `include_subgroups=true` (a group's backup includes its subgroups' projects),
//!   `with_shared=false` (projects merely shared *into* the group belong to another group and
//!   are that group's to back up; the default `true` would list them here, under a key they
//!   do not own), `order_by=id&sort=asc` (stable pages while projects are created), and
//!   `per_page=100`. This endpoint has offset pagination only: GitLab documents keyset
//!   pagination for `/projects` but not for `/groups/:id/projects` (`doc/api/rest/_index.md`,
//!   "Supported resources"), and it lifts the offset cap only for endpoints that have keyset.
//!   Pages follow the `Link` header's `rel="next"` verbatim ([`super::pages`]), never
//!   `x-total-pages` (absent past 10,000 records).
//! - **Keys**: a project's slug is its path below the group (`path_with_namespace` minus the
//!   group): `api`, or `team/api` in a subgroup, stored as `<owner>/<date>/team/api.bundle`
//!   (every part checked by [`super::slug_path_problem`]).
//! - **Limits**: 429 (plain-text `Retry later`, with `Retry-After` or, for application limits,
//!   no header at all) and 5xx go through the shared retry policy ([`super::http`]);
//!   `RateLimit-Remaining`/`RateLimit-Reset` (a Unix time) pace the calls before the limit.
//! - **Bodies** are read through [`crate::http`] with a cap; server text is quoted through
//!   [`crate::text::quote`].
//!
//! Layout: this file holds the provider, its requests and the listing loop; `page` the wire
//! format (pure), `args` the flags, `settings` the checked instance URL and `creds` where the
//! token comes from (reached through [`super::choose`]).

pub mod args;
pub mod creds;
mod page;
pub mod settings;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use tracing::debug;
use url::Url;

pub use self::args::GitlabArgs;
use self::page::{api_error_message, parse_page};
pub use self::settings::{GitlabEndpoints, GitlabOptions, build};
use super::http::pace::Pacer;
use super::http::{RetryPolicy, Transient, Try, parse_retry_after, read_body, retrying};
use super::pages::{Answer, MAX_PAGES, Pages, next_in};
use super::{GitAuth, Listing, Provider, ProviderError, RemoteRepo};
use crate::secret::Secret;

const PROVIDER: &str = "gitlab";
pub const DEFAULT_URL: &str = "https://gitlab.com";
/// GitLab's maximum `per_page`.
const PER_PAGE: u32 = 100;
/// The user name sent with the token over HTTPS git (NOTES §6: required for OAuth tokens, any
/// non-blank name for access tokens).
pub const GIT_USERNAME: &str = "oauth2";
/// The API's token header (GitLab, "REST API authentication").
const TOKEN_HEADER: &str = "PRIVATE-TOKEN";

pub struct GitlabProvider {
    api_url: Url,
    /// Clone URLs elsewhere are rejected: the token goes to this host only.
    git_origin: Url,
    token: Secret,
    retry: RetryPolicy,
    http: reqwest::Client,
    pacer: Pacer,
    /// Set once `GET /user` accepted the token: git is handed only a token the API took.
    checked: tokio::sync::OnceCell<()>,
}

impl fmt::Debug for GitlabProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitlabProvider")
            .field("api_url", &self.api_url.as_str())
            .field("git_origin", &self.git_origin.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl GitlabProvider {
    pub fn new(opts: GitlabOptions) -> Result<Self, ProviderError> {
        if opts.token.expose().trim().is_empty() {
            return Err(auth(
                "the GitLab token is empty: check --gitlab-token-file or GITLAB_TOKEN",
            ));
        }
        // reqwest drops sensitive headers when a redirect changes host; PRIVATE-TOKEN is
        // not one it knows, so redirects are not followed at all.
        let http = super::http::api_client(
            &opts.user_agent,
            reqwest::redirect::Policy::none(),
            &opts.url,
        )?;
        let mut git_origin = opts.url.clone();
        git_origin.set_path("/");
        let _ = git_origin.set_username("");
        let _ = git_origin.set_password(None);
        Ok(Self {
            api_url: settings::api_url(&opts.url),
            git_origin,
            token: opts.token,
            retry: opts.retry,
            http,
            pacer: Pacer::default(),
            checked: tokio::sync::OnceCell::new(),
        })
    }

    /// `{api}/seg/seg…`, each segment encoded as one path segment (a group's full path
    /// `acme/team` becomes `acme%2Fteam`, as GitLab wants it).
    fn api(&self, segments: &[&str]) -> Url {
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .expect("http(s) API URL has a path")
            .extend(segments);
        url
    }

    fn projects_url(&self, group: &str) -> Url {
        let mut url = self.api(&["groups", group, "projects"]);
        url.set_query(Some(&format!(
            "include_subgroups=true&with_shared=false&order_by=id&sort=asc&per_page={PER_PAGE}"
        )));
        url
    }

    /// One GET through the shared retry policy: 429, 5xx and connection failures are tried
    /// again.
    async fn send(&self, url: &Url) -> Result<Answer, ProviderError> {
        retrying(&self.retry, PROVIDER, url, || Box::pin(self.send_once(url))).await
    }

    async fn send_once(&self, url: &Url) -> Result<Try<Answer>, ProviderError> {
        self.pacer.wait().await;
        let sent = self
            .http
            .get(url.clone())
            .header(TOKEN_HEADER, self.token.expose())
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Ok(Try::again(Transient::Transport(crate::error::chain(&e)))),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        self.pacer.observe(&headers);
        if let Some(why) = Transient::from_status(status) {
            let retry_after = retry_wait(&headers, chrono::Utc::now().timestamp());
            return Ok(Try::Again { why, retry_after });
        }
        let body = match read_body(resp, url).await? {
            Try::Done(body) => body,
            Try::Again { why, retry_after } => return Ok(Try::Again { why, retry_after }),
        };
        let next = next_in(&headers);
        Ok(Try::Done(Answer { status, next, body }))
    }

    /// A GET whose answer must be 200: 401 and 403 are auth errors saying what to fix, 404 on
    /// a group's first page an unknown group.
    async fn get(
        &self,
        url: &Url,
        group: Option<&str>,
        first: bool,
    ) -> Result<Answer, ProviderError> {
        debug!(%url, "GitLab API request");
        let answer = self.send(url).await?;
        let message = || api_error_message(&answer.body);
        match answer.status {
            StatusCode::OK => Ok(answer),
            StatusCode::UNAUTHORIZED => Err(auth(format!(
                "GitLab refused the token ({}): check --gitlab-token-file or GITLAB_TOKEN; a \
                 token that worked before was revoked or expired (group access tokens last at \
                 most a year; create a new one under the group's Settings → Access tokens)",
                message()
            ))),
            StatusCode::FORBIDDEN => Err(auth(format!(
                "GitLab denied access to {url} ({}): the token needs the read_api and \
                 read_repository scopes and at least the Reporter role on the group",
                message()
            ))),
            s => Err(ProviderError::listing_status(
                PROVIDER,
                "group",
                group.unwrap_or_default(),
                first && group.is_some(),
                s.as_u16(),
                url,
                message(),
            )),
        }
    }

    /// Up to `pages` pages of `group`'s projects; whether more follow.
    async fn list_pages(
        &self,
        group: &str,
        pages: usize,
    ) -> Result<(Listing, bool), ProviderError> {
        let mut url = self.projects_url(group);
        let mut pager = Pages::new(&self.api_url);
        let mut listing = Listing::default();
        let mut without_repository = 0;
        let more = loop {
            pager.visit(&url)?;
            let answer = self.get(&url, Some(group), pager.count() == 1).await?;
            let raws = parse_page(&answer.body).map_err(|message| ProviderError::Decode {
                url: url.to_string(),
                message,
            })?;
            for raw in raws {
                match raw.into_remote(group, &self.git_origin) {
                    Ok(Some(repo)) => listing.repos.push(repo),
                    Ok(None) => without_repository += 1,
                    Err(rejected) => listing.rejected.push(rejected),
                }
            }
            let Some(next) = answer.next else {
                break false;
            };
            if pager.count() >= pages {
                break true;
            }
            url = pager.next(&next, &url, "the `Link` header's next page")?;
        };
        debug!(
            group,
            count = listing.repos.len(),
            rejected = listing.rejected.len(),
            without_repository,
            pages = pager.count(),
            "listed GitLab projects"
        );
        Ok((listing, more))
    }

    /// Who the token belongs to, for `login`: the token's own record (scopes, expiry) where the
    /// instance has `GET /personal_access_tokens/self` (GitLab 15.5+), and its user.
    async fn whoami(&self) -> Result<String, ProviderError> {
        #[derive(Deserialize)]
        struct User {
            username: String,
            #[serde(default)]
            bot: bool,
        }
        #[derive(Deserialize)]
        struct TokenInfo {
            #[serde(default)]
            scopes: Vec<String>,
            expires_at: Option<String>,
        }
        let url = self.api(&["user"]);
        let answer = self.get(&url, None, false).await?;
        let user: User =
            serde_json::from_slice(&answer.body).map_err(|e| ProviderError::Decode {
                url: url.to_string(),
                message: format!("not a user: {e}"),
            })?;
        let url = self.api(&["personal_access_tokens", "self"]);
        let info = match self.send(&url).await? {
            a if a.status == StatusCode::OK => serde_json::from_slice::<TokenInfo>(&a.body).ok(),
            _ => None,
        };
        let name = crate::text::escape(&user.username).into_owned();
        // GitLab names the bot user of a group or project token `group_<id>_bot_<hex>`
        // (`project_…`); the name tells even where `/user` omits `bot`.
        let bot_of = |kind: &str| {
            name.strip_prefix(kind)
                .and_then(|rest| rest.split_once("_bot"))
                .is_some_and(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        };
        let bot = user.bot || bot_of("group_") || bot_of("project_");
        let kind = match bot {
            true if bot_of("group_") => "the group access token of bot user",
            true if bot_of("project_") => "the project access token of bot user",
            true => "the token of bot user",
            false => "the personal token of",
        };
        let mut out = format!("{kind} `{name}`");
        if let Some(info) = info {
            let scopes: Vec<String> = info.scopes.iter().map(|s| crate::text::quote(s)).collect();
            out.push_str(&format!(" (scopes {}", scopes.join(", ")));
            match info.expires_at {
                Some(d) => out.push_str(&format!(
                    "; expires {}, backups stop then)",
                    crate::text::quote(&d)
                )),
                None => out.push_str("; no expiry date)"),
            }
            let has = |s: &str| info.scopes.iter().any(|x| x == s || x == "api");
            for needed in ["read_api", "read_repository"] {
                if !has(needed) {
                    out.push_str(&format!(". Warning: it lacks the {needed} scope"));
                }
            }
        }
        if !bot {
            out.push_str(
                ". Note: a personal token ties the backups to one person (they stop when that \
                 person leaves or the token expires); a group access token belongs to the group, \
                 see `git-offsite login --help` or the README",
            );
        }
        Ok(out)
    }
}

#[async_trait]
impl Provider for GitlabProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn list_repos(&self, owner: &str) -> Result<Listing, ProviderError> {
        Ok(self.list_pages(owner, MAX_PAGES).await?.0)
    }

    /// The one token, for every project, checked with the API once per run. It cannot be
    /// renewed, so when git refused it (`refresh`) the answer is an auth error: the API's
    /// reason when the API refuses it too (expired, revoked), else a missing git scope.
    async fn git_auth(
        &self,
        _repo: &RemoteRepo,
        refresh: bool,
    ) -> Result<Option<GitAuth>, ProviderError> {
        let check = || async {
            self.get(&self.api(&["user"]), None, false)
                .await
                .map(|_| ())
        };
        if refresh {
            check().await?;
            return Err(auth(
                "git refused the GitLab token although its API accepts it: the token needs the \
                 read_repository scope and at least the Reporter role (or it was revoked or \
                 expired just now)",
            ));
        }
        self.checked.get_or_try_init(check).await?;
        Ok(Some(GitAuth {
            username: GIT_USERNAME.to_string(),
            password: self.token.clone(),
        }))
    }

    async fn login_check(&self, owner: Option<&str>) -> Result<String, ProviderError> {
        let who = self.whoami().await?;
        let Some(group) = owner else {
            return Ok(format!("{who}: valid"));
        };
        let (first, more) = self.list_pages(group, 1).await?;
        Ok(format!(
            "{who}: can read `{group}` ({} projects on the first page{})",
            first.repos.len() + first.rejected.len(),
            if more { ", more follow" } else { "" },
        ))
    }

    fn login_help(&self) -> Option<String> {
        Some(creds::TOKEN_SETUP.to_string())
    }
}

/// How long to wait before retrying a 429 or 5xx: `Retry-After` when sent, else the time to
/// `RateLimit-Reset` (a Unix time) when `RateLimit-Remaining` is 0, else `None` (the shared
/// backoff decides: GitLab's application limits send no header at all).
fn retry_wait(headers: &HeaderMap, now_unix: i64) -> Option<Duration> {
    if let Some(d) = parse_retry_after(headers) {
        return Some(d);
    }
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if number("ratelimit-remaining") != Some(0) {
        return None;
    }
    // One second more: the window resets at that second, not before it.
    number("ratelimit-reset").map(|reset| Duration::from_secs((reset - now_unix).max(0) as u64 + 1))
}

fn auth(message: impl Into<String>) -> ProviderError {
    ProviderError::Auth {
        provider: PROVIDER,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_429_waits_for_retry_after_else_the_reset_else_the_backoff() {
        const NOW: i64 = 1_800_000_000;
        let reset = (NOW + 20).to_string();
        assert_eq!(
            retry_wait(
                &headers(&[("retry-after", "7"), ("ratelimit-reset", &reset)]),
                NOW
            ),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_wait(
                &headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", &reset)]),
                NOW
            ),
            Some(Duration::from_secs(21))
        );
        assert_eq!(
            retry_wait(
                &headers(&[("ratelimit-remaining", "5"), ("ratelimit-reset", &reset)]),
                NOW
            ),
            None
        );
        assert_eq!(retry_wait(&HeaderMap::new(), NOW), None);
    }

    #[test]
    fn listing_urls_encode_the_group_path_and_ask_for_owned_projects() {
        let p = GitlabProvider::new(GitlabOptions::new(Secret::new("glpat-x"))).unwrap();
        assert_eq!(
            p.projects_url("acme/team").as_str(),
            "https://gitlab.com/api/v4/groups/acme%2Fteam/projects?include_subgroups=true&\
             with_shared=false&order_by=id&sort=asc&per_page=100"
        );
        assert_eq!(p.git_origin.as_str(), "https://gitlab.com/");
        assert!(!format!("{p:?}").contains("glpat-x"));
    }
}
