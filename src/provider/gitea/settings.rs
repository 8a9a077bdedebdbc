//! Gitea's checked settings: the instance URL from the flag, the environment or the config
//! file's `[gitea]` table, and the options a [`GiteaProvider`] is built from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::url::Url;
use serde::Deserialize;

use super::GiteaProvider;
use super::args::GiteaArgs;
use crate::config::file::relative_to;
use crate::config::url::{self, UrlSource};
use crate::config::{ConfigError, FileConfig};
use crate::provider::ProviderError;
use crate::provider::http::RetryPolicy;
use crate::secret::Secret;

/// The config file's `[gitea]` table: the instance and where the token is (never the token).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiteaSection {
    pub url: Option<String>,
    /// A file holding the token (relative paths: from the config file's directory).
    pub token_file: Option<PathBuf>,
    /// Name of an environment variable holding the token.
    pub token_env: Option<String>,
}

impl GiteaSection {
    /// A source naming its own token (file or variable) takes neither of the table's.
    pub const CREDENTIAL_GROUPS: &[&[&str]] = &[&["token_file", "token_env"]];

    fn resolved(&self, base: Option<&Path>) -> Self {
        Self {
            token_file: (self.token_file.as_deref()).map(|p| relative_to(base, p)),
            ..self.clone()
        }
    }
}

/// The checked instance URL and the config file's credential references.
#[derive(Debug, Clone)]
pub struct GiteaEndpoints {
    /// The instance's base URL (`https://git.example.com/`, or with a sub-path).
    pub base_url: Url,
    /// The `[gitea]` table, paths resolved.
    pub file: GiteaSection,
}

const URL_SOURCE: &str = "--gitea-url (GITEA_URL)";

impl GiteaEndpoints {
    pub fn new(args: &GiteaArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let insecure = file.allow_insecure_http.unwrap_or(false);
        let section = file.gitea.resolved(file.base_dir());
        let Some(base) = (args.gitea_url.as_deref()).or(section.url.as_deref()) else {
            return Err(ConfigError::Other(
                "--provider gitea needs the instance: pass --gitea-url https://HOST (or set \
                 GITEA_URL, or `url` in the config file's [gitea] table)"
                    .into(),
            ));
        };
        Ok(Self {
            base_url: url::dial_url(URL_SOURCE, base, false, insecure)?,
            file: section,
        })
    }

    /// The hosts to resolve before the run starts (see [`url::check_resolves`]).
    pub fn dialed(&self) -> Vec<(UrlSource, &Url)> {
        vec![(URL_SOURCE, &self.base_url)]
    }
}

pub struct GiteaOptions {
    pub base_url: Url,
    pub token: Secret,
    pub retry: RetryPolicy,
    pub user_agent: String,
}

impl GiteaOptions {
    pub fn new(base_url: Url, token: Secret) -> Self {
        Self {
            base_url,
            token,
            retry: RetryPolicy::default(),
            user_agent: crate::TOOL.to_string(),
        }
    }
}

/// `<base>/api/v1/`, keeping a sub-path the instance is served under.
pub fn api_root(base: &Url) -> Url {
    let mut api = base.clone();
    api.set_query(None);
    api.set_fragment(None);
    api.path_segments_mut()
        .expect("http(s) URL has a path")
        .pop_if_empty()
        .extend(["api", "v1"]);
    api
}

/// The one host the token may go to for git: the base URL's scheme, host and port.
pub fn git_origin(base: &Url) -> Url {
    url::origin_of(base)
}

/// The provider for `endpoints` and `token`; `retry` is `--retries` and `--retry-delay`.
pub fn build(
    endpoints: &GiteaEndpoints,
    retry: (u32, Duration),
    token: Secret,
) -> Result<GiteaProvider, ProviderError> {
    GiteaProvider::new(GiteaOptions {
        base_url: endpoints.base_url.clone(),
        token,
        retry: RetryPolicy::for_api(retry),
        user_agent: crate::TOOL.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_and_git_host_follow_the_base_url() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            api_root(&u("https://git.example.com")).as_str(),
            "https://git.example.com/api/v1"
        );
        assert_eq!(
            api_root(&u("https://example.com/gitea/")).as_str(),
            "https://example.com/gitea/api/v1"
        );
        assert_eq!(
            git_origin(&u("http://127.0.0.1:9/gitea/")).as_str(),
            "http://127.0.0.1:9/"
        );
    }
}
