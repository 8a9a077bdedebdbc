//! The wire format of GitLab's project listings and error documents, and their mapping to
//! [`RemoteRepo`]: pure functions over bytes, unit-tested without a server.
//!
//! Field meanings: `gitlabhq/gitlabhq:doc/api/groups.md` and `doc/api/projects.md` (NOTES §6).
//! A project's key is its path below the listed group: `path_with_namespace` minus the group.

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::provider::{Rejected, RemoteRepo, clone_url};

/// GitLab's error documents: `{"message": "404 Group Not Found"}`, `{"message": {field:
/// [errors]}}`, or OAuth's `{"error": "invalid_token", "error_description": "Token is
/// expired…"}`; else the start of the body. Quoted (escaped, cut short) either way.
pub(super) fn api_error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => match (&v["error_description"], &v["message"], &v["error"]) {
            (Value::String(d), _, _) => d.clone(),
            (_, Value::String(m), _) => m.clone(),
            (_, m @ Value::Object(_), _) => m.to_string(),
            (_, _, Value::String(e)) => e.clone(),
            _ => String::from_utf8_lossy(body).into_owned(),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    crate::text::quote(text.trim())
}

#[derive(Debug, Deserialize)]
pub(super) struct RawProject {
    path: Option<String>,
    path_with_namespace: Option<String>,
    http_url_to_repo: Option<String>,
    default_branch: Option<String>,
    #[serde(default)]
    empty_repo: bool,
    last_activity_at: Option<String>,
    visibility: Option<String>,
    /// `disabled`: the project has no repository (issues or a wiki only).
    repository_access_level: Option<String>,
}

/// One page of `GET /groups/:id/projects`: an array of projects.
pub(super) fn parse_page(body: &[u8]) -> Result<Vec<RawProject>, String> {
    serde_json::from_slice::<Vec<RawProject>>(body)
        .map_err(|e| format!("not a page of projects: {e}"))
}

impl RawProject {
    /// The project as the pipeline sees it; `Ok(None)` for a project without a repository; an
    /// `Err` (recorded as a failed repository, never skipped) when it cannot be cloned as
    /// listed: no path, or a clone URL off `git_origin` (the token would be sent there). A
    /// project in a subgroup keeps its path below `group` (`sub/api`) as its slug; [`vet`]
    /// checks every part of it.
    ///
    /// [`vet`]: crate::provider::vet
    pub(super) fn into_remote(
        self,
        group: &str,
        git_origin: &Url,
    ) -> Result<Option<RemoteRepo>, Rejected> {
        let shown = |s: &str| crate::text::escape(s).into_owned();
        let below = (self.path_with_namespace.as_deref())
            .and_then(|f| strip_group(f, group))
            .map(str::to_string);
        let rejected = |reason: String| Rejected {
            slug: (below.as_deref().or(self.path.as_deref()))
                .map(shown)
                .unwrap_or_else(|| "(none)".into()),
            full_name: match (&self.path_with_namespace, &self.path) {
                (Some(f), _) => shown(f),
                (None, Some(p)) => format!("{group}/{}", shown(p)),
                (None, None) => format!("{group}/(none)"),
            },
            reason,
        };
        if self.repository_access_level.as_deref() == Some("disabled") {
            return Ok(None);
        }
        let Some(full_name) = self.path_with_namespace.clone() else {
            return Err(rejected(
                "the listing gives it no `path_with_namespace`".into(),
            ));
        };
        let Some(slug) = below.clone() else {
            return Err(rejected(format!(
                "the listing places it outside the group `{group}`"
            )));
        };
        let Some(href) = self.http_url_to_repo.as_deref() else {
            return Err(rejected(
                "the listing gives it no `http_url_to_repo`".into(),
            ));
        };
        let clone_url = clone_url(href, "http_url_to_repo").map_err(&rejected)?;
        if !crate::config::url::same_origin(&clone_url, git_origin) {
            return Err(rejected(format!(
                "its clone URL is on {}, not on the GitLab instance {}: not cloned, so the token \
                 is not sent there",
                crate::config::url::redact(&clone_url),
                crate::config::url::redact(git_origin)
            )));
        }
        Ok(Some(RemoteRepo {
            slug,
            full_name,
            clone_url,
            // Sizes need `statistics=true`, which only Reporter and above may ask for.
            size: None,
            updated_on: self.last_activity_at,
            default_branch: (!self.empty_repo).then_some(self.default_branch).flatten(),
            is_private: self.visibility.map(|v| v != "public"),
        }))
    }
}

/// `full_name` below `group` (`acme/sub/api` → `sub/api`), `None` outside it.
fn strip_group<'a>(full_name: &'a str, group: &str) -> Option<&'a str> {
    full_name
        .strip_prefix(group)?
        .strip_prefix('/')
        .filter(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Url {
        Url::parse("https://gitlab.example").unwrap()
    }

    fn remote(json: &str) -> Result<Option<RemoteRepo>, Rejected> {
        let mut raws = parse_page(format!("[{json}]").as_bytes()).unwrap();
        raws.remove(0).into_remote("acme", &origin())
    }

    #[test]
    fn projects_map_to_repositories() {
        let repo = remote(
            r#"{"id":7,"path":"api","path_with_namespace":"acme/api",
                "http_url_to_repo":"https://gitlab.example/acme/api.git",
                "default_branch":"main","empty_repo":false,"visibility":"internal",
                "last_activity_at":"2026-11-30T10:00:00.000Z","archived":true}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            repo,
            RemoteRepo {
                slug: "api".into(),
                full_name: "acme/api".into(),
                clone_url: Url::parse("https://gitlab.example/acme/api.git").unwrap(),
                size: None,
                updated_on: Some("2026-11-30T10:00:00.000Z".into()),
                default_branch: Some("main".into()),
                is_private: Some(true),
            }
        );
        let empty = remote(
            r#"{"path":"new","path_with_namespace":"acme/new","empty_repo":true,
                "default_branch":"main","visibility":"public",
                "http_url_to_repo":"https://someone@gitlab.example/acme/new.git"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(empty.default_branch, None);
        assert_eq!(empty.is_private, Some(false));
        assert_eq!(empty.clone_url.username(), "");
        let wiki_only = remote(
            r#"{"path":"w","path_with_namespace":"acme/w","repository_access_level":"disabled"}"#,
        );
        assert_eq!(wiki_only.unwrap(), None);
    }

    #[test]
    fn unclonable_projects_are_rejected_with_a_reason_and_nested_ones_keep_their_path() {
        let reason = |json: &str| remote(json).unwrap_err().reason;
        let nested = remote(
            r#"{"path":"api","path_with_namespace":"acme/team/api",
                "http_url_to_repo":"https://gitlab.example/acme/team/api.git"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (nested.slug.as_str(), nested.full_name.as_str()),
            ("team/api", "acme/team/api")
        );
        assert!(
            reason(
                r#"{"path":"a","path_with_namespace":"acme/a",
                    "http_url_to_repo":"https://evil.example/acme/a.git"}"#
            )
            .contains("not on the GitLab instance https://gitlab.example")
        );
        assert!(
            reason(r#"{"path":"a","path_with_namespace":"acme/a"}"#).contains("http_url_to_repo")
        );
        assert!(reason(r#"{"path":"a"}"#).contains("path_with_namespace"));
        assert!(
            reason(r#"{"path":"a","path_with_namespace":"acmeish/a"}"#)
                .contains("outside the group")
        );
        assert!(parse_page(br#"{"message":"x"}"#).is_err());
    }

    #[test]
    fn error_messages_prefer_gitlabs_text() {
        assert_eq!(
            api_error_message(br#"{"message":"404 Group Not Found"}"#),
            "404 Group Not Found"
        );
        assert_eq!(
            api_error_message(
                br#"{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}"#
            ),
            "Token is expired. You can either do re-authorization or token refresh."
        );
        assert!(api_error_message(br#"{"message":{"base":["bad"]}}"#).contains("bad"));
        assert_eq!(api_error_message(b"Retry later\n"), "Retry later");
    }
}
