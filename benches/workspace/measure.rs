//! One contender's figures: `infra/bench/measure.py` runs it and writes wall time, CPU,
//! peak RSS (split into anonymous and file-backed), the cgroup's peak under `--memory-max`,
//! and exit code; the servers' CPU meanwhile is this process's own.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use super::{Bench, MIB};

#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub wall_s: f64,
    pub cpu_s: f64,
    /// CPU time of the servers meanwhile: this process (S3 server, emulator) and the emulator's
    /// `git http-backend` children.
    pub server_cpu_s: f64,
    /// `ru_maxrss`: the peak resident set of the tree's largest process.
    pub max_rss_mib: f64,
    /// Sampled peaks of the tree's RssAnon (heap, stacks) and RssFile (mapped files: packs).
    pub anon_peak_mib: f64,
    pub file_peak_mib: f64,
    /// Under `--memory-max`: what the contender's memory cgroup saw.
    pub cgroup: Option<CgroupPeak>,
    pub exit: i64,
    pub timed_out: bool,
    pub bundles: usize,
    pub bytes: u64,
    /// Why the row does not count, if it does not.
    pub problem: Option<String>,
}

/// A contender's memory cgroup at the end of its run (see `measure.py`).
#[derive(Debug, Clone, Default)]
pub struct CgroupPeak {
    /// 1 or 2.
    pub version: u64,
    pub limit_mib: f64,
    /// Peak charge: anonymous memory plus page cache (mapped or not).
    pub peak_mib: f64,
    /// Sampled peaks of the charged anonymous memory and page cache.
    pub anon_peak_mib: f64,
    pub file_peak_mib: f64,
    pub oom_kills: u64,
}

impl Bench {
    /// Runs `cmd` under `infra/bench/measure.py` with `envs`, logging to `<tag>.log`: wall
    /// time, the command tree's CPU, the servers' CPU meanwhile, peak RSS, exit code.
    pub async fn measure(
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
        ];
        if let Some(limit) = self.s.memory_max {
            full.extend(["--memory-max".into(), limit.to_string()]);
        }
        full.extend([
            out_json.display().to_string(),
            self.s.timeout.as_secs().to_string(),
            "--".into(),
        ]);
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
        m.anon_peak_mib = f("tree_anon_peak_kib") / 1024.0;
        m.file_peak_mib = f("tree_file_peak_kib") / 1024.0;
        m.cgroup = j.get("cgroup").map(|c| {
            let mib = |k: &str| c[k].as_f64().unwrap_or(f64::NAN) / MIB as f64;
            CgroupPeak {
                version: c["version"].as_u64().unwrap_or(0),
                limit_mib: mib("limit_bytes"),
                peak_mib: mib("peak_bytes"),
                anon_peak_mib: mib("anon_peak_bytes"),
                file_peak_mib: mib("file_peak_bytes"),
                oom_kills: c["oom_kills"].as_u64().unwrap_or(0),
            }
        });
        m.exit = j["exit"].as_i64().unwrap_or(-1);
        m.timed_out = j["timed_out"].as_bool().unwrap_or(false);
        if let Some(c) = m.cgroup.as_ref().filter(|c| c.oom_kills > 0) {
            m.problem = Some(format!(
                "{} OOM kill(s) under the {:.0} MiB cgroup limit; see {}",
                c.oom_kills,
                c.limit_mib,
                log.display()
            ));
        } else if m.timed_out {
            m.problem = Some(format!("timed out; see {}", log.display()));
        } else if m.exit != 0 {
            m.problem = Some(format!("exit code {}; see {}", m.exit, log.display()));
        }
        m
    }
}

/// CPU seconds of this process plus its waited-for children (`/proc/self/stat` utime, stime,
/// cutime, cstime; USER_HZ is 100 on Linux).
pub fn own_cpu() -> f64 {
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
