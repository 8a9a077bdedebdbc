//! The `prune` scenario: `git-offsite prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12`
//! over 60 daily snapshots of the workspace's repository count, once on a local directory and
//! once on the test S3 server. The snapshots are written straight into the store (small
//! bundles, real manifests): what is measured is reading 60 manifests, planning and deleting
//! some 2,000 objects in DeleteObjects batches, not the backups.

use chrono::NaiveDate;
use futures::StreamExt;
use git_offsite::layout::OwnerLayout;
use git_offsite::manifest::{FORMAT, Manifest, RepoEntry, Status, Summary};
use git_offsite::store::fs::FsStore;
use git_offsite::store::{Key, PutOptions, Store};

use super::Bench;
use super::readback::Step;

pub const PRUNE_WORKSPACE: &str = "bench-prune";
const SNAPSHOTS: u64 = 60;
const POLICY: [&str; 6] = [
    "--keep-daily",
    "7",
    "--keep-weekly",
    "4",
    "--keep-monthly",
    "12",
];
/// Bytes of each generated bundle: prune never reads them.
const BUNDLE_BYTES: usize = 4096;

/// A step's name, its `--dest`, the store it names (for setup and counting) and its prefix.
type Target<'a> = (&'static str, String, Box<dyn Store>, Option<&'a str>);

impl Bench {
    pub async fn prune(&self, run: usize) -> Vec<Step> {
        let tmp = self.work.path().join(format!("tmp-r{run}-prune"));
        std::fs::create_dir_all(&tmp).unwrap();
        let envs = self.base_env(&tmp);
        let local = self.work.path().join(format!("prune-r{run}"));
        let prefix = format!("r{run}/prune");
        let targets: [Target<'_>; 2] = [
            (
                "prune, local directory",
                local.display().to_string(),
                Box::new(FsStore::new(local.clone())),
                None,
            ),
            (
                "prune, S3",
                format!("s3://{}/{prefix}", self.s3.bucket),
                Box::new(self.s3.store()),
                Some(prefix.as_str()),
            ),
        ];
        let mut steps = Vec::new();
        for (i, (name, dest, store, prefix)) in targets.into_iter().enumerate() {
            let owner = OwnerLayout::new(prefix, PRUNE_WORKSPACE).unwrap();
            generate(store.as_ref(), &owner, self.s.repos).await;
            let before = store.list(owner.folder()).await.map_or(0, |l| l.len());
            let mut cmd = vec![self.s.bin.display().to_string()];
            cmd.extend(
                ["prune", "--owner", PRUNE_WORKSPACE, "--dest", &dest]
                    .iter()
                    .chain(&POLICY)
                    .map(|a| a.to_string()),
            );
            let m = self.measure(&format!("r{run}-prune-{i}"), cmd, &envs).await;
            let after = store.list(owner.folder()).await.unwrap_or_default();
            let folders: std::collections::BTreeSet<&str> = after
                .iter()
                .filter_map(|o| o.key.as_str()[owner.folder().len()..].split('/').next())
                .collect();
            steps.push(Step {
                name,
                m,
                bytes: None,
                detail: format!(
                    "{SNAPSHOTS} snapshots × {} repositories: {} date folders kept, {} objects removed",
                    self.s.repos,
                    folders.len(),
                    before - after.len()
                ),
            });
            let left: Vec<Key> = after.into_iter().map(|o| o.key).collect();
            let _ = store.delete_many(&left).await;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&local);
        steps
    }
}

/// 60 complete daily snapshots from 2026-01-01, each with one small bundle per repository.
async fn generate(store: &dyn Store, owner: &OwnerLayout, repos: usize) {
    let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let body = bytes::Bytes::from(vec![7u8; BUNDLE_BYTES]);
    let mut puts = Vec::new();
    for n in 0..SNAPSHOTS {
        let date = first + chrono::Days::new(n);
        let run = owner.run(date);
        let mut entries = Vec::new();
        for r in 0..repos {
            let slug = format!("repo-{r:03}");
            let key = run.bundle(&slug).unwrap();
            entries.push(RepoEntry {
                slug: slug.clone(),
                full_name: format!("{PRUNE_WORKSPACE}/{slug}"),
                status: Status::Ok,
                key: Some(key.to_string()),
                size: Some(BUNDLE_BYTES as u64),
                sha256: None,
                head: Some("refs/heads/main".into()),
                refs: Default::default(),
                error: None,
                since: None,
                duration_ms: 0,
                encryption: None,
            });
            puts.push((key, body.clone()));
        }
        let m = Manifest {
            format: FORMAT,
            tool: "bench".into(),
            provider: "bitbucket".into(),
            owner: PRUNE_WORKSPACE.into(),
            date,
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            summary: Summary::of(&entries),
            repositories: entries,
        };
        puts.push((run.manifest(), m.to_json().into()));
    }
    futures::stream::iter(puts)
        .map(|(k, b)| async move {
            store
                .put(&k, b, &PutOptions::default())
                .await
                .unwrap_or_else(|e| panic!("bench setup: put {k}: {e}"))
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}
