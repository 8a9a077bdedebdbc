//! The stored OAuth consumer (`$XDG_CONFIG_HOME/git-offsite/credentials.toml`) and the prompts
//! that fill it.
//!
//! This file is the only place a secret is ever written to disk, so it is created with mode
//! 0600 inside a 0700 directory, written to a temp name and renamed (a crash never leaves half a
//! file), and refused on load when other users could read it: the same rule ssh applies to
//! private keys, because a world-readable secret must be treated as leaked.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConsumerCredentials, StoredCredentials};
use crate::secret::Secret;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bitbucket: Option<Section>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    consumer_key: String,
    consumer_secret: String,
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

fn cred_err(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::CredentialsFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the stored credentials; a missing file is not an error.
pub fn load(path: &Path) -> Result<StoredCredentials, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(StoredCredentials::default());
        }
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
                    "is readable by other users (mode {:o}): run `chmod 600 {}` and rotate the consumer secret",
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
    }
    // The parse error of a secrets file could quote the secret: report only the position.
    let file: File = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!(" at line {line}")
            })
            .unwrap_or_default();
        cred_err(path, format!("is not valid{at}; expected a [bitbucket] table with consumer_key and consumer_secret"))
    })?;
    Ok(match file.bitbucket {
        Some(s) => StoredCredentials {
            key: Some(s.consumer_key),
            secret: Some(Secret::new(s.consumer_secret)),
        },
        None => StoredCredentials::default(),
    })
}

/// Writes the credentials with mode 0600 (directory 0700), atomically.
pub fn save(path: &Path, creds: &ConsumerCredentials) -> Result<(), ConfigError> {
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

    let text = toml::to_string(&File {
        bitbucket: Some(Section {
            consumer_key: creds.key.clone(),
            consumer_secret: creds.secret.expose().to_string(),
        }),
    })
    .map_err(|e| cred_err(path, e.to_string()))?;

    // tempfile creates the file with mode 0600 on unix, before any byte is written.
    let mut tmp = tempfile::Builder::new()
        .prefix(".credentials-")
        .tempfile_in(dir)
        .map_err(|e| cred_err(path, e.to_string()))?;
    tmp.write_all(
        format!("# git-offsite OAuth consumer, written by `git-offsite login`. Keep this file private.\n{text}").as_bytes(),
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

/// Asks for the consumer key (echoed) and secret (not echoed) on the terminal.
pub fn prompt_consumer() -> Result<ConsumerCredentials, ConfigError> {
    let io = |e: std::io::Error| ConfigError::Other(format!("cannot read from the terminal: {e}"));
    let mut stderr = std::io::stderr();
    write!(stderr, "Bitbucket OAuth consumer key: ").map_err(io)?;
    stderr.flush().map_err(io)?;
    let mut key = String::new();
    std::io::stdin().read_line(&mut key).map_err(io)?;
    let key = key.trim().to_string();
    let secret =
        rpassword::prompt_password("Bitbucket OAuth consumer secret (not echoed): ").map_err(io)?;
    let secret = secret.trim().to_string();
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

    fn creds() -> ConsumerCredentials {
        ConsumerCredentials {
            key: "KEY".into(),
            secret: Secret::new("s3cr3t"),
            key_source: "test",
            secret_source: "test",
        }
    }

    #[test]
    fn save_then_load_round_trips_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/git-offsite/credentials.toml");
        save(&path, &creds()).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.key.as_deref(), Some("KEY"));
        assert_eq!(loaded.secret.unwrap().expose(), "s3cr3t");
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

    #[cfg(unix)]
    #[test]
    fn a_readable_file_is_refused_and_the_secret_not_quoted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        save(&path, &creds()).unwrap();
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
        assert!(loaded.key.is_none() && loaded.secret.is_none());
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
