//! `mirror::fetch` and `bundle::write` against real repositories made by the git CLI, judged
//! by stock git: a bundle counts as good only when `git clone` of it gives back every ref and
//! checks out the default branch.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use git_offsite::bundle::{self, BundleError};
use git_offsite::mirror::{self, FetchOptions, MirrorError};
use git_offsite::provider::GitAuth;
use git_offsite::secret::Secret;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use url::Url;

// ---------------------------------------------------------------------------------------------
// git CLI fixtures (isolated from the machine's config, fixed identities and dates)

fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Fixture Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Fixture Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", "init.defaultBranch=master", "-c", "gc.auto=0"]);
    cmd
}

/// Runs git in `dir`, panics with its stderr on failure, returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    git_stdin(dir, args, b"")
}

fn git_stdin(dir: &Path, args: &[&str], stdin: &[u8]) -> String {
    let mut child = git_cmd(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Every ref of a repository, name → oid, as git sees it.
fn show_refs(repo: &Path) -> BTreeMap<String, String> {
    git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"])
        .lines()
        .map(|l| {
            let (oid, name) = l.split_once(' ').unwrap();
            (name.to_owned(), oid.to_owned())
        })
        .collect()
}

fn commit_file(work: &Path, name: &str, content: &[u8], message: &str) {
    let path = work.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    git(work, &["add", name]);
    git(work, &["commit", "-q", "-m", message]);
}

/// Incompressible, reproducible bytes (xorshift), so the pack really is several MiB.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const BIG: usize = 6 * 1024 * 1024;

/// A bare "server" repository with default branch `trunk` and every kind of ref a hosting
/// service can hold. Returns its path; the work tree it came from is `root/work`.
fn rich_repo(root: &Path) -> PathBuf {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "trunk"]);
    commit_file(&work, "README.md", b"# fixture\n", "first");
    commit_file(&work, "assets/big.bin", &noise(BIG), "a several-MiB binary");
    git(&work, &["tag", "v0.9"]); // lightweight
    commit_file(&work, "src/lib.rs", b"pub fn f() {}\n", "code");
    git(&work, &["tag", "-a", "v1.0", "-m", "release 1.0"]); // annotated
    git(
        &work,
        &["tag", "-a", "v1.0-signed-off", "-m", "tag of a tag", "v1.0"],
    );
    git(&work, &["checkout", "-q", "-b", "feature/x"]);
    commit_file(&work, "feature.txt", b"feature\n", "feature work");
    git(&work, &["checkout", "-q", "-b", "ünïcode-ветка-分支"]);
    commit_file(
        &work,
        "unicode.txt",
        "ünïcode\n".as_bytes(),
        "ünïcode commit",
    );
    git(&work, &["checkout", "-q", "trunk"]);
    git(&work, &["notes", "add", "-m", "a note on trunk", "HEAD"]);
    let trunk = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let blob = git(&work, &["rev-parse", "HEAD:README.md"])
        .trim()
        .to_owned();
    let tree = git(&work, &["rev-parse", "HEAD^{tree}"]).trim().to_owned();
    let feature = git(&work, &["rev-parse", "feature/x"]).trim().to_owned();
    // Custom namespaces, refs to a blob and a tree, a few hundred branches. Several branches
    // share trunk's commit so `git clone` has to choose among them by the bundle's order.
    let mut updates = format!(
        "create refs/custom/review/1 {feature}\n\
         create refs/custom/blob {blob}\n\
         create refs/custom/tree {tree}\n\
         create refs/heads/aaa-same-as-trunk {trunk}\n\
         create refs/heads/zzz-same-as-trunk {trunk}\n"
    );
    for i in 0..300 {
        let target = if i % 2 == 0 { &trunk } else { &feature };
        updates.push_str(&format!("create refs/heads/many/branch-{i:03} {target}\n"));
    }
    git_stdin(&work, &["update-ref", "--stdin"], updates.as_bytes());
    let bare = root.join("server.git");
    git(root, &["clone", "-q", "--mirror", "work", "server.git"]);
    assert_eq!(
        git(&bare, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/trunk"
    );
    bare
}

/// A small bare "server" repository (`root/<name>.git`, work tree `root/<name>`) with default
/// branch `branch`, a second branch and both kinds of tag.
fn simple_repo(root: &Path, name: &str, branch: &str) -> PathBuf {
    let work = root.join(name);
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", branch]);
    commit_file(&work, "a.txt", b"a\n", "a");
    git(&work, &["tag", "light"]);
    commit_file(&work, "b.bin", &noise(64 * 1024), "b");
    git(&work, &["tag", "-a", "annotated", "-m", "annotated"]);
    git(&work, &["branch", "side"]);
    git(&work, &["branch", "doomed"]);
    let bare = format!("{name}.git");
    git(root, &["clone", "-q", "--mirror", name, &bare]);
    root.join(bare)
}

fn file_url(path: &Path) -> Url {
    Url::from_file_path(path).unwrap()
}

fn fetch_into(dir: &Path, url: &Url) -> Result<mirror::Mirror, MirrorError> {
    let cancel = CancellationToken::new();
    mirror::fetch(
        dir,
        &FetchOptions {
            url,
            auth: None,
            cancel: &cancel,
            on_progress: None,
        },
    )
}

/// Restores `bundle` the way a user would, twice: `git clone --mirror` (every ref) and a plain
/// `git clone` (checked-out branch). Asserts both match `expected` and `head`.
fn assert_restores(root: &Path, bundle: &Path, expected: &BTreeMap<String, String>, head: &str) {
    let name = bundle.file_stem().unwrap().to_str().unwrap();
    let bundle = bundle.to_str().unwrap();
    let mirror = format!("restored-{name}.git");
    let clone = format!("restored-{name}");

    git(root, &["clone", "-q", "--mirror", bundle, &mirror]);
    let mirror = root.join(mirror);
    assert_eq!(&show_refs(&mirror), expected, "refs of git clone --mirror");
    assert_eq!(git(&mirror, &["symbolic-ref", "HEAD"]).trim(), head);
    git(&mirror, &["fsck", "--full", "--strict", "--no-progress"]);

    git(root, &["clone", "-q", bundle, &clone]);
    let clone = root.join(clone);
    assert_eq!(git(&clone, &["symbolic-ref", "HEAD"]).trim(), head);
    assert_eq!(
        git(&clone, &["rev-parse", "HEAD"]).trim(),
        expected[head],
        "checked-out commit"
    );
    assert!(git(&clone, &["status", "--porcelain"]).is_empty());
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn pack_count(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("objects/pack"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pack")
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// fetch

#[test]
fn fetch_mirrors_every_ref_and_points_head_at_the_default_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let server = rich_repo(tmp.path());
    let dir = tmp.path().join("mirror.git");
    let cancel = CancellationToken::new();
    let seen = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (seen2, calls2) = (seen.clone(), calls.clone());
    let progress = move |bytes: u64| {
        // Totals only ever grow.
        assert!(bytes >= seen2.swap(bytes, Ordering::SeqCst));
        calls2.fetch_add(1, Ordering::SeqCst);
    };
    let url = file_url(&server);
    let m = mirror::fetch(
        &dir,
        &FetchOptions {
            url: &url,
            auth: None,
            cancel: &cancel,
            on_progress: Some(&progress),
        },
    )
    .unwrap();

    let expected = show_refs(&server);
    assert!(expected.len() > 300, "fixture has a few hundred refs");
    for name in [
        "refs/heads/trunk",
        "refs/heads/ünïcode-ветка-分支",
        "refs/tags/v0.9",
        "refs/tags/v1.0",
        "refs/notes/commits",
        "refs/custom/review/1",
        "refs/custom/blob",
    ] {
        assert!(expected.contains_key(name), "fixture lacks {name}");
    }
    assert_eq!(m.refs, expected);
    assert_eq!(show_refs(&dir), expected);
    assert_eq!(m.head.as_deref(), Some("refs/heads/trunk"));
    assert_eq!(
        git(&dir, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/trunk"
    );
    assert!(m.received_bytes > BIG as u64, "{} bytes", m.received_bytes);
    assert!(calls.load(Ordering::SeqCst) > 0);
    assert_eq!(seen.load(Ordering::SeqCst), m.received_bytes);
    // What libgit2 left behind is what the bundle's fast path relies on (NOTES §3).
    assert_eq!(pack_count(&dir), 1);
    git(&dir, &["fsck", "--full", "--no-progress"]);
}

#[test]
fn fetch_of_an_empty_repository_is_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let server = tmp.path().join("empty.git");
    std::fs::create_dir(&server).unwrap();
    git(&server, &["init", "-q", "--bare", "-b", "main"]);
    let dir = tmp.path().join("mirror.git");

    let m = fetch_into(&dir, &file_url(&server)).unwrap();
    assert!(m.refs.is_empty());
    assert_eq!(m.head, None);

    let out = tmp.path().join("empty.bundle");
    assert_eq!(bundle::write(&dir, &out).unwrap(), None);
    assert!(!out.exists(), "no file for an empty repository");
}

#[test]
fn a_cancelled_fetch_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let server = rich_repo(tmp.path());
    let url = file_url(&server);

    // Already cancelled: nothing happens at all.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = mirror::fetch(
        &tmp.path().join("m1.git"),
        &FetchOptions {
            url: &url,
            auth: None,
            cancel: &cancel,
            on_progress: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, MirrorError::Cancelled { .. }), "{err:?}");

    // Cancelled while the pack streams in.
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let on_progress = move |_: u64| trigger.cancel();
    let err = mirror::fetch(
        &tmp.path().join("m2.git"),
        &FetchOptions {
            url: &url,
            auth: None,
            cancel: &cancel,
            on_progress: Some(&on_progress),
        },
    )
    .unwrap_err();
    assert!(matches!(err, MirrorError::Cancelled { .. }), "{err:?}");
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[test]
fn an_unreachable_server_is_a_network_error_naming_the_url() {
    // Bind then drop: nothing listens on the port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/team/repo.git")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = fetch_into(&tmp.path().join("m.git"), &url).unwrap_err();
    assert!(matches!(err, MirrorError::Network { .. }), "{err:?}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains("could not connect"), "{text}");
    assert!(text.contains(url.as_str()), "{text}");
}

/// A server that answers every request with 401 and records the requests' headers. It stops
/// after `deadline` or once the test drops the returned handle's listener.
fn always_401_server() -> (Url, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            log.lock().unwrap().push(head);
            let mut stream = reader.into_inner();
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let _ = stream.flush();
            let _ = stream.read(&mut [0; 1]);
        }
    });
    let url = Url::parse(&format!("http://127.0.0.1:{port}/team/repo.git")).unwrap();
    (url, requests)
}

#[test]
fn a_refused_token_fails_fast_without_leaking_it() {
    const TOKEN: &str = "tok-Zm9vYmFyLXRoaXMtaXMtc2VjcmV0";
    let (url, requests) = always_401_server();
    let auth = GitAuth {
        username: "x-token-auth".into(),
        password: Secret::new(TOKEN),
    };
    let cancel = CancellationToken::new();
    let tmp = tempfile::tempdir().unwrap();
    let err = mirror::fetch(
        &tmp.path().join("m.git"),
        &FetchOptions {
            url: &url,
            auth: Some(&auth),
            cancel: &cancel,
            on_progress: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, MirrorError::AuthRejected { .. }), "{err:?}");
    assert!(!err.is_transient());
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }
    // One anonymous probe, one try with the token, then we stop (libgit2 alone would go on
    // to 15 replays).
    let requests = requests.lock().unwrap();
    let with_auth = requests
        .iter()
        .filter(|r| r.to_ascii_lowercase().contains("authorization: basic"))
        .count();
    assert!(
        requests.len() <= 2,
        "{} requests: {requests:#?}",
        requests.len()
    );
    assert_eq!(with_auth, 1, "{requests:#?}");
    assert!(requests.iter().all(|r| !r.contains(TOKEN)));
}

#[test]
fn no_credentials_for_a_server_that_wants_them_is_an_auth_failure() {
    let (url, _requests) = always_401_server();
    let tmp = tempfile::tempdir().unwrap();
    let err = fetch_into(&tmp.path().join("m.git"), &url).unwrap_err();
    assert!(matches!(err, MirrorError::AuthRejected { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// bundle

#[test]
fn bundle_of_a_fresh_mirror_reuses_its_pack_and_restores_with_stock_git() {
    let tmp = tempfile::tempdir().unwrap();
    let server = rich_repo(tmp.path());
    let dir = tmp.path().join("mirror.git");
    fetch_into(&dir, &file_url(&server)).unwrap();
    let out = tmp.path().join("fresh.bundle");

    let info = bundle::write(&dir, &out).unwrap().expect("refs to bundle");
    assert!(info.pack_reused, "a fresh mirror's single pack is copied");
    let expected = show_refs(&server);
    assert_eq!(info.refs, expected);
    assert_eq!(info.head.as_deref(), Some("refs/heads/trunk"));
    assert_eq!(info.size, std::fs::metadata(&out).unwrap().len());
    assert_eq!(info.sha256, sha256_of(&out));
    assert!(info.size > BIG as u64);

    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.starts_with(b"# v2 git bundle\n"));
    let trunk = &expected["refs/heads/trunk"];
    let header_end = bytes.windows(6).position(|w| w == b"\n\nPACK").unwrap();
    let header = String::from_utf8(bytes[..header_end].to_vec()).unwrap();
    assert!(
        header.ends_with(&format!("{trunk} refs/heads/trunk\n{trunk} HEAD")),
        "default branch last, then HEAD: ...{}",
        &header[header.len().saturating_sub(200)..]
    );

    // `verify` needs to run inside some repository; it checks header and prerequisites only.
    git(&server, &["bundle", "verify", "-q", out.to_str().unwrap()]);
    let listed = git(&server, &["bundle", "list-heads", out.to_str().unwrap()]);
    assert_eq!(listed.lines().count(), expected.len() + 1);
    assert_restores(tmp.path(), &out, &expected, "refs/heads/trunk");

    // Byte for byte: the pack section is exactly the mirror's pack file.
    let pack = std::fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    assert_eq!(&bytes[header_end + 2..], std::fs::read(pack).unwrap());
}

#[test]
fn bundle_falls_back_to_a_new_pack_when_the_mirror_has_two() {
    let tmp = tempfile::tempdir().unwrap();
    // libgit2's local transport cannot re-fetch into a mirror holding refs to trees or blobs
    // ("object is not a committish" while hiding the local tips), so not the rich fixture.
    let server = simple_repo(tmp.path(), "simple", "develop");
    let dir = tmp.path().join("mirror.git");
    let url = file_url(&server);
    fetch_into(&dir, &url).unwrap();
    // New history on the server, fetched again into the same mirror: a second pack.
    let work = tmp.path().join("simple");
    commit_file(&work, "later.txt", b"later\n", "later");
    git(&work, &["branch", "-D", "doomed"]);
    git(&work, &["push", "-q", "--mirror", server.to_str().unwrap()]);
    let m = fetch_into(&dir, &url).unwrap();
    assert_eq!(pack_count(&dir), 2);
    let expected = show_refs(&server);
    assert_eq!(m.refs, expected, "pruned and updated");

    let out = tmp.path().join("twopacks.bundle");
    let info = bundle::write(&dir, &out).unwrap().unwrap();
    assert!(!info.pack_reused);
    assert_eq!(info.refs, expected);
    assert_eq!(info.sha256, sha256_of(&out));
    assert_eq!(info.size, std::fs::metadata(&out).unwrap().len());
    assert!(!info.refs.contains_key("refs/heads/doomed"));
    git(&server, &["bundle", "verify", "-q", out.to_str().unwrap()]);
    assert_restores(tmp.path(), &out, &expected, "refs/heads/develop");
}

#[test]
fn bundle_of_a_repository_with_loose_objects_builds_a_pack() {
    // The fixture's work tree was made by `git commit`: loose objects plus, from `git notes`
    // and `update-ref`, no pack at all. HEAD is trunk.
    let tmp = tempfile::tempdir().unwrap();
    rich_repo(tmp.path());
    let work = tmp.path().join("work");
    let out = tmp.path().join("loose.bundle");
    let info = bundle::write(&work, &out).unwrap().unwrap();
    assert!(!info.pack_reused);
    let expected = show_refs(&work);
    assert_eq!(info.refs, expected);
    assert_restores(tmp.path(), &out, &expected, "refs/heads/trunk");
}

#[test]
fn a_pack_that_disagrees_with_its_index_is_an_error_not_a_broken_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let server = rich_repo(tmp.path());
    let dir = tmp.path().join("mirror.git");
    fetch_into(&dir, &file_url(&server)).unwrap();
    // Damage the pack's trailing checksum: copied as is, `git clone` would fail in index-pack.
    let pack = std::fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::remove_file(&pack).unwrap(); // read-only
    std::fs::write(&pack, bytes).unwrap();

    let err = bundle::write(&dir, &tmp.path().join("damaged.bundle")).unwrap_err();
    assert!(matches!(err, BundleError::Repo { .. }), "{err:?}");
    assert!(
        err.to_string().contains("does not match its index"),
        "{err}"
    );
}

#[test]
fn a_ref_to_a_missing_object_is_an_error_not_a_broken_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let server = rich_repo(tmp.path());
    let dir = tmp.path().join("mirror.git");
    fetch_into(&dir, &file_url(&server)).unwrap();
    // Neither git nor libgit2 will create such a ref; write the file by hand.
    let missing = "0123456789abcdef0123456789abcdef01234567";
    std::fs::write(dir.join("refs/heads/broken"), format!("{missing}\n")).unwrap();

    let out = tmp.path().join("broken.bundle");
    let err = bundle::write(&dir, &out).unwrap_err();
    assert!(matches!(err, BundleError::Repo { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("refs/heads/broken") && text.contains(missing),
        "{text}"
    );
}

#[test]
fn a_sha256_repository_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("sha256.git");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "--bare", "--object-format=sha256"]);
    let err = bundle::write(&repo, &tmp.path().join("x.bundle")).unwrap_err();
    assert!(
        matches!(err, BundleError::UnsupportedObjectFormat { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("sha256"), "{err}");
}

#[test]
fn a_detached_head_still_gets_a_head_line() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    commit_file(&work, "a", b"a\n", "a");
    commit_file(&work, "b", b"b\n", "b");
    git(&work, &["checkout", "-q", "--detach", "HEAD~1"]);
    let out = tmp.path().join("detached.bundle");
    let info = bundle::write(&work, &out).unwrap().unwrap();
    assert_eq!(info.head, None);
    let listed = git(&work, &["bundle", "list-heads", out.to_str().unwrap()]);
    let head = git(&work, &["rev-parse", "HEAD"]);
    assert!(
        listed.contains(&format!("{} HEAD", head.trim())),
        "{listed}"
    );
    git(
        tmp.path(),
        &["clone", "-q", "--mirror", out.to_str().unwrap(), "r.git"],
    );
    assert_eq!(show_refs(&tmp.path().join("r.git")), show_refs(&work));
}
