//! Where the Gitea token comes from, in order: `--gitea-token-file`, `GITEA_TOKEN`, the config
//! file's `[gitea]` `token_file` / `token_env`, the credentials file's `[gitea]` table, a prompt.
//! `login` resolves the same way without the credentials file (it is what `login` replaces).

use super::args::GiteaArgs;
use super::settings::GiteaSection;
use crate::config::ConfigError;
use crate::credentials::{self, StoredFile};
use crate::secret::Secret;

/// The name of this provider's table in the credentials file.
pub const SECTION: &str = "gitea";

/// What `login` prints (and the README repeats) to make a least-privilege token.
pub const SETUP: &str = "\
To back up a Gitea or Forgejo organisation or user with a read-only token:
  1. Preferably as a dedicated account that is a member of the organisation (a team with
     read access to its repositories), so the backups do not stop when a person leaves.
  2. Settings → Applications → Generate New Token; any name.
  3. Repository and Organisation access: All (or Public only, for public repositories).
  4. Permissions: repository → Read, organization → Read, user → Read (login checks the
     token with GET /api/v1/user). Nothing else.
  5. Keep the token in a file only the backup job can read (mode 0600).
  6. git-offsite login --provider gitea --gitea-url https://HOST --gitea-token-file TOKEN --owner ORG";

const MISSING: &str = "no Gitea token found: pass --gitea-token-file or set GITEA_TOKEN, or run \
`git-offsite login --provider gitea` once";

/// The token from flags, `env` and the config file's table, then `stored`
/// ([`credentials::resolve_token`]).
fn resolve(
    args: &GiteaArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GiteaSection,
    stored: Option<&StoredFile>,
) -> Result<Option<Secret>, ConfigError> {
    let src = credentials::TokenSources {
        flag: (args.gitea_token_file.as_deref(), "--gitea-token-file"),
        var: "GITEA_TOKEN",
        token_file: file.token_file.as_deref(),
        token_env: file.token_env.as_deref(),
        section: SECTION,
    };
    credentials::resolve_token(&src, env, stored)
}

/// The `[gitea]` table that stores `token`.
pub fn section(token: &Secret) -> toml::Table {
    credentials::token_table(token)
}

/// Where Gitea's token is looked for ([`credentials::Search`]).
fn search<'a>(resolve: credentials::Resolve<'a, Secret>) -> credentials::Search<'a, Secret> {
    credentials::Search {
        section: SECTION,
        resolve,
        prompt: &prompt,
        table: &section,
        missing: MISSING,
    }
}

/// The token of a run ([`credentials::for_run`]).
pub fn for_run(
    args: &GiteaArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GiteaSection,
) -> Result<Secret, ConfigError> {
    credentials::for_run(env, &search(&|stored| resolve(args, env, file, stored)))
}

/// The token `login` checks ([`credentials::for_login`]), with the setup steps.
pub fn for_login(
    args: &GiteaArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GiteaSection,
) -> Result<Secret, ConfigError> {
    credentials::for_login(&search(&|stored| resolve(args, env, file, stored)), SETUP)
}

fn prompt() -> Result<Secret, ConfigError> {
    let token = credentials::prompt_secret("Gitea access token (not echoed): ")?;
    if token.is_empty() {
        return Err(ConfigError::Other(MISSING.into()));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_flag_then_env_then_config_then_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "from-file\n").unwrap();
        let env = |k: &str| match k {
            "GITEA_TOKEN" => Some("from-env".to_string()),
            "MINE" => Some("from-ref".to_string()),
            _ => None,
        };
        let flag = GiteaArgs {
            gitea_token_file: Some(file),
            ..GiteaArgs::default()
        };
        let none = GiteaArgs::default();
        let refs = GiteaSection {
            token_env: Some("MINE".into()),
            ..GiteaSection::default()
        };
        let got = |a: &GiteaArgs, e: &dyn Fn(&str) -> Option<String>, s: Option<&StoredFile>| {
            resolve(a, e, &refs, s)
                .unwrap()
                .map(|t| t.expose().to_string())
        };
        assert_eq!(got(&flag, &env, None).as_deref(), Some("from-file"));
        assert_eq!(got(&none, &env, None).as_deref(), Some("from-env"));
        let only_ref = |k: &str| (k == "MINE").then(|| "from-ref".to_string());
        assert_eq!(got(&none, &only_ref, None).as_deref(), Some("from-ref"));
        let path = dir.path().join("credentials.toml");
        credentials::save(&path, SECTION, section(&Secret::new("st0red"))).unwrap();
        let stored = credentials::load(&path).unwrap();
        let back = resolve(&none, &|_| None, &GiteaSection::default(), Some(&stored)).unwrap();
        assert_eq!(back.unwrap().expose(), "st0red");
        std::fs::write(&path, "[gitea]\ntoken = \"s3cr3t\"\nuser = \"x\"\n").unwrap();
        let e = resolve(
            &none,
            &|_| None,
            &GiteaSection::default(),
            Some(&credentials::load(&path).unwrap()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[gitea]") && !e.contains("s3cr3t"), "{e}");
    }
}
