//! A same-day rerun replaces bundles that today's manifest already describes (same key, the
//! old SHA-256). The new manifest is written only at the end, so a rerun interrupted in
//! between would leave a manifest whose entries name bundles it has replaced: `verify` fails
//! them, and worse, `restore` trusts a checksum that no longer holds.
//!
//! The fix chosen: before the first byte goes to a key that the stored manifest lists, that
//! entry is dropped from the stored manifest, and the manifest is rewritten. So at every
//! moment every entry of the stored manifest describes the object at its key; an interrupted
//! rerun leaves a manifest without the repositories it was replacing (their new bundles sit
//! in the folder, unlisted, and the next run backs them up again), and a completed rerun
//! writes the full manifest as before. Keys stay `<slug>.bundle`, so readers (`verify`,
//! `restore`, `snapshots`, incremental history, references from later days) see nothing new.
//! A first run of the day has no stored manifest and writes none before the end.

use super::Pipeline;
use super::history::History;
use crate::manifest::Summary;
use crate::store::{Key, PutOptions};

impl Pipeline {
    /// Call before anything is written to `key`: drops the stored manifest's entry for it, if
    /// any, and rewrites the manifest. An error means the key must not be written.
    pub(super) async fn before_overwrite(
        &self,
        history: &History,
        key: &Key,
    ) -> Result<(), String> {
        // One at a time: each rewrite starts from the previous one.
        let mut stored = history.stored_today.lock().await;
        let Some(manifest) = stored.as_mut() else {
            return Ok(());
        };
        let before = manifest.repositories.len();
        manifest
            .repositories
            .retain(|e| e.key.as_deref() != Some(key.as_str()));
        if manifest.repositories.len() == before {
            return Ok(());
        }
        manifest.summary = Summary::of(&manifest.repositories);
        tracing::debug!(key = %key, "dropping the entry about to be replaced from today's manifest");
        self.store
            .put(
                &self.layout.manifest(),
                manifest.to_json().into(),
                &PutOptions {
                    content_type: Some("application/json".into()),
                    ..PutOptions::default()
                },
            )
            .await
            .map_err(|e| format!("cannot update today's manifest before replacing {key}: {e}"))
    }
}
