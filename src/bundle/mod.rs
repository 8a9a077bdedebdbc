//! Write a mirror as a standard `git bundle`, without the git executable.
//!
//! A bundle is the restore format because stock git reads it (`git clone x.bundle`) with no
//! tool of ours around; a bundle git cannot read is worth nothing, so this module is careful
//! about two things:
//!
//! - **The header** (`gitformat-bundle`): `# v2 git bundle`, one `<oid> <refname>` line per ref,
//!   a `<oid> HEAD` line so `git clone` knows what to check out, an empty line, then a pack.
//!   git reads the ref lines into a list in reverse order and, with no symref information in a
//!   bundle, picks as HEAD the *first* branch of that list whose oid matches the HEAD line; so
//!   the default branch is written *last* among the refs, which makes it win ties with other
//!   branches at the same commit. (git still prefers `init.defaultBranch`, then `master`, when
//!   one of those is at the same commit: no bundle can say otherwise.)
//! - **The pack.** A fresh libgit2 mirror holds exactly one complete, self-contained pack (the
//!   indexer completes thin packs and never explodes to loose objects), so the common case is a
//!   byte-for-byte stream copy: no CPU, memory independent of repository size. The copy is only
//!   trusted when nothing could be missing from it (one pack, no loose objects, no alternates,
//!   no promisor pack, not shallow, every ref tip inside it, pack and index agreeing). Otherwise
//!   libgit2's `PackBuilder` builds a pack of everything reachable from the refs and streams it
//!   out through `foreach`; `write_buf` would hold the whole pack in memory.
//!
//! [`prepare`] does not copy a reused pack into a bundle file: it returns the header and the
//! pack's path, and the store uploads the two back to back. That saves writing (and later
//! deleting) a second copy of every repository: half of the temp disk, and a few percent of a
//! backup run's CPU. The SHA-256 is computed from the same bytes in the same order,
//! by one read of the pack (just written by the indexer, so normally still in the page cache).
//! [`write`] produces a real bundle file, for callers that want one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub mod header;
pub mod read;
mod reuse;
pub mod walk;

use reuse::{PackSource, pack_source};

use self::header::HashAlgo;
use crate::crypt::Recipients;
use git2::{ConfigLevel, ObjectType, Odb, Oid, PackBuilder, Repository, Revwalk};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    pub size: u64,
    /// Hex SHA-256 of the bundle file's bytes.
    pub sha256: String,
    /// Symbolic target of HEAD (`refs/heads/main`), if HEAD resolves.
    pub head: Option<String>,
    /// Every ref in the bundle, name → hex oid (HEAD not included).
    pub refs: BTreeMap<String, String>,
    /// True when the mirror's single pack was copied byte for byte.
    pub pack_reused: bool,
    /// Set when the bundle was encrypted: then `size` and `sha256` are those of the
    /// encrypted bytes (what is stored), and this holds the plaintext's.
    pub encryption: Option<crate::manifest::Encryption>,
}

/// Where a prepared bundle's bytes are: `header`, then the first `body_len` bytes of the file
/// `body`. With a reused pack, `body` is the mirror's pack itself; with a built pack, it is the
/// `out` file given to [`prepare`], holding the whole bundle (and `header` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleBytes {
    pub header: Vec<u8>,
    pub body: PathBuf,
    pub body_len: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("cannot read repository {path}: {message}")]
    Repo { path: String, message: String },
    #[error("cannot write bundle {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The repository uses an object format this build's libgit2 cannot read (sha256).
    #[error(
        "cannot bundle repository {path}: it uses the {format} object format, which this build \
         of libgit2 does not support"
    )]
    UnsupportedObjectFormat { path: String, format: String },
}

/// Buffer for the writer and for the pack copy: large enough that the syscall count is
/// negligible, small enough to not matter next to libgit2.
const BUF_SIZE: usize = 256 * 1024;

/// Limits for the `PackBuilder` fallback, which by default may cache 256 MiB of deltas and
/// hold ten whole objects (up to 512 MiB each) in its delta window. libgit2 reads
/// `pack.deltaCacheSize` for both the delta cache and the big-file threshold (a libgit2 quirk
/// in `packbuilder_config`), so objects above 16 MiB are stored whole instead of delta'd.
/// Measured on 460 MiB of incompressible blobs: peak RSS 350 MiB / 118 s without these
/// limits, 76 MiB / 25 s with them.
const PACK_LIMITS: &str = "[pack]\n\twindowMemory = 32m\n\tdeltaCacheSize = 16m\n";

/// Writes a bundle of every ref of the bare repository `repo` to the file `out`.
/// `Ok(None)` when the repository has no refs (git refuses empty bundles). Blocking.
pub fn write(repo: &Path, out: &Path) -> Result<Option<BundleInfo>, BundleError> {
    let Some((info, bytes)) = prepare(repo, out, None)? else {
        return Ok(None);
    };
    if bytes.body != out {
        let io_err = |source: io::Error| BundleError::Io {
            path: out.display().to_string(),
            source,
        };
        let mut w = BufWriter::with_capacity(BUF_SIZE, File::create(out).map_err(io_err)?);
        w.write_all(&bytes.header).map_err(io_err)?;
        let copied = copy_prefix(&bytes.body, bytes.body_len, &mut w).map_err(io_err)?;
        if copied != bytes.body_len {
            return Err(io_err(short_read(&bytes.body, copied, bytes.body_len)));
        }
        w.flush().map_err(io_err)?;
    }
    Ok(Some(info))
}

/// Makes the bundle of every ref of the bare repository `repo` ready for upload without
/// copying a reusable pack: see [`BundleBytes`]. `out` is written only when a new pack has to
/// be built, or when `encrypt_to` is given: then `out` is the age-encrypted bundle (header
/// and pack stream through the encryptor into it once, and both the plaintext and the
/// encrypted bytes are hashed on that one pass). `Ok(None)` when the repository has no refs.
/// Blocking.
pub fn prepare(
    repo: &Path,
    out: &Path,
    encrypt_to: Option<&Recipients>,
) -> Result<Option<(BundleInfo, BundleBytes)>, BundleError> {
    let repo_err = |message: String| BundleError::Repo {
        path: repo.display().to_string(),
        message,
    };
    let git_err = |e: git2::Error| repo_err(e.message().to_owned());

    // libgit2 without its experimental sha256 support refuses to open such a repository with
    // "unknown object format"; say what is going on instead.
    let format = object_format(repo);
    if format != "sha1" {
        return Err(BundleError::UnsupportedObjectFormat {
            path: repo.display().to_string(),
            format,
        });
    }
    let git = Repository::open(repo).map_err(git_err)?;
    if git.is_shallow() {
        return Err(repo_err(
            "the repository is shallow; a bundle of it could not be cloned".into(),
        ));
    }

    let head = read_head(&git);
    let refs = ordered_refs(&git, head.symbolic.as_deref()).map_err(git_err)?;
    if refs.is_empty() {
        return Ok(None);
    }

    // Decided before anything reads objects: a single pack that disagrees with its index is
    // damaged, and libgit2 would only say its objects are "not found".
    let source = pack_source(git.path()).map_err(repo_err)?;
    if let PackSource::Build(why) = &source {
        tracing::debug!(repo = %repo.display(), "building a new pack: {why}");
    }

    // A ref whose object is missing would make an unclonable bundle whichever way the pack is
    // made; an idx lookup per tip is cheap, and it is what makes the pack reuse below safe.
    let odb = git.odb().map_err(git_err)?;
    let tips = refs
        .iter()
        .map(|(name, oid)| (name.as_slice(), *oid))
        .chain(head.oid.map(|oid| (b"HEAD".as_slice(), oid)));
    for (name, oid) in tips {
        if !odb.exists(oid) {
            return Err(repo_err(format!(
                "{} points to {oid}, which is not in the repository",
                String::from_utf8_lossy(name)
            )));
        }
    }

    let header_refs: Vec<(&[u8], String)> = refs
        .iter()
        .map(|(name, oid)| (name.as_slice(), oid.to_string()))
        .collect();
    let head_hex = head.oid.map(|oid| oid.to_string());
    let header =
        header::encode(HashAlgo::Sha1, &header_refs, head_hex.as_deref()).map_err(repo_err)?;

    if let Some(recipients) = encrypt_to {
        let io_err = |source: io::Error| BundleError::Io {
            path: out.display().to_string(),
            source,
        };
        let file = File::create(out).map_err(io_err)?;
        let stored = HashingWriter::new(BufWriter::with_capacity(BUF_SIZE, file));
        let mut w = HashingWriter::new(recipients.encrypt(stored).map_err(io_err)?);
        w.write_all(&header).map_err(io_err)?;
        match &source {
            PackSource::Reuse(pack) => {
                let pack_err = |source: io::Error| BundleError::Io {
                    path: pack.display().to_string(),
                    source,
                };
                let pack_len = fs::metadata(pack).map_err(pack_err)?.len();
                let copied = copy_prefix(pack, pack_len, &mut w).map_err(pack_err)?;
                if copied != pack_len {
                    return Err(pack_err(short_read(pack, copied, pack_len)));
                }
            }
            PackSource::Build(_) => {
                build_pack(&git, &odb, &refs, head.oid, &mut w, io_err, git_err)?
            }
        }
        let (encryptor, plaintext_size, plaintext_sha256) = w.into_parts();
        let mut stored = encryptor.finish().map_err(io_err)?;
        stored.flush().map_err(io_err)?;
        let (_, size, sha256) = stored.into_parts();
        let info = BundleInfo {
            size,
            sha256,
            head: head.symbolic,
            refs: ref_map(&refs),
            pack_reused: matches!(source, PackSource::Reuse(_)),
            encryption: Some(crate::manifest::Encryption {
                scheme: crate::crypt::SCHEME.to_string(),
                recipients: recipients.fingerprint().to_string(),
                plaintext_size,
                plaintext_sha256,
            }),
        };
        let bytes = BundleBytes {
            header: Vec::new(),
            body: out.to_path_buf(),
            body_len: size,
        };
        return Ok(Some((info, bytes)));
    }

    let (size, sha256, bytes) = match source {
        PackSource::Reuse(pack) => {
            let io_err = |source: io::Error| BundleError::Io {
                path: pack.display().to_string(),
                source,
            };
            let pack_len = fs::metadata(&pack).map_err(io_err)?.len();
            let mut w = HashingWriter::new(io::sink());
            w.write_all(&header).map_err(io_err)?;
            let hashed = copy_prefix(&pack, pack_len, &mut w).map_err(io_err)?;
            if hashed != pack_len {
                return Err(io_err(short_read(&pack, hashed, pack_len)));
            }
            let (size, sha256) = w.finish();
            let bytes = BundleBytes {
                header,
                body: pack,
                body_len: pack_len,
            };
            (size, sha256, bytes)
        }
        PackSource::Build(_) => {
            let io_err = |source: io::Error| BundleError::Io {
                path: out.display().to_string(),
                source,
            };
            let file = File::create(out).map_err(io_err)?;
            let mut w = HashingWriter::new(BufWriter::with_capacity(BUF_SIZE, file));
            w.write_all(&header).map_err(io_err)?;
            build_pack(&git, &odb, &refs, head.oid, &mut w, io_err, git_err)?;
            w.flush().map_err(io_err)?;
            let (size, sha256) = w.finish();
            let bytes = BundleBytes {
                header: Vec::new(),
                body: out.to_path_buf(),
                body_len: size,
            };
            (size, sha256, bytes)
        }
    };
    let info = BundleInfo {
        size,
        sha256,
        head: head.symbolic,
        refs: ref_map(&refs),
        pack_reused: bytes.body != out,
        encryption: None,
    };
    Ok(Some((info, bytes)))
}

fn ref_map(refs: &[(Vec<u8>, Oid)]) -> BTreeMap<String, String> {
    refs.iter()
        .map(|(name, oid)| (String::from_utf8_lossy(name).into_owned(), oid.to_string()))
        .collect()
}

fn short_read(path: &Path, got: u64, want: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{} ended after {got} of {want} bytes", path.display()),
    )
}

/// `extensions.objectformat` of the repository, read from its config file without opening
/// the repository (which is what fails for sha256). `sha1` when unset or unreadable: opening
/// the repository then reports the real problem.
fn object_format(repo: &Path) -> String {
    [repo.join("config"), repo.join(".git").join("config")]
        .iter()
        .filter(|p| p.is_file())
        .find_map(|p| {
            git2::Config::open(p)
                .ok()?
                .get_string("extensions.objectformat")
                .ok()
        })
        .map(|f| f.to_ascii_lowercase())
        .unwrap_or_else(|| "sha1".into())
}

struct Head {
    /// `refs/heads/main` when HEAD is symbolic (whether or not the branch exists).
    symbolic: Option<String>,
    /// What HEAD resolves to, if it resolves.
    oid: Option<Oid>,
}

fn read_head(repo: &Repository) -> Head {
    let Ok(head) = repo.find_reference("HEAD") else {
        return Head {
            symbolic: None,
            oid: None,
        };
    };
    let oid = head.resolve().ok().and_then(|r| r.target());
    let symbolic = head
        .symbolic_target_bytes()
        .map(|t| String::from_utf8_lossy(t).into_owned());
    Head {
        // Only reported when it resolves: an unborn `refs/heads/master` is not a head.
        symbolic: symbolic.filter(|_| oid.is_some()),
        oid,
    }
}

/// Every ref (symbolic ones resolved, dangling ones left out), sorted by name, except that the
/// ref HEAD points at goes last: see the module doc for why git needs that.
fn ordered_refs(repo: &Repository, head: Option<&str>) -> Result<Vec<(Vec<u8>, Oid)>, git2::Error> {
    let mut refs = Vec::new();
    for reference in repo.references()? {
        let reference = reference?;
        let name = reference.name_bytes().to_vec();
        let oid = match reference.target() {
            Some(oid) => oid,
            None => match reference.resolve().ok().and_then(|r| r.target()) {
                Some(oid) => oid,
                None => continue,
            },
        };
        refs.push((name, oid));
    }
    refs.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(head) = head
        && let Some(i) = refs.iter().position(|(name, _)| name == head.as_bytes())
    {
        let entry = refs.remove(i);
        refs.push(entry);
    }
    Ok(refs)
}

/// Copies the first `len` bytes of `path` to `w`; returns how many there were (fewer when the
/// file is shorter).
fn copy_prefix(path: &Path, len: u64, w: &mut impl Write) -> io::Result<u64> {
    let mut f = File::open(path)?.take(len);
    let mut buf = vec![0; BUF_SIZE];
    let mut copied = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => {
                w.write_all(&buf[..n])?;
                copied += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Builds a pack of everything reachable from the refs (and a detached HEAD) and streams it to
/// `w` as libgit2 produces it.
fn build_pack<W: Write>(
    repo: &Repository,
    odb: &Odb<'_>,
    refs: &[(Vec<u8>, Oid)],
    head: Option<Oid>,
    w: &mut W,
    io_err: impl Fn(io::Error) -> BundleError,
    git_err: impl Fn(git2::Error) -> BundleError,
) -> Result<(), BundleError> {
    let _limits = apply_pack_limits(repo).map_err(&io_err)?;

    let mut pb = repo.packbuilder().map_err(&git_err)?;
    let mut walk = repo.revwalk().map_err(&git_err)?;
    for oid in refs.iter().map(|(_, oid)| *oid).chain(head) {
        add_tip(repo, odb, &mut pb, &mut walk, oid).map_err(&git_err)?;
    }
    // Commits with their trees and blobs; tags, trees and blobs named by refs went in above.
    pb.insert_walk(&mut walk).map_err(&git_err)?;

    let mut write_error = None;
    let built = pb.foreach(|chunk| match w.write_all(chunk) {
        Ok(()) => true,
        Err(e) => {
            write_error = Some(e);
            false
        }
    });
    match (write_error, built) {
        (Some(e), _) => Err(io_err(e)),
        (None, Err(e)) => Err(git_err(e)),
        (None, Ok(())) => Ok(()),
    }
}

/// Puts [`PACK_LIMITS`] into an extra config file added to this repository handle only (at
/// the highest level, so nothing overrides it): the repository's own config is never touched.
/// The file must outlive the `PackBuilder`, which reads it when created.
fn apply_pack_limits(repo: &Repository) -> io::Result<tempfile::NamedTempFile> {
    let limits = tempfile::NamedTempFile::new()?;
    fs::write(limits.path(), PACK_LIMITS)?;
    repo.config()
        .and_then(|mut c| c.add_file(limits.path(), ConfigLevel::App, true))
        .map_err(io::Error::other)?;
    Ok(limits)
}

/// Adds what one ref names: commits go to the walk; annotated tags (and tags of tags) are
/// inserted and followed to what they tag; a tree or blob is inserted directly.
fn add_tip(
    repo: &Repository,
    odb: &Odb<'_>,
    pb: &mut PackBuilder<'_>,
    walk: &mut Revwalk<'_>,
    mut oid: Oid,
) -> Result<(), git2::Error> {
    loop {
        // The header only: a ref may name a huge blob, which need not be read here.
        let (_, kind) = odb.read_header(oid)?;
        match kind {
            ObjectType::Commit => return walk.push(oid),
            ObjectType::Tag => {
                pb.insert_object(oid, None)?;
                oid = repo.find_tag(oid)?.target_id();
            }
            ObjectType::Tree => return pb.insert_tree(oid),
            _ => return pb.insert_object(oid, None),
        }
    }
}

/// Counts and hashes every byte on its way to the file.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn finish(self) -> (u64, String) {
        (self.written, hex::encode(self.hasher.finalize()))
    }

    /// The inner writer back, with the count and hash.
    fn into_parts(self) -> (W, u64, String) {
        (
            self.inner,
            self.written,
            hex::encode(self.hasher.finalize()),
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_limits_reach_the_config_the_packbuilder_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path()).unwrap();
        let _limits = apply_pack_limits(&repo).unwrap();
        // `packbuilder_config` reads a snapshot of the repository's config.
        let snapshot = repo.config().unwrap().snapshot().unwrap();
        assert_eq!(snapshot.get_i64("pack.windowMemory").unwrap(), 32 << 20);
        assert_eq!(snapshot.get_i64("pack.deltaCacheSize").unwrap(), 16 << 20);
        // ... and the repository's own config file is left alone.
        let own = std::fs::read_to_string(tmp.path().join("config")).unwrap();
        assert!(!own.contains("windowMemory"), "{own}");
    }

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (size, sha) = w.finish();
        assert_eq!(size, 11);
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }
}
