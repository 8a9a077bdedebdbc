#!/usr/bin/env python3
"""Runs one benchmark contender and records its wall time and peak RSS.

    measure.py OUT.json TIMEOUT_S -- COMMAND [ARG]...

A fresh process per contender, so that getrusage(RUSAGE_CHILDREN) covers that contender's
process tree only: `ru_maxrss` is then the peak resident set of the *largest single process*
of the tree (Linux keeps the maximum over every waited-for descendant, not a sum), in KiB,
file-backed pages (mmapped packs) included. CPU times are the tree's sums.

The command runs in its own session; on timeout the whole process group is killed.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time


def main() -> int:
    out, timeout, sep, *cmd = sys.argv[1:]
    if sep != "--" or not cmd:
        print(__doc__, file=sys.stderr)
        return 2
    started = time.monotonic()
    child = subprocess.Popen(cmd, start_new_session=True)
    timed_out = False
    try:
        code = child.wait(timeout=float(timeout))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(child.pid, signal.SIGKILL)
        code = child.wait()
    wall = time.monotonic() - started
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "exit": code,
                "timed_out": timed_out,
                "wall_s": wall,
                "max_rss_kib": ru.ru_maxrss,
                "user_s": ru.ru_utime,
                "sys_s": ru.ru_stime,
            },
            f,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
