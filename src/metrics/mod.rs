//! Prometheus metrics of a finished run: `--metrics-file` (node_exporter's textfile collector)
//! and `--pushgateway`.
//!
//! A backup is a batch job that lives minutes, too short to be scraped, so its metrics are
//! written once at the end, in the text exposition format 0.0.4 both consumers read. The one
//! question they must answer is "when did the last *good* backup of this owner finish?"
//! (`git_offsite_last_success_timestamp_seconds`, alerted on in `infra/k8s/prometheusrule.yaml`).
//! A failed run must therefore not erase that value, and both outputs take care of it:
//!
//! - **File**: the previous file is parsed and the last-success value of every owner that failed
//!   this time is carried over. The file is replaced atomically (temp file in the same directory,
//!   then rename), so the collector never reads half a file; the temp file's name does not end
//!   in `.prom`, so the collector ignores it.
//! - **Pushgateway**: pushed with `POST`, which replaces only the metric *families* present in
//!   the body; a failed owner's push leaves `git_offsite_last_success_timestamp_seconds` out, so
//!   the gateway keeps the previous value. Because `POST` replaces a whole family (every label
//!   set of that name within the group), each owner is pushed to its own group
//!   (`/metrics/job/git-offsite/owner/<owner>`): with one group for the whole job, owner A's
//!   success would delete owner B's last-success series when B failed in the same run, and B's
//!   "backup too old" alert could never fire. Per-owner groups also drop the bundle sizes of
//!   repositories deleted since the last run, since the owner's family is replaced as a whole.
//!   The `owner` label stays in the body too; the gateway sets it from the path anyway.
//!
//! Every series carries an `owner` label because one run may back up several owners.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

mod push;
mod text;

pub use push::{PushError, Pushgateway, push};
#[cfg(test)]
use text::Sample;
pub use text::escape_label;
use text::parse_samples;
use text::{Family, escape_help};

use crate::backup::Report;
use crate::manifest::Manifest;

/// The Pushgateway `job` label and grouping-key value.
pub const JOB: &str = "git-offsite";
/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub const LAST_SUCCESS: &str = "git_offsite_last_success_timestamp_seconds";
pub const LAST_RUN: &str = "git_offsite_last_run_timestamp_seconds";
pub const LAST_RUN_SUCCESS: &str = "git_offsite_last_run_success";
pub const DURATION: &str = "git_offsite_duration_seconds";
pub const REPOSITORIES: &str = "git_offsite_repositories";
pub const BYTES_UPLOADED: &str = "git_offsite_bytes_uploaded_total";
pub const BUNDLE_SIZE: &str = "git_offsite_bundle_size_bytes";

/// What one owner's backup did, as far as metrics care.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerRun {
    pub owner: String,
    /// When the owner's run ended (the manifest's `finished_at`, or when the error happened).
    pub finished_at: DateTime<Utc>,
    pub duration: Duration,
    /// No repository failed (each ok, unchanged or empty). Only then does the last-success
    /// timestamp move.
    pub success: bool,
    /// `None` when the run ended before a manifest was written (credentials, listing,
    /// destination): nothing is known about the repositories.
    pub repositories: Option<RepoCounts>,
}

/// Repository outcomes from a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoCounts {
    pub ok: usize,
    /// Not cloned: the bundle of an earlier run was copied, referenced or kept.
    pub unchanged: usize,
    pub empty: usize,
    pub failed: usize,
    /// Bytes of the bundles uploaded.
    pub bytes: u64,
    /// `slug` → bundle size, for the repositories the manifest holds a bundle of (`ok` and
    /// `unchanged`).
    pub bundle_sizes: BTreeMap<String, u64>,
}

impl OwnerRun {
    /// From a finished run's manifest; success means no repository failed.
    pub fn from_manifest(manifest: &Manifest, duration: Duration) -> Self {
        let s = &manifest.summary;
        OwnerRun {
            owner: manifest.owner.clone(),
            finished_at: manifest.finished_at,
            duration,
            success: s.failed == 0,
            repositories: Some(RepoCounts {
                ok: s.ok,
                unchanged: s.unchanged,
                empty: s.empty,
                failed: s.failed,
                bytes: s.bytes,
                bundle_sizes: manifest
                    .repositories
                    .iter()
                    .filter(|r| r.status.has_bundle())
                    .filter_map(|r| Some((r.slug.clone(), r.size?)))
                    .collect(),
            }),
        }
    }

    /// From a finished run: the counts and success are what this run did
    /// ([`Report::summary`]), which on a second run of the day can differ from the manifest
    /// (a failure that kept the first run's good entry is still a failure).
    pub fn from_report(report: &Report) -> Self {
        let mut run = Self::from_manifest(&report.manifest, report.elapsed);
        let s = report.summary();
        run.success = s.failed == 0;
        if let Some(r) = &mut run.repositories {
            (r.ok, r.unchanged, r.empty, r.failed, r.bytes) =
                (s.ok, s.unchanged, s.empty, s.failed, s.bytes);
        }
        run
    }

    /// An owner whose run ended with an error before its manifest, finishing now.
    pub fn failed(owner: impl Into<String>, duration: Duration) -> Self {
        OwnerRun {
            owner: owner.into(),
            finished_at: Utc::now(),
            duration,
            success: false,
            repositories: None,
        }
    }
}

/// The metrics of one invocation: one [`OwnerRun`] per owner, plus last-success timestamps
/// known from before (carried over for owners that failed this time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    runs: BTreeMap<String, OwnerRun>,
    previous_success: BTreeMap<String, f64>,
}

impl RunMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an owner's run (a second run of the same owner replaces the first).
    pub fn add(&mut self, run: OwnerRun) -> &mut Self {
        self.runs.insert(run.owner.clone(), run);
        self
    }

    pub fn runs(&self) -> impl Iterator<Item = &OwnerRun> {
        self.runs.values()
    }

    /// Records a last-success time known from elsewhere (Unix seconds). Keeps the later one.
    pub fn remember_success(&mut self, owner: &str, timestamp: f64) -> &mut Self {
        if timestamp.is_finite() {
            let t = self
                .previous_success
                .entry(owner.to_string())
                .or_insert(timestamp);
            *t = t.max(timestamp);
        }
        self
    }

    /// The value `git_offsite_last_success_timestamp_seconds{owner}` gets, if any: this run's
    /// end when it succeeded, else the previous success carried over.
    pub fn last_success(&self, owner: &str) -> Option<f64> {
        match self.runs.get(owner) {
            Some(run) if run.success => Some(seconds(run.finished_at)),
            Some(_) => self.previous_success.get(owner).copied(),
            None => None,
        }
    }

    /// Every owner, in the text exposition format (what `--metrics-file` writes).
    pub fn render(&self) -> String {
        self.render_for(self.runs.values(), true)
    }

    /// One owner's series, for its Pushgateway group. The carried-over last success is left
    /// out: the gateway's own copy is the authority, and `POST` keeps it.
    fn render_owner(&self, run: &OwnerRun) -> String {
        self.render_for(std::iter::once(run), false)
    }

    fn render_for<'a>(&self, runs: impl Iterator<Item = &'a OwnerRun>, carry_over: bool) -> String {
        let mut families = [
            Family::new(
                LAST_SUCCESS,
                "Unix time the last fully successful backup of the owner finished (no repository failed).",
            ),
            Family::new(
                LAST_RUN,
                "Unix time the last backup run of the owner finished, whatever its outcome.",
            ),
            Family::new(
                LAST_RUN_SUCCESS,
                "1 if the last backup run of the owner backed up every repository, else 0.",
            ),
            Family::new(
                DURATION,
                "Wall time of the last backup run of the owner, in seconds.",
            ),
            Family::new(
                REPOSITORIES,
                "Repositories of the owner in the last run that wrote a manifest, by outcome.",
            ),
            // The name ends in `_total` for compatibility with existing dashboards, but it is a
            // gauge of the last run's bytes, not a counter: each run starts from zero in a new
            // process and nothing adds runs up, so a counter would be read wrongly by
            // `rate()`/`increase()` (a run uploading more than the previous one would count only
            // the difference). `sum_over_time` or the per-run value is what is meaningful.
            Family::new(
                BYTES_UPLOADED,
                "Bytes of bundles uploaded by the last run of the owner (a gauge).",
            ),
            Family::new(
                BUNDLE_SIZE,
                "Size in bytes of each repository's bundle uploaded by the last run of the owner.",
            ),
        ];
        for run in runs {
            let owner = run.owner.as_str();
            let last_success = if run.success {
                Some(seconds(run.finished_at))
            } else if carry_over {
                self.previous_success.get(owner).copied()
            } else {
                None
            };
            if let Some(t) = last_success {
                families[0].sample(&[("owner", owner)], t);
            }
            families[1].sample(&[("owner", owner)], seconds(run.finished_at));
            families[2].sample(&[("owner", owner)], if run.success { 1.0 } else { 0.0 });
            families[3].sample(&[("owner", owner)], run.duration.as_secs_f64());
            if let Some(r) = &run.repositories {
                for (status, n) in [
                    ("ok", r.ok),
                    ("unchanged", r.unchanged),
                    ("empty", r.empty),
                    ("failed", r.failed),
                ] {
                    families[4].sample(&[("owner", owner), ("status", status)], n as f64);
                }
                families[5].sample(&[("owner", owner)], r.bytes as f64);
                for (repo, size) in &r.bundle_sizes {
                    families[6].sample(&[("owner", owner), ("repository", repo)], *size as f64);
                }
            }
        }
        let mut out = String::new();
        // A family with no samples is left out entirely: pushed as an empty family, it would
        // make the Pushgateway drop the previous values of that name.
        for f in families.iter().filter(|f| !f.samples.is_empty()) {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} gauge", f.name);
            for line in &f.samples {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `metrics` to `path` atomically, carrying over the last-success timestamp of owners
/// that failed this time from the file already there. Owners not in this run are dropped.
pub fn write_file(path: &Path, metrics: &RunMetrics) -> Result<(), MetricsError> {
    let mut merged = metrics.clone();
    match std::fs::read_to_string(path) {
        Ok(previous) => {
            for s in parse_samples(&previous)
                .into_iter()
                .filter(|s| s.name == LAST_SUCCESS)
            {
                if let Some((_, owner)) = s.labels.iter().find(|(k, _)| k == "owner") {
                    merged.remember_success(owner, s.value);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Unreadable: write anyway (this run's values are worth having), but say what is lost.
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot read the previous metrics file; last-success times of failed owners are not carried over"
        ),
    }
    let io = |context: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| MetricsError::Io {
            context,
            path,
            source,
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".git-offsite-metrics-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io("cannot create a temp file in", dir))?;
    tmp.write_all(merged.render().as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io("cannot write", tmp.path()))?;
    // Temp files are 0600; the collector usually runs as another user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io("cannot set permissions of", tmp.path()))?;
    }
    tmp.persist(path).map_err(|e| MetricsError::Io {
        context: "cannot replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FORMAT, RepoEntry, Status, Summary};
    use chrono::{NaiveDate, TimeZone};

    fn entry(slug: &str, status: Status, size: Option<u64>) -> RepoEntry {
        RepoEntry {
            slug: slug.into(),
            full_name: format!("acme/{slug}"),
            status,
            key: None,
            size,
            sha256: None,
            head: None,
            refs: BTreeMap::new(),
            error: (status == Status::Failed).then(|| "boom".to_string()),
            since: None,
            duration_ms: 1,
            encryption: None,
        }
    }

    fn manifest(owner: &str, entries: Vec<RepoEntry>, finished: i64) -> Manifest {
        Manifest {
            format: FORMAT,
            tool: crate::TOOL.into(),
            provider: "bitbucket".into(),
            owner: owner.into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            started_at: Utc.timestamp_opt(finished - 60, 0).unwrap(),
            finished_at: Utc.timestamp_millis_opt(finished * 1000 + 250).unwrap(),
            summary: Summary::of(&entries),
            repositories: entries,
        }
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        samples.iter().find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v))
        })
    }

    #[test]
    fn a_successful_run_renders_every_family() {
        let mut m = RunMetrics::new();
        m.add(OwnerRun::from_manifest(
            &manifest(
                "acme",
                vec![
                    entry("api", Status::Ok, Some(1234)),
                    entry("void", Status::Empty, None),
                    entry("same", Status::Unchanged, Some(10)),
                ],
                1_800_000_000,
            ),
            Duration::from_millis(61_500),
        ));
        let text = m.render();
        let s = parse_samples(&text);
        assert_eq!(
            find(&s, LAST_SUCCESS, &[("owner", "acme")]).unwrap().value,
            1_800_000_000.25
        );
        assert_eq!(
            find(&s, LAST_RUN, &[("owner", "acme")]).unwrap().value,
            1_800_000_000.25
        );
        assert_eq!(
            find(&s, LAST_RUN_SUCCESS, &[("owner", "acme")])
                .unwrap()
                .value,
            1.0
        );
        assert_eq!(
            find(&s, DURATION, &[("owner", "acme")]).unwrap().value,
            61.5
        );
        assert_eq!(
            find(&s, REPOSITORIES, &[("owner", "acme"), ("status", "ok")])
                .unwrap()
                .value,
            1.0
        );
        assert_eq!(
            find(&s, REPOSITORIES, &[("owner", "acme"), ("status", "empty")])
                .unwrap()
                .value,
            1.0
        );
        assert_eq!(
            find(
                &s,
                REPOSITORIES,
                &[("owner", "acme"), ("status", "unchanged")]
            )
            .unwrap()
            .value,
            1.0
        );
        assert_eq!(
            find(&s, REPOSITORIES, &[("owner", "acme"), ("status", "failed")])
                .unwrap()
                .value,
            0.0
        );
        assert_eq!(
            find(&s, BYTES_UPLOADED, &[("owner", "acme")])
                .unwrap()
                .value,
            1234.0
        );
        assert_eq!(
            find(&s, BUNDLE_SIZE, &[("owner", "acme"), ("repository", "api")])
                .unwrap()
                .value,
            1234.0
        );
        assert!(
            find(
                &s,
                BUNDLE_SIZE,
                &[("owner", "acme"), ("repository", "void")]
            )
            .is_none()
        );
        for name in [
            LAST_SUCCESS,
            LAST_RUN,
            LAST_RUN_SUCCESS,
            DURATION,
            REPOSITORIES,
            BYTES_UPLOADED,
            BUNDLE_SIZE,
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} gauge\n")).count(),
                1,
                "{name}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
        }
        assert!(text.contains(
            "git_offsite_last_success_timestamp_seconds{owner=\"acme\"} 1800000000.25\n"
        ));
    }

    #[test]
    fn a_failed_owner_has_no_last_success_unless_one_is_known() {
        let mut m = RunMetrics::new();
        m.add(OwnerRun::from_manifest(
            &manifest(
                "acme",
                vec![entry("api", Status::Failed, None)],
                1_800_000_000,
            ),
            Duration::from_secs(3),
        ));
        m.add(OwnerRun::failed("globex", Duration::from_secs(1)));
        let text = m.render();
        assert!(
            !text.contains(LAST_SUCCESS),
            "no family at all, not even HELP:\n{text}"
        );
        let s = parse_samples(&text);
        assert_eq!(
            find(&s, LAST_RUN_SUCCESS, &[("owner", "acme")])
                .unwrap()
                .value,
            0.0
        );
        assert_eq!(
            find(&s, LAST_RUN_SUCCESS, &[("owner", "globex")])
                .unwrap()
                .value,
            0.0
        );
        assert_eq!(
            find(&s, REPOSITORIES, &[("owner", "acme"), ("status", "failed")])
                .unwrap()
                .value,
            1.0
        );
        assert!(
            find(
                &s,
                REPOSITORIES,
                &[("owner", "globex"), ("status", "failed")]
            )
            .is_none()
        );

        m.remember_success("acme", 1_700_000_000.0);
        m.remember_success("acme", 1_600_000_000.0);
        let s = parse_samples(&m.render());
        assert_eq!(
            find(&s, LAST_SUCCESS, &[("owner", "acme")]).unwrap().value,
            1_700_000_000.0
        );
        assert_eq!(m.last_success("acme"), Some(1_700_000_000.0));
        // Pushed bodies never carry it over: the gateway keeps its own value.
        let acme = m.runs().find(|r| r.owner == "acme").unwrap();
        assert!(!m.render_owner(acme).contains(LAST_SUCCESS));
    }
}
