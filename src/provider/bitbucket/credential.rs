//! Which Bitbucket credential a run uses: an OAuth consumer (the default, owned by a workspace),
//! a workspace/project/repository access token, or a user's scoped API token — exactly one.
//!
//! Why one chooser: each kind authenticates differently (a client-credentials grant, Bearer,
//! HTTP Basic with the Atlassian account email) and uses its own git user, so a run that found
//! two kinds could not tell which one the user meant; it stops with a line naming the flags.
//! Access and API tokens come from a file flag, an environment variable, or the credentials
//! file's `[bitbucket]` table (`access_token`, or `email` + `api_token`); the consumer keeps its
//! own resolution in [`super::consumer`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::args::BitbucketArgs;
use super::consumer::{self, ConsumerCredentials};
use super::settings::CredentialRefs;
use crate::config::ConfigError;
use crate::credentials::{self, StoredFile};
use crate::secret::Secret;

pub const ACCESS_TOKEN_ENV: &str = "BITBUCKET_ACCESS_TOKEN";
pub const API_TOKEN_ENV: &str = "BITBUCKET_API_TOKEN";
pub const EMAIL_ENV: &str = "BITBUCKET_EMAIL";
/// Git user of OAuth and access tokens (NOTES §1: literal `x-token-auth`).
pub const TOKEN_GIT_USER: &str = "x-token-auth";
/// Git user of a scoped API token (support.atlassian.com using-api-tokens; ghorg).
pub const API_TOKEN_GIT_USER: &str = "x-bitbucket-api-token-auth";

const ONE_KIND: &str = "Bitbucket credentials of more than one kind are set: use exactly one of \
--consumer-key/--consumer-secret (BITBUCKET_CONSUMER_*), --access-token-file \
(BITBUCKET_ACCESS_TOKEN), or --email with --api-token-file (BITBUCKET_API_TOKEN)";

/// A Bitbucket credential of one of the three kinds.
#[derive(Debug, Clone)]
pub enum BitbucketCredential {
    Consumer(ConsumerCredentials),
    /// A workspace, project or repository access token: Bearer, never renewable.
    AccessToken {
        token: Secret,
    },
    /// A user's scoped API token: HTTP Basic `email:token` for the API.
    ApiToken {
        email: String,
        token: Secret,
    },
}

/// The token kinds' keys in the `[bitbucket]` table (the consumer's are in [`super::consumer`]).
#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_token: Option<String>,
}

/// The token kinds found in flags, `env` and the config file's references `refs` (not the
/// stored file), first found wins; `Ok(None)`: none set.
fn explicit_token(
    args: &BitbucketArgs,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &[CredentialRefs],
) -> Result<Option<BitbucketCredential>, ConfigError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    // The config file's `*_file`, else its `*_env` (a named variable that must be set).
    let from_refs = |file: fn(&CredentialRefs) -> Option<&Path>,
                     var: fn(&CredentialRefs) -> Option<&String>,
                     what: &'static str,
                     kind: &'static str|
     -> Result<Option<Secret>, ConfigError> {
        for r in refs {
            if let Some(p) = file(r) {
                return read(p, what, kind).map(Some);
            }
            if let Some(v) = var(r) {
                return nonempty(env(v))
                    .map(|t| Some(Secret::new(t.trim())))
                    .ok_or_else(|| ConfigError::UnsetVariable {
                        what,
                        var: v.clone(),
                    });
            }
        }
        Ok(None)
    };
    let access = match &args.access_token_file {
        Some(p) => Some(read(p, "--access-token-file", "access token")?),
        None => match nonempty(env(ACCESS_TOKEN_ENV)) {
            Some(t) => Some(Secret::new(t.trim())),
            None => from_refs(
                |r| r.access_token_file.as_deref(),
                |r| r.access_token_env.as_ref(),
                "the config file's access_token_file/access_token_env",
                "access token",
            )?,
        },
    };
    let api = match &args.api_token_file {
        Some(p) => Some(read(p, "--api-token-file", "API token")?),
        None => match nonempty(env(API_TOKEN_ENV)) {
            Some(t) => Some(Secret::new(t.trim())),
            None => from_refs(
                |r| r.api_token_file.as_deref(),
                |r| r.api_token_env.as_ref(),
                "the config file's api_token_file/api_token_env",
                "API token",
            )?,
        },
    };
    let email = nonempty(args.email.clone())
        .or_else(|| nonempty(env(EMAIL_ENV)))
        .or_else(|| refs.iter().find_map(|r| nonempty(r.email.clone())));
    match (access, api, email) {
        (Some(_), Some(_), _) => Err(ConfigError::Other(ONE_KIND.into())),
        (Some(_), None, Some(_)) => Err(ConfigError::Other(
            "--email goes with --api-token-file (BITBUCKET_API_TOKEN), not with an access token: \
             drop --email/BITBUCKET_EMAIL"
                .into(),
        )),
        (Some(token), None, None) => Ok(Some(BitbucketCredential::AccessToken { token })),
        (None, Some(token), Some(email)) => Ok(Some(BitbucketCredential::ApiToken {
            email: email.trim().to_string(),
            token,
        })),
        (None, Some(_), None) => Err(ConfigError::Other(
            "a Bitbucket API token needs the Atlassian account email it belongs to: pass --email \
             (or BITBUCKET_EMAIL)"
                .into(),
        )),
        (None, None, Some(_)) => Err(ConfigError::Other(
            "--email was given without an API token: pass --api-token-file (or \
             BITBUCKET_API_TOKEN)"
                .into(),
        )),
        (None, None, None) => Ok(None),
    }
}

/// Whether any consumer setting is given outside the stored file.
fn consumer_set(
    args: &BitbucketArgs,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &[CredentialRefs],
) -> Result<bool, ConfigError> {
    Ok(matches!(
        consumer::resolve_consumer(args, env, refs, &Default::default()),
        Ok(Some(_)) | Err(ConfigError::MissingCredentials { .. })
    ))
}

/// The token kinds held by the stored `[bitbucket]` table, if any.
fn stored_token(file: &StoredFile) -> Result<Option<BitbucketCredential>, ConfigError> {
    let Some(table) = file.section(consumer::SECTION) else {
        return Ok(None);
    };
    if table.contains_key("consumer_key") {
        return Ok(None);
    }
    let s: TokenSection = table.clone().try_into().map_err(|_| {
        file.error("is not valid; expected a [bitbucket] table with consumer_key and consumer_secret, access_token, or email and api_token")
    })?;
    Ok(match (s.access_token, s.email, s.api_token) {
        (Some(t), None, None) => Some(BitbucketCredential::AccessToken {
            token: Secret::new(t),
        }),
        (None, Some(email), Some(t)) => Some(BitbucketCredential::ApiToken {
            email,
            token: Secret::new(t),
        }),
        _ => return Err(file.error(
            "is not valid; its [bitbucket] table must hold consumer_key and consumer_secret, access_token, or email and api_token",
        )),
    })
}

/// A token kind set by flag or env (`None`: none), refused beside any consumer setting.
fn explicit_only(
    args: &BitbucketArgs,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &[CredentialRefs],
) -> Result<Option<BitbucketCredential>, ConfigError> {
    let token = explicit_token(args, env, refs)?;
    if token.is_some() && consumer_set(args, env, refs)? {
        return Err(ConfigError::Other(ONE_KIND.into()));
    }
    Ok(token)
}

/// The credential of a run: a token kind set by flag or env, else the consumer's own order
/// (flags, env, config references), else whatever the credentials file stores, else a prompt.
pub fn for_run(
    args: &BitbucketArgs,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &[CredentialRefs],
) -> Result<BitbucketCredential, ConfigError> {
    if let Some(token) = explicit_only(args, env, refs)? {
        return Ok(token);
    }
    if !consumer_set(args, env, refs)?
        && let Some(path) = credentials::default_path(env)
        && let Some(token) = stored_token(&credentials::load(&path)?)?
    {
        return Ok(token);
    }
    consumer::for_run(args, env, refs).map(BitbucketCredential::Consumer)
}

/// The credential `login` checks: as [`for_run`] without the credentials file.
pub fn for_login(
    args: &BitbucketArgs,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &[CredentialRefs],
) -> Result<BitbucketCredential, ConfigError> {
    if let Some(token) = explicit_only(args, env, refs)? {
        return Ok(token);
    }
    consumer::for_login(args, env, refs).map(BitbucketCredential::Consumer)
}

/// The `[bitbucket]` table that stores `cred`.
pub fn section(cred: &BitbucketCredential) -> toml::Table {
    let s = match cred {
        BitbucketCredential::Consumer(c) => return consumer::section(c),
        BitbucketCredential::AccessToken { token } => TokenSection {
            access_token: Some(token.expose().to_string()),
            ..TokenSection::default()
        },
        BitbucketCredential::ApiToken { email, token } => TokenSection {
            email: Some(email.clone()),
            api_token: Some(token.expose().to_string()),
            ..TokenSection::default()
        },
    };
    toml::Table::try_from(s).expect("strings always make a TOML table")
}

fn read(path: &Path, what: &'static str, kind: &'static str) -> Result<Secret, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    match raw.trim() {
        "" => Err(ConfigError::EmptyFile {
            what: kind,
            path: path.to_path_buf(),
        }),
        v => Ok(Secret::new(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env_of;

    #[test]
    fn exactly_one_kind_is_accepted() {
        let args = BitbucketArgs::default();
        let c = for_login(&args, &env_of(&[(ACCESS_TOKEN_ENV, "at")]), &[]).unwrap();
        assert!(
            matches!(c, BitbucketCredential::AccessToken { .. }),
            "{c:?}"
        );
        let c = for_login(
            &args,
            &env_of(&[(API_TOKEN_ENV, "t"), (EMAIL_ENV, "a@b.c")]),
            &[],
        )
        .unwrap();
        assert!(matches!(c, BitbucketCredential::ApiToken { ref email, .. } if email == "a@b.c"));
        for env in [
            env_of(&[(ACCESS_TOKEN_ENV, "at"), (API_TOKEN_ENV, "t")]),
            env_of(&[(ACCESS_TOKEN_ENV, "at"), ("BITBUCKET_CONSUMER_KEY", "k")]),
        ] {
            let e = for_login(&args, &env, &[]).unwrap_err().to_string();
            assert!(
                e.contains("exactly one") && e.contains("--access-token-file"),
                "{e}"
            );
        }
        let e = for_login(&args, &env_of(&[(API_TOKEN_ENV, "t")]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--email"), "{e}");
    }

    #[test]
    fn stored_tokens_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let cred = BitbucketCredential::ApiToken {
            email: "a@b.c".into(),
            token: Secret::new("tok"),
        };
        credentials::save(&path, consumer::SECTION, section(&cred)).unwrap();
        let back = stored_token(&credentials::load(&path).unwrap())
            .unwrap()
            .unwrap();
        assert!(
            matches!(back, BitbucketCredential::ApiToken { email, token } if email == "a@b.c" && token.expose() == "tok")
        );
    }
}
