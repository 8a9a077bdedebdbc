//! The credentials file (`$XDG_CONFIG_HOME/git-offsite/credentials.toml`), one table per
//! provider, and the terminal prompts that fill it.
//!
//! This file is the only place a secret is ever written to disk, so it is created with mode
//! 0600 inside a 0700 directory, written to a temp name and renamed (a crash never leaves half a
//! file), and refused on load when other users could read it: the same rule ssh applies to
//! private keys, because a world-readable secret must be treated as leaked.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::config::ConfigError;
use crate::provider::ProviderKind;
use crate::secret::Secret;

/// The credentials file as read: one table per provider, named after it (`[bitbucket]`); each
/// provider's module reads its own table (e.g. `provider::bitbucket::consumer::stored`).
#[derive(Debug, Default)]
pub struct StoredFile {
    path: PathBuf,
    sections: toml::Table,
}

impl StoredFile {
    /// The table of `provider`, if the file has one.
    pub fn section(&self, provider: &str) -> Option<&toml::Table> {
        self.sections.get(provider).and_then(toml::Value::as_table)
    }

    /// A one-line error about this file (never quoting its content: it holds secrets).
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        cred_err(&self.path, message)
    }
}

/// `$XDG_CONFIG_HOME/git-offsite/credentials.toml`, falling back to `~/.config`.
pub fn default_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|p| Path::new(p).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("git-offsite").join("credentials.toml"))
}

/// Reads a secret from a file, trimming the trailing newline `echo` and editors add.
pub fn read_secret_file(
    path: &Path,
    what: &'static str,
    holds: &'static str,
) -> Result<Secret, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let value = raw.trim();
    if value.is_empty() {
        return Err(ConfigError::EmptyFile {
            what: holds,
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(value))
}

fn cred_err(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::CredentialsFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Flags, the environment and the config file; then the stored file's table, when given.
/// `Ok(None)`: nothing found.
pub type Resolve<'a, T> = &'a dyn Fn(Option<&StoredFile>) -> Result<Option<T>, ConfigError>;

/// Where one provider's credentials are looked for (GitHub's, GitLab's): the order of
/// [`for_run`] and [`for_login`] is the same for every provider, only these steps differ.
pub struct Search<'a, T> {
    /// The provider's table in the credentials file.
    pub section: &'static str,
    pub resolve: Resolve<'a, T>,
    /// Asks on the terminal.
    pub prompt: &'a dyn Fn() -> Result<T, ConfigError>,
    /// The table that stores what the prompt gave.
    pub table: &'a dyn Fn(&T) -> toml::Table,
    /// The one-line error when nothing is found and no terminal can be asked.
    pub missing: &'static str,
}

/// The credentials of a run: flags, environment and config file, then the credentials file,
/// then (on a terminal) a prompt with an offer to store the answer. The stored file is read
/// only when everything else falls short, so a broken or too-readable credentials file does
/// not get in the way of explicit settings.
pub fn for_run<T>(env: &dyn Fn(&str) -> Option<String>, s: &Search<T>) -> Result<T, ConfigError> {
    if let Some(c) = (s.resolve)(None)? {
        return Ok(c);
    }
    let path = default_path(env);
    if let Some(p) = &path
        && let Some(c) = (s.resolve)(Some(&load(p)?))?
    {
        return Ok(c);
    }
    if !interactive() {
        return Err(ConfigError::Other(s.missing.into()));
    }
    let creds = (s.prompt)()?;
    if let Some(p) = &path
        && confirm(&format!("Store them in {} (mode 0600)?", p.display()))
    {
        save(p, s.section, (s.table)(&creds))?;
        eprintln!("Stored in {}.", p.display());
    }
    Ok(creds)
}

/// The credentials `login` checks: flags, environment and config file (so it runs in
/// scripts), else `setup` (how to make the credential) and a prompt; never the stored file,
/// which `login` replaces.
pub fn for_login<T>(s: &Search<T>, setup: &str) -> Result<T, ConfigError> {
    if let Some(c) = (s.resolve)(None)? {
        return Ok(c);
    }
    eprintln!("{setup}\n");
    if interactive() {
        return (s.prompt)();
    }
    Err(ConfigError::Other(s.missing.into()))
}

/// Where a provider that takes one token (Gitea, GitLab) finds it, in this order: its flag's
/// file, its environment variable, the config file's `token_file` and `token_env`, then the
/// stored `[section]` table `{ token = "…" }`.
pub struct TokenSources<'a> {
    /// The flag's file and the flag's name (`--gitlab-token-file`).
    pub flag: (Option<&'a Path>, &'static str),
    /// The variable holding the token itself (`GITLAB_TOKEN`).
    pub var: &'static str,
    pub token_file: Option<&'a Path>,
    pub token_env: Option<&'a str>,
    /// The provider's table in the credentials file.
    pub section: &'static str,
}

/// The stored table of a one-token provider.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    token: String,
}

/// The token from `src` (and `stored`, when given); `Ok(None)` when nothing is found. Errors
/// name where the token was looked for, never the token.
pub fn resolve_token(
    src: &TokenSources,
    env: &dyn Fn(&str) -> Option<String>,
    stored: Option<&StoredFile>,
) -> Result<Option<Secret>, ConfigError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    if let (Some(p), flag) = src.flag {
        return read_secret_file(p, flag, "token").map(Some);
    }
    if let Some(t) = nonempty(env(src.var)) {
        return Ok(Some(Secret::new(t.trim())));
    }
    if let Some(p) = src.token_file {
        return read_secret_file(p, "the config file's token_file", "token").map(Some);
    }
    if let Some(var) = src.token_env {
        let t = nonempty(env(var)).ok_or_else(|| ConfigError::UnsetVariable {
            what: "token_env",
            var: var.to_string(),
        })?;
        return Ok(Some(Secret::new(t.trim())));
    }
    let Some(stored) = stored else {
        return Ok(None);
    };
    let Some(table) = stored.section(src.section) else {
        return Ok(None);
    };
    let s: StoredToken = table.clone().try_into().map_err(|_| {
        stored.error(format!(
            "is not valid; expected a [{}] table with a token",
            src.section
        ))
    })?;
    Ok(Some(Secret::new(s.token)))
}

/// The stored table `{ token = "…" }` of a one-token provider.
pub fn token_table(token: &Secret) -> toml::Table {
    toml::Table::try_from(StoredToken {
        token: token.expose().to_string(),
    })
    .expect("a string always makes a TOML table")
}

/// Reads the credentials file; a missing file is an empty one.
pub fn load(path: &Path) -> Result<StoredFile, ConfigError> {
    let empty = || StoredFile {
        path: path.to_path_buf(),
        sections: toml::Table::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty()),
        Err(e) => return Err(cred_err(path, e.to_string())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| cred_err(path, e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(cred_err(
                path,
                format!(
                    "is readable by other users (mode {:o}): run `chmod 600 {}` and rotate the secrets it holds",
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
    }
    // The parse error of a secrets file could quote the secret: report only the position.
    let sections: toml::Table = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!(" at line {line}")
            })
            .unwrap_or_default();
        cred_err(
            path,
            format!(
                "is not valid TOML{at}; expected one table per provider ({}), as `git-offsite login` writes it",
                crate::provider::ProviderKind::names()
            ),
        )
    })?;
    if let Some(name) = sections
        .iter()
        .find(|(name, value)| !value.is_table() || ProviderKind::parse(name).is_none())
        .map(|(name, _)| name)
    {
        return Err(cred_err(
            path,
            format!(
                "has `{}`, which is not a provider's table: expected {}",
                crate::text::escape(name),
                ProviderKind::names()
            ),
        ));
    }
    Ok(StoredFile {
        sections,
        ..empty()
    })
}

/// Stores `section` as `provider`'s table with mode 0600 (directory 0700), atomically; the
/// other providers' tables stay as they were (a file that cannot be read is replaced).
pub fn save(path: &Path, provider: &str, section: toml::Table) -> Result<(), ConfigError> {
    let dir = path
        .parent()
        .ok_or_else(|| cred_err(path, "has no parent directory"))?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| cred_err(path, e.to_string()))?;

    let mut sections = load(path).map(|f| f.sections).unwrap_or_default();
    sections.insert(provider.to_string(), toml::Value::Table(section));
    let text = toml::to_string(&sections).map_err(|e| cred_err(path, e.to_string()))?;

    // tempfile creates the file with mode 0600 on unix, before any byte is written.
    let mut tmp = tempfile::Builder::new()
        .prefix(".credentials-")
        .tempfile_in(dir)
        .map_err(|e| cred_err(path, e.to_string()))?;
    tmp.write_all(
        format!("# git-offsite credentials, written by `git-offsite login`. Keep this file private.\n{text}").as_bytes(),
    )
    .and_then(|()| tmp.as_file().sync_all())
    .map_err(|e| cred_err(path, e.to_string()))?;
    tmp.persist(path)
        .map_err(|e| cred_err(path, e.error.to_string()))?;
    Ok(())
}

/// True when we may ask the user questions.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn terminal_error(e: std::io::Error) -> ConfigError {
    ConfigError::Other(format!("cannot read from the terminal: {e}"))
}

/// Asks for one line on the terminal (echoed), trimmed.
pub fn prompt_line(question: &str) -> Result<String, ConfigError> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{question}").map_err(terminal_error)?;
    stderr.flush().map_err(terminal_error)?;
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(terminal_error)?;
    Ok(answer.trim().to_string())
}

/// Asks for a secret on the terminal (not echoed), trimmed.
pub fn prompt_secret(question: &str) -> Result<String, ConfigError> {
    let secret = rpassword::prompt_password(question).map_err(terminal_error)?;
    Ok(secret.trim().to_string())
}

/// Asks a yes/no question on the terminal; anything but y/yes is no.
pub fn confirm(question: &str) -> bool {
    let mut stderr = std::io::stderr();
    if write!(stderr, "{question} [y/N] ")
        .and_then(|()| stderr.flush())
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_missing_secret_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = read_secret_file(&empty, "--consumer-secret-file", "consumer secret")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        let e = read_secret_file(
            &dir.path().join("nope"),
            "--consumer-secret-file",
            "consumer secret",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--consumer-secret-file"), "{e}");
    }

    fn table(pairs: &[(&str, &str)]) -> toml::Table {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string())))
            .collect()
    }

    #[test]
    fn save_then_load_round_trips_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/git-offsite/credentials.toml");
        let section = table(&[("consumer_key", "KEY"), ("consumer_secret", "s3cr3t")]);
        save(&path, "bitbucket", section.clone()).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.section("bitbucket"), Some(&section));
        assert_eq!(loaded.section("other"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        // Nothing else (no leftover temp file) sits beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("credentials.toml")]);
    }

    #[test]
    fn saving_replaces_the_providers_table_and_unknown_tables_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        save(&path, "bitbucket", table(&[("consumer_key", "A")])).unwrap();
        save(&path, "bitbucket", table(&[("consumer_key", "B")])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"B\"") && !text.contains("\"A\""), "{text}");
        std::fs::write(&path, "[gitlub]\ntoken = \"t0ken-value\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("gitlub") && !e.contains("t0ken-value"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_file_is_refused_and_the_secret_not_quoted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        save(&path, "bitbucket", table(&[("consumer_key", "k")])).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");

        std::fs::write(
            &path,
            "[bitbucket]\nconsumer_key = \"k\"\nconsumer_secret = s3cr3t-unquoted\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("line 3") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn missing_file_is_empty_and_path_follows_xdg() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(&dir.path().join("nope.toml")).unwrap();
        assert!(loaded.section("bitbucket").is_none());
        let env = |k: &str| match k {
            "XDG_CONFIG_HOME" => Some("/x".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            default_path(&env).unwrap(),
            PathBuf::from("/x/git-offsite/credentials.toml")
        );
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(
            default_path(&env).unwrap(),
            PathBuf::from("/home/u/.config/git-offsite/credentials.toml")
        );
    }
}
