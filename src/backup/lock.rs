//! The run lock: one backup at a time per owner and date folder, so a CronJob overlap or a
//! manual run beside the scheduled one cannot interleave uploads and manifests.
//!
//! The lock is a small JSON object at [`Layout::lock`] (host, pid, run id, started and
//! refreshed times; nothing secret), created with [`Store::put_if_absent`] (S3
//! `If-None-Match: *`, a no-replace rename in a directory), so of two runs starting together
//! exactly one gets it. The holder rewrites it every [`REFRESH_EVERY`] with
//! [`Store::put_if_version`] (compare-and-swap on the version it wrote last): if that fails,
//! someone took the lock over, and the run stops at once ([`LockError::Lost`]).
//!
//! A lock not refreshed for [`STALE_AFTER`] belongs to a run that was killed (SIGKILL, OOM, a
//! node lost): the next run takes it over, again by compare-and-swap, so of several runs
//! finding it stale one wins. `--force` takes it over at once, for an operator who knows the
//! other run is dead. The lock is released (deleted) at the end of a run, after a failure and
//! after SIGINT/SIGTERM; only a killed process leaves it behind, and then it goes stale.
//!
//! Stores that ignore `If-None-Match` silently overwrite (NOTES §10: older Garage, unknown
//! others). A probe at acquisition writes a unique probe key twice; if the second write is
//! not refused, the lock falls back to read-then-write and says so in a warning: a lock that
//! almost always works beats refusing to back up to such a store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::layout::Layout;
use crate::store::{Key, PutOptions, Store, StoreError, Version, Versioned};

/// How often the holder rewrites its lock.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// A lock not refreshed for this long is a killed run's and is taken over: ten missed
/// refreshes, so a slow store or a paused node does not lose a live run its lock.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// The lock's timing; [`Timing::DEFAULT`] outside unit tests.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub refresh_every: Duration,
    pub stale_after: Duration,
}

impl Timing {
    pub const DEFAULT: Timing = Timing {
        refresh_every: REFRESH_EVERY,
        stale_after: STALE_AFTER,
    };
}

/// What the lock object says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub refreshed_at: DateTime<Utc>,
}

impl Holder {
    fn describe(&self) -> String {
        format!(
            "{} (pid {}, run {}, started {})",
            self.host,
            self.pid,
            self.run_id,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    #[error(
        "another run holds the lock {location}: {holder}, last refreshed {}; it counts as stale \
         from {} (not refreshed for {} min) and is then taken over; pass --force to take it over \
         now if that run is dead",
        fmt_time(refreshed_at),
        fmt_time(stale_at),
        stale_minutes
    )]
    Held {
        location: String,
        holder: String,
        refreshed_at: DateTime<Utc>,
        stale_at: DateTime<Utc>,
        stale_minutes: u64,
    },
    #[error(
        "the lock {location} cannot be read ({why}); if no other run is going on, pass --force \
         to replace it"
    )]
    Unreadable { location: String, why: String },
    #[error(
        "this run lost its lock {location} to {holder} (it was not refreshed for too long); \
         stopped so the two runs do not interleave"
    )]
    Lost { location: String, holder: String },
    #[error("the lock {location} changed under us {attempts} times; try again")]
    Contended { location: String, attempts: usize },
}

fn fmt_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A held lock. [`RunLock::release`] it; dropped without that (a panic), its refresh stops
/// and it goes stale.
pub struct RunLock {
    store: Arc<dyn Store>,
    key: Key,
    location: String,
    state: Arc<tokio::sync::Mutex<Version>>,
    /// Who took the lock over, once someone has.
    lost: Arc<Mutex<Option<String>>>,
    /// Ends the refresher after its current write.
    stop: CancellationToken,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Who we are, for the lock's content.
fn me(now: DateTime<Utc>) -> Holder {
    use std::hash::BuildHasher;
    let seed = (now, std::process::id());
    let run_id = format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new().hash_one(seed)
    );
    Holder {
        host: hostname(),
        pid: std::process::id(),
        run_id,
        started_at: now,
        refreshed_at: now,
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

fn json(h: &Holder) -> Bytes {
    serde_json::to_vec_pretty(h)
        .expect("a holder serialises")
        .into()
}

fn opts() -> PutOptions {
    PutOptions {
        content_type: Some("application/json".into()),
        ..PutOptions::default()
    }
}

impl RunLock {
    /// Takes the lock of `layout`'s date folder, or says who holds it. `force` takes over a
    /// held lock at once. `on_lost` is cancelled if the lock is taken over while we run.
    pub async fn acquire(
        store: Arc<dyn Store>,
        layout: &Layout,
        force: bool,
        timing: Timing,
        on_lost: CancellationToken,
    ) -> Result<RunLock, Error> {
        let key = layout.lock();
        let location = format!("{}/{key}", store.location().trim_end_matches('/'));
        let atomic = probe(store.as_ref(), &key).await?;
        let ours = me(Utc::now());
        let stale = chrono::Duration::from_std(timing.stale_after).unwrap_or(chrono::Duration::MAX);
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            // A store that ignores If-None-Match would overwrite: look first.
            let existing = if atomic {
                None
            } else {
                store.get_versioned(&key).await?
            };
            let existing = match existing {
                Some(e) => e,
                None => match store.put_if_absent(&key, json(&ours), &opts()).await? {
                    Some(version) => {
                        return Ok(Self::held(
                            store, key, location, ours, version, timing, on_lost,
                        ));
                    }
                    None => match store.get_versioned(&key).await? {
                        Some(e) => e,
                        None => continue, // released in between: try again
                    },
                },
            };
            let Versioned { data, version } = existing;
            let theirs: Option<Holder> = serde_json::from_slice(&data).ok();
            let now = Utc::now();
            let is_stale = theirs
                .as_ref()
                .is_some_and(|h| now - h.refreshed_at >= stale);
            if !(force || is_stale) {
                return Err(match theirs {
                    Some(h) => LockError::Held {
                        location,
                        holder: h.describe(),
                        refreshed_at: h.refreshed_at,
                        stale_at: h.refreshed_at + stale,
                        stale_minutes: timing.stale_after.as_secs().div_ceil(60),
                    },
                    None => LockError::Unreadable {
                        location,
                        why: "not a git-offsite lock".into(),
                    },
                }
                .into());
            }
            let taken = store
                .put_if_version(&key, json(&ours), &opts(), &version)
                .await?;
            if let Some(version) = taken {
                let whose = theirs.map_or_else(
                    || "an unreadable lock".into(),
                    |h| {
                        format!(
                            "{}, last refreshed {}",
                            h.describe(),
                            fmt_time(&h.refreshed_at)
                        )
                    },
                );
                let why = if force { "--force" } else { "stale" };
                tracing::warn!(lock = %location, "took over the lock of {whose} ({why})");
                return Ok(Self::held(
                    store, key, location, ours, version, timing, on_lost,
                ));
            }
        }
        Err(LockError::Contended {
            location,
            attempts: ATTEMPTS,
        }
        .into())
    }

    fn held(
        store: Arc<dyn Store>,
        key: Key,
        location: String,
        ours: Holder,
        version: Version,
        timing: Timing,
        on_lost: CancellationToken,
    ) -> RunLock {
        tracing::debug!(lock = %location, run_id = %ours.run_id, "lock taken");
        let state = Arc::new(tokio::sync::Mutex::new(version));
        let lost = Arc::new(Mutex::new(None));
        let stop = CancellationToken::new();
        let refresher = tokio::spawn(refresh(
            Refresh {
                store: store.clone(),
                key: key.clone(),
                location: location.clone(),
                state: state.clone(),
                lost: lost.clone(),
                every: timing.refresh_every,
                on_lost,
                stop: stop.clone(),
            },
            ours,
        ));
        RunLock {
            store,
            key,
            location,
            state,
            lost,
            stop,
            refresher: Some(refresher),
        }
    }

    /// Whether another run took the lock over while we ran, and who.
    pub fn lost(&self) -> Option<LockError> {
        let holder = self.lost.lock().expect("not poisoned").clone()?;
        Some(LockError::Lost {
            location: self.location.clone(),
            holder,
        })
    }

    /// Stops refreshing and deletes the lock, if it is still ours. A failure is a warning:
    /// the lock then goes stale.
    pub async fn release(mut self) {
        self.stop.cancel();
        // The refresher ends after a write in flight, so the version below is the last one.
        if let Some(r) = self.refresher.take() {
            let _ = r.await;
        }
        let version = self.state.lock().await.clone();
        if self.lost().is_some() {
            return;
        }
        match self.store.get_versioned(&self.key).await {
            Ok(Some(current)) if current.version == version => {
                if let Err(e) = self.store.delete(&self.key).await {
                    tracing::warn!(lock = %self.location, error = %e, "cannot release the lock; it goes stale");
                }
            }
            Ok(_) => {
                tracing::warn!(lock = %self.location, "the lock is no longer ours; left alone")
            }
            Err(e) => {
                tracing::warn!(lock = %self.location, error = %e, "cannot release the lock; it goes stale")
            }
        }
    }
}

/// What the refresher task works with.
struct Refresh {
    store: Arc<dyn Store>,
    key: Key,
    location: String,
    state: Arc<tokio::sync::Mutex<Version>>,
    lost: Arc<Mutex<Option<String>>>,
    every: Duration,
    on_lost: CancellationToken,
    stop: CancellationToken,
}

async fn refresh(r: Refresh, mut ours: Holder) {
    let Refresh {
        store,
        key,
        location,
        state,
        lost,
        every,
        on_lost,
        stop,
    } = r;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let mut version = state.lock().await;
        ours.refreshed_at = Utc::now();
        match store
            .put_if_version(&key, json(&ours), &opts(), &version)
            .await
        {
            Ok(Some(v)) => *version = v,
            Ok(None) => {
                let holder = match store.get_versioned(&key).await {
                    Ok(Some(v)) => serde_json::from_slice::<Holder>(&v.data)
                        .map_or_else(|_| "an unreadable lock".into(), |h| h.describe()),
                    _ => "nobody (it was deleted)".into(),
                };
                tracing::error!(lock = %location, holder = %holder, "lost the lock; stopping");
                *lost.lock().expect("not poisoned") = Some(holder);
                on_lost.cancel();
                return;
            }
            // A store hiccup: the lock has minutes before it goes stale; try at the next tick.
            Err(e) => tracing::warn!(lock = %location, error = %e, "cannot refresh the lock"),
        }
    }
}

/// Whether the store refuses a second create-only write of a key (see the module doc). The
/// probe key is unique to this run, beside the lock, and removed again.
async fn probe(store: &dyn Store, lock: &Key) -> Result<bool, StoreError> {
    let key = Key::new(format!("{lock}.probe-{}", me(Utc::now()).run_id))?;
    let body = Bytes::from_static(b"{}");
    store.put_if_absent(&key, body.clone(), &opts()).await?;
    let second = store.put_if_absent(&key, body, &opts()).await;
    let _ = store.delete(&key).await;
    let atomic = second?.is_none();
    if !atomic {
        tracing::warn!(
            store = %store.location(),
            "the store ignores conditional writes (If-None-Match); the run lock is checked before \
             it is written, which two runs starting in the same second can still both pass"
        );
    }
    Ok(atomic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::FsStore;
    use chrono::NaiveDate;

    fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().to_path_buf()));
        let layout = Layout::new(
            Some("git"),
            "acme",
            NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        )
        .unwrap();
        (dir, store, layout)
    }

    async fn holder(store: &dyn Store, layout: &Layout) -> Option<Holder> {
        let v = store.get_versioned(&layout.lock()).await.unwrap()?;
        Some(serde_json::from_slice(&v.data).unwrap())
    }

    #[tokio::test]
    async fn the_holder_refreshes_and_a_takeover_stops_it() {
        let (_dir, store, layout) = setup();
        let timing = Timing {
            refresh_every: Duration::from_millis(50),
            stale_after: Duration::from_secs(600),
        };
        let cancel = CancellationToken::new();
        let lock = RunLock::acquire(store.clone(), &layout, false, timing, cancel.clone())
            .await
            .unwrap();
        let first = holder(store.as_ref(), &layout).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = holder(store.as_ref(), &layout).await.unwrap();
        assert_eq!(later.run_id, first.run_id);
        assert!(later.refreshed_at > first.refreshed_at, "refreshed");
        assert!(!cancel.is_cancelled());

        // Another run forces its way in: ours notices at its next refresh and stops.
        let other = RunLock::acquire(
            store.clone(),
            &layout,
            true,
            Timing::DEFAULT,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), cancel.cancelled())
            .await
            .expect("the run that lost its lock is stopped");
        assert!(lock.lost().is_some());
        lock.release().await;
        let now = holder(store.as_ref(), &layout)
            .await
            .expect("not released by the loser");
        assert_ne!(now.run_id, first.run_id);
        other.release().await;
        assert!(holder(store.as_ref(), &layout).await.is_none(), "released");
    }
}
