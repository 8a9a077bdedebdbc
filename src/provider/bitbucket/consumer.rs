//! Bitbucket's credential resolution: an OAuth consumer's key and secret, where each may come
//! from and in which order, and its table in the credentials file.
//!
//! Order for a run: flag, env, the config file's references, the credentials file, a prompt; for
//! `login`, the same without the credentials file (it is what `login` replaces).

use serde::{Deserialize, Serialize};

use super::args::BitbucketArgs;
use super::settings::CredentialRefs;
use crate::config::ConfigError;
use crate::credentials::{self, StoredFile, read_secret_file};
use crate::secret::Secret;

/// An OAuth consumer's key and secret, and where each came from (for messages; never the value).
#[derive(Debug, Clone)]
pub struct ConsumerCredentials {
    pub key: String,
    pub secret: Secret,
    pub key_source: &'static str,
    pub secret_source: &'static str,
}

/// Credentials as stored by `git-offsite login`.
#[derive(Debug, Clone, Default)]
pub struct StoredCredentials {
    pub key: Option<String>,
    pub secret: Option<Secret>,
}

/// Works out the consumer key and secret, each on its own, first found wins:
/// flag, (secret only) `--consumer-secret-file`, environment, the config file's references
/// (`refs`, most specific first: the `[[source]]`, then `[bitbucket]`), the stored credentials.
/// `Ok(None)` when neither is found anywhere (the caller may prompt);
/// an error when only one of the two is found.
pub fn resolve_consumer(
    args: &BitbucketArgs,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &[CredentialRefs],
    stored: &StoredCredentials,
) -> Result<Option<ConsumerCredentials>, ConfigError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let named = |what: &'static str, var: &str| {
        nonempty(env(var)).ok_or_else(|| ConfigError::UnsetVariable {
            what,
            var: var.to_string(),
        })
    };

    let mut key = nonempty(args.consumer_key.clone())
        .map(|k| (k, "--consumer-key"))
        .or_else(|| nonempty(env("BITBUCKET_CONSUMER_KEY")).map(|k| (k, "BITBUCKET_CONSUMER_KEY")));
    for r in refs {
        if key.is_some() {
            break;
        }
        if let Some(k) = nonempty(r.consumer_key.clone()) {
            key = Some((k, "the config file"));
        } else if let Some(var) = &r.consumer_key_env {
            key = Some((
                named("consumer_key_env", var)?,
                "the config file's consumer_key_env",
            ));
        }
    }
    let key = key.or_else(|| stored.key.clone().map(|k| (k, "the stored credentials")));

    let mut secret = match (&args.consumer_secret, &args.consumer_secret_file) {
        (Some(s), _) if !s.is_empty() => Some((Secret::new(s.clone()), "--consumer-secret")),
        (_, Some(path)) => Some((
            read_secret_file(path, "--consumer-secret-file", "consumer secret")?,
            "--consumer-secret-file",
        )),
        _ => nonempty(env("BITBUCKET_CONSUMER_SECRET"))
            .map(|s| (Secret::new(s), "BITBUCKET_CONSUMER_SECRET")),
    };
    for r in refs {
        if secret.is_some() {
            break;
        }
        if let Some(path) = &r.consumer_secret_file {
            secret = Some((
                read_secret_file(
                    path,
                    "the config file's consumer_secret_file",
                    "consumer secret",
                )?,
                "the config file's consumer_secret_file",
            ));
        } else if let Some(var) = &r.consumer_secret_env {
            secret = Some((
                Secret::new(named("consumer_secret_env", var)?),
                "the config file's consumer_secret_env",
            ));
        }
    }
    let secret = secret.or_else(|| stored.secret.clone().map(|s| (s, "the stored credentials")));

    match (key, secret) {
        (Some((key, key_source)), Some((secret, secret_source))) => Ok(Some(ConsumerCredentials {
            key,
            secret,
            key_source,
            secret_source,
        })),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::MissingCredentials { missing: "key" }),
        (Some(_), None) => Err(ConfigError::MissingCredentials { missing: "secret" }),
    }
}

/// The `[bitbucket]` table of the credentials file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    consumer_key: String,
    consumer_secret: String,
}

/// The name of this provider's table in the credentials file.
pub const SECTION: &str = "bitbucket";

/// The consumer stored by `git-offsite login`, if any. The message of a broken table never
/// quotes it: it holds the secret.
pub fn stored(file: &StoredFile) -> Result<StoredCredentials, ConfigError> {
    let Some(table) = file.section(SECTION) else {
        return Ok(StoredCredentials::default());
    };
    let s: Section = table.clone().try_into().map_err(|_| {
        file.error(
            "is not valid; expected a [bitbucket] table with consumer_key and consumer_secret",
        )
    })?;
    Ok(StoredCredentials {
        key: Some(s.consumer_key),
        secret: Some(Secret::new(s.consumer_secret)),
    })
}

/// The `[bitbucket]` table that stores `creds`.
pub fn section(creds: &ConsumerCredentials) -> toml::Table {
    toml::Table::try_from(Section {
        consumer_key: creds.key.clone(),
        consumer_secret: creds.secret.expose().to_string(),
    })
    .expect("two strings always make a TOML table")
}

/// The OAuth consumer of a run: flags, secret file, env, the config file's references, the
/// stored file, then (on a terminal) a prompt with an offer to store the answer.
pub fn for_run(
    args: &BitbucketArgs,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &[CredentialRefs],
) -> Result<ConsumerCredentials, ConfigError> {
    // The stored file is read only when everything else falls short, so a broken or
    // too-readable credentials file does not get in the way of explicit settings.
    match resolve_consumer(args, env, refs, &StoredCredentials::default()) {
        Ok(Some(c)) => return Ok(c),
        Ok(None) | Err(ConfigError::MissingCredentials { .. }) => {}
        Err(e) => return Err(e),
    }
    let path = credentials::default_path(env);
    let stored = match &path {
        Some(p) => stored(&credentials::load(p)?)?,
        None => StoredCredentials::default(),
    };
    if let Some(c) = resolve_consumer(args, env, refs, &stored)? {
        return Ok(c);
    }
    if !credentials::interactive() {
        return Err(ConfigError::MissingCredentials {
            missing: "key and secret",
        });
    }
    let creds = prompt()?;
    if let Some(p) = &path
        && credentials::confirm(&format!("Store them in {} (mode 0600)?", p.display()))
    {
        credentials::save(p, SECTION, section(&creds))?;
        eprintln!("Stored in {}.", p.display());
    }
    Ok(creds)
}

/// The consumer `login` checks: flags, env and the config file's references (so it runs in
/// scripts), else a prompt; never the stored file, which `login` is there to replace.
pub fn for_login(
    args: &BitbucketArgs,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &[CredentialRefs],
) -> Result<ConsumerCredentials, ConfigError> {
    match resolve_consumer(args, env, refs, &StoredCredentials::default())? {
        Some(c) => Ok(c),
        None if credentials::interactive() => prompt(),
        None => Err(ConfigError::MissingCredentials {
            missing: "key and secret",
        }),
    }
}

/// Asks for the consumer key (echoed) and secret (not echoed) on the terminal.
fn prompt() -> Result<ConsumerCredentials, ConfigError> {
    let key = credentials::prompt_line("Bitbucket OAuth consumer key: ")?;
    let secret = credentials::prompt_secret("Bitbucket OAuth consumer secret (not echoed): ")?;
    if key.is_empty() || secret.is_empty() {
        return Err(ConfigError::MissingCredentials {
            missing: if key.is_empty() { "key" } else { "secret" },
        });
    }
    Ok(ConsumerCredentials {
        key,
        secret: Secret::new(secret),
        key_source: "the prompt",
        secret_source: "the prompt",
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn bb(key: Option<&str>, secret: Option<&str>, file: Option<&Path>) -> BitbucketArgs {
        BitbucketArgs {
            consumer_key: key.map(String::from),
            consumer_secret: secret.map(String::from),
            consumer_secret_file: file.map(Path::to_path_buf),
            bitbucket_api_url: None,
            bitbucket_token_url: None,
            bitbucket_git_url: None,
            ..BitbucketArgs::default()
        }
    }

    #[test]
    fn flags_beat_file_beat_env_beat_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let env = env_of(&[
            ("BITBUCKET_CONSUMER_KEY", "env-key"),
            ("BITBUCKET_CONSUMER_SECRET", "env-secret"),
        ]);
        let stored = StoredCredentials {
            key: Some("stored-key".into()),
            secret: Some(Secret::new("stored-secret")),
        };

        let c = resolve_consumer(&bb(Some("k"), Some("s"), Some(&file)), &env, &[], &stored)
            .unwrap()
            .unwrap();
        assert_eq!((c.key.as_str(), c.secret.expose()), ("k", "s"));

        let c = resolve_consumer(&bb(None, None, Some(&file)), &env, &[], &stored)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.key.as_str(), c.secret.expose()),
            ("env-key", "from-file")
        );
        assert_eq!(c.secret_source, "--consumer-secret-file");

        let c = resolve_consumer(&bb(None, None, None), &env, &[], &stored)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.key.as_str(), c.secret.expose()),
            ("env-key", "env-secret")
        );

        let c = resolve_consumer(&bb(None, None, None), &env_of(&[]), &[], &stored)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.key.as_str(), c.secret.expose()),
            ("stored-key", "stored-secret")
        );

        assert!(
            resolve_consumer(
                &bb(None, None, None),
                &env_of(&[]),
                &[],
                &StoredCredentials::default()
            )
            .unwrap()
            .is_none()
        );
        let half = resolve_consumer(
            &bb(Some("k"), None, None),
            &env_of(&[]),
            &[],
            &StoredCredentials::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            half.contains("secret") && half.contains("BITBUCKET_CONSUMER_SECRET"),
            "{half}"
        );
    }

    #[test]
    fn config_file_references_sit_between_env_and_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "file-secret").unwrap();
        let source = CredentialRefs {
            consumer_key_env: Some("SRC_KEY".into()),
            consumer_secret_file: Some(file.clone()),
            ..CredentialRefs::default()
        };
        let global = CredentialRefs {
            consumer_key: Some("global-key".into()),
            consumer_secret_env: Some("GLOBAL_SECRET".into()),
            ..CredentialRefs::default()
        };
        let stored = StoredCredentials {
            key: Some("stored-key".into()),
            secret: Some(Secret::new("stored-secret")),
        };
        let env = env_of(&[("SRC_KEY", "src-key"), ("GLOBAL_SECRET", "global-secret")]);
        let c = resolve_consumer(
            &bb(None, None, None),
            &env,
            &[source.clone(), global.clone()],
            &stored,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.key.as_str(), c.secret.expose()),
            ("src-key", "file-secret")
        );
        let c = resolve_consumer(
            &bb(None, None, None),
            &env,
            std::slice::from_ref(&global),
            &stored,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.key.as_str(), c.secret.expose()),
            ("global-key", "global-secret")
        );
        // Env beats the file.
        let env2 = env_of(&[
            ("BITBUCKET_CONSUMER_KEY", "env-key"),
            ("GLOBAL_SECRET", "g"),
        ]);
        let c = resolve_consumer(&bb(None, None, None), &env2, &[global], &stored)
            .unwrap()
            .unwrap();
        assert_eq!(c.key, "env-key");
        // A reference to an unset variable is an error naming it, not a silent fallback.
        let e = resolve_consumer(&bb(None, None, None), &env_of(&[]), &[source], &stored)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SRC_KEY"), "{e}");
    }

    #[test]
    fn the_stored_table_round_trips_and_a_broken_one_is_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let creds = ConsumerCredentials {
            key: "KEY".into(),
            secret: Secret::new("s3cr3t"),
            key_source: "test",
            secret_source: "test",
        };
        credentials::save(&path, SECTION, section(&creds)).unwrap();
        let back = stored(&credentials::load(&path).unwrap()).unwrap();
        assert_eq!(back.key.as_deref(), Some("KEY"));
        assert_eq!(back.secret.unwrap().expose(), "s3cr3t");
        std::fs::write(&path, "[bitbucket]\nconsumer_secret = 12345678\n").unwrap();
        let e = stored(&credentials::load(&path).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("[bitbucket]") && !e.contains("12345678"), "{e}");
    }
}
