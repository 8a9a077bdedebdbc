//! The subcommands: turn a parsed [`Cli`] into checked config, build the provider and store,
//! run, and print what a person (or a log collector) needs to see.
//!
//! Human output goes to stderr (stdout is kept for data: `list --json`), and a backup always
//! ends with a summary, also when repositories failed, so a log tail says what happened.

use std::io::Write;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::backup::{Pipeline, Quiet, Report};
use crate::cli::{
    BackupArgs, BitbucketArgs, Cli, Command, ListArgs, LogFormat, LoginArgs, RetryArgs,
};
use crate::config::{
    self, BackupConfig, BitbucketEndpoints, ConfigError, ConsumerCredentials, Destination,
    RepoFilter, StoredCredentials,
};
use crate::credentials;
use crate::error::Error;
use crate::layout::Layout;
use crate::manifest::Status;
use crate::provider::bitbucket::{BitbucketOptions, BitbucketProvider, RetryPolicy};
use crate::provider::{Provider, RemoteRepo};
use crate::store::Store;
use crate::store::fs::FsStore;
use crate::store::s3::{S3Options, S3Store};

/// Runs one command to its end. `cancel` fires on SIGINT/SIGTERM.
pub async fn run(cli: Cli, cancel: CancellationToken) -> Result<(), Error> {
    let format = cli.global.log_format.unwrap_or(LogFormat::Text);
    match cli.command {
        Command::Backup(args) => backup(args, format, cancel).await,
        Command::List(args) => list(args).await,
        Command::Login(args) => login(args).await,
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The OAuth consumer: flags, secret file, env, stored file, then (on a terminal) a prompt
/// with an offer to store the answer.
fn consumer(args: &BitbucketArgs) -> Result<ConsumerCredentials, Error> {
    // The stored file is read only when flags and env fall short, so a broken or
    // too-readable credentials file does not get in the way of explicit flags.
    match config::resolve_consumer(args, &env, &StoredCredentials::default()) {
        Ok(Some(c)) => return Ok(c),
        Ok(None) | Err(ConfigError::MissingCredentials { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let path = credentials::default_path(&env);
    let stored = match &path {
        Some(p) => credentials::load(p)?,
        None => StoredCredentials::default(),
    };
    if let Some(c) = config::resolve_consumer(args, &env, &stored)? {
        return Ok(c);
    }
    if !credentials::interactive() {
        return Err(ConfigError::MissingCredentials { missing: "key and secret" }.into());
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

fn bitbucket(
    args: &BitbucketArgs,
    retry: &RetryArgs,
    creds: ConsumerCredentials,
) -> Result<BitbucketProvider, Error> {
    let endpoints = BitbucketEndpoints::new(args)?;
    Ok(BitbucketProvider::new(BitbucketOptions {
        api_url: endpoints.api_url,
        token_url: endpoints.token_url,
        consumer_key: creds.key,
        consumer_secret: creds.secret,
        retry: retry_policy(retry)?,
        user_agent: crate::TOOL.to_string(),
    })?)
}

/// Retry pacing for the hosting API, from the same flags as git and upload retries.
fn retry_policy(args: &RetryArgs) -> Result<RetryPolicy, ConfigError> {
    let (retries, delay) = config::retry_settings(args)?;
    Ok(RetryPolicy {
        // The API gets a few more attempts than a clone: a 429 costs nothing to wait out.
        max_attempts: retries + 4,
        base_delay: delay,
        max_delay: delay.saturating_mul(30),
    })
}

async fn open_store(
    cfg: &BackupConfig,
    cancel: &CancellationToken,
) -> Result<Arc<dyn Store>, Error> {
    Ok(match &cfg.dest {
        Destination::Local(dir) => Arc::new(FsStore::new(dir.clone())),
        Destination::S3 { bucket, .. } => Arc::new(
            S3Store::from_env(
                S3Options {
                    bucket: bucket.clone(),
                    endpoint: cfg.s3.endpoint.clone(),
                    virtual_hosted: cfg.s3.virtual_hosted,
                    part_size: cfg.s3.part_size,
                    parts_in_flight: cfg.s3.parts_in_flight,
                    region: cfg.s3.region.clone(),
                },
                cancel.clone(),
            )
            .await?,
        ),
    })
}

async fn backup(args: BackupArgs, format: LogFormat, cancel: CancellationToken) -> Result<(), Error> {
    let cfg = BackupConfig::new(&args)?;
    let provider: Arc<dyn Provider> = Arc::new(bitbucket(
        &args.bitbucket,
        &args.retry,
        consumer(&args.bitbucket)?,
    )?);
    let store = open_store(&cfg, &cancel).await?;
    let layout = Layout::new(cfg.dest.prefix(), &cfg.owner, cfg.date)?;
    let pipeline = Pipeline {
        provider,
        store,
        layout,
        owner: cfg.owner.clone(),
        date: cfg.date,
        jobs: cfg.jobs,
        filter: cfg.filter.clone(),
        tmp_dir: cfg.tmp_dir.clone(),
        retries: cfg.retries,
        retry_delay: cfg.retry_delay,
        cancel,
        observer: Arc::new(Quiet),
    };

    if cfg.dry_run {
        let plan = pipeline.plan().await?;
        let mut out = std::io::stdout().lock();
        for p in &plan {
            let _ = writeln!(out, "{}\t{}", p.repo.full_name, p.key);
        }
        eprintln!(
            "dry run: {} repositories would be backed up to {}; nothing was cloned or uploaded",
            plan.len(),
            pipeline.store.location()
        );
        return Ok(());
    }

    let report = pipeline.run().await?;
    print_summary(&report, format);
    let s = report.summary();
    if s.failed > 0 {
        return Err(Error::Partial {
            failed: s.failed,
            total: s.ok + s.empty + s.failed,
            manifest: report.manifest_location.clone(),
        });
    }
    Ok(())
}

/// The closing table (text) or one `summary` event (json).
fn print_summary(report: &Report, format: LogFormat) {
    let s = report.summary();
    let secs = report.elapsed.as_secs_f64();
    if format == LogFormat::Json {
        let failed: Vec<&str> = report
            .manifest
            .repositories
            .iter()
            .filter(|r| r.status == Status::Failed)
            .map(|r| r.full_name.as_str())
            .collect();
        tracing::info!(
            event = "summary",
            ok = s.ok,
            empty = s.empty,
            failed = s.failed,
            bytes = s.bytes,
            seconds = secs,
            manifest = %report.manifest_location,
            failed_repositories = ?failed,
            "backup finished"
        );
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err);
    for r in report.manifest.repositories.iter().filter(|r| r.status == Status::Failed) {
        let _ = writeln!(
            err,
            "failed: {}: {}",
            r.full_name,
            r.error.as_deref().unwrap_or("unknown error")
        );
    }
    let rate = if secs > 0.0 { s.bytes as f64 / secs } else { 0.0 };
    let _ = writeln!(
        err,
        "  {:<12} {:>6} {:>6} {:>6}   {:>10}   {:>8}\n  {:<12} {:>6} {:>6} {:>6}   {:>10}   {:>7.1}s   ({}/s)\n  manifest: {}",
        "repositories",
        "ok",
        "empty",
        "failed",
        "bytes",
        "time",
        "",
        s.ok,
        s.empty,
        s.failed,
        bytesize::ByteSize::b(s.bytes).display().iec().to_string(),
        secs,
        bytesize::ByteSize::b(rate as u64).display().iec(),
        report.manifest_location,
    );
}

async fn list(args: ListArgs) -> Result<(), Error> {
    config::check_owner(&args.owner)?;
    let filter = RepoFilter::new(&args.filter)?;
    let provider = bitbucket(&args.bitbucket, &args.retry, consumer(&args.bitbucket)?)?;
    let repos: Vec<RemoteRepo> = provider
        .list_repos(&args.owner)
        .await?
        .into_iter()
        .filter(|r| filter.matches(&r.slug))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = serde_json::to_writer_pretty(&mut out, &repos);
        let _ = writeln!(out);
        return Ok(());
    }
    let width = repos.iter().map(|r| r.slug.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "{:<width$}  {:>10}  {:<25}  DEFAULT BRANCH", "SLUG", "SIZE", "UPDATED");
    for r in &repos {
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:<25}  {}",
            r.slug,
            r.size
                .map(|b| bytesize::ByteSize::b(b).display().iec().to_string())
                .unwrap_or_else(|| "-".into()),
            r.updated_on.as_deref().unwrap_or("-"),
            r.default_branch.as_deref().unwrap_or("(empty)"),
        );
    }
    eprintln!("{} repositories", repos.len());
    Ok(())
}

async fn login(args: LoginArgs) -> Result<(), Error> {
    if let Some(o) = &args.owner {
        config::check_owner(o)?;
    }
    // `login` asks even when other credentials exist: that is what it is for. Flags and env
    // still win so it can run in scripts.
    let creds = match config::resolve_consumer(&args.bitbucket, &env, &StoredCredentials::default())? {
        Some(c) => c,
        None if credentials::interactive() => credentials::prompt_consumer()?,
        None => return Err(ConfigError::MissingCredentials { missing: "key and secret" }.into()),
    };
    let provider = bitbucket(&args.bitbucket, &RetryArgs::default(), creds.clone())?;
    eprintln!("Checking the consumer against {} …", args.bitbucket.bitbucket_token_url);
    if let Err(e) = provider.check_login(args.owner.as_deref()).await {
        eprintln!(
            "If the consumer has not been authorised yet, open this URL while logged in to Bitbucket \
             and grant access:\n  {}",
            provider.consent_url()
        );
        return Err(e.into());
    }
    match &args.owner {
        Some(o) => eprintln!("OK: the consumer can read workspace `{o}`."),
        None => eprintln!("OK: the consumer key and secret are valid."),
    }
    let path = credentials::default_path(&env).ok_or_else(|| {
        ConfigError::Other("cannot find a config directory: set XDG_CONFIG_HOME or HOME".into())
    })?;
    credentials::save(&path, &creds)?;
    eprintln!("Stored in {} (mode 0600).", path.display());
    Ok(())
}
