//! The subcommands: turn a parsed [`Cli`] into checked config, build the provider and store,
//! run, and print what a person (or a log collector) needs to see.
//!
//! Human output goes to stderr (stdout is kept for data: `list --json`), and a backup always
//! ends with a summary, also when repositories failed, so a log tail says what happened.

use std::io::Write;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use std::time::Instant;

use crate::backup::{Observer, Pipeline, Quiet, Report};
use crate::healthcheck::Healthcheck;
use crate::metrics::{self, OwnerRun, Pushgateway, RunMetrics};
use crate::progress::Progress;
use std::time::Duration;

use clap::CommandFactory;

use crate::cli::{BackupArgs, BitbucketArgs, Cli, Command, ListArgs, LogFormat, LoginArgs};
use crate::config::{
    self, BackupConfig, BitbucketEndpoints, ConfigError, ConsumerCredentials, CredentialRefs,
    Destination, FileConfig, ReportSettings, Source, StoredCredentials,
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
pub async fn run(cli: Cli, file: FileConfig, cancel: CancellationToken) -> Result<(), Error> {
    let format = log_format(&cli, &file);
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Backup(args) => backup(args, &file, format, quiet, cancel).await,
        Command::List(args) => list(args, &file).await,
        Command::Login(args) => login(args, &file).await,
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The OAuth consumer: flags, secret file, env, the config file's references, the stored
/// file, then (on a terminal) a prompt with an offer to store the answer.
fn consumer(args: &BitbucketArgs, refs: &[CredentialRefs]) -> Result<ConsumerCredentials, Error> {
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

fn bitbucket(
    endpoints: &BitbucketEndpoints,
    retry: (u32, Duration),
    creds: ConsumerCredentials,
) -> Result<BitbucketProvider, Error> {
    let (retries, delay) = retry;
    Ok(BitbucketProvider::new(BitbucketOptions {
        api_url: endpoints.api_url.clone(),
        token_url: endpoints.token_url.clone(),
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

/// Backs up every source (owner) in turn. One owner failing does not stop the next: each has
/// its own manifest, and the exit code reports the worst outcome. Metrics and the
/// healthcheck ping come last, also after an interruption, so monitoring sees every run.
async fn backup(
    args: BackupArgs,
    file: &FileConfig,
    format: LogFormat,
    quiet: bool,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let cfg = BackupConfig::new(&args, file, &env)?;
    let store = open_store(&cfg, &cancel).await?;
    let healthcheck = match (&cfg.report.healthcheck_url, cfg.dry_run) {
        (Some(url), false) => Some(
            Healthcheck::new(url.as_str())
                .map_err(|e| ConfigError::Other(format!("--healthcheck-url: {e}")))?,
        ),
        _ => None,
    };
    if let Some(hc) = &healthcheck
        && let Err(e) = hc.start().await
    {
        tracing::warn!(error = %e, "healthcheck start ping failed");
    }
    let progress = (format == LogFormat::Text && !quiet && !cfg.dry_run)
        .then(Progress::new_if_terminal)
        .flatten()
        .map(Arc::new);
    let observer: Arc<dyn Observer> = match &progress {
        Some(p) => p.clone(),
        None => Arc::new(Quiet),
    };

    let mut metrics = RunMetrics::new();
    let mut outcomes: Vec<(String, Result<Option<Report>, Error>)> = Vec::new();
    for source in &cfg.sources {
        if cancel.is_cancelled() {
            break;
        }
        let started = Instant::now();
        let ctx = SourceRun {
            cfg: &cfg,
            bitbucket_args: &args.bitbucket,
            store: store.clone(),
            cancel: &cancel,
            format,
            observer: observer.clone(),
            progress: progress.as_deref(),
        };
        let result = ctx.run(source).await;
        match &result {
            Ok(Some(report)) => {
                metrics.add(OwnerRun::from_report(report));
            }
            Err(_) => {
                metrics.add(OwnerRun::failed(&source.owner, started.elapsed()));
            }
            Ok(None) => {}
        }
        outcomes.push((source.owner.clone(), result));
    }
    if let Some(p) = &progress {
        p.finish();
    }
    let interrupted = cancel.is_cancelled();
    if !cfg.dry_run {
        report_run(
            &cfg.report,
            &metrics,
            healthcheck.as_ref(),
            &outcomes,
            interrupted,
        )
        .await;
    }
    if interrupted {
        return Err(Error::Interrupted);
    }
    combine(outcomes)
}

/// Writes/pushes metrics and pings the healthcheck. Failures are warnings: a monitoring
/// outage must never turn a good backup into a failed one.
async fn report_run(
    settings: &ReportSettings,
    metrics: &RunMetrics,
    healthcheck: Option<&Healthcheck>,
    outcomes: &[(String, Result<Option<Report>, Error>)],
    interrupted: bool,
) {
    // After SIGTERM the pod's grace period is ticking: one quick attempt each.
    let (retries, timeout) = if interrupted { (0, 5) } else { (2, 10) };
    if let Some(path) = &settings.metrics_file
        && let Err(e) = metrics::write_file(path, metrics)
    {
        tracing::warn!(error = %e, "cannot write the metrics file");
    }
    if let Some(url) = &settings.pushgateway {
        let pushed = match Pushgateway::new(url.as_str()) {
            Ok(gw) => {
                gw.with_retries(retries, Duration::from_secs(1))
                    .with_timeout(Duration::from_secs(timeout))
                    .push(metrics)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = pushed {
            tracing::warn!(error = %e, "metrics push failed");
        }
    }
    let Some(hc) = healthcheck else { return };
    let hc = hc
        .clone()
        .with_retries(retries, Duration::from_secs(1))
        .with_timeout(Duration::from_secs(timeout));
    let mut ok = !interrupted;
    let mut body: Vec<String> = Vec::new();
    for (owner, outcome) in outcomes {
        match outcome {
            Ok(Some(r)) => {
                let s = r.summary();
                ok &= s.failed == 0;
                body.push(format!(
                    "{owner}: {} ok, {} empty, {} failed, {}, {:.0} s",
                    s.ok,
                    s.empty,
                    s.failed,
                    bytesize::ByteSize::b(s.bytes).display().iec(),
                    r.elapsed.as_secs_f64()
                ));
            }
            Ok(None) => {}
            Err(e) => {
                ok = false;
                body.push(format!("{owner}: {e}"));
            }
        }
    }
    if interrupted {
        body.push("interrupted by a signal".into());
    }
    let result = if ok {
        hc.success(&body.join("\n")).await
    } else {
        hc.fail(&body.join("\n")).await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "healthcheck ping failed");
    }
}

/// What backing up one source needs from the command.
struct SourceRun<'a> {
    cfg: &'a BackupConfig,
    bitbucket_args: &'a BitbucketArgs,
    store: Arc<dyn Store>,
    cancel: &'a CancellationToken,
    format: LogFormat,
    observer: Arc<dyn Observer>,
    progress: Option<&'a Progress>,
}

impl SourceRun<'_> {
    /// Runs `f` with the progress bars out of the way (prompts, summaries).
    fn above_bars<T>(&self, f: impl FnOnce() -> T) -> T {
        match self.progress {
            Some(p) => p.multi().suspend(f),
            None => f(),
        }
    }

    /// `Ok(None)` for a dry run.
    async fn run(&self, source: &Source) -> Result<Option<Report>, Error> {
        let cfg = self.cfg;
        let creds = self.above_bars(|| consumer(self.bitbucket_args, &source.credentials))?;
        let provider: Arc<dyn Provider> = Arc::new(bitbucket(
            &cfg.endpoints,
            (cfg.retries, cfg.retry_delay),
            creds,
        )?);
        let pipeline = Pipeline {
            provider,
            store: self.store.clone(),
            layout: Layout::new(cfg.dest.prefix(), &source.owner, cfg.date)?,
            owner: source.owner.clone(),
            date: cfg.date,
            jobs: cfg.jobs,
            filter: source.filter.clone(),
            tmp_dir: cfg.tmp_dir.clone(),
            retries: cfg.retries,
            retry_delay: cfg.retry_delay,
            cancel: self.cancel.clone(),
            observer: self.observer.clone(),
        };
        if cfg.dry_run {
            let plan = pipeline.plan().await?;
            let mut out = std::io::stdout().lock();
            for p in &plan {
                let _ = writeln!(out, "{}\t{}", p.repo.full_name, p.key);
            }
            eprintln!(
                "dry run: {} repositories of `{}` would be backed up to {}; nothing was cloned or uploaded",
                plan.len(),
                source.owner,
                pipeline.store.location()
            );
            return Ok(None);
        }
        let report = pipeline.run().await?;
        self.above_bars(|| print_summary(&report, self.format));
        Ok(Some(report))
    }
}

/// One exit status for several owners: a run-ending error of any owner wins (the first
/// one), then failed repositories (exit 5), then success. `Ok(None)` is a dry run.
fn combine(outcomes: Vec<(String, Result<Option<Report>, Error>)>) -> Result<(), Error> {
    let several = outcomes.len() > 1;
    let mut fatal: Option<Error> = None;
    let (mut failed, mut total, mut manifests) = (0, 0, Vec::new());
    for (owner, outcome) in outcomes {
        match outcome {
            Ok(None) => {}
            Ok(Some(report)) => {
                let s = report.summary();
                failed += s.failed;
                total += s.ok + s.empty + s.failed;
                if s.failed > 0 {
                    manifests.push(report.manifest_location.clone());
                }
            }
            Err(e) => {
                if several {
                    tracing::error!(owner = %owner, error = %e, "owner not backed up");
                }
                fatal.get_or_insert(e);
            }
        }
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    if failed > 0 {
        return Err(Error::Partial {
            failed,
            total,
            manifest: manifests.join(", "),
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
    for r in report
        .manifest
        .repositories
        .iter()
        .filter(|r| r.status == Status::Failed)
    {
        let _ = writeln!(
            err,
            "failed: {}: {}",
            r.full_name,
            r.error.as_deref().unwrap_or("unknown error")
        );
    }
    let rate = if secs > 0.0 {
        s.bytes as f64 / secs
    } else {
        0.0
    };
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

async fn list(args: ListArgs, file: &FileConfig) -> Result<(), Error> {
    let sources = config::sources(args.owner.as_deref(), &args.filter, file)?;
    let endpoints = BitbucketEndpoints::new(&args.bitbucket, file)?;
    let retry = config::retry_settings(&args.retry, file)?;
    let mut repos: Vec<RemoteRepo> = Vec::new();
    for source in &sources {
        let provider = bitbucket(
            &endpoints,
            retry,
            consumer(&args.bitbucket, &source.credentials)?,
        )?;
        repos.extend(
            provider
                .list_repos(&source.owner)
                .await?
                .into_iter()
                .filter(|r| source.filter.matches(&r.slug)),
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = serde_json::to_writer_pretty(&mut out, &repos);
        let _ = writeln!(out);
        return Ok(());
    }
    // One owner: slugs; several: full names, so rows stay unambiguous.
    let name = |r: &RemoteRepo| {
        if sources.len() > 1 {
            r.full_name.clone()
        } else {
            r.slug.clone()
        }
    };
    let width = repos
        .iter()
        .map(|r| name(r).len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>10}  {:<25}  DEFAULT BRANCH",
        "SLUG", "SIZE", "UPDATED"
    );
    for r in &repos {
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:<25}  {}",
            name(r),
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

async fn login(args: LoginArgs, file: &FileConfig) -> Result<(), Error> {
    if let Some(o) = &args.owner {
        config::check_owner(o)?;
    }
    // `login` asks even when a stored file exists: replacing it is what it is for. Flags, env
    // and the config file's references still win so it can run in scripts.
    let refs = [file.bitbucket.credentials(file.base_dir())];
    let creds = match config::resolve_consumer(
        &args.bitbucket,
        &env,
        &refs,
        &StoredCredentials::default(),
    )? {
        Some(c) => c,
        None if credentials::interactive() => credentials::prompt_consumer()?,
        None => {
            return Err(ConfigError::MissingCredentials {
                missing: "key and secret",
            }
            .into());
        }
    };
    let endpoints = BitbucketEndpoints::new(&args.bitbucket, file)?;
    let provider = bitbucket(
        &endpoints,
        config::retry_settings(&Default::default(), file)?,
        creds.clone(),
    )?;
    eprintln!("Checking the consumer against {} …", endpoints.token_url);
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
