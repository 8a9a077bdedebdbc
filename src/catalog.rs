//! What a destination holds for one owner: its date folders and their manifests.
//!
//! Every reader goes through here (`snapshots`, `verify`, `restore`, and `backup` looking for
//! the last run to compare against), so "which snapshot is the latest" and "what counts as
//! complete" are decided once: a date folder is complete when its manifest is there and
//! reads; one with objects but no manifest is an interrupted run; one whose manifest does
//! not read is reported as such and never trusted.

use chrono::NaiveDate;

use crate::layout::OwnerLayout;
use crate::manifest::{Manifest, RepoEntry};
use crate::store::{Store, StoreError};

/// What one date folder's manifest says.
#[derive(Debug, Clone)]
pub enum ManifestState {
    Complete(Box<Manifest>),
    /// No manifest: the run was interrupted (or is still going on).
    Missing,
    /// A manifest that cannot be used: why.
    Unreadable(String),
}

impl ManifestState {
    pub fn manifest(&self) -> Option<&Manifest> {
        match self {
            ManifestState::Complete(m) => Some(m),
            _ => None,
        }
    }
}

/// The owner's date folders, oldest first.
pub async fn dates(store: &dyn Store, owner: &OwnerLayout) -> Result<Vec<NaiveDate>, StoreError> {
    let listing = store.list_folder(owner.folder()).await?;
    let mut dates: Vec<NaiveDate> = listing
        .folders
        .iter()
        .filter_map(|f| owner.date_of_folder(f))
        .collect();
    dates.sort();
    dates.dedup();
    Ok(dates)
}

/// Reads the manifest of one date folder. Store failures (unreachable, access denied) are
/// errors; a missing or unreadable manifest is a state.
pub async fn manifest(
    store: &dyn Store,
    owner: &OwnerLayout,
    date: NaiveDate,
) -> Result<ManifestState, StoreError> {
    let key = owner.run(date).manifest();
    let bytes = match store.get(&key).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => return Ok(ManifestState::Missing),
        Err(e) => return Err(e),
    };
    Ok(
        match Manifest::from_json(&bytes, key.as_str(), owner.owner(), date) {
            Ok(m) => ManifestState::Complete(Box::new(m)),
            Err(e) => ManifestState::Unreadable(e.to_string()),
        },
    )
}

/// The newest complete snapshot, if any (unreadable manifests are skipped with a warning).
pub async fn latest_complete(
    store: &dyn Store,
    owner: &OwnerLayout,
) -> Result<Option<Manifest>, StoreError> {
    for date in dates(store, owner).await?.into_iter().rev() {
        match manifest(store, owner, date).await? {
            ManifestState::Complete(m) => return Ok(Some(*m)),
            ManifestState::Missing => {}
            ManifestState::Unreadable(why) => {
                tracing::warn!(date = %date, "skipping a snapshot: {why}")
            }
        }
    }
    Ok(None)
}

/// The newest complete snapshot holding a restorable bundle of `slug` (`ok` or `unchanged`),
/// with that entry.
pub async fn latest_with(
    store: &dyn Store,
    owner: &OwnerLayout,
    slug: &str,
) -> Result<Option<(Manifest, RepoEntry)>, StoreError> {
    for date in dates(store, owner).await?.into_iter().rev() {
        match manifest(store, owner, date).await? {
            ManifestState::Complete(m) => {
                if let Some(e) = m.entry(slug).filter(|e| e.status.has_bundle()) {
                    let e = e.clone();
                    return Ok(Some((*m, e)));
                }
            }
            ManifestState::Missing => {}
            ManifestState::Unreadable(why) => {
                tracing::warn!(date = %date, "skipping a snapshot: {why}")
            }
        }
    }
    Ok(None)
}
