//! The tables and the targets, from the measured rows.

use std::fmt::Write as _;
use std::path::Path;

use super::MIB;
use super::measure::Measured;
use super::settings::{Contender, Scenario};
use super::support::git::git;

pub fn machine() -> String {
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

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn table(rows: &[(Scenario, Contender, Measured)]) -> String {
    let cgroup = rows.iter().any(|(_, _, m)| m.cgroup.is_some());
    let mut t = String::from(
        "| scenario | contender | wall s | CPU s | server CPU s | peak RSS MiB | RssAnon / RssFile MiB |",
    );
    if cgroup {
        t.push_str(" cgroup peak MiB (anon / cache) |");
    }
    t.push_str(
        " bundles | MiB uploaded | time vs git-offsite |\n|---|---|---:|---:|---:|---:|---:|",
    );
    if cgroup {
        t.push_str("---:|");
    }
    t.push_str("---:|---:|---:|\n");
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
        let _ = write!(
            t,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} / {:.0} |",
            sc.name(),
            who.name(),
            m.wall_s,
            m.cpu_s,
            m.server_cpu_s,
            m.max_rss_mib,
            m.anon_peak_mib,
            m.file_peak_mib,
        );
        if cgroup {
            let _ = match &m.cgroup {
                Some(c) => write!(
                    t,
                    " {:.0} ({:.0} / {:.0}) |",
                    c.peak_mib, c.anon_peak_mib, c.file_peak_mib
                ),
                None => write!(t, " - |"),
            };
        }
        let _ = writeln!(
            t,
            " {} | {:.0} | {ratio} |",
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
pub fn targets(rows: &[(Scenario, Contender, Measured)]) -> String {
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
