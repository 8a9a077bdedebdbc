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
//!   `getrusage(RUSAGE_CHILDREN)` gives the peak RSS of the contender's largest process;
//! - checks that every contender really put one bundle per repository into S3 (count, sizes,
//!   bundle signature; git-offsite's manifest too), then deletes them;
//! - prints one table per run and writes it to `target/bench-results/`.

// `cargo clippy --all-targets` checks this target with cfg(test) but no test harness, so the
// support modules' `#[cfg(test)] mod tests` lose their `#[test]` functions and their imports.
#[allow(unused_imports)]
#[path = "../../tests/support/mod.rs"]
mod support;

mod prune;
mod readback;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use support::bitbucket::{ConsumerOpts, Emulator, RepoOpts};
use support::git::{git, git_command, git_stdin};
use support::harness::{KEY, SECRET};
use support::s3::TestS3;

/// Bump when the generators change: the fixture cache is keyed on it.
const FIXTURE_VERSION: u32 = 2;
const WORKSPACE: &str = "bench";
const LARGE_WORKSPACE: &str = "bench-large";
const MIB: u64 = 1024 * 1024;
/// Every blob of the large repository is this big (the last one may be smaller).
const LARGE_BLOB: u64 = 25 * MIB;

const HELP: &str = "\
workspace benchmark: git-offsite vs (1) naive sequential script vs (2) parallel script

usage: cargo bench --bench workspace -- [OPTIONS]     (or infra/bench.sh [OPTIONS])
  --quick              10 repositories + a 50 MiB repository (BENCH_QUICK=1)
  --repos N            repositories in the workspace scenario (BENCH_REPOS, default 50)
  --large-mib N        size of the large repository in MiB (BENCH_LARGE_MIB, default 500)
  --large-versions N   versions of each large blob, the later ones deltas (BENCH_LARGE_VERSIONS,
                       default 1: no deltas)
  --runs N             measure everything N times (BENCH_RUNS, default 2)
  --jobs N             git-offsite --jobs and the parallel script's jobs (BENCH_JOBS, default 4)
  --scenarios LIST     workspace,large,readback,prune (BENCH_SCENARIOS); readback = a full
                       backup, a no-change rerun, a rerun with one change, verify, verify --deep,
                       restore --all and git clone of the bundles; prune = prune over 60 daily
                       snapshots (--repos bundles each) on a directory and on S3 (git-offsite only)
  --contenders LIST    git-offsite,encrypted,parallel,naive (BENCH_CONTENDERS); encrypted =
                       git-offsite --encrypt-to a fresh age key
  --timeout SECS       per contender (BENCH_TIMEOUT, default 3600)
extra git-offsite arguments: BENCH_OFFSITE_ARGS (split on spaces), e.g. \"--parts-in-flight 8\"
extra environment for git-offsite: BENCH_OFFSITE_ENV, e.g. \"RUST_LOG=debug\"
command prefix for git-offsite: BENCH_OFFSITE_WRAP, e.g. \"perf record -g -o /tmp/perf.data --\"
binary: GIT_OFFSITE_BIN (default: the one cargo built for this bench)
python with boto3: BENCH_PYTHON (default python3)
";

#[derive(Debug, Clone)]
struct Settings {
    repos: usize,
    large_mib: u64,
    /// Versions of every blob of the large repository (> 1: later ones are deltas).
    large_versions: u32,
    runs: usize,
    jobs: usize,
    scenarios: Vec<Scenario>,
    contenders: Vec<Contender>,
    timeout: Duration,
    offsite_args: Vec<String>,
    /// A command prefix for git-offsite (`perf record -g -o … --`), for profiling.
    offsite_wrap: Vec<String>,
    /// Extra environment for git-offsite (`K=V` pairs), for experiments.
    offsite_env: Vec<(String, String)>,
    bin: PathBuf,
    python: String,
    target: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Workspace,
    Large,
    /// Incremental reruns, verify and restore: see `readback.rs`.
    Readback,
    /// `prune` over 60 daily snapshots, local and S3: see `prune.rs`.
    Prune,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Workspace => "workspace",
            Scenario::Large => "large",
            Scenario::Readback => "readback",
            Scenario::Prune => "prune",
        }
    }
    fn workspace(self) -> &'static str {
        match self {
            Scenario::Workspace => WORKSPACE,
            Scenario::Large => LARGE_WORKSPACE,
            Scenario::Readback => readback::READBACK_WORKSPACE,
            Scenario::Prune => prune::PRUNE_WORKSPACE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Offsite,
    /// git-offsite with `--encrypt-to` (a fresh age key): the cost of encryption.
    Encrypted,
    Parallel,
    Naive,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Offsite => "git-offsite",
            Contender::Encrypted => "git-offsite --encrypt-to",
            Contender::Parallel => "parallel script",
            Contender::Naive => "naive script",
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Contender::Offsite => "offsite",
            Contender::Encrypted => "encrypted",
            Contender::Parallel => "parallel",
            Contender::Naive => "naive",
        }
    }
}

fn parse_list<T>(s: &str, f: impl Fn(&str) -> Option<T>) -> Vec<T> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| f(s).unwrap_or_else(|| fail(&format!("unknown value {s:?}\n\n{HELP}"))))
        .collect()
}

fn scenario(s: &str) -> Option<Scenario> {
    match s {
        "workspace" => Some(Scenario::Workspace),
        "large" => Some(Scenario::Large),
        "readback" => Some(Scenario::Readback),
        "prune" => Some(Scenario::Prune),
        _ => None,
    }
}

fn contender(s: &str) -> Option<Contender> {
    match s {
        "git-offsite" | "offsite" => Some(Contender::Offsite),
        "encrypted" => Some(Contender::Encrypted),
        "parallel" => Some(Contender::Parallel),
        "naive" => Some(Contender::Naive),
        _ => None,
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench: {message}");
    std::process::exit(2)
}

impl Settings {
    fn parse() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let num = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("not a number: {v:?}")))
        };
        let quick = var("BENCH_QUICK").is_some_and(|v| v != "0");
        let mut s = Settings {
            repos: if quick { 10 } else { 50 },
            large_mib: if quick { 50 } else { 500 },
            large_versions: 1,
            runs: 2,
            jobs: 4,
            scenarios: vec![
                Scenario::Workspace,
                Scenario::Large,
                Scenario::Readback,
                Scenario::Prune,
            ],
            contenders: vec![
                Contender::Offsite,
                Contender::Encrypted,
                Contender::Parallel,
                Contender::Naive,
            ],
            timeout: Duration::from_secs(3600),
            offsite_args: var("BENCH_OFFSITE_ARGS")
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            offsite_wrap: var("BENCH_OFFSITE_WRAP")
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            offsite_env: var("BENCH_OFFSITE_ENV")
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            bin: var("GIT_OFFSITE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_git-offsite"))),
            python: var("BENCH_PYTHON").unwrap_or_else(|| "python3".into()),
            target: var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target")),
        };
        let apply = |k: &str, v: &str, s: &mut Settings| match k {
            "quick" => {
                s.repos = 10;
                s.large_mib = 50;
            }
            "repos" => s.repos = num(v) as usize,
            "large-mib" => s.large_mib = num(v),
            "large-versions" => s.large_versions = num(v) as u32,
            "runs" => s.runs = num(v) as usize,
            "jobs" => s.jobs = num(v) as usize,
            "scenarios" => s.scenarios = parse_list(v, scenario),
            "contenders" => s.contenders = parse_list(v, contender),
            "timeout" => s.timeout = Duration::from_secs(num(v)),
            _ => fail(&format!("unknown option --{k}\n\n{HELP}")),
        };
        for (k, env) in [
            ("repos", "BENCH_REPOS"),
            ("large-mib", "BENCH_LARGE_MIB"),
            ("large-versions", "BENCH_LARGE_VERSIONS"),
            ("runs", "BENCH_RUNS"),
            ("jobs", "BENCH_JOBS"),
            ("scenarios", "BENCH_SCENARIOS"),
            ("contenders", "BENCH_CONTENDERS"),
            ("timeout", "BENCH_TIMEOUT"),
        ] {
            if let Some(v) = var(env) {
                apply(k, &v, &mut s);
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                // cargo passes `--bench` to every bench target.
                "--bench" => {}
                "-h" | "--help" => {
                    print!("{HELP}");
                    std::process::exit(0);
                }
                "--quick" => apply("quick", "", &mut s),
                other => {
                    let Some(k) = other.strip_prefix("--") else {
                        fail(&format!("unexpected argument {other:?}\n\n{HELP}"));
                    };
                    let (k, v) = match k.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (
                            k.to_owned(),
                            args.next()
                                .unwrap_or_else(|| fail(&format!("--{k} needs a value"))),
                        ),
                    };
                    apply(&k, &v, &mut s);
                }
            }
        }
        if s.repos == 0 || s.runs == 0 || s.jobs == 0 || s.large_mib == 0 {
            fail("--repos, --runs, --jobs and --large-mib must be positive");
        }
        s
    }
}

// ---- fixtures -------------------------------------------------------------------------------

/// xorshift64*: deterministic, fast, incompressible output.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "let",
    "mut",
    "fn",
    "pub",
    "struct",
    "impl",
    "match",
    "if",
    "else",
    "return",
    "self",
    "Some",
    "None",
    "Ok(",
    "Err(",
    "value",
    "result",
    "config",
    "request",
    "response",
    "buffer",
    "index",
    "count",
    "error",
    "state",
    "context",
    "handler",
    "client",
    "server",
    "path",
    "name",
    "data",
    "items",
    "len()",
    "map(|x|",
    "iter()",
    "collect()",
    "into()",
    "from",
    "new()",
    "default()",
    "clone()",
    "unwrap()",
    "expect(\"",
    "await",
    "async",
    "use",
    "crate::",
    "const",
    "&",
    "->",
    "=>",
    "==",
    "!=",
    "{",
    "}",
    ";",
    "+",
    "-",
    "*",
    "0",
    "1",
    "42",
    "true",
    "false",
    "String",
    "Vec<u8>",
    "Option<",
    "Result<",
    "u64",
    "usize",
    "bool",
    "// TODO:",
    "for",
    "in",
    "while",
    "loop",
    "break",
    "continue",
    "where",
    "trait",
    "enum",
    "type",
    "as",
    "ref",
    "move",
];

fn text_line(rng: &mut Rng) -> String {
    let mut line = " ".repeat(4 * rng.below(4));
    for i in 0..rng.range(2, 12) {
        if i > 0 {
            line.push(' ');
        }
        if rng.below(8) == 0 {
            let _ = write!(line, "ident_{}", rng.below(500));
        } else {
            line.push_str(WORDS[rng.below(WORDS.len())]);
        }
    }
    line
}

fn text_file(rng: &mut Rng, lines: usize) -> Vec<String> {
    (0..lines).map(|_| text_line(rng)).collect()
}

fn fi_data(out: &mut Vec<u8>, bytes: &[u8]) {
    let _ = writeln!(out, "data {}", bytes.len());
    out.extend_from_slice(bytes);
    out.push(b'\n');
}

fn fi_commit(out: &mut Vec<u8>, branch: &str, mark: u64, when: u64, message: &str) {
    let _ = write!(
        out,
        "commit {branch}\nmark :{mark}\nauthor Bench Author <bench@example.invalid> {when} +0000\n\
         committer Bench Author <bench@example.invalid> {when} +0000\n"
    );
    fi_data(out, message.as_bytes());
}

fn fi_file(out: &mut Vec<u8>, path: &str, content: &[u8]) {
    let _ = writeln!(out, "M 100644 inline {path}");
    fi_data(out, content);
}

/// One workspace repository: a source tree with history on `main`, a few feature branches,
/// annotated and lightweight tags, and (most of the time) binary assets, some of them replaced
/// later. Sizes vary: 6 in 10 small (< 2 MiB), 3 in 10 medium (2-6 MiB), 1 in 10 larger (~10 MiB).
fn workspace_repo(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let path = dir.join(format!("{name}.git"));
    git(dir, &["init", "--quiet", "--bare", path.to_str().unwrap()]);
    let mut rng = Rng::new(seed);
    let class = rng.below(10);
    let (files, commits, binary_budget) = match class {
        0..=5 => (rng.range(20, 80), rng.range(10, 80), rng.range(0, MIB)),
        6..=8 => (
            rng.range(60, 200),
            rng.range(50, 250),
            rng.range(2 * MIB, 5 * MIB),
        ),
        _ => (
            rng.range(100, 300),
            rng.range(100, 400),
            rng.range(8 * MIB, 12 * MIB),
        ),
    };
    let mut tree: Vec<(String, Vec<String>)> = (0..files)
        .map(|i| {
            let lines = rng.range(30, 400) as usize;
            (
                format!("src/m{}/f{i:03}.rs", i % 7),
                text_file(&mut rng, lines),
            )
        })
        .collect();
    // (commit index, asset number, size): assets land at random points of history.
    let mut assets = Vec::new();
    let mut budget = binary_budget;
    let mut n_asset = 0;
    while budget > 64 * 1024 {
        let size = rng.range(128 * 1024, 2 * MIB).min(budget);
        // Half of the later assets replace an earlier one (a new version of the same file).
        let target = if n_asset > 0 && rng.below(2) == 0 {
            rng.below(n_asset)
        } else {
            n_asset += 1;
            n_asset - 1
        };
        assets.push((rng.below(commits as usize), target, size));
        budget -= size;
    }

    let mut s = Vec::new();
    let mut when = 1_600_000_000u64;
    let mut mark = 0u64;
    let mut main_marks = Vec::new();
    for c in 0..commits as usize {
        mark += 1;
        when += rng.range(600, 86_400);
        fi_commit(
            &mut s,
            "refs/heads/main",
            mark,
            when,
            &format!("{name}: change {c}"),
        );
        if c == 0 {
            for (p, lines) in &tree {
                fi_file(&mut s, p, (lines.join("\n") + "\n").as_bytes());
            }
        } else {
            for _ in 0..rng.range(1, 5) {
                let f = rng.below(tree.len());
                let lines = &mut tree[f].1;
                for _ in 0..rng.range(1, 6) {
                    let at = rng.below(lines.len());
                    lines[at] = text_line(&mut rng);
                }
                for _ in 0..rng.below(8) {
                    let at = rng.below(lines.len() + 1);
                    lines.insert(at, text_line(&mut rng));
                }
                let (p, lines) = &tree[f];
                fi_file(&mut s, p, (lines.join("\n") + "\n").as_bytes());
            }
            if rng.below(10) == 0 {
                let i = tree.len();
                let lines = rng.range(30, 300) as usize;
                tree.push((format!("src/new/f{i:03}.rs"), text_file(&mut rng, lines)));
                let (p, lines) = &tree[i];
                fi_file(&mut s, p, (lines.join("\n") + "\n").as_bytes());
            }
        }
        for &(_, asset, size) in assets.iter().filter(|a| a.0 == c) {
            let mut blob = vec![0u8; size as usize];
            rng.fill(&mut blob);
            fi_file(&mut s, &format!("assets/asset-{asset}.bin"), &blob);
        }
        s.push(b'\n');
        main_marks.push(mark);
        if c > 0 && c % 25 == 0 {
            let _ = write!(
                s,
                "tag v0.{}\nfrom :{mark}\ntagger Bench Author <bench@example.invalid> {when} +0000\n",
                c / 25
            );
            fi_data(&mut s, format!("release 0.{}", c / 25).as_bytes());
        }
        if c % 10 == 5 {
            let _ = write!(s, "reset refs/tags/build-{c}\nfrom :{mark}\n\n");
        }
    }
    for b in 0..rng.range(1, 5) {
        let base = main_marks[rng.below(main_marks.len())];
        let branch = format!("refs/heads/feature/{b}");
        for k in 0..rng.range(1, 6) {
            mark += 1;
            when += 60;
            fi_commit(
                &mut s,
                &branch,
                mark,
                when,
                &format!("feature {b} step {k}"),
            );
            if k == 0 {
                let _ = writeln!(s, "from :{base}");
            }
            let lines = rng.range(10, 100) as usize;
            let note = text_file(&mut rng, lines).join("\n") + "\n";
            fi_file(&mut s, &format!("notes/feature-{b}.md"), note.as_bytes());
            s.push(b'\n');
        }
    }
    s.extend_from_slice(b"done\n");
    git_stdin(
        &path,
        &["fast-import", "--quiet", "--done", "--date-format=raw"],
        &s,
    );
    // What a hosting service serves: one repacked pack with deltas, packed refs.
    git(&path, &["repack", "-a", "-d", "-f", "-q"]);
    git(&path, &["pack-refs", "--all", "--prune"]);
    path
}

/// One repository whose pack is `bytes` of incompressible blobs of [`LARGE_BLOB`] bytes, one
/// per commit; generated while piped into `git fast-import`. With `versions` > 1 every blob is
/// followed by that many - 1 edited versions (a few 4 KiB blocks rewritten each time), which
/// the pack stores as deltas: cloning then has to resolve deltas against bases spread over the
/// whole pack (what makes libgit2's indexer map pack windows).
fn large_repo(dir: &Path, name: &str, bytes: u64, versions: u32) -> PathBuf {
    let path = dir.join(format!("{name}.git"));
    git(dir, &["init", "--quiet", "--bare", path.to_str().unwrap()]);
    // Without `fastimport.unpackLimit=0` an import of fewer than 100 objects is exploded into
    // loose objects, which the server would have to compress on every clone.
    let mut child = git_command(&path)
        .args(["-c", "fastimport.unpackLimit=0", "fast-import", "--quiet"])
        .args(["--done", "--date-format=raw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git fast-import");
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    let mut rng = Rng::new(0x1a2_6e00);
    let mut left = bytes;
    let mut n = 0u64;
    let mut write = || -> std::io::Result<()> {
        let mut blob = Vec::new();
        while left > 0 {
            let size = left.min(LARGE_BLOB);
            blob.resize(size as usize, 0);
            rng.fill(&mut blob);
            let file = n / u64::from(versions.max(1)) + 1;
            for v in 0..versions.max(1) {
                n += 1;
                if v > 0 {
                    for _ in 0..16 {
                        let at = rng.below(blob.len().saturating_sub(4096).max(1));
                        let end = (at + 4096).min(blob.len());
                        rng.fill(&mut blob[at..end]);
                    }
                }
                let when = 1_600_000_000 + n * 3600;
                let message = format!("asset {file:02} version {v}\n");
                write!(
                    stdin,
                    "commit refs/heads/main\nmark :{n}\n\
                     author Bench Author <bench@example.invalid> {when} +0000\n\
                     committer Bench Author <bench@example.invalid> {when} +0000\n\
                     data {}\n{message}M 100644 inline assets/blob-{file:02}.bin\ndata {size}\n",
                    message.len()
                )?;
                stdin.write_all(&blob)?;
                stdin.write_all(b"\n\n")?;
            }
            left -= size;
        }
        stdin.write_all(b"done\n")?;
        stdin.flush()
    };
    write().expect("write fast-import stream");
    drop(stdin);
    let out = child.wait_with_output().expect("git fast-import");
    assert!(
        out.status.success(),
        "git fast-import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(&path, &["pack-refs", "--all", "--prune"]);
    path
}

/// A cached fixture: generated when its `.done` stamp is missing.
fn cached(root: &Path, name: &str, make: impl FnOnce(&Path, &str) -> PathBuf) -> PathBuf {
    let path = root.join(format!("{name}.git"));
    let stamp = root.join(format!("{name}.done"));
    if stamp.exists() && path.is_dir() {
        return path;
    }
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(root).expect("fixture dir");
    let t = Instant::now();
    let made = make(root, name);
    assert_eq!(made, path);
    std::fs::write(&stamp, b"").expect("fixture stamp");
    eprintln!(
        "bench: generated {name} ({:.1} MiB) in {:.1}s",
        pack_bytes(&path) as f64 / MIB as f64,
        t.elapsed().as_secs_f64()
    );
    path
}

/// Total size of a repository's pack files.
fn pack_bytes(repo: &Path) -> u64 {
    std::fs::read_dir(repo.join("objects/pack"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Reads every pack once, so the first contender does not pay for a cold page cache.
fn warm(repos: &[PathBuf]) {
    let mut buf = vec![0u8; MIB as usize];
    for repo in repos {
        for e in std::fs::read_dir(repo.join("objects/pack"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(mut f) = std::fs::File::open(e.path()) {
                while matches!(std::io::Read::read(&mut f, &mut buf), Ok(n) if n > 0) {}
            }
        }
    }
}

// ---- measuring ------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Measured {
    wall_s: f64,
    cpu_s: f64,
    /// CPU time of the servers meanwhile: this process (S3 server, emulator) and the emulator's
    /// `git http-backend` children.
    server_cpu_s: f64,
    max_rss_mib: f64,
    exit: i64,
    timed_out: bool,
    bundles: usize,
    bytes: u64,
    /// Why the row does not count, if it does not.
    problem: Option<String>,
}

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

    /// Runs `cmd` under `infra/bench/measure.py` with `envs`, logging to `<tag>.log`: wall
    /// time, the command tree's CPU, the servers' CPU meanwhile, peak RSS, exit code.
    async fn measure(
        &self,
        tag: &str,
        mut cmd: Vec<String>,
        envs: &BTreeMap<String, String>,
    ) -> Measured {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/bench");
        let out_json = self.work.path().join(format!("{tag}.json"));
        let mut full = vec![
            self.s.python.clone(),
            scripts.join("measure.py").display().to_string(),
            out_json.display().to_string(),
            self.s.timeout.as_secs().to_string(),
            "--".into(),
        ];
        full.append(&mut cmd);

        // Writeback of the previous contender's files must not land on this one.
        let _ = std::process::Command::new("sync").status();
        let cpu_before = own_cpu();
        let log = self.logs.join(format!("{tag}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let status = tokio::process::Command::new(&full[0])
            .args(&full[1..])
            .env_clear()
            .envs(envs)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .kill_on_drop(true)
            .status()
            .await
            .expect("spawn measure.py");
        let cpu_after = own_cpu();
        let mut m = Measured::default();
        let parsed: Option<serde_json::Value> = std::fs::read(&out_json)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(j) = parsed.filter(|_| status.success()) else {
            m.problem = Some(format!(
                "measure.py failed ({status}); see {}",
                log.display()
            ));
            return m;
        };
        let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
        m.wall_s = f("wall_s");
        m.cpu_s = f("user_s") + f("sys_s");
        // The wrapper's tree is among this process's children: take it out.
        m.server_cpu_s = (cpu_after - cpu_before - m.cpu_s).max(0.0);
        m.max_rss_mib = f("max_rss_kib") / 1024.0;
        m.exit = j["exit"].as_i64().unwrap_or(-1);
        m.timed_out = j["timed_out"].as_bool().unwrap_or(false);
        if m.timed_out {
            m.problem = Some(format!("timed out; see {}", log.display()));
        } else if m.exit != 0 {
            m.problem = Some(format!("exit code {}; see {}", m.exit, log.display()));
        }
        m
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

/// CPU seconds of this process plus its waited-for children (`/proc/self/stat` utime, stime,
/// cutime, cstime; USER_HZ is 100 on Linux).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse().ok())
        .collect();
    fields.iter().sum::<f64>() / 100.0
}

// ---- reporting ------------------------------------------------------------------------------

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024 / 1024);
    let git = git(Path::new("/"), &["--version"]);
    format!("{cpus} CPUs ({cpu}), {mem} GiB RAM, {}", git.trim())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn table(rows: &[(Scenario, Contender, Measured)]) -> String {
    let mut t = String::from(
        "| scenario | contender | wall s | CPU s | server CPU s | peak RSS MiB | bundles | MiB uploaded | time vs git-offsite |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (sc, who, m) in rows {
        let base = rows
            .iter()
            .find(|(s, c, r)| s == sc && *c == Contender::Offsite && r.problem.is_none())
            .map(|(_, _, r)| r.wall_s);
        let ratio = match (base, &m.problem) {
            (_, Some(_)) => "FAILED".to_owned(),
            (Some(b), None) if b > 0.0 => format!("{:.2}×", m.wall_s / b),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {:.0} | {ratio} |",
            sc.name(),
            who.name(),
            m.wall_s,
            m.cpu_s,
            m.server_cpu_s,
            m.max_rss_mib,
            m.bundles,
            m.bytes as f64 / MIB as f64
        );
    }
    for (sc, who, m) in rows {
        if let Some(p) = &m.problem {
            let _ = writeln!(t, "\n{} / {}: {p}", sc.name(), who.name());
        }
    }
    t
}

/// The targets, for the rows this run has.
fn targets(rows: &[(Scenario, Contender, Measured)]) -> String {
    let get = |sc: Scenario, c: Contender| {
        rows.iter()
            .find(|(s, w, m)| *s == sc && *w == c && m.problem.is_none())
            .map(|(_, _, m)| m)
    };
    let mut out = String::new();
    let mut check = |label: &str, ok: Option<(bool, String)>| {
        if let Some((ok, detail)) = ok {
            let verdict = if ok { "met" } else { "MISSED" };
            let _ = writeln!(out, "- {label}: {detail} → {verdict}");
        }
    };
    let o = get(Scenario::Workspace, Contender::Offsite);
    let ratio =
        |c: Option<&Measured>, b: Option<&Measured>| c.zip(b).map(|(c, b)| c.wall_s / b.wall_s);
    check(
        "workspace: ≥ 4× faster than the naive script",
        ratio(get(Scenario::Workspace, Contender::Naive), o)
            .map(|r| (r >= 4.0, format!("{r:.2}×"))),
    );
    check(
        "workspace: ≥ 1.5× faster than the parallel script",
        ratio(get(Scenario::Workspace, Contender::Parallel), o)
            .map(|r| (r >= 1.5, format!("{r:.2}×"))),
    );
    let ol = get(Scenario::Large, Contender::Offsite);
    check(
        "large: faster than the parallel script",
        ratio(get(Scenario::Large, Contender::Parallel), ol).map(|r| (r > 1.0, format!("{r:.2}×"))),
    );
    check(
        "large: git-offsite peak RSS < 150 MiB",
        ol.map(|m| (m.max_rss_mib < 150.0, format!("{:.0} MiB", m.max_rss_mib))),
    );
    for sc in [Scenario::Workspace, Scenario::Large] {
        let plain = get(sc, Contender::Offsite);
        let sealed = get(sc, Contender::Encrypted);
        check(
            &format!(
                "{}: encrypted run < 1.15× the plain run's wall time",
                sc.name()
            ),
            ratio(sealed, plain).map(|r| (r < 1.15, format!("{r:.2}×"))),
        );
    }
    let el = get(Scenario::Large, Contender::Encrypted);
    check(
        "large: encrypted git-offsite peak RSS < 150 MiB (bounded by parts in flight, not the bundle)",
        el.map(|m| (m.max_rss_mib < 150.0, format!("{:.0} MiB", m.max_rss_mib))),
    );
    out
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
        emu.add_repo(LARGE_WORKSPACE, &slug, &path, RepoOpts::default());
        expected.insert("large", [(slug, pack_bytes(&path))].into());
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
         wrapper per contender = the largest single process of its tree\n",
        machine(),
        s.jobs,
        s.offsite_args
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
                    "bench:   {:.1}s, peak RSS {:.0} MiB{}",
                    m.wall_s,
                    m.max_rss_mib,
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
