//! `git-offsite snapshots`: one row per date folder of an owner, oldest first.
//!
//! It reads only the folder listing and the manifests (never a bundle), so it is cheap enough
//! to run from a laptop against years of backups. A folder with bundles but no manifest is an
//! interrupted run and is shown as `incomplete`, never silently left out: an operator must see
//! that the night's run did not finish.

use std::io::Write;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::env;
use crate::catalog::{self, ManifestState};
use crate::cli::SnapshotsArgs;
use crate::config::{FileConfig, ReadConfig};
use crate::error::Error;
use crate::layout::{BUNDLE_SUFFIX, OwnerLayout, SEALED_SUFFIX};
use crate::manifest::{Manifest, Status};
use crate::store::Store;

/// One row of the table (and of `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub date: chrono::NaiveDate,
    /// `complete`, `incomplete` (no manifest) or `unreadable` (a manifest that does not read).
    pub state: &'static str,
    pub ok: usize,
    pub unchanged: usize,
    pub empty: usize,
    pub failed: usize,
    /// Bundle bytes uploaded that day (`ok` entries; for an incomplete run, the bundles there).
    pub bytes_written: u64,
    /// Bundle bytes the snapshot restores (`ok` and `unchanged` entries).
    pub bytes_restorable: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(super) async fn run(
    args: SnapshotsArgs,
    file: &FileConfig,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let cfg = ReadConfig::new(&args.read, file, &env)?;
    super::check_hosts(
        &super::s3_target(&cfg.dest, &cfg.s3)
            .into_iter()
            .collect::<Vec<_>>(),
    )
    .await?;
    let store = crate::store::open(&cfg.dest, &cfg.s3, &cancel).await?;
    let owner = OwnerLayout::new(cfg.dest.prefix(), &cfg.owner)?;
    let rows = rows(store.as_ref(), &owner).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = serde_json::to_writer_pretty(&mut out, &rows);
        let _ = writeln!(out);
        return Ok(());
    }
    let _ = write!(out, "{}", table(&rows));
    let incomplete = rows.iter().filter(|r| r.state != "complete").count();
    eprintln!(
        "{} snapshots of `{}` in {}{}",
        rows.len(),
        cfg.owner,
        cfg.dest,
        match incomplete {
            0 => String::new(),
            n => format!(" ({n} not complete)"),
        }
    );
    Ok(())
}

/// Every date folder of `owner`, oldest first.
pub async fn rows(store: &dyn Store, owner: &OwnerLayout) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for date in catalog::dates(store, owner).await? {
        let row = match catalog::manifest(store, owner, date).await? {
            ManifestState::Complete(m) => complete_row(&m),
            ManifestState::Missing => {
                let folder = owner.run(date).run_dir().to_string() + "/";
                let listing = store.list_folder(&folder).await?;
                let bundles: Vec<u64> = listing
                    .objects
                    .iter()
                    .filter(|o| {
                        let k = o.key.as_str();
                        k.ends_with(BUNDLE_SUFFIX) || k.ends_with(SEALED_SUFFIX)
                    })
                    .map(|o| o.size)
                    .collect();
                Row {
                    date,
                    state: "incomplete",
                    ok: 0,
                    unchanged: 0,
                    empty: 0,
                    failed: 0,
                    bytes_written: bundles.iter().sum(),
                    bytes_restorable: 0,
                    error: Some(format!(
                        "no manifest: {} bundles of an interrupted (or still running) run",
                        bundles.len()
                    )),
                }
            }
            ManifestState::Unreadable(why) => Row {
                date,
                state: "unreadable",
                ok: 0,
                unchanged: 0,
                empty: 0,
                failed: 0,
                bytes_written: 0,
                bytes_restorable: 0,
                error: Some(why),
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

fn complete_row(m: &Manifest) -> Row {
    let count = |s: Status| m.repositories.iter().filter(|r| r.status == s).count();
    Row {
        date: m.date,
        state: "complete",
        ok: count(Status::Ok),
        unchanged: count(Status::Unchanged),
        empty: count(Status::Empty),
        failed: count(Status::Failed) + count(Status::Unknown),
        bytes_written: m
            .repositories
            .iter()
            .filter(|r| r.status == Status::Ok)
            .filter_map(|r| r.size)
            .sum(),
        bytes_restorable: m.restorable_bytes(),
        error: None,
    }
}

fn size(b: u64) -> String {
    bytesize::ByteSize::b(b).display().iec().to_string()
}

/// The table a person reads: fixed columns, sizes in IEC units, problems spelled out.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<10}  {:<10}  {:>5}  {:>9}  {:>5}  {:>6}  {:>10}  {:>10}\n",
        "DATE", "STATE", "OK", "UNCHANGED", "EMPTY", "FAILED", "WRITTEN", "RESTORES"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<10}  {:<10}  {:>5}  {:>9}  {:>5}  {:>6}  {:>10}  {:>10}",
            r.date.to_string(),
            r.state,
            r.ok,
            r.unchanged,
            r.empty,
            r.failed,
            size(r.bytes_written),
            if r.state == "complete" {
                size(r.bytes_restorable)
            } else {
                "-".into()
            },
        ));
        if let Some(e) = &r.error {
            s.push_str("  ");
            s.push_str(e);
        }
        s.push('\n');
    }
    s
}
