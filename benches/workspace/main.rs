//! The workspace benchmark (issue 2): git-offsite against (1) the naive sequential script and
//! (2) a parallel script doing the same work with stock git and boto3. Run it through
//! `infra/bench.sh` (which checks the prerequisites); `--help` lists the knobs.
//!
//! What it does:
//! - generates the fixtures once, deterministically, under `target/bench-fixtures/` (50
//!   repositories with history, branches, tags and some binary assets, a few MiB each, plus one
//!   repository of ~500 MiB of incompressible blobs), reused by later runs;
//! - serves them through the Bitbucket emulator of the tests (OAuth, paginated API,
//!   `git http-backend`, on its own thread and runtime) and uploads to the tests' in-process
//!   S3 server (s3s-fs on loopback, on this process's multi-thread runtime, whose workers keep
//!   serving while the main task awaits a contender);
//! - runs each contender on its own, in a fresh `infra/bench/measure.py` wrapper whose
//!   `getrusage(RUSAGE_CHILDREN)` gives the peak RSS of the contender's largest process, and
//!   whose sampling of `/proc/PID/status` splits it into heap (RssAnon) and mapped files
//!   (RssFile); with `--memory-max`, inside a memory cgroup with that limit (a pod's limit);
//! - checks that every contender really put one bundle per repository into S3 (count, sizes,
//!   bundle signature; git-offsite's manifest too), then deletes them;
//! - prints one table per run and writes it to `target/bench-results/`.

// `cargo clippy --all-targets` checks this target with cfg(test) but no test harness, so the
// support modules' `#[cfg(test)] mod tests` lose their `#[test]` functions and their imports.
#[allow(unused_imports)]
#[path = "../../tests/support/mod.rs"]
mod support;

mod fixtures;
mod measure;
mod prune;
mod readback;
mod report;
mod settings;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use fixtures::{cached, large_repo, pack_bytes, warm, workspace_repo};
use measure::Measured;
use report::{loadavg, machine, table, targets};
use settings::{Contender, Scenario, Settings, fail};
use support::bitbucket::{ConsumerOpts, Emulator, RepoOpts};
use support::harness::{KEY, SECRET};
use support::s3::TestS3;

/// Bump when the generators change: the fixture cache is keyed on it.
const FIXTURE_VERSION: u32 = 2;
const WORKSPACE: &str = "bench";
const LARGE_WORKSPACE: &str = "bench-large";
const MIB: u64 = 1024 * 1024;

struct Bench {
    s: Settings,
    emu: Emulator,
    s3: TestS3,
    client: aws_sdk_s3::Client,
    work: tempfile::TempDir,
    logs: PathBuf,
    /// Expected bundles per scenario: slug → source pack size.
    expected: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// The public key the encrypted contender encrypts to (its private key is dropped: the
    /// benchmark checks the stored objects' form, not their plaintext).
    recipient: String,
}

impl Bench {
    fn base_env(&self, tmp: &Path) -> BTreeMap<String, String> {
        let home = self.work.path().join("home");
        let mut envs: BTreeMap<String, String> = [
            ("HOME", home.to_str().unwrap()),
            ("XDG_CONFIG_HOME", home.join(".config").to_str().unwrap()),
            ("TMPDIR", tmp.to_str().unwrap()),
            ("BITBUCKET_API_URL", &self.emu.api_url()),
            ("BITBUCKET_TOKEN_URL", &self.emu.token_url()),
            ("BITBUCKET_CONSUMER_KEY", KEY),
            ("BITBUCKET_CONSUMER_SECRET", SECRET),
            ("PATH", &std::env::var("PATH").unwrap_or_default()),
            ("LANG", "C.UTF-8"),
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("NO_COLOR", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        envs.extend(self.s3.env());
        envs
    }

    async fn run_one(&self, run: usize, scenario: Scenario, who: Contender) -> Measured {
        let prefix = format!("r{run}/{}/{}", scenario.name(), who.slug());
        let tag = format!("r{run}-{}-{}", scenario.name(), who.slug());
        let tmp = self.work.path().join(format!("tmp-{tag}"));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut envs = self.base_env(&tmp);
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/bench");
        let cmd: Vec<String> = match who {
            Contender::Offsite | Contender::Encrypted => {
                let mut c = self.s.offsite_wrap.clone();
                c.extend([
                    self.s.bin.display().to_string(),
                    "backup".into(),
                    "--owner".into(),
                    scenario.workspace().into(),
                    "--dest".into(),
                    format!("s3://{}/{prefix}", self.s3.bucket),
                    "--date".into(),
                    "2026-01-01".into(),
                    "--jobs".into(),
                    self.s.jobs.to_string(),
                ]);
                if who == Contender::Encrypted {
                    c.extend(["--encrypt-to".into(), self.recipient.clone()]);
                }
                c.extend(self.s.offsite_args.iter().cloned());
                envs.extend(self.s.offsite_env.iter().cloned());
                c
            }
            Contender::Parallel | Contender::Naive => {
                for (k, v) in [
                    ("BENCH_OWNER", scenario.workspace().to_owned()),
                    ("BENCH_BUCKET", self.s3.bucket.clone()),
                    ("BENCH_PREFIX", prefix.clone()),
                    ("BENCH_JOBS", self.s.jobs.to_string()),
                ] {
                    envs.insert(k.into(), v);
                }
                let mode = if who == Contender::Naive {
                    "naive"
                } else {
                    "parallel"
                };
                vec![
                    self.s.python.clone(),
                    scripts.join("contender.py").display().to_string(),
                    mode.into(),
                ]
            }
        };
        let mut m = self.measure(&tag, cmd, &envs).await;
        if m.problem.is_some() && m.wall_s == 0.0 {
            return m;
        }
        if let Err(e) = self.verify(scenario, who, &prefix, &mut m).await {
            m.problem.get_or_insert(e);
        }
        if std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) > 0 {
            m.problem
                .get_or_insert(format!("left files in its temp dir {}", tmp.display()));
        }
        let _ = std::fs::remove_dir_all(&tmp);
        m
    }

    /// One bundle per repository under the contender's prefix, each starting with the bundle
    /// signature and at least half as big as the source's pack (git-offsite: and a manifest
    /// saying every repository is ok). Deletes what it checked.
    async fn verify(
        &self,
        scenario: Scenario,
        who: Contender,
        prefix: &str,
        m: &mut Measured,
    ) -> Result<(), String> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.s3.bucket)
            .prefix(format!("{prefix}/"))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| format!("ListObjectsV2: {e}"))?;
            for o in page.contents() {
                objects.push((
                    o.key().unwrap_or_default().to_owned(),
                    o.size().unwrap_or(0) as u64,
                ));
            }
        }
        let expected = &self.expected[scenario.name()];
        let mut problems = Vec::new();
        let offsite = matches!(who, Contender::Offsite | Contender::Encrypted);
        let mut manifest_ok = !offsite;
        // What each stored object must be named and start with.
        let (suffix, magic): (&str, &[u8]) = match who {
            Contender::Encrypted => (".bundle.age", b"age-encryption.org/v1\n"),
            _ => (".bundle", b"# v2 git bundle\n"),
        };
        for (key, size) in &objects {
            if key.ends_with("/manifest.json") {
                let body = self.get(key, None).await?;
                let j: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| format!("manifest: {e}"))?;
                let ok = j["summary"]["ok"].as_u64().unwrap_or(0) as usize;
                manifest_ok = ok == expected.len();
                if !manifest_ok {
                    problems.push(format!("manifest says {ok} ok of {}", expected.len()));
                }
                continue;
            }
            let Some(slug) = key.rsplit('/').next().and_then(|n| n.strip_suffix(suffix)) else {
                problems.push(format!("unexpected object {key}"));
                continue;
            };
            let Some(&source) = expected.get(slug) else {
                problems.push(format!("bundle of an unknown repository {key}"));
                continue;
            };
            m.bundles += 1;
            m.bytes += size;
            if *size < source / 2 {
                problems.push(format!("{key}: {size} bytes, the source pack has {source}"));
            }
            let range = format!("bytes=0-{}", magic.len() - 1);
            let head = self.get(key, Some(&range)).await?;
            if head != magic {
                problems.push(format!("{key} does not start like a {suffix} file"));
            }
        }
        if m.bundles != expected.len() {
            problems.push(format!(
                "{} bundles for {} repositories",
                m.bundles,
                expected.len()
            ));
        }
        if !manifest_ok && problems.is_empty() {
            problems.push("no manifest".into());
        }
        for (key, _) in &objects {
            let _ = self
                .client
                .delete_object()
                .bucket(&self.s3.bucket)
                .key(key)
                .send()
                .await;
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("verification: {}", problems.join("; ")))
        }
    }

    async fn get(&self, key: &str, range: Option<&str>) -> Result<Vec<u8>, String> {
        let out = self
            .client
            .get_object()
            .bucket(&self.s3.bucket)
            .key(key)
            .set_range(range.map(str::to_owned))
            .send()
            .await
            .map_err(|e| format!("GetObject {key}: {e}"))?;
        Ok(out
            .body
            .collect()
            .await
            .map_err(|e| format!("GetObject {key}: {e}"))?
            .into_bytes()
            .to_vec())
    }
}

// ---- main -----------------------------------------------------------------------------------

fn main() {
    let s = Settings::parse();
    if !s.bin.is_file() {
        fail(&format!("no git-offsite binary at {}", s.bin.display()));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-s3")
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(run(s));
    // The S3 server's connection tasks end with the runtime.
    rt.shutdown_timeout(Duration::from_secs(5));
    std::process::exit(code);
}

async fn run(s: Settings) -> i32 {
    let fixtures = s
        .target
        .join("bench-fixtures")
        .join(format!("v{FIXTURE_VERSION}"));
    let mut expected: BTreeMap<&'static str, BTreeMap<String, u64>> = BTreeMap::new();
    let emu = Emulator::start_blocking();
    emu.add_consumer(KEY, SECRET, ConsumerOpts::default());
    let mut sources = Vec::new();
    let mut workspace_repos: Vec<(String, PathBuf)> = Vec::new();
    if s.scenarios.contains(&Scenario::Workspace) || s.scenarios.contains(&Scenario::Readback) {
        let root = fixtures.join("workspace");
        let mut slugs = BTreeMap::new();
        for i in 0..s.repos {
            let slug = format!("repo-{i:03}");
            let path = cached(&root, &slug, |d, n| workspace_repo(d, n, i as u64));
            emu.add_repo(WORKSPACE, &slug, &path, RepoOpts::default());
            slugs.insert(slug.clone(), pack_bytes(&path));
            workspace_repos.push((slug, path.clone()));
            sources.push(path);
        }
        expected.insert("workspace", slugs);
    }
    if s.scenarios.contains(&Scenario::Large) {
        let root = fixtures.join("large");
        let (versions, suffix) = match s.large_versions {
            1 => (1, String::new()),
            v => (v, format!("-{v}versions")),
        };
        let slug = format!("large-{}mib{suffix}", s.large_mib);
        let bytes = s.large_mib * MIB;
        let path = cached(&root, &slug, |d, n| large_repo(d, n, bytes, versions));
        // Several copies are several repositories to the tool (each its own clone, index and
        // upload, up to --jobs at once), and one fixture on disk.
        let names: Vec<String> = match s.large_repos {
            1 => vec![slug],
            n => (1..=n).map(|i| format!("{slug}-{i}")).collect(),
        };
        let mut slugs = BTreeMap::new();
        for name in names {
            emu.add_repo(LARGE_WORKSPACE, &name, &path, RepoOpts::default());
            slugs.insert(name, pack_bytes(&path));
        }
        expected.insert("large", slugs);
        sources.push(path);
    }
    warm(&sources);

    let s3 = TestS3::start().await;
    let conf = aws_sdk_s3::config::Builder::from(&s3.sdk_config())
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let results = s.target.join("bench-results");
    let logs = results.join("logs");
    std::fs::create_dir_all(&logs).expect("results dir");
    let work = tempfile::Builder::new()
        .prefix("git-offsite-bench-")
        .tempdir()
        .expect("work dir");
    std::fs::create_dir_all(work.path().join("home")).unwrap();
    let bench = Bench {
        s: s.clone(),
        emu,
        s3,
        client,
        work,
        logs,
        expected,
        recipient: age::x25519::Identity::generate().to_public().to_string(),
    };

    let changed = s
        .scenarios
        .contains(&Scenario::Readback)
        .then(|| bench.add_readback_workspace(&workspace_repos));

    let mut report = String::new();
    let sizes = bench
        .expected
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}: {} repositories, {:.0} MiB of packs",
                v.len(),
                v.values().sum::<u64>() as f64 / MIB as f64
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let _ = writeln!(
        report,
        "machine: {}\nfixtures: {sizes}\njobs: {} (git-offsite --jobs, parallel script workers); \
         git-offsite extra args: {:?}\npeak RSS: getrusage(RUSAGE_CHILDREN).ru_maxrss in a fresh \
         wrapper per contender = the largest single process of its tree; RssAnon / RssFile: \
         peaks of the tree's sums, sampled every 50 ms from /proc/PID/status\n{}",
        machine(),
        s.jobs,
        s.offsite_args,
        s.memory_max
            .map(|b| format!(
                "memory cgroup per contender, limit {} MiB: peak = anonymous + page cache \
                 charged (reclaimable cache included)\n",
                b / MIB
            ))
            .unwrap_or_default()
    );
    eprint!("{report}");
    let mut failed = false;
    for run in 1..=s.runs {
        let mut rows = Vec::new();
        let load_before = loadavg();
        let mut readback_steps = None;
        let mut prune_steps = None;
        for &sc in &s.scenarios {
            if sc == Scenario::Readback {
                eprintln!("bench: run {run}: readback (load {}) …", loadavg());
                let steps = bench
                    .readback(run, changed.as_deref().expect("registered above"))
                    .await;
                for step in &steps {
                    eprintln!(
                        "bench:   {}: {:.2}s{}",
                        step.name,
                        step.m.wall_s,
                        step.m
                            .problem
                            .as_deref()
                            .map(|p| format!(", {p}"))
                            .unwrap_or_default()
                    );
                    failed |= step.m.problem.is_some();
                }
                readback_steps = Some(steps);
                continue;
            }
            if sc == Scenario::Prune {
                eprintln!("bench: run {run}: prune (load {}) …", loadavg());
                let steps = bench.prune(run).await;
                for step in &steps {
                    eprintln!(
                        "bench:   {}: {:.2}s, {}",
                        step.name, step.m.wall_s, step.detail
                    );
                    failed |= step.m.problem.is_some();
                }
                prune_steps = Some(steps);
                continue;
            }
            // Every other run goes in reverse order, so no contender always runs first (or
            // right after the heaviest one).
            let mut order = s.contenders.clone();
            if run % 2 == 0 {
                order.reverse();
            }
            for who in order {
                eprintln!(
                    "bench: run {run}: {} / {} (load {}) …",
                    sc.name(),
                    who.name(),
                    loadavg()
                );
                let m = bench.run_one(run, sc, who).await;
                eprintln!(
                    "bench:   {:.1}s, peak RSS {:.0} MiB (RssAnon {:.0}, RssFile {:.0}){}{}",
                    m.wall_s,
                    m.max_rss_mib,
                    m.anon_peak_mib,
                    m.file_peak_mib,
                    m.cgroup
                        .as_ref()
                        .map(|c| format!(
                            ", cgroup v{} peak {:.0} of {:.0} MiB",
                            c.version, c.peak_mib, c.limit_mib
                        ))
                        .unwrap_or_default(),
                    m.problem
                        .as_deref()
                        .map(|p| format!(", {p}"))
                        .unwrap_or_default()
                );
                failed |= m.problem.is_some();
                rows.push((sc, who, m));
            }
        }
        let rank = |c: Contender| s.contenders.iter().position(|&x| x == c);
        rows.sort_by_key(|(sc, who, _)| (s.scenarios.iter().position(|x| x == sc), rank(*who)));
        let _ = writeln!(
            report,
            "### run {run} of {} ({} order; load average before: {load_before}, after: {})\n\n{}\n{}",
            s.runs,
            if run % 2 == 0 { "reversed" } else { "listed" },
            loadavg(),
            table(&rows),
            targets(&rows)
        );
        if let Some(steps) = &readback_steps {
            let _ = writeln!(
                report,
                "{}\n{}",
                readback::table("readback step", steps),
                readback::targets(steps)
            );
        }
        if let Some(steps) = &prune_steps {
            let _ = writeln!(report, "{}", readback::table("prune step", steps));
        }
    }
    println!("{report}");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let file = results.join(format!("bench-{stamp}.md"));
    if std::fs::write(&file, &report).is_ok() {
        eprintln!("bench: written to {}", file.display());
    }
    i32::from(failed)
}
