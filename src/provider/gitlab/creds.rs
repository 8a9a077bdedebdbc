//! Where GitLab's token comes from, in order: `--gitlab-token-file`, `GITLAB_TOKEN`, the config
//! file's `[gitlab]` table (`token_file`, `token_env`), the credentials file's `[gitlab]` table,
//! a prompt. `login` resolves the same way without the credentials file (it is what `login`
//! replaces). One token serves the API and git: GitLab's tokens cannot be renewed by their
//! holder without revoking the old one, so none is.

use super::args::GitlabArgs;
use super::settings::GitlabSection;
use crate::config::ConfigError;
use crate::credentials::{self, StoredFile};
use crate::secret::Secret;

/// The name of this provider's table in the credentials file.
pub const SECTION: &str = "gitlab";

/// What `login` prints (and the README repeats) to set up the group-owned credential.
pub const TOKEN_SETUP: &str = "\
To back up a GitLab group with a group access token (owned by the group, not by a person):
  1. The group → Settings → Access tokens → Add new token (gitlab.com: Premium or Ultimate;
     self-managed: any tier). A top-level group's token also reads its subgroups.
  2. Role: Reporter (enough to read and clone every project). Scopes: read_api and
     read_repository. Nothing else.
  3. An expiry date (GitLab allows at most a year): note it, backups stop on that day.
  4. Copy the token into a file only the backup job can read (mode 0600).
  5. git-offsite login --provider gitlab --gitlab-token-file FILE --owner GROUP
     (self-managed: add --gitlab-url https://HOST)
A personal access token with the same scopes also works, but ties the backups to one person.";

const MISSING: &str = "no GitLab token found: pass --gitlab-token-file or set GITLAB_TOKEN (a \
group access token with read_api and read_repository, see `git-offsite login --provider \
gitlab`), or run `git-offsite login --provider gitlab` once";

/// The token from flags, `env` and the config file's table, then `stored`
/// ([`credentials::resolve_token`]).
fn resolve(
    args: &GitlabArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GitlabSection,
    stored: Option<&StoredFile>,
) -> Result<Option<Secret>, ConfigError> {
    let src = credentials::TokenSources {
        flag: (args.gitlab_token_file.as_deref(), "--gitlab-token-file"),
        var: "GITLAB_TOKEN",
        token_file: file.token_file.as_deref(),
        token_env: file.token_env.as_deref(),
        section: SECTION,
    };
    credentials::resolve_token(&src, env, stored)
}

/// The `[gitlab]` table that stores `token`.
pub fn section(token: &Secret) -> toml::Table {
    credentials::token_table(token)
}

/// Where GitLab's token is looked for ([`credentials::Search`]).
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
    args: &GitlabArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GitlabSection,
) -> Result<Secret, ConfigError> {
    credentials::for_run(env, &search(&|stored| resolve(args, env, file, stored)))
}

/// The token `login` checks ([`credentials::for_login`]), with the setup steps.
pub fn for_login(
    args: &GitlabArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &GitlabSection,
) -> Result<Secret, ConfigError> {
    credentials::for_login(
        &search(&|stored| resolve(args, env, file, stored)),
        TOKEN_SETUP,
    )
}

/// Asks for the token (not echoed).
fn prompt() -> Result<Secret, ConfigError> {
    let token = credentials::prompt_secret("GitLab group or personal access token (not echoed): ")?;
    if token.is_empty() {
        return Err(ConfigError::Other(MISSING.into()));
    }
    Ok(Secret::new(token))
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
    fn the_token_comes_from_the_flag_then_env_then_the_config_file_then_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "glpat-from-file\n").unwrap();
        let flag = GitlabArgs {
            gitlab_token_file: Some(file),
            ..GitlabArgs::default()
        };
        let none = GitlabArgs::default();
        let section = GitlabSection {
            token_env: Some("MY_TOKEN".into()),
            ..GitlabSection::default()
        };
        let env = env_of(&[("GITLAB_TOKEN", "from-env"), ("MY_TOKEN", "from-ref")]);
        let got = |args: &GitlabArgs, env: &dyn Fn(&str) -> Option<String>, s: &GitlabSection| {
            resolve(args, env, s, None)
                .unwrap()
                .map(|t| t.expose().to_string())
        };
        assert_eq!(
            got(&flag, &env, &section).as_deref(),
            Some("glpat-from-file")
        );
        assert_eq!(got(&none, &env, &section).as_deref(), Some("from-env"));
        let env = env_of(&[("MY_TOKEN", "from-ref")]);
        assert_eq!(got(&none, &env, &section).as_deref(), Some("from-ref"));
        let e = resolve(&none, &env_of(&[]), &section, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MY_TOKEN"), "{e}");
        assert_eq!(got(&none, &env_of(&[]), &GitlabSection::default()), None);

        let path = dir.path().join("credentials.toml");
        credentials::save(&path, SECTION, section_of("glpat-s3cr3t")).unwrap();
        let stored = credentials::load(&path).unwrap();
        let back = resolve(
            &none,
            &env_of(&[]),
            &GitlabSection::default(),
            Some(&stored),
        )
        .unwrap()
        .unwrap();
        assert_eq!(back.expose(), "glpat-s3cr3t");
        std::fs::write(&path, "[gitlab]\ntoken = \"glpat-s3cr3t\"\nextra = 1\n").unwrap();
        let e = resolve(
            &none,
            &env_of(&[]),
            &GitlabSection::default(),
            Some(&credentials::load(&path).unwrap()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[gitlab]") && !e.contains("s3cr3t"), "{e}");
    }

    fn section_of(token: &str) -> toml::Table {
        section(&Secret::new(token))
    }
}
