//! GitHub (github.com and GitHub Enterprise Server): an App installation or a personal token,
//! organisation and user listings, git credentials.
//!
//! Why it looks the way it does:
//! - **Credentials**: a GitHub App installation is the organisation's own credential (it
//!   survives people leaving, is read-only when installed with Contents + Metadata read, and
//!   its tokens live one hour), so it is the default; a fine-grained or classic personal token
//!   is the fallback. The app's JWT, installation lookup and token cache are in `token`.
//! - **Listing**: `/orgs/{org}/repos?type=all` for organisations; for a user,
//!   `/installation/repositories` with an app (the user's private repositories included) or
//!   `/users/{u}/repos` with a token (public ones only: GitHub shows a user's private
//!   repositories to that user's own `/user/repos` alone). Pages follow the `Link` header's
//!   `rel="next"` verbatim, only to the API's own origin (the token goes with it), at most
//!   [`MAX_PAGES`] and never a page twice.
//! - **Limits**: 429, and 403 with `x-ratelimit-remaining: 0` (primary: wait for
//!   `x-ratelimit-reset`) or with `Retry-After` or a "secondary rate limit" message, go through
//!   the shared retry policy ([`super::http`]); `X-RateLimit-*` paces the calls before the limit
//!   ([`super::http::pace`]). Any other 403 is a permission error.
//! - **Bodies** are read through [`crate::http`] with a cap; server text is quoted through
//!   [`crate::text::quote`]. Tokens travel in the `Authorization` header only; git gets
//!   `x-access-token` and the token through the credential callback ([`GitAuth`]).
//!
//! Layout: this file holds the provider and the listing loop; `request` one API request and how
//! GitHub signals a rate limit; `token` the app's
//! secrets, `page` the wire format (pure), `args` the flags, `settings` the checked endpoints
//! and `creds` where credentials come from (reached through [`super::choose`]).

pub mod args;
pub mod creds;
mod page;
mod request;
pub mod settings;
mod token;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use tracing::{debug, warn};
use url::Url;

pub use self::args::GithubArgs;
use self::page::{api_error_message, parse_page};
pub use self::settings::{GithubEndpoints, GithubOptions, build};
pub use self::token::{AppClaims, AppKey, JWT_BACKDATE, JWT_LIFETIME};
use self::token::{CachedToken, Installation};
use super::http::RetryPolicy;
use super::http::pace::Pacer;
use super::pages::Answer;
use super::pages::Pages;
use super::renew::Renew;
use super::{GitAuth, Listing, Provider, ProviderError, RemoteRepo};
use crate::secret::Secret;

const PROVIDER: &str = "github";
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// Where github.com's clone URLs point, and so the one host its git token may go to.
pub const DEFAULT_GIT_URL: &str = "https://github.com";
/// GitHub's maximum `per_page`: fewest requests against the hourly budget.
const PER_PAGE: u32 = 100;
pub use super::pages::MAX_PAGES;
/// The REST API version these requests are written against (docs.github.com, API versions).
const API_VERSION: &str = "2022-11-28";
/// The user name GitHub takes with an installation or personal token over HTTPS git.
pub const GIT_USERNAME: &str = "x-access-token";

/// Which credential a provider holds.
pub enum Credential {
    App(AppKey),
    Token(Secret),
}

pub struct GithubProvider {
    api_url: Url,
    /// Clone URLs elsewhere are rejected: the token goes to this host only.
    git_origin: Url,
    app: Option<AppKey>,
    personal: Option<Secret>,
    installation_id: Option<u64>,
    exclude_forks: bool,
    exclude_archived: bool,
    retry: RetryPolicy,
    http: reqwest::Client,
    pacer: Pacer,
    installations: std::sync::Mutex<HashMap<String, Installation>>,
    /// Installation id → its current token; held across a renewal (one request at a time).
    tokens: tokio::sync::Mutex<HashMap<u64, CachedToken>>,
    /// Installation id → generation of its newest token, readable without the lock above.
    generations: std::sync::Mutex<HashMap<u64, u64>>,
    next_generation: AtomicU64,
}

impl fmt::Debug for GithubProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubProvider")
            .field("api_url", &self.api_url.as_str())
            .field("git_origin", &self.git_origin.as_str())
            .field("app", &self.app)
            .field("personal_token", &self.personal)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

/// Where an owner's repositories are listed, and with what.
struct Plan {
    url: Url,
    /// `/installation/repositories` (an object, not an array).
    installation_listing: bool,
    /// The installation whose token lists (and clones); `None`: the personal token.
    installation: Option<u64>,
}

impl GithubProvider {
    pub fn new(opts: GithubOptions) -> Result<Self, ProviderError> {
        let (app, personal) = match opts.credential {
            Credential::App(key) => (Some(key), None),
            Credential::Token(t) if t.expose().trim().is_empty() => {
                return Err(auth(
                    "the GitHub token is empty: check --github-token-file or GITHUB_TOKEN",
                ));
            }
            Credential::Token(t) => (None, Some(t)),
        };
        // reqwest drops the Authorization header when a redirect changes host.
        let http = super::http::api_client(
            &opts.user_agent,
            reqwest::redirect::Policy::limited(5),
            &opts.api_url,
        )?;
        Ok(Self {
            git_origin: settings::expected_git_origin(&opts.api_url, opts.git_url.as_ref()),
            api_url: opts.api_url,
            app,
            personal,
            installation_id: opts.installation_id,
            exclude_forks: opts.exclude_forks,
            exclude_archived: opts.exclude_archived,
            retry: opts.retry,
            http,
            pacer: Pacer::default(),
            installations: Default::default(),
            tokens: Default::default(),
            generations: Default::default(),
            next_generation: AtomicU64::new(0),
        })
    }

    /// `{api}/seg/seg…`, each segment encoded as one path segment.
    fn api(&self, segments: &[&str]) -> Url {
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .expect("http(s) API URL has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn listing_url(&self, segments: &[&str], query: &str) -> Url {
        let mut url = self.api(segments);
        url.set_query(Some(&format!("{query}per_page={PER_PAGE}")));
        url
    }

    /// Where `owner`'s repositories are listed, with which credential.
    async fn plan(&self, owner: &str) -> Result<Plan, ProviderError> {
        if self.app.is_some() {
            let i = self.installation(owner).await?;
            return Ok(if i.organization {
                Plan {
                    url: self.listing_url(&["orgs", owner, "repos"], "type=all&"),
                    installation_listing: false,
                    installation: Some(i.id),
                }
            } else {
                Plan {
                    url: self.listing_url(&["installation", "repositories"], ""),
                    installation_listing: true,
                    installation: Some(i.id),
                }
            });
        }
        // A personal token: `GET /users/{owner}` tells an organisation from a user.
        #[derive(serde::Deserialize)]
        struct Account {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let url = self.api(&["users", owner]);
        let answer = self.with_token(&url, owner, true, None).await?;
        let account: Account =
            serde_json::from_slice(&answer.body).map_err(|e| ProviderError::Decode {
                url: url.to_string(),
                message: format!("not an account: {e}"),
            })?;
        let org = account
            .kind
            .is_some_and(|k| k.eq_ignore_ascii_case("organization"));
        if !org {
            warn!(
                owner,
                "a personal token lists a user's public repositories only; install a GitHub App \
                 on the account to back up its private ones"
            );
        }
        Ok(Plan {
            url: match org {
                true => self.listing_url(&["orgs", owner, "repos"], "type=all&"),
                false => self.listing_url(&["users", owner, "repos"], "type=owner&"),
            },
            installation_listing: false,
            installation: None,
        })
    }

    /// The token for listing and cloning: the installation's, or the personal one.
    async fn bearer(
        &self,
        installation: Option<u64>,
        renew: Renew,
    ) -> Result<(Secret, u64), ProviderError> {
        match (installation, &self.personal) {
            (Some(id), _) => {
                let t = self.installation_token(id, renew).await?;
                Ok((t.secret, t.generation))
            }
            (None, Some(token)) => Ok((token.clone(), 0)),
            (None, None) => Err(auth("no GitHub credentials")),
        }
    }

    /// A GET with the listing credential: 401 renews an installation token and retries once;
    /// 404 on an owner's first request is [`ProviderError::OwnerNotFound`].
    async fn with_token(
        &self,
        url: &Url,
        owner: &str,
        first: bool,
        installation: Option<u64>,
    ) -> Result<Answer, ProviderError> {
        let (mut token, mut generation) = self.bearer(installation, Renew::IfStale).await?;
        let mut renewed = false;
        loop {
            debug!(%url, "GitHub API request");
            let answer = self.send(Method::GET, url, &token).await?;
            let message = || api_error_message(&answer.body);
            return match answer.status {
                StatusCode::OK => Ok(answer),
                StatusCode::UNAUTHORIZED if !renewed && installation.is_some() => {
                    debug!(%url, "installation token refused; renewing it once");
                    (token, generation) = self
                        .bearer(installation, Renew::IfStill(generation))
                        .await?;
                    renewed = true;
                    continue;
                }
                StatusCode::UNAUTHORIZED => Err(auth(match installation {
                    Some(_) => format!(
                        "GitHub answered 401 to {url} even with a new installation token ({})",
                        message()
                    ),
                    None => format!(
                        "GitHub refused the personal token ({}): check --github-token-file or \
                         GITHUB_TOKEN, and that the token has not expired",
                        message()
                    ),
                })),
                StatusCode::FORBIDDEN => Err(auth(format!(
                    "GitHub denied access to `{owner}` ({}): the app (or token) needs read access \
                     to Contents and Metadata of that owner's repositories",
                    message()
                ))),
                s => Err(ProviderError::listing_status(
                    PROVIDER,
                    "account",
                    owner,
                    first,
                    s.as_u16(),
                    url,
                    message(),
                )),
            };
        }
    }

    /// Every page from `plan.url`, filtered; `pages` stops after that many (login's peek).
    async fn list_pages(
        &self,
        owner: &str,
        plan: &Plan,
        pages: usize,
    ) -> Result<(Listing, bool), ProviderError> {
        let mut url = plan.url.clone();
        let mut visited = Pages::new(&self.api_url);
        let mut listing = Listing::default();
        let (mut forks, mut archived) = (0, 0);
        let more = loop {
            visited.visit(&url)?;
            let answer = self
                .with_token(&url, owner, visited.count() == 1, plan.installation)
                .await?;
            let raws = parse_page(&answer.body, plan.installation_listing).map_err(|message| {
                ProviderError::Decode {
                    url: url.to_string(),
                    message,
                }
            })?;
            for raw in raws {
                if self.exclude_forks && raw.fork {
                    forks += 1;
                    continue;
                }
                if self.exclude_archived && raw.archived {
                    archived += 1;
                    continue;
                }
                match raw.into_remote(owner, &self.git_origin) {
                    Ok(repo) => listing.repos.push(repo),
                    Err(rejected) => listing.rejected.push(rejected),
                }
            }
            let Some(next) = answer.next else {
                break false;
            };
            if visited.count() >= pages {
                break true;
            }
            url = visited.next(&next, &url, "the `Link` header's next page")?;
        };
        debug!(
            owner,
            count = listing.repos.len(),
            rejected = listing.rejected.len(),
            forks_left_out = forks,
            archived_left_out = archived,
            pages = visited.count(),
            "listed GitHub repositories"
        );
        Ok((listing, more))
    }
}

#[async_trait]
impl Provider for GithubProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn list_repos(&self, owner: &str) -> Result<Listing, ProviderError> {
        let plan = self.plan(owner).await?;
        Ok(self.list_pages(owner, &plan, MAX_PAGES).await?.0)
    }

    /// An app's token is its installation's on the repository's owner; a personal token is
    /// the same for every repository (and cannot be renewed).
    async fn git_auth(
        &self,
        repo: &RemoteRepo,
        refresh: bool,
    ) -> Result<Option<GitAuth>, ProviderError> {
        let password = match &self.personal {
            Some(token) => token.clone(),
            None => {
                let owner = repo.full_name.split('/').next().unwrap_or_default();
                let id = self.installation(owner).await?.id;
                let renew = match refresh {
                    true => Renew::IfStill(self.generation(id)),
                    false => Renew::IfStale,
                };
                self.installation_token(id, renew).await?.secret
            }
        };
        Ok(Some(GitAuth {
            username: GIT_USERNAME.to_string(),
            password,
        }))
    }

    async fn login_check(&self, owner: Option<&str>) -> Result<String, ProviderError> {
        let who = match &self.app {
            Some(app) => {
                let slug = self.check_app().await?;
                format!(
                    "the GitHub App `{}` (id {})",
                    crate::text::escape(&slug),
                    app.app_id
                )
            }
            None => "the personal token".to_string(),
        };
        let Some(owner) = owner else {
            if self.app.is_none() {
                // Proves the token with a request that needs no owner.
                let url = self.api(&["user"]);
                let answer = self
                    .send(Method::GET, &url, self.personal.as_ref().expect("token"))
                    .await?;
                if answer.status != StatusCode::OK {
                    return Err(auth(format!(
                        "GitHub refused the personal token ({}): check --github-token-file or \
                         GITHUB_TOKEN",
                        api_error_message(&answer.body)
                    )));
                }
            }
            return Ok(format!(
                "{who} is valid{}",
                person_warning(self.app.is_none())
            ));
        };
        let plan = self.plan(owner).await?;
        let (first, more) = self.list_pages(owner, &plan, 1).await?;
        if let Some(id) = plan.installation {
            // Proves the token works for git too, before a run finds out.
            self.installation_token(id, Renew::IfStale).await?;
        }
        Ok(format!(
            "{who} can read `{owner}` ({} repositories on the first page{}){}",
            first.repos.len(),
            if more { ", more follow" } else { "" },
            person_warning(self.app.is_none())
        ))
    }

    fn login_help(&self) -> Option<String> {
        Some(creds::APP_SETUP.to_string())
    }
}

fn person_warning(personal: bool) -> &'static str {
    match personal {
        true => {
            ". Note: a personal token ties the backups to one person (they stop when that \
             person leaves or the token expires); a GitHub App installation belongs to the \
             organisation, see `git-offsite login --help` or the README"
        }
        false => "",
    }
}

fn auth(message: impl Into<String>) -> ProviderError {
    ProviderError::Auth {
        provider: PROVIDER,
        message: message.into(),
    }
}
