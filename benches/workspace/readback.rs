//! The `readback` scenario (issue 7): what a night and a restore day cost.
//!
//! On a workspace of its own (the same generated repositories as `workspace`, one of them a
//! private copy so it can be changed), in order:
//! 1. a full backup (the baseline),
//! 2. a no-change rerun the next day: target under 5 % of the full run's wall time, zero pack
//!    transfers (upload-pack POSTs counted by the emulator), zero bundle bytes uploaded (S3
//!    PutObject/UploadPart counted by the test S3 server; the manifest's one PutObject aside),
//! 3. a rerun after one repository got a new commit: exactly one clone,
//! 4. `verify`, `verify --deep` and `restore --all` of that snapshot, in MiB/s of bundles,
//! 5. beside them, stock `git clone --mirror` of the same bundles from local files, with as
//!    many in parallel as git-offsite's `--jobs` (the bundles are downloaded first, untimed).
//!
//! Every step is measured the same way as the contenders (`measure.py`: wall, the command
//! tree's CPU, the servers' CPU meanwhile, peak RSS).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::support::bitbucket::RepoOpts;
use super::support::git::git;
use super::{Bench, MIB, Measured};

/// The emulated workspace of this scenario.
pub const READBACK_WORKSPACE: &str = "bench-readback";
const DAYS: [&str; 4] = ["2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04"];
/// The backups of the scenario, one a day: what each is called and its extra arguments.
const RUNS: [(&str, &[&str]); 4] = [
    ("full backup", &[]),
    ("no-change rerun", &[]),
    ("rerun, one repository changed", &[]),
    // What the rerun costs without the copies (s3s-fs copies files byte by byte; S3 does not).
    (
        "no-change rerun, --unchanged reference",
        &["--unchanged", "reference"],
    ),
];

pub struct Step {
    pub name: &'static str,
    pub m: Measured,
    /// Bundle bytes the step read or wrote (for MiB/s), when that is its measure.
    pub bytes: Option<u64>,
    pub detail: String,
}

impl Bench {
    /// Registers the scenario's workspace: every `workspace` repository, the first one as a
    /// private copy (so step 3 can change it without touching the fixture cache).
    pub fn add_readback_workspace(&self, sources: &[(String, PathBuf)]) -> PathBuf {
        let copy = self.work.path().join("readback-changed.git");
        let (first_slug, first) = &sources[0];
        if !copy.exists() {
            git(
                self.work.path(),
                &[
                    "clone",
                    "-q",
                    "--mirror",
                    first.to_str().unwrap(),
                    copy.to_str().unwrap(),
                ],
            );
        }
        for (slug, path) in sources {
            let path = if slug == first_slug { &copy } else { path };
            self.emu
                .add_repo(READBACK_WORKSPACE, slug, path, RepoOpts::default());
        }
        copy
    }

    fn offsite(&self, args: &[&str]) -> Vec<String> {
        let mut c = vec![self.s.bin.display().to_string()];
        c.extend(args.iter().map(|a| a.to_string()));
        c
    }

    fn pack_requests(&self) -> u64 {
        self.emu.stats().pack_requests
    }

    pub async fn readback(&self, run: usize, changed: &Path) -> Vec<Step> {
        let prefix = format!("r{run}/readback");
        let dest = format!("s3://{}/{prefix}", self.s3.bucket);
        let tmp = self.work.path().join(format!("tmp-r{run}-readback"));
        std::fs::create_dir_all(&tmp).unwrap();
        let envs = self.base_env(&tmp);
        let jobs = self.s.jobs.to_string();
        let mut steps = Vec::new();
        let backup = |date: &'static str, extra: &[&str]| {
            let mut c = self.offsite(&[
                "backup",
                "--owner",
                READBACK_WORKSPACE,
                "--dest",
                &dest,
                "--date",
                date,
                "--jobs",
                &jobs,
            ]);
            c.extend(extra.iter().map(|a| a.to_string()));
            c
        };
        let counters = || {
            (
                self.pack_requests(),
                self.s3.requests("PutObject"),
                self.s3.requests("UploadPart"),
                self.s3.requests("CopyObject"),
            )
        };

        for (i, (date, (name, extra))) in DAYS.iter().zip(RUNS).enumerate() {
            if i == 2 {
                add_commit(changed);
            }
            let before = counters();
            let m = self
                .measure(
                    &format!("r{run}-readback-backup-{i}"),
                    backup(date, extra),
                    &envs,
                )
                .await;
            let after = counters();
            let packs = after.0 - before.0;
            let bundle_puts = (after.1 - before.1).saturating_sub(1) + (after.2 - before.2);
            let copies = after.3 - before.3;
            steps.push(Step {
                name,
                m,
                bytes: None,
                detail: format!(
                    "{packs} pack transfers, {bundle_puts} bundle uploads (PutObject/UploadPart), {copies} server-side copies"
                ),
            });
        }

        let manifest = self
            .get(
                &format!("{prefix}/{READBACK_WORKSPACE}/{}/manifest.json", DAYS[2]),
                None,
            )
            .await
            .unwrap_or_default();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap_or_default();
        let bytes: u64 = manifest["repositories"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["size"].as_u64()).sum())
            .unwrap_or(0);

        let date = DAYS[2];
        for (name, args) in [
            ("verify", vec!["verify"]),
            ("verify --deep", vec!["verify", "--deep"]),
        ] {
            let mut a = args.clone();
            a.extend([
                "--owner",
                READBACK_WORKSPACE,
                "--dest",
                &dest,
                "--date",
                date,
                "--jobs",
                &jobs,
            ]);
            let m = self
                .measure(
                    &format!("r{run}-readback-{}", name.replace([' ', '-'], "")),
                    self.offsite(&a),
                    &envs,
                )
                .await;
            steps.push(Step {
                name,
                m,
                bytes: Some(bytes),
                detail: String::new(),
            });
        }
        let restored = self.work.path().join(format!("restored-r{run}"));
        let m = self
            .measure(
                &format!("r{run}-readback-restore"),
                self.offsite(&[
                    "restore",
                    "--all",
                    "--bare",
                    "--owner",
                    READBACK_WORKSPACE,
                    "--dest",
                    &dest,
                    "--date",
                    date,
                    "--to",
                    restored.to_str().unwrap(),
                    "--jobs",
                    &jobs,
                ]),
                &envs,
            )
            .await;
        steps.push(Step {
            name: "restore --all --bare",
            m,
            bytes: Some(bytes),
            detail: String::new(),
        });
        let _ = std::fs::remove_dir_all(&restored);

        // Stock git on the same bundles, from local files.
        let local = self.work.path().join(format!("bundles-r{run}"));
        std::fs::create_dir_all(&local).unwrap();
        for r in manifest["repositories"].as_array().into_iter().flatten() {
            let (Some(key), Some(slug)) = (r["key"].as_str(), r["slug"].as_str()) else {
                continue;
            };
            if let Ok(body) = self.get(key, None).await {
                std::fs::write(local.join(format!("{slug}.bundle")), body).unwrap();
            }
        }
        let clones = self.work.path().join(format!("clones-r{run}"));
        std::fs::create_dir_all(&clones).unwrap();
        let script = format!(
            "cd {} && ls *.bundle | xargs -P {jobs} -I{{}} git clone -q --mirror {{}} {}/{{}}.git",
            local.display(),
            clones.display()
        );
        let m = self
            .measure(
                &format!("r{run}-readback-gitclone"),
                vec!["sh".into(), "-c".into(), script],
                &envs,
            )
            .await;
        steps.push(Step {
            name: "git clone --mirror of the bundles",
            m,
            bytes: Some(bytes),
            detail: format!("{jobs} at once, bundles on local disk"),
        });
        let _ = std::fs::remove_dir_all(&clones);
        let _ = std::fs::remove_dir_all(&local);
        let _ = std::fs::remove_dir_all(&tmp);
        steps
    }
}

/// A new commit on the default branch of a bare repository (stock git: bench setup only).
fn add_commit(repo: &Path) {
    let branch = git(repo, &["symbolic-ref", "HEAD"]).trim().to_owned();
    let tree = git(repo, &["rev-parse", "HEAD^{tree}"]).trim().to_owned();
    let commit = git(
        repo,
        &[
            "commit-tree",
            &tree,
            "-p",
            "HEAD",
            "-m",
            "readback bench: one more commit",
        ],
    )
    .trim()
    .to_owned();
    git(repo, &["update-ref", &branch, &commit]);
}

/// The table of a sequence of steps; `title` heads the first column.
pub fn table(title: &str, steps: &[Step]) -> String {
    let mut t = format!(
        "| {title} | wall s | CPU s | server CPU s | peak RSS MiB | MiB/s of bundles | detail |\n\
         |---|---:|---:|---:|---:|---:|---|\n"
    );
    for s in steps {
        let rate = match (s.bytes, &s.m.problem) {
            (_, Some(_)) => "FAILED".to_owned(),
            (Some(b), None) if s.m.wall_s > 0.0 => {
                format!("{:.0}", b as f64 / MIB as f64 / s.m.wall_s)
            }
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            t,
            "| {} | {:.2} | {:.2} | {:.2} | {:.0} | {rate} | {} |",
            s.name, s.m.wall_s, s.m.cpu_s, s.m.server_cpu_s, s.m.max_rss_mib, s.detail
        );
    }
    for s in steps {
        if let Some(p) = &s.m.problem {
            let _ = writeln!(t, "\n{title} / {}: {p}", s.name);
        }
    }
    t
}

/// The targets for the no-change rerun.
pub fn targets(steps: &[Step]) -> String {
    let mut out = String::new();
    let (Some(full), Some(rerun)) = (steps.first(), steps.get(1)) else {
        return out;
    };
    if full.m.problem.is_none() && rerun.m.problem.is_none() && full.m.wall_s > 0.0 {
        let share = rerun.m.wall_s / full.m.wall_s * 100.0;
        let _ = writeln!(
            out,
            "- readback: no-change rerun under 5 % of the full run's wall time: {share:.1} % → {}",
            if share < 5.0 { "met" } else { "MISSED" }
        );
    }
    if let Some(r) = steps
        .get(3)
        .filter(|r| r.m.problem.is_none() && full.m.wall_s > 0.0)
    {
        let _ = writeln!(
            out,
            "- readback (for comparison): {} at {:.1} % of the full run's wall time",
            r.name,
            r.m.wall_s / full.m.wall_s * 100.0
        );
    }
    let zero = rerun
        .detail
        .starts_with("0 pack transfers, 0 bundle uploads");
    let _ = writeln!(
        out,
        "- readback: no-change rerun moves no pack and uploads no bundle: {} → {}",
        rerun.detail,
        if zero { "met" } else { "MISSED" }
    );
    if let Some(one) = steps.get(2) {
        let _ = writeln!(
            out,
            "- readback: one changed repository is the one clone: {} → {}",
            one.detail,
            if one.detail.starts_with("1 pack transfers") {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    out
}
