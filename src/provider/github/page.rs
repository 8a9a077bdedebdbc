//! The wire format of GitHub's repository listings and its mapping to [`RemoteRepo`].
//!
//! Pure functions over bytes and header values, so every quirk (the `Link` header, an
//! installation listing that is an object rather than an array, `size` in kilobytes, a
//! `default_branch` GitHub reports even for an empty repository) is unit-tested without a server.
//! Field meanings: `github/rest-api-description` (repository schema), NOTES §5.

use serde::Deserialize;
use url::Url;

use crate::provider::{Rejected, RemoteRepo, clone_url};

/// GitHub's error document `{"message": …, "documentation_url": …}`: the message, else the
/// start of the body; quoted (escaped, cut short) either way.
pub(super) fn api_error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => crate::text::quote(&e.message),
        Err(_) => crate::text::quote(&String::from_utf8_lossy(body)),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRepo {
    name: Option<String>,
    full_name: Option<String>,
    clone_url: Option<String>,
    #[serde(default)]
    pub(super) fork: bool,
    #[serde(default)]
    pub(super) archived: bool,
    default_branch: Option<String>,
    /// Kilobytes, "calculated hourly"; 0 for a new repository whatever it holds.
    size: Option<u64>,
    pushed_at: Option<String>,
    updated_at: Option<String>,
    private: Option<bool>,
}

/// `GET /installation/repositories` answers an object, not an array.
#[derive(Debug, Deserialize)]
struct InstallationPage {
    repositories: Vec<RawRepo>,
}

/// One page: an array (`/orgs/{org}/repos`, `/users/{u}/repos`) or, for `installation`, the
/// installation listing's object.
pub(super) fn parse_page(body: &[u8], installation: bool) -> Result<Vec<RawRepo>, String> {
    let parsed = if installation {
        serde_json::from_slice::<InstallationPage>(body).map(|p| p.repositories)
    } else {
        serde_json::from_slice::<Vec<RawRepo>>(body)
    };
    parsed.map_err(|e| format!("not a page of repositories: {e}"))
}

impl RawRepo {
    /// The repository as the pipeline sees it, or why it cannot be cloned as listed (recorded
    /// as a failed repository, never skipped). A clone URL off `git_origin` is refused: the
    /// token would be sent there.
    pub(super) fn into_remote(self, owner: &str, git_origin: &Url) -> Result<RemoteRepo, Rejected> {
        let shown = |s: &str| crate::text::escape(s).into_owned();
        let slug = self.name.clone().or_else(|| {
            (self.full_name.as_deref())
                .and_then(|f| f.rsplit('/').next())
                .map(str::to_string)
        });
        let rejected = |reason: String| Rejected {
            slug: slug
                .as_deref()
                .map(shown)
                .unwrap_or_else(|| "(none)".into()),
            full_name: match (&self.full_name, &slug) {
                (Some(f), _) => shown(f),
                (None, Some(s)) => format!("{owner}/{}", shown(s)),
                (None, None) => format!("{owner}/(none)"),
            },
            reason,
        };
        let Some(full_name) = self.full_name.clone() else {
            return Err(rejected("the listing gives it no `full_name`".into()));
        };
        let Some(slug) = slug.clone() else {
            return Err(rejected("the listing gives it no `name`".into()));
        };
        let Some(href) = self.clone_url.as_deref() else {
            return Err(rejected("the listing gives it no `clone_url`".into()));
        };
        let clone_url = clone_url(href, "clone URL").map_err(&rejected)?;
        if !crate::config::url::same_origin(&clone_url, git_origin) {
            return Err(rejected(format!(
                "its clone URL is on {}, not on the git host {}: not cloned, so the token is \
                 not sent there (set --github-git-url if that host is right)",
                crate::config::url::redact(&clone_url),
                crate::config::url::redact(git_origin)
            )));
        }
        // GitHub names a default branch even for an empty repository, and `size` is 0 both
        // for an empty one and for one created within the hour. Only a non-zero size proves
        // the repository has content; then a fetch without refs is a failure, not `empty`.
        let size = self.size.filter(|&kb| kb > 0);
        Ok(RemoteRepo {
            slug,
            full_name,
            clone_url,
            size: size.map(|kb| kb.saturating_mul(1024)),
            updated_on: self.pushed_at.or(self.updated_at),
            default_branch: size.and(self.default_branch),
            is_private: self.private,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Url {
        Url::parse("https://github.com").unwrap()
    }

    #[test]
    fn pages_map_fields_sizes_and_empty_repositories() {
        let body = br#"[
          {"name":"api","full_name":"acme/api","clone_url":"https://github.com/acme/api.git",
           "fork":false,"archived":false,"default_branch":"main","size":12,"private":true,
           "pushed_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-01T00:00:00Z"},
          {"name":"new","full_name":"acme/new","clone_url":"https://x:y@github.com/acme/new.git",
           "fork":true,"archived":true,"default_branch":"main","size":0}
        ]"#;
        let repos = parse_page(body, false).unwrap();
        assert!(repos[1].fork && repos[1].archived);
        let out: Vec<_> = repos
            .into_iter()
            .map(|r| r.into_remote("acme", &origin()).unwrap())
            .collect();
        assert_eq!(
            out[0],
            RemoteRepo {
                slug: "api".into(),
                full_name: "acme/api".into(),
                clone_url: Url::parse("https://github.com/acme/api.git").unwrap(),
                size: Some(12 * 1024),
                updated_on: Some("2026-01-02T03:04:05Z".into()),
                default_branch: Some("main".into()),
                is_private: Some(true),
            }
        );
        assert_eq!(out[1].clone_url.as_str(), "https://github.com/acme/new.git");
        assert_eq!(out[1].default_branch, None, "size 0 may be empty");
        assert_eq!(out[1].size, None);
    }

    #[test]
    fn the_installation_listing_is_an_object() {
        let body = br#"{"total_count":1,"repository_selection":"all","repositories":[
            {"name":"a","full_name":"u/a","clone_url":"https://github.com/u/a.git"}]}"#;
        assert_eq!(parse_page(body, true).unwrap().len(), 1);
        assert!(parse_page(body, false).is_err());
        assert!(parse_page(br#"[]"#, true).is_err());
    }

    #[test]
    fn clone_urls_elsewhere_or_missing_are_rejected() {
        let body = br#"[
          {"name":"a","full_name":"w/a","clone_url":"https://evil.example/w/a.git"},
          {"name":"b","full_name":"w/b","clone_url":"http://github.com/w/b.git"},
          {"name":"c","full_name":"w/c"},
          {"name":"d","full_name":"w/d","clone_url":"git@github.com:w/d.git"}
        ]"#;
        let out: Vec<_> = parse_page(body, false)
            .unwrap()
            .into_iter()
            .map(|r| r.into_remote("w", &origin()).unwrap_err())
            .collect();
        assert!(
            out[0]
                .reason
                .contains("not on the git host https://github.com"),
            "{out:?}"
        );
        assert!(out[1].reason.contains("not on the git host"), "{out:?}");
        assert!(out[2].reason.contains("no `clone_url`"), "{out:?}");
        assert!(
            out[3].reason.contains("not a URL") || out[3].reason.contains("http(s)"),
            "{out:?}"
        );
    }

    #[test]
    fn error_messages_prefer_githubs_text() {
        assert_eq!(
            api_error_message(
                br#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}"#
            ),
            "Not Found"
        );
        assert_eq!(api_error_message(b"<html>"), "<html>");
    }
}
