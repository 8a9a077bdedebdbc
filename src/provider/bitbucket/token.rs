//! The OAuth half: client-credentials grant, the token cache and what token errors mean.
//!
//! Kept apart from listing because it is the part that touches secrets: everything that sees the
//! consumer secret or an access token is in this file, which makes the "never printed" rule
//! reviewable in one place.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, HttpRequest,
    HttpResponse, RequestTokenError, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde::Deserialize;
use tracing::debug;
use url::Url;

use super::{BitbucketProvider, PROVIDER, auth};
use crate::error::chain;
use crate::http::BodyError;
use crate::provider::ProviderError;
use crate::provider::http::{Transient, Try, parse_retry_after, retrying};
pub(super) use crate::provider::renew::Renew;
use crate::provider::renew::needs_renewal;
use crate::secret::Secret;
use crate::text::quote;

/// Used when the token answer has no `expires_in` (Bitbucket always sends 7200).
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);

/// Bitbucket answered `scopes` (plural, space-separated) until 2026-05-04; since then `scope`,
/// as RFC 6749 says, which `oauth2` reads itself. Both are read.
#[derive(Debug, Deserialize, serde::Serialize)]
pub(super) struct BitbucketTokenFields {
    #[serde(default)]
    scopes: Option<String>,
}
impl ExtraTokenFields for BitbucketTokenFields {}

type TokenAnswer = StandardTokenResponse<BitbucketTokenFields, BasicTokenType>;
pub(super) type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Client-credentials with HTTP Basic client auth, the only client auth Bitbucket documents.
pub(super) fn oauth_client(key: &str, secret: &Secret, token_url: &Url) -> OAuthClient {
    oauth2::Client::new(ClientId::new(key.to_string()))
        .set_client_secret(ClientSecret::new(secret.expose().to_string()))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::from_url(token_url.clone()))
}

#[derive(Clone)]
pub(super) struct CachedToken {
    pub(super) secret: Secret,
    obtained: Instant,
    pub(super) lifetime: Duration,
    pub(super) generation: u64,
    pub(super) scopes: Vec<String>,
}

impl CachedToken {
    fn needs_renewal(&self, now: Instant) -> bool {
        needs_renewal(self.lifetime, now.saturating_duration_since(self.obtained))
    }
}

impl BitbucketProvider {
    /// A copy of the cached token, renewed first per `renew`.
    pub(super) async fn token(&self, renew: Renew) -> Result<CachedToken, ProviderError> {
        let mut slot = self.token.lock().await;
        let now = Instant::now();
        if let Some(t) = slot.as_ref()
            && renew.reuses(t.generation, t.needs_renewal(now))
        {
            return Ok(t.clone());
        }
        let fresh = self.request_token().await?;
        self.generation.store(fresh.generation, Ordering::Release);
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// One client-credentials grant, retried on transient failures. Caller holds the lock.
    async fn request_token(&self) -> Result<CachedToken, ProviderError> {
        debug!(token_url = %self.token_url, "requesting a Bitbucket access token");
        let obtained = Instant::now();
        // An owned client (an `Arc` clone) keeps the future free of borrowed lifetimes, which
        // `oauth2`'s higher-ranked `AsyncHttpClient` bound would otherwise make non-`Send`.
        let http = |req: HttpRequest| token_http(self.token_http.clone(), req);
        let http = &http;
        let answer = retrying(&self.retry, PROVIDER, &self.token_url, move || {
            Box::pin(async move {
                match self
                    .oauth
                    .exchange_client_credentials()
                    .request_async(http)
                    .await
                {
                    Ok(t) => Ok(Try::Done(t)),
                    Err(RequestTokenError::Request(TokenHttpError::Transient {
                        why,
                        retry_after,
                    })) => Ok(Try::Again { why, retry_after }),
                    Err(e) => Err(self.token_error(e)),
                }
            })
        })
        .await?;
        let lifetime = answer.expires_in().unwrap_or(ASSUMED_LIFETIME);
        let scopes = match &answer.extra_fields().scopes {
            Some(s) => s.split_whitespace().map(str::to_string).collect(),
            None => answer
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        };
        let generation = self.generation.load(Ordering::Acquire) + 1;
        debug!(
            lifetime_s = lifetime.as_secs(),
            ?scopes,
            generation,
            "got a Bitbucket access token"
        );
        Ok(CachedToken {
            secret: Secret::new(answer.access_token().secret().clone()),
            obtained,
            lifetime,
            generation,
            scopes,
        })
    }

    /// Turns a token endpoint failure into an error that says what to fix.
    fn token_error(
        &self,
        e: RequestTokenError<TokenHttpError, BasicErrorResponse>,
    ) -> ProviderError {
        let url = self.token_url.to_string();
        let message = match e {
            RequestTokenError::ServerResponse(r) => {
                let code = quote(r.error().as_ref());
                let description = r.error_description().map(|d| quote(d)).unwrap_or_default();
                return auth(self.scrub(&oauth_error_message(
                    &code,
                    &description,
                    &self.consumer_key,
                    &self.consent_url(),
                )));
            }
            RequestTokenError::Request(TokenHttpError::Transport(m)) => {
                return ProviderError::Transport { url, message: m };
            }
            RequestTokenError::Request(TokenHttpError::Transient { why, .. }) => why.describe(),
            RequestTokenError::Request(TokenHttpError::TooLarge(m)) => m,
            RequestTokenError::Request(TokenHttpError::Status { status, detail }) => {
                return ProviderError::Http {
                    provider: PROVIDER,
                    status,
                    url,
                    message: detail,
                };
            }
            // The body may hold a token: report only where parsing failed.
            RequestTokenError::Parse(e, _) => {
                format!(
                    "the token answer is not the documented JSON (at `{}`)",
                    e.path()
                )
            }
            RequestTokenError::Other(m) => m,
        };
        ProviderError::Decode {
            url,
            message: self.scrub(&message),
        }
    }

    pub(super) fn scrub(&self, text: &str) -> String {
        text.replace(self.consumer_secret.expose(), "***")
    }
}

/// `repository` and its stronger forms; Bitbucket's consumer form ticks Repositories → Read
/// whenever Pull requests is ticked, so those imply it too.
pub(super) fn grants_repository_read(scope: &str) -> bool {
    scope.contains("repository") || scope.starts_with("pullrequest")
}

/// Guidance for an OAuth error answer from the token endpoint.
fn oauth_error_message(code: &str, description: &str, key: &str, consent_url: &str) -> String {
    let said = if description.is_empty() {
        code.to_string()
    } else {
        format!("{code}: {description}")
    };
    if description.to_ascii_lowercase().contains("public") {
        format!(
            "the OAuth consumer `{key}` is marked public ({said}): edit the consumer in Bitbucket \
             (workspace settings → OAuth consumers → Edit) and tick \"This is a private consumer\""
        )
    } else if code == "invalid_client" || description.contains("Invalid OAuth client credentials") {
        format!(
            "the OAuth consumer key or secret is wrong ({said}): check the key `{key}` and its \
             secret, set with --consumer-key/--consumer-secret (or --consumer-secret-file), \
             BITBUCKET_CONSUMER_KEY/BITBUCKET_CONSUMER_SECRET, or `git-offsite login`"
        )
    } else if description.to_ascii_lowercase().contains("callback") {
        format!(
            "the OAuth consumer `{key}` cannot issue tokens yet ({said}): edit the consumer in \
             Bitbucket and set a Callback URL (any, e.g. http://localhost), then open \
             {consent_url} as a workspace admin and grant access"
        )
    } else {
        format!(
            "the OAuth consumer `{key}` was refused a token ({said}): if it has not been \
             authorised, open {consent_url} as a workspace admin and grant access; also check \
             that it is a private consumer with the Repositories → Read permission"
        )
    }
}

/// Why the token HTTP client did not hand a response to `oauth2`.
#[derive(Debug, thiserror::Error)]
enum TokenHttpError {
    #[error("{0}")]
    Transport(String),
    #[error("{}", why.describe())]
    Transient {
        why: Transient,
        retry_after: Option<Duration>,
    },
    /// An answer that is neither a token nor an OAuth error (a redirect, an HTML page).
    #[error("HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    /// An answer over [`crate::http::TOKEN_CAP`]: no token is that large.
    #[error("{0}")]
    TooLarge(String),
}

/// The `oauth2` HTTP client: reqwest without redirects. Transient statuses and answers `oauth2`
/// could only misparse become errors here; bodies are never quoted (they may hold tokens).
async fn token_http(
    client: reqwest::Client,
    req: HttpRequest,
) -> Result<HttpResponse, TokenHttpError> {
    let req = reqwest::Request::try_from(req).map_err(|e| TokenHttpError::Transport(chain(&e)))?;
    let resp = match client.execute(req).await {
        Ok(resp) => resp,
        Err(e) => {
            return Err(TokenHttpError::Transient {
                why: Transient::Transport(chain(&e)),
                retry_after: None,
            });
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    if let Some(why) = Transient::from_status(status) {
        return Err(TokenHttpError::Transient {
            why,
            retry_after: parse_retry_after(&headers),
        });
    }
    if status.is_redirection() {
        let to = headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("?")
            .to_string();
        return Err(TokenHttpError::Status {
            status: status.as_u16(),
            detail: format!("the token endpoint redirects to {to}; check --bitbucket-token-url"),
        });
    }
    // Token and OAuth error alike are parsed, so both are read whole, up to the cap.
    let body = match crate::http::read_capped(resp, crate::http::TOKEN_CAP).await {
        Ok(b) => b.to_vec(),
        Err(BodyError::Transport(message)) => {
            return Err(TokenHttpError::Transient {
                why: Transient::Transport(message),
                retry_after: None,
            });
        }
        Err(e) => return Err(TokenHttpError::TooLarge(e.to_string())),
    };
    let is_oauth_error = || {
        serde_json::from_slice::<serde_json::Value>(&body)
            .is_ok_and(|v| v.get("error").is_some_and(|e| e.is_string()))
    };
    if status != StatusCode::OK && !is_oauth_error() {
        return Err(TokenHttpError::Status {
            status: status.as_u16(),
            detail:
                "the token endpoint did not answer with an OAuth error; check --bitbucket-token-url"
                    .into(),
        });
    }
    let mut out = http::Response::builder().status(status);
    if let Some(h) = out.headers_mut() {
        *h = headers;
    }
    out.body(body)
        .map_err(|e| TokenHttpError::Transport(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_say_what_to_fix() {
        let m = oauth_error_message(
            "unauthorized_client",
            "Invalid OAuth client credentials",
            "k",
            "U",
        );
        assert!(
            m.contains("--consumer-secret") && m.contains("BITBUCKET_CONSUMER_KEY"),
            "{m}"
        );
        let m = oauth_error_message(
            "invalid_grant",
            "Cannot use client_credentials with a consumer marked as \"public\".",
            "k",
            "U",
        );
        assert!(m.contains("This is a private consumer"), "{m}");
        let m = oauth_error_message("access_denied", "", "k", "https://consent");
        assert!(m.contains("https://consent"), "{m}");
        let m = oauth_error_message(
            "invalid_request",
            "No callback uri defined for the OAuth client.",
            "k",
            "https://consent",
        );
        assert!(
            m.contains("Callback URL") && m.contains("https://consent"),
            "{m}"
        );
    }
}
