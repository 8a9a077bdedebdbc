//! The TOML config file (`--config FILE` / `GIT_OFFSITE_CONFIG`): every option, plus several
//! owners in one run as `[[source]]` entries.
//!
//! Unknown keys and wrong types are errors that name the file, the line and the key: a typo
//! in an unattended job's config must fail loudly, not fall back to a default. Secrets may be
//! *referenced* (`consumer_secret_file`, `consumer_secret_env`) but never written here: the
//! credentials store is the only file allowed to hold one, and config files end up in git,
//! ConfigMaps and support tickets.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub dest: Option<String>,
    pub jobs: Option<usize>,
    pub tmp_dir: Option<PathBuf>,
    pub retries: Option<u32>,
    pub retry_delay: Option<String>,
    /// `--repo-timeout`, e.g. `"2h"`.
    pub repo_timeout: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    pub metrics_file: Option<PathBuf>,
    pub pushgateway: Option<String>,
    pub healthcheck_url: Option<String>,
    /// `copy` or `reference` (`--unchanged`).
    pub unchanged: Option<String>,
    /// Accept plain `http://` URLs to hosts other than this machine (`--allow-insecure-http`,
    /// which sets this when given).
    pub allow_insecure_http: Option<bool>,
    /// Public keys to encrypt every bundle to (`--encrypt-to`).
    #[serde(default)]
    pub encrypt_to: Vec<String>,
    /// A file of public keys to encrypt every bundle to (`--encrypt-to-file`).
    pub encrypt_to_file: Option<PathBuf>,
    #[serde(default)]
    pub s3: S3Section,
    /// Keep rules for `prune` and `backup --prune`.
    #[serde(default)]
    pub retention: super::retention::RetentionSection,
    #[serde(default)]
    pub bitbucket: BitbucketSection,
    #[serde(default)]
    pub github: crate::provider::github::settings::GithubSection,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceSection>,
    /// Where the file was read from; relative paths in it are relative to its directory.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub virtual_hosted: Option<bool>,
    pub part_size: Option<String>,
    pub parts_in_flight: Option<usize>,
    /// `--s3-timeout`, e.g. `"10m"`.
    pub timeout: Option<String>,
    /// `governance` or `compliance` (`--object-lock-mode`); backup only.
    pub object_lock_mode: Option<String>,
    pub object_lock_days: Option<u32>,
    /// `AES256` or `aws:kms` (`--sse`).
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub storage_class: Option<String>,
}

/// Where to find an OAuth consumer, without holding its secret.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRefs {
    /// The key itself (not a secret: it is sent in clear as the client id).
    pub consumer_key: Option<String>,
    /// Name of an environment variable holding the key.
    pub consumer_key_env: Option<String>,
    /// A file holding the secret (relative paths: from the config file's directory).
    pub consumer_secret_file: Option<PathBuf>,
    /// Name of an environment variable holding the secret.
    pub consumer_secret_env: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitbucketSection {
    pub api_url: Option<String>,
    pub token_url: Option<String>,
    pub git_url: Option<String>,
    pub consumer_key: Option<String>,
    pub consumer_key_env: Option<String>,
    pub consumer_secret_file: Option<PathBuf>,
    pub consumer_secret_env: Option<String>,
    /// Only here to give a precise error; any value is refused.
    pub consumer_secret: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    #[serde(default = "default_provider")]
    pub provider: String,
    pub owner: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub consumer_key: Option<String>,
    pub consumer_key_env: Option<String>,
    pub consumer_secret_file: Option<PathBuf>,
    pub consumer_secret_env: Option<String>,
    /// Only here to give a precise error; any value is refused.
    pub consumer_secret: Option<toml::Spanned<toml::Value>>,
}

fn default_provider() -> String {
    "bitbucket".into()
}

impl BitbucketSection {
    pub fn credentials(&self, base: Option<&Path>) -> CredentialRefs {
        CredentialRefs {
            consumer_key: self.consumer_key.clone(),
            consumer_key_env: self.consumer_key_env.clone(),
            consumer_secret_file: self
                .consumer_secret_file
                .as_deref()
                .map(|p| relative_to(base, p)),
            consumer_secret_env: self.consumer_secret_env.clone(),
        }
    }
}

impl SourceSection {
    pub fn credentials(&self, base: Option<&Path>) -> CredentialRefs {
        CredentialRefs {
            consumer_key: self.consumer_key.clone(),
            consumer_key_env: self.consumer_key_env.clone(),
            consumer_secret_file: self
                .consumer_secret_file
                .as_deref()
                .map(|p| relative_to(base, p)),
            consumer_secret_env: self.consumer_secret_env.clone(),
        }
    }
}

impl FileConfig {
    /// The directory relative paths are resolved against.
    pub fn base_dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    /// `tmp_dir` and `metrics_file`, resolved against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        relative_to(self.base_dir(), p)
    }
}

fn relative_to(base: Option<&Path>, p: &Path) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        what: "config file",
        path: path.to_path_buf(),
        source,
    })?;
    let mut cfg = parse(&text, path)?;
    cfg.path = Some(path.to_path_buf());
    Ok(cfg)
}

/// Parses config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    let cfg: FileConfig =
        toml::from_str(text).map_err(|e| file_error(path, text, e.span(), e.message()))?;
    let inline_secret = cfg
        .bitbucket
        .consumer_secret
        .as_ref()
        .into_iter()
        .chain(
            cfg.sources
                .iter()
                .filter_map(|s| s.consumer_secret.as_ref()),
        )
        .next();
    if let Some(spanned) = inline_secret {
        // Point at the line, never quote it: it holds the secret.
        return Err(ConfigError::File {
            path: path.to_path_buf(),
            line: Some(line_of(text, spanned.span().start)),
            key: Some("consumer_secret".into()),
            message: "secrets may not be written in the config file: use consumer_secret_file \
                      or consumer_secret_env (or `git-offsite login`)"
                .into(),
        });
    }
    for (i, s) in cfg.sources.iter().enumerate() {
        if let Err(e) = crate::provider::choose::kind_of(None, Some(&s.provider)) {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                line: find_line(text, "provider", i),
                key: Some("source.provider".into()),
                message: e.to_string(),
            });
        }
    }
    if let Some(f) = &cfg.log_format
        && !matches!(f.as_str(), "text" | "json")
    {
        return Err(ConfigError::File {
            path: path.to_path_buf(),
            line: find_line(text, "log_format", 0),
            key: Some("log_format".into()),
            message: format!("`{f}` is not a log format: use `text` or `json`"),
        });
    }
    Ok(cfg)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Line of the `nth` assignment to `key` (for checks made after parsing).
fn find_line(text: &str, key: &str, nth: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().split('=').next().map(str::trim) == Some(key))
        .nth(nth)
        .map(|(i, _)| i + 1)
}

fn file_error(
    path: &Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    message: &str,
) -> ConfigError {
    let line = span.as_ref().map(|s| line_of(text, s.start));
    // The key is whatever stands before `=` on that line; a table header names itself.
    let key = line.and_then(|n| text.lines().nth(n - 1)).and_then(|l| {
        let l = l.trim();
        match l.split_once('=') {
            Some((k, _)) => Some(k.trim().to_string()),
            None if l.starts_with('[') => Some(l.to_string()),
            None => None,
        }
    });
    // toml quotes offending values in its messages: keep them out when the key is a secret.
    let message = if key.as_deref().is_some_and(|k| k.contains("secret")) {
        "invalid value".to_string()
    } else {
        message.trim().to_string()
    };
    ConfigError::File {
        path: path.to_path_buf(),
        line,
        key,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
dest = "s3://backups/git"
jobs = 6
tmp_dir = "scratch"
retries = 3
retry_delay = "500ms"
log_format = "json"
metrics_file = "/var/lib/node_exporter/git-offsite.prom"
pushgateway = "http://pushgateway:9091"
healthcheck_url = "https://hc-ping.com/uuid"

[s3]
endpoint = "http://minio:9000"
region = "eu-west-1"
virtual_hosted = false
part_size = "32MiB"
parts_in_flight = 2

[bitbucket]
api_url = "https://api.bitbucket.org/2.0"
token_url = "https://bitbucket.org/site/oauth2/access_token"
consumer_key = "KEY"
consumer_secret_file = "secret.txt"

[[source]]
owner = "acme"
include = ["api-*"]

[[source]]
provider = "bitbucket"
owner = "acme-labs"
exclude = ["*-archive"]
consumer_key_env = "LABS_KEY"
consumer_secret_env = "LABS_SECRET"
"#;

    #[test]
    fn a_full_file_parses() {
        let cfg = parse(FULL, Path::new("/etc/git-offsite.toml")).unwrap();
        assert_eq!(cfg.jobs, Some(6));
        assert_eq!(cfg.s3.part_size.as_deref(), Some("32MiB"));
        assert_eq!(cfg.sources.len(), 2);
        assert_eq!(cfg.sources[0].provider, "bitbucket");
        assert_eq!(cfg.sources[1].exclude, ["*-archive"]);
        let mut cfg = cfg;
        cfg.path = Some("/etc/git-offsite/config.toml".into());
        assert_eq!(
            cfg.bitbucket
                .credentials(cfg.base_dir())
                .consumer_secret_file
                .unwrap(),
            PathBuf::from("/etc/git-offsite/secret.txt")
        );
        assert_eq!(
            cfg.resolve(Path::new("scratch")),
            PathBuf::from("/etc/git-offsite/scratch")
        );
    }

    fn err(text: &str) -> String {
        parse(text, Path::new("cfg.toml")).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_file_line_and_key() {
        let e = err("dest = \"./b\"\njbos = 4\n");
        assert!(
            e.contains("cfg.toml") && e.contains("line 2") && e.contains("jbos"),
            "{e}"
        );
        let e = err("jobs = \"four\"\n");
        assert!(
            e.contains("line 1") && e.contains("`jobs`") && e.contains("invalid type"),
            "{e}"
        );
        let e = err("[s3]\nparts_in_flight = -1\n");
        assert!(e.contains("line 2") && e.contains("parts_in_flight"), "{e}");
        let e = err("[[source]]\nowner = \"a\"\nprovider = \"gitlab\"\n");
        assert!(e.contains("line 3") && e.contains("gitlab"), "{e}");
        let e = err("[[source]]\ninclude = [\"x\"]\n");
        assert!(e.contains("owner"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let e = err("log_format = \"xml\"\n");
        assert!(e.contains("line 1") && e.contains("xml"), "{e}");
    }

    #[test]
    fn inline_secrets_are_refused_without_being_quoted() {
        let e = err("[bitbucket]\nconsumer_key = \"k\"\nconsumer_secret = \"hunter2\"\n");
        assert!(
            e.contains("line 3") && e.contains("consumer_secret_file"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = err("[[source]]\nowner = \"a\"\nconsumer_secret = 12345\n");
        assert!(e.contains("line 3") && !e.contains("12345"), "{e}");
        let e = err("[bitbucket]\nconsumer_secret_file = 987654\n");
        assert!(e.contains("line 2") && !e.contains("987654"), "{e}");
    }
}
