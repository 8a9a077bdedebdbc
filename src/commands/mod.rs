//! The subcommands, one module each: turn a parsed [`Cli`] into checked config, build the
//! provider and store, run, and print what a person (or a log collector) needs to see.
//!
//! Human output goes to stderr and data to stdout (`list --json`, `snapshots --json`, the
//! `verify` table), so a script can pipe one without the other. What several commands need
//! (credentials, the provider) lives here, once.

mod backup;
mod list;
mod login;
mod prune;
mod restore;
mod snapshots;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;
use tokio_util::sync::CancellationToken;

use crate::cli::{BitbucketArgs, Cli, Command, LogFormat};
use crate::config::{
    self, BitbucketEndpoints, ConfigError, ConsumerCredentials, CredentialRefs, Destination,
    FileConfig, ReadConfig, StoredCredentials,
};
use crate::credentials;
use crate::error::Error;
use crate::provider::bitbucket::{BitbucketOptions, BitbucketProvider, RetryPolicy};
use crate::store::{Store, StoreError};

/// Runs one command to its end. `cancel` fires on SIGINT/SIGTERM.
pub async fn run(cli: Cli, mut file: FileConfig, cancel: CancellationToken) -> Result<(), Error> {
    let format = log_format(&cli, &file);
    // The flag (or its variable) beats the file, as every setting does.
    if cli.global.allow_insecure_http {
        file.allow_insecure_http = Some(true);
    }
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Backup(args) => backup::run(args, &file, format, quiet, cancel).await,
        Command::List(args) => list::run(args, &file).await,
        Command::Login(args) => login::run(args, &file).await,
        Command::Snapshots(args) => snapshots::run(args, &file, cancel).await,
        Command::Verify(args) => verify::run(args, &file, format, cancel).await,
        Command::Restore(args) => restore::run(args, &file, format, cancel).await,
        Command::Prune(args) => prune::run(args, &file, cancel).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "git-offsite",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|source| Error::Io {
                context: "writing the man page".into(),
                source,
            }),
    }
}

/// `--log-format`/`GIT_OFFSITE_LOG_FORMAT`, then the config file, then text.
pub fn log_format(cli: &Cli, file: &FileConfig) -> LogFormat {
    cli.global
        .log_format
        .unwrap_or(match file.log_format.as_deref() {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        })
}

pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The OAuth consumer: flags, secret file, env, the config file's references, the stored
/// file, then (on a terminal) a prompt with an offer to store the answer.
pub(crate) fn consumer(
    args: &BitbucketArgs,
    refs: &[CredentialRefs],
) -> Result<ConsumerCredentials, Error> {
    // The stored file is read only when everything else falls short, so a broken or
    // too-readable credentials file does not get in the way of explicit settings.
    match config::resolve_consumer(args, &env, refs, &StoredCredentials::default()) {
        Ok(Some(c)) => return Ok(c),
        Ok(None) | Err(ConfigError::MissingCredentials { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let path = credentials::default_path(&env);
    let stored = match &path {
        Some(p) => credentials::load(p)?,
        None => StoredCredentials::default(),
    };
    if let Some(c) = config::resolve_consumer(args, &env, refs, &stored)? {
        return Ok(c);
    }
    if !credentials::interactive() {
        return Err(ConfigError::MissingCredentials {
            missing: "key and secret",
        }
        .into());
    }
    let creds = credentials::prompt_consumer()?;
    if let Some(p) = &path
        && credentials::confirm(&format!("Store them in {} (mode 0600)?", p.display()))
    {
        credentials::save(p, &creds)?;
        eprintln!("Stored in {}.", p.display());
    }
    Ok(creds)
}

pub(crate) fn bitbucket(
    endpoints: &BitbucketEndpoints,
    retry: (u32, Duration),
    creds: ConsumerCredentials,
) -> Result<BitbucketProvider, Error> {
    let (retries, delay) = retry;
    Ok(BitbucketProvider::new(BitbucketOptions {
        api_url: endpoints.api_url.clone(),
        token_url: endpoints.token_url.clone(),
        git_url: endpoints.git_url.clone(),
        consumer_key: creds.key,
        consumer_secret: creds.secret,
        // The API gets a few more attempts than a clone: waiting out a 429 costs nothing.
        retry: RetryPolicy {
            max_attempts: retries + 4,
            base_delay: delay,
            max_delay: delay.saturating_mul(30),
        },
        user_agent: crate::TOOL.to_string(),
    })?)
}

/// Resolves the host names of the URLs about to be dialed: a typo is a configuration error
/// (exit 2) now, not a transient failure retried for a minute.
pub(crate) async fn check_hosts(
    targets: &[(config::url::UrlSource, &url::Url)],
) -> Result<(), Error> {
    Ok(config::url::check_resolves(targets, &env).await?)
}

/// The S3 endpoint to resolve, when the destination is a bucket on a custom endpoint.
pub(crate) fn s3_target<'a>(
    dest: &Destination,
    s3: &'a config::S3Settings,
) -> Option<(config::url::UrlSource, &'a url::Url)> {
    match dest {
        Destination::S3 { .. } => s3.dialed.as_ref().map(|(from, url)| (*from, url)),
        Destination::Local(_) => None,
    }
}

/// The store a read command (`verify`, `restore`) reads from. Unlike `backup`, which creates
/// a missing local directory, a reader must not: a directory that is not there is a
/// destination that cannot be read (exit 4), not an empty backup.
pub(crate) async fn open_to_read(
    cfg: &ReadConfig,
    cancel: &CancellationToken,
) -> Result<Arc<dyn Store>, Error> {
    check_hosts(
        &s3_target(&cfg.dest, &cfg.s3)
            .into_iter()
            .collect::<Vec<_>>(),
    )
    .await?;
    if let Destination::Local(dir) = &cfg.dest
        && !dir.is_dir()
    {
        return Err(StoreError::Io {
            context: "cannot read the destination",
            path: dir.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        }
        .into());
    }
    Ok(crate::store::open(&cfg.dest, &cfg.s3, cancel).await?)
}
