#!/usr/bin/env bash
# The workspace benchmark (issue 2): git-offsite against (1) a naive sequential script and
# (2) a parallel script (4 jobs) that do the same work with stock git and boto3, on a generated
# workspace served by the tests' Bitbucket emulator and uploaded to the tests' S3 server.
#
#   infra/bench.sh            # 50 repositories + one of 500 MiB, every contender, two runs
#   infra/bench.sh --quick    # 10 repositories + one of 50 MiB (or BENCH_QUICK=1)
#   infra/bench.sh --help     # every knob (scenarios, contenders, runs, jobs, sizes)
#
# Fixtures are generated once into target/bench-fixtures/; tables and logs go to
# target/bench-results/. Needs git and python3 with boto3 (installed from PyPI when missing).
# Run it on an otherwise idle machine: the contenders, the emulator's `git http-backend` and
# the S3 server share the CPUs, and any other load distorts the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v git >/dev/null 2>&1 || { echo "bench: needs git" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "bench: needs python3" >&2; exit 1; }
if ! python3 -c 'import boto3' >/dev/null 2>&1; then
  echo "bench: installing boto3 (the scripts' S3 client)" >&2
  python3 -m pip install --quiet --disable-pip-version-check boto3
fi
# The real interpreter: the contenders run with a private HOME, where a pyenv shim would fail.
BENCH_PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
export BENCH_PYTHON

echo "bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
busy="$(ps -eo comm= | grep -cE '^(rustc|cargo|it-[0-9a-f]+)$' || true)"
if [ "${busy}" -gt 0 ]; then
  echo "bench: warning: ${busy} rustc/cargo/test processes are running; figures will be distorted" >&2
fi

# Builds the release binary (bench profile = release settings) and the driver, then runs it.
exec cargo bench --locked --bench workspace -- "$@"
