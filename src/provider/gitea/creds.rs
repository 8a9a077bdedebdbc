//! Where the Gitea token comes from, in order: `--gitea-token-file`, `GITEA_TOKEN`, the config
//! file's `[gitea]` `token_file` / `token_env`, the credentials file's `[gitea]` table, a prompt.
//! `login` resolves the same way without the credentials file (it is what `login` replaces).

use serde::{Deserialize, Serialize};

use super::args::GiteaArgs;
use super::settings::GiteaSection;
use crate::config::ConfigError;
use crate::credentials::{self, StoredFile, read_secret_file};
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

/// The `[gitea]` table of the credentials file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    token: String,
}

/// The token from flags, `env` and the config file's table, then `stored`; `Ok(None)` when
/// nothing is found anywhere.
fn resolve(
    args: &GiteaArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GiteaSection,
    stored: Option<&StoredFile>,
) -> Result<Option<Secret>, ConfigError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    if let Some(p) = &args.gitea_token_file {
        return read_secret_file(p, "--gitea-token-file", "token").map(Some);
    }
    if let Some(t) = nonempty(env("GITEA_TOKEN")) {
        return Ok(Some(Secret::new(t.trim())));
    }
    if let Some(p) = &file.token_file {
        return read_secret_file(p, "the config file's token_file", "token").map(Some);
    }
    if let Some(var) = &file.token_env {
        let t = nonempty(env(var)).ok_or_else(|| ConfigError::UnsetVariable {
            what: "token_env",
            var: var.clone(),
        })?;
        return Ok(Some(Secret::new(t.trim())));
    }
    let Some(table) = stored.and_then(|s| s.section(SECTION)) else {
        return Ok(None);
    };
    let broken = || {
        stored
            .expect("a table came from it")
            .error("is not valid; expected a [gitea] table with token")
    };
    let s: Stored = table.clone().try_into().map_err(|_| broken())?;
    Ok(Some(Secret::new(s.token)))
}

/// The `[gitea]` table that stores `token`.
pub fn section(token: &Secret) -> toml::Table {
    toml::Table::try_from(Stored {
        token: token.expose().to_string(),
    })
    .expect("a string always makes a TOML table")
}

/// The token of a run: flags, env, the config file, the credentials file, then (on a
/// terminal) a prompt with an offer to store the answer.
pub fn for_run(
    args: &GiteaArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GiteaSection,
) -> Result<Secret, ConfigError> {
    if let Some(t) = resolve(args, env, file, None)? {
        return Ok(t);
    }
    let path = credentials::default_path(env);
    if let Some(p) = &path
        && let Some(t) = resolve(args, env, file, Some(&credentials::load(p)?))?
    {
        return Ok(t);
    }
    if !credentials::interactive() {
        return Err(ConfigError::Other(MISSING.into()));
    }
    let token = prompt()?;
    if let Some(p) = &path
        && credentials::confirm(&format!("Store it in {} (mode 0600)?", p.display()))
    {
        credentials::save(p, SECTION, section(&token))?;
        eprintln!("Stored in {}.", p.display());
    }
    Ok(token)
}

/// The token `login` checks: flags, env and the config file, else the setup steps and a
/// prompt; never the stored file, which `login` replaces.
pub fn for_login(
    args: &GiteaArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GiteaSection,
) -> Result<Secret, ConfigError> {
    if let Some(t) = resolve(args, env, file, None)? {
        return Ok(t);
    }
    eprintln!("{SETUP}\n");
    if credentials::interactive() {
        return prompt();
    }
    Err(ConfigError::Other(MISSING.into()))
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
