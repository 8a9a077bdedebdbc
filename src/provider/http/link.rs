//! The `Link` header's next page, which every host that pages by `Link` (GitHub, Gitea) follows.

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
