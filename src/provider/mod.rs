//! Hosting services: list an owner's repositories and hand out git credentials.
//!
//! A provider knows the service's API and its auth; it knows nothing about git. The pipeline
//! asks it for the list once, then for credentials before each clone (a provider renews its
//! token when it is close to expiry, or when `refresh` says the last one was refused). Adding a
//! host is one new file implementing [`Provider`].

pub mod bitbucket;

use std::fmt::Debug;

use async_trait::async_trait;
use serde::Serialize;
use url::Url;

use crate::error::exit;
use crate::secret::Secret;

/// One repository as the hosting service describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteRepo {
    /// URL-safe name inside the owner (`acme-api`); also the bundle's file name.
    pub slug: String,
    /// `owner/slug`.
    pub full_name: String,
    /// HTTPS clone URL with no user info (credentials go through [`GitAuth`] only).
    pub clone_url: Url,
    /// Size in bytes as reported by the service, when it reports one.
    pub size: Option<u64>,
    /// Last update, RFC 3339, as reported by the service.
    pub updated_on: Option<String>,
    /// Default branch name (`main`), `None` for an empty repository.
    pub default_branch: Option<String>,
    pub is_private: Option<bool>,
}

/// Credentials for git over HTTPS. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct GitAuth {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The service refused the credentials; the message says what to fix.
    #[error("{provider} authentication failed: {message}")]
    Auth {
        provider: &'static str,
        message: String,
    },
    /// The owner does not exist or is not visible to these credentials.
    #[error(
        "{provider} {kind} `{owner}` was not found (or the OAuth consumer cannot see it): check --owner"
    )]
    OwnerNotFound {
        provider: &'static str,
        kind: &'static str,
        owner: String,
    },
    /// Still rate limited after the retry budget was spent.
    #[error("{provider} rate limit still exceeded after {attempts} attempts at {url}")]
    RateLimited {
        provider: &'static str,
        url: String,
        attempts: u32,
    },
    /// Any other HTTP error status.
    #[error("{provider} API answered HTTP {status} for {url}: {message}")]
    Http {
        provider: &'static str,
        status: u16,
        url: String,
        message: String,
    },
    /// Connection-level failure (DNS, refused, reset, timeout).
    #[error("could not reach {url}: {message}")]
    Transport { url: String, message: String },
    /// The answer did not have the documented shape.
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    /// A `next` link pointed back to a page already read.
    #[error("pagination loop: {url} was already visited; refusing to list forever")]
    PaginationLoop { url: String },
}

impl ProviderError {
    /// Worth retrying after a pause.
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::RateLimited { .. } | ProviderError::Transport { .. } => true,
            ProviderError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            ProviderError::Auth { .. } => exit::AUTH,
            ProviderError::OwnerNotFound { .. } => exit::USAGE,
            _ => exit::SOURCE,
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync + Debug {
    /// Short lower-case name written into manifests (`bitbucket`).
    fn name(&self) -> &'static str;

    /// Every git repository of `owner`, in the service's order. Follows pagination to the end,
    /// retrying transient failures; non-git repositories are left out.
    async fn list_repos(&self, owner: &str) -> Result<Vec<RemoteRepo>, ProviderError>;

    /// Credentials for cloning. Cached while they have comfortably long to live; `refresh`
    /// forces new ones (the caller saw the last ones refused).
    async fn git_auth(&self, refresh: bool) -> Result<GitAuth, ProviderError>;
}
