//! Plain git URLs (`--provider urls`): for servers without a listing API (gitolite, cgit, a bare
//! `git http-backend`) and for trying the tool without an account.
//!
//! Why it looks the way it does:
//! - **The listing is the configuration**: `--url` flags and `--url-file` lines, read and checked
//!   once before the run (a bad line is a configuration error naming the file and line, exit 2),
//!   so a typo never becomes a half-finished backup. Slugs come from the last path segment or
//!   the line's second word, and go through the same slug and duplicate checks as any host's
//!   listing ([`super::vet`]).
//! - **Credentials from a netrc file only**, looked up per repository by the clone URL's host
//!   (`machine HOST login USER password TOKEN`), else `default`, else none: a public repository
//!   needs none, and libgit2 is then given nothing to send. Never from the URL itself (refused,
//!   see [`entries`]) and never from the user's git configuration or credential helpers.
//! - **No API, no token**: nothing to renew and no requests before the clones; `login` has
//!   nothing to store.

pub mod entries;
pub mod netrc;

use std::path::PathBuf;

use async_trait::async_trait;
use clap::Args;
use url::Url;

use self::entries::Entry;
use self::netrc::Netrc;
use super::{GitAuth, Listing, Provider, ProviderError, RemoteRepo};
use crate::config::url::UrlSource;
use crate::config::{ConfigError, FileConfig};

const PROVIDER: &str = "urls";
const NETRC_FLAG: &str = "--netrc (GIT_OFFSITE_NETRC)";

/// The `urls` provider's flags.
#[derive(Debug, Default, Args)]
pub struct UrlsArgs {
    /// With --provider urls: a repository's https clone URL (repeatable); its bundle is named
    /// after the URL's last path segment without `.git`.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,

    /// With --provider urls: a file of repositories, one per line: `URL [SLUG]`; `#` starts a
    /// comment.
    #[arg(
        long,
        value_name = "PATH",
        env = "GIT_OFFSITE_URL_FILE",
        hide_env_values = true
    )]
    pub url_file: Option<PathBuf>,

    /// With --provider urls: netrc-style file of git credentials per host (`machine HOST login
    /// USER password TOKEN`); without it, repositories are cloned without credentials.
    #[arg(
        long,
        value_name = "PATH",
        env = "GIT_OFFSITE_NETRC",
        hide_env_values = true
    )]
    pub netrc: Option<PathBuf>,
}

/// The checked repositories and where credentials come from.
#[derive(Debug, Clone)]
pub struct UrlsSettings {
    pub entries: Vec<Entry>,
    pub netrc: Option<PathBuf>,
}

impl UrlsSettings {
    pub fn new(args: &UrlsArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let insecure = file.allow_insecure_http.unwrap_or(false);
        let mut entries = args
            .urls
            .iter()
            .map(|raw| entries::from_flag(raw, insecure))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(path) = &args.url_file {
            let text = read("--url-file (GIT_OFFSITE_URL_FILE)", path)?;
            entries.extend(entries::from_file(path, &text, insecure)?);
        }
        if entries.is_empty() {
            return Err(ConfigError::Other(
                "--provider urls needs repositories: pass --url URL (repeatable) or --url-file PATH"
                    .into(),
            ));
        }
        Ok(UrlsSettings {
            entries,
            netrc: args.netrc.clone(),
        })
    }

    /// The hosts to resolve before the run starts (see [`crate::config::url::check_resolves`]).
    pub fn dialed(&self) -> Vec<(UrlSource, &Url)> {
        self.entries.iter().map(|e| (e.from, &e.url)).collect()
    }
}

fn read(what: &'static str, path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The provider of one run: the settings' repositories and the netrc's credentials.
#[derive(Debug)]
pub struct UrlsProvider {
    entries: Vec<Entry>,
    netrc: Netrc,
}

/// Reads the netrc file (if any) and builds the provider.
pub fn build(settings: &UrlsSettings) -> Result<UrlsProvider, ConfigError> {
    let netrc = match &settings.netrc {
        Some(path) => {
            Netrc::parse(&read(NETRC_FLAG, path)?).map_err(|e| ConfigError::CredentialsFile {
                path: path.clone(),
                message: e.to_string(),
            })?
        }
        None => Netrc::default(),
    };
    Ok(UrlsProvider {
        entries: settings.entries.clone(),
        netrc,
    })
}

#[async_trait]
impl Provider for UrlsProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn list_repos(&self, owner: &str) -> Result<Listing, ProviderError> {
        let repos = self
            .entries
            .iter()
            .map(|e| RemoteRepo {
                slug: e.slug.clone(),
                full_name: format!("{owner}/{}", e.slug),
                clone_url: e.url.clone(),
                size: None,
                updated_on: None,
                // Unknown without an API: a repository whose fetch brings no refs is `empty`.
                default_branch: None,
                is_private: None,
            })
            .collect();
        Ok(Listing {
            repos,
            rejected: Vec::new(),
        })
    }

    /// The netrc entry for the clone URL's host; the same again on `refresh` (a netrc cannot
    /// be renewed, so a refusal then fails that repository).
    async fn git_auth(
        &self,
        repo: &RemoteRepo,
        _refresh: bool,
    ) -> Result<Option<GitAuth>, ProviderError> {
        let host = repo.clone_url.host_str().unwrap_or_default();
        Ok(self.netrc.lookup(host).map(|l| GitAuth {
            username: l.login.clone(),
            password: l.password.clone(),
        }))
    }

    async fn login_check(&self, _owner: Option<&str>) -> Result<String, ProviderError> {
        Ok(format!(
            "{} repositories configured; the netrc file has credentials for {} hosts",
            self.entries.len(),
            self.netrc.hosts()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(urls: &[&str], netrc: Option<PathBuf>) -> Result<UrlsSettings, ConfigError> {
        let args = UrlsArgs {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            url_file: None,
            netrc,
        };
        UrlsSettings::new(&args, &FileConfig::default())
    }

    #[tokio::test]
    async fn lists_the_urls_and_finds_credentials_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let netrc = dir.path().join("netrc");
        std::fs::write(&netrc, "machine git.example login backup password t0k3n\n").unwrap();
        let s = settings(
            &[
                "https://git.example/team/api.git",
                "https://public.example/x/web",
            ],
            Some(netrc),
        )
        .unwrap();
        let p = build(&s).unwrap();
        let listing = p.list_repos("acme").await.unwrap();
        let names: Vec<_> = listing.repos.iter().map(|r| r.full_name.as_str()).collect();
        assert_eq!(names, ["acme/api", "acme/web"]);
        let auth = p.git_auth(&listing.repos[0], false).await.unwrap().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.expose()),
            ("backup", "t0k3n")
        );
        assert!(p.git_auth(&listing.repos[1], true).await.unwrap().is_none());
    }

    #[test]
    fn no_urls_or_a_bad_netrc_is_a_configuration_error() {
        let e = settings(&[], None).unwrap_err().to_string();
        assert!(e.contains("--url") && e.contains("--url-file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let netrc = dir.path().join("netrc");
        std::fs::write(&netrc, "machine h login u password hunter2 port 1\n").unwrap();
        let s = settings(&["https://h/a"], Some(netrc)).unwrap();
        let e = build(&s).unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("hunter2"), "{e}");
        let s = settings(&["https://h/a"], Some(dir.path().join("missing"))).unwrap();
        assert!(build(&s).unwrap_err().to_string().contains("--netrc"));
    }
}
