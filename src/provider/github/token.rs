//! The GitHub App half: the app's JWT, finding an owner's installation, installation tokens and
//! their cache. Everything that sees the private key or a token is in this file (the personal
//! token fallback is only ever passed through), which keeps the "never printed" rule reviewable
//! in one place.
//!
//! - **JWT** (RS256, `jsonwebtoken` on the aws-lc-rs backend the TLS stack already links):
//!   `iat` 60 s in the past against clock drift, `exp` 9 min ahead (GitHub's maximum is 10 min,
//!   and asking for exactly 10 fails when clocks differ by a second; NOTES §5), `iss` the app id.
//!   A new JWT per request: signing costs a millisecond and nothing has to track its expiry.
//! - **Installation tokens** live one hour (`expires_at`); they are renewed by the shared
//!   policy ([`crate::provider::renew`]) before they run out and once when one is refused,
//!   behind one lock so a burst of workers makes one request.
//! - Errors are built from GitHub's `message` and status codes, never from request bodies or
//!   tokens; the key's parse error never quotes the key.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tracing::debug;
use url::Url;

use super::page::api_error_message;
use super::{GithubProvider, auth};
use crate::provider::ProviderError;
use crate::provider::renew::{Renew, needs_renewal};
use crate::secret::Secret;

/// How far back `iat` is set (GitHub's documented allowance for clock drift).
pub const JWT_BACKDATE: i64 = 60;
/// How long a JWT is valid for: under GitHub's 10-minute maximum, with room for a slow clock.
pub const JWT_LIFETIME: i64 = 9 * 60;
/// Used when a token answer has no parseable `expires_at` (GitHub documents one hour).
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);

/// The claims GitHub reads from an app's JWT.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppClaims {
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// A GitHub App: its id (or client id) and private key. `Debug` shows the id only.
#[derive(Clone)]
pub struct AppKey {
    pub app_id: String,
    key: EncodingKey,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKey")
            .field("app_id", &self.app_id)
            .field("key", &"***")
            .finish()
    }
}

impl AppKey {
    /// Parses the PEM private key (PKCS#1 `RSA PRIVATE KEY`, as GitHub hands it out, or
    /// PKCS#8). The error names `from`, never the key.
    pub fn new(app_id: &str, pem: &Secret, from: &str) -> Result<Self, String> {
        let app_id = app_id.trim();
        if app_id.is_empty() {
            return Err("the GitHub App id is empty: set --github-app-id or GITHUB_APP_ID".into());
        }
        let key = EncodingKey::from_rsa_pem(pem.expose().as_bytes()).map_err(|_| {
            format!(
                "{from} is not an RSA private key in PEM form: use the .pem file GitHub \
                 generated for the app (App settings → Private keys → Generate)"
            )
        })?;
        Ok(Self {
            app_id: app_id.to_string(),
            key,
        })
    }

    /// The claims of a JWT made at `now` (Unix seconds).
    pub fn claims(&self, now: i64) -> AppClaims {
        AppClaims {
            iat: now - JWT_BACKDATE,
            exp: now + JWT_LIFETIME,
            iss: self.app_id.clone(),
        }
    }

    /// A signed JWT for requests made as the app.
    pub fn jwt(&self) -> Result<Secret, ProviderError> {
        let claims = self.claims(chrono::Utc::now().timestamp());
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| auth(format!("cannot sign the GitHub App JWT: {e}")))
    }
}

/// Who an installation belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub id: u64,
    /// The account's login, as GitHub spells it.
    pub login: String,
    pub organization: bool,
}

#[derive(Debug, Deserialize)]
struct InstallationAnswer {
    id: u64,
    account: Option<Account>,
    target_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Account {
    login: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    expires_at: Option<String>,
}

#[derive(Clone)]
pub(super) struct CachedToken {
    pub(super) secret: Secret,
    obtained: Instant,
    lifetime: Duration,
    pub(super) generation: u64,
}

impl GithubProvider {
    fn app(&self) -> Result<&AppKey, ProviderError> {
        self.app
            .as_ref()
            .ok_or_else(|| auth("this needs a GitHub App (--github-app-id), not a personal token"))
    }

    /// The installation of the app on `owner`: `--github-installation-id` (checked against the
    /// owner), else `/orgs/{owner}/installation`, else `/users/{owner}/installation`; cached.
    pub(super) async fn installation(&self, owner: &str) -> Result<Installation, ProviderError> {
        let key = owner.to_ascii_lowercase();
        if let Some(i) = self.lock_installations().get(&key) {
            return Ok(i.clone());
        }
        let found = match self.installation_id {
            Some(id) => {
                let url = self.api(&["app", "installations", &id.to_string()]);
                let i = self.as_app(&url).await?.ok_or_else(|| {
                    auth(format!(
                        "GitHub App installation {id} was not found: check --github-installation-id \
                         (or leave it out to look the installation up for the owner)"
                    ))
                })?;
                if !i.login.eq_ignore_ascii_case(owner) {
                    return Err(auth(format!(
                        "GitHub App installation {id} is on `{}`, not on `{owner}`: check \
                         --github-installation-id and --owner",
                        crate::text::escape(&i.login)
                    )));
                }
                i
            }
            None => {
                let org = self.api(&["orgs", owner, "installation"]);
                match self.as_app(&org).await? {
                    Some(i) => i,
                    None => {
                        let user = self.api(&["users", owner, "installation"]);
                        self.as_app(&user)
                            .await?
                            .ok_or_else(|| ProviderError::OwnerNotFound {
                                provider: super::PROVIDER,
                                kind: "account (with the GitHub App installed)",
                                owner: owner.to_string(),
                            })?
                    }
                }
            }
        };
        debug!(
            owner,
            installation = found.id,
            "found the GitHub App installation"
        );
        self.lock_installations().insert(key, found.clone());
        Ok(found)
    }

    fn lock_installations(&self) -> std::sync::MutexGuard<'_, HashMap<String, Installation>> {
        self.installations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A GET made as the app (JWT): the installation it answers, `None` for a 404.
    async fn as_app(&self, url: &Url) -> Result<Option<Installation>, ProviderError> {
        let jwt = self.app()?.jwt()?;
        let answer = self.send(Method::GET, url, &jwt).await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(self.app_refused(s, &answer.body, url)),
        }
        let raw: InstallationAnswer =
            serde_json::from_slice(&answer.body).map_err(|e| ProviderError::Decode {
                url: url.to_string(),
                message: format!("not an installation: {e}"),
            })?;
        let account = raw.account.ok_or_else(|| ProviderError::Decode {
            url: url.to_string(),
            message: "the installation names no account".into(),
        })?;
        let kind = raw.target_type.or(account.kind).unwrap_or_default();
        Ok(Some(Installation {
            id: raw.id,
            login: account.login,
            organization: kind.eq_ignore_ascii_case("organization"),
        }))
    }

    /// For `login`: `GET /app` as the app proves the id and key. Returns the app's slug.
    pub(super) async fn check_app(&self) -> Result<String, ProviderError> {
        #[derive(Deserialize)]
        struct App {
            slug: Option<String>,
            name: Option<String>,
        }
        let url = self.api(&["app"]);
        let jwt = self.app()?.jwt()?;
        let answer = self.send(Method::GET, &url, &jwt).await?;
        if answer.status != StatusCode::OK {
            return Err(self.app_refused(answer.status, &answer.body, &url));
        }
        let app: App = serde_json::from_slice(&answer.body).map_err(|e| ProviderError::Decode {
            url: url.to_string(),
            message: format!("not an app: {e}"),
        })?;
        Ok(app.slug.or(app.name).unwrap_or_default())
    }

    /// What a refused JWT means, said as what to fix.
    fn app_refused(&self, status: StatusCode, body: &[u8], url: &Url) -> ProviderError {
        let said = api_error_message(body);
        match status {
            StatusCode::UNAUTHORIZED => auth(format!(
                "GitHub refused the app's JWT ({said}): check --github-app-id `{}` and that \
                 --github-private-key-file is a current private key of that app; a clock more \
                 than a minute off also makes GitHub refuse it",
                self.app.as_ref().map(|a| a.app_id.as_str()).unwrap_or("")
            )),
            StatusCode::FORBIDDEN => auth(format!("GitHub denied the app access ({said})")),
            s => ProviderError::Http {
                provider: super::PROVIDER,
                status: s.as_u16(),
                url: url.to_string(),
                message: said,
            },
        }
    }

    /// The token for `installation`, renewed first per `renew`.
    pub(super) async fn installation_token(
        &self,
        installation: u64,
        renew: Renew,
    ) -> Result<CachedToken, ProviderError> {
        let mut cache = self.tokens.lock().await;
        let now = Instant::now();
        if let Some(t) = cache.get(&installation) {
            let stale = needs_renewal(t.lifetime, now.saturating_duration_since(t.obtained));
            if renew.reuses(t.generation, stale) {
                return Ok(t.clone());
            }
        }
        let fresh = self.request_token(installation).await?;
        self.lock_generations()
            .insert(installation, fresh.generation);
        cache.insert(installation, fresh.clone());
        Ok(fresh)
    }

    /// The generation of the token last issued for `installation` (0: none yet).
    pub(super) fn generation(&self, installation: u64) -> u64 {
        self.lock_generations()
            .get(&installation)
            .copied()
            .unwrap_or(0)
    }

    fn lock_generations(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `POST /app/installations/{id}/access_tokens`, retried on transient failures.
    async fn request_token(&self, installation: u64) -> Result<CachedToken, ProviderError> {
        let url = self.api(&[
            "app",
            "installations",
            &installation.to_string(),
            "access_tokens",
        ]);
        debug!(%url, "requesting a GitHub installation token");
        let jwt = self.app()?.jwt()?;
        let obtained = Instant::now();
        let answer = self.send(Method::POST, &url, &jwt).await?;
        match answer.status {
            StatusCode::CREATED | StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(auth(format!(
                    "GitHub App installation {installation} was not found (uninstalled?): \
                     install the app on the owner again"
                )));
            }
            s => return Err(self.app_refused(s, &answer.body, &url)),
        }
        // The body holds the token: a parse error says where, never what.
        let raw: TokenAnswer =
            serde_json::from_slice(&answer.body).map_err(|e| ProviderError::Decode {
                url: url.to_string(),
                message: format!(
                    "the token answer is not the documented JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        let lifetime = raw
            .expires_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                let secs = t.timestamp() - chrono::Utc::now().timestamp();
                Duration::from_secs(secs.max(0) as u64)
            })
            .unwrap_or(ASSUMED_LIFETIME);
        let generation = self.next_generation.fetch_add(1, Ordering::AcqRel) + 1;
        debug!(
            installation,
            lifetime_s = lifetime.as_secs(),
            generation,
            "got a GitHub installation token"
        );
        Ok(CachedToken {
            secret: Secret::new(raw.token),
            obtained,
            lifetime,
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_is_not_pem_is_refused_without_quoting_it() {
        let e = AppKey::new(
            "123",
            &Secret::new("not-a-key-s3cr3t"),
            "--github-private-key-file",
        )
        .unwrap_err();
        assert!(
            e.contains("--github-private-key-file") && !e.contains("s3cr3t"),
            "{e}"
        );
        let e = AppKey::new(" ", &Secret::new("x"), "f").unwrap_err();
        assert!(e.contains("--github-app-id"), "{e}");
    }
}
