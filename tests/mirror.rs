//! `mirror::fetch` and `bundle::write` against real repositories made by the git CLI, judged
//! by stock git: a bundle counts as good only when `git clone` of it gives back every ref and
//! checks out the default branch.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
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

use crate::support::bitbucket::{ConsumerOpts, Emulator, GIT_TOKEN_USER, RepoOpts};
use crate::support::git::{empty_repo, git, git_stdin, rich_repo, show_refs, simple_repo};

// ---------------------------------------------------------------------------------------------
// fixtures

/// Size of the binary file in the shared `rich_repo` fixture.
const BIG: u64 = 4 * 1024 * 1024;

/// The shared `rich_repo` (HEAD on `trunk`, ~300 branches and tags, notes, a custom namespace,
/// non-ASCII names, a 4 MiB binary, a tag of a tag) plus refs only a mirror test cares about:
/// refs naming a blob and a tree (the pack must carry them although no commit reaches them
/// through a ref walk), and branches on trunk's own commit, so `git clone` of the bundle has to
/// pick the default branch among several at the same commit.
fn server_repo(root: &Path) -> PathBuf {
    let repo = rich_repo(root, "server");
    let rev = |spec: &str| git(&repo, &["rev-parse", spec]).trim().to_owned();
    let (trunk, blob, tree) = (rev("trunk"), rev("trunk:README.md"), rev("trunk^{tree}"));
    let updates = format!(
        "create refs/custom/blob {blob}\n\
         create refs/custom/tree {tree}\n\
         create refs/heads/aaa-same-as-trunk {trunk}\n\
         create refs/heads/zzz-same-as-trunk {trunk}\n"
    );
    git_stdin(&repo, &["update-ref", "--stdin"], updates.as_bytes());
    repo
}

/// Refs without the `HEAD` entry that `show_refs` adds.
fn refs_only(mut refs: BTreeMap<String, String>) -> BTreeMap<String, String> {
    refs.remove("HEAD");
    refs
}

/// Restores `bundle` the way a user would, twice: `git clone --mirror` must give back every
/// ref and HEAD of `expected` (a `show_refs` map), and a plain `git clone` must check out the
/// default branch with a clean work tree.
fn assert_restores(root: &Path, bundle: &Path, expected: &BTreeMap<String, String>) {
    let name = bundle.file_stem().unwrap().to_str().unwrap();
    let bundle = bundle.to_str().unwrap();
    let mirror = format!("restored-{name}.git");
    let clone = format!("restored-{name}");
    let head = &expected["HEAD"];

    git(root, &["clone", "-q", "--mirror", bundle, &mirror]);
    let mirror = root.join(mirror);
    assert_eq!(
        &show_refs(&mirror),
        expected,
        "git clone --mirror of the bundle"
    );
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

fn packs(repo: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(repo.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect()
}

fn fetch_into(dir: &Path, url: &Url) -> Result<mirror::Mirror, MirrorError> {
    fetch_with(dir, url, None)
}

fn fetch_with(
    dir: &Path,
    url: &Url,
    auth: Option<&GitAuth>,
) -> Result<mirror::Mirror, MirrorError> {
    let cancel = CancellationToken::new();
    mirror::fetch(
        dir,
        &FetchOptions {
            url,
            auth,
            cancel: &cancel,
            deadline: None,
            on_progress: None,
        },
    )
}

fn file_url(path: &Path) -> Url {
    Url::from_file_path(path).unwrap()
}

/// Fetches `server` into `root/<name>.git`, bundles it to `root/<name>.bundle`.
fn mirror_and_bundle(root: &Path, url: &Url, name: &str) -> (PathBuf, bundle::BundleInfo) {
    let dir = root.join(format!("{name}.git"));
    fetch_into(&dir, url).unwrap();
    let out = root.join(format!("{name}.bundle"));
    let info = bundle::write(&dir, &out).unwrap().expect("refs to bundle");
    (out, info)
}

// ---------------------------------------------------------------------------------------------
// fetch

#[test]
fn fetch_mirrors_every_ref_and_points_head_at_the_default_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_repo(tmp.path());
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
            deadline: None,
            on_progress: Some(&progress),
        },
    )
    .unwrap();

    let expected = show_refs(&server);
    assert!(expected.len() > 300, "fixture has a few hundred refs");
    for name in [
        "refs/heads/trunk",
        "refs/heads/feature/ünïcødé",
        "refs/tags/v2.0-ünï",
        "refs/tags/lw-000",
        "refs/tags/v1.0",
        "refs/tags/v1.0-signed-off",
        "refs/notes/commits",
        "refs/custom/x",
        "refs/custom/blob",
        "refs/custom/tree",
    ] {
        assert!(expected.contains_key(name), "fixture lacks {name}");
    }
    assert_eq!(m.refs, refs_only(expected.clone()));
    assert_eq!(show_refs(&dir), expected, "refs and HEAD of the mirror");
    assert_eq!(m.head.as_deref(), Some("refs/heads/trunk"));
    assert!(m.received_bytes > BIG, "{} bytes", m.received_bytes);
    assert!(calls.load(Ordering::SeqCst) > 0);
    assert_eq!(seen.load(Ordering::SeqCst), m.received_bytes);
    // What libgit2 leaves behind is what the bundle's fast path relies on (NOTES §3).
    assert_eq!(packs(&dir).len(), 1);
    // No copy of the system's template directory (sample hooks): files nothing reads.
    let hooks: Vec<_> = std::fs::read_dir(dir.join("hooks"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        hooks
            .iter()
            .all(|h| !h.to_string_lossy().ends_with(".sample") || h == "README.sample"),
        "{hooks:?}"
    );
    git(&dir, &["fsck", "--full", "--no-progress"]);
}

#[test]
fn fetch_of_an_empty_repository_is_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let server = empty_repo(tmp.path(), "empty");
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
    let server = rich_repo(tmp.path(), "server");
    let url = file_url(&server);

    // Already cancelled: nothing happens at all.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let dir = tmp.path().join("m1.git");
    let err = mirror::fetch(
        &dir,
        &FetchOptions {
            url: &url,
            auth: None,
            cancel: &cancel,
            deadline: None,
            on_progress: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, MirrorError::Cancelled { .. }), "{err:?}");
    assert!(!dir.exists());

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
            deadline: None,
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

/// A server that answers every request with 401 and records the request heads. It stops by
/// itself after 20 s.
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
        username: GIT_TOKEN_USER.into(),
        password: Secret::new(TOKEN),
    };
    let tmp = tempfile::tempdir().unwrap();
    let err = fetch_with(&tmp.path().join("m.git"), &url, Some(&auth)).unwrap_err();
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
fn no_credentials_for_a_server_that_wants_them_says_none_are_configured() {
    let (url, _requests) = always_401_server();
    let tmp = tempfile::tempdir().unwrap();
    let err = fetch_into(&tmp.path().join("m.git"), &url).unwrap_err();
    // Not "refused": nothing was sent, so there is nothing to renew either.
    assert!(
        matches!(err, MirrorError::CredentialsRequired { .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// against the Bitbucket emulator (git http-backend behind Basic auth)

const KEY: &str = "mirror-consumer";

fn emulator_with(root: &Path) -> (Emulator, PathBuf) {
    let emu = Emulator::start_blocking();
    emu.add_consumer(KEY, "mirror-secret", ConsumerOpts::default());
    let server = server_repo(root);
    emu.add_repo("team", "rich", &server, RepoOpts::default());
    (emu, server)
}

#[test]
fn fetch_over_http_with_the_token_then_bundle_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let (emu, server) = emulator_with(tmp.path());
    let auth = GitAuth {
        username: GIT_TOKEN_USER.into(),
        password: Secret::new(emu.mint_token(KEY)),
    };
    let url = Url::parse(&emu.git_url("team", "rich")).unwrap();
    assert_eq!(url.username(), "");
    let dir = tmp.path().join("http.git");
    let m = fetch_with(&dir, &url, Some(&auth)).unwrap();
    let expected = show_refs(&server);
    assert_eq!(m.refs, refs_only(expected.clone()));
    assert_eq!(m.head.as_deref(), Some("refs/heads/trunk"));
    assert_eq!(packs(&dir).len(), 1, "one pack over smart HTTP too");

    let out = tmp.path().join("http.bundle");
    let info = bundle::write(&dir, &out).unwrap().unwrap();
    assert!(info.pack_reused);
    assert_restores(tmp.path(), &out, &expected);
}

#[test]
fn a_wrong_token_is_rejected_after_one_try() {
    const WRONG: &str = "wrong-token-0123456789abcdef";
    let tmp = tempfile::tempdir().unwrap();
    let (emu, _) = emulator_with(tmp.path());
    let auth = GitAuth {
        username: GIT_TOKEN_USER.into(),
        password: Secret::new(WRONG),
    };
    let url = Url::parse(&emu.git_url("team", "rich")).unwrap();
    let err = fetch_with(&tmp.path().join("m.git"), &url, Some(&auth)).unwrap_err();
    assert!(matches!(err, MirrorError::AuthRejected { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(WRONG));
    // The anonymous probe and one try with the token: the callback ran at most twice.
    let stats = emu.stats();
    assert!((1..=2).contains(&stats.git_requests), "{stats:?}");
    assert_eq!(stats.unauthorized, stats.git_requests, "{stats:?}");
}

#[test]
fn a_server_error_is_transient() {
    let tmp = tempfile::tempdir().unwrap();
    let (emu, _) = emulator_with(tmp.path());
    emu.fail_repo("team", "rich", 503);
    let auth = GitAuth {
        username: GIT_TOKEN_USER.into(),
        password: Secret::new(emu.mint_token(KEY)),
    };
    let url = Url::parse(&emu.git_url("team", "rich")).unwrap();
    let err = fetch_with(&tmp.path().join("m.git"), &url, Some(&auth)).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(url.as_str()), "{err}");
}

// ---------------------------------------------------------------------------------------------
// bundle

#[test]
fn bundle_of_a_fresh_mirror_reuses_its_pack_and_restores_with_stock_git() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_repo(tmp.path());
    let (out, info) = mirror_and_bundle(tmp.path(), &file_url(&server), "fresh");
    assert!(info.pack_reused, "a fresh mirror's single pack is copied");
    let expected = show_refs(&server);
    assert_eq!(info.refs, refs_only(expected.clone()));
    assert_eq!(info.head.as_deref(), Some("refs/heads/trunk"));
    assert_eq!(info.size, std::fs::metadata(&out).unwrap().len());
    assert_eq!(info.sha256, sha256_of(&out));
    assert!(info.size > BIG);

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

    // `verify` must run inside some repository; it checks the header and prerequisites only,
    // which is why the restores below are the real test.
    git(&server, &["bundle", "verify", "-q", out.to_str().unwrap()]);
    let listed = git(&server, &["bundle", "list-heads", out.to_str().unwrap()]);
    assert_eq!(listed.lines().count(), expected.len());
    assert_restores(tmp.path(), &out, &expected);

    // Byte for byte: the pack section is exactly the mirror's pack file.
    let pack = packs(&tmp.path().join("fresh.git")).pop().unwrap();
    assert_eq!(&bytes[header_end + 2..], std::fs::read(pack).unwrap());
}

/// What the backup uploads: `prepare` on a fresh mirror writes no bundle file and names the
/// mirror's own pack; header + pack are byte for byte the bundle `write` makes, with the same
/// size and SHA-256, and that bundle restores.
#[test]
fn prepare_uploads_the_mirrors_pack_behind_the_header_without_a_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let server = simple_repo(tmp.path(), "simple", "develop");
    let dir = tmp.path().join("mirror.git");
    fetch_into(&dir, &file_url(&server)).unwrap();
    let pack = packs(&dir).pop().unwrap();

    let unused = tmp.path().join("unused.bundle");
    let (info, bytes) = bundle::prepare(&dir, &unused, None).unwrap().expect("refs");
    assert!(
        !unused.exists(),
        "no bundle copy is written when the pack is reused"
    );
    assert!(info.pack_reused);
    assert_eq!(bytes.body, pack);
    assert_eq!(bytes.body_len, std::fs::metadata(&pack).unwrap().len());
    assert!(bytes.header.starts_with(b"# v2 git bundle\n"));
    assert!(bytes.header.ends_with(b" HEAD\n\n"));

    let mut assembled = bytes.header.clone();
    assembled.extend(std::fs::read(&pack).unwrap());
    assert_eq!(info.size, assembled.len() as u64);
    assert_eq!(info.sha256, hex::encode(Sha256::digest(&assembled)));

    let out = tmp.path().join("written.bundle");
    let written = bundle::write(&dir, &out).unwrap().unwrap();
    assert_eq!(written, info);
    assert_eq!(std::fs::read(&out).unwrap(), assembled);
    assert_restores(tmp.path(), &out, &show_refs(&server));
}

/// When a pack has to be built, `prepare` writes the whole bundle to `out` and says so: no
/// header in front of it, the file is the upload.
#[test]
fn prepare_writes_the_bundle_file_when_it_builds_a_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let server = simple_repo(tmp.path(), "simple", "develop");
    let dir = tmp.path().join("mirror.git");
    fetch_into(&dir, &file_url(&server)).unwrap();
    // A loose object next to the pack rules out reuse.
    git_stdin(&dir, &["hash-object", "-w", "--stdin"], b"loose\n");

    let out = tmp.path().join("built.bundle");
    let (info, bytes) = bundle::prepare(&dir, &out, None).unwrap().expect("refs");
    assert!(!info.pack_reused);
    assert!(bytes.header.is_empty());
    assert_eq!(bytes.body, out);
    assert_eq!(bytes.body_len, std::fs::metadata(&out).unwrap().len());
    assert_eq!(
        (info.size, info.sha256.as_str()),
        (bytes.body_len, sha256_of(&out).as_str())
    );
    assert_restores(tmp.path(), &out, &show_refs(&server));
}

#[test]
fn bundle_falls_back_to_a_new_pack_when_the_mirror_has_two() {
    let tmp = tempfile::tempdir().unwrap();
    // libgit2's local transport cannot re-fetch into a mirror holding refs to trees or blobs
    // ("object is not a committish" while hiding the local tips), so not the rich fixture.
    let server = simple_repo(tmp.path(), "simple", "develop");
    git(&server, &["branch", "doomed", "develop~1"]);
    git(&server, &["tag", "-a", "v1", "-m", "v1", "develop~2"]);
    let dir = tmp.path().join("mirror.git");
    let url = file_url(&server);
    fetch_into(&dir, &url).unwrap();

    // New history on the server, fetched again into the same mirror: a second pack, and a
    // deleted branch pruned.
    git(
        tmp.path(),
        &["clone", "-q", server.to_str().unwrap(), "work"],
    );
    let work = tmp.path().join("work");
    std::fs::write(work.join("later.txt"), "later\n").unwrap();
    git(&work, &["add", "later.txt"]);
    git(&work, &["commit", "-q", "-m", "later"]);
    git(&work, &["push", "-q", "origin", "develop"]);
    git(&server, &["branch", "-D", "doomed"]);
    let m = fetch_into(&dir, &url).unwrap();
    assert_eq!(packs(&dir).len(), 2);
    let expected = show_refs(&server);
    assert_eq!(m.refs, refs_only(expected.clone()), "pruned and updated");

    let out = tmp.path().join("twopacks.bundle");
    let info = bundle::write(&dir, &out).unwrap().unwrap();
    assert!(!info.pack_reused);
    assert_eq!(info.refs, refs_only(expected.clone()));
    assert_eq!(info.sha256, sha256_of(&out));
    assert_eq!(info.size, std::fs::metadata(&out).unwrap().len());
    git(&server, &["bundle", "verify", "-q", out.to_str().unwrap()]);
    assert_restores(tmp.path(), &out, &expected);
}

#[test]
fn bundle_of_a_repository_with_loose_objects_builds_a_pack() {
    // A local `clone --mirror` hard-links the pack; then a loose blob, tree and commit, with
    // refs to each, so the PackBuilder has to find every kind of tip.
    let tmp = tempfile::tempdir().unwrap();
    let server = server_repo(tmp.path());
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--mirror",
            server.to_str().unwrap(),
            "loose.git",
        ],
    );
    let repo = tmp.path().join("loose.git");
    let blob = git_stdin(&repo, &["hash-object", "-w", "--stdin"], b"loose blob\n");
    let blob = blob.trim();
    let tree = git_stdin(
        &repo,
        &["mktree"],
        format!("100644 blob {blob}\tloose.txt\n").as_bytes(),
    );
    let tree = tree.trim();
    let commit = git(
        &repo,
        &["commit-tree", tree, "-p", "trunk", "-m", "loose commit"],
    );
    let updates = format!(
        "create refs/heads/loose {}\ncreate refs/custom/loose-blob {blob}\n\
         create refs/custom/loose-tree {tree}\n",
        commit.trim()
    );
    git_stdin(&repo, &["update-ref", "--stdin"], updates.as_bytes());

    let out = tmp.path().join("loose.bundle");
    let info = bundle::write(&repo, &out).unwrap().unwrap();
    assert!(!info.pack_reused);
    let expected = show_refs(&repo);
    assert_eq!(info.refs, refs_only(expected.clone()));
    assert_eq!(info.head.as_deref(), Some("refs/heads/trunk"));
    assert_restores(tmp.path(), &out, &expected);
}

#[test]
fn a_pack_that_disagrees_with_its_index_is_an_error_not_a_broken_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let server = rich_repo(tmp.path(), "server");
    let dir = tmp.path().join("mirror.git");
    fetch_into(&dir, &file_url(&server)).unwrap();
    // Damage the pack's trailing checksum: copied as is, `git clone` would fail in index-pack.
    let pack = packs(&dir).pop().unwrap();
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
    let server = simple_repo(tmp.path(), "simple", "main");
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
    git(
        tmp.path(),
        &[
            "init",
            "-q",
            "--bare",
            "--object-format=sha256",
            "sha256.git",
        ],
    );
    let err =
        bundle::write(&tmp.path().join("sha256.git"), &tmp.path().join("x.bundle")).unwrap_err();
    assert!(
        matches!(err, BundleError::UnsupportedObjectFormat { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("sha256"), "{err}");
}

#[test]
fn a_detached_head_still_gets_a_head_line() {
    let tmp = tempfile::tempdir().unwrap();
    let server = simple_repo(tmp.path(), "simple", "main");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--mirror",
            server.to_str().unwrap(),
            "detached.git",
        ],
    );
    let repo = tmp.path().join("detached.git");
    let old = git(&repo, &["rev-parse", "main~1"]);
    git(&repo, &["update-ref", "--no-deref", "HEAD", old.trim()]);

    let out = tmp.path().join("detached.bundle");
    let info = bundle::write(&repo, &out).unwrap().unwrap();
    assert_eq!(info.head, None, "HEAD is not symbolic");
    let listed = git(&repo, &["bundle", "list-heads", out.to_str().unwrap()]);
    assert!(listed.contains(&format!("{} HEAD", old.trim())), "{listed}");
    git(
        tmp.path(),
        &["clone", "-q", "--mirror", out.to_str().unwrap(), "r.git"],
    );
    assert_eq!(
        refs_only(show_refs(&tmp.path().join("r.git"))),
        refs_only(show_refs(&repo))
    );
}
