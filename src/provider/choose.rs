//! The one place a provider is chosen and built: `--provider`, else a `[[source]]`'s
//! `provider = "…"`, else Bitbucket, names a [`ProviderKind`]; that kind's module checks its
//! own options ([`ProviderConfig`]), resolves its own credentials and builds the
//! `Box<dyn Provider>` every command works with. A new host adds one variant to each enum
//! here and one module beside `bitbucket`; no command changes.

use std::time::Duration;

use clap::{Args, ValueEnum};
use url::Url;

use super::Provider;
use super::bitbucket::settings::BitbucketSection;
use super::bitbucket::{self, BitbucketArgs, BitbucketEndpoints};
use super::gitea::settings::GiteaSection;
use super::gitea::{self, GiteaArgs, GiteaEndpoints};
use super::github::settings::GithubSection;
use super::github::{self, GithubArgs, GithubEndpoints};
use super::gitlab::settings::GitlabSection;
use super::gitlab::{self, GitlabArgs, GitlabEndpoints};
use super::urls::{self, UrlsArgs, UrlsSettings};
use crate::config::file::overlay;
use crate::config::url::UrlSource;
use crate::config::{ConfigError, FileConfig};
use crate::error::Error;

/// Which host to talk to, and every provider's own flags (each in its provider's module).
#[derive(Debug, Default, Args)]
pub struct ProviderArgs {
    /// Hosting service the owner's repositories are on [default: the `[[source]]`'s
    /// `provider`, else bitbucket].
    #[arg(long, value_enum, value_name = "NAME")]
    pub provider: Option<ProviderKind>,

    #[command(flatten)]
    pub bitbucket: BitbucketArgs,

    #[command(flatten)]
    pub urls: UrlsArgs,

    #[command(flatten)]
    pub github: GithubArgs,

    #[command(flatten)]
    pub gitea: GiteaArgs,

    #[command(flatten)]
    pub gitlab: GitlabArgs,
}

/// The hosts git-offsite can list repositories on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, ValueEnum)]
pub enum ProviderKind {
    /// Bitbucket Cloud (an OAuth consumer, an access token, or a user's API token).
    #[default]
    Bitbucket,
    /// Plain git URLs (`--url`, `--url-file`), credentials from a netrc file or none.
    Urls,
    /// GitHub or GitHub Enterprise Server (a GitHub App installation, or a personal token).
    Github,
    /// Gitea or Forgejo (an access token; --gitea-url names the instance).
    Gitea,
    /// GitLab, gitlab.com or self-managed (a group access token, or a personal token).
    Gitlab,
}

impl ProviderKind {
    /// The name in `--provider`, `provider = "…"`, manifests and the credentials file.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Bitbucket => "bitbucket",
            ProviderKind::Urls => "urls",
            ProviderKind::Github => "github",
            ProviderKind::Gitea => "gitea",
            ProviderKind::Gitlab => "gitlab",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::value_variants()
            .iter()
            .copied()
            .find(|k| k.name() == name)
    }

    /// Every name, for messages: `` `bitbucket` ``.
    pub fn names() -> String {
        let names: Vec<String> = Self::value_variants()
            .iter()
            .map(|k| format!("`{}`", k.name()))
            .collect();
        names.join(", ")
    }
}

/// One provider's checked settings: endpoints and options, no credentials (those are found
/// per source, when the provider is built).
// Built once per source and never moved in a loop: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Bitbucket(BitbucketEndpoints),
    Urls(UrlsSettings),
    Github(GithubEndpoints),
    Gitea(GiteaEndpoints),
    Gitlab(GitlabEndpoints),
}

impl ProviderConfig {
    pub fn new(
        kind: ProviderKind,
        args: &ProviderArgs,
        file: &FileConfig,
    ) -> Result<Self, ConfigError> {
        Ok(match kind {
            ProviderKind::Bitbucket => {
                ProviderConfig::Bitbucket(BitbucketEndpoints::new(&args.bitbucket, file)?)
            }
            ProviderKind::Urls => ProviderConfig::Urls(UrlsSettings::new(&args.urls, file)?),
            ProviderKind::Github => {
                ProviderConfig::Github(GithubEndpoints::new(&args.github, file)?)
            }
            ProviderKind::Gitea => ProviderConfig::Gitea(GiteaEndpoints::new(&args.gitea, file)?),
            ProviderKind::Gitlab => {
                ProviderConfig::Gitlab(GitlabEndpoints::new(&args.gitlab, file)?)
            }
        })
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Bitbucket(_) => ProviderKind::Bitbucket,
            ProviderConfig::Urls(_) => ProviderKind::Urls,
            ProviderConfig::Github(_) => ProviderKind::Github,
            ProviderConfig::Gitea(_) => ProviderKind::Gitea,
            ProviderConfig::Gitlab(_) => ProviderKind::Gitlab,
        }
    }

    /// The hosts to resolve before the run starts (see [`crate::config::url::check_resolves`]).
    pub fn dialed(&self) -> Vec<(UrlSource, &Url)> {
        match self {
            ProviderConfig::Bitbucket(e) => e.dialed(),
            ProviderConfig::Urls(u) => u.dialed(),
            ProviderConfig::Github(e) => e.dialed(),
            ProviderConfig::Gitea(e) => e.dialed(),
            ProviderConfig::Gitlab(e) => e.dialed(),
        }
    }
}

/// The config file as one `[[source]]` of provider `kind` sees it: that provider's table with
/// the source's own `settings` laid over it ([`crate::config::file::overlay`]). An unknown or
/// ill-typed key is `Err((key, message))`.
pub fn file_for_source(
    file: &FileConfig,
    kind: ProviderKind,
    settings: &toml::Table,
) -> Result<FileConfig, (String, String)> {
    let mut seen = file.clone();
    if settings.is_empty() {
        return Ok(seen);
    }
    let table = file.tables.get(kind.name());
    match kind {
        ProviderKind::Bitbucket => {
            seen.bitbucket = overlay(table, settings, BitbucketSection::CREDENTIAL_GROUPS)?;
        }
        ProviderKind::Github => {
            seen.github = overlay(table, settings, GithubSection::CREDENTIAL_GROUPS)?;
        }
        ProviderKind::Gitea => {
            seen.gitea = overlay(table, settings, GiteaSection::CREDENTIAL_GROUPS)?;
        }
        ProviderKind::Gitlab => {
            seen.gitlab = overlay(table, settings, GitlabSection::CREDENTIAL_GROUPS)?;
        }
        ProviderKind::Urls => {
            let key = settings.keys().next().cloned().unwrap_or_default();
            return Err((
                key,
                "is not a key of a `urls` source: its URLs come from --url / --url-file".into(),
            ));
        }
    }
    Ok(seen)
}

/// `--provider`, else the source's `provider`, else the default.
pub fn kind_of(
    flag: Option<ProviderKind>,
    source: Option<&str>,
) -> Result<ProviderKind, ConfigError> {
    match (flag, source) {
        (Some(k), _) => Ok(k),
        (None, None) => Ok(ProviderKind::default()),
        (None, Some(name)) => ProviderKind::parse(name).ok_or_else(|| {
            ConfigError::Other(format!(
                "unknown provider `{}`: expected {}",
                crate::text::escape(name),
                ProviderKind::names()
            ))
        }),
    }
}

/// The provider of one run for one source, its credentials found the provider's way (flags,
/// environment `env`, the config file's references `refs`, the credentials file, a prompt).
/// `retry` is `--retries`/`--retry-delay`.
pub fn build(
    cfg: &ProviderConfig,
    args: &ProviderArgs,
    env: &dyn Fn(&str) -> Option<String>,
    retry: (u32, Duration),
) -> Result<Box<dyn Provider>, Error> {
    Ok(match cfg {
        ProviderConfig::Bitbucket(endpoints) => {
            let creds = bitbucket::credential::for_run(
                &args.bitbucket,
                env,
                std::slice::from_ref(&endpoints.refs),
            )?;
            Box::new(bitbucket::build(endpoints, retry, creds)?)
        }
        ProviderConfig::Urls(settings) => Box::new(urls::build(settings)?),
        ProviderConfig::Github(endpoints) => {
            let creds = github::creds::for_run(&args.github, env, &endpoints.file)?;
            Box::new(github::build(endpoints, retry, creds)?)
        }
        ProviderConfig::Gitea(endpoints) => {
            let token = gitea::creds::for_run(&args.gitea, env, &endpoints.file)?;
            Box::new(gitea::build(endpoints, retry, token)?)
        }
        ProviderConfig::Gitlab(endpoints) => {
            let token = gitlab::creds::for_run(&args.gitlab, env, &endpoints.file)?;
            Box::new(gitlab::build(endpoints, retry, token)?)
        }
    })
}

/// What `login` checks and, once the check passed, stores.
pub struct ForLogin {
    pub provider: Box<dyn Provider>,
    /// The provider's table name in the credentials file, and the table to store there.
    pub section: &'static str,
    pub table: toml::Table,
}

/// The provider `login` checks: credentials from flags, environment and `refs`, else a
/// prompt; never from the credentials file, which `login` replaces.
pub fn for_login(
    cfg: &ProviderConfig,
    args: &ProviderArgs,
    env: &dyn Fn(&str) -> Option<String>,
    retry: (u32, Duration),
) -> Result<ForLogin, Error> {
    Ok(match cfg {
        ProviderConfig::Bitbucket(endpoints) => {
            let creds = bitbucket::credential::for_login(
                &args.bitbucket,
                env,
                std::slice::from_ref(&endpoints.refs),
            )?;
            ForLogin {
                section: bitbucket::consumer::SECTION,
                table: bitbucket::credential::section(&creds),
                provider: Box::new(bitbucket::build(endpoints, retry, creds)?),
            }
        }
        ProviderConfig::Urls(_) => {
            return Err(ConfigError::Other(
                "`login` has nothing to store for --provider urls: its git credentials come \
                 from a --netrc file"
                    .into(),
            )
            .into());
        }
        ProviderConfig::Github(endpoints) => {
            let creds = github::creds::for_login(&args.github, env, &endpoints.file)?;
            ForLogin {
                section: github::creds::SECTION,
                table: github::creds::section(&creds),
                provider: Box::new(github::build(endpoints, retry, creds)?),
            }
        }
        ProviderConfig::Gitea(endpoints) => {
            let token = gitea::creds::for_login(&args.gitea, env, &endpoints.file)?;
            ForLogin {
                section: gitea::creds::SECTION,
                table: gitea::creds::section(&token),
                provider: Box::new(gitea::build(endpoints, retry, token)?),
            }
        }
        ProviderConfig::Gitlab(endpoints) => {
            let token = gitlab::creds::for_login(&args.gitlab, env, &endpoints.file)?;
            ForLogin {
                section: gitlab::creds::SECTION,
                table: gitlab::creds::section(&token),
                provider: Box::new(gitlab::build(endpoints, retry, token)?),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_beats_the_source_beats_the_default() {
        assert_eq!(kind_of(None, None).unwrap(), ProviderKind::Bitbucket);
        assert_eq!(
            kind_of(None, Some("bitbucket")).unwrap(),
            ProviderKind::Bitbucket
        );
        assert_eq!(
            kind_of(Some(ProviderKind::Bitbucket), Some("gitlab")).unwrap(),
            ProviderKind::Bitbucket
        );
        let e = kind_of(None, Some("sourcehut")).unwrap_err().to_string();
        assert!(e.contains("sourcehut") && e.contains("`bitbucket`"), "{e}");
        for k in ProviderKind::value_variants() {
            assert_eq!(ProviderKind::parse(k.name()), Some(*k));
        }
    }
}
