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
    pub bitbucket: crate::provider::bitbucket::settings::BitbucketSection,
    #[serde(default)]
    pub github: crate::provider::github::settings::GithubSection,
    #[serde(default)]
    pub gitea: crate::provider::gitea::settings::GiteaSection,
    #[serde(default)]
    pub gitlab: crate::provider::gitlab::settings::GitlabSection,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceSection>,
    /// Where the file was read from; relative paths in it are relative to its directory.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The file's top-level tables as written, for laying a `[[source]]`'s keys over its
    /// provider's table ([`overlay`]).
    #[serde(skip)]
    pub tables: toml::Table,
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

/// One owner of a multi-owner run. Besides these keys it may set any key of its provider's
/// own table (`[bitbucket]`, `[github]`, …) for this owner only: see [`overlay`].
#[derive(Debug, Clone, Deserialize)]
pub struct SourceSection {
    #[serde(default = "default_provider")]
    pub provider: String,
    pub owner: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The other keys, checked against the provider's table when the file is parsed.
    #[serde(flatten)]
    pub settings: toml::Table,
}

fn default_provider() -> String {
    "bitbucket".into()
}

/// A provider's table (`table`, as written in the file) with one `[[source]]`'s `keys` laid
/// over it, read as that provider's section type `T`: the source's keys win. A source key from
/// one of `groups` (alternative ways to give one credential, say `token_file` / `token_env`)
/// also drops the table's other members of that group, so one credential is never pieced
/// together from two owners' settings.
///
/// Each key is checked on its own first, so an error names it: `Err((key, message))`. A
/// value is never quoted for a key that may hold a secret, and a key that *is* a secret (not
/// a `*_file` / `*_env` reference to one) is refused outright.
pub fn overlay<T: serde::de::DeserializeOwned>(
    table: Option<&toml::Value>,
    keys: &toml::Table,
    groups: &[&[&str]],
) -> Result<T, (String, String)> {
    for (key, value) in keys {
        if names_a_secret(key) {
            return Err((
                key.clone(),
                format!(
                    "secrets may not be written in the config file: reference one instead \
                     ({key}_file or {key}_env), or use `git-offsite login`"
                ),
            ));
        }
        let one = toml::Table::from_iter([(key.clone(), value.clone())]);
        if let Err(e) = toml::Value::Table(one).try_into::<T>() {
            let secretive = ["secret", "token", "key", "password"]
                .iter()
                .any(|w| key.contains(w));
            // An unknown key quotes no value; a wrong type may quote it.
            let message = e.message().trim();
            let message = if secretive && !message.starts_with("unknown field") {
                "invalid value".to_string()
            } else {
                message.to_string()
            };
            return Err((key.clone(), message));
        }
    }
    let mut merged = table
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default();
    for group in groups {
        if group.iter().any(|k| keys.contains_key(*k)) {
            for k in *group {
                merged.remove(*k);
            }
        }
    }
    merged.extend(keys.iter().map(|(k, v)| (k.clone(), v.clone())));
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e| (String::new(), e.message().trim().to_string()))
}

/// A key whose value would be the secret itself rather than where to find it.
fn names_a_secret(key: &str) -> bool {
    ["secret", "token", "password", "private_key"]
        .iter()
        .any(|w| key.ends_with(w))
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

/// `p` as written in the config file: a relative path is relative to the file's directory `base`.
pub fn relative_to(base: Option<&Path>, p: &Path) -> PathBuf {
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
    if let Some(spanned) = &cfg.bitbucket.consumer_secret {
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
    let mut cfg = cfg;
    cfg.tables = toml::from_str(text).map_err(|e| file_error(path, text, e.span(), e.message()))?;
    for (i, s) in cfg.sources.iter().enumerate() {
        let refused = |key: &str, message: String| ConfigError::File {
            path: path.to_path_buf(),
            line: source_line(text, i, key),
            key: Some(format!("source.{key}")),
            message,
        };
        let kind = crate::provider::choose::kind_of(None, Some(&s.provider))
            .map_err(|e| refused("provider", e.to_string()))?;
        crate::provider::choose::file_for_source(&cfg, kind, &s.settings)
            .map_err(|(key, message)| refused(&key, message))?;
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

/// Line of `key`'s assignment in the `nth` `[[source]]` (for checks made after parsing).
fn source_line(text: &str, nth: usize, key: &str) -> Option<usize> {
    let assigns = |l: &str| l.trim_start().split('=').next().map(str::trim) == Some(key);
    let mut lines = text.lines().enumerate();
    let mut seen = 0;
    for (_, l) in lines.by_ref() {
        if l.trim().starts_with("[[source]]") {
            if seen == nth {
                break;
            }
            seen += 1;
        }
    }
    lines
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| assigns(l))
        .map(|(i, _)| i + 1)
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
        let e = err("[[source]]\nowner = \"a\"\nprovider = \"sourcehut\"\n");
        assert!(e.contains("line 3") && e.contains("sourcehut"), "{e}");
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

    fn seen_by(cfg: &FileConfig, nth: usize) -> FileConfig {
        let s = &cfg.sources[nth];
        let kind = crate::provider::choose::kind_of(None, Some(&s.provider)).unwrap();
        crate::provider::choose::file_for_source(cfg, kind, &s.settings).unwrap()
    }

    #[test]
    fn a_source_lays_its_keys_over_its_providers_table() {
        let cfg = parse(FULL, Path::new("cfg.toml")).unwrap();
        // The first source sets nothing: the table as written.
        let acme = seen_by(&cfg, 0).bitbucket;
        assert_eq!(acme.consumer_key.as_deref(), Some("KEY"));
        // The second names its own key and secret: neither of the table's is kept beside them.
        let labs = seen_by(&cfg, 1).bitbucket;
        assert_eq!(
            (labs.consumer_key, labs.consumer_key_env.as_deref()),
            (None, Some("LABS_KEY"))
        );
        assert_eq!(
            (
                labs.consumer_secret_file,
                labs.consumer_secret_env.as_deref()
            ),
            (None, Some("LABS_SECRET"))
        );
        assert_eq!(labs.api_url, acme.api_url, "non-credential keys are kept");
        // Key and secret are separate groups for Bitbucket: a source's secret keeps the key.
        let text = "[bitbucket]\nconsumer_key = \"K\"\nconsumer_secret_file = \"s\"\n\
                    [[source]]\nowner = \"a\"\nconsumer_secret_env = \"A_SECRET\"\n";
        let a = seen_by(&parse(text, Path::new("c")).unwrap(), 0).bitbucket;
        assert_eq!(a.consumer_key.as_deref(), Some("K"));
        assert_eq!(
            (a.consumer_secret_file, a.consumer_secret_env.as_deref()),
            (None, Some("A_SECRET"))
        );
        // GitHub: a source's token replaces the table's app, an installation id alone does not.
        let text = "[github]\napp_id = \"1\"\nprivate_key_file = \"k.pem\"\n\
                    [[source]]\nprovider = \"github\"\nowner = \"a\"\ntoken_env = \"A_TOKEN\"\n\
                    [[source]]\nprovider = \"github\"\nowner = \"b\"\ninstallation_id = 7\n";
        let cfg = parse(text, Path::new("c")).unwrap();
        let a = seen_by(&cfg, 0).github;
        assert_eq!((a.app_id, a.token_env.as_deref()), (None, Some("A_TOKEN")));
        let b = seen_by(&cfg, 1).github;
        assert_eq!(
            (b.app_id.as_deref(), b.installation_id),
            (Some("1"), Some(7))
        );
    }

    #[test]
    fn a_sources_keys_are_checked_against_its_provider() {
        let e = err(
            "[[source]]\nowner = \"a\"\nconsumer_key = \"k\"\n\n[[source]]\nowner = \"b\"\nprovider = \"github\"\nconsumer_key = \"k\"\n",
        );
        assert!(
            e.contains("line 8") && e.contains("consumer_key") && e.contains("unknown field"),
            "{e}"
        );
        let e = err("[[source]]\nowner = \"a\"\nprovider = \"github\"\ntoken = \"ghp_leak\"\n");
        assert!(e.contains("line 4") && e.contains("token_file"), "{e}");
        assert!(!e.contains("ghp_leak"), "{e}");
        let e = err("[[source]]\nowner = \"a\"\nprovider = \"github\"\ntoken_file = 31337\n");
        assert!(e.contains("line 4") && !e.contains("31337"), "{e}");
        let e = err("[[source]]\nowner = \"a\"\nprovider = \"urls\"\nurl = \"x\"\n");
        assert!(e.contains("line 4") && e.contains("--url-file"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}
