//! GitHub's checked settings: its endpoints and filters from flags, environment and the config
//! file's `[github]` table, and the options a [`GithubProvider`] is built from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::url::Url;
use serde::Deserialize;

use super::args::GithubArgs;
use super::creds::GithubCredentials;
use super::{Credential, DEFAULT_API_URL, DEFAULT_GIT_URL, GithubProvider, RetryPolicy};
use crate::config::url::{self, UrlSource};
use crate::config::{ConfigError, FileConfig};
use crate::provider::ProviderError;

/// The config file's `[github]` table: endpoints, filters and where credentials are (never the
/// secrets themselves: those go in files, the environment or the credentials store).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSection {
    pub api_url: Option<String>,
    pub git_url: Option<String>,
    pub app_id: Option<String>,
    pub installation_id: Option<u64>,
    /// The app's PEM key (relative paths: from the config file's directory).
    pub private_key_file: Option<PathBuf>,
    /// A file holding a personal token.
    pub token_file: Option<PathBuf>,
    /// Name of an environment variable holding a personal token.
    pub token_env: Option<String>,
    pub exclude_forks: Option<bool>,
    pub exclude_archived: Option<bool>,
}

impl GithubSection {
    /// A source naming any credential of its own (an app or a token) takes none of the
    /// table's, so an app from `[github]` never outranks a source's token; `installation_id`
    /// stays separate, so sources can share one app.
    pub const CREDENTIAL_GROUPS: &[&[&str]] =
        &[&["app_id", "private_key_file", "token_file", "token_env"]];

    /// This table with its paths resolved against `base` (the config file's directory).
    fn resolved(&self, base: Option<&Path>) -> Self {
        let at = |p: &Option<PathBuf>| {
            p.as_deref().map(|p| match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.to_path_buf(),
            })
        };
        Self {
            private_key_file: at(&self.private_key_file),
            token_file: at(&self.token_file),
            ..self.clone()
        }
    }
}

/// GitHub's checked endpoints and filters, and the config file's credential references.
#[derive(Debug, Clone)]
pub struct GithubEndpoints {
    pub api_url: Url,
    /// `--github-git-url`: the git host clone URLs must be on, when not the default.
    pub git_url: Option<Url>,
    pub exclude_forks: bool,
    pub exclude_archived: bool,
    /// The `[github]` table, paths resolved.
    pub file: GithubSection,
}

const API_URL_SOURCE: &str = "--github-api-url (GITHUB_API_URL)";
const GIT_URL_SOURCE: &str = "--github-git-url (GITHUB_GIT_URL)";

impl GithubEndpoints {
    pub fn new(args: &GithubArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let insecure = file.allow_insecure_http.unwrap_or(false);
        let section = file.github.resolved(file.base_dir());
        let api = (args.github_api_url.as_deref())
            .or(section.api_url.as_deref())
            .unwrap_or(DEFAULT_API_URL);
        let git = (args.github_git_url.as_deref()).or(section.git_url.as_deref());
        Ok(Self {
            api_url: url::dial_url(API_URL_SOURCE, api, false, insecure)?,
            git_url: git
                .map(|g| url::dial_url(GIT_URL_SOURCE, g, false, insecure))
                .transpose()?,
            exclude_forks: args.exclude_forks || section.exclude_forks.unwrap_or(false),
            exclude_archived: args.exclude_archived || section.exclude_archived.unwrap_or(false),
            file: section,
        })
    }

    /// The hosts to resolve before the run starts (see [`url::check_resolves`]).
    pub fn dialed(&self) -> Vec<(UrlSource, &Url)> {
        vec![(API_URL_SOURCE, &self.api_url)]
    }
}

pub struct GithubOptions {
    pub api_url: Url,
    /// The git host clone URLs must be on; `None`: [`expected_git_origin`].
    pub git_url: Option<Url>,
    pub credential: Credential,
    /// A fixed installation (else looked up per owner); for an app only.
    pub installation_id: Option<u64>,
    pub exclude_forks: bool,
    pub exclude_archived: bool,
    pub retry: RetryPolicy,
    pub user_agent: String,
}

impl GithubOptions {
    /// Options for github.com with the default retry policy.
    pub fn new(credential: Credential) -> Self {
        Self {
            api_url: Url::parse(DEFAULT_API_URL).expect("valid default URL"),
            git_url: None,
            credential,
            installation_id: None,
            exclude_forks: false,
            exclude_archived: false,
            retry: RetryPolicy::default(),
            user_agent: crate::TOOL.to_string(),
        }
    }
}

/// The host a clone URL must be on for the token to go there: github.com for api.github.com;
/// for GitHub Enterprise Server (`https://HOST/api/v3`), a proxy or an emulator, the API's own
/// scheme, host and port; `git_url` when given.
pub fn expected_git_origin(api_url: &Url, git_url: Option<&Url>) -> Url {
    url::git_origin(api_url, git_url, DEFAULT_API_URL, DEFAULT_GIT_URL)
}

/// The provider for `endpoints` and resolved credentials; `retry` is `--retries` and
/// `--retry-delay`.
pub fn build(
    endpoints: &GithubEndpoints,
    retry: (u32, Duration),
    creds: GithubCredentials,
) -> Result<GithubProvider, ProviderError> {
    let (credential, installation_id) = creds.into_credential();
    GithubProvider::new(GithubOptions {
        api_url: endpoints.api_url.clone(),
        git_url: endpoints.git_url.clone(),
        credential,
        installation_id,
        exclude_forks: endpoints.exclude_forks,
        exclude_archived: endpoints.exclude_archived,
        retry: RetryPolicy::for_api(retry),
        user_agent: crate::TOOL.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_git_host_follows_the_api() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            expected_git_origin(&u("https://api.github.com"), None).as_str(),
            "https://github.com/"
        );
        assert_eq!(
            expected_git_origin(&u("https://ghe.example.com/api/v3"), None).as_str(),
            "https://ghe.example.com/"
        );
        assert_eq!(
            expected_git_origin(&u("http://127.0.0.1:9/api/v3"), None).as_str(),
            "http://127.0.0.1:9/"
        );
        let git = u("https://git.example.com");
        assert_eq!(
            expected_git_origin(&u("https://api.github.com"), Some(&git)),
            git
        );
    }
}
