//! Flags + environment + config file + stored credentials → one checked struct per command.
//!
//! Precedence is the same for every setting: flag, then environment variable, then the config
//! file ([`file`]), then the built-in default. Everything that can be wrong with the input is
//! found here, before any network call, and reported as a [`ConfigError`] (exit code 2) whose
//! message names the flag, variable, or file line to fix. The pipeline only ever sees
//! [`BackupConfig`], never clap types or raw strings.

pub mod file;
pub mod read;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use globset::{Glob, GlobSet, GlobSetBuilder};
use url::Url;

use crate::cli::{BitbucketArgs, FilterArgs, ReportArgs, RetryArgs, S3Args, UnchangedMode};
use crate::secret::Secret;
pub use file::{CredentialRefs, FileConfig};
pub use read::{DateChoice, ReadConfig, RestoreConfig, VerifyConfig, VerifyLevel};

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

/// Where backups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local directory; keys are paths below it.
    Local(PathBuf),
    /// `s3://bucket[/prefix]`.
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

impl Destination {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = match rest.split_once('/') {
                Some((b, p)) => (b, p.trim_matches('/')),
                None => (rest, ""),
            };
            // Bucket naming rules (AWS): 3–63 chars of lowercase letters, digits, `.` and `-`.
            // S3-compatible stores are laxer, so only reject what cannot be a bucket anywhere.
            if bucket.is_empty() || bucket.contains(|c: char| c.is_whitespace() || c == '\\') {
                return Err(invalid(
                    "--dest",
                    s,
                    "expected s3://bucket[/prefix] with a bucket name",
                ));
            }
            if prefix.split('/').any(|seg| seg == ".." || seg == ".") || prefix.contains("//") {
                return Err(invalid(
                    "--dest",
                    s,
                    "the prefix may not contain `.`, `..` or `//`",
                ));
            }
            let prefix = (!prefix.is_empty()).then(|| prefix.to_string());
            return Ok(Destination::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if let Some((scheme, _)) = s.split_once("://")
            && scheme != "file"
        {
            return Err(invalid(
                "--dest",
                s,
                format!(
                    "unsupported scheme `{scheme}://`: use s3://bucket[/prefix] or a directory"
                ),
            ));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() {
            return Err(invalid("--dest", s, "empty path"));
        }
        Ok(Destination::Local(PathBuf::from(path)))
    }

    /// The key prefix inside the store (`None` for a local directory: the directory is the root).
    pub fn prefix(&self) -> Option<&str> {
        match self {
            Destination::Local(_) => None,
            Destination::S3 { prefix, .. } => prefix.as_deref(),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Local(p) => write!(f, "{}", p.display()),
            Destination::S3 { bucket, prefix } => match prefix {
                Some(p) => write!(f, "s3://{bucket}/{p}"),
                None => write!(f, "s3://{bucket}"),
            },
        }
    }
}

/// Include/exclude globs on repository slugs. Exclude wins; no include means everything.
#[derive(Debug, Clone)]
pub struct RepoFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl RepoFilter {
    pub fn new(args: &FilterArgs) -> Result<Self, ConfigError> {
        Self::from_globs(&args.include, &args.exclude)
    }

    pub fn from_globs(include: &[String], exclude: &[String]) -> Result<Self, ConfigError> {
        fn build(what: &'static str, globs: &[String]) -> Result<GlobSet, ConfigError> {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(Glob::new(g).map_err(|e| invalid(what, g, e.kind()))?);
            }
            b.build().map_err(|e| invalid(what, globs.join(","), e))
        }
        Ok(Self {
            include: if include.is_empty() {
                None
            } else {
                Some(build("--include glob", include)?)
            },
            exclude: build("--exclude glob", exclude)?,
        })
    }

    pub fn matches(&self, slug: &str) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(slug)) && !self.exclude.is_match(slug)
    }
}

/// S3 settings that are not part of `--dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub virtual_hosted: bool,
    pub region: Option<String>,
    pub part_size: u64,
    pub parts_in_flight: usize,
}

/// The smallest part S3 accepts (except for the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

impl S3Settings {
    pub fn new(
        args: &S3Args,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let part_size_text = args
            .part_size
            .clone()
            .or_else(|| file.s3.part_size.clone())
            .unwrap_or_else(|| "16MiB".into());
        let part_size =
            parse_size(&part_size_text).map_err(|r| invalid("--part-size", &part_size_text, r))?;
        if part_size < MIN_PART_SIZE {
            return Err(invalid(
                "--part-size",
                &part_size_text,
                "S3 requires parts of at least 5MiB",
            ));
        }
        if part_size > 5 * 1024 * 1024 * 1024 {
            return Err(invalid(
                "--part-size",
                &part_size_text,
                "S3 allows parts of at most 5GiB",
            ));
        }
        let parts_in_flight = args
            .parts_in_flight
            .or(file.s3.parts_in_flight)
            .unwrap_or(4);
        if parts_in_flight == 0 {
            return Err(invalid("--parts-in-flight", "0", "must be at least 1"));
        }
        // The SDK reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself; the file's endpoint only
        // applies when neither is set, so the environment keeps beating the file.
        let env_endpoint = env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .is_some();
        let endpoint = args.s3_endpoint.clone().or_else(|| {
            if env_endpoint {
                None
            } else {
                file.s3.endpoint.clone()
            }
        });
        if let Some(e) = &endpoint {
            Url::parse(e).map_err(|err| invalid("--s3-endpoint", e, err))?;
        }
        let region_from_env = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .is_some();
        Ok(Self {
            endpoint,
            virtual_hosted: args.s3_virtual_hosted || file.s3.virtual_hosted.unwrap_or(false),
            region: args.s3_region.clone().or_else(|| {
                if region_from_env {
                    None
                } else {
                    file.s3.region.clone()
                }
            }),
            part_size,
            parts_in_flight,
        })
    }
}

/// `16MiB`, `8 MB`, `5242880`: bytesize's parser (binary and decimal units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim().parse::<bytesize::ByteSize>().map(|b| b.as_u64())
}

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
        (_, Some(path)) => Some((read_secret_file(path)?, "--consumer-secret-file")),
        _ => nonempty(env("BITBUCKET_CONSUMER_SECRET"))
            .map(|s| (Secret::new(s), "BITBUCKET_CONSUMER_SECRET")),
    };
    for r in refs {
        if secret.is_some() {
            break;
        }
        if let Some(path) = &r.consumer_secret_file {
            secret = Some((
                read_secret_file(path)?,
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

/// Reads a secret from a file, trimming the trailing newline `echo` and editors add.
pub fn read_secret_file(path: &Path) -> Result<Secret, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        what: "--consumer-secret-file",
        path: path.to_path_buf(),
        source,
    })?;
    let value = raw.trim();
    if value.is_empty() {
        return Err(ConfigError::EmptyFile {
            what: "consumer secret",
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(value))
}

/// Bitbucket endpoints (configurable for tests and proxies).
#[derive(Debug, Clone)]
pub struct BitbucketEndpoints {
    pub api_url: Url,
    pub token_url: Url,
}

pub const DEFAULT_API_URL: &str = "https://api.bitbucket.org/2.0";
pub const DEFAULT_TOKEN_URL: &str = "https://bitbucket.org/site/oauth2/access_token";

impl BitbucketEndpoints {
    pub fn new(args: &BitbucketArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let parse = |what, s: &str| -> Result<Url, ConfigError> {
            let url = Url::parse(s).map_err(|e| invalid(what, s, e))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(what, s, "expected an http(s) URL"));
            }
            Ok(url)
        };
        let api = (args.bitbucket_api_url.as_deref())
            .or(file.bitbucket.api_url.as_deref())
            .unwrap_or(DEFAULT_API_URL);
        let token = (args.bitbucket_token_url.as_deref())
            .or(file.bitbucket.token_url.as_deref())
            .unwrap_or(DEFAULT_TOKEN_URL);
        Ok(Self {
            api_url: parse("--bitbucket-api-url", api)?,
            token_url: parse("--bitbucket-token-url", token)?,
        })
    }
}

/// Checks an owner name: it becomes a path segment of every key.
pub fn check_owner(owner: &str) -> Result<(), ConfigError> {
    if owner.is_empty()
        || owner == "."
        || owner == ".."
        || owner.contains(['/', '\\'])
        || owner.chars().any(char::is_control)
    {
        return Err(invalid(
            "--owner",
            owner,
            "expected a workspace name such as `acme`",
        ));
    }
    Ok(())
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

/// One owner to back up, with its filters and where to find its credentials.
#[derive(Debug, Clone)]
pub struct Source {
    pub owner: String,
    pub filter: RepoFilter,
    /// Config-file credential references, most specific first.
    pub credentials: Vec<CredentialRefs>,
}

/// The owners of this run: `--owner` (with the flags' filters), else every `[[source]]`
/// (flags' filters, when given, replace each source's).
pub fn sources(
    owner: Option<&str>,
    filter: &FilterArgs,
    file: &FileConfig,
) -> Result<Vec<Source>, ConfigError> {
    let base = file.bitbucket.credentials(file.base_dir());
    let flag_filters = !filter.include.is_empty() || !filter.exclude.is_empty();
    if let Some(owner) = owner {
        check_owner(owner)?;
        // A source of the file with the same owner lends its filters and credentials.
        let from_file = file.sources.iter().find(|s| s.owner == owner);
        let filter = match from_file {
            Some(s) if !flag_filters => RepoFilter::from_globs(&s.include, &s.exclude)?,
            _ => RepoFilter::new(filter)?,
        };
        let mut credentials: Vec<CredentialRefs> = from_file
            .map(|s| s.credentials(file.base_dir()))
            .into_iter()
            .collect();
        credentials.push(base);
        return Ok(vec![Source {
            owner: owner.to_string(),
            filter,
            credentials,
        }]);
    }
    if file.sources.is_empty() {
        return Err(ConfigError::Other(match &file.path {
            Some(p) => format!("no --owner given and {} has no [[source]] entries: pass --owner WORKSPACE", p.display()),
            None => "no --owner given: pass --owner WORKSPACE (or --config FILE with [[source]] entries)".into(),
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    file.sources
        .iter()
        .map(|s| {
            check_owner(&s.owner)?;
            if !seen.insert(s.owner.clone()) {
                return Err(ConfigError::Other(format!(
                    "config file lists owner `{}` twice: each owner's date folder can hold one run",
                    s.owner
                )));
            }
            Ok(Source {
                owner: s.owner.clone(),
                filter: if flag_filters {
                    RepoFilter::new(filter)?
                } else {
                    RepoFilter::from_globs(&s.include, &s.exclude)?
                },
                credentials: vec![s.credentials(file.base_dir()), base.clone()],
            })
        })
        .collect()
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
        let url = |what, v: Option<&String>| -> Result<Option<Url>, ConfigError> {
            v.map(|s| {
                let u = Url::parse(s).map_err(|e| invalid(what, s, e))?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(invalid(what, s, "expected an http(s) URL"));
                }
                Ok(u)
            })
            .transpose()
        };
        Ok(Self {
            metrics_file: args
                .metrics_file
                .clone()
                .or_else(|| file.metrics_file.as_deref().map(|p| file.resolve(p))),
            pushgateway: url(
                "--pushgateway",
                args.pushgateway.as_ref().or(file.pushgateway.as_ref()),
            )?,
            healthcheck_url: url(
                "--healthcheck-url",
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
    pub endpoints: BitbucketEndpoints,
    pub report: ReportSettings,
    /// What an unchanged repository gets: a copy of its earlier bundle, or a reference to it.
    pub unchanged: UnchangedMode,
    /// Ignore earlier manifests: clone and upload everything.
    pub full: bool,
}

impl BackupConfig {
    pub fn new(
        args: &crate::cli::BackupArgs,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let jobs = args.jobs.or(file.jobs).unwrap_or(4);
        if jobs == 0 {
            return Err(invalid("--jobs", "0", "must be at least 1"));
        }
        let tmp_dir = args
            .tmp_dir
            .clone()
            .or_else(|| file.tmp_dir.as_deref().map(|p| file.resolve(p)))
            .unwrap_or_else(std::env::temp_dir);
        let (retries, retry_delay) = retry_settings(&args.retry, file)?;
        let dest = args
            .dest
            .as_deref()
            .or(file.dest.as_deref())
            .unwrap_or("./backup");
        Ok(Self {
            sources: sources(args.owner.as_deref(), &args.filter, file)?,
            dest: Destination::parse(dest)?,
            date: parse_date(args.date.as_deref())?,
            jobs,
            dry_run: args.dry_run,
            tmp_dir,
            s3: S3Settings::new(&args.s3, file, env)?,
            retries,
            retry_delay,
            endpoints: BitbucketEndpoints::new(&args.bitbucket, file)?,
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bb(key: Option<&str>, secret: Option<&str>, file: Option<&Path>) -> BitbucketArgs {
        BitbucketArgs {
            consumer_key: key.map(String::from),
            consumer_secret: secret.map(String::from),
            consumer_secret_file: file.map(Path::to_path_buf),
            bitbucket_api_url: None,
            bitbucket_token_url: None,
        }
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn destination_parsing() {
        assert_eq!(
            Destination::parse("s3://backups/git/").unwrap(),
            Destination::S3 {
                bucket: "backups".into(),
                prefix: Some("git".into())
            }
        );
        assert_eq!(
            Destination::parse("s3://b").unwrap(),
            Destination::S3 {
                bucket: "b".into(),
                prefix: None
            }
        );
        assert_eq!(
            Destination::parse("./backup").unwrap(),
            Destination::Local("./backup".into())
        );
        assert_eq!(
            Destination::parse("file:///srv/b").unwrap(),
            Destination::Local("/srv/b".into())
        );
        for bad in ["s3://", "s3:///x", "gs://b", "s3://b/../x", ""] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
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
    fn flags_beat_env_beat_file_beat_defaults() {
        use clap::Parser;
        let file = file::parse(
            "dest = \"s3://from-file/x\"\njobs = 7\nretry_delay = \"1s\"\n[s3]\nendpoint = \"http://file:9000\"\npart_size = \"8MiB\"\n[[source]]\nowner = \"acme\"\nexclude = [\"old-*\"]\n[[source]]\nowner = \"labs\"\n",
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
        assert_eq!(c.s3.endpoint.as_deref(), Some("http://file:9000"));
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
            &env_of(&[("AWS_ENDPOINT_URL_S3", "http://env:9000")]),
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
    fn empty_or_missing_secret_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = read_secret_file(&empty).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = read_secret_file(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--consumer-secret-file"), "{e}");
    }

    #[test]
    fn filters_exclude_wins() {
        let f = RepoFilter::new(&FilterArgs {
            include: vec!["api-*".into(), "web".into()],
            exclude: vec!["*-old".into()],
        })
        .unwrap();
        assert!(f.matches("api-gw"));
        assert!(f.matches("web"));
        assert!(!f.matches("api-old"));
        assert!(!f.matches("docs"));
        let all = RepoFilter::new(&FilterArgs {
            include: vec![],
            exclude: vec![],
        })
        .unwrap();
        assert!(all.matches("anything"));
        assert!(
            RepoFilter::new(&FilterArgs {
                include: vec!["a[".into()],
                exclude: vec![]
            })
            .is_err()
        );
    }

    #[test]
    fn sizes_dates_owners() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("5242880").unwrap(), 5 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_date(Some("2026-11-24")).is_ok());
        assert!(parse_date(Some("2026-13-01")).is_err());
        assert!(parse_date(Some("2026-1-1")).is_err());
        assert!(check_owner("acme").is_ok());
        for bad in ["", "..", "a/b"] {
            assert!(check_owner(bad).is_err());
        }
    }
}
