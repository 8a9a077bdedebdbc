//! `TestEnv`: an emulated Bitbucket workspace, a private HOME, and the real binary.
//!
//! The binary runs as a child process (through `tokio::process`, so the in-process emulator and
//! S3 server keep being served while it runs) with a scrubbed environment: no AWS or Bitbucket
//! variables leak in from the developer's shell, and HOME/XDG point into the test's tempdir so
//! a stored credentials file on the machine is never read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use tempfile::TempDir;

use super::bitbucket::{ConsumerOpts, Emulator};

pub const KEY: &str = "test-consumer-key";
pub const SECRET: &str = "test-consumer-secret-3f9a1c";

pub struct TestEnv {
    pub dir: TempDir,
    pub emu: Emulator,
    pub envs: BTreeMap<String, String>,
}

/// What a finished run printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with everything printed when the exit code is not `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl TestEnv {
    /// An emulator with one consumer (`KEY`/`SECRET`, default TTL) and an empty environment.
    pub async fn new() -> Self {
        Self::with_consumer(ConsumerOpts::default()).await
    }

    pub async fn with_consumer(opts: ConsumerOpts) -> Self {
        let emu = Emulator::start().await;
        emu.add_consumer(KEY, SECRET, opts);
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let mut envs = BTreeMap::new();
        for (k, v) in [
            ("HOME", home.to_str().unwrap()),
            ("XDG_CONFIG_HOME", home.join(".config").to_str().unwrap()),
            ("TMPDIR", tmp.to_str().unwrap()),
            ("BITBUCKET_API_URL", &emu.api_url()),
            ("BITBUCKET_TOKEN_URL", &emu.token_url()),
            ("BITBUCKET_CONSUMER_KEY", KEY),
            ("BITBUCKET_CONSUMER_SECRET", SECRET),
            ("PATH", &std::env::var("PATH").unwrap_or_default()),
            // No AWS profile files or instance metadata lookups from the test machine.
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("NO_COLOR", "1"),
        ] {
            envs.insert(k.to_string(), v.to_string());
        }
        TestEnv { dir, emu, envs }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The temp dir the binary uses (TMPDIR): must be empty after every run.
    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.envs.insert(k.into(), v.into());
    }

    pub fn remove_env(&mut self, k: &str) {
        self.envs.remove(k);
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_git-offsite"));
        cmd.args(args)
            .env_clear()
            .envs(&self.envs)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs the binary to its end.
    pub async fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().await.unwrap())
    }

    /// `backup -o OWNER --dest <tempdir>/dest --date DATE`: the run, and the destination.
    pub async fn backup_dated(&self, owner: &str, date: &str) -> (Run, PathBuf) {
        self.backup_dated_with(owner, date, &[]).await
    }

    /// [`TestEnv::backup_dated`] with `extra` arguments after the others.
    pub async fn backup_dated_with(
        &self,
        owner: &str,
        date: &str,
        extra: &[&str],
    ) -> (Run, PathBuf) {
        let dest = self.dir.path().join("dest");
        let args = [
            "backup",
            "-o",
            owner,
            "--dest",
            dest.to_str().unwrap(),
            "--date",
            date,
        ];
        (self.run(&[&args[..], extra].concat()).await, dest)
    }

    /// The manifest of `owner`'s `date` folder in a local destination.
    pub fn local_manifest(dest: &Path, owner: &str, date: &str) -> serde_json::Value {
        let path = dest.join(owner).join(date).join("manifest.json");
        let text = std::fs::read_to_string(&path).expect("manifest written");
        serde_json::from_str(&text).unwrap()
    }

    /// A bare repository with a couple of commits on `branch`, built under the test's
    /// `fixtures/` folder and served by the emulator as `owner/slug`.
    pub fn simple_repo(&self, owner: &str, slug: &str, branch: &str) -> PathBuf {
        let fixtures = self.dir.path().join("fixtures");
        std::fs::create_dir_all(&fixtures).unwrap();
        let repo = super::git::simple_repo(&fixtures, slug, branch);
        self.emu
            .add_repo(owner, slug, &repo, super::bitbucket::RepoOpts::default());
        repo
    }

    /// Files and dirs left in TMPDIR (should be none after a run).
    pub fn tmp_leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}
