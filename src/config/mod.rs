//! Flags + environment + config file + stored credentials → one checked struct per command.
//!
//! Precedence is the same for every setting: flag, then environment variable, then the config
//! file ([`file`]), then the built-in default. Everything that can be wrong with the input is
//! found here, before any network call, and reported as a [`ConfigError`] (exit code 2) whose
//! message names the flag, variable, or file line to fix. The pipeline only ever sees
//! [`BackupConfig`], never clap types or raw strings.

mod destination;
pub mod file;
pub mod read;
pub mod retention;
mod s3;
mod source;
pub mod url;

use std::path::PathBuf;

use ::url::Url;
use chrono::NaiveDate;

use crate::cli::{ReportArgs, RetryArgs, UnchangedMode};
pub use destination::Destination;
pub use file::{FileConfig, SourceSection};
pub use read::{DateChoice, ReadConfig, RestoreConfig, VerifyConfig, VerifyLevel};
pub use retention::{PruneConfig, RetentionSettings};
pub use s3::{MIN_PART_SIZE, S3Settings, parse_size, write_options};
pub use source::{RepoFilter, Source, check_owner, host_of, sources};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "no Bitbucket OAuth consumer {missing} found: pass --consumer-key and --consumer-secret \
         (or --consumer-secret-file), set BITBUCKET_CONSUMER_KEY and BITBUCKET_CONSUMER_SECRET, \
         or run `git-offsite login` once"
    )]
    MissingCredentials { missing: &'static str },
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidValue {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is empty: it should hold the {what}")]
    EmptyFile { what: &'static str, path: PathBuf },
    #[error("credentials file {path}: {message}")]
    CredentialsFile { path: PathBuf, message: String },
    #[error("config file {}{}{}: {message}", path.display(),
        line.map(|l| format!(", line {l}")).unwrap_or_default(),
        key.as_ref().map(|k| format!(", key `{k}`")).unwrap_or_default())]
    File {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
    #[error("{what} names the environment variable {var}, which is not set")]
    UnsetVariable { what: &'static str, var: String },
    /// Plain `http://` to a host that is not this machine: the secret would cross the network
    /// in clear. `shown` is scheme, host and port only.
    #[error(
        "{what} is an insecure http:// URL ({shown}): use https://, or pass {} if the network \
         to that host is trusted",
        url::ALLOW_INSECURE_FLAG
    )]
    InsecureUrl { what: &'static str, shown: String },
    #[error("{what}: the host name `{host}` does not resolve ({message}): check the URL")]
    Unresolvable {
        what: &'static str,
        host: String,
        message: String,
    },
    #[error(transparent)]
    Crypt(#[from] crate::crypt::CryptError),
    #[error("{0}")]
    Other(String),
}

fn invalid(what: &'static str, value: impl Into<String>, reason: impl ToString) -> ConfigError {
    ConfigError::InvalidValue {
        what,
        value: value.into(),
        reason: reason.to_string(),
    }
}

/// The most repositories in flight (`--jobs`): each holds a libgit2 fetch, a temp mirror and
/// an upload, so more than this only trades memory and temp disk for contention.
pub const MAX_JOBS: usize = 32;

/// `--jobs` (flag, then the config file's `jobs`), default 4, between 1 and [`MAX_JOBS`].
fn jobs(flag: Option<usize>, file: &FileConfig) -> Result<usize, ConfigError> {
    count("--jobs", flag.or(file.jobs).unwrap_or(4), MAX_JOBS)
}

/// A count setting between 1 and `max`, or a one-line error naming the flag.
fn count(what: &'static str, n: usize, max: usize) -> Result<usize, ConfigError> {
    match n {
        0 => Err(invalid(what, "0", "must be at least 1")),
        n if n > max => Err(invalid(
            what,
            n.to_string(),
            format!("must be at most {max}"),
        )),
        n => Ok(n),
    }
}

/// `YYYY-MM-DD`, or today's UTC date.
pub fn parse_date(date: Option<&str>) -> Result<NaiveDate, ConfigError> {
    match date {
        None => Ok(chrono::Utc::now().date_naive()),
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .filter(|parsed| parsed.format("%Y-%m-%d").to_string() == d)
            .ok_or_else(|| invalid("--date", d, "expected YYYY-MM-DD, e.g. 2026-11-24")),
    }
}

/// `--retries` and `--retry-delay`, checked.
pub fn retry_settings(
    args: &RetryArgs,
    file: &FileConfig,
) -> Result<(u32, std::time::Duration), ConfigError> {
    let text = args
        .retry_delay
        .clone()
        .or_else(|| file.retry_delay.clone())
        .unwrap_or_else(|| "2s".into());
    let delay = humantime::parse_duration(&text).map_err(|e| invalid("--retry-delay", &text, e))?;
    let retries = args.retries.or(file.retries).unwrap_or(2);
    if retries > 100 {
        return Err(invalid("--retries", retries.to_string(), "at most 100"));
    }
    Ok((retries, delay))
}

/// Default of `--repo-timeout`: hours for the largest repository at a slow link, while a
/// stuck one still frees its job the same night.
pub const DEFAULT_REPO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// `--repo-timeout` (flag, then the config file's `repo_timeout`), default
/// [`DEFAULT_REPO_TIMEOUT`]; zero is refused (it would fail every repository).
fn repo_timeout(flag: Option<&str>, file: &FileConfig) -> Result<std::time::Duration, ConfigError> {
    let Some(text) = flag.or(file.repo_timeout.as_deref()) else {
        return Ok(DEFAULT_REPO_TIMEOUT);
    };
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(invalid(
            "--repo-timeout",
            text,
            "must be more than 0, e.g. 2h",
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(invalid("--repo-timeout", text, e)),
    }
}

/// Metrics and monitoring destinations.
#[derive(Debug, Clone, Default)]
pub struct ReportSettings {
    pub metrics_file: Option<PathBuf>,
    pub pushgateway: Option<Url>,
    pub healthcheck_url: Option<Url>,
}

impl ReportSettings {
    pub fn new(args: &ReportArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let insecure = file.allow_insecure_http.unwrap_or(false);
        // Both URLs may hold a secret (a ping id, a Pushgateway password): never quoted.
        let parse = |what, v: Option<&String>| -> Result<Option<Url>, ConfigError> {
            v.map(|s| url::dial_url(what, s, true, insecure))
                .transpose()
        };
        Ok(Self {
            metrics_file: args
                .metrics_file
                .clone()
                .or_else(|| file.metrics_file.as_deref().map(|p| file.resolve(p))),
            pushgateway: parse(
                "--pushgateway (GIT_OFFSITE_PUSHGATEWAY)",
                args.pushgateway.as_ref().or(file.pushgateway.as_ref()),
            )?,
            healthcheck_url: parse(
                "--healthcheck-url (GIT_OFFSITE_HEALTHCHECK_URL)",
                args.healthcheck_url
                    .as_ref()
                    .or(file.healthcheck_url.as_ref()),
            )?,
        })
    }
}

/// Everything `backup` needs, checked.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub sources: Vec<Source>,
    pub dest: Destination,
    pub date: NaiveDate,
    pub jobs: usize,
    pub dry_run: bool,
    pub tmp_dir: PathBuf,
    pub s3: S3Settings,
    pub retries: u32,
    pub retry_delay: std::time::Duration,
    /// Longest one repository's git work may take (`--repo-timeout`).
    pub repo_timeout: std::time::Duration,
    pub report: ReportSettings,
    /// What an unchanged repository gets: a copy of its earlier bundle, or a reference to it.
    pub unchanged: UnchangedMode,
    /// Ignore earlier manifests: clone and upload everything.
    pub full: bool,
    /// Prune each owner after a backup that ended with exit 0 (`--prune`, `after_backup`).
    pub prune: Option<RetentionSettings>,
    /// Take over a held lock; overwrite a past date's complete backup.
    pub force: bool,
    /// Encrypt every bundle to these keys; `None`: plain bundles.
    pub encrypt_to: Option<std::sync::Arc<crate::crypt::Recipients>>,
}

impl BackupConfig {
    pub fn new(
        args: &crate::cli::BackupArgs,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let jobs = jobs(args.jobs, file)?;
        let tmp_dir = args
            .tmp_dir
            .clone()
            .or_else(|| file.tmp_dir.as_deref().map(|p| file.resolve(p)))
            .unwrap_or_else(std::env::temp_dir);
        let (retries, retry_delay) = retry_settings(&args.retry, file)?;
        Ok(Self {
            sources: sources(args.owner.as_deref(), &args.filter, &args.provider, file)?,
            dest: Destination::choose(args.dest.as_deref(), file)?,
            date: parse_date(args.date.as_deref())?,
            jobs,
            dry_run: args.dry_run,
            tmp_dir,
            s3: S3Settings {
                writes: write_options(&args.s3_writes, file)?,
                ..S3Settings::new(&args.s3, file, env)?
            },
            retries,
            retry_delay,
            repo_timeout: repo_timeout(args.repo_timeout.as_deref(), file)?,
            report: ReportSettings::new(&args.report, file)?,
            unchanged: match (args.unchanged, file.unchanged.as_deref()) {
                (Some(m), _) => m,
                (None, None | Some("copy")) => UnchangedMode::Copy,
                (None, Some("reference")) => UnchangedMode::Reference,
                (None, Some(other)) => {
                    return Err(invalid(
                        "unchanged (config file)",
                        other,
                        "expected `copy` or `reference`",
                    ));
                }
            },
            full: args.full,
            prune: retention::after_backup(args.prune, file)?,
            force: args.force,
            encrypt_to: recipients(&args.encrypt, file)?,
        })
    }
}

/// `--encrypt-to` / `--encrypt-to-file`, else the config file's `encrypt_to` /
/// `encrypt_to_file` (flags replace the file's keys, they do not add to them).
fn recipients(
    args: &crate::cli::EncryptArgs,
    file: &FileConfig,
) -> Result<Option<std::sync::Arc<crate::crypt::Recipients>>, ConfigError> {
    let (values, files) = if args.encrypt_to.is_empty() && args.encrypt_to_file.is_empty() {
        let files = file.encrypt_to_file.iter().map(|p| file.resolve(p));
        (file.encrypt_to.clone(), files.collect())
    } else {
        (args.encrypt_to.clone(), args.encrypt_to_file.clone())
    };
    Ok(crate::crypt::Recipients::parse(&values, &files)?.map(std::sync::Arc::new))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    pub(crate) fn env_of(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        use clap::Parser;
        let file = file::parse(
            "dest = \"s3://from-file/x\"\njobs = 7\nretry_delay = \"1s\"\n[s3]\nendpoint = \"https://file:9000\"\npart_size = \"8MiB\"\n[[source]]\nowner = \"acme\"\nexclude = [\"old-*\"]\n[[source]]\nowner = \"labs\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let parse = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(args).unwrap();
            let crate::cli::Command::Backup(b) = cli.command else {
                unreachable!()
            };
            b
        };
        let no_env = env_of(&[]);
        let c = BackupConfig::new(&parse(&["g", "backup"]), &file, &no_env).unwrap();
        assert_eq!(c.jobs, 7);
        assert_eq!(c.s3.part_size, 8 << 20);
        assert_eq!(c.s3.parts_in_flight, 4, "default");
        assert_eq!(c.s3.endpoint.as_deref(), Some("https://file:9000"));
        assert_eq!(c.retry_delay, std::time::Duration::from_secs(1));
        assert_eq!(c.dest, Destination::parse("s3://from-file/x").unwrap());
        assert_eq!(
            c.sources
                .iter()
                .map(|s| s.owner.as_str())
                .collect::<Vec<_>>(),
            ["acme", "labs"]
        );
        assert!(!c.sources[0].filter.matches("old-api") && c.sources[0].filter.matches("api"));

        let c = BackupConfig::new(
            &parse(&[
                "g",
                "backup",
                "--jobs",
                "2",
                "--dest",
                "/d",
                "--owner",
                "acme",
                "--part-size",
                "6MiB",
            ]),
            &file,
            &env_of(&[("AWS_ENDPOINT_URL_S3", "https://env:9000")]),
        )
        .unwrap();
        assert_eq!((c.jobs, c.s3.part_size), (2, 6 << 20));
        assert_eq!(c.dest, Destination::Local("/d".into()));
        assert_eq!(
            c.s3.endpoint, None,
            "the env endpoint (read by the SDK) beats the file"
        );
        assert_eq!(c.sources.len(), 1);
        assert!(
            !c.sources[0].filter.matches("old-api"),
            "the file's source lends its filters"
        );

        let e = BackupConfig::new(&parse(&["g", "backup"]), &FileConfig::default(), &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--owner"), "{e}");
    }

    #[test]
    fn repo_timeout_from_flag_then_file_and_never_zero() {
        use std::time::Duration;
        let file = file::parse("repo_timeout = \"90m\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(
            repo_timeout(None, &FileConfig::default()).unwrap(),
            DEFAULT_REPO_TIMEOUT
        );
        assert_eq!(
            repo_timeout(None, &file).unwrap(),
            Duration::from_secs(90 * 60)
        );
        assert_eq!(
            repo_timeout(Some("3s"), &file).unwrap(),
            Duration::from_secs(3),
            "the flag beats the file"
        );
        for bad in ["0", "0s", "soon"] {
            let e = repo_timeout(Some(bad), &file).unwrap_err().to_string();
            assert!(e.contains("--repo-timeout") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn counts_are_bounded_from_flag_and_file() {
        let file = file::parse(
            "jobs = 33\n[s3]\nparts_in_flight = 33\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let e = jobs(None, &file).unwrap_err().to_string();
        assert!(e.contains("--jobs") && e.contains("at most 32"), "{e}");
        assert_eq!(
            jobs(Some(32), &file).unwrap(),
            32,
            "the flag beats the file"
        );
        assert_eq!(jobs(None, &FileConfig::default()).unwrap(), 4);
        let e = S3Settings::new(&Default::default(), &file, &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--parts-in-flight") && e.contains("33"), "{e}");
        assert!(count("--jobs", 0, 32).is_err());
    }

    #[test]
    fn encryption_keys_come_from_flags_else_the_file() {
        use clap::Parser;
        const R1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let tmp = tempfile::tempdir().unwrap();
        let cfg_path = tmp.path().join("c.toml");
        std::fs::write(tmp.path().join("keys.txt"), format!("# ops\n{R1}\n")).unwrap();
        let mut file = file::parse(
            "encrypt_to_file = \"keys.txt\"\n[[source]]\nowner = \"acme\"\n",
            &cfg_path,
        )
        .unwrap();
        file.path = Some(cfg_path);
        let parse = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(args).unwrap();
            let crate::cli::Command::Backup(b) = cli.command else {
                unreachable!()
            };
            b
        };
        let no_env = env_of(&[]);
        let from_file = BackupConfig::new(&parse(&["g", "backup"]), &file, &no_env)
            .unwrap()
            .encrypt_to
            .expect("the file's recipients file, relative to the file");
        let from_flag = BackupConfig::new(
            &parse(&["g", "backup", "--owner", "acme", "--encrypt-to", R1]),
            &FileConfig::default(),
            &no_env,
        )
        .unwrap()
        .encrypt_to
        .unwrap();
        assert_eq!(from_file.fingerprint(), from_flag.fingerprint());
        let none = BackupConfig::new(
            &parse(&["g", "backup", "--owner", "acme"]),
            &FileConfig::default(),
            &no_env,
        )
        .unwrap();
        assert!(none.encrypt_to.is_none());
        let e = BackupConfig::new(
            &parse(&["g", "backup", "--encrypt-to", "age1bad"]),
            &file,
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--encrypt-to") && e.contains("age1bad"), "{e}");
    }

    #[test]
    fn sizes_and_dates() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("5242880").unwrap(), 5 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_date(Some("2026-11-24")).is_ok());
        assert!(parse_date(Some("2026-13-01")).is_err());
        assert!(parse_date(Some("2026-1-1")).is_err());
    }
}
