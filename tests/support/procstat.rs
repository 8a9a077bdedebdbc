//! What a running child process holds, sampled from `/proc` while it runs: peak memory
//! (`VmHWM`, `RssAnon`, `RssFile` of `/proc/<pid>/status`) and open file descriptors (entries of
//! `/proc/<pid>/fd`), every [`Sampler::EVERY`], as a time series.
//!
//! Why sample and not only read the peak at the end: `VmHWM` is a high-water mark and survives
//! to the end, but nothing records the most fds a process held, and a slow leak (one fd per
//! repository) only shows as a count that climbs over the run. Why a plain thread: the test's
//! runtime is busy serving the emulator and S3 to the child; a sampler on it would drift.
//!
//! Linux only (procfs). A zombie (exited, not yet reaped) has no memory lines and no fds: such
//! samples are dropped, so the series ends with the last sample of the live process.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One look at the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Since the sampler started.
    pub at: Duration,
    /// Peak resident set so far (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// Resident anonymous memory (heap, stacks) now, KiB.
    pub anon_kib: u64,
    /// Resident file-backed memory (the binary, mapped pack files) now, KiB.
    pub file_kib: u64,
    /// Open file descriptors now, and how many of them are sockets (the rest: files, pipes,
    /// epoll and event fds).
    pub fds: u64,
    pub sockets: u64,
    /// CPU time used so far (user + system).
    pub cpu: Duration,
}

/// Samples `pid` on a thread until [`Sampler::finish`] or until the process is gone.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// How often the process is looked at.
    pub const EVERY: Duration = Duration::from_millis(50);

    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("procstat-{pid}"))
            .spawn(move || {
                let proc_dir = PathBuf::from(format!("/proc/{pid}"));
                let started = Instant::now();
                let mut samples = Vec::new();
                while !flag.load(Ordering::SeqCst) {
                    match sample(&proc_dir, started.elapsed()) {
                        Some(s) => samples.push(s),
                        // Gone, or a zombie: nothing more to see.
                        None if !samples.is_empty() => break,
                        None => {}
                    }
                    std::thread::sleep(Self::EVERY);
                }
                samples
            })
            .expect("spawn procstat thread");
        Sampler { stop, thread }
    }

    /// Stops sampling (call it once the process has exited) and returns what was seen.
    pub fn finish(self) -> Profile {
        self.stop.store(true, Ordering::SeqCst);
        Profile {
            samples: self.thread.join().expect("procstat thread"),
        }
    }
}

/// One sample of a live process, `None` once it has no memory (exited) or no `/proc` entry.
fn sample(proc_dir: &std::path::Path, at: Duration) -> Option<Sample> {
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
    };
    let hwm_kib = field("VmHWM:")?;
    let (mut fds, mut sockets) = (0, 0);
    for fd in std::fs::read_dir(proc_dir.join("fd")).ok()?.flatten() {
        fds += 1;
        // An fd closed between listing and reading counts as a non-socket.
        if std::fs::read_link(fd.path())
            .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
        {
            sockets += 1;
        }
    }
    Some(Sample {
        at,
        hwm_kib,
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
        fds,
        sockets,
        cpu: cpu_of(&std::fs::read_to_string(proc_dir.join("stat")).ok()?, false)?,
    })
}

/// CPU seconds in a `/proc/<pid>/stat` line: utime + stime, and with `children` the waited-for
/// children's too (cutime + cstime). Ticks are `USER_HZ`, 100 on every Linux procfs.
fn cpu_of(stat: &str, children: bool) -> Option<Duration> {
    // The command name may hold spaces and parentheses: fields are counted after the last `)`.
    let fields: Vec<u64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime are fields 14–17 of proc(5); the state (field 3) was skipped.
    let own = fields.get(10)? + fields.get(11)?;
    let theirs = if children {
        fields.get(12)? + fields.get(13)?
    } else {
        0
    };
    Some(Duration::from_millis((own + theirs) * 10))
}

/// CPU time of this (test) process and its reaped children so far: the emulator, its
/// `git http-backend` children and the S3 server, plus any child that has been waited for.
pub fn own_cpu() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_of(&s, true))
        .unwrap_or_default()
}

/// Every sample of one process's life, oldest first.
#[derive(Debug, Clone)]
pub struct Profile {
    pub samples: Vec<Sample>,
}

impl Profile {
    fn max(&self, f: impl Fn(&Sample) -> u64) -> u64 {
        self.samples.iter().map(f).max().unwrap_or(0)
    }

    pub fn peak_hwm_kib(&self) -> u64 {
        self.max(|s| s.hwm_kib)
    }

    pub fn peak_anon_kib(&self) -> u64 {
        self.max(|s| s.anon_kib)
    }

    pub fn peak_file_kib(&self) -> u64 {
        self.max(|s| s.file_kib)
    }

    pub fn peak_fds(&self) -> u64 {
        self.max(|s| s.fds)
    }

    pub fn peak_sockets(&self) -> u64 {
        self.max(|s| s.sockets)
    }

    /// Most fds that were not sockets at once.
    pub fn peak_other_fds(&self) -> u64 {
        self.max(|s| s.fds - s.sockets)
    }

    /// CPU time at the last sample.
    pub fn cpu(&self) -> Duration {
        self.samples.last().map(|s| s.cpu).unwrap_or_default()
    }

    /// The samples taken between fractions `from` and `to` (0.0–1.0) of the sampled time.
    pub fn window(&self, from: f64, to: f64) -> &[Sample] {
        let Some(end) = self.samples.last().map(|s| s.at.as_secs_f64()) else {
            return &[];
        };
        let lo = self
            .samples
            .partition_point(|s| s.at.as_secs_f64() < from * end);
        let hi = self
            .samples
            .partition_point(|s| s.at.as_secs_f64() <= to * end);
        &self.samples[lo..hi.max(lo)]
    }

    /// The median fd count between fractions `from` and `to` of the run (0 for no sample
    /// there): the level the process keeps returning to, which a leak raises and a burst of
    /// connections does not.
    pub fn median_fds_between(&self, from: f64, to: f64) -> u64 {
        let mut fds: Vec<u64> = self.window(from, to).iter().map(|s| s.fds).collect();
        fds.sort_unstable();
        fds.get(fds.len() / 2).copied().unwrap_or(0)
    }

    /// The series as a table, one line every `step` samples (and the last), for failure
    /// messages and the test log.
    pub fn table(&self, step: usize) -> String {
        let mut out =
            String::from("     t s   fds  sockets  VmHWM MiB  RssAnon MiB  RssFile MiB   CPU s\n");
        let last = self.samples.len().saturating_sub(1);
        for (i, s) in self.samples.iter().enumerate() {
            if i % step.max(1) == 0 || i == last {
                out.push_str(&format!(
                    "{:>8.2} {:>5} {:>8} {:>10.1} {:>12.1} {:>12.1} {:>7.2}\n",
                    s.at.as_secs_f64(),
                    s.fds,
                    s.sockets,
                    mib(s.hwm_kib),
                    mib(s.anon_kib),
                    mib(s.file_kib),
                    s.cpu.as_secs_f64(),
                ));
            }
        }
        out
    }
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
