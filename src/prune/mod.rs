//! Retention: remove the date folders a keep policy does not keep ([`plan`] decides, this
//! module reads the destination and carries the plan out).
//!
//! Order is what keeps every kept snapshot intact when a delete fails part-way: all bundles
//! first (oldest folder first, batched by the store), then the manifests of folders rewritten
//! to list what they still hold, then the manifests of folders that are gone. A manifest is
//! removed only when every other object of its folder is; if some could not be (or the
//! manifest itself cannot be removed), the manifest is rewritten instead, so the folder stays
//! a truthful complete snapshot and the next prune tries again. Nothing a kept manifest lists is ever in the delete list.
//!
//! An object the store refuses to delete because it is under retention (Object Lock) is
//! skipped with one line and the rest goes on; any other failure makes the run fail after it
//! has done what it can.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};

use self::plan::{Action, Folder, FolderPlan, PlanOptions, Vanished};
use crate::catalog;
use crate::layout::OwnerLayout;
use crate::manifest::{Manifest, Status, Summary};
use crate::retention::Policy;
use crate::store::{DeleteFailure, Key, ObjectMeta, PutOptions, Store, StoreError};

/// Manifests read at once.
const READ_CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub policy: Policy,
    /// UTC date the run counts from (today's folder is never touched).
    pub today: NaiveDate,
    pub dry_run: bool,
    pub forget_vanished_after: Option<u64>,
}

/// One row of the table: a date folder and what happened to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FolderRow {
    pub date: NaiveDate,
    pub state: &'static str,
    pub action: Action,
    pub reasons: Vec<String>,
    pub objects_removed: usize,
    pub bytes_freed: u64,
}

/// An object that was not removed, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotRemoved {
    pub key: String,
    pub error: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub policy: String,
    pub folders: Vec<FolderRow>,
    pub vanished: Vec<Vanished>,
    /// Under retention (Object Lock): skipped, not a failure.
    pub retained: Vec<NotRemoved>,
    /// Anything else that could not be removed or rewritten: the run fails.
    pub failed: Vec<NotRemoved>,
}

impl PruneReport {
    pub fn bytes_freed(&self) -> u64 {
        self.folders.iter().map(|f| f.bytes_freed).sum()
    }

    pub fn count(&self, action: Action) -> usize {
        self.folders.iter().filter(|f| f.action == action).count()
    }
}

/// Reads what `owner` has in `store`, plans, and (unless a dry run) removes.
pub async fn prune(
    store: &dyn Store,
    owner: &OwnerLayout,
    opts: &PruneOptions,
) -> Result<PruneReport, StoreError> {
    let folders = read(store, owner).await?;
    let plan = plan::plan(
        &folders,
        &PlanOptions {
            owner,
            policy: &opts.policy,
            today: opts.today,
            forget_vanished_after: opts.forget_vanished_after,
        },
    );
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        policy: opts.policy.describe(),
        folders: Vec::new(),
        vanished: plan.vanished.clone(),
        retained: Vec::new(),
        failed: Vec::new(),
    };
    if opts.dry_run {
        report.folders = plan
            .folders
            .iter()
            .map(|f| {
                let gone = f.remove.iter().chain(&f.remove_manifest);
                row(f, gone.clone().count(), gone.map(|o| o.size).sum())
            })
            .collect();
        return Ok(report);
    }
    let mut failures: BTreeMap<Key, StoreError> = BTreeMap::new();

    // 1. Every object but the manifests.
    let bundles: Vec<&ObjectMeta> = plan.folders.iter().flat_map(|f| &f.remove).collect();
    delete(store, &bundles, &mut failures).await;
    let deleted: BTreeSet<&str> = bundles
        .iter()
        .filter(|o| !failures.contains_key(&o.key))
        .map(|o| o.key.as_str())
        .collect();

    // 2. Folders that keep something, or could not be emptied: the manifest is rewritten to
    //    say what is left. The others' manifests go last.
    let mut manifests: Vec<&ObjectMeta> = Vec::new();
    for f in &plan.folders {
        let Some(m) = &f.manifest else { continue };
        let emptied = f.remove.iter().all(|o| !failures.contains_key(&o.key));
        match &f.remove_manifest {
            Some(meta) if emptied => manifests.push(meta),
            _ => {
                if let Err(e) = rewrite(store, owner, f.date, m, &f.stay, &deleted).await {
                    report.failed.push(e);
                }
            }
        }
    }

    // 3. Manifests of folders now empty. One that cannot be removed is rewritten instead,
    //    so it does not go on listing bundles that are gone.
    delete(store, &manifests, &mut failures).await;
    for f in &plan.folders {
        if let (Some(m), Some(meta)) = (&f.manifest, &f.remove_manifest)
            && failures.contains_key(&meta.key)
            && let Err(e) = rewrite(store, owner, f.date, m, &f.stay, &deleted).await
        {
            report.failed.push(e);
        }
    }

    for f in &plan.folders {
        let all = || f.remove.iter().chain(&f.remove_manifest);
        let gone: Vec<&ObjectMeta> = all().filter(|o| !failures.contains_key(&o.key)).collect();
        let mut r = row(f, gone.len(), gone.iter().map(|o| o.size).sum());
        if all().any(|o| failures.contains_key(&o.key)) {
            r.reasons.push("not every object could be removed".into());
        }
        report.folders.push(r);
    }
    for (key, error) in failures {
        let nr = NotRemoved {
            key: key.to_string(),
            error: error.to_string(),
        };
        match error {
            StoreError::Retained { .. } => report.retained.push(nr),
            _ => report.failed.push(nr),
        }
    }
    Ok(report)
}

fn row(f: &FolderPlan, objects_removed: usize, bytes_freed: u64) -> FolderRow {
    FolderRow {
        date: f.date,
        state: f.state,
        action: f.action,
        reasons: f.reasons.clone(),
        objects_removed,
        bytes_freed,
    }
}

/// Every date folder of `owner` with its objects and manifest, oldest first.
async fn read(store: &dyn Store, owner: &OwnerLayout) -> Result<Vec<Folder>, StoreError> {
    let mut by_date: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
    for o in store.list(owner.folder()).await? {
        let rest = &o.key.as_str()[owner.folder().len()..];
        let Some((date, _)) = rest.split_once('/') else {
            continue;
        };
        if let Some(date) = owner.date_of_folder(&format!("{}{date}/", owner.folder())) {
            by_date.entry(date).or_default().push(o);
        }
    }
    futures::stream::iter(by_date)
        .map(|(date, objects)| async move {
            let has_manifest = objects.iter().any(|o| o.key == owner.run(date).manifest());
            let manifest = if has_manifest {
                catalog::manifest(store, owner, date).await?
            } else {
                catalog::ManifestState::Missing
            };
            Ok::<_, StoreError>(Folder {
                date,
                objects,
                manifest,
            })
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// Deletes `objects` in one batched call; what could not be removed lands in `failures`.
async fn delete(
    store: &dyn Store,
    objects: &[&ObjectMeta],
    failures: &mut BTreeMap<Key, StoreError>,
) {
    if objects.is_empty() {
        return;
    }
    let keys: Vec<Key> = objects.iter().map(|o| o.key.clone()).collect();
    match store.delete_many(&keys).await {
        Ok(refused) => {
            for DeleteFailure { key, error } in refused {
                failures.insert(key, error);
            }
        }
        // Not one request went through: each key failed the same way.
        Err(e) => {
            let message = e.to_string();
            for key in keys {
                failures.insert(
                    key.clone(),
                    StoreError::Request {
                        op: "delete",
                        key: key.to_string(),
                        message: message.clone(),
                    },
                );
            }
        }
    }
}

/// Rewrites the manifest of a removed folder: entries in `stay`, and any whose bundle is
/// still there, as they were; entries whose bundle this run removed as `pruned`.
async fn rewrite(
    store: &dyn Store,
    owner: &OwnerLayout,
    date: NaiveDate,
    manifest: &Manifest,
    stay: &BTreeSet<String>,
    deleted: &BTreeSet<&str>,
) -> Result<(), NotRemoved> {
    let mut m = manifest.clone();
    let mut changed = false;
    for e in &mut m.repositories {
        let gone = e.key.as_deref().is_some_and(|k| deleted.contains(k));
        if e.status.has_bundle() && gone && !stay.contains(&e.slug) {
            e.status = Status::Pruned;
            e.key = None;
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    m.summary = Summary::of(&m.repositories);
    let key = owner.run(date).manifest();
    let opts = PutOptions {
        content_type: Some("application/json".into()),
        ..PutOptions::default()
    };
    store
        .put(&key, m.to_json().into(), &opts)
        .await
        .map_err(|e| NotRemoved {
            key: key.to_string(),
            error: format!("rewriting the manifest: {e}"),
        })
}
