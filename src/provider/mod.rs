//! Hosting services: list an owner's repositories and hand out git credentials.
//!
//! A provider knows the service's API and its auth; it knows nothing about git. The pipeline
//! asks it for the list once, then for credentials before each clone (a provider renews its
//! token when it is close to expiry, or when `refresh` says the last one was refused). Adding a
//! host is one module implementing [`Provider`] (its flags, settings, credentials and `login`
//! check included) plus one variant in [`choose`], the one place providers are built.

pub mod bitbucket;
pub mod choose;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod http;
pub mod pages;
pub mod renew;
pub mod urls;

use std::fmt::Debug;

use async_trait::async_trait;
use serde::Serialize;
use url::Url;

pub use self::choose::{ProviderArgs, ProviderConfig, ProviderKind};
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

/// A listed entry that cannot be backed up as it is (an unsafe slug, a clone link on another
/// host, a broken entry): recorded as a failed repository with `reason`; the run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The slug as listed, escaped for display; `(none)` when the entry had none.
    pub slug: String,
    /// The full name as listed, escaped for display, else `owner/slug`.
    pub full_name: String,
    pub reason: String,
}

/// An owner's repositories as listed: what can be backed up, and what cannot (and why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub repos: Vec<RemoteRepo>,
    pub rejected: Vec<Rejected>,
}

/// The longest slug accepted: far beyond Bitbucket's and GitHub's 100-character limits,
/// and short enough for a file name with `.bundle` on any file system.
pub const MAX_SLUG_LEN: usize = 200;

/// Why `slug` cannot name a bundle, if it cannot: letters, digits, `.`, `_` and `-` only, at
/// most [`MAX_SLUG_LEN`] bytes, not starting with `.` or `-` (no hidden files, no `..`, no
/// option-like names).
pub fn slug_problem(slug: &str) -> Option<String> {
    if slug.is_empty() {
        return Some("the slug is empty".into());
    }
    if slug.len() > MAX_SLUG_LEN {
        return Some(format!("the slug is longer than {MAX_SLUG_LEN} bytes"));
    }
    if slug.starts_with(['.', '-']) {
        return Some("the slug starts with `.` or `-`".into());
    }
    if let Some(c) = slug
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "the slug holds {}, not only letters, digits, `.`, `_` and `-`",
            crate::text::escape(&format!("{c:?}"))
        ));
    }
    None
}

/// The most `/`-separated segments a slug may have: GitLab's deepest nesting (20 levels of
/// subgroups, `doc/user/group/subgroups`) plus the project.
pub const MAX_SLUG_DEPTH: usize = 21;

/// Why `slug` cannot name a bundle key below the date folder, if it cannot: one or more
/// `/`-separated segments (a GitLab project in a subgroup is `sub/project`), each passing
/// [`slug_problem`] (so no empty segment, no `.`/`..`, no leading or trailing `/`), at most
/// [`MAX_SLUG_DEPTH`] of them; and no folder segment named like a file the layout writes
/// (`x.bundle`, `x.bundle.age`, `manifest.json`), which would collide with a bundle or the
/// manifest on a file system.
pub fn slug_path_problem(slug: &str) -> Option<String> {
    let segments: Vec<&str> = slug.split('/').collect();
    if segments.len() > MAX_SLUG_DEPTH {
        return Some(format!(
            "the slug has more than {MAX_SLUG_DEPTH} `/`-separated parts"
        ));
    }
    for (i, segment) in segments.iter().enumerate() {
        let shown = crate::text::escape(segment);
        if let Some(problem) = slug_problem(segment) {
            return Some(match segments.len() {
                1 => problem,
                _ => format!("its part `{shown}`: {problem}"),
            });
        }
        let folder = i + 1 < segments.len();
        if folder && crate::layout::is_file_name(segment) {
            return Some(format!(
                "its folder `{shown}` is named like a bundle or manifest file"
            ));
        }
    }
    None
}

/// The provider-neutral rules every listing goes through before anything is cloned: a sane
/// slug ([`slug_path_problem`]), `full_name == owner/slug`, and one repository per slug. A repository listed twice
/// with the same clone URL (pages that shifted) is kept once, with a warning; twice with
/// different URLs, it is rejected: which one is real cannot be known, and both would be
/// written to one key.
pub fn vet(owner: &str, listing: Listing) -> Listing {
    let mut out = Listing {
        repos: Vec::with_capacity(listing.repos.len()),
        rejected: listing.rejected,
    };
    let mut by_slug: std::collections::HashMap<String, usize> = Default::default();
    let mut conflicted: std::collections::BTreeSet<String> = Default::default();
    for repo in listing.repos {
        let reject = |reason: String| Rejected {
            slug: crate::text::escape(&repo.slug).into_owned(),
            full_name: crate::text::escape(&repo.full_name).into_owned(),
            reason,
        };
        if let Some(problem) = slug_path_problem(&repo.slug) {
            out.rejected
                .push(reject(format!("unsafe name from the listing: {problem}")));
            continue;
        }
        let expected = format!("{owner}/{}", repo.slug);
        if repo.full_name != expected {
            let reason = format!(
                "the listing names it `{}`, not `{expected}`",
                crate::text::escape(&repo.full_name)
            );
            out.rejected.push(reject(reason));
            continue;
        }
        match by_slug.get(&repo.slug) {
            None => {
                by_slug.insert(repo.slug.clone(), out.repos.len());
                out.repos.push(repo);
            }
            Some(&i) if out.repos[i].clone_url == repo.clone_url => {
                tracing::warn!(repo = %repo.full_name, "listed twice; backed up once");
            }
            Some(_) => {
                conflicted.insert(repo.slug.clone());
            }
        }
    }
    if !conflicted.is_empty() {
        out.repos.retain(|r| {
            if !conflicted.contains(&r.slug) {
                return true;
            }
            out.rejected.push(Rejected {
                slug: r.slug.clone(),
                full_name: r.full_name.clone(),
                reason: "listed more than once with different clone URLs: not backed up, \
                         since both would be written to one key"
                    .into(),
            });
            false
        });
    }
    out
}

/// Parses a repository's clone URL from a listing (`what` names it as the host does: "clone
/// link", "clone URL") and drops any user info: a host may name the caller there
/// (`https://someone@bitbucket.org/…`), and credentials go through the git credential callback
/// only. [`vet`] then checks its host.
pub fn clone_url(href: &str, what: &str) -> Result<Url, String> {
    let shown = crate::text::escape(href);
    let mut url =
        Url::parse(href).map_err(|e| format!("its {what} {shown:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("its {what} {shown:?} is not http(s)"));
    }
    // Cannot fail for http(s) URLs, which always have a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok(url)
}

/// Lists `owner` through `provider` and applies [`vet`]: what every caller uses.
pub async fn list_vetted(provider: &dyn Provider, owner: &str) -> Result<Listing, ProviderError> {
    Ok(vet(owner, provider.list_repos(owner).await?))
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
        "{provider} {kind} `{owner}` was not found (or these credentials cannot see it): check --owner"
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

    /// A listing answer no host-specific rule explained: 404 on the owner's first page is an
    /// unknown owner (`kind` is the host's word for one: "workspace", "account"), anything else
    /// an HTTP error quoting the host's `message`.
    pub fn listing_status(
        provider: &'static str,
        kind: &'static str,
        owner: &str,
        first: bool,
        status: u16,
        url: &Url,
        message: String,
    ) -> Self {
        match status {
            404 if first => ProviderError::OwnerNotFound {
                provider,
                kind,
                owner: owner.to_string(),
            },
            status => ProviderError::Http {
                provider,
                status,
                url: url.to_string(),
                message,
            },
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
    /// retrying transient failures; non-git repositories are left out. An entry that cannot be
    /// backed up (broken, or its clone link on a host the credentials are not for) is in
    /// `rejected`: one bad entry never fails the listing. Callers go through [`list_vetted`].
    async fn list_repos(&self, owner: &str) -> Result<Listing, ProviderError>;

    /// Credentials for cloning `repo` (a host may scope tokens per repository or
    /// installation). Cached while they have comfortably long to live; `refresh` forces new
    /// ones (the caller saw the last ones refused). `None`: the host is cloned without
    /// credentials (a public repository of the `urls` provider with no netrc entry).
    async fn git_auth(
        &self,
        repo: &RemoteRepo,
        refresh: bool,
    ) -> Result<Option<GitAuth>, ProviderError>;

    /// For `git-offsite login`: proves the credentials with a fresh request and, with an
    /// owner, that its repositories can be listed. `Ok` is one line telling the user so.
    async fn login_check(&self, owner: Option<&str>) -> Result<String, ProviderError>;

    /// Advice for a user whose [`Provider::login_check`] failed, when the host has some
    /// (Bitbucket: the page where an admin grants the consumer access).
    fn login_help(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(slug: &str, full_name: &str, url: &str) -> RemoteRepo {
        RemoteRepo {
            slug: slug.into(),
            full_name: full_name.into(),
            clone_url: Url::parse(url).unwrap(),
            size: None,
            updated_on: None,
            default_branch: Some("main".into()),
            is_private: None,
        }
    }

    #[test]
    fn slugs_are_letters_digits_dot_underscore_dash() {
        for ok in ["api", "a.b_c-d", "A1", "x".repeat(MAX_SLUG_LEN).as_str()] {
            assert_eq!(slug_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "-rf",
            "a/b",
            "a b",
            "a\u{1b}[31m",
            "ü",
            "x".repeat(MAX_SLUG_LEN + 1).as_str(),
        ] {
            assert!(slug_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn nested_slugs_check_every_part() {
        for ok in ["sub/api", "a/b/c", "team.v2/x"] {
            assert_eq!(slug_path_problem(ok), None, "{ok}");
        }
        let deep = vec!["a"; MAX_SLUG_DEPTH + 1].join("/");
        for bad in [
            "",
            "/api",
            "api/",
            "a//b",
            "../api",
            "a/../b",
            "./a",
            "a/.hidden",
            "a/-rf",
            "a\\b/c",
            "a b/c",
            "x.bundle/y",
            "x.bundle.age/y",
            "manifest.json/y",
            deep.as_str(),
        ] {
            assert!(slug_path_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(
            slug_path_problem("sub/x.bundle"),
            None,
            "a file part may end so"
        );
    }

    #[test]
    fn vetting_rejects_bad_names_and_conflicting_duplicates() {
        let u = "https://bitbucket.org/acme/x.git";
        let listing = Listing {
            repos: vec![
                repo("api", "acme/api", "https://bitbucket.org/acme/api.git"),
                repo("../etc", "acme/../etc", u),
                repo("sub/../../etc", "acme/sub/../../etc", u),
                repo("web", "other/web", u),
                repo("evil\r\u{1b}[2K", "acme/evil", u),
                repo("api", "acme/api", "https://bitbucket.org/acme/api.git"),
                repo("dup", "acme/dup", "https://bitbucket.org/acme/dup.git"),
                repo("dup", "acme/dup", "https://bitbucket.org/acme/dup2.git"),
            ],
            rejected: vec![],
        };
        let out = vet("acme", listing);
        let kept: Vec<&str> = out.repos.iter().map(|r| r.slug.as_str()).collect();
        assert_eq!(kept, ["api"]);
        let rejected: Vec<(&str, &str)> = out
            .rejected
            .iter()
            .map(|r| (r.slug.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(rejected.len(), 5, "{rejected:?}");
        assert!(rejected[0].1.contains("unsafe name"), "{rejected:?}");
        assert_eq!(rejected[1].0, "sub/../../etc");
        assert!(rejected[1].1.contains("unsafe name"), "{rejected:?}");
        assert!(rejected[2].1.contains("not `acme/web`"), "{rejected:?}");
        assert!(!rejected[3].0.contains(['\r', '\u{1b}']), "{rejected:?}");
        assert_eq!(rejected[4].0, "dup");
        assert!(rejected[4].1.contains("more than once"), "{rejected:?}");
    }
}
