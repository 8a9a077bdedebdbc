//! The generated repositories: deterministic, cached under `target/bench-fixtures/`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use super::MIB;
use super::support::git::{git, git_command, git_stdin};

/// Every blob of the large repository is this big (the last one may be smaller).
const LARGE_BLOB: u64 = 25 * MIB;

/// xorshift64*: deterministic, fast, incompressible output.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "let",
    "mut",
    "fn",
    "pub",
    "struct",
    "impl",
    "match",
    "if",
    "else",
    "return",
    "self",
    "Some",
    "None",
    "Ok(",
    "Err(",
    "value",
    "result",
    "config",
    "request",
    "response",
    "buffer",
    "index",
    "count",
    "error",
    "state",
    "context",
    "handler",
    "client",
    "server",
    "path",
    "name",
    "data",
    "items",
    "len()",
    "map(|x|",
    "iter()",
    "collect()",
    "into()",
    "from",
    "new()",
    "default()",
    "clone()",
    "unwrap()",
    "expect(\"",
    "await",
    "async",
    "use",
    "crate::",
    "const",
    "&",
    "->",
    "=>",
    "==",
    "!=",
    "{",
    "}",
    ";",
    "+",
    "-",
    "*",
    "0",
    "1",
    "42",
    "true",
    "false",
    "String",
    "Vec<u8>",
    "Option<",
    "Result<",
    "u64",
    "usize",
    "bool",
    "// TODO:",
    "for",
    "in",
    "while",
    "loop",
    "break",
    "continue",
    "where",
    "trait",
    "enum",
    "type",
    "as",
    "ref",
    "move",
];

fn text_line(rng: &mut Rng) -> String {
    let mut line = " ".repeat(4 * rng.below(4));
    for i in 0..rng.range(2, 12) {
        if i > 0 {
            line.push(' ');
        }
        if rng.below(8) == 0 {
            let _ = write!(line, "ident_{}", rng.below(500));
        } else {
            line.push_str(WORDS[rng.below(WORDS.len())]);
        }
    }
    line
}

fn text_file(rng: &mut Rng, lines: usize) -> Vec<String> {
    (0..lines).map(|_| text_line(rng)).collect()
}

fn fi_data(out: &mut Vec<u8>, bytes: &[u8]) {
    let _ = writeln!(out, "data {}", bytes.len());
    out.extend_from_slice(bytes);
    out.push(b'\n');
}

fn fi_commit(out: &mut Vec<u8>, branch: &str, mark: u64, when: u64, message: &str) {
    let _ = write!(
        out,
        "commit {branch}\nmark :{mark}\nauthor Bench Author <bench@example.invalid> {when} +0000\n\
         committer Bench Author <bench@example.invalid> {when} +0000\n"
    );
    fi_data(out, message.as_bytes());
}

fn fi_file(out: &mut Vec<u8>, path: &str, content: &[u8]) {
    let _ = writeln!(out, "M 100644 inline {path}");
    fi_data(out, content);
}

/// One workspace repository: a source tree with history on `main`, a few feature branches,
/// annotated and lightweight tags, and (most of the time) binary assets, some of them replaced
/// later. Sizes vary: 6 in 10 small (< 2 MiB), 3 in 10 medium (2-6 MiB), 1 in 10 larger (~10 MiB).
pub fn workspace_repo(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let path = dir.join(format!("{name}.git"));
    git(dir, &["init", "--quiet", "--bare", path.to_str().unwrap()]);
    let mut rng = Rng::new(seed);
    let class = rng.below(10);
    let (files, commits, binary_budget) = match class {
        0..=5 => (rng.range(20, 80), rng.range(10, 80), rng.range(0, MIB)),
        6..=8 => (
            rng.range(60, 200),
            rng.range(50, 250),
            rng.range(2 * MIB, 5 * MIB),
        ),
        _ => (
            rng.range(100, 300),
            rng.range(100, 400),
            rng.range(8 * MIB, 12 * MIB),
        ),
    };
    let mut tree: Vec<(String, Vec<String>)> = (0..files)
        .map(|i| {
            let lines = rng.range(30, 400) as usize;
            (
                format!("src/m{}/f{i:03}.rs", i % 7),
                text_file(&mut rng, lines),
            )
        })
        .collect();
    // (commit index, asset number, size): assets land at random points of history.
    let mut assets = Vec::new();
    let mut budget = binary_budget;
    let mut n_asset = 0;
    while budget > 64 * 1024 {
        let size = rng.range(128 * 1024, 2 * MIB).min(budget);
        // Half of the later assets replace an earlier one (a new version of the same file).
        let target = if n_asset > 0 && rng.below(2) == 0 {
            rng.below(n_asset)
        } else {
            n_asset += 1;
            n_asset - 1
        };
        assets.push((rng.below(commits as usize), target, size));
        budget -= size;
    }

    let mut s = Vec::new();
    let mut when = 1_600_000_000u64;
    let mut mark = 0u64;
    let mut main_marks = Vec::new();
    for c in 0..commits as usize {
        mark += 1;
        when += rng.range(600, 86_400);
        fi_commit(
            &mut s,
            "refs/heads/main",
            mark,
            when,
            &format!("{name}: change {c}"),
        );
        if c == 0 {
            for (p, lines) in &tree {
                fi_file(&mut s, p, (lines.join("\n") + "\n").as_bytes());
            }
        } else {
            for _ in 0..rng.range(1, 5) {
                let f = rng.below(tree.len());
                let lines = &mut tree[f].1;
                for _ in 0..rng.range(1, 6) {
                    let at = rng.below(lines.len());
                    lines[at] = text_line(&mut rng);
                }
                for _ in 0..rng.below(8) {
                    let at = rng.below(lines.len() + 1);
                    lines.insert(at, text_line(&mut rng));
                }
                let (p, lines) = &tree[f];
                fi_file(&mut s, p, (lines.join("\n") + "\n").as_bytes());
            }
            if rng.below(10) == 0 {
                let i = tree.len();
                let lines = rng.range(30, 300) as usize;
                tree.push((format!("src/new/f{i:03}.rs"), text_file(&mut rng, lines)));
                let (p, lines) = &tree[i];
                fi_file(&mut s, p, (lines.join("\n") + "\n").as_bytes());
            }
        }
        for &(_, asset, size) in assets.iter().filter(|a| a.0 == c) {
            let mut blob = vec![0u8; size as usize];
            rng.fill(&mut blob);
            fi_file(&mut s, &format!("assets/asset-{asset}.bin"), &blob);
        }
        s.push(b'\n');
        main_marks.push(mark);
        if c > 0 && c % 25 == 0 {
            let _ = write!(
                s,
                "tag v0.{}\nfrom :{mark}\ntagger Bench Author <bench@example.invalid> {when} +0000\n",
                c / 25
            );
            fi_data(&mut s, format!("release 0.{}", c / 25).as_bytes());
        }
        if c % 10 == 5 {
            let _ = write!(s, "reset refs/tags/build-{c}\nfrom :{mark}\n\n");
        }
    }
    for b in 0..rng.range(1, 5) {
        let base = main_marks[rng.below(main_marks.len())];
        let branch = format!("refs/heads/feature/{b}");
        for k in 0..rng.range(1, 6) {
            mark += 1;
            when += 60;
            fi_commit(
                &mut s,
                &branch,
                mark,
                when,
                &format!("feature {b} step {k}"),
            );
            if k == 0 {
                let _ = writeln!(s, "from :{base}");
            }
            let lines = rng.range(10, 100) as usize;
            let note = text_file(&mut rng, lines).join("\n") + "\n";
            fi_file(&mut s, &format!("notes/feature-{b}.md"), note.as_bytes());
            s.push(b'\n');
        }
    }
    s.extend_from_slice(b"done\n");
    git_stdin(
        &path,
        &["fast-import", "--quiet", "--done", "--date-format=raw"],
        &s,
    );
    // What a hosting service serves: one repacked pack with deltas, packed refs.
    git(&path, &["repack", "-a", "-d", "-f", "-q"]);
    git(&path, &["pack-refs", "--all", "--prune"]);
    path
}

/// One repository whose pack is `bytes` of incompressible blobs of [`LARGE_BLOB`] bytes, one
/// per commit; generated while piped into `git fast-import`. With `versions` > 1 every blob is
/// followed by that many - 1 edited versions (a few 4 KiB blocks rewritten each time), which
/// the pack stores as deltas: cloning then has to resolve deltas against bases spread over the
/// whole pack (what makes libgit2's indexer map pack windows).
pub fn large_repo(dir: &Path, name: &str, bytes: u64, versions: u32) -> PathBuf {
    let path = dir.join(format!("{name}.git"));
    git(dir, &["init", "--quiet", "--bare", path.to_str().unwrap()]);
    // Without `fastimport.unpackLimit=0` an import of fewer than 100 objects is exploded into
    // loose objects, which the server would have to compress on every clone.
    let mut child = git_command(&path)
        .args(["-c", "fastimport.unpackLimit=0", "fast-import", "--quiet"])
        .args(["--done", "--date-format=raw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git fast-import");
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    let mut rng = Rng::new(0x1a2_6e00);
    let mut left = bytes;
    let mut n = 0u64;
    let mut write = || -> std::io::Result<()> {
        let mut blob = Vec::new();
        while left > 0 {
            let size = left.min(LARGE_BLOB);
            blob.resize(size as usize, 0);
            rng.fill(&mut blob);
            let file = n / u64::from(versions.max(1)) + 1;
            for v in 0..versions.max(1) {
                n += 1;
                if v > 0 {
                    for _ in 0..16 {
                        let at = rng.below(blob.len().saturating_sub(4096).max(1));
                        let end = (at + 4096).min(blob.len());
                        rng.fill(&mut blob[at..end]);
                    }
                }
                let when = 1_600_000_000 + n * 3600;
                let message = format!("asset {file:02} version {v}\n");
                write!(
                    stdin,
                    "commit refs/heads/main\nmark :{n}\n\
                     author Bench Author <bench@example.invalid> {when} +0000\n\
                     committer Bench Author <bench@example.invalid> {when} +0000\n\
                     data {}\n{message}M 100644 inline assets/blob-{file:02}.bin\ndata {size}\n",
                    message.len()
                )?;
                stdin.write_all(&blob)?;
                stdin.write_all(b"\n\n")?;
            }
            left -= size;
        }
        stdin.write_all(b"done\n")?;
        stdin.flush()
    };
    write().expect("write fast-import stream");
    drop(stdin);
    let out = child.wait_with_output().expect("git fast-import");
    assert!(
        out.status.success(),
        "git fast-import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(&path, &["pack-refs", "--all", "--prune"]);
    path
}

/// A cached fixture: generated when its `.done` stamp is missing.
pub fn cached(root: &Path, name: &str, make: impl FnOnce(&Path, &str) -> PathBuf) -> PathBuf {
    let path = root.join(format!("{name}.git"));
    let stamp = root.join(format!("{name}.done"));
    if stamp.exists() && path.is_dir() {
        return path;
    }
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(root).expect("fixture dir");
    let t = Instant::now();
    let made = make(root, name);
    assert_eq!(made, path);
    std::fs::write(&stamp, b"").expect("fixture stamp");
    eprintln!(
        "bench: generated {name} ({:.1} MiB) in {:.1}s",
        pack_bytes(&path) as f64 / MIB as f64,
        t.elapsed().as_secs_f64()
    );
    path
}

/// Total size of a repository's pack files.
pub fn pack_bytes(repo: &Path) -> u64 {
    std::fs::read_dir(repo.join("objects/pack"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Reads every pack once, so the first contender does not pay for a cold page cache.
pub fn warm(repos: &[PathBuf]) {
    let mut buf = vec![0u8; MIB as usize];
    for repo in repos {
        for e in std::fs::read_dir(repo.join("objects/pack"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(mut f) = std::fs::File::open(e.path()) {
                while matches!(std::io::Read::read(&mut f, &mut buf), Ok(n) if n > 0) {}
            }
        }
    }
}
