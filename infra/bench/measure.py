#!/usr/bin/env python3
"""Runs one benchmark contender and records its wall time, CPU and memory.

    measure.py [--memory-max BYTES] OUT.json TIMEOUT_S -- COMMAND [ARG]...

A fresh process per contender, so that getrusage(RUSAGE_CHILDREN) covers that contender's
process tree only: `ru_maxrss` is then the peak resident set of the *largest single process*
of the tree (Linux keeps the maximum over every waited-for descendant, not a sum), in KiB,
file-backed pages (mmapped packs) included. CPU times are the tree's sums.

RSS alone cannot tell heap from mapped files: a mapped pack counts in RSS but is clean page
cache the kernel can drop. So the tree is also sampled every SAMPLE_S from /proc/PID/status
(RssAnon = heap and stacks, RssFile = mapped files), and the peaks of the tree's sums are
recorded (sampling can miss a spike shorter than SAMPLE_S; ru_maxrss cannot).

With --memory-max the command runs in a memory cgroup of its own with that limit, which is
what a Kubernetes memory limit is: cgroup v2 `memory.max` where the memory controller is on
the unified hierarchy, else cgroup v1 `memory.limit_in_bytes`. Both charge page cache (the
mirrors' files, mapped or not) as well as anonymous memory, and reclaim the cache before
they OOM-kill. Recorded: the cgroup's peak usage (v2 `memory.peak`, v1
`memory.max_usage_in_bytes`), its OOM kills, and sampled peaks of its anonymous and file
memory (v2 `memory.stat` anon/file, v1 total_rss/total_cache). Needs a writable cgroup
directory (root, or a delegated subtree).

The command runs in its own session; on timeout the whole process group is killed.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

SAMPLE_S = 0.05


def status_kib(pid, keys):
    """The given `/proc/PID/status` fields in KiB (absent ones 0); None once the pid is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = dict.fromkeys(keys, 0)
    for line in lines:
        k, _, v = line.partition(":")
        if k in out:
            out[k] = int(v.split()[0])
    return out


def session_pids(sid):
    """Every live process of session `sid` (the contender's tree: it starts a new session)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.getsid(int(name)) == sid:
                pids.append(int(name))
        except OSError:
            pass
    return pids


class Cgroup:
    """A memory cgroup of our own with a limit, v2 if the unified hierarchy has the memory
    controller, else v1."""

    def __init__(self, limit):
        self.v2 = False
        base = None
        with open("/proc/self/cgroup", encoding="ascii") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
        for _, controllers, path in entries:
            if controllers == "":
                root = "/sys/fs/cgroup"
                if not os.path.exists(f"{root}/cgroup.controllers"):
                    root = "/sys/fs/cgroup/unified"
                try:
                    with open(f"{root}/cgroup.controllers", encoding="ascii") as c:
                        if "memory" in c.read().split():
                            self.v2, base = True, root + path
                except OSError:
                    pass
        if base is None:
            for _, controllers, path in entries:
                if "memory" in controllers.split(","):
                    base = "/sys/fs/cgroup/memory" + path
        if base is None:
            raise SystemExit("measure.py: no memory cgroup controller found")
        if self.v2:
            # A v2 group with processes cannot have children with controllers ("no internal
            # processes"): the limit goes on a sibling of our own group.
            base = os.path.dirname(base.rstrip("/"))
        self.path = os.path.join(base, f"git-offsite-bench-{os.getpid()}")
        os.mkdir(self.path)
        self.write("memory.max" if self.v2 else "memory.limit_in_bytes", str(limit))
        self.anon_peak = 0
        self.file_peak = 0

    def write(self, name, value):
        with open(os.path.join(self.path, name), "w", encoding="ascii") as f:
            f.write(value)

    def read(self, name):
        with open(os.path.join(self.path, name), encoding="ascii") as f:
            return f.read()

    def keyed(self, name):
        out = {}
        for line in self.read(name).splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
        return out

    def enter(self):
        """Runs in the child between fork and exec: everything it starts is charged here."""
        self.write("cgroup.procs", "0")

    def sample(self):
        stat = self.keyed("memory.stat")
        anon, file = ("anon", "file") if self.v2 else ("total_rss", "total_cache")
        self.anon_peak = max(self.anon_peak, stat.get(anon, 0))
        self.file_peak = max(self.file_peak, stat.get(file, 0))

    def result(self, limit):
        if self.v2:
            peak = int(self.read("memory.peak"))
            events = self.keyed("memory.events")
            oom_kills, hits = events.get("oom_kill", 0), events.get("max", 0)
        else:
            peak = int(self.read("memory.max_usage_in_bytes"))
            oom_kills = self.keyed("memory.oom_control").get("oom_kill", 0)
            hits = int(self.read("memory.failcnt"))
        return {
            "version": 2 if self.v2 else 1,
            "limit_bytes": limit,
            "peak_bytes": peak,
            "anon_peak_bytes": self.anon_peak,
            "file_peak_bytes": self.file_peak,
            "oom_kills": oom_kills,
            "limit_hits": hits,
        }

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


def main() -> int:
    args = sys.argv[1:]
    limit = None
    if args[:1] == ["--memory-max"]:
        limit = int(args[1])
        args = args[2:]
    out, timeout, sep, *cmd = args
    if sep != "--" or not cmd:
        print(__doc__, file=sys.stderr)
        return 2
    cgroup = Cgroup(limit) if limit is not None else None
    peaks = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    started = time.monotonic()
    child = subprocess.Popen(
        cmd, start_new_session=True, preexec_fn=cgroup.enter if cgroup else None
    )
    done = threading.Event()

    def sample():
        while not done.is_set():
            sums = dict.fromkeys(peaks, 0)
            for pid in session_pids(child.pid):
                kib = status_kib(pid, peaks)
                for k, v in (kib or {}).items():
                    sums[k] += v
            for k, v in sums.items():
                peaks[k] = max(peaks[k], v)
            if cgroup:
                cgroup.sample()
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timed_out = False
    try:
        code = child.wait(timeout=float(timeout))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(child.pid, signal.SIGKILL)
        code = child.wait()
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "exit": code,
        "timed_out": timed_out,
        "wall_s": wall,
        "max_rss_kib": ru.ru_maxrss,
        "tree_rss_peak_kib": peaks["VmRSS"],
        "tree_anon_peak_kib": peaks["RssAnon"],
        "tree_file_peak_kib": peaks["RssFile"],
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
    }
    if cgroup:
        result["cgroup"] = cgroup.result(limit)
        cgroup.remove()
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
