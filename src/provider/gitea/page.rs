//! The wire format of Gitea's repository listings and its mapping to [`RemoteRepo`]: pure
//! functions over bytes, unit-tested without a server. Field meanings: NOTES §7
//! (`go-gitea/gitea:services/convert/repository.go`).

use serde::Deserialize;
use url::Url;

use crate::provider::{Rejected, RemoteRepo, clone_url};

/// Gitea's error document `{"message": …, "url": …}` (its `APIError`): the message, else the
/// start of the body; quoted either way.
pub(super) fn api_error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) if !e.message.is_empty() => crate::text::quote(&e.message),
        _ => crate::text::quote(&String::from_utf8_lossy(body)),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRepo {
    name: Option<String>,
    full_name: Option<String>,
    clone_url: Option<String>,
    #[serde(default)]
    empty: bool,
    /// A pull mirror of another host, a fork, an archived repository: each backed up like any
    /// other (see the module doc of [`super`]); counted in the listing's log line.
    #[serde(default)]
    pub(super) mirror: bool,
    #[serde(default)]
    pub(super) fork: bool,
    #[serde(default)]
    pub(super) archived: bool,
    default_branch: Option<String>,
    /// KiB (`repo.Size / 1024`).
    size: Option<u64>,
    updated_at: Option<String>,
    private: Option<bool>,
}

pub(super) fn parse_page(body: &[u8]) -> Result<Vec<RawRepo>, String> {
    serde_json::from_slice::<Vec<RawRepo>>(body)
        .map_err(|e| format!("not a page of repositories: {e}"))
}

impl RawRepo {
    /// The repository as the pipeline sees it, or why it cannot be cloned as listed. A clone
    /// URL off `git_origin` is refused: the token would be sent there.
    pub(super) fn into_remote(self, owner: &str, git_origin: &Url) -> Result<RemoteRepo, Rejected> {
        let shown = |s: &str| crate::text::escape(s).into_owned();
        let rejected = |reason: String| Rejected {
            slug: self.name.as_deref().map(shown).unwrap_or("(none)".into()),
            full_name: match (&self.full_name, &self.name) {
                (Some(f), _) => shown(f),
                (None, Some(s)) => format!("{owner}/{}", shown(s)),
                (None, None) => format!("{owner}/(none)"),
            },
            reason,
        };
        let (Some(slug), Some(full_name)) = (self.name.clone(), self.full_name.clone()) else {
            return Err(rejected(
                "the listing gives it no `name` or `full_name`".into(),
            ));
        };
        let Some(href) = self.clone_url.as_deref() else {
            return Err(rejected("the listing gives it no `clone_url`".into()));
        };
        let clone_url = clone_url(href, "clone URL").map_err(&rejected)?;
        if !crate::config::url::same_origin(&clone_url, git_origin) {
            return Err(rejected(format!(
                "its clone URL is on {}, not on the Gitea host {}: not cloned, so the token is \
                 not sent there (check --gitea-url against the instance's ROOT_URL)",
                crate::config::url::redact(&clone_url),
                crate::config::url::redact(git_origin)
            )));
        }
        Ok(RemoteRepo {
            slug,
            full_name,
            clone_url,
            size: self.size.map(|kib| kib.saturating_mul(1024)),
            updated_on: self.updated_at,
            // Gitea names a default branch for an empty repository too; `empty` says which.
            default_branch: self.default_branch.filter(|b| !self.empty && !b.is_empty()),
            is_private: self.private,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sizes_and_empty_repositories_are_mapped() {
        let origin = Url::parse("https://git.example.com").unwrap();
        let body = br#"[
          {"name":"api","full_name":"acme/api","clone_url":"https://u:p@git.example.com/acme/api.git",
           "default_branch":"trunk","empty":false,"size":3,"mirror":true,"fork":true,
           "archived":true,"private":true},
          {"name":"new","full_name":"acme/new","clone_url":"https://git.example.com/acme/new.git",
           "default_branch":"main","empty":true,"size":0},
          {"name":"far","full_name":"acme/far","clone_url":"https://evil.example/acme/far.git"}
        ]"#;
        let mut raws = parse_page(body).unwrap().into_iter();
        let raw = raws.next().unwrap();
        assert!(raw.mirror && raw.fork && raw.archived);
        let api = raw.into_remote("acme", &origin).unwrap();
        assert_eq!(api.size, Some(3 * 1024));
        assert_eq!(api.default_branch.as_deref(), Some("trunk"));
        assert_eq!(
            api.clone_url.as_str(),
            "https://git.example.com/acme/api.git"
        );
        assert_eq!(api.is_private, Some(true));
        let new = raws.next().unwrap().into_remote("acme", &origin).unwrap();
        assert_eq!(new.default_branch, None);
        let far = raws
            .next()
            .unwrap()
            .into_remote("acme", &origin)
            .unwrap_err();
        assert!(far.reason.contains("not on the Gitea host"), "{far:?}");
        assert!(parse_page(br#"{"message":"x"}"#).is_err());
    }

    #[test]
    fn error_messages_prefer_giteas_text() {
        let m =
            api_error_message(br#"{"message":"token is required","url":"https://x/api/swagger"}"#);
        assert!(
            m.contains("token is required") && !m.contains("swagger"),
            "{m}"
        );
        assert!(api_error_message(b"Not Found\n").contains("Not Found"));
    }
}
