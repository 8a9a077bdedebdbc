//! The Bitbucket credentials that are never renewed: a workspace, project or repository access
//! token (Bearer; git user `x-token-auth`) and a user's scoped API token (HTTP Basic with the
//! Atlassian account email; git user `x-bitbucket-api-token-auth`), NOTES §1.
//!
//! Why a file of their own: the OAuth consumer renews its token on a 401; these cannot, so a
//! refusal, by the API or by git, is the end for that credential, and the error says so
//! ("revoked or expired") and how to make a new one, instead of retrying with the same token.

use super::credential::{API_TOKEN_GIT_USER, TOKEN_GIT_USER};
use super::token::Renew;
use super::{BitbucketProvider, auth};
use crate::provider::{GitAuth, ProviderError, RemoteRepo};
use crate::secret::Secret;

/// An access or API token: sent as is on every call, never renewed.
#[derive(Debug, Clone)]
pub(super) enum Fixed {
    Bearer(Secret),
    /// HTTP Basic with the Atlassian account email (not the Bitbucket username).
    Basic {
        email: String,
        token: Secret,
    },
}

/// How one API call authenticates.
pub(super) struct ApiAuth(pub(super) Fixed);

impl ApiAuth {
    pub(super) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.0 {
            Fixed::Bearer(token) => request.bearer_auth(token.expose()),
            Fixed::Basic { email, token } => request.basic_auth(email, Some(token.expose())),
        }
    }
}

impl BitbucketProvider {
    /// The API credential of the next call: the fixed token, or the consumer's cached OAuth
    /// token (renewed per `renew`) and its generation.
    pub(super) async fn api_auth(&self, renew: Renew) -> Result<(ApiAuth, u64), ProviderError> {
        Ok(match &self.fixed {
            Some(fixed) => (ApiAuth(fixed.clone()), 0),
            None => {
                let t = self.token(renew).await?;
                (ApiAuth(Fixed::Bearer(t.secret)), t.generation)
            }
        })
    }

    /// The git credentials of a token that is never renewed. `refused`: git refused them
    /// already, and as nothing can renew them the repository fails with the reason instead
    /// of sending them again.
    pub(super) fn fixed_git_auth(
        &self,
        fixed: &Fixed,
        repo: &RemoteRepo,
        refused: bool,
    ) -> Result<GitAuth, ProviderError> {
        if refused {
            let url = crate::mirror::display_url(&repo.clone_url);
            return Err(self.fixed_refused(&format!("git was refused at {url}")));
        }
        let (username, password) = match fixed {
            Fixed::Bearer(token) => (TOKEN_GIT_USER, token.clone()),
            Fixed::Basic { token, .. } => (API_TOKEN_GIT_USER, token.clone()),
        };
        Ok(GitAuth {
            username: username.to_string(),
            password,
        })
    }

    /// A refusal (`what`: who refused what) of a token that cannot be renewed: revoked,
    /// expired, or never valid.
    pub(super) fn fixed_refused(&self, what: &str) -> ProviderError {
        auth(self.scrub(&match &self.fixed {
            Some(Fixed::Basic { email, .. }) => format!(
                "{what}: the API token of `{email}` was revoked \
                 or expired, or is not that account's: create a new one (Atlassian account → \
                 Security → API tokens, scope read:repository:bitbucket) and pass it with \
                 --api-token-file or BITBUCKET_API_TOKEN"
            ),
            _ => format!(
                "{what}: the access token was revoked or \
                 expired: create a new one with the `repository` read scope and pass it with \
                 --access-token-file or BITBUCKET_ACCESS_TOKEN"
            ),
        }))
    }

    /// What the credential needs to read a workspace, for a 403.
    pub(super) fn needs(&self) -> &'static str {
        match &self.fixed {
            None => {
                "the OAuth consumer needs Repositories → Read and must belong to a member of \
                 that workspace"
            }
            Some(Fixed::Bearer(_)) => {
                "the access token needs the `repository` read scope and must belong to that \
                 workspace (or one of its projects or repositories)"
            }
            Some(Fixed::Basic { .. }) => {
                "the API token needs the read:repository:bitbucket scope and its user must be a \
                 member of that workspace"
            }
        }
    }
}
