//! Progress bars on a terminal: one overall bar and one line per repository in flight.
//!
//! Why it is built the way it is:
//! - The [`Observer`] hooks are called from the pipeline's tasks and from the `spawn_blocking`
//!   threads that run libgit2 (`received` fires for every chunk a fetch reads). So the hooks
//!   only update counters behind a short, uncontended mutex: no drawing, no I/O, no
//!   allocation on the hot paths. A dedicated render thread copies that state ten times a
//!   second into `indicatif` bars; a stalled terminal (Ctrl-S, a slow SSH link) can only stall
//!   that thread, never a fetch or an upload.
//! - Bars are drawn only when stderr is a terminal ([`Progress::new_if_terminal`]). In CI and
//!   Kubernetes the log lines are the record, and cursor movements would garble them.
//! - Log lines and bars share stderr. [`LogWriter`] is the `tracing-subscriber` writer that
//!   prints each log line through [`MultiProgress::suspend`], so a line lands above the bars
//!   instead of tearing through them. There is one stderr per process, so the bars that own it
//!   are registered in a process-wide slot: logging can be set up before (and independently of)
//!   the progress display, and falls back to plain stderr when no bars are shown.
//! - A repository that fails leaves a persistent line above the bars (the bars themselves
//!   vanish when a repository ends), so a failure stays on screen after the run.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressDrawTarget};

mod log;
mod render;

pub use log::{LogLine, LogWriter};
use render::Renderer;

use crate::backup::{Observer, Phase};
use crate::manifest::{RepoEntry, Status};
use crate::provider::RemoteRepo;

/// How often the render thread copies the state into the bars.
const TICK: Duration = Duration::from_millis(100);
/// Throughput is averaged over this window: short enough to react, long enough not to jitter.
const RATE_WINDOW: Duration = Duration::from_secs(5);

const LISTING: &str = "{spinner:.green} [{elapsed_precise}] {msg}";
const OVERALL: &str =
    "{spinner:.green} [{elapsed_precise}] [{bar:30.cyan/blue}] {pos}/{len} repositories  {msg}";

/// The bars that currently own stderr, if any, with the id of the [`Progress`] that registered
/// them; read by [`LogWriter`] for every log line.
static ACTIVE: RwLock<Option<(u64, MultiProgress)>> = RwLock::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The progress display: an [`Observer`] for [`crate::backup::Pipeline`].
///
/// Share it as `Arc<Progress>` (one clone as the pipeline's observer) and call
/// [`Progress::finish`] before printing the closing summary: the pipeline keeps its clone
/// alive, so `Drop` alone would clear the bars too late.
pub struct Progress {
    state: Arc<Mutex<State>>,
    renderer: Arc<Mutex<Renderer>>,
    multi: MultiProgress,
    thread: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    /// Set when this display registered itself as the log writer's target.
    registered: Option<u64>,
}

/// What the hooks have reported so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Repositories listed (summed over every `listed` call: one display can span owners).
    pub total: u64,
    pub ok: u64,
    /// Not cloned: an earlier run's bundle serves again.
    pub unchanged: u64,
    pub empty: u64,
    pub failed: u64,
    /// Bytes sent to the destination, retries included.
    pub bytes_uploaded: u64,
    /// Repositories started and not yet finished.
    pub in_flight: usize,
}

impl Counts {
    pub fn done(&self) -> u64 {
        self.ok + self.unchanged + self.empty + self.failed
    }
}

#[derive(Debug, Default)]
struct State {
    counts: Counts,
    listed: bool,
    /// `slug` → (`full_name`, size reported by the service).
    names: HashMap<String, (String, Option<u64>)>,
    in_flight: BTreeMap<String, RepoState>,
    /// Lines for failed repositories, not yet printed.
    failures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RepoState {
    name: String,
    phase: Phase,
    received: u64,
    sent: u64,
    /// Exact size of the bundle being uploaded, once known ([`Progress::set_upload_size`]).
    size: Option<u64>,
    /// The service's own figure for the repository, a stand-in until the bundle size is known.
    estimate: Option<u64>,
}

impl State {
    fn repo(&mut self, slug: &str) -> Option<&mut RepoState> {
        self.in_flight.get_mut(slug)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later hook call into a panic too.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Progress {
    /// Bars on stderr when stderr is a terminal (and `TERM` is not `dumb`); `None` otherwise,
    /// in which case the caller uses [`crate::backup::Quiet`] and logs carry the story.
    /// The bars register themselves as [`LogWriter`]'s target until [`Progress::finish`].
    pub fn new_if_terminal() -> Option<Progress> {
        if !std::io::stderr().is_terminal() || std::env::var_os("TERM").is_some_and(|t| t == "dumb")
        {
            return None;
        }
        let mut p = Self::build(ProgressDrawTarget::stderr());
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        *ACTIVE.write().unwrap_or_else(PoisonError::into_inner) = Some((id, p.multi.clone()));
        p.registered = Some(id);
        Some(p)
    }

    /// A display drawing to `target`, e.g. [`ProgressDrawTarget::hidden`] in tests. It does not
    /// register itself with [`LogWriter`].
    pub fn with_draw_target(target: ProgressDrawTarget) -> Progress {
        Self::build(target)
    }

    fn build(target: ProgressDrawTarget) -> Progress {
        let multi = MultiProgress::with_draw_target(target);
        let state = Arc::new(Mutex::new(State::default()));
        let renderer = Arc::new(Mutex::new(Renderer::new(multi.clone())));
        let (tx, rx) = mpsc::channel::<()>();
        let thread = {
            let (state, renderer) = (state.clone(), renderer.clone());
            std::thread::Builder::new()
                .name("git-offsite-progress".into())
                .spawn(move || {
                    loop {
                        match rx.recv_timeout(TICK) {
                            Err(RecvTimeoutError::Timeout) => {
                                lock(&renderer).sync(&state, Instant::now())
                            }
                            // `finish` dropped the sender (or sent a stop).
                            _ => return,
                        }
                    }
                })
                .ok()
        };
        Progress {
            state,
            renderer,
            multi,
            thread: Mutex::new(thread.map(|h| (tx, h))),
            registered: None,
        }
    }

    /// The [`MultiProgress`] the bars are drawn in, for a caller that wants to print through it.
    pub fn multi(&self) -> &MultiProgress {
        &self.multi
    }

    /// What the hooks have reported so far.
    pub fn counts(&self) -> Counts {
        let s = lock(&self.state);
        Counts {
            in_flight: s.in_flight.len(),
            ..s.counts.clone()
        }
    }

    /// The exact size of the bundle `slug` is uploading, so its line can show `sent / size`.
    /// Until then the line uses the size the service reported for the repository, marked `~`.
    pub fn set_upload_size(&self, slug: &str, size: u64) {
        if let Some(r) = lock(&self.state).repo(slug) {
            r.size = Some(size);
        }
    }

    /// Stops the render thread, prints the failures not yet shown and removes the bars, so the
    /// summary that follows starts on a clean line. Idempotent; also run on drop.
    pub fn finish(&self) {
        if let Some((tx, handle)) = lock(&self.thread).take() {
            drop(tx);
            let _ = handle.join();
        }
        let mut r = lock(&self.renderer);
        if !r.closed {
            r.sync(&self.state, Instant::now());
            r.close();
        }
        drop(r);
        if let Some(id) = self.registered {
            let mut active = ACTIVE.write().unwrap_or_else(PoisonError::into_inner);
            // Only unregister ourselves, not a newer display.
            if active.as_ref().is_some_and(|(a, _)| *a == id) {
                *active = None;
            }
        }
    }

    #[cfg(test)]
    fn render_now(&self) {
        lock(&self.renderer).sync(&self.state, Instant::now());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl Observer for Progress {
    fn bundled(&self, slug: &str, size: u64) {
        self.set_upload_size(slug, size);
    }

    fn listed(&self, repos: &[RemoteRepo]) {
        let mut s = lock(&self.state);
        s.listed = true;
        s.counts.total += repos.len() as u64;
        for r in repos {
            s.names
                .insert(r.slug.clone(), (r.full_name.clone(), r.size));
        }
    }

    fn phase(&self, slug: &str, phase: Phase) {
        let mut s = lock(&self.state);
        if let Some(r) = s.repo(slug) {
            r.phase = phase;
            return;
        }
        let (name, estimate) = s
            .names
            .get(slug)
            .cloned()
            .unwrap_or_else(|| (slug.to_string(), None));
        s.in_flight.insert(
            slug.to_string(),
            RepoState {
                name,
                phase,
                received: 0,
                sent: 0,
                size: None,
                estimate,
            },
        );
    }

    fn received(&self, slug: &str, total: u64) {
        if let Some(r) = lock(&self.state).repo(slug) {
            r.received = total;
        }
    }

    fn uploaded(&self, slug: &str, delta: u64) {
        let mut s = lock(&self.state);
        s.counts.bytes_uploaded += delta;
        if let Some(r) = s.repo(slug) {
            r.sent += delta;
        }
    }

    fn finished(&self, entry: &RepoEntry) {
        let mut s = lock(&self.state);
        s.in_flight.remove(&entry.slug);
        match entry.status {
            Status::Ok => s.counts.ok += 1,
            Status::Unchanged => s.counts.unchanged += 1,
            Status::Empty => s.counts.empty += 1,
            Status::Failed | Status::Unknown | Status::Pruned => {
                s.counts.failed += 1;
                let line = format!(
                    "✗ {}: {}",
                    entry.full_name,
                    entry.error.as_deref().unwrap_or("failed")
                );
                s.failures.push(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn repo(slug: &str, size: Option<u64>) -> RemoteRepo {
        RemoteRepo {
            slug: slug.into(),
            full_name: format!("acme/{slug}"),
            clone_url: url::Url::parse(&format!("https://example.invalid/acme/{slug}.git"))
                .unwrap(),
            size,
            updated_on: None,
            default_branch: Some("main".into()),
            is_private: Some(true),
        }
    }

    fn entry(slug: &str, status: Status, size: Option<u64>, error: Option<&str>) -> RepoEntry {
        RepoEntry {
            slug: slug.into(),
            full_name: format!("acme/{slug}"),
            status,
            key: None,
            size,
            sha256: None,
            head: None,
            refs: Map::new(),
            error: error.map(str::to_string),
            since: None,
            duration_ms: 1,
            encryption: None,
        }
    }

    fn hidden() -> Progress {
        Progress::with_draw_target(ProgressDrawTarget::hidden())
    }

    #[test]
    fn a_run_ends_with_the_right_counts_and_no_bars() {
        let p = hidden();
        p.listed(&[
            repo("api", Some(4000)),
            repo("web", None),
            repo("empty", None),
            repo("same", None),
        ]);
        p.phase("same", Phase::Compare);
        p.render_now();
        assert_eq!(lock(&p.renderer).bars["same"].message(), "compare refs");
        p.finished(&entry("same", Status::Unchanged, Some(99), None));
        p.phase("api", Phase::Mirror);
        p.phase("web", Phase::Mirror);
        p.received("api", 1000);
        p.received("api", 3000);
        p.render_now();
        {
            let r = lock(&p.renderer);
            assert_eq!(r.bars.len(), 2, "one line per repository in flight");
            assert_eq!(r.bars["api"].message(), "mirror  2.9 KiB received");
            assert_eq!(r.bars["api"].prefix(), "acme/api");
            assert_eq!(r.overall.length(), Some(4));
        }
        p.phase("api", Phase::Bundle);
        p.phase("api", Phase::Upload);
        p.uploaded("api", 1024);
        p.render_now();
        assert_eq!(
            lock(&p.renderer).bars["api"].message(),
            "upload  1.0 KiB / ~3.9 KiB"
        );
        p.set_upload_size("api", 2048);
        p.uploaded("api", 1024);
        p.render_now();
        assert_eq!(
            lock(&p.renderer).bars["api"].message(),
            "upload  2.0 KiB / 2.0 KiB (100%)"
        );
        p.finished(&entry("api", Status::Ok, Some(2048), None));
        p.finished(&entry(
            "web",
            Status::Failed,
            None,
            Some("mirror: timed out"),
        ));
        p.phase("empty", Phase::Mirror);
        p.phase("empty", Phase::Bundle);
        p.finished(&entry("empty", Status::Empty, None, None));
        p.render_now();
        {
            let r = lock(&p.renderer);
            assert!(r.bars.is_empty(), "finished repositories lose their line");
            assert_eq!(r.overall.position(), 4);
            assert_eq!(r.printed, vec!["✗ acme/web: mirror: timed out".to_string()]);
            assert!(
                r.overall.message().contains("1 unchanged, 1 failed"),
                "{}",
                r.overall.message()
            );
        }
        assert_eq!(
            p.counts(),
            Counts {
                total: 4,
                ok: 1,
                unchanged: 1,
                empty: 1,
                failed: 1,
                bytes_uploaded: 2048,
                in_flight: 0
            }
        );
        p.finish();
        p.finish();
        assert!(lock(&p.renderer).closed);
    }

    #[test]
    fn events_for_unknown_repositories_are_harmless() {
        let p = hidden();
        p.received("ghost", 5);
        p.uploaded("ghost", 7);
        p.set_upload_size("ghost", 9);
        p.finished(&entry("ghost", Status::Ok, Some(7), None));
        let c = p.counts();
        assert_eq!((c.ok, c.bytes_uploaded, c.in_flight), (1, 7, 0));
        p.render_now();
    }

    #[test]
    fn hooks_from_many_threads_add_up() {
        let p = Arc::new(hidden());
        let slugs: Vec<String> = (0..16).map(|i| format!("r{i}")).collect();
        p.listed(&slugs.iter().map(|s| repo(s, None)).collect::<Vec<_>>());
        std::thread::scope(|scope| {
            for slug in &slugs {
                let p = p.clone();
                scope.spawn(move || {
                    p.phase(slug, Phase::Mirror);
                    for i in 0..200 {
                        p.received(slug, i * 10);
                    }
                    p.phase(slug, Phase::Upload);
                    for _ in 0..100 {
                        p.uploaded(slug, 3);
                    }
                    p.finished(&entry(slug, Status::Ok, Some(300), None));
                });
            }
        });
        p.finish();
        let c = p.counts();
        assert_eq!(
            (c.total, c.ok, c.bytes_uploaded, c.in_flight),
            (16, 16, 16 * 300, 0)
        );
    }

    #[test]
    fn listing_twice_adds_up_for_several_owners() {
        let p = hidden();
        p.listed(&[repo("a", None)]);
        p.listed(&[repo("b", None), repo("c", None)]);
        assert_eq!(p.counts().total, 3);
    }
}
