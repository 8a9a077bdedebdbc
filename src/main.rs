//! `git-offsite`: parse, set up logging and signals, run, map the error to an exit code.
//!
//! Nothing else in the program exits the process: every failure travels back here as an
//! [`git_offsite::Error`], whose `exit_code` is the single mapping of the CLI contract.

use std::process::ExitCode;

use clap::Parser;
use git_offsite::cli::{Cli, LogFormat};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit 2 here, as clap does by default
    // The config file is read before logging starts because it may choose the log format.
    let file = match &cli.global.config {
        Some(path) => match git_offsite::config::file::load(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(git_offsite::error::exit::USAGE);
            }
        },
        None => Default::default(),
    };
    let format = git_offsite::commands::log_format(&cli, &file);
    git_offsite::logging::init(format, cli.global.verbose, cli.global.quiet);
    git_offsite::libgit2::init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(git_offsite::error::exit::INTERNAL);
        }
    };
    let result = runtime.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(watch_signals(cancel.clone()));
        git_offsite::commands::run(cli, file, cancel).await
    });
    // Let in-flight aborts and temp-dir removals finish rather than killing them mid-way.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = git_offsite::error::chain(&e);
            match format {
                LogFormat::Json => {
                    tracing::error!(event = "fatal", exit_code = e.exit_code(), "{message}")
                }
                LogFormat::Text => eprintln!("error: {message}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// First SIGINT or SIGTERM: stop starting repositories, abort uploads, clean up, exit 130.
/// Kubernetes sends SIGTERM and waits `terminationGracePeriodSeconds` before SIGKILL.
async fn watch_signals(cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot install signal handlers; SIGTERM will kill without cleanup");
            return;
        };
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if cancel.is_cancelled() {
                tracing::warn!(
                    signal = name,
                    "already stopping; waiting for uploads to be aborted"
                );
            } else {
                tracing::warn!(
                    signal = name,
                    "stopping: no new repositories, aborting uploads in flight"
                );
                cancel.cancel();
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    }
}
