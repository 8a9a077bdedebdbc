//! The wire format of `GET /2.0/repositories/{workspace}` and its mapping to [`RemoteRepo`].
//!
//! Pure functions over bytes, so every quirk of a page (hg repositories, `mainbranch: null`,
//! user info in clone links) is unit-tested without a server, and [`read_page`] (what the
//! listing calls for every page) is public so the fuzz targets (`fuzz/`) and property tests
//! can feed it arbitrary bytes.

use serde::Deserialize;
use tracing::debug;
use url::Url;

use crate::provider::{Listing, Rejected, RemoteRepo, clone_url};

/// The `error.message` of a Bitbucket API error body, else the start of the body; quoted
/// (escaped, cut short) either way.
pub(super) fn api_error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => crate::text::quote(&e.error.message),
        Err(_) => crate::text::quote(&String::from_utf8_lossy(body)),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Page {
    pub(super) values: Vec<RawRepo>,
    pub(super) next: Option<String>,
    /// The total Bitbucket reports: unreliable as a count, but a change between pages means
    /// repositories were created or deleted while paging (see `list_repos`).
    pub(super) size: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRepo {
    slug: Option<String>,
    full_name: Option<String>,
    scm: Option<String>,
    links: Option<Links>,
    mainbranch: Option<Branch>,
    size: Option<u64>,
    updated_on: Option<String>,
    is_private: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Links {
    #[serde(default)]
    clone: Vec<Link>,
}

#[derive(Debug, Deserialize)]
struct Link {
    name: Option<String>,
    href: String,
}

#[derive(Debug, Deserialize)]
struct Branch {
    name: Option<String>,
}

pub(super) fn parse_page(body: &[u8]) -> Result<Page, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a page of repositories: {e}"))
}

/// One page of `GET /2.0/repositories/{workspace}`, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageListing {
    /// The page's git repositories that can be cloned as listed, and those that cannot.
    pub listing: Listing,
    /// Non-git (Mercurial) entries, skipped.
    pub skipped: usize,
    /// The `next` link, verbatim (the caller checks its host).
    pub next: Option<String>,
    /// The total the page reports: unreliable as a count (see `Page::size`).
    pub size: Option<u64>,
}

/// Reads one listing page: every entry ends up in exactly one of `listing.repos`,
/// `listing.rejected` or `skipped`. `Err` when the body is not a page at all.
pub fn read_page(body: &[u8], owner: &str, git_origin: &Url) -> Result<PageListing, String> {
    let page = parse_page(body)?;
    let mut out = PageListing {
        next: page.next,
        size: page.size,
        ..PageListing::default()
    };
    for raw in page.values {
        match raw.into_remote(owner, git_origin) {
            Ok(Some(repo)) => out.listing.repos.push(repo),
            Ok(None) => out.skipped += 1,
            Err(rejected) => out.listing.rejected.push(rejected),
        }
    }
    Ok(out)
}

impl RawRepo {
    /// `Ok(None)` for a non-git repository. A git repository that cannot be cloned as listed
    /// (no name, no https clone link, a link on a host other than `git_origin`, which the
    /// token would be sent to) is an `Err`: recorded as a failed repository, never skipped, since
    /// a silently missing repository is the worst outcome for a backup.
    pub(super) fn into_remote(
        self,
        owner: &str,
        git_origin: &Url,
    ) -> Result<Option<RemoteRepo>, Rejected> {
        let shown = |s: &str| crate::text::escape(s).into_owned();
        let slug = self.slug.clone().or_else(|| {
            self.full_name
                .as_deref()
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
        // Bitbucket dropped Mercurial in 2020; a missing `scm` is git.
        if let Some(scm) = self.scm.as_deref().filter(|s| *s != "git") {
            debug!(repo = %full_name, scm, "skipping non-git repository");
            return Ok(None);
        }
        let Some(slug) = slug.clone() else {
            return Err(rejected("the listing gives it no `slug`".into()));
        };
        let Some(href) = self
            .links
            .iter()
            .flat_map(|l| l.clone.iter())
            .find(|l| l.name.as_deref() == Some("https"))
            .map(|l| l.href.clone())
        else {
            return Err(rejected("the listing gives it no https clone link".into()));
        };
        let clone_url = clone_url(&href, "clone link").map_err(rejected)?;
        if !crate::config::url::same_origin(&clone_url, git_origin) {
            return Err(rejected(format!(
                "its clone link is on {}, not on the git host {}: not cloned, so the token is \
                 not sent there (set --bitbucket-git-url if that host is right)",
                crate::config::url::redact(&clone_url),
                crate::config::url::redact(git_origin)
            )));
        }
        Ok(Some(RemoteRepo {
            slug,
            full_name,
            clone_url,
            size: self.size,
            updated_on: self.updated_on,
            default_branch: self.mainbranch.and_then(|b| b.name),
            is_private: self.is_private,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Url {
        Url::parse("https://bitbucket.org").unwrap()
    }

    #[test]
    fn clone_links_on_another_host_are_rejected() {
        let body = br#"{"values":[
            {"slug":"a","full_name":"w/a","links":{"clone":[{"name":"https","href":"https://me@evil.example/w/a.git"}]}},
            {"slug":"b","full_name":"w/b","links":{"clone":[{"name":"https","href":"http://bitbucket.org/w/b.git"}]}},
            {"slug":"c","full_name":"w/c","links":{"clone":[{"name":"https","href":"https://bitbucket.org:8443/w/c.git"}]}},
            {"slug":"d","full_name":"w/d","links":{"clone":[{"name":"https","href":"https://BitBucket.org/w/d.git"}]}}
        ]}"#;
        let out: Vec<_> = parse_page(body)
            .unwrap()
            .values
            .into_iter()
            .map(|r| r.into_remote("w", &origin()))
            .collect();
        for r in &out[..3] {
            let e = r.as_ref().unwrap_err();
            assert!(
                e.reason
                    .contains("not on the git host https://bitbucket.org"),
                "{e:?}"
            );
        }
        assert!(out[3].as_ref().unwrap().is_some());
    }

    #[test]
    fn clone_href_loses_user_info() {
        let url = clone_url("https://someone@bitbucket.org/acme/api.git", "clone link").unwrap();
        assert_eq!(url.as_str(), "https://bitbucket.org/acme/api.git");
        let url = clone_url("https://x:pw@bitbucket.org/acme/api.git", "clone link").unwrap();
        assert_eq!(url.as_str(), "https://bitbucket.org/acme/api.git");
        assert!(clone_url("git@bitbucket.org:acme/api.git", "clone link").is_err());
    }

    #[test]
    fn page_parsing_maps_fields_and_skips_hg() {
        let body = br#"{"pagelen":100,"size":999,"next":"https://api.bitbucket.org/2.0/repositories/acme?page=2",
          "values":[
            {"slug":"api","full_name":"acme/api","scm":"git","size":1234,"is_private":true,
             "updated_on":"2026-01-02T03:04:05+00:00","mainbranch":{"type":"branch","name":"main"},
             "links":{"clone":[{"name":"ssh","href":"git@bitbucket.org:acme/api.git"},
                               {"name":"https","href":"https://me@bitbucket.org/acme/api.git"}]}},
            {"slug":"old","full_name":"acme/old","scm":"hg","links":{"clone":[]}},
            {"slug":"empty","full_name":"acme/empty","scm":"git","mainbranch":null,
             "links":{"clone":[{"name":"https","href":"https://me@bitbucket.org/acme/empty.git"}]}}
          ]}"#;
        let page = parse_page(body).unwrap();
        assert!(page.next.is_some());
        let repos: Vec<_> = page
            .values
            .into_iter()
            .filter_map(|r| r.into_remote("acme", &origin()).unwrap())
            .collect();
        assert_eq!(repos.len(), 2);
        assert_eq!(
            repos[0],
            RemoteRepo {
                slug: "api".into(),
                full_name: "acme/api".into(),
                clone_url: Url::parse("https://bitbucket.org/acme/api.git").unwrap(),
                size: Some(1234),
                updated_on: Some("2026-01-02T03:04:05+00:00".into()),
                default_branch: Some("main".into()),
                is_private: Some(true),
            }
        );
        assert_eq!(repos[1].default_branch, None);
    }

    #[test]
    fn git_repo_without_https_link_is_an_error() {
        let body = br#"{"values":[{"slug":"a","full_name":"w/a","scm":"git","links":{"clone":[{"name":"ssh","href":"git@x:w/a.git"}]}}]}"#;
        let page = parse_page(body).unwrap();
        let err = page
            .values
            .into_iter()
            .next()
            .unwrap()
            .into_remote("w", &origin())
            .unwrap_err();
        assert!(err.reason.contains("no https clone link"), "{err:?}");
        assert_eq!(err.full_name, "w/a");
        assert!(parse_page(br#"{"type":"error"}"#).is_err());
    }

    #[test]
    fn api_error_message_prefers_bitbucket_text() {
        assert_eq!(
            api_error_message(br#"{"type":"error","error":{"message":"No such workspace"}}"#),
            "No such workspace"
        );
        assert_eq!(api_error_message(b"<html>oops</html>"), "<html>oops</html>");
    }
}
