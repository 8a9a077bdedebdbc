//! Checked settings of the commands that read backups back: `snapshots`, `verify`, `restore`.
//!
//! They address a destination exactly as `backup` does (same `--dest`, owner, S3 options and
//! config file), so whatever wrote a backup can read it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;

use super::{
    ConfigError, Destination, FileConfig, RepoFilter, S3Settings, check_owner, invalid, jobs,
};
use crate::cli::{ReadArgs, RestoreArgs, VerifyArgs};
use crate::crypt::Identities;
use crate::restore::push::PushAuth;
use crate::secret::Secret;

/// The destination and owner to read.
#[derive(Debug, Clone)]
pub struct ReadConfig {
    pub owner: String,
    pub dest: Destination,
    pub s3: S3Settings,
}

impl ReadConfig {
    pub fn new(
        args: &ReadArgs,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let owner = match (&args.owner, file.sources.as_slice()) {
            (Some(o), _) => o.clone(),
            (None, [only]) => only.owner.clone(),
            (None, []) => {
                return Err(ConfigError::Other(
                    "no --owner given: pass --owner WORKSPACE".into(),
                ));
            }
            (None, _) => {
                return Err(ConfigError::Other(
                    "the config file lists several owners: pass --owner WORKSPACE to pick one"
                        .into(),
                ));
            }
        };
        check_owner(&owner)?;
        Ok(Self {
            owner,
            dest: Destination::choose(args.dest.as_deref(), file)?,
            s3: S3Settings::new(&args.s3, file, env)?,
        })
    }
}

/// Which snapshot(s) a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateChoice {
    /// The newest complete snapshot (for `restore`: the newest holding the repository).
    Latest,
    /// Every complete snapshot.
    All,
    Date(NaiveDate),
}

impl DateChoice {
    pub fn parse(s: Option<&str>, all_allowed: bool) -> Result<Self, ConfigError> {
        match s {
            None | Some("latest") => Ok(DateChoice::Latest),
            Some("all") if all_allowed => Ok(DateChoice::All),
            Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .ok()
                .filter(|p| p.format("%Y-%m-%d").to_string() == d)
                .map(DateChoice::Date)
                .ok_or_else(|| {
                    invalid(
                        "--date",
                        d,
                        if all_allowed {
                            "expected YYYY-MM-DD, `latest` or `all`"
                        } else {
                            "expected YYYY-MM-DD or `latest`"
                        },
                    )
                }),
        }
    }
}

/// How much `verify` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VerifyLevel {
    /// Existence, size and `sha256` metadata: no download.
    Quick,
    /// Download: size, SHA-256, header refs.
    Standard,
    /// Also index the pack and walk every object.
    Deep,
}

#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub read: ReadConfig,
    pub date: DateChoice,
    pub repos: RepoFilter,
    pub jobs: usize,
    pub level: VerifyLevel,
    pub json: bool,
    /// Parent of the `--deep` temp repositories.
    pub tmp_dir: PathBuf,
    /// `--identity`: reads the contents of encrypted bundles.
    pub identity: Option<Arc<Identities>>,
}

impl VerifyConfig {
    pub fn new(
        args: &VerifyArgs,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            read: ReadConfig::new(&args.read, file, env)?,
            date: DateChoice::parse(args.date.as_deref(), true)?,
            repos: RepoFilter::from_globs(&args.repo, &[])?,
            jobs: jobs(args.jobs, file)?,
            level: match (args.quick, args.deep) {
                (true, _) => VerifyLevel::Quick,
                (_, true) => VerifyLevel::Deep,
                _ => VerifyLevel::Standard,
            },
            json: args.json,
            tmp_dir: tmp_dir(file, env),
            identity: identity(args.identity.as_deref())?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RestoreConfig {
    pub read: ReadConfig,
    pub date: DateChoice,
    /// `None` with `--all`.
    pub repo: Option<String>,
    /// `None` with only `--push-to`: the restore goes to a temp dir that is removed after.
    pub to: Option<PathBuf>,
    pub bare: bool,
    pub jobs: usize,
    pub push_to: Option<url::Url>,
    /// `GIT_OFFSITE_PUSH_USERNAME` / `GIT_OFFSITE_PUSH_PASSWORD`, for `push_to`.
    pub push_auth: PushAuth,
    pub tmp_dir: PathBuf,
    /// `--identity`: decrypts encrypted bundles.
    pub identity: Option<Arc<Identities>>,
}

impl RestoreConfig {
    pub fn new(
        args: &RestoreArgs,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let push_to = args
            .push_to
            .as_deref()
            .map(|u| {
                // The push carries GIT_OFFSITE_PUSH_PASSWORD: the same rule as every URL dialed.
                let insecure = file.allow_insecure_http.unwrap_or(false);
                let url = super::url::dial_url("--push-to", u, false, insecure)?;
                if url.password().is_some() {
                    return Err(invalid(
                        "--push-to",
                        "(a URL with a password)",
                        "put no password in the URL (argv is visible to other users): \
                         set GIT_OFFSITE_PUSH_USERNAME and GIT_OFFSITE_PUSH_PASSWORD",
                    ));
                }
                Ok(url)
            })
            .transpose()?;
        Ok(Self {
            read: ReadConfig::new(&args.read, file, env)?,
            date: DateChoice::parse(args.date.as_deref(), false)?,
            repo: args.repo.clone(),
            to: args.to.clone(),
            bare: args.bare,
            jobs: jobs(args.jobs, file)?,
            push_to,
            push_auth: PushAuth {
                username: env("GIT_OFFSITE_PUSH_USERNAME").filter(|u| !u.is_empty()),
                password: env("GIT_OFFSITE_PUSH_PASSWORD")
                    .filter(|p| !p.is_empty())
                    .map(Secret::new),
            },
            tmp_dir: tmp_dir(file, env),
            identity: identity(args.identity.as_deref())?,
        })
    }
}

/// Loads `--identity` now, so a missing or unreadable key file fails before any download.
fn identity(path: Option<&Path>) -> Result<Option<Arc<Identities>>, ConfigError> {
    Ok(path.map(Identities::load).transpose()?.map(Arc::new))
}

fn tmp_dir(file: &FileConfig, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("GIT_OFFSITE_TMP_DIR")
        .map(PathBuf::from)
        .or_else(|| file.tmp_dir.as_deref().map(|p| file.resolve(p)))
        .unwrap_or_else(std::env::temp_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_with_latest_and_all() {
        assert_eq!(DateChoice::parse(None, true).unwrap(), DateChoice::Latest);
        assert_eq!(
            DateChoice::parse(Some("all"), true).unwrap(),
            DateChoice::All
        );
        assert!(DateChoice::parse(Some("all"), false).is_err());
        assert_eq!(
            DateChoice::parse(Some("2026-11-24"), false).unwrap(),
            DateChoice::Date(NaiveDate::from_ymd_opt(2026, 11, 24).unwrap())
        );
        let e = DateChoice::parse(Some("yesterday"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--date") && e.contains("latest"), "{e}");
    }
}
