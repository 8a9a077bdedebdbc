//! The subcommands, one module each: turn a parsed [`Cli`] into checked config, build the
//! provider and store, run, and print what a person (or a log collector) needs to see.
//!
//! Human output goes to stderr and data to stdout (`list --json`, `snapshots --json`, the
//! `verify` table), so a script can pipe one without the other. What several commands need
//! (host checks, opening a store to read) lives here, once; providers are built by
//! [`crate::provider::choose`].

mod backup;
mod list;
mod login;
mod prune;
mod restore;
mod snapshots;
mod verify;

use std::sync::Arc;

use clap::CommandFactory;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, LogFormat};
use crate::config::{self, Destination, FileConfig, ReadConfig};
use crate::error::Error;
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

/// Every host the sources' providers dial, once each.
pub(crate) fn provider_hosts(
    sources: &[config::Source],
) -> Vec<(config::url::UrlSource, &url::Url)> {
    let mut hosts: Vec<(config::url::UrlSource, &url::Url)> = Vec::new();
    for target in sources.iter().flat_map(|s| s.provider.dialed()) {
        if !hosts.iter().any(|(_, u)| *u == target.1) {
            hosts.push(target);
        }
    }
    hosts
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
