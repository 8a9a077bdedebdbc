//! `git-offsite verify`: check stored bundles against their manifests.
//!
//! The table (or `--json`) goes to stdout, ending with one summary line, so a cron mail or a
//! script sees the whole answer; each failure is also logged to stderr, and the exit code is
//! 5 when any bundle fails, so monitoring needs neither.

use std::io::Write;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{env, open_to_read};
use crate::cli::{LogFormat, VerifyArgs};
use crate::config::{ConfigError, FileConfig, VerifyConfig};
use crate::error::Error;
use crate::layout::OwnerLayout;
use crate::verify::{self, Outcome, Verifier, VerifyReport};

pub(super) async fn run(
    args: VerifyArgs,
    file: &FileConfig,
    _format: LogFormat,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let cfg = VerifyConfig::new(&args, file, &env)?;
    let store = open_to_read(&cfg.read, &cancel).await?;
    let owner = OwnerLayout::new(cfg.read.dest.prefix(), &cfg.read.owner)?;
    let snapshots = verify::select(store.as_ref(), &owner, cfg.date).await?;
    let level = verify::level_name(cfg.level);
    tracing::info!(
        owner = %cfg.read.owner,
        destination = %cfg.read.dest,
        snapshots = snapshots.len(),
        level,
        "verifying"
    );
    let report = Verifier {
        store: store.as_ref(),
        owner: &owner,
        level: cfg.level,
        tmp_dir: &cfg.tmp_dir,
        jobs: cfg.jobs,
        cancel: &cancel,
        identity: cfg.identity.as_deref(),
    }
    .run(&snapshots, &cfg.repos)
    .await;
    if cancel.is_cancelled() {
        return Err(Error::Stopped {
            cleanup: "temp repositories were removed; the destination was only read",
        });
    }
    let repositories = report
        .results
        .iter()
        .filter(|o| o.repository.is_some())
        .count();
    if !args.repo.is_empty() && repositories == 0 {
        return Err(ConfigError::Other(format!(
            "no repository of the chosen snapshots matches --repo {}",
            args.repo.join(" --repo ")
        ))
        .into());
    }

    let destination = cfg.read.dest.to_string();
    let mut out = std::io::stdout().lock();
    if cfg.json {
        #[derive(Serialize)]
        struct Json<'a> {
            destination: &'a str,
            ok: bool,
            #[serde(flatten)]
            report: &'a VerifyReport,
        }
        let json = Json {
            destination: &destination,
            ok: report.summary.failed == 0,
            report: &report,
        };
        let _ = serde_json::to_writer_pretty(&mut out, &json);
        let _ = writeln!(out);
    } else {
        let _ = write!(out, "{}", table(&report.results));
        let _ = writeln!(out, "{}", summary(&report, &destination));
    }
    let _ = out.flush();
    drop(out);

    let several = report.snapshots.len() > 1;
    let failed: Vec<String> = report
        .failures()
        .map(|o| {
            tracing::error!(
                repository = o.repository.as_deref().unwrap_or("-"),
                date = %o.date,
                "verify failed: {}",
                o.detail
            );
            name(o, several)
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Failed {
        what: "failed verification",
        total: report.results.len() - report.summary.skipped,
        failed,
    })
}

/// How a failure is named in the final error line.
fn name(o: &Outcome, several: bool) -> String {
    match (&o.repository, several) {
        (Some(r), false) => r.clone(),
        (Some(r), true) => format!("{r} ({})", o.date),
        (None, _) => format!("the manifest of {}", o.date),
    }
}

/// Fixed columns, the repository column as wide as the longest slug.
pub fn table(results: &[Outcome]) -> String {
    let width = results
        .iter()
        .filter_map(|o| o.repository.as_deref())
        .map(|r| r.chars().count())
        .max()
        .unwrap_or(0)
        .max("REPOSITORY".len());
    let mut s = format!(
        "{:<width$}  {:<10}  {:<7}  DETAIL\n",
        "REPOSITORY", "DATE", "RESULT"
    );
    for o in results {
        s.push_str(&format!(
            "{:<width$}  {:<10}  {:<7}  {}\n",
            o.repository.as_deref().unwrap_or("-"),
            o.date.to_string(),
            o.result.as_str(),
            o.detail
        ));
    }
    s
}

fn summary(report: &VerifyReport, destination: &str) -> String {
    let c = &report.summary;
    let snapshots = match report.snapshots.len() {
        1 => format!("the snapshot of {}", report.snapshots[0]),
        n => format!("{n} snapshots"),
    };
    let skipped = match c.skipped {
        0 => String::new(),
        n => format!(", {n} skipped"),
    };
    let verdict = if c.failed == 0 { "OK" } else { "FAILED" };
    format!(
        "{verdict}: {} ok, {} failed{skipped} ({} check) in {snapshots} of `{}` at {destination}",
        c.ok, c.failed, report.level, report.owner
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Verdict;
    use chrono::NaiveDate;

    #[test]
    fn the_table_has_one_row_per_outcome_and_aligned_columns() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let rows = [
            Outcome {
                repository: Some("a-long-repository".into()),
                date,
                result: Verdict::Ok,
                detail: "fine".into(),
                key: None,
            },
            Outcome {
                repository: None,
                date,
                result: Verdict::Skipped,
                detail: "no manifest".into(),
                key: None,
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("DATE").unwrap();
        assert_eq!(lines[1].find("2026-11-24"), Some(col));
        assert_eq!(lines[2].find("2026-11-24"), Some(col));
        assert!(lines[2].starts_with("- "), "{t}");
    }
}
