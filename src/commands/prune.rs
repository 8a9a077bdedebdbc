//! `git-offsite prune`: remove the snapshots a keep policy does not keep, and show every date
//! folder with what happened to it (kept and by which rule, removed and the bytes freed).
//!
//! The table goes to stdout (or one JSON object with `--json`), the summary and one line per
//! object skipped because it is under retention to stderr. `backup --prune` runs the same
//! thing per owner after a backup that ended with exit 0.

use std::io::Write;

use tokio_util::sync::CancellationToken;

use super::{env, open_to_read};
use crate::cli::PruneArgs;
use crate::config::{FileConfig, PruneConfig, RetentionSettings};
use crate::error::Error;
use crate::layout::OwnerLayout;
use crate::prune::plan::Action;
use crate::prune::{PruneOptions, PruneReport, prune};
use crate::store::Store;

pub(super) async fn run(
    args: PruneArgs,
    file: &FileConfig,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let cfg = PruneConfig::new(&args, file, &env)?;
    let store = open_to_read(&cfg.read, &cancel).await?;
    let owner = OwnerLayout::new(cfg.read.dest.prefix(), &cfg.read.owner)?;
    apply(
        store.as_ref(),
        &owner,
        &cfg.retention,
        cfg.dry_run,
        cfg.json,
    )
    .await
}

/// Prunes one owner and prints the outcome; an error when something could not be removed.
pub(super) async fn apply(
    store: &dyn Store,
    owner: &OwnerLayout,
    retention: &RetentionSettings,
    dry_run: bool,
    json: bool,
) -> Result<(), Error> {
    let opts = PruneOptions {
        policy: retention.policy,
        today: chrono::Utc::now().date_naive(),
        dry_run,
        forget_vanished_after: retention.forget_vanished_after,
    };
    let report = prune(store, owner, &opts).await?;
    for r in &report.retained {
        eprintln!("skipped: {}", r.error);
    }
    for f in &report.failed {
        eprintln!("failed: {}: {}", f.key, f.error);
    }
    let mut out = std::io::stdout().lock();
    if json {
        let _ = serde_json::to_writer_pretty(&mut out, &report);
        let _ = writeln!(out);
    } else {
        let _ = write!(out, "{}", table(&report));
    }
    drop(out);
    eprintln!("{}", summary(&report, owner.owner(), &store.location()));
    match report.failed.first() {
        None => Ok(()),
        Some(first) => Err(Error::PruneIncomplete {
            failed: report.failed.len(),
            first: format!("{}: {}", first.key, first.error),
        }),
    }
}

fn size(b: u64) -> String {
    bytesize::ByteSize::b(b).display().iec().to_string()
}

/// One row per date folder, oldest first, then the repositories that vanished.
pub fn table(report: &PruneReport) -> String {
    let mut s = format!(
        "{:<10}  {:<10}  {:<7}  {:>10}  WHY\n",
        "DATE", "STATE", "ACTION", "FREED"
    );
    for f in &report.folders {
        let freed = if f.objects_removed > 0 {
            size(f.bytes_freed)
        } else {
            "-".into()
        };
        s.push_str(&format!(
            "{:<10}  {:<10}  {:<7}  {:>10}  {}\n",
            f.date.to_string(),
            f.state,
            f.action.as_str(),
            freed,
            f.reasons.join("; ")
        ));
    }
    for v in &report.vanished {
        let what = match (v.bundle_of, v.kept) {
            (Some(d), true) => format!("its last bundle (snapshot {d}) is kept"),
            (Some(d), false) => {
                format!("its last bundle (snapshot {d}) is let go (--forget-vanished-after)")
            }
            (None, _) => "no bundle of it was ever stored".into(),
        };
        s.push_str(&format!(
            "vanished: `{}` (last listed {}): {what}\n",
            v.slug, v.last_seen
        ));
    }
    s
}

fn summary(report: &PruneReport, owner: &str, location: &str) -> String {
    let verb = if report.dry_run { "would be" } else { "were" };
    let mut s = format!(
        "prune of `{owner}` in {location} ({}): {} snapshots kept, {} removed and {} partly removed ({} {verb} freed)",
        report.policy,
        report.count(Action::Keep),
        report.count(Action::Remove),
        report.count(Action::Partial),
        size(report.bytes_freed()),
    );
    let left = report.count(Action::Leave);
    if left > 0 {
        s.push_str(&format!(", {left} left alone"));
    }
    if !report.retained.is_empty() {
        s.push_str(&format!(
            ", {} objects under retention skipped",
            report.retained.len()
        ));
    }
    if report.dry_run {
        s.push_str("; dry run: nothing was removed");
    }
    s
}
