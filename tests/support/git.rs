//! Git fixture repositories, built with the `git` CLI in an isolated environment.
//!
//! Why the CLI and not git2: the fixtures stand in for what Bitbucket serves, i.e. what real git
//! writes, and `git fast-import` builds a repository with hundreds of refs in one process. The
//! product itself never runs git; tests may.
//!
//! Why `env_clear`: the machine has `/etc/gitconfig` and `~/.gitconfig` (credential helpers, user
//! identity), and a developer's `GIT_DIR`, proxy or `GIT_CONFIG_*` variables would otherwise leak
//! into fixtures and make object ids machine-dependent. Everything a fixture depends on (names,
//! dates, default branch) is spelled out, so the same call yields the same object ids everywhere.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Fixed identity and clock for every commit and tag the fixtures write.
const NAME: &str = "Fixture Author";
const EMAIL: &str = "fixture@example.invalid";
/// 2023-11-14T22:13:20Z; commit `n` is written `n` minutes later so history has an order.
const EPOCH: u64 = 1_700_000_000;

/// A `git` command with no inherited environment: no system/global config, fixed identity and
/// dates, no prompts, no pagers, no auto-gc, no signing, and no proxies.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C")
        .env("LC_ALL", "C")
        // A HOME without files: git looks for `$HOME/.config/git/*` even with the variables below.
        .env("HOME", "/nonexistent")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GIT_PAGER", "cat")
        .env("GIT_AUTHOR_NAME", NAME)
        .env("GIT_AUTHOR_EMAIL", EMAIL)
        .env("GIT_COMMITTER_NAME", NAME)
        .env("GIT_COMMITTER_EMAIL", EMAIL)
        .env("GIT_AUTHOR_DATE", format!("@{EPOCH} +0000"))
        .env("GIT_COMMITTER_DATE", format!("@{EPOCH} +0000"))
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgSign=false",
            "-c",
            "tag.gpgSign=false",
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
            "-c",
            "core.autocrlf=false",
            "-c",
            "http.proxy=",
        ]);
    cmd
}

/// Runs `git args` in `dir` and returns stdout; panics with stderr when git fails.
pub fn git<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> String {
    run(git_command(dir).args(args), None)
}

/// Like [`git`], with `input` on stdin (for `fast-import`, `update-ref --stdin`).
pub fn git_stdin<S: AsRef<OsStr>>(dir: &Path, args: &[S], input: &[u8]) -> String {
    run(git_command(dir).args(args), Some(input))
}

/// Runs `git args` in `dir` and returns the whole [`Output`], failing or not (for tests that
/// expect git to fail).
pub fn git_output<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Output {
    git_command(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn git")
}

fn run(cmd: &mut Command, input: Option<&[u8]>) -> String {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn git");
    if let Some(input) = input {
        // Written from a thread: fast-import may fill its stdout/stderr pipes before reading all
        // of a multi-MiB stream, and a single-threaded write would then deadlock.
        let mut stdin = child.stdin.take().expect("stdin piped");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("wait for git");
        writer
            .join()
            .expect("stdin writer thread")
            .expect("write git stdin");
        return check(cmd, out);
    }
    let out = child.wait_with_output().expect("wait for git");
    check(cmd, out)
}

fn check(cmd: &Command, out: Output) -> String {
    assert!(
        out.status.success(),
        "git {:?} in {:?} failed ({}):\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        cmd.get_current_dir(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("git stdout is UTF-8")
}

/// Creates an empty bare repository `dir/<name>.git` whose HEAD names `default_branch`.
fn init_bare(dir: &Path, name: &str, default_branch: &str) -> PathBuf {
    let path = dir.join(format!("{name}.git"));
    git(
        dir,
        &[
            OsStr::new("init"),
            OsStr::new("--quiet"),
            OsStr::new("--bare"),
            OsStr::new("--initial-branch"),
            OsStr::new(default_branch),
            path.as_os_str(),
        ],
    );
    path
}

/// A new commit on `branch` of a bare repository (same tree, new message).
pub fn commit_on(repo: &Path, branch: &str) {
    let tree = git(repo, &["rev-parse", &format!("{branch}^{{tree}}")]);
    let commit = git(
        repo,
        &["commit-tree", tree.trim(), "-p", branch, "-m", "one more"],
    );
    git(
        repo,
        &["update-ref", &format!("refs/heads/{branch}"), commit.trim()],
    );
}

/// A bare repository with no refs at all (Bitbucket shows `mainbranch: null` for it).
pub fn empty_repo(dir: &Path, name: &str) -> PathBuf {
    init_bare(dir, name, "main")
}

/// A bare repository with three commits on `default_branch`, which HEAD names.
pub fn simple_repo(dir: &Path, name: &str, default_branch: &str) -> PathBuf {
    let repo = init_bare(dir, name, default_branch);
    let mut fi = FastImport::default();
    let branch = format!("refs/heads/{default_branch}");
    let mut parent = None;
    for i in 1..=3 {
        let readme = format!("# {name}\n\nrevision {i}\n");
        parent = Some(fi.commit(
            &branch,
            parent,
            &[],
            &format!("{name}: commit {i}"),
            &[("README.md", readme.as_bytes())],
        ));
    }
    fi.run(&repo);
    repo
}

/// A bare repository that exercises what a mirror has to carry, with HEAD on `trunk` (not
/// `main`/`master`, so a client that assumes either is caught):
/// - `refs/heads/trunk` with a merge and a 4 MiB binary file of pseudo-random bytes (zeros would
///   compress to nothing and hide streaming bugs),
/// - 150 branches `refs/heads/topic/NNN`, each on its own commit (distinct commits make a clone
///   request long enough that git gzips it), and 150 lightweight tags `refs/tags/lw-NNN`,
/// - annotated tags `v1.0`, `v2.0` and `v2.0-ünï`, and a tag of a tag,
/// - `refs/notes/commits`, a custom namespace `refs/custom/x`, and `refs/heads/feature/ünïcødé`.
pub fn rich_repo(dir: &Path, name: &str) -> PathBuf {
    let repo = init_bare(dir, name, "trunk");
    let mut fi = FastImport::default();
    let trunk = "refs/heads/trunk";
    let c1 = fi.commit(
        trunk,
        None,
        &[],
        "initial",
        &[("README.md", b"# rich\n".as_slice())],
    );
    let blob = pseudo_random(4 * 1024 * 1024, 0x5eed_0ff5);
    let c2 = fi.commit(
        trunk,
        Some(c1),
        &[],
        "add binary",
        &[("assets/blob.bin", blob.as_slice())],
    );
    let side = fi.commit(
        "refs/heads/side",
        Some(c1),
        &[],
        "side work",
        &[("side.txt", b"side\n".as_slice())],
    );
    let merge = fi.commit(trunk, Some(c2), &[side], "merge side into trunk", &[]);
    let unicode = fi.commit(
        "refs/heads/feature/ünïcødé",
        Some(merge),
        &[],
        "ünïcødé commit message ✓",
        &[("ünï/fïlé.txt", "grüße\n".as_bytes())],
    );
    let v1 = fi.tag("v1.0", c2, "release 1.0");
    fi.tag("v2.0", merge, "release 2.0");
    fi.tag("v2.0-ünï", unicode, "ünïcødé tag");
    fi.tag("v1.0-signed-off", v1, "a tag of a tag");
    for i in 0..150 {
        let branch = format!("refs/heads/topic/{i:03}");
        let content = format!("topic {i}\n");
        let c = fi.commit(
            &branch,
            Some(merge),
            &[],
            &format!("topic {i}"),
            &[(&format!("topics/{i:03}.txt"), content.as_bytes())],
        );
        fi.reset(&format!("refs/tags/lw-{i:03}"), c);
    }
    fi.reset("refs/custom/x", side);
    fi.note(merge, "a note on the merge commit\n");
    fi.run(&repo);
    repo
}

/// Every ref of `repo` with the object it points to, plus `HEAD` with its symbolic target
/// (`refs/heads/trunk`), or the commit id when HEAD is detached. A mirror must reproduce this map.
/// `git clone -q --mirror FROM INTO` with stock git (a bundle file or a URL); returns `into`.
pub fn clone_mirror(from: &Path, into: &Path) -> PathBuf {
    let parent = into.parent().expect("a clone target has a parent");
    git(
        parent,
        &[
            "clone",
            "-q",
            "--mirror",
            from.to_str().unwrap(),
            into.to_str().unwrap(),
        ],
    );
    into.to_path_buf()
}

/// Every ref of a repository, `refname → oid`, as stock git sees it (no HEAD).
pub fn refs_of(repo: &Path) -> BTreeMap<String, String> {
    git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect()
}

pub fn show_refs(repo: &Path) -> BTreeMap<String, String> {
    let mut refs: BTreeMap<String, String> =
        git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"])
            .lines()
            .map(|line| {
                let (oid, name) = line.split_once(' ').expect("`<oid> <ref>` line");
                (name.to_owned(), oid.to_owned())
            })
            .collect();
    let head = git_output(repo, &["symbolic-ref", "-q", "HEAD"]);
    let head = if head.status.success() {
        String::from_utf8(head.stdout).expect("UTF-8 ref name")
    } else {
        git(repo, &["rev-parse", "HEAD"])
    };
    refs.insert("HEAD".to_owned(), head.trim().to_owned());
    refs
}

/// A bare repository on `main` whose one commit holds a file of `bytes` incompressible bytes, so
/// its pack is about that big (for streaming and throughput tests). The blob is generated while
/// it is piped into `git fast-import`, never held in memory whole.
pub fn big_repo(dir: &Path, name: &str, bytes: u64) -> PathBuf {
    let repo = init_bare(dir, name, "main");
    let mut child = git_command(&repo)
        .args(["fast-import", "--quiet", "--done", "--date-format=raw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git fast-import");
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("stdin piped"));
    let mut write = || -> std::io::Result<()> {
        write!(stdin, "blob\nmark :1\ndata {bytes}\n")?;
        let mut rng = XorShift::new(0xb16_b10b);
        let mut left = bytes;
        let mut chunk = vec![0u8; 1 << 20];
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            rng.fill(&mut chunk[..n]);
            stdin.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        write!(
            stdin,
            "\ncommit refs/heads/main\nauthor {NAME} <{EMAIL}> {EPOCH} +0000\n\
             committer {NAME} <{EMAIL}> {EPOCH} +0000\ndata 8\nbig file\n\
             M 100644 :1 big.bin\n\ndone\n"
        )?;
        stdin.flush()
    };
    write().expect("write fast-import stream");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for git fast-import");
    assert!(
        out.status.success(),
        "git fast-import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo
}

/// Deterministic incompressible bytes (xorshift64*), so large-file tests are reproducible.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0; len];
    XorShift::new(seed).fill(&mut out);
    out
}

/// xorshift64*: fast, deterministic, and incompressible enough that zlib cannot shrink it.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// A `git fast-import` stream under construction. One process writes every object and ref, which
/// is why the 300-ref fixture takes well under a second.
#[derive(Default)]
struct FastImport {
    stream: Vec<u8>,
    next_mark: u32,
    /// Commits written so far; commit `n` is dated `EPOCH + n` minutes.
    commits: u64,
}

/// A fast-import mark (`:n`) naming an object written earlier in the stream.
#[derive(Clone, Copy)]
struct Mark(u32);

impl FastImport {
    fn mark(&mut self) -> Mark {
        self.next_mark += 1;
        Mark(self.next_mark)
    }

    fn data(&mut self, bytes: &[u8]) {
        self.stream
            .extend_from_slice(format!("data {}\n", bytes.len()).as_bytes());
        self.stream.extend_from_slice(bytes);
        self.stream.push(b'\n');
    }

    fn when(&mut self) -> String {
        self.commits += 1;
        format!("{} +0000", EPOCH + self.commits * 60)
    }

    /// A commit on `branch` with `files` changed relative to `parent` (the whole tree when
    /// there is no parent).
    fn commit(
        &mut self,
        branch: &str,
        parent: Option<Mark>,
        merges: &[Mark],
        message: &str,
        files: &[(&str, &[u8])],
    ) -> Mark {
        let mark = self.mark();
        let when = self.when();
        let header = format!(
            "commit {branch}\nmark :{}\nauthor {NAME} <{EMAIL}> {when}\ncommitter {NAME} <{EMAIL}> {when}\n",
            mark.0
        );
        self.stream.extend_from_slice(header.as_bytes());
        self.data(message.as_bytes());
        // Without `from`, the first commit of a branch is a root commit.
        if let Some(p) = parent {
            self.stream
                .extend_from_slice(format!("from :{}\n", p.0).as_bytes());
        }
        for m in merges {
            self.stream
                .extend_from_slice(format!("merge :{}\n", m.0).as_bytes());
        }
        for (path, content) in files {
            // Quoted paths are C-style strings; non-ASCII bytes may appear verbatim.
            self.stream
                .extend_from_slice(format!("M 100644 inline \"{path}\"\n").as_bytes());
            self.data(content);
        }
        self.stream.push(b'\n');
        mark
    }

    /// An annotated tag `refs/tags/<name>` of any marked object (a commit or another tag);
    /// returns the tag object's mark.
    fn tag(&mut self, name: &str, target: Mark, message: &str) -> Mark {
        let mark = self.mark();
        let when = self.when();
        let header = format!(
            "tag {name}\nmark :{}\nfrom :{}\ntagger {NAME} <{EMAIL}> {when}\n",
            mark.0, target.0
        );
        self.stream.extend_from_slice(header.as_bytes());
        self.data(message.as_bytes());
        mark
    }

    /// Points `refname` at `target` without writing a commit (a lightweight tag or custom ref).
    fn reset(&mut self, refname: &str, target: Mark) {
        self.stream
            .extend_from_slice(format!("reset {refname}\nfrom :{}\n\n", target.0).as_bytes());
    }

    /// Adds a note on `target` to `refs/notes/commits`.
    fn note(&mut self, target: Mark, text: &str) {
        let when = self.when();
        let header = format!(
            "commit refs/notes/commits\nauthor {NAME} <{EMAIL}> {when}\ncommitter {NAME} <{EMAIL}> {when}\n"
        );
        self.stream.extend_from_slice(header.as_bytes());
        self.data(b"Notes added by fixture");
        self.stream
            .extend_from_slice(format!("N inline :{}\n", target.0).as_bytes());
        self.data(text.as_bytes());
        self.stream.push(b'\n');
    }

    fn run(mut self, repo: &Path) {
        self.stream.extend_from_slice(b"done\n");
        git_stdin(
            repo,
            &["fast-import", "--quiet", "--done", "--date-format=raw"],
            &self.stream,
        );
    }
}
