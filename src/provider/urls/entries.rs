//! The repositories of `--provider urls`: `--url URL` flags and `--url-file` lines
//! (`URL [slug]`, `#` comments, blank lines), each URL checked like every URL the tool dials and
//! refused when it carries credentials (they belong in `--netrc`, where they cannot leak into a
//! manifest, a log line or another process's view of argv).

use std::path::Path;

use ::url::Url;

use crate::config::ConfigError;
use crate::config::url::{self, UrlSource};

pub const URL_FLAG: UrlSource = "--url";
pub const URL_FILE: UrlSource = "--url-file";

/// One repository to back up: where it is and the slug its bundle is named by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub url: Url,
    pub slug: String,
    /// Where it was given (`--url`, `--url-file`), for resolving before the run.
    pub from: UrlSource,
}

/// A `--url` flag's value.
pub fn from_flag(raw: &str, allow_insecure: bool) -> Result<Entry, ConfigError> {
    let url = checked(URL_FLAG, raw, allow_insecure)?;
    Ok(Entry {
        slug: slug_of(&url),
        url,
        from: URL_FLAG,
    })
}

/// Every entry of a `--url-file`'s `text` (read from `path`, named in errors with the line).
pub fn from_file(path: &Path, text: &str, allow_insecure: bool) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split_once('#').map_or(line, |(before, _)| before);
        let mut words = line.split_whitespace();
        let Some(raw) = words.next() else { continue };
        let at_line = |message: String| ConfigError::File {
            path: path.to_owned(),
            line: Some(n + 1),
            key: None,
            message,
        };
        let url = checked(URL_FILE, raw, allow_insecure).map_err(|e| at_line(e.to_string()))?;
        let slug = match words.next() {
            Some(s) => s.to_owned(),
            None => slug_of(&url),
        };
        if words.next().is_some() {
            return Err(at_line(
                "expected `URL` or `URL SLUG`, found more words".into(),
            ));
        }
        entries.push(Entry {
            url,
            slug,
            from: URL_FILE,
        });
    }
    Ok(entries)
}

/// An `http(s)` URL with a host, `https` unless loopback or allowed, and no user info.
fn checked(from: UrlSource, raw: &str, allow_insecure: bool) -> Result<Url, ConfigError> {
    // `secret`: a URL given here may carry a password, so a parse error must not quote it.
    let url = url::dial_url(from, raw, true, allow_insecure)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::InvalidValue {
            what: from,
            value: url::redact(&url),
            reason: "the URL holds credentials: put them in a --netrc file (machine HOST login \
                     USER password TOKEN) instead"
                .into(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::InvalidValue {
            what: from,
            value: url::redact(&url),
            reason: "a repository URL has no query or fragment".into(),
        });
    }
    Ok(url)
}

/// The last path segment without `.git`: `https://h/team/api.git` → `api`. What is left may
/// still be refused by the listing's slug check (a bare host, a name with spaces), which
/// records that repository as failed and names the slug to give instead.
pub fn slug_of(url: &Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()))
        .unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    decoded.strip_suffix(".git").unwrap_or(&decoded).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_come_from_the_last_segment() {
        for (url, slug) in [
            ("https://h/team/api.git", "api"),
            ("https://h/team/api/", "api"),
            ("https://h/r", "r"),
            ("https://h/", ""),
            ("https://h/a/my%20repo.git", "my repo"),
        ] {
            assert_eq!(slug_of(&Url::parse(url).unwrap()), slug, "{url}");
        }
    }

    #[test]
    fn files_have_comments_slugs_and_line_numbers() {
        let p = Path::new("repos.txt");
        let got = from_file(
            p,
            "# ours\nhttps://git.example/a/one.git\n\n  https://git.example/b/two.git  second # x\n",
            false,
        )
        .unwrap();
        let slugs: Vec<_> = got.iter().map(|e| e.slug.as_str()).collect();
        assert_eq!(slugs, ["one", "second"]);
        let e = from_file(p, "https://ok.example/a\nhttp://plain.example/b\n", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("repos.txt, line 2") && e.contains("insecure"),
            "{e}"
        );
        let e = from_file(p, "https://h/a b c\n", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("more words"), "{e}");
        assert!(from_file(p, "http://127.0.0.1:9/a\n", false).is_ok());
    }

    #[test]
    fn credentials_in_a_url_are_refused_without_being_quoted() {
        for raw in [
            "https://user:hunter2@git.example/a.git",
            "https://hunter2@git.example/a.git",
        ] {
            let e = from_flag(raw, false).unwrap_err().to_string();
            assert!(e.contains("--netrc") && !e.contains("hunter2"), "{e}");
        }
        let e = from_flag("not a url hunter2", false)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(from_flag("https://git.example/a?x=1", false).is_err());
        assert!(from_flag("ssh://git.example/a", false).is_err());
    }
}
