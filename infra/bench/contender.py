#!/usr/bin/env python3
"""The two script contenders of infra/bench.sh: what git-offsite is compared with.

    contender.py naive    # one repository after another
    contender.py parallel # JOBS repositories at once, one shared boto3 client

Both do the whole job git-offsite does, with stock tools: OAuth client-credentials token,
the paginated repository listing, then per repository `git clone --mirror`,
`git bundle create --all` and an S3 upload of the bundle to
`<PREFIX>/<owner>/<slug>.bundle`. The token reaches git as an `http.extraHeader` through
GIT_CONFIG_* variables, never through argv or the URL.

Settings come from the environment (the benchmark sets them):
  BITBUCKET_API_URL, BITBUCKET_TOKEN_URL, BITBUCKET_CONSUMER_KEY, BITBUCKET_CONSUMER_SECRET,
  BENCH_OWNER, BENCH_BUCKET, BENCH_PREFIX, BENCH_JOBS (parallel only, default 4),
  AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, TMPDIR.

The upload uses boto3's managed transfer with git-offsite's defaults (16 MiB parts, 4 parts in
flight), path-style addressing and checksums only where S3 requires them (the test server
answers optional checksum headers with 501, as R2 and B2 do).
"""

import base64
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MIB = 1024 * 1024
TRANSFER = TransferConfig(
    multipart_threshold=16 * MIB, multipart_chunksize=16 * MIB, max_concurrency=4
)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"contender: {name} is not set")
    return value


def token() -> str:
    basic = base64.b64encode(
        f"{env('BITBUCKET_CONSUMER_KEY')}:{env('BITBUCKET_CONSUMER_SECRET')}".encode()
    ).decode()
    req = urllib.request.Request(
        env("BITBUCKET_TOKEN_URL"),
        data=b"grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["access_token"]


def list_repos(tok: str, owner: str) -> list[tuple[str, str]]:
    """(slug, clone URL without user info) of every git repository, following `next`."""
    url = f"{env('BITBUCKET_API_URL')}/repositories/{urllib.parse.quote(owner)}?pagelen=100"
    repos = []
    for _ in range(10_000):
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {tok}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            page = json.load(r)
        for repo in page["values"]:
            if repo.get("scm") != "git":
                continue
            href = next(c["href"] for c in repo["links"]["clone"] if c["name"] == "https")
            parts = urllib.parse.urlsplit(href)
            netloc = parts.netloc.rsplit("@", 1)[-1]
            repos.append((repo["slug"], urllib.parse.urlunsplit(parts._replace(netloc=netloc))))
        url = page.get("next")
        if not url:
            return repos
    sys.exit("contender: the listing never ended")


def git_env(tok: str) -> dict[str, str]:
    header = base64.b64encode(f"x-token-auth:{tok}".encode()).decode()
    e = dict(os.environ)
    e.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="http.extraHeader",
        GIT_CONFIG_VALUE_0=f"Authorization: Basic {header}",
    )
    return e


def s3_client():
    return boto3.client(
        "s3",
        endpoint_url=env("AWS_ENDPOINT_URL_S3"),
        region_name=env("AWS_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def backup_one(s3, genv: dict[str, str], slug: str, url: str) -> int:
    """Clone, bundle, upload one repository; returns the bundle's size."""
    tmp = tempfile.mkdtemp(prefix=f"contender-{slug}-")
    try:
        mirror = os.path.join(tmp, "mirror.git")
        bundle = os.path.join(tmp, f"{slug}.bundle")
        subprocess.run(["git", "clone", "--mirror", "--quiet", url, mirror], env=genv, check=True)
        subprocess.run(
            ["git", "-C", mirror, "bundle", "create", "--quiet", bundle, "--all"],
            env=genv,
            check=True,
        )
        shutil.rmtree(mirror)
        key = f"{env('BENCH_PREFIX')}/{env('BENCH_OWNER')}/{slug}.bundle"
        s3.upload_file(bundle, env("BENCH_BUCKET"), key, Config=TRANSFER)
        return os.path.getsize(bundle)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode not in ("naive", "parallel"):
        sys.exit("usage: contender.py naive|parallel")
    started = time.monotonic()
    tok = token()
    repos = list_repos(tok, env("BENCH_OWNER"))
    genv = git_env(tok)
    s3 = s3_client()
    failed = 0
    total = 0
    if mode == "naive":
        for slug, url in repos:
            try:
                total += backup_one(s3, genv, slug, url)
            except Exception as e:  # noqa: BLE001 - a backup script reports and goes on
                print(f"{slug}: {e}", file=sys.stderr)
                failed += 1
    else:
        jobs = int(env("BENCH_JOBS", "4"))
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(backup_one, s3, genv, slug, url): slug for slug, url in repos}
            for f in concurrent.futures.as_completed(futures):
                try:
                    total += f.result()
                except Exception as e:  # noqa: BLE001
                    print(f"{futures[f]}: {e}", file=sys.stderr)
                    failed += 1
    print(
        f"{mode}: {len(repos) - failed} ok, {failed} failed, {total} bytes, "
        f"{time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
