//! GitHub's credential resolution: a GitHub App (id + private key, optionally an installation
//! id) or a personal token, where each may come from and in which order, and the `[github]`
//! table of the credentials file.
//!
//! Order for each value: flag, environment, the config file's `[github]` table, the credentials
//! file, a prompt. Any app setting found outside the credentials file means an app (and both the
//! id and the key must then be found); else a personal token found there; else whatever the
//! credentials file holds. `login` resolves the same way without the credentials file (it is
//! what `login` replaces).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::args::GithubArgs;
use super::settings::GithubSection;
use super::{AppKey, Credential};
use crate::config::ConfigError;
use crate::credentials::{self, StoredFile, read_secret_file as read_file};
use crate::secret::Secret;

/// The name of this provider's table in the credentials file.
pub const SECTION: &str = "github";

/// What `login` prints (and the README repeats) to set up the organisation-owned credential.
pub const APP_SETUP: &str = "\
To back up an organisation with a GitHub App (owned by the organisation, read-only, tokens that
last one hour):
  1. Organisation settings → Developer settings → GitHub Apps → New GitHub App
     (GitHub Enterprise Server: https://HOST/organizations/ORG/settings/apps/new).
  2. Any name and homepage URL; untick Webhook → Active.
  3. Repository permissions: Contents → Read-only and Metadata → Read-only. Nothing else.
  4. \"Where can this GitHub App be installed?\": Only on this account. Create the app.
  5. Note the App ID at the top of its page; under Private keys, Generate a private key and
     keep the downloaded .pem file where the backup job can read it (mode 0600).
  6. Install App → the organisation → All repositories (or the ones to back up).
  7. git-offsite login --provider github --github-app-id ID --github-private-key-file KEY.pem --owner ORG
A personal token (--github-token-file, GITHUB_TOKEN) also works, but ties the backups to one
person: fine-grained, resource owner = the organisation, Contents and Metadata read-only.";

/// Credentials for one run, and where they came from (for messages; never the value).
#[derive(Debug, Clone)]
pub enum GithubCredentials {
    App {
        key: AppKey,
        /// The PEM text, kept only for `login` to store it.
        pem: Secret,
        installation_id: Option<u64>,
        source: &'static str,
    },
    Token {
        token: Secret,
        source: &'static str,
    },
}

impl GithubCredentials {
    /// The credential a provider is built with, and the fixed installation if any.
    pub fn into_credential(self) -> (Credential, Option<u64>) {
        match self {
            GithubCredentials::App {
                key,
                installation_id,
                ..
            } => (Credential::App(key), installation_id),
            GithubCredentials::Token { token, .. } => (Credential::Token(token), None),
        }
    }
}

/// The `[github]` table of the credentials file: an app or a token.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    #[serde(skip_serializing_if = "Option::is_none")]
    app_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    installation_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

const MISSING: &str = "no GitHub credentials found: pass --github-app-id and \
--github-private-key-file (a GitHub App installed on the owner, recommended; see `git-offsite \
login --provider github`), or --github-token-file or GITHUB_TOKEN (a personal token), or run \
`git-offsite login --provider github` once";

/// Resolves credentials from flags, `env` and the config file's table, then `stored`.
/// `Ok(None)` when nothing is found anywhere.
fn resolve(
    args: &GithubArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GithubSection,
    stored: Option<&StoredFile>,
) -> Result<Option<GithubCredentials>, ConfigError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let app_id = nonempty(args.github_app_id.clone())
        .or_else(|| nonempty(env("GITHUB_APP_ID")))
        .or_else(|| nonempty(file.app_id.clone()));
    let key = match &args.github_private_key_file {
        Some(p) => Some((
            read_file(p, "--github-private-key-file", "private key")?,
            "--github-private-key-file",
        )),
        None => match nonempty(env("GITHUB_APP_PRIVATE_KEY_FILE")) {
            Some(p) => Some((
                read_file(Path::new(&p), "GITHUB_APP_PRIVATE_KEY_FILE", "private key")?,
                "GITHUB_APP_PRIVATE_KEY_FILE",
            )),
            None => match nonempty(env("GITHUB_APP_PRIVATE_KEY")) {
                Some(pem) => Some((Secret::new(pem), "GITHUB_APP_PRIVATE_KEY")),
                None => match &file.private_key_file {
                    Some(p) => Some((
                        read_file(p, "the config file's private_key_file", "private key")?,
                        "the config file's private_key_file",
                    )),
                    None => None,
                },
            },
        },
    };
    let installation_id = match args.github_installation_id {
        Some(id) => Some(id),
        None => match nonempty(env("GITHUB_INSTALLATION_ID")) {
            Some(v) => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|e| ConfigError::InvalidValue {
                        what: "GITHUB_INSTALLATION_ID",
                        value: v.clone(),
                        reason: e.to_string(),
                    })?,
            ),
            None => file.installation_id,
        },
    };
    match (app_id, key) {
        (Some(id), Some((pem, source))) => return app(&id, pem, installation_id, source).map(Some),
        (Some(_), None) => {
            return Err(ConfigError::Other(
                "a GitHub App id was given without its private key: pass \
                 --github-private-key-file (or set GITHUB_APP_PRIVATE_KEY_FILE)"
                    .into(),
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::Other(
                "a GitHub App private key was given without the app's id: pass --github-app-id \
                 (or set GITHUB_APP_ID)"
                    .into(),
            ));
        }
        (None, None) => {}
    }
    let token = match &args.github_token_file {
        Some(p) => Some((
            read_file(p, "--github-token-file", "token")?,
            "--github-token-file",
        )),
        None => match nonempty(env("GITHUB_TOKEN")) {
            Some(t) => Some((Secret::new(t.trim()), "GITHUB_TOKEN")),
            None => match (&file.token_file, &file.token_env) {
                (Some(p), _) => Some((
                    read_file(p, "the config file's token_file", "token")?,
                    "the config file's token_file",
                )),
                (None, Some(var)) => Some((
                    Secret::new(
                        nonempty(env(var)).ok_or_else(|| ConfigError::UnsetVariable {
                            what: "token_env",
                            var: var.clone(),
                        })?,
                    ),
                    "the config file's token_env",
                )),
                (None, None) => None,
            },
        },
    };
    if let Some((token, source)) = token {
        return Ok(Some(GithubCredentials::Token { token, source }));
    }
    let Some(stored) = stored else {
        return Ok(None);
    };
    from_store(stored, installation_id)
}

fn app(
    app_id: &str,
    pem: Secret,
    installation_id: Option<u64>,
    source: &'static str,
) -> Result<GithubCredentials, ConfigError> {
    let key = AppKey::new(app_id, &pem, source).map_err(ConfigError::Other)?;
    Ok(GithubCredentials::App {
        key,
        pem,
        installation_id,
        source,
    })
}

/// The credentials stored by `login`, if any. The message of a broken table never quotes it.
fn from_store(
    file: &StoredFile,
    installation_id: Option<u64>,
) -> Result<Option<GithubCredentials>, ConfigError> {
    let Some(table) = file.section(SECTION) else {
        return Ok(None);
    };
    let broken = || {
        file.error(
            "is not valid; expected a [github] table with app_id and private_key, or with token",
        )
    };
    let s: Stored = table.clone().try_into().map_err(|_| broken())?;
    match (s.app_id, s.private_key, s.token) {
        (Some(id), Some(pem), None) => app(
            &id,
            Secret::new(pem),
            installation_id.or(s.installation_id),
            "the stored credentials",
        )
        .map(Some),
        (None, None, Some(token)) => Ok(Some(GithubCredentials::Token {
            token: Secret::new(token),
            source: "the stored credentials",
        })),
        _ => Err(broken()),
    }
}

/// The `[github]` table that stores `creds`.
pub fn section(creds: &GithubCredentials) -> toml::Table {
    let stored = match creds {
        GithubCredentials::App {
            key,
            pem,
            installation_id,
            ..
        } => Stored {
            app_id: Some(key.app_id.clone()),
            private_key: Some(pem.expose().to_string()),
            installation_id: *installation_id,
            token: None,
        },
        GithubCredentials::Token { token, .. } => Stored {
            token: Some(token.expose().to_string()),
            ..Stored::default()
        },
    };
    toml::Table::try_from(stored).expect("strings and a number always make a TOML table")
}

/// Where GitHub's credentials are looked for ([`credentials::Search`]).
fn search<'a>(
    resolve: credentials::Resolve<'a, GithubCredentials>,
) -> credentials::Search<'a, GithubCredentials> {
    credentials::Search {
        section: SECTION,
        resolve,
        prompt: &prompt,
        table: &section,
        missing: MISSING,
    }
}

/// The credentials of a run ([`credentials::for_run`]).
pub fn for_run(
    args: &GithubArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GithubSection,
) -> Result<GithubCredentials, ConfigError> {
    credentials::for_run(env, &search(&|stored| resolve(args, env, file, stored)))
}

/// The credentials `login` checks ([`credentials::for_login`]), with the app setup steps.
pub fn for_login(
    args: &GithubArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GithubSection,
) -> Result<GithubCredentials, ConfigError> {
    credentials::for_login(
        &search(&|stored| resolve(args, env, file, stored)),
        APP_SETUP,
    )
}

/// Asks for an app id and key file, or (with no app id) a personal token (not echoed).
fn prompt() -> Result<GithubCredentials, ConfigError> {
    let id = credentials::prompt_line("GitHub App ID (empty to use a personal token instead): ")?;
    if !id.is_empty() {
        let path = credentials::prompt_line("Path to the app's private key (.pem): ")?;
        let pem = read_file(Path::new(&path), "the private key file", "private key")?;
        let installation = credentials::prompt_line("Installation id (empty: look it up): ")?;
        let installation_id = match installation.as_str() {
            "" => None,
            v => Some(v.parse::<u64>().map_err(|e| ConfigError::InvalidValue {
                what: "installation id",
                value: v.to_string(),
                reason: e.to_string(),
            })?),
        };
        return app(&id, pem, installation_id, "the prompt");
    }
    let token = credentials::prompt_secret("GitHub personal access token (not echoed): ")?;
    if token.is_empty() {
        return Err(ConfigError::Other(MISSING.into()));
    }
    Ok(GithubCredentials::Token {
        token: Secret::new(token),
        source: "the prompt",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_token_comes_from_the_flag_file_then_env_then_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "from-file\n").unwrap();
        let args = GithubArgs {
            github_token_file: Some(file.clone()),
            ..GithubArgs::default()
        };
        let env = env_of(&[("GITHUB_TOKEN", "from-env"), ("MY_TOKEN", "from-ref")]);
        let token = |c: Option<GithubCredentials>| match c {
            Some(GithubCredentials::Token { token, source }) => {
                (token.expose().to_string(), source)
            }
            other => panic!("{other:?}"),
        };
        let section = GithubSection {
            token_env: Some("MY_TOKEN".into()),
            ..GithubSection::default()
        };
        assert_eq!(
            token(resolve(&args, &env, &section, None).unwrap()),
            ("from-file".into(), "--github-token-file")
        );
        let none = GithubArgs::default();
        assert_eq!(
            token(resolve(&none, &env, &section, None).unwrap()).0,
            "from-env"
        );
        let env = env_of(&[("MY_TOKEN", "from-ref")]);
        assert_eq!(
            token(resolve(&none, &env, &section, None).unwrap()).0,
            "from-ref"
        );
        let e = resolve(&none, &env_of(&[]), &section, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MY_TOKEN"), "{e}");
        assert!(
            resolve(&none, &env_of(&[]), &GithubSection::default(), None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn half_an_app_is_an_error_naming_the_other_half() {
        let env = env_of(&[("GITHUB_APP_ID", "42"), ("GITHUB_TOKEN", "t")]);
        let e = resolve(
            &GithubArgs::default(),
            &env,
            &GithubSection::default(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--github-private-key-file"), "{e}");
        let env = env_of(&[("GITHUB_APP_PRIVATE_KEY", "pem")]);
        let e = resolve(
            &GithubArgs::default(),
            &env,
            &GithubSection::default(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--github-app-id"), "{e}");
        let env = env_of(&[
            ("GITHUB_APP_ID", "42"),
            ("GITHUB_APP_PRIVATE_KEY", "not-pem-s3cr3t"),
        ]);
        let e = resolve(
            &GithubArgs::default(),
            &env,
            &GithubSection::default(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("GITHUB_APP_PRIVATE_KEY") && !e.contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn a_stored_token_round_trips_and_a_broken_table_is_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let creds = GithubCredentials::Token {
            token: Secret::new("ghp_s3cr3t"),
            source: "test",
        };
        credentials::save(&path, SECTION, section(&creds)).unwrap();
        let back = resolve(
            &GithubArgs::default(),
            &env_of(&[]),
            &GithubSection::default(),
            Some(&credentials::load(&path).unwrap()),
        )
        .unwrap();
        assert!(
            matches!(back, Some(GithubCredentials::Token { ref token, .. }) if token.expose() == "ghp_s3cr3t")
        );
        std::fs::write(&path, "[github]\ntoken = \"ghp_s3cr3t\"\napp_id = \"1\"\n").unwrap();
        let e = from_store(&credentials::load(&path).unwrap(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[github]") && !e.contains("s3cr3t"), "{e}");
    }
}
