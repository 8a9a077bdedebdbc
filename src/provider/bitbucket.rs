//! Bitbucket Cloud: OAuth client-credentials token, workspace listing, git credentials.
//!
//! Why it looks the way it does:
//! - **Tokens** come from the client-credentials grant with HTTP Basic client auth (what
//!   Bitbucket documents), sent through our own reqwest client that never follows redirects, so
//!   the consumer secret cannot be replayed to another host. Renewal re-runs the grant instead of
//!   using `refresh_token`: the grant is one request either way and needs no extra state.
//! - **One renewal at a time**: the cached token sits behind a tokio `Mutex`, held across the
//!   token request, so a burst of workers asking for credentials makes one request. A generation
//!   counter lets callers that were refused *the same* token share one renewal.
//! - **Listing** follows `next` verbatim (Bitbucket asks clients not to build page URLs) and
//!   ignores `size`, which can disagree with the values. A page already seen, a page count beyond
//!   [`MAX_PAGES`] or a `next` on another host stops the listing rather than looping or sending
//!   the token elsewhere.
//! - **Retries** (429, 5xx, connection errors) use the shared policy of [`super::http`]: capped
//!   exponential backoff with jitter, honouring `Retry-After` when Bitbucket sends one, and
//!   pacing while `X-RateLimit-*` says few calls are left; a 401 renews the token and retries once.
//! - **Bodies** are read through [`crate::http`] with a cap, and server text quoted in an error
//!   goes through [`crate::text::quote`] (escaped, cut short).
//! - **Secrets** live in [`Secret`]; errors are built from Bitbucket's `error`/`error_description`
//!   and status codes, never from request or token bodies, and are scrubbed of the consumer secret.
//!
//! - **Credential kinds**: an OAuth consumer (renewed), or an access token (Bearer) or a user's
//!   API token (Basic email:token), which cannot be renewed: their 401 is an auth failure that
//!   says the token was revoked or expired.
//!
//! Layout: this file holds the provider and the listing loop; `token` everything that touches
//! the consumer secret or a token, `page` the listing's wire format (pure, unit-tested); `args`
//! its flags, `settings` its checked endpoints, `consumer` and `credential` where its
//! credentials come from (all reached through [`super::choose`]), `fixed` how the tokens that
//! are never renewed authenticate and what their refusal says, `login` the `login` check.

pub mod args;
pub mod consumer;
pub mod credential;
mod fixed;
mod login;
mod page;
pub mod settings;
mod token;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use tokio::sync::Mutex;
use tracing::debug;
use url::Url;

pub use self::args::BitbucketArgs;
use self::credential::{BitbucketCredential, TOKEN_GIT_USER};
use self::fixed::{ApiAuth, Fixed};
pub use self::login::{FirstPage, LoginCheck};
use self::page::api_error_message;
pub use self::page::{PageListing, read_page};
pub use self::settings::{BitbucketEndpoints, BitbucketOptions, build, expected_git_origin};
use self::token::{CachedToken, OAuthClient, Renew, oauth_client};
pub use super::http::RetryPolicy;
use super::http::pace::Pacer;
use super::http::{Transient, Try, parse_retry_after, read_body, retrying};
use super::pages::Pages;
use super::{GitAuth, Listing, Provider, ProviderError, RemoteRepo};
use crate::secret::Secret;

const PROVIDER: &str = "bitbucket";
pub const DEFAULT_API_URL: &str = "https://api.bitbucket.org/2.0";
pub const DEFAULT_TOKEN_URL: &str = "https://bitbucket.org/site/oauth2/access_token";
/// Where bitbucket.org's clone links point, and so the one host its git token may go to.
pub const DEFAULT_GIT_URL: &str = "https://bitbucket.org";
/// Full listings made at most when pages shift under the listing (see `list_repos`).
const LISTING_ATTEMPTS: usize = 3;
/// Bitbucket's maximum page length: fewest requests against the 1,000/h API budget.
const PAGELEN: u32 = 100;
pub use super::pages::MAX_PAGES;

pub struct BitbucketProvider {
    api_url: Url,
    token_url: Url,
    /// Clone links elsewhere are rejected: the git token goes to this host only.
    git_origin: Url,
    /// Empty for the token kinds.
    consumer_key: String,
    /// Kept only to scrub it out of server-provided error text (for the token kinds: the token).
    consumer_secret: Secret,
    /// An access or API token, which is never renewed; `None`: the OAuth consumer.
    fixed: Option<Fixed>,
    retry: RetryPolicy,
    oauth: OAuthClient,
    /// Token endpoint client: no redirects (the request carries the consumer secret).
    token_http: reqwest::Client,
    api_http: reqwest::Client,
    token: Mutex<Option<CachedToken>>,
    /// Generation of the newest token, readable without waiting for the lock (see `git_auth`).
    generation: AtomicU64,
    /// Slows the API calls down while `X-RateLimit-*` says few are left.
    pacer: Pacer,
}

impl fmt::Debug for BitbucketProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitbucketProvider")
            .field("api_url", &self.api_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &self.consumer_secret)
            .field("fixed", &self.fixed)
            .field("token_generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl BitbucketProvider {
    pub fn new(opts: BitbucketOptions) -> Result<Self, ProviderError> {
        let (consumer_key, consumer_secret, fixed) = match opts.credential {
            BitbucketCredential::Consumer(c) => {
                if c.key.trim().is_empty() || c.secret.is_empty() {
                    return Err(auth(
                        "the OAuth consumer key or secret is empty: set \
                         --consumer-key/--consumer-secret or \
                         BITBUCKET_CONSUMER_KEY/BITBUCKET_CONSUMER_SECRET",
                    ));
                }
                (c.key, c.secret, None)
            }
            BitbucketCredential::AccessToken { token } => {
                (String::new(), token.clone(), Some(Fixed::Bearer(token)))
            }
            BitbucketCredential::ApiToken { email, token } => (
                String::new(),
                token.clone(),
                Some(Fixed::Basic { email, token }),
            ),
        };
        let build = |redirect| super::http::api_client(&opts.user_agent, redirect, &opts.api_url);
        let oauth = oauth_client(&consumer_key, &consumer_secret, &opts.token_url);
        Ok(Self {
            token_http: build(reqwest::redirect::Policy::none())?,
            // reqwest drops the Authorization header when a redirect changes host.
            api_http: build(reqwest::redirect::Policy::limited(5))?,
            git_origin: expected_git_origin(&opts.api_url, opts.git_url.as_ref()),
            api_url: opts.api_url,
            token_url: opts.token_url,
            consumer_key,
            consumer_secret,
            fixed,
            retry: opts.retry,
            oauth,
            token: Mutex::new(None),
            generation: AtomicU64::new(0),
            pacer: Pacer::with_window(opts.rate_window),
        })
    }

    /// `{api}/repositories/{owner}?pagelen=100`, the owner encoded as one path segment.
    fn repos_url(&self, owner: &str) -> Url {
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .expect("http(s) API URL has a path")
            .pop_if_empty()
            .push("repositories")
            .push(owner);
        url.set_query(Some(&format!("pagelen={PAGELEN}")));
        url
    }

    /// One page, renewing the token and retrying once on 401.
    async fn get_page(
        &self,
        url: &Url,
        owner: &str,
        first: bool,
    ) -> Result<PageListing, ProviderError> {
        let mut token = self.api_auth(Renew::IfStale).await?;
        let mut renewed = false;
        loop {
            debug!(%url, "listing Bitbucket repositories");
            let token_ref = &token.0;
            let (status, body) = retrying(&self.retry, PROVIDER, url, move || {
                Box::pin(self.send_api(url, token_ref))
            })
            .await?;
            let message = || api_error_message(&body);
            return match status {
                StatusCode::OK => read_page(&body, owner, &self.git_origin).map_err(|message| {
                    ProviderError::Decode {
                        url: url.to_string(),
                        message,
                    }
                }),
                StatusCode::UNAUTHORIZED if self.fixed.is_some() => {
                    Err(self
                        .fixed_refused(&format!("Bitbucket answered 401 to {url} ({})", message())))
                }
                StatusCode::UNAUTHORIZED if !renewed => {
                    debug!(%url, "access token refused; renewing it once");
                    token = self.api_auth(Renew::IfStill(token.1)).await?;
                    renewed = true;
                    continue;
                }
                StatusCode::UNAUTHORIZED => Err(auth(format!(
                    "Bitbucket answered 401 to {url} even with a new access token ({}): check that \
                     the OAuth consumer `{}` has the Repositories → Read permission",
                    message(),
                    self.consumer_key
                ))),
                StatusCode::FORBIDDEN => Err(auth(format!(
                    "Bitbucket denied access to workspace `{owner}` ({}): {}",
                    message(),
                    self.needs()
                ))),
                s => Err(ProviderError::listing_status(
                    PROVIDER,
                    "workspace",
                    owner,
                    first,
                    s.as_u16(),
                    url,
                    message(),
                )),
            };
        }
    }

    /// One pass over every page: the listing, and whether every page reported the same `size`.
    async fn list_once(&self, owner: &str) -> Result<(Listing, bool), ProviderError> {
        let mut url = self.repos_url(owner);
        let mut visited = Pages::new(&self.api_url);
        let mut listing = Listing::default();
        let mut sizes = HashSet::new();
        loop {
            visited.visit(&url)?;
            let page = self.get_page(&url, owner, visited.count() == 1).await?;
            sizes.insert(page.size);
            listing.repos.extend(page.listing.repos);
            listing.rejected.extend(page.listing.rejected);
            let Some(next) = page.next else { break };
            url = visited.next(&next, &url, "`next` link")?;
        }
        debug!(
            owner,
            count = listing.repos.len(),
            rejected = listing.rejected.len(),
            pages = visited.count(),
            "listed Bitbucket repositories"
        );
        Ok((listing, sizes.len() <= 1))
    }

    /// One GET; 429, 5xx and connection failures come back as [`Try::Again`].
    async fn send_api(
        &self,
        url: &Url,
        token: &ApiAuth,
    ) -> Result<Try<(StatusCode, Vec<u8>)>, ProviderError> {
        self.pacer.wait().await;
        let request = self.api_http.get(url.clone());
        let sent = token
            .apply(request)
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Ok(Try::again(Transient::Transport(crate::error::chain(&e)))),
        };
        let status = resp.status();
        self.pacer.observe(resp.headers());
        if let Some(why) = Transient::from_status(status) {
            let retry_after = parse_retry_after(resp.headers());
            return Ok(Try::Again { why, retry_after });
        }
        Ok(match read_body(resp, url).await? {
            Try::Done(body) => Try::Done((status, body)),
            Try::Again { why, retry_after } => Try::Again { why, retry_after },
        })
    }
}

#[async_trait]
impl Provider for BitbucketProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    /// Bitbucket pages by offset, so a repository created or deleted while we page shifts the
    /// later pages by one and one repository would silently be missed (or seen twice). The
    /// pages' `size` is no count to trust (it can disagree with the values), but a `size` that
    /// changes between pages of one listing is a sure sign of such a shift: then the listing
    /// is made again, up to [`LISTING_ATTEMPTS`] times, until one pass sees a steady `size`.
    /// If none does, the passes are merged (a deleted repository then fails its clone, which
    /// is reported, rather than a live one going missing) and a warning says so.
    async fn list_repos(&self, owner: &str) -> Result<Listing, ProviderError> {
        let mut merged = Listing::default();
        for attempt in 1..=LISTING_ATTEMPTS {
            let (listing, steady) = self.list_once(owner).await?;
            if steady {
                return Ok(listing);
            }
            tracing::warn!(
                owner,
                attempt,
                "repositories were created or deleted while listing (the page totals changed); \
                 listing again so none is missed"
            );
            for repo in listing.repos {
                if !merged.repos.iter().any(|r| r.full_name == repo.full_name) {
                    merged.repos.push(repo);
                }
            }
            for r in listing.rejected {
                if !merged.rejected.contains(&r) {
                    merged.rejected.push(r);
                }
            }
        }
        tracing::warn!(
            owner,
            "the listing kept changing; backing up the union of {LISTING_ATTEMPTS} listings"
        );
        Ok(merged)
    }

    /// With `refresh`, callers that were refused the token current when they called share one
    /// renewal: whoever gets the lock first renews, the rest find a newer generation and reuse it.
    /// One token covers every repository the consumer can read: `repo` is not needed.
    async fn git_auth(
        &self,
        repo: &RemoteRepo,
        refresh: bool,
    ) -> Result<Option<GitAuth>, ProviderError> {
        if let Some(fixed) = &self.fixed {
            return self.fixed_git_auth(fixed, repo, refresh).map(Some);
        }
        let renew = match refresh {
            true => Renew::IfStill(self.generation.load(Ordering::Acquire)),
            false => Renew::IfStale,
        };
        Ok(Some(GitAuth {
            username: TOKEN_GIT_USER.to_string(),
            password: self.token(renew).await?.secret,
        }))
    }

    async fn login_check(&self, owner: Option<&str>) -> Result<String, ProviderError> {
        self.login_summary(owner).await
    }

    fn login_help(&self) -> Option<String> {
        self.fixed.is_none().then(|| {
            format!(
                "If the consumer has not been authorised yet, open this URL while logged in to \
                 Bitbucket and grant access:\n  {}",
                self.consent_url()
            )
        })
    }
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

    fn provider() -> BitbucketProvider {
        BitbucketProvider::new(BitbucketOptions::new("ckey", Secret::new("s3cr3t-value"))).unwrap()
    }

    #[test]
    fn workspace_is_one_encoded_path_segment() {
        let p = provider();
        assert_eq!(
            p.repos_url("a b/../c?").as_str(),
            "https://api.bitbucket.org/2.0/repositories/a%20b%2F..%2Fc%3F?pagelen=100"
        );
    }

    #[test]
    fn consent_url_uses_the_token_host() {
        assert_eq!(
            provider().consent_url(),
            "https://bitbucket.org/site/oauth2/authorize?client_id=ckey&response_type=code"
        );
        let mut opts = BitbucketOptions::new("k y", Secret::new("s"));
        opts.token_url = Url::parse("http://127.0.0.1:9/site/oauth2/access_token").unwrap();
        let p = BitbucketProvider::new(opts).unwrap();
        assert_eq!(
            p.consent_url(),
            "http://127.0.0.1:9/site/oauth2/authorize?client_id=k+y&response_type=code"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = provider();
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("s3cr3t-value"), "{dbg}");
        assert!(dbg.contains("ckey"), "{dbg}");
        assert_eq!(p.scrub("bad secret s3cr3t-value"), "bad secret ***");
    }

    #[test]
    fn empty_credentials_are_refused_early() {
        let err = BitbucketProvider::new(BitbucketOptions::new("", Secret::new("x"))).unwrap_err();
        assert!(matches!(err, ProviderError::Auth { .. }), "{err}");
    }
}
