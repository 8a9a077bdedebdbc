//! Shared by the `verify` and `restore` tests: real backups made with the binary into a local
//! directory or the test S3 server, and the surgery tests do on what was stored (damaged
//! bundles, rewritten headers, hand-written manifests) to prove each check can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::bitbucket::RepoOpts;
use super::git::{empty_repo, rich_repo, simple_repo};
use super::harness::{Run, TestEnv};
use super::s3::TestS3;

pub const OWNER: &str = "acme";
pub const DAY1: &str = "2026-11-24";
pub const DAY2: &str = "2026-11-25";

/// The fixture repositories served as `acme/<slug>`, slug → (source, default branch); plus an
/// empty repository `hollow`, which has no bundle.
pub fn fixtures(env: &TestEnv) -> BTreeMap<String, (PathBuf, String)> {
    let dir = env.path().join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = BTreeMap::new();
    for (slug, repo, branch) in [
        ("rich", rich_repo(&dir, "rich"), "trunk"),
        ("api", simple_repo(&dir, "api", "main"), "main"),
        ("web", simple_repo(&dir, "web", "develop"), "develop"),
    ] {
        env.emu.add_repo(OWNER, slug, &repo, RepoOpts::default());
        out.insert(slug.to_string(), (repo, branch.to_string()));
    }
    let hollow = empty_repo(&dir, "hollow");
    env.emu
        .add_repo(OWNER, "hollow", &hollow, RepoOpts::default());
    out
}

/// Where a test's backups go: a local directory or the test S3 server.
pub enum Dest<'a> {
    Local(PathBuf),
    S3(&'a TestS3),
}

impl Dest<'_> {
    /// The `--dest` argument.
    pub fn arg(&self) -> String {
        match self {
            Dest::Local(p) => p.to_str().unwrap().to_string(),
            Dest::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
        }
    }

    /// The key (local: relative path) of a date folder's object.
    pub fn key(&self, date: &str, name: &str) -> String {
        match self {
            Dest::Local(_) => format!("{OWNER}/{date}/{name}"),
            Dest::S3(s3) => format!("{}/{OWNER}/{date}/{name}", s3.prefix),
        }
    }

    pub async fn read(&self, key: &str) -> Vec<u8> {
        match self {
            Dest::Local(p) => std::fs::read(p.join(key)).unwrap(),
            Dest::S3(s3) => s3.get(key).await,
        }
    }

    /// Replaces an object (on S3 with the `sha256` metadata of the original bytes unless
    /// `metadata_sha` says otherwise).
    pub async fn write(&self, key: &str, bytes: Vec<u8>, metadata_sha: Option<&str>) {
        match self {
            Dest::Local(p) => {
                let path = p.join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap()
            }
            Dest::S3(s3) => {
                let meta: Vec<(&str, &str)> =
                    metadata_sha.map(|m| ("sha256", m)).into_iter().collect();
                s3.put(key, bytes, &meta).await
            }
        }
    }

    pub async fn manifest(&self, date: &str) -> Value {
        serde_json::from_slice(&self.read(&self.key(date, "manifest.json")).await).unwrap()
    }

    pub async fn write_manifest(&self, date: &str, manifest: &Value) {
        let bytes = serde_json::to_vec_pretty(manifest).unwrap();
        self.write(&self.key(date, "manifest.json"), bytes, None)
            .await
    }

    /// Runs the binary with this destination's environment.
    pub async fn run(&self, env: &TestEnv, args: &[&str]) -> Run {
        let mut cmd = env.command(args);
        if let Dest::S3(s3) = self {
            cmd.envs(s3.env());
        }
        Run::from_output(cmd.output().await.unwrap())
    }

    /// `backup --owner acme --dest <this> --date <date>`; must succeed.
    pub async fn backup(&self, env: &TestEnv, date: &str) {
        let dest = self.arg();
        self.run(
            env,
            &["backup", "--owner", OWNER, "--dest", &dest, "--date", date],
        )
        .await
        .expect_code(0);
    }

    /// `<command> --owner acme --dest <this> <args…>`.
    pub async fn read_command(&self, env: &TestEnv, command: &str, args: &[&str]) -> Run {
        let dest = self.arg();
        let mut all = vec![command, "--owner", OWNER, "--dest", &dest];
        all.extend_from_slice(args);
        self.run(env, &all).await
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest entry of `slug`, mutable.
/// A repository's entry in a manifest read as JSON.
pub fn entry<'a>(manifest: &'a Value, slug: &str) -> &'a Value {
    manifest["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["slug"] == slug)
        .unwrap_or_else(|| panic!("{slug} not in manifest:\n{manifest:#}"))
}

pub fn entry_mut<'a>(manifest: &'a mut Value, slug: &str) -> &'a mut Value {
    manifest["repositories"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["slug"] == slug)
        .unwrap_or_else(|| panic!("{slug} not in manifest"))
}

/// A copy of `bundle` whose header is rewritten by `edit` (on its lines, the signature and
/// the empty line excluded); the pack behind it is untouched.
pub fn rewrite_header(bundle: &[u8], edit: impl FnOnce(&mut Vec<String>)) -> Vec<u8> {
    let end = bundle
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a bundle header ends with an empty line")
        + 2;
    let text = std::str::from_utf8(&bundle[..end - 1]).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let signature = lines.remove(0);
    edit(&mut lines);
    let mut out = signature.into_bytes();
    out.push(b'\n');
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&bundle[end..]);
    out
}

/// Points the manifest entry at `bundle`'s new bytes: size and sha256, so only checks that
/// look inside the bundle can tell.
pub fn fix_entry(entry: &mut Value, bundle: &[u8]) {
    entry["size"] = bundle.len().into();
    entry["sha256"] = sha256_hex(bundle).into();
}

/// Files and dirs directly in `dir`, sorted by name.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
