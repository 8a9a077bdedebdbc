//! Bitbucket's checked settings: its endpoints from flags, environment and the config file's
//! `[bitbucket]` table (configurable for proxies and the test emulator), and the options a
//! [`BitbucketProvider`] is built from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::url::Url;
use serde::Deserialize;

use super::args::BitbucketArgs;
use super::consumer::ConsumerCredentials;
use super::credential::BitbucketCredential;
use super::{BitbucketProvider, DEFAULT_API_URL, DEFAULT_GIT_URL, DEFAULT_TOKEN_URL, RetryPolicy};
use crate::config::file::relative_to;
use crate::config::url::{self, UrlSource};
use crate::config::{ConfigError, FileConfig};
use crate::provider::ProviderError;
use crate::provider::http::pace::ROLLING_WINDOW;
use crate::secret::Secret;

/// Where to find an OAuth consumer, without holding its secret.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRefs {
    /// The key itself (not a secret: it is sent in clear as the client id).
    pub consumer_key: Option<String>,
    /// Name of an environment variable holding the key.
    pub consumer_key_env: Option<String>,
    /// A file holding the secret (relative paths: from the config file's directory).
    pub consumer_secret_file: Option<PathBuf>,
    /// Name of an environment variable holding the secret.
    pub consumer_secret_env: Option<String>,
    /// A file holding an access token, or the name of a variable holding one.
    pub access_token_file: Option<PathBuf>,
    pub access_token_env: Option<String>,
    /// The Atlassian account email a scoped API token belongs to (not a secret).
    pub email: Option<String>,
    /// A file holding the API token, or the name of a variable holding it.
    pub api_token_file: Option<PathBuf>,
    pub api_token_env: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitbucketSection {
    pub api_url: Option<String>,
    pub token_url: Option<String>,
    pub git_url: Option<String>,
    pub consumer_key: Option<String>,
    pub consumer_key_env: Option<String>,
    pub consumer_secret_file: Option<PathBuf>,
    pub consumer_secret_env: Option<String>,
    pub access_token_file: Option<PathBuf>,
    pub access_token_env: Option<String>,
    pub email: Option<String>,
    pub api_token_file: Option<PathBuf>,
    pub api_token_env: Option<String>,
    /// Only here to give a precise error; any value is refused.
    pub consumer_secret: Option<toml::Spanned<toml::Value>>,
}

impl BitbucketSection {
    /// The consumer's key and secret are found separately (see
    /// `provider::bitbucket::consumer::resolve_consumer`), so a source naming its own key still
    /// takes the table's secret, and the other way round. The token kinds' keys are in both
    /// groups: a source naming a token takes none of the table's consumer, and a source naming
    /// a consumer none of its tokens (one kind per run, [`super::credential`]).
    pub const CREDENTIAL_GROUPS: &[&[&str]] = &[
        &[
            "consumer_key",
            "consumer_key_env",
            "access_token_file",
            "access_token_env",
            "email",
            "api_token_file",
            "api_token_env",
        ],
        &[
            "consumer_secret_file",
            "consumer_secret_env",
            "access_token_file",
            "access_token_env",
            "email",
            "api_token_file",
            "api_token_env",
        ],
    ];
}

impl BitbucketSection {
    pub fn credentials(&self, base: Option<&Path>) -> CredentialRefs {
        CredentialRefs {
            consumer_key: self.consumer_key.clone(),
            consumer_key_env: self.consumer_key_env.clone(),
            consumer_secret_file: self
                .consumer_secret_file
                .as_deref()
                .map(|p| relative_to(base, p)),
            consumer_secret_env: self.consumer_secret_env.clone(),
            access_token_file: self
                .access_token_file
                .as_deref()
                .map(|p| relative_to(base, p)),
            access_token_env: self.access_token_env.clone(),
            email: self.email.clone(),
            api_token_file: self.api_token_file.as_deref().map(|p| relative_to(base, p)),
            api_token_env: self.api_token_env.clone(),
        }
    }
}

/// Bitbucket endpoints, each checked like every URL the tool dials, and the config file's
/// credential references (the `[[source]]`'s keys over `[bitbucket]`).
#[derive(Debug, Clone)]
pub struct BitbucketEndpoints {
    pub api_url: Url,
    pub token_url: Url,
    /// `--bitbucket-git-url`: the git host clone links must be on, when not the default.
    pub git_url: Option<Url>,
    pub refs: CredentialRefs,
}

const API_URL_SOURCE: &str = "--bitbucket-api-url (BITBUCKET_API_URL)";
const TOKEN_URL_SOURCE: &str = "--bitbucket-token-url (BITBUCKET_TOKEN_URL)";
const GIT_URL_SOURCE: &str = "--bitbucket-git-url (BITBUCKET_GIT_URL)";

impl BitbucketEndpoints {
    pub fn new(args: &BitbucketArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let insecure = file.allow_insecure_http.unwrap_or(false);
        let api = (args.bitbucket_api_url.as_deref())
            .or(file.bitbucket.api_url.as_deref())
            .unwrap_or(DEFAULT_API_URL);
        let token = (args.bitbucket_token_url.as_deref())
            .or(file.bitbucket.token_url.as_deref())
            .unwrap_or(DEFAULT_TOKEN_URL);
        let git = (args.bitbucket_git_url.as_deref()).or(file.bitbucket.git_url.as_deref());
        Ok(Self {
            api_url: url::dial_url(API_URL_SOURCE, api, false, insecure)?,
            token_url: url::dial_url(TOKEN_URL_SOURCE, token, false, insecure)?,
            git_url: git
                .map(|g| url::dial_url(GIT_URL_SOURCE, g, false, insecure))
                .transpose()?,
            refs: file.bitbucket.credentials(file.base_dir()),
        })
    }

    /// The hosts to resolve before the run starts (see [`url::check_resolves`]).
    pub fn dialed(&self) -> Vec<(UrlSource, &Url)> {
        vec![
            (API_URL_SOURCE, &self.api_url),
            (TOKEN_URL_SOURCE, &self.token_url),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct BitbucketOptions {
    pub api_url: Url,
    pub token_url: Url,
    /// The git host clone links must be on (scheme, host, port); `None`: [`expected_git_origin`].
    pub git_url: Option<Url>,
    pub credential: BitbucketCredential,
    pub retry: RetryPolicy,
    pub user_agent: String,
    /// What `X-RateLimit-Limit` counts over, for pacing an access token: Bitbucket's rolling
    /// hour ([`ROLLING_WINDOW`]). Bitbucket does not send it; an emulator may use a shorter one.
    pub rate_window: Duration,
}

/// The host a repository's clone link must be on for the token to be sent to it: bitbucket.org
/// for bitbucket.org's API, else the API's own scheme, host and port (a proxy or an emulator
/// serves both), unless `git_url` names another.
pub fn expected_git_origin(api_url: &Url, git_url: Option<&Url>) -> Url {
    url::git_origin(api_url, git_url, DEFAULT_API_URL, DEFAULT_GIT_URL)
}

impl BitbucketOptions {
    /// Options for bitbucket.org with an OAuth consumer and the default retry policy.
    pub fn new(consumer_key: impl Into<String>, consumer_secret: Secret) -> Self {
        Self::with(BitbucketCredential::Consumer(ConsumerCredentials {
            key: consumer_key.into(),
            secret: consumer_secret,
            key_source: "the caller",
            secret_source: "the caller",
        }))
    }

    /// Options for bitbucket.org with `credential` and the default retry policy.
    pub fn with(credential: BitbucketCredential) -> Self {
        Self {
            api_url: Url::parse(DEFAULT_API_URL).expect("valid default URL"),
            token_url: Url::parse(DEFAULT_TOKEN_URL).expect("valid default URL"),
            git_url: None,
            credential,
            retry: RetryPolicy::default(),
            user_agent: crate::TOOL.to_string(),
            rate_window: ROLLING_WINDOW,
        }
    }
}

/// The provider for `endpoints` and a resolved credential; `retry` is `--retries` and
/// `--retry-delay`.
pub fn build(
    endpoints: &BitbucketEndpoints,
    retry: (u32, Duration),
    credential: BitbucketCredential,
) -> Result<BitbucketProvider, ProviderError> {
    BitbucketProvider::new(BitbucketOptions {
        api_url: endpoints.api_url.clone(),
        token_url: endpoints.token_url.clone(),
        git_url: endpoints.git_url.clone(),
        retry: RetryPolicy::for_api(retry),
        ..BitbucketOptions::with(credential)
    })
}
