//! Following a listing's pages, the same for every host: the `Link` header's next page
//! (GitHub, Gitea), a next page only on the API's own origin (the credentials go nowhere
//! else), never a page twice and never more than [`MAX_PAGES`].

use std::collections::HashSet;

use url::Url;

use super::ProviderError;

/// Pages one listing may read: 100,000 repositories at 100 a page (50,000 at Gitea's 50); stops
/// a server that never ends.
pub const MAX_PAGES: usize = 1_000;

/// The pages one listing has read, on the API at `api`.
#[derive(Debug)]
pub struct Pages {
    api: Url,
    visited: HashSet<String>,
}

impl Pages {
    pub fn new(api: &Url) -> Self {
        Self {
            api: api.clone(),
            visited: HashSet::new(),
        }
    }

    /// Records `url` as the page read next: one already read is a [`ProviderError::PaginationLoop`],
    /// one past [`MAX_PAGES`] an error too.
    pub fn visit(&mut self, url: &Url) -> Result<(), ProviderError> {
        if !self.visited.insert(url.to_string()) {
            return Err(ProviderError::PaginationLoop {
                url: url.to_string(),
            });
        }
        if self.visited.len() > MAX_PAGES {
            return Err(ProviderError::Decode {
                url: url.to_string(),
                message: format!("more than {MAX_PAGES} pages of repositories; refusing to go on"),
            });
        }
        Ok(())
    }

    /// Pages read so far.
    pub fn count(&self) -> usize {
        self.visited.len()
    }

    /// The next page `next` as the page `from` named it (`what`: how the host names it, "the
    /// `Link` header's next page"), if it is a URL on the API's origin: never one elsewhere,
    /// which would be sent the credentials.
    pub fn next(&self, next: &str, from: &Url, what: &str) -> Result<Url, ProviderError> {
        Url::parse(next)
            .ok()
            .filter(|n| n.origin() == self.api.origin())
            .ok_or_else(|| ProviderError::Decode {
                url: from.to_string(),
                message: format!(
                    "{what} {:?} is not a URL on {}; not following it with the credentials",
                    crate::text::escape(next),
                    self.api.origin().ascii_serialization()
                ),
            })
    }
}

/// One answer of a host that pages by `Link` header: its status, the next page's URL, and
/// the body as [`super::http::read_body`] read it.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub next: Option<String>,
    pub body: Vec<u8>,
}

/// The next page named by the `Link` header among `headers`, if any ([`next_link`]).
pub fn next_in(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get(reqwest::header::LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(next_link)
}

/// The `rel="next"` target of a `Link` header (RFC 8288: `<url>; rel="next", <url>; rel="last"`),
/// verbatim: hosts' links may page by `page`, `before`/`after` or `since` (GitHub), or carry
/// parameters the server chose (Gitea clamps `limit`), so they are never built by hand.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_read_once_on_the_api_origin_only() {
        let api = Url::parse("https://git.example/api/v1").unwrap();
        let first = Url::parse("https://git.example/api/v1/orgs/a/repos?page=1").unwrap();
        let mut pages = Pages::new(&api);
        pages.visit(&first).unwrap();
        assert_eq!(pages.count(), 1);
        let e = pages.visit(&first).unwrap_err();
        assert!(matches!(e, ProviderError::PaginationLoop { .. }), "{e:?}");
        let next = pages
            .next(
                "https://git.example/api/v1/orgs/a/repos?page=2",
                &first,
                "next",
            )
            .unwrap();
        assert_eq!(next.query(), Some("page=2"));
        let e = pages
            .next(
                "https://evil.example/api/v1/orgs/a/repos?page=2",
                &first,
                "next",
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not following it") && e.contains("page=1"),
            "{e}"
        );
        for i in 2..=MAX_PAGES {
            pages
                .visit(&Url::parse(&format!("{first}&n={i}")).unwrap())
                .unwrap();
        }
        let e = pages.visit(&Url::parse(&format!("{first}&n=0")).unwrap());
        assert!(e.unwrap_err().to_string().contains("pages of repositories"));
    }

    #[test]
    fn link_header_next_is_found_in_any_position() {
        let h = r#"<https://api.github.com/organizations/9/repos?per_page=100&page=2>; rel="next", <https://api.github.com/organizations/9/repos?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/organizations/9/repos?per_page=100&page=2")
        );
        let h = r#"<https://x/?page=1>; rel="prev", <https://x/?after=abc>; rel="next""#;
        assert_eq!(next_link(h).as_deref(), Some("https://x/?after=abc"));
        let h = r#"<https://x/?page=1>; rel="first", <https://x/?page=4>; rel="prev""#;
        assert_eq!(next_link(h), None);
        assert_eq!(
            next_link(r#"<https://x/>; REL=next"#).as_deref(),
            Some("https://x/")
        );
        // Gitea's paginator joins the links with `,` and no space.
        let h = r#"<https://git.example/api/v1/orgs/acme/repos?limit=50&page=2>; rel="next",<https://git.example/api/v1/orgs/acme/repos?limit=50&page=3>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://git.example/api/v1/orgs/acme/repos?limit=50&page=2")
        );
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link(""), None);
    }
}
