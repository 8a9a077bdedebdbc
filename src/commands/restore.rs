//! `git-offsite restore`: bring repositories back from a snapshot.
//!
//! One repository (`--repo`) into `--to`, optionally pushed to a new remote (`--push-to`; without
//! `--to` the restore lives in a private temp dir that is removed afterwards), or every
//! repository of a snapshot (`--all`) into `DIR/<slug>`. The target is checked before
//! anything is read, so a typo'd `--to` pointing at existing work costs nothing.
//! Progress goes to stderr; `--all` ends with a table on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{env, open_to_read};
use crate::backup::{blocking, make_private_tempdir};
use crate::cli::{LogFormat, RestoreArgs};
use crate::config::{ConfigError, FileConfig, RestoreConfig};
use crate::error::Error;
use crate::layout::OwnerLayout;
use crate::manifest::{RepoEntry, Status};
use crate::restore::{self, RestoreError, Restored, Restorer, push};
use crate::verify::{count, human};

const CLEANUP: &str = "the unfinished restore was removed";

pub(super) async fn run(
    args: RestoreArgs,
    file: &FileConfig,
    _format: LogFormat,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let cfg = RestoreConfig::new(&args, file, &env)?;
    if let Some(to) = &cfg.to {
        restore::check_target(to)?;
    }
    let store = open_to_read(&cfg.read, &cancel).await?;
    let owner = OwnerLayout::new(cfg.read.dest.prefix(), &cfg.read.owner)?;
    let restorer = Restorer {
        store: store.as_ref(),
        owner: &owner,
        cancel: &cancel,
        identity: cfg.identity.as_deref(),
    };
    let result = match &cfg.repo {
        Some(slug) => one(&cfg, &restorer, slug).await,
        None => all(&cfg, &restorer).await,
    };
    match result {
        Err(Error::Restore(RestoreError::Cancelled)) => Err(Error::Stopped { cleanup: CLEANUP }),
        Err(_) | Ok(()) if cancel.is_cancelled() => Err(Error::Stopped { cleanup: CLEANUP }),
        other => other,
    }
}

/// `--repo SLUG`: restore, then push if asked.
async fn one(cfg: &RestoreConfig, restorer: &Restorer<'_>, slug: &str) -> Result<(), Error> {
    let (date, entry) = restore::locate(restorer.store, restorer.owner, slug, cfg.date).await?;
    // Without --to (only --push-to) the repository is needed just long enough to push it.
    let scratch = match &cfg.to {
        Some(_) => None,
        None => Some(
            make_private_tempdir(&cfg.tmp_dir).map_err(|source| Error::Io {
                context: format!("cannot create a temp dir in {}", cfg.tmp_dir.display()),
                source,
            })?,
        ),
    };
    let dir = match (&cfg.to, &scratch) {
        (Some(to), _) => to.clone(),
        (None, Some(t)) => t.path().join(format!("{slug}.git")),
        (None, None) => unreachable!("a scratch dir exists when --to is not given"),
    };
    let bare = cfg.bare || cfg.to.is_none();
    tracing::info!(
        repository = slug,
        date = %date,
        bytes = entry.size.unwrap_or(0),
        "restoring"
    );
    let result = restore_and_push(cfg, restorer, date, &entry, &dir, bare).await;
    if let Some(t) = scratch {
        let _ = blocking(move || drop(t)).await;
    }
    result.map(drop)
}

async fn restore_and_push(
    cfg: &RestoreConfig,
    restorer: &Restorer<'_>,
    date: chrono::NaiveDate,
    entry: &RepoEntry,
    dir: &Path,
    bare: bool,
) -> Result<Restored, Error> {
    let restored = restorer.restore(date, entry, dir, bare).await?;
    if cfg.to.is_some() {
        eprintln!("{}", describe(&entry.slug, &restored));
    }
    let Some(url) = &cfg.push_to else {
        return Ok(restored);
    };
    let (git_dir, url, auth, refs, cancel) = (
        restored.git_dir.clone(),
        url.clone(),
        cfg.push_auth.clone(),
        restored.refs.clone(),
        restorer.cancel.clone(),
    );
    let shown = crate::mirror::display_url(&url);
    tracing::info!(repository = %entry.slug, to = %shown, refs = refs.len(), "pushing");
    let pushed = blocking(move || push::push(&git_dir, &url, &auth, &refs, &cancel))
        .await
        .map_err(Error::Internal)?
        .map_err(RestoreError::from)?;
    eprintln!("pushed {pushed} refs of `{}` to {shown}", entry.slug);
    Ok(restored)
}

fn describe(slug: &str, r: &Restored) -> String {
    let head = match (&r.head, r.checked_out) {
        (Some(h), true) => format!(", {h} checked out"),
        (Some(h), false) => format!(", HEAD {h}"),
        (None, _) => ", no default branch".to_string(),
    };
    format!(
        "restored `{slug}` from {} ({}) into {}: {}{head}",
        r.date,
        human(r.size),
        r.dir.display(),
        count(r.refs.len() as u64, "ref"),
    )
}

/// One row of the `--all` table.
struct Row {
    slug: String,
    result: &'static str,
    detail: String,
}

/// `--all`: every repository of the snapshot into `DIR/<slug>` (`DIR/<slug>.git` bare),
/// `--jobs` at once. A failure does not stop the others.
async fn all(cfg: &RestoreConfig, restorer: &Restorer<'_>) -> Result<(), Error> {
    let Some(to) = &cfg.to else {
        return Err(ConfigError::Other("--all needs --to DIR".into()).into());
    };
    let manifest = restore::snapshot(restorer.store, restorer.owner, cfg.date).await?;
    let date = manifest.date;
    let mut rows = Vec::new();
    let mut work = Vec::new();
    for entry in &manifest.repositories {
        let skip = |why: String| Row {
            slug: entry.slug.clone(),
            result: "skipped",
            detail: why,
        };
        match entry.status {
            Status::Ok | Status::Unchanged => {}
            Status::Empty => {
                rows.push(skip("empty repository: no bundle".into()));
                continue;
            }
            Status::Pruned => {
                rows.push(skip("no bundle: removed by `prune`".into()));
                continue;
            }
            Status::Failed | Status::Unknown => {
                rows.push(skip(format!(
                    "no bundle: it failed in this backup ({}); an earlier --date may have one",
                    entry.error.as_deref().unwrap_or(entry.status.as_str())
                )));
                continue;
            }
        }
        if !restore::is_safe_dir_name(&entry.slug) {
            rows.push(Row {
                slug: entry.slug.clone(),
                result: "FAILED",
                detail: "the slug cannot be used as a directory name".into(),
            });
            continue;
        }
        let name = if cfg.bare {
            format!("{}.git", entry.slug)
        } else {
            entry.slug.clone()
        };
        work.push((entry, to.join(name)));
    }
    for row in &rows {
        eprintln!("skipping `{}`: {}", row.slug, row.detail);
    }
    tokio::fs::create_dir_all(to)
        .await
        .map_err(|source| Error::Io {
            context: format!("cannot create {}", to.display()),
            source,
        })?;
    tracing::info!(date = %date, repositories = work.len(), to = %to.display(), "restoring");
    let restored: Vec<Row> = futures::stream::iter(work)
        .map(|(entry, dir): (&RepoEntry, PathBuf)| async move {
            let (result, detail) = match restorer.restore(date, entry, &dir, cfg.bare).await {
                Ok(r) => {
                    eprintln!("{}", describe(&entry.slug, &r));
                    ("restored", r.dir.display().to_string())
                }
                Err(e) => {
                    tracing::error!(repository = %entry.slug, "restore failed: {e}");
                    ("FAILED", e.to_string())
                }
            };
            Row {
                slug: entry.slug.clone(),
                result,
                detail,
            }
        })
        .buffer_unordered(cfg.jobs)
        .collect()
        .await;
    rows.extend(restored);
    rows.sort_by(|a, b| a.slug.cmp(&b.slug));

    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", table(&rows));
    let _ = out.flush();
    drop(out);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.result == "FAILED")
        .map(|r| r.slug.clone())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Failed {
        what: "could not be restored",
        total: rows.iter().filter(|r| r.result != "skipped").count(),
        failed,
    })
}

fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.slug.chars().count())
        .max()
        .unwrap_or(0)
        .max("REPOSITORY".len());
    let mut s = format!("{:<width$}  {:<8}  DETAIL\n", "REPOSITORY", "RESULT");
    for r in rows {
        s.push_str(&format!(
            "{:<width$}  {:<8}  {}\n",
            r.slug, r.result, r.detail
        ));
    }
    s
}
