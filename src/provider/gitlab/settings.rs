//! GitLab's checked settings: the instance URL from flags, environment and the config file's
//! `[gitlab]` table, and the options a [`GitlabProvider`] is built from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::url::Url;
use serde::Deserialize;

use super::args::GitlabArgs;
use super::{DEFAULT_URL, GitlabProvider};
use crate::config::url::{self, UrlSource};
use crate::config::{ConfigError, FileConfig};
use crate::provider::ProviderError;
use crate::provider::http::RetryPolicy;
use crate::secret::Secret;

/// The config file's `[gitlab]` table: the instance and where the token is (never the token
/// itself: that goes in a file, the environment or the credentials store).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabSection {
    pub url: Option<String>,
    /// A file holding the token (relative paths: from the config file's directory).
    pub token_file: Option<PathBuf>,
    /// Name of an environment variable holding the token.
    pub token_env: Option<String>,
}

impl GitlabSection {
    /// A source naming a token of its own (a file or a variable) takes neither of the
    /// table's.
    pub const CREDENTIAL_GROUPS: &[&[&str]] = &[&["token_file", "token_env"]];

    /// This table with its path resolved against `base` (the config file's directory).
    fn resolved(&self, base: Option<&Path>) -> Self {
        Self {
            token_file: self.token_file.as_deref().map(|p| match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.to_path_buf(),
            }),
            ..self.clone()
        }
    }
}

/// GitLab's checked instance URL and the config file's credential references.
#[derive(Debug, Clone)]
pub struct GitlabEndpoints {
    /// The instance, `https://gitlab.com` or `https://HOST[/root]`.
    pub url: Url,
    /// The `[gitlab]` table, paths resolved.
    pub file: GitlabSection,
}

const URL_SOURCE: &str = "--gitlab-url (GITLAB_URL)";

impl GitlabEndpoints {
    pub fn new(args: &GitlabArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let insecure = file.allow_insecure_http.unwrap_or(false);
        let section = file.gitlab.resolved(file.base_dir());
        let raw = (args.gitlab_url.as_deref())
            .or(section.url.as_deref())
            .unwrap_or(DEFAULT_URL);
        let url = url::dial_url(URL_SOURCE, raw, false, insecure)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::InvalidValue {
                what: URL_SOURCE,
                value: url::redact(&url),
                reason: "expected the instance's URL without a query or fragment".into(),
            });
        }
        Ok(Self { url, file: section })
    }

    /// The hosts to resolve before the run starts (see [`url::check_resolves`]).
    pub fn dialed(&self) -> Vec<(UrlSource, &Url)> {
        vec![(URL_SOURCE, &self.url)]
    }
}

pub struct GitlabOptions {
    /// The instance; the API is `<url>/api/v4`, the git host its origin.
    pub url: Url,
    pub token: Secret,
    pub retry: RetryPolicy,
    pub user_agent: String,
}

impl GitlabOptions {
    /// Options for gitlab.com with the default retry policy.
    pub fn new(token: Secret) -> Self {
        Self {
            url: Url::parse(DEFAULT_URL).expect("valid default URL"),
            token,
            retry: RetryPolicy::default(),
            user_agent: crate::TOOL.to_string(),
        }
    }
}

/// `<instance>/api/v4`, a relative URL root kept (`https://host/gitlab/api/v4`).
pub fn api_url(instance: &Url) -> Url {
    let mut api = instance.clone();
    let _ = api.set_username("");
    let _ = api.set_password(None);
    api.path_segments_mut()
        .expect("http(s) URL has a path")
        .pop_if_empty()
        .extend(["api", "v4"]);
    api
}

/// The provider for `endpoints` and a resolved token; `retry` is `--retries` and
/// `--retry-delay`.
pub fn build(
    endpoints: &GitlabEndpoints,
    retry: (u32, Duration),
    token: Secret,
) -> Result<GitlabProvider, ProviderError> {
    GitlabProvider::new(GitlabOptions {
        url: endpoints.url.clone(),
        token,
        retry: RetryPolicy::for_api(retry),
        user_agent: crate::TOOL.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_brings_its_own_token_and_never_the_token_itself() {
        let text = "[gitlab]\nurl = \"https://gitlab.example\"\ntoken_file = \"t\"\n\
                    [[source]]\nprovider = \"gitlab\"\nowner = \"a\"\ntoken_env = \"A_TOKEN\"\n";
        let cfg = crate::config::file::parse(text, Path::new("c.toml")).unwrap();
        let kind = crate::provider::ProviderKind::Gitlab;
        let seen = crate::provider::choose::file_for_source(&cfg, kind, &cfg.sources[0].settings)
            .unwrap()
            .gitlab;
        assert_eq!(
            seen.token_file, None,
            "the source's token replaces the table's"
        );
        assert_eq!(seen.token_env.as_deref(), Some("A_TOKEN"));
        assert_eq!(seen.url.as_deref(), Some("https://gitlab.example"));
        let text = "[[source]]\nprovider = \"gitlab\"\nowner = \"a\"\ntoken = \"glpat-leak\"\n";
        let e = crate::config::file::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token_file") && !e.contains("glpat-leak"), "{e}");
    }

    #[test]
    fn the_api_sits_under_the_instance() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            api_url(&u("https://gitlab.com")).as_str(),
            "https://gitlab.com/api/v4"
        );
        assert_eq!(
            api_url(&u("https://example.com/gitlab/")).as_str(),
            "https://example.com/gitlab/api/v4"
        );
        assert_eq!(
            api_url(&u("http://127.0.0.1:9")).as_str(),
            "http://127.0.0.1:9/api/v4"
        );
    }
}
