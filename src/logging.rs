//! Log lines on stderr: who sees what.
//!
//! - **On a terminal** the progress bars are the record of a run, so per-repository lines
//!   ("backing up", "uploaded", "unchanged") are shown only with `-v`; warnings and errors
//!   always are, and every line starts with a short `HH:MM:SS` (the date is on the screen's
//!   clock, and long timestamps push the message off a narrow terminal).
//! - **Off a terminal** (CI, Kubernetes, cron mail) the log lines are the record: full RFC 3339
//!   UTC timestamps and every per-repository line at info level, as before.
//! - Other crates stay at `warn` unless asked for with `-vv` or `RUST_LOG`: the SDKs are chatty.
//!
//! - The AWS crates never log below `debug`, whatever `RUST_LOG` says: at `trace` they print
//!   request bodies, and the STS request of IRSA (the default deployment) carries the
//!   web-identity token in its body.
//!
//! JSON lines are for machines and always carry everything at the chosen level.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// The module whose info lines are per-repository progress.
const PER_REPOSITORY: &str = "git_offsite::backup";

/// The `EnvFilter` directives used when `RUST_LOG` is not set.
pub fn directives(terminal: bool, verbose: u8, quiet: bool) -> String {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let others = if verbose >= 2 { "debug" } else { "warn" };
    let mut d = format!("{others},git_offsite={level}");
    if terminal && verbose == 0 && !quiet {
        d.push_str(&format!(",{PER_REPOSITORY}=warn"));
    }
    d
}

/// The most the AWS SDK crates may log (see the module docs).
const AWS_MAX_LEVEL: Level = Level::DEBUG;

/// Whether an event passes the cap on the AWS crates' level.
pub fn under_aws_cap(meta: &Metadata<'_>) -> bool {
    !meta.target().starts_with("aws_") || *meta.level() <= AWS_MAX_LEVEL
}

/// `HH:MM:SS` (UTC) on a terminal, full RFC 3339 UTC elsewhere.
struct Clock {
    short: bool,
}

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = chrono::Utc::now();
        if self.short {
            write!(w, "{}", now.format("%H:%M:%S"))
        } else {
            write!(w, "{}", now.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
        }
    }
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let terminal = std::io::stderr().is_terminal();
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(directives(
            terminal && format == LogFormat::Text,
            verbose,
            quiet,
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Log lines go above the progress bars (when any are shown) instead of tearing them.
        .with_writer(crate::progress::LogWriter::new());
    // A global filter beside RUST_LOG's: no directive can lift it.
    let cap = filter_fn(under_aws_cap);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish()
            .with(cap)
            .init(),
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(terminal)
            .with_timer(Clock { short: terminal })
            .compact()
            .finish()
            .with(cap)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_repository_lines_need_v_on_a_terminal_only() {
        assert_eq!(
            directives(true, 0, false),
            "warn,git_offsite=info,git_offsite::backup=warn"
        );
        assert_eq!(directives(false, 0, false), "warn,git_offsite=info");
        assert_eq!(directives(true, 1, false), "warn,git_offsite=debug");
        assert_eq!(directives(true, 2, false), "debug,git_offsite=trace");
        assert_eq!(directives(true, 0, true), "warn,git_offsite=warn");
    }

    #[test]
    fn the_filter_lets_warnings_of_the_pipeline_through_on_a_terminal() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        let writer = move || Capture(sink.clone());
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new(directives(true, 0, false)))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_timer(Clock { short: true })
                    .with_ansi(false),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "git_offsite::backup", "per-repository line");
            tracing::warn!(target: "git_offsite::backup", "a warning");
            tracing::info!(target: "git_offsite::commands", "a command line");
        });
        let text = seen.lock().unwrap().concat();
        assert!(!text.contains("per-repository line"), "{text}");
        assert!(
            text.contains("a warning") && text.contains("a command line"),
            "{text}"
        );
        // HH:MM:SS, then the level.
        let first = text.lines().next().unwrap();
        assert_eq!(first.as_bytes()[2], b':', "{first}");
        assert_eq!(first.as_bytes()[5], b':', "{first}");
        assert_eq!(first.as_bytes()[8], b' ', "{first}");
    }

    #[test]
    fn aws_crates_stay_at_debug_whatever_rust_log_says() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        let writer = move || Capture(sink.clone());
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("trace,aws_smithy_runtime::client=trace"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false),
            )
            .with(filter_fn(under_aws_cap));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "body WebIdentityToken=secret");
            tracing::debug!(target: "aws_config::sts", "a debug line");
            tracing::trace!(target: "git_offsite::backup", "our own trace");
        });
        let text = seen.lock().unwrap().concat();
        assert!(!text.contains("WebIdentityToken"), "{text}");
        assert!(
            text.contains("a debug line") && text.contains("our own trace"),
            "{text}"
        );
    }

    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
