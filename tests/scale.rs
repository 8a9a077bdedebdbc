//! Issue 9, "Scale and fuzzing": a generated workspace of 1,000 repositories backed up with
//! `--jobs 16` to the real S3 test server. The run must complete; memory stays within the
//! bound the README documents; file descriptors do not grow with the number of repositories
//! done; and the emulator sees exactly the requests pagination and one clone per repository
//! need, with never more than `--jobs` clones at once.
//!
//! Why generated this way: 1,000 `git init`s and commits would cost more than the backup. One
//! source repository gets every object in one `git fast-import` (a shared base commit, then one
//! commit per repository on top of it, so every bundle differs); each served repository is
//! then a directory holding its own `packed-refs` and symlinks to what all share (`HEAD` as a
//! symlink ref, the source's `objects/`, an empty `refs/`, a `config`), which `git
//! http-backend` serves like any bare repository.
//!
//! Everything the run printed, the emulator's counters and the `/proc` time series are written
//! to `$CARGO_TARGET_TMPDIR/scale/run.log` whether the test passes or not, so a failure in CI
//! keeps its cause.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::bitbucket::RepoOpts;
use crate::support::consistency::assert_consistent;
use crate::support::git::{clone_mirror, git, git_stdin, refs_of};
use crate::support::harness::{SECRET, TestEnv};
use crate::support::procstat::{Profile, Sampler, mib, own_cpu};
use crate::support::readback::{Dest, OWNER, entry, sha256_hex};
use crate::support::s3::TestS3;

const REPOS: usize = 1000;
const JOBS: u64 = 16;
const DATE: &str = "2026-11-24";
/// What the Bitbucket provider asks for (`PAGELEN` in `src/provider/bitbucket.rs`; the
/// documented maximum, NOTES §1 rule 2). A provider asking for less would page more, and the
/// count below would catch it.
const PAGELEN: usize = 100;
/// Every 100th bundle (and the last) is downloaded and cloned with stock git.
const READBACK_EVERY: usize = 100;
/// Git requests one clone needs, as libgit2 makes them: the ref advertisement without
/// credentials (answered 401 with a Basic challenge: libgit2 sends none before one), the ref
/// advertisement again with them, and one `git-upload-pack` POST. Any retry would add more.
const GIT_REQUESTS_PER_CLONE: u64 = 3;
/// File descriptors one job holds at most: two sockets (its git connection, and the S3
/// connection its single-PUT upload uses, which the client's pool then keeps) and three files
/// (while the pack is indexed its `.pack` and `.idx`, and while uploading the file read from).
/// Bundles here are single PUTs; a multipart upload holds up to `--parts-in-flight` sockets.
const FDS_PER_JOB: u64 = 5;
/// File descriptors the process holds whatever `--jobs` is: stdio, the runtime's epoll and
/// event fds, the Bitbucket API and token connections (measured 11–14 before the first clone).
const FDS_BASE: u64 = 16;
/// What "no growth" allows between the median fd counts early and late in the run.
const FD_DRIFT: u64 = 8;
/// The README's bound for small repositories ("Scale"): a base (mostly the mapped test binary
/// and the runtime) plus a little per job; the results kept for the manifest add a few KiB per
/// repository, included here for 1,000.
const RSS_BASE_MIB: u64 = 48;
const RSS_PER_JOB_MIB: u64 = 1;

/// The generated workspace: the base commit every repository shares, and each repository's
/// own tip.
struct Workspace {
    base: String,
    repos: Vec<Generated>,
}

struct Generated {
    slug: String,
    path: PathBuf,
    tip: String,
}

impl Generated {
    /// The refs a mirror of this repository (and its manifest entry) must have.
    fn refs(&self, base: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("refs/heads/main".to_string(), self.tip.clone()),
            ("refs/tags/v1".to_string(), base.to_string()),
        ])
    }
}

/// `n` repositories `repo-0000`… under `dir`, sharing one source's objects (module docs).
fn generate(dir: &Path, n: usize) -> Workspace {
    std::fs::create_dir_all(dir).unwrap();
    let source = dir.join("source.git");
    git(
        dir,
        &["init", "--quiet", "--bare", source.to_str().unwrap()],
    );
    let who = "Scale Fixture <scale@example.invalid> 1700000000 +0000";
    let mut stream = String::new();
    let readme = "shared history\n";
    write!(
        stream,
        "blob\nmark :1\ndata {}\n{readme}\n\
         commit refs/heads/main\nmark :2\nauthor {who}\ncommitter {who}\ndata 5\nbase\n\
         M 100644 :1 README\n\n",
        readme.len()
    )
    .unwrap();
    for i in 0..n {
        let (blob, commit) = (3 + 2 * i, 4 + 2 * i);
        let text = format!("repository {i}\n");
        write!(
            stream,
            "blob\nmark :{blob}\ndata {len}\n{text}\n\
             commit refs/scale/{i:04}\nmark :{commit}\nauthor {who}\ncommitter {who}\n\
             data {len}\n{text}from :2\nM 100644 :{blob} id.txt\n\n",
            len = text.len()
        )
        .unwrap();
    }
    stream.push_str("done\n");
    git_stdin(
        &source,
        &["fast-import", "--quiet", "--done", "--date-format=raw"],
        stream.as_bytes(),
    );
    let base = git(&source, &["rev-parse", "refs/heads/main"])
        .trim()
        .to_string();
    let tips: Vec<String> = git(
        &source,
        &["for-each-ref", "--format=%(objectname)", "refs/scale/"],
    )
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(tips.len(), n, "one commit per repository");
    // What every repository shares, reached through symlinks: the source's object store, an
    // empty `refs/` (its refs are in `packed-refs`; nothing writes to a served repository)
    // and a `config`.
    let objects = source.join("objects").canonicalize().unwrap();
    std::fs::create_dir_all(dir.join("shared/refs")).unwrap();
    let shared = dir.join("shared").canonicalize().unwrap();
    std::fs::write(
        shared.join("config"),
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n",
    )
    .unwrap();
    let repos = tips
        .into_iter()
        .enumerate()
        .map(|(i, tip)| {
            let slug = format!("repo-{i:04}");
            let path = dir.join(format!("{slug}.git"));
            // One directory and one file of its own; the rest are symlinks, which hold no data
            // block. On this machine's disk (ext4 mounted with `discard`) every freed block is
            // a synchronous TRIM: the earlier layout of seven files and directories per
            // repository took 30 s to delete under load, symlinks take nothing.
            std::fs::create_dir(&path).unwrap();
            // The legacy symlink form of a symbolic ref, which git still reads.
            symlink("refs/heads/main", path.join("HEAD")).unwrap();
            symlink(&objects, path.join("objects")).unwrap();
            symlink(shared.join("refs"), path.join("refs")).unwrap();
            symlink(shared.join("config"), path.join("config")).unwrap();
            std::fs::write(
                path.join("packed-refs"),
                format!("{tip} refs/heads/main\n{base} refs/tags/v1\n"),
            )
            .unwrap();
            Generated { slug, path, tip }
        })
        .collect();
    Workspace { base, repos }
}

/// Where the run's full record goes; kept after the test (CARGO_TARGET_TMPDIR is not cleaned).
fn log_path() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_repositories_with_16_jobs_stay_bounded() {
    let started = Instant::now();
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    let ws = generate(&env.path().join("fixtures"), REPOS);
    for r in &ws.repos {
        let opts = RepoOpts {
            // Known, so the emulator need not ask git for each repository's HEAD.
            mainbranch: Some("main".into()),
            ..RepoOpts::default()
        };
        env.emu.add_repo(OWNER, &r.slug, &r.path, opts);
    }
    let generated = started.elapsed();

    let dest = Dest::S3(&s3);
    let dest_arg = dest.arg();
    let args = [
        "backup",
        "--owner",
        OWNER,
        "--dest",
        &dest_arg,
        "--date",
        DATE,
        "--jobs",
        &JOBS.to_string(),
    ];
    let mut cmd = env.command(&args);
    cmd.envs(s3.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let run_started = Instant::now();
    let cpu_before = own_cpu();
    let child = cmd.spawn().expect("spawn git-offsite");
    let sampler = Sampler::start(child.id().expect("child pid"));
    let out = child.wait_with_output().await.unwrap();
    let wall = run_started.elapsed();
    let profile = sampler.finish();
    // The child has been reaped, so its CPU is among this process's children's now.
    let servers_cpu = own_cpu().saturating_sub(cpu_before + profile.cpu());
    let stats = env.emu.stats();

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let figures = figures(&profile, wall, servers_cpu, &stats, &s3);
    let log = log_path();
    std::fs::write(
        &log,
        format!(
            "git-offsite {args:?}\nexit: {:?}\n\n{figures}\n--- /proc samples (every {:?})\n{}\n\
             --- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status.code(),
            Sampler::EVERY,
            profile.table(1),
        ),
    )
    .unwrap();
    eprintln!(
        "generating {REPOS} repositories: {:.1} s\n{figures}\nfull record: {}",
        generated.as_secs_f64(),
        log.display()
    );
    let see = format!("(full record: {})", log.display());

    // The run completes.
    assert_eq!(out.status.code(), Some(0), "{see}\n{stderr}");
    assert!(!stderr.contains(SECRET), "{see}");
    assert!(env.tmp_leftovers().is_empty(), "temp files left {see}");
    let manifest: Value = dest.manifest(DATE).await;
    let entries = manifest["repositories"].as_array().unwrap();
    assert_eq!(entries.len(), REPOS, "{see}");
    for r in &ws.repos {
        let e = entry(&manifest, &r.slug);
        assert_eq!(e["status"], "ok", "{}: {e} {see}", r.slug);
        assert_eq!(e["head"], "refs/heads/main", "{}", r.slug);
        let refs: BTreeMap<String, String> = serde_json::from_value(e["refs"].clone()).unwrap();
        assert_eq!(refs, r.refs(&ws.base), "{}: manifest refs", r.slug);
    }

    // A sample read back with stock git: the bytes the manifest describes, a mirror clone with
    // exactly the repository's own refs.
    let phase = Instant::now();
    let scratch = env.path().join("readback");
    std::fs::create_dir_all(&scratch).unwrap();
    let sample = (0..REPOS).step_by(READBACK_EVERY).chain([REPOS - 1]);
    for i in sample {
        let r = &ws.repos[i];
        let e = entry(&manifest, &r.slug);
        let bytes = dest.read(e["key"].as_str().unwrap()).await;
        assert_eq!(e["size"], bytes.len() as u64, "{}", r.slug);
        assert_eq!(e["sha256"], sha256_hex(&bytes).as_str(), "{}", r.slug);
        let file = scratch.join(format!("{}.bundle", r.slug));
        std::fs::write(&file, &bytes).unwrap();
        let mirror = clone_mirror(&file, &scratch.join(format!("{}.git", r.slug)));
        assert_eq!(
            refs_of(&mirror),
            r.refs(&ws.base),
            "{}: restored refs",
            r.slug
        );
        git(&mirror, &["fsck", "--strict", "--no-dangling"]);
    }
    eprintln!(
        "manifest and readback: {:.1} s",
        phase.elapsed().as_secs_f64()
    );
    let phase = Instant::now();
    let consistent = assert_consistent(&dest, &scratch.join("consistency"), &[]).await;
    assert_eq!(consistent.restorable.len(), REPOS);
    eprintln!("assert_consistent: {:.1} s", phase.elapsed().as_secs_f64());

    // Requests: what pagination and one clone per repository need, nothing more.
    assert_eq!(
        stats.list_requests,
        REPOS.div_ceil(PAGELEN) as u64,
        "listing pages for {REPOS} repositories at pagelen={PAGELEN} {see}"
    );
    assert_eq!(
        stats.api_requests, stats.list_requests,
        "API requests besides the listing {see}"
    );
    assert_eq!(stats.token_requests, 1, "one token for the whole run {see}");
    assert_eq!(
        stats.pack_requests, REPOS as u64,
        "one pack per repository {see}"
    );
    assert_eq!(stats.rate_limited + stats.server_errors, 0, "{see}");
    assert_eq!(
        stats.unauthorized, REPOS as u64,
        "one challenge per clone {see}"
    );
    assert_eq!(
        stats.git_requests,
        GIT_REQUESTS_PER_CLONE * REPOS as u64,
        "git requests other than one clone per repository {see}"
    );
    // At most --jobs clones at once, and --jobs really used (under load it reached 13–16).
    assert!(
        (2..=JOBS).contains(&stats.max_concurrent_packs),
        "{} clones at once with --jobs {JOBS} {see}",
        stats.max_concurrent_packs
    );

    // File descriptors: no growth over the run, and a peak that --jobs bounds.
    let early = profile.median_fds_between(0.1, 0.3);
    let late = profile.median_fds_between(0.7, 0.9);
    assert!(early > 0 && late > 0, "too few samples {see}");
    assert!(
        late <= early + FD_DRIFT,
        "median fds grew from {early} to {late} {see}"
    );
    let fd_bound = FDS_PER_JOB * JOBS + FDS_BASE;
    assert!(
        profile.peak_fds() <= fd_bound,
        "{} fds at once, over {fd_bound} {see}",
        profile.peak_fds()
    );

    // Memory: within the documented bound.
    let rss_bound = (RSS_BASE_MIB + RSS_PER_JOB_MIB * JOBS) * 1024;
    assert!(
        profile.peak_hwm_kib() <= rss_bound,
        "peak RSS {:.1} MiB, over {} MiB {see}",
        mib(profile.peak_hwm_kib()),
        rss_bound / 1024
    );

    // Each part of the teardown timed: removing 1,000 repositories' files is most of it.
    let TestEnv { dir, emu, .. } = env;
    for (what, part) in [
        ("S3 server", Box::new(s3) as Box<dyn std::any::Any>),
        ("emulator", Box::new(emu)),
        ("test dir (fixtures, temp dirs)", Box::new(dir)),
    ] {
        let phase = Instant::now();
        drop(part);
        eprintln!("teardown, {what}: {:.1} s", phase.elapsed().as_secs_f64());
    }
}

/// The figures the README quotes, as text.
fn figures(
    p: &Profile,
    wall: Duration,
    servers_cpu: Duration,
    stats: &crate::support::bitbucket::Stats,
    s3: &TestS3,
) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "backup --jobs {JOBS}: {:.1} s wall, {:.1} CPU s (emulator, git http-backend and S3 \
         meanwhile: {:.1} CPU s), {} samples",
        wall.as_secs_f64(),
        p.cpu().as_secs_f64(),
        servers_cpu.as_secs_f64(),
        p.samples.len()
    )
    .unwrap();
    writeln!(
        out,
        "peak VmHWM {:.1} MiB, RssAnon {:.1} MiB, RssFile {:.1} MiB; fds peak {} ({} sockets, \
         {} other at most), median early {}, late {}",
        mib(p.peak_hwm_kib()),
        mib(p.peak_anon_kib()),
        mib(p.peak_file_kib()),
        p.peak_fds(),
        p.peak_sockets(),
        p.peak_other_fds(),
        p.median_fds_between(0.1, 0.3),
        p.median_fds_between(0.7, 0.9),
    )
    .unwrap();
    writeln!(out, "emulator: {stats:?}").unwrap();
    if s3.can_inject_faults() {
        let ops = [
            "PutObject",
            "HeadObject",
            "CreateMultipartUpload",
            "ListObjects",
            "LockObject",
            "GetObject",
        ];
        let counts: Vec<String> = ops
            .iter()
            .map(|op| format!("{op} {}", s3.requests(op)))
            .collect();
        writeln!(out, "S3: {}", counts.join(", ")).unwrap();
    }
    out
}
