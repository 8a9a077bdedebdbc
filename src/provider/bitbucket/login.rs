//! `git-offsite login` for Bitbucket: proves whichever credential kind is configured and says
//! which one it used. The OAuth consumer is proven by a fresh grant (and its scopes checked);
//! access and API tokens cannot be proven without a workspace, so with `--owner` they read its
//! first page. An API token belongs to a person, so `login` says so: the consumer avoids that.

use std::time::Duration;

use url::Url;

use super::token::{CachedToken, Renew, grants_repository_read};
use super::{BitbucketProvider, Fixed, auth};
use crate::provider::ProviderError;

/// What `git-offsite login` learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCheck {
    /// Scopes Bitbucket granted (the consumer's permissions), as sent; may be empty.
    pub scopes: Vec<String>,
    /// Lifetime of the token just issued.
    pub token_lifetime: Duration,
    /// Set when an owner was given: what its first page of repositories held.
    pub first_page: Option<FirstPage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstPage {
    pub owner: String,
    /// Git repositories on the first page (at most 100).
    pub git_repos: usize,
    /// Whether more pages follow.
    pub more: bool,
}

/// Printed by `login` for an API token.
pub const PERSON_WARNING: &str = "an API token belongs to one person: the backups stop \
when that person leaves or the token expires (at most 365 days); an OAuth consumer owned by the \
workspace avoids this";

impl BitbucketProvider {
    /// For `git-offsite login` with an OAuth consumer: always asks for a new token (proving key
    /// and secret), then, with an owner, reads its first page. Errors say what to fix.
    pub async fn check_login(&self, owner: Option<&str>) -> Result<LoginCheck, ProviderError> {
        let CachedToken {
            scopes,
            lifetime: token_lifetime,
            ..
        } = self.token(Renew::Always).await?;
        if !scopes.is_empty() && !scopes.iter().any(|s| grants_repository_read(s)) {
            return Err(auth(format!(
                "the OAuth consumer `{}` was granted [{}] but not `repository`: edit the consumer in \
                 Bitbucket (workspace settings → OAuth consumers) and tick Repositories → Read",
                self.consumer_key,
                scopes.join(" ")
            )));
        }
        let first_page = match owner {
            None => None,
            Some(owner) => Some(self.first_page(owner).await?),
        };
        Ok(LoginCheck {
            scopes,
            token_lifetime,
            first_page,
        })
    }

    async fn first_page(&self, owner: &str) -> Result<FirstPage, ProviderError> {
        let page = self.get_page(&self.repos_url(owner), owner, true).await?;
        Ok(FirstPage {
            owner: owner.to_string(),
            // Every git entry, whether or not it can be backed up as listed.
            git_repos: page.listing.repos.len() + page.listing.rejected.len(),
            more: page.next.is_some(),
        })
    }

    /// The line `login` prints, naming the credential kind it checked.
    pub(super) async fn login_summary(&self, owner: Option<&str>) -> Result<String, ProviderError> {
        let (kind, warning) = match &self.fixed {
            None => {
                let check = self.check_login(owner).await?;
                return Ok(match &check.first_page {
                    Some(p) => format!("the OAuth consumer can read workspace `{}`", p.owner),
                    None => "the OAuth consumer key and secret are valid".into(),
                });
            }
            Some(Fixed::Bearer(_)) => ("access token", ""),
            Some(Fixed::Basic { .. }) => ("API token", PERSON_WARNING),
        };
        if !warning.is_empty() {
            tracing::warn!("{warning}");
        }
        Ok(match owner {
            Some(owner) => {
                let p = self.first_page(owner).await?;
                format!("the {kind} can read workspace `{}`", p.owner)
            }
            None => format!(
                "the {kind} is set but not checked: pass --owner WORKSPACE to check that it can \
                 read it"
            ),
        })
    }

    /// Where a workspace admin grants the consumer access: the token host's `authorize` page.
    pub fn consent_url(&self) -> String {
        let mut url: Url = self
            .token_url
            .join("authorize")
            .unwrap_or_else(|_| self.token_url.clone());
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("client_id", &self.consumer_key)
            .append_pair("response_type", "code");
        url.to_string()
    }
}
