//! `git-offsite backup`: every source (owner) in turn, then metrics and the healthcheck.
//!
//! A backup always ends with a summary, also when repositories failed, so a log tail says
//! what happened.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::env;
use crate::backup::{Observer, Pipeline, Quiet, Report};
use crate::cli::{BackupArgs, LogFormat};
use crate::config::{BackupConfig, ConfigError, FileConfig, ReportSettings, Source};
use crate::error::Error;
use crate::healthcheck::Healthcheck;
use crate::layout::{Layout, OwnerLayout};
use crate::metrics::{self, OwnerRun, Pushgateway, RunMetrics};
use crate::progress::Progress;
use crate::provider::{Provider, ProviderArgs, choose};
use crate::store::Store;

/// Backs up every source (owner) in turn. One owner failing does not stop the next: each has
/// its own manifest, and the exit code reports the worst outcome. Metrics and the
/// healthcheck ping come last, also after an interruption, so monitoring sees every run.
pub(super) async fn run(
    args: BackupArgs,
    file: &FileConfig,
    format: LogFormat,
    quiet: bool,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let cfg = BackupConfig::new(&args, file, &env)?;
    let mut dialed = super::provider_hosts(&cfg.sources);
    dialed.extend(super::s3_target(&cfg.dest, &cfg.s3));
    super::check_hosts(&dialed).await?;
    let store = crate::store::open(&cfg.dest, &cfg.s3, &cancel).await?;
    // The whole destination (bucket and prefix, or directory), so the first line of a run
    // already says where it writes.
    let owners: Vec<&str> = cfg.sources.iter().map(|s| s.owner.as_str()).collect();
    tracing::info!(
        destination = %cfg.dest,
        date = %cfg.date,
        owners = %owners.join(","),
        "backup of {} to {}",
        owners.join(", "),
        cfg.dest
    );
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
            provider_args: &args.provider,
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
        // A run that lost its lock stopped itself through the same token as a signal.
        let lost = outcomes.into_iter().find_map(|(_, o)| match o {
            Err(e @ Error::Locked(_)) => Some(e),
            _ => None,
        });
        return Err(lost.unwrap_or(Error::Interrupted));
    }
    combine(outcomes)?;
    // Only after a backup that ended with exit 0: a failed night must not cost old snapshots.
    // Each owner is pruned even when an earlier one's prune failed; the first error counts.
    let mut first_error = None;
    if let Some(retention) = cfg.prune.as_ref().filter(|_| !cfg.dry_run) {
        for source in &cfg.sources {
            let owner = OwnerLayout::new(cfg.dest.prefix(), &source.owner)?;
            if let Err(e) =
                super::prune::apply(store.as_ref(), &owner, retention, false, false).await
            {
                tracing::error!(owner = %source.owner, error = %e, "prune after the backup failed");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
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
                    "{owner}: {} ok, {} unchanged, {} empty, {} failed, {}, {:.0} s",
                    s.ok,
                    s.unchanged,
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
    provider_args: &'a ProviderArgs,
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
        // Finding credentials may prompt: with the progress bars out of the way.
        let provider: Arc<dyn Provider> = self
            .above_bars(|| {
                choose::build(
                    &source.provider,
                    self.provider_args,
                    &env,
                    (cfg.retries, cfg.retry_delay),
                )
            })?
            .into();
        let pipeline = Pipeline {
            provider,
            store: self.store.clone(),
            owner_layout: OwnerLayout::new(cfg.dest.prefix(), &source.owner)?,
            layout: Layout::new(cfg.dest.prefix(), &source.owner, cfg.date)?,
            owner: source.owner.clone(),
            date: cfg.date,
            jobs: cfg.jobs,
            filter: source.filter.clone(),
            tmp_dir: cfg.tmp_dir.clone(),
            retries: cfg.retries,
            retry_delay: cfg.retry_delay,
            repo_timeout: cfg.repo_timeout,
            cancel: self.cancel.clone(),
            observer: self.observer.clone(),
            unchanged: cfg.unchanged,
            full: cfg.full,
            force: cfg.force,
            encrypt_to: cfg.encrypt_to.clone(),
            refused: Default::default(),
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
/// "Failed" is what failed in this run ([`Report::summary`]), also where the manifest kept
/// a good entry of today's earlier run.
fn combine(outcomes: Vec<(String, Result<Option<Report>, Error>)>) -> Result<(), Error> {
    let several = outcomes.len() > 1;
    let mut fatal: Option<Error> = None;
    let (mut failed, mut total, mut manifests) = (0, 0, Vec::new());
    for (owner, outcome) in outcomes {
        match outcome {
            Ok(None) => {}
            Ok(Some(report)) => {
                if let Some(reason) = &report.credentials_refused {
                    fatal.get_or_insert(Error::CredentialsRefused {
                        owner: owner.clone(),
                        reason: reason.clone(),
                        manifest: report.manifest_location.clone(),
                    });
                }
                let s = report.summary();
                failed += s.failed;
                total += s.ok + s.unchanged + s.empty + s.failed;
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
            .failures
            .iter()
            .map(|f| f.full_name.as_str())
            .collect();
        tracing::info!(
            event = "summary",
            ok = s.ok,
            unchanged = s.unchanged,
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
    for f in &report.failures {
        let kept = if f.kept_earlier {
            " (the bundle of today's earlier run is kept)"
        } else {
            ""
        };
        // The error quotes server text (git's `remote:` lines, API messages): escaped.
        let _ = writeln!(
            err,
            "failed: {}: {}{kept}",
            crate::text::escape(&f.full_name),
            crate::text::escape(&f.error)
        );
    }
    let rate = if secs > 0.0 {
        s.bytes as f64 / secs
    } else {
        0.0
    };
    let _ = writeln!(
        err,
        "  {:<12} {:>6} {:>9} {:>6} {:>6}   {:>10}   {:>8}\n  {:<12} {:>6} {:>9} {:>6} {:>6}   {:>10}   {:>7.1}s   ({}/s)\n  manifest: {}",
        "repositories",
        "ok",
        "unchanged",
        "empty",
        "failed",
        "bytes",
        "time",
        "",
        s.ok,
        s.unchanged,
        s.empty,
        s.failed,
        bytesize::ByteSize::b(s.bytes).display().iec().to_string(),
        secs,
        bytesize::ByteSize::b(rate as u64).display().iec(),
        report.manifest_location,
    );
}
