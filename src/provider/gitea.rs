//! Gitea and Forgejo (same API, `<base>/api/v1`): an access token, organisation and user
//! listings, git credentials.
//!
//! Why it looks the way it does (NOTES §7):
//! - **Token** in `Authorization: token <t>` only, never `?token=` (deprecated, and refused
//!   where `DISABLE_QUERY_AUTH_TOKEN` is set; a query string also ends up in access logs). For
//!   git it is the Basic password with the fixed user name [`GIT_USERNAME`]: Gitea takes a
//!   token as the password of any user name (`services/auth/basic.go`), and a fixed, non-secret
//!   name that says what made the request reads well in the server's logs. A token cannot be
//!   renewed: a refused one is an auth error telling the user to replace it.
//! - **Listing**: `/orgs/{owner}/repos`, and on 404 `/users/{owner}/repos` (one server-side
//!   implementation, ordered by id). Pages follow `Link rel="next"` only, to the API's own
//!   origin, never a page twice: the server clamps `limit` to `MAX_RESPONSE_ITEMS` silently and
//!   drops repositories the caller cannot read after paging, so neither a short page nor
//!   `X-Total-Count` says anything about the end.
//! - **Mirrors, forks, archived repositories** are backed up like any other. A pull mirror
//!   (`mirror: true`) is a copy of another host's repository as of its last sync; its upstream
//!   may be the thing that disappears, and the mirror is what the team relies on, so skipping
//!   it would leave a hole nobody chose. Its bundle holds what the mirror holds (refs as of the
//!   last sync, which Gitea runs on its own schedule). An empty repository (`empty: true`) is
//!   listed with no default branch, so a fetch that brings no refs records it as empty rather
//!   than failed.
//! - **Limits**: 429 and 5xx (503 from a proxy in front) go through the shared retry policy
//!   ([`super::http`]); Gitea documents no rate-limit headers.

pub mod args;
pub mod creds;
mod page;
pub mod settings;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use tracing::debug;
use url::Url;

pub use self::args::GiteaArgs;
use self::page::{api_error_message, parse_page};
pub use self::settings::{GiteaEndpoints, GiteaOptions, build};
use super::http::{RetryPolicy, Transient, Try, parse_retry_after, read_body, retrying};
use super::pages::{Answer, MAX_PAGES, Pages, next_in};
use super::{GitAuth, Listing, Provider, ProviderError, RemoteRepo};
use crate::secret::Secret;

const PROVIDER: &str = "gitea";
/// What an unknown owner is called: neither an organisation nor a user answered.
const OWNER_KIND: &str = "organisation or user";
/// The `limit` asked for: Gitea's default `MAX_RESPONSE_ITEMS`. An instance configured lower
/// clamps it silently, which the listing loop does not mind.
pub const LIMIT: u32 = 50;
/// How [`Pages::next`] names where a next page came from.
const LINK_NEXT: &str = "the `Link` header's next page";
/// The user name sent with the token for git over HTTPS (see the module doc).
pub const GIT_USERNAME: &str = "git-offsite";

pub struct GiteaProvider {
    api: Url,
    /// Clone URLs elsewhere are rejected: the token goes to this host only.
    git_origin: Url,
    token: Secret,
    /// Some API request with the token was answered: git credentials need no check of their own.
    proven: AtomicBool,
    retry: RetryPolicy,
    http: reqwest::Client,
}

impl fmt::Debug for GiteaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GiteaProvider")
            .field("api", &self.api.as_str())
            .field("git_origin", &self.git_origin.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl GiteaProvider {
    pub fn new(opts: GiteaOptions) -> Result<Self, ProviderError> {
        if opts.token.expose().trim().is_empty() {
            return Err(auth(
                "the Gitea token is empty: check --gitea-token-file or GITEA_TOKEN",
            ));
        }
        // reqwest drops the Authorization header when a redirect changes host.
        let http = super::http::api_client(
            &opts.user_agent,
            reqwest::redirect::Policy::limited(5),
            &opts.base_url,
        )?;
        Ok(Self {
            api: settings::api_root(&opts.base_url),
            git_origin: settings::git_origin(&opts.base_url),
            token: opts.token,
            proven: AtomicBool::new(false),
            retry: opts.retry,
            http,
        })
    }

    /// `{api}/seg/seg…`, each segment encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .expect("http(s) API URL has a path")
            .extend(segments);
        url
    }

    /// One GET through the shared retry policy.
    async fn get(&self, url: &Url) -> Result<Answer, ProviderError> {
        debug!(%url, "Gitea API request");
        retrying(&self.retry, PROVIDER, url, || Box::pin(self.get_once(url))).await
    }

    async fn get_once(&self, url: &Url) -> Result<Try<Answer>, ProviderError> {
        let sent = self
            .http
            .request(Method::GET, url.clone())
            .header(AUTHORIZATION, format!("token {}", self.token.expose()))
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Ok(Try::again(Transient::Transport(crate::error::chain(&e)))),
        };
        let status = resp.status();
        if let Some(why) = Transient::from_status(status) {
            let retry_after = parse_retry_after(resp.headers());
            return Ok(Try::Again { why, retry_after });
        }
        let next = next_in(resp.headers());
        Ok(match read_body(resp, url).await? {
            Try::Done(body) => Try::Done(Answer { status, next, body }),
            Try::Again { why, retry_after } => Try::Again { why, retry_after },
        })
    }

    /// 200 is the answer; 401/403 an auth error; anything else as
    /// [`ProviderError::listing_status`] says (`first`: the owner's first page).
    fn checked(
        &self,
        url: &Url,
        owner: &str,
        first: bool,
        answer: Answer,
    ) -> Result<Answer, ProviderError> {
        let message = || api_error_message(&answer.body);
        match answer.status {
            StatusCode::OK => {
                self.proven.store(true, Ordering::Relaxed);
                Ok(answer)
            }
            StatusCode::UNAUTHORIZED => Err(auth(format!(
                "Gitea refused the token ({}): it was deleted, revoked or expired, or is not \
                 this instance's; a Gitea token cannot be renewed, so make a new one and pass it \
                 with --gitea-token-file or GITEA_TOKEN",
                message()
            ))),
            StatusCode::FORBIDDEN => Err(auth(format!(
                "Gitea denied access to `{owner}` ({}): the token needs the read:repository, \
                 read:organization and read:user scopes",
                message()
            ))),
            s => Err(ProviderError::listing_status(
                PROVIDER,
                OWNER_KIND,
                owner,
                first,
                s.as_u16(),
                url,
                message(),
            )),
        }
    }

    /// Whether Gitea still takes the token: 401 is an auth error; 403 (a token without the
    /// `read:user` scope) still proves it is alive.
    async fn check_token(&self) -> Result<(), ProviderError> {
        let url = self.url(&["user"]);
        let answer = self.get(&url).await?;
        match answer.status {
            StatusCode::FORBIDDEN => Ok(()),
            _ => self
                .checked(&url, "the token's user", false, answer)
                .map(drop),
        }
    }

    /// The first page of `owner` as an organisation, else (on 404) as a user.
    async fn first_page(&self, owner: &str) -> Result<(Url, Answer), ProviderError> {
        let page = |kind: &str| {
            let mut url = self.url(&[kind, owner, "repos"]);
            url.set_query(Some(&format!("page=1&limit={LIMIT}")));
            url
        };
        let url = page("orgs");
        let answer = self.get(&url).await?;
        if answer.status != StatusCode::NOT_FOUND {
            return Ok((url.clone(), self.checked(&url, owner, true, answer)?));
        }
        debug!(owner, "no such Gitea organisation; listing the user");
        let url = page("users");
        let answer = self.get(&url).await?;
        Ok((url.clone(), self.checked(&url, owner, true, answer)?))
    }

    /// Every page, or the first `pages`; whether more follow.
    async fn list_pages(
        &self,
        owner: &str,
        pages: usize,
    ) -> Result<(Listing, bool), ProviderError> {
        let (mut url, mut answer) = self.first_page(owner).await?;
        let mut visited = Pages::new(&self.api);
        visited.visit(&url)?;
        let mut listing = Listing::default();
        let (mut mirrors, mut forks, mut archived) = (0, 0, 0);
        loop {
            let raws = parse_page(&answer.body).map_err(|message| ProviderError::Decode {
                url: url.to_string(),
                message,
            })?;
            for raw in raws {
                mirrors += usize::from(raw.mirror);
                forks += usize::from(raw.fork);
                archived += usize::from(raw.archived);
                match raw.into_remote(owner, &self.git_origin) {
                    Ok(repo) => listing.repos.push(repo),
                    Err(rejected) => listing.rejected.push(rejected),
                }
            }
            let Some(next) = answer.next.take() else {
                break;
            };
            if visited.count() >= pages {
                return Ok((listing, true));
            }
            url = visited.next(&next, &url, LINK_NEXT)?;
            visited.visit(&url)?;
            answer = self.get(&url).await?;
            answer = self.checked(&url, owner, false, answer)?;
        }
        debug!(
            owner,
            count = listing.repos.len(),
            rejected = listing.rejected.len(),
            mirrors,
            forks,
            archived,
            pages = visited.count(),
            "listed Gitea repositories"
        );
        Ok((listing, false))
    }
}

#[async_trait]
impl Provider for GiteaProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn list_repos(&self, owner: &str) -> Result<Listing, ProviderError> {
        Ok(self.list_pages(owner, MAX_PAGES).await?.0)
    }

    /// The same token for every repository: a Gitea token cannot be renewed. Before the first
    /// use (when no API answer has proven it yet) and when `refresh` says git refused it, the
    /// token is checked with `GET /user`: a deleted or revoked token is then an auth error that
    /// says so, instead of a clone failing twice with the same credentials.
    async fn git_auth(
        &self,
        _repo: &RemoteRepo,
        refresh: bool,
    ) -> Result<Option<GitAuth>, ProviderError> {
        if refresh || !self.proven.load(Ordering::Relaxed) {
            self.check_token().await?;
        }
        Ok(Some(GitAuth {
            username: GIT_USERNAME.to_string(),
            password: self.token.clone(),
        }))
    }

    async fn login_check(&self, owner: Option<&str>) -> Result<String, ProviderError> {
        #[derive(serde::Deserialize)]
        struct User {
            login: String,
        }
        let url = self.url(&["user"]);
        let answer = self.get(&url).await?;
        let answer = self.checked(&url, owner.unwrap_or("the token's user"), false, answer)?;
        let user: User =
            serde_json::from_slice(&answer.body).map_err(|e| ProviderError::Decode {
                url: url.to_string(),
                message: format!("not a user: {e}"),
            })?;
        let who = format!("the token of `{}`", crate::text::escape(&user.login));
        let Some(owner) = owner else {
            return Ok(format!("{who} is valid"));
        };
        let (first, more) = self.list_pages(owner, 1).await?;
        Ok(format!(
            "{who} can read `{owner}` ({} repositories on the first page{})",
            first.repos.len(),
            if more { ", more follow" } else { "" },
        ))
    }

    fn login_help(&self) -> Option<String> {
        Some(creds::SETUP.to_string())
    }
}

fn auth(message: impl Into<String>) -> ProviderError {
    ProviderError::Auth {
        provider: PROVIDER,
        message: message.into(),
    }
}
