//! The benchmark's knobs: `--help` text, options and their `BENCH_*` environment twins,
//! the scenarios and contenders.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{LARGE_WORKSPACE, WORKSPACE, prune, readback};

const HELP: &str = "\
workspace benchmark: git-offsite vs (1) naive sequential script vs (2) parallel script

usage: cargo bench --bench workspace -- [OPTIONS]     (or infra/bench.sh [OPTIONS])
  --quick              10 repositories + a 50 MiB repository (BENCH_QUICK=1)
  --repos N            repositories in the workspace scenario (BENCH_REPOS, default 50)
  --large-mib N        size of the large repository in MiB (BENCH_LARGE_MIB, default 500)
  --large-versions N   versions of each large blob, the later ones deltas (BENCH_LARGE_VERSIONS,
                       default 1: no deltas)
  --large-repos N      copies of the large repository in the large scenario, each its own
                       repository to back up (BENCH_LARGE_REPOS, default 1)
  --memory-max SIZE    run every contender in a memory cgroup with this limit, like a pod's
                       memory limit (BENCH_MEMORY_MAX, e.g. 1GiB; needs a writable cgroup tree);
                       the table then shows the cgroup's peak and OOM kills
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
pub struct Settings {
    pub repos: usize,
    pub large_mib: u64,
    /// Versions of every blob of the large repository (> 1: later ones are deltas).
    pub large_versions: u32,
    /// How many repositories the large scenario has (the same fixture under several names).
    pub large_repos: usize,
    /// A memory cgroup limit for every contender, in bytes.
    pub memory_max: Option<u64>,
    pub runs: usize,
    pub jobs: usize,
    pub scenarios: Vec<Scenario>,
    pub contenders: Vec<Contender>,
    pub timeout: Duration,
    pub offsite_args: Vec<String>,
    /// A command prefix for git-offsite (`perf record -g -o … --`), for profiling.
    pub offsite_wrap: Vec<String>,
    /// Extra environment for git-offsite (`K=V` pairs), for experiments.
    pub offsite_env: Vec<(String, String)>,
    pub bin: PathBuf,
    pub python: String,
    pub target: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Workspace,
    Large,
    /// Incremental reruns, verify and restore: see `readback.rs`.
    Readback,
    /// `prune` over 60 daily snapshots, local and S3: see `prune.rs`.
    Prune,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Workspace => "workspace",
            Scenario::Large => "large",
            Scenario::Readback => "readback",
            Scenario::Prune => "prune",
        }
    }
    pub fn workspace(self) -> &'static str {
        match self {
            Scenario::Workspace => WORKSPACE,
            Scenario::Large => LARGE_WORKSPACE,
            Scenario::Readback => readback::READBACK_WORKSPACE,
            Scenario::Prune => prune::PRUNE_WORKSPACE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    Offsite,
    /// git-offsite with `--encrypt-to` (a fresh age key): the cost of encryption.
    Encrypted,
    Parallel,
    Naive,
}

impl Contender {
    pub fn name(self) -> &'static str {
        match self {
            Contender::Offsite => "git-offsite",
            Contender::Encrypted => "git-offsite --encrypt-to",
            Contender::Parallel => "parallel script",
            Contender::Naive => "naive script",
        }
    }
    pub fn slug(self) -> &'static str {
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

pub fn fail(message: &str) -> ! {
    eprintln!("bench: {message}");
    std::process::exit(2)
}

impl Settings {
    pub fn parse() -> Settings {
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
            large_repos: 1,
            memory_max: None,
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
            "large-repos" => s.large_repos = num(v) as usize,
            "memory-max" => {
                s.memory_max = Some(
                    v.trim()
                        .parse::<bytesize::ByteSize>()
                        .map(|b| b.as_u64())
                        .unwrap_or_else(|_| fail(&format!("not a size: {v:?} (e.g. 1GiB)"))),
                )
            }
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
            ("large-repos", "BENCH_LARGE_REPOS"),
            ("memory-max", "BENCH_MEMORY_MAX"),
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
        if s.repos == 0 || s.runs == 0 || s.jobs == 0 || s.large_mib == 0 || s.large_repos == 0 {
            fail("--repos, --runs, --jobs, --large-mib and --large-repos must be positive");
        }
        s
    }
}
