//! Bringing a repository back from a snapshot, without the git executable.
//!
//! Restores happen on bad days, on whatever machine is at hand, often with little disk, so:
//!
//! - **No copy of the bundle.** The download streams through [`crate::bundle::read`] (size
//!   and SHA-256 checked on the way) straight into libgit2's pack indexer; the pack is only
//!   committed to the object database once every byte matched the manifest, so a damaged
//!   bundle stops with a clear error and leaves nothing.
//! - **Nothing that looks finished unless it is.** The repository is built in a temp dir
//!   beside the target (`.<name>.restore-<random>`, same parent, so the last step is one
//!   `rename`) and removed on any failure or interruption. A non-empty target is refused
//!   before anything is downloaded.
//! - **The repository as it was.** Every ref of the bundle header is written as is (branches,
//!   tags, notes, anything custom), `HEAD` names the manifest's head, and a non-bare restore
//!   checks that branch out.
//!
//! Pushing a restored repository to a new remote lives in [`push`].

pub mod push;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use git2::{Oid, Reference, Repository, RepositoryInitOptions, build::CheckoutBuilder};
use tokio_util::sync::CancellationToken;

use crate::backup::blocking;
use crate::bundle::header::Header;
use crate::bundle::read::{Expected, PackIndexer, ReadError};
use crate::catalog::{self, ManifestState};
use crate::config::DateChoice;
use crate::crypt::Identities;
use crate::crypt::read::{self as crypt_read, DecryptError};
use crate::layout::OwnerLayout;
use crate::manifest::{Manifest, RepoEntry, Status};
use crate::store::{Store, StoreError};
use crate::verify::promise::bundle_fields;

/// The reflog message of every ref a restore writes.
const REFLOG: &str = "git-offsite restore";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The destination could not be listed or a manifest could not be fetched.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("there is no snapshot of `{owner}` dated {date}")]
    NoSuchDate { owner: String, date: NaiveDate },
    #[error("no complete snapshot of `{owner}` holds a bundle of `{slug}`")]
    NoSnapshotWith { owner: String, slug: String },
    #[error("no complete snapshot of `{owner}` at this destination")]
    NoSnapshot { owner: String },
    #[error("the snapshot of {date} has no repository `{slug}`")]
    NotInSnapshot { slug: String, date: NaiveDate },
    #[error("`{slug}` was an empty repository on {date}: there is no bundle to restore")]
    NoBundle { slug: String, date: NaiveDate },
    /// The snapshot cannot restore this: the backup failed, or never finished.
    #[error("cannot restore `{slug}` from {date}: {why}")]
    NotRestorable {
        slug: String,
        date: NaiveDate,
        why: String,
    },
    #[error("{}: {why}", path.display())]
    BadTarget { path: PathBuf, why: String },
    /// Download, check, index, refs or checkout failed.
    #[error("restore of `{slug}` ({date}) failed: {message}")]
    Failed {
        slug: String,
        date: NaiveDate,
        message: String,
    },
    /// An encrypted bundle and no `--identity`, or one that holds none of its recipients'
    /// keys: the user must pass the right key file.
    #[error("cannot restore `{slug}` ({date}): {why}")]
    Key {
        slug: String,
        date: NaiveDate,
        why: DecryptError,
    },
    #[error(transparent)]
    Push(#[from] push::PushError),
    #[error("interrupted")]
    Cancelled,
}

/// The snapshot and entry to restore `slug` from: `latest` is the newest snapshot holding a
/// bundle of it (`ok` or `unchanged`).
pub async fn locate(
    store: &dyn Store,
    owner: &OwnerLayout,
    slug: &str,
    choice: DateChoice,
) -> Result<(NaiveDate, RepoEntry), RestoreError> {
    let date = match choice {
        DateChoice::Date(d) => d,
        DateChoice::Latest | DateChoice::All => {
            return match catalog::latest_with(store, owner, slug).await? {
                Some((m, e)) => Ok((m.date, e)),
                None => Err(RestoreError::NoSnapshotWith {
                    owner: owner.owner().to_string(),
                    slug: slug.to_string(),
                }),
            };
        }
    };
    let manifest = snapshot(store, owner, DateChoice::Date(date)).await?;
    let not = |why: String| RestoreError::NotRestorable {
        slug: slug.to_string(),
        date,
        why,
    };
    let entry = manifest
        .entry(slug)
        .ok_or_else(|| RestoreError::NotInSnapshot {
            slug: slug.to_string(),
            date,
        })?;
    match entry.status {
        Status::Ok | Status::Unchanged => Ok((date, entry.clone())),
        Status::Empty => Err(RestoreError::NoBundle {
            slug: slug.to_string(),
            date,
        }),
        Status::Pruned => Err(not(
            "its bundle was removed by `prune`; an earlier or later --date may have one".into(),
        )),
        Status::Failed | Status::Unknown => Err(not(match &entry.error {
            Some(e) => format!("it failed in that backup: {e}"),
            None => format!("its status is `{}`", entry.status.as_str()),
        })),
    }
}

/// The manifest of the snapshot `choice` names (`latest`: the newest complete one).
pub async fn snapshot(
    store: &dyn Store,
    owner: &OwnerLayout,
    choice: DateChoice,
) -> Result<Manifest, RestoreError> {
    let DateChoice::Date(date) = choice else {
        return catalog::latest_complete(store, owner)
            .await?
            .ok_or_else(|| RestoreError::NoSnapshot {
                owner: owner.owner().to_string(),
            });
    };
    let why = match catalog::manifest(store, owner, date).await? {
        ManifestState::Complete(m) => return Ok(*m),
        ManifestState::Missing => {
            if !catalog::dates(store, owner).await?.contains(&date) {
                return Err(RestoreError::NoSuchDate {
                    owner: owner.owner().to_string(),
                    date,
                });
            }
            "that backup did not finish (no manifest)".to_string()
        }
        ManifestState::Unreadable(why) => why,
    };
    Err(RestoreError::NotRestorable {
        slug: "*".into(),
        date,
        why,
    })
}

/// Refuses a target that exists and is not an empty directory; nothing is written.
pub fn check_target(dir: &Path) -> Result<(), RestoreError> {
    let bad = |why: &str| RestoreError::BadTarget {
        path: dir.to_path_buf(),
        why: why.to_string(),
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(bad("not empty: restore into a new or empty directory")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if dir.exists() && !dir.is_dir() => Err(bad(&format!("not a directory ({e})"))),
        Err(e) => Err(bad(&format!("cannot read it: {e}"))),
    }
}

/// Whether a slug from a manifest (untrusted) can name a directory of its own under
/// `restore --all`'s target: plain path components (`api`, or `sub/api` for a project in a
/// GitLab subgroup), none empty, `.` or `..`, no `\` or control characters.
pub fn is_safe_dir_name(slug: &str) -> bool {
    !slug.contains('\\')
        && slug.split('/').all(|part| {
            !part.is_empty() && part != "." && part != ".." && !part.chars().any(char::is_control)
        })
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub dir: PathBuf,
    /// The git directory (`dir` when bare, `dir/.git` otherwise).
    pub git_dir: PathBuf,
    pub date: NaiveDate,
    pub size: u64,
    /// Every ref written, in header order.
    pub refs: Vec<String>,
    /// What `HEAD` names, when symbolic.
    pub head: Option<String>,
    /// A working tree was checked out.
    pub checked_out: bool,
}

/// Restores one repository of one snapshot.
pub struct Restorer<'a> {
    pub store: &'a dyn Store,
    pub owner: &'a OwnerLayout,
    pub cancel: &'a CancellationToken,
    /// `--identity`: decrypts encrypted bundles.
    pub identity: Option<&'a Identities>,
}

impl Restorer<'_> {
    /// Restores `entry` (of the snapshot of `date`) into `dir`, which must not exist or be
    /// empty; bare like `git clone --mirror`, or with the head branch checked out.
    pub async fn restore(
        &self,
        date: NaiveDate,
        entry: &RepoEntry,
        dir: &Path,
        bare: bool,
    ) -> Result<Restored, RestoreError> {
        let failed = |message: String| RestoreError::Failed {
            slug: entry.slug.clone(),
            date,
            message,
        };
        let (key, size, sha256) = bundle_fields(self.owner, entry).map_err(failed)?;
        check_target(dir)?;
        let temp = temp_beside(dir)?;
        let built = self
            .build(
                date,
                temp.path(),
                &key,
                Expected {
                    size: Some(size),
                    sha256: Some(sha256),
                },
                entry,
                bare,
            )
            .await;
        let result = match built {
            Ok(_) if self.cancel.is_cancelled() => Err(RestoreError::Cancelled),
            Ok((refs, head, checked_out)) => {
                let temp_path = temp.path().to_path_buf();
                match std::fs::rename(&temp_path, dir) {
                    Ok(()) => {
                        // The temp dir is the target now: nothing left to remove.
                        let _ = temp.keep();
                        let git_dir = if bare {
                            dir.to_path_buf()
                        } else {
                            dir.join(".git")
                        };
                        return Ok(Restored {
                            dir: dir.to_path_buf(),
                            git_dir,
                            date,
                            size,
                            refs,
                            head,
                            checked_out,
                        });
                    }
                    Err(e) => Err(failed(format!(
                        "cannot move the restored repository into place: {e}"
                    ))),
                }
            }
            Err(e) => Err(e),
        };
        // All git work on the temp dir has been awaited; removing it is blocking too.
        let _ = blocking(move || drop(temp)).await;
        result
    }

    /// Everything up to the final rename, inside `work`.
    async fn build(
        &self,
        date: NaiveDate,
        work: &Path,
        key: &crate::store::Key,
        expected: Expected<'_>,
        entry: &RepoEntry,
        bare: bool,
    ) -> Result<(Vec<String>, Option<String>, bool), RestoreError> {
        let failed = |message: String| RestoreError::Failed {
            slug: entry.slug.clone(),
            date,
            message,
        };
        let dir = work.to_path_buf();
        let git_dir = blocking(move || {
            let repo = Repository::init_opts(
                &dir,
                RepositoryInitOptions::new()
                    .bare(bare)
                    .external_template(false),
            )
            .map_err(|e| e.message().to_owned())?;
            Ok::<_, String>(repo.path().to_path_buf())
        })
        .await
        .and_then(|r| r)
        .map_err(failed)?;

        // A slow store (or a stalled connection) must not keep Ctrl-C waiting.
        let download = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Err(RestoreError::Cancelled),
            d = self.store.get_stream(key) => d,
        };
        let download = match download {
            Ok(d) => d,
            Err(StoreError::NotFound { .. }) => {
                return Err(failed(format!("bundle missing: {key}")));
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let mut indexer = PackIndexer::start(git_dir.clone());
        let read = crypt_read::read_stored(
            download,
            key.as_str(),
            expected,
            entry.encryption.as_ref(),
            self.identity,
            &mut indexer,
            self.cancel,
        )
        .await;
        let header = match read {
            Ok(v) if !v.header.prerequisites.is_empty() => Err(failed(format!(
                "the bundle needs {} prerequisite objects from another bundle",
                v.header.prerequisites.len()
            ))),
            Ok(v) => Ok(v.header),
            Err(ReadError::Cancelled) => Err(RestoreError::Cancelled),
            Err(ReadError::Decrypt(
                why @ (DecryptError::NoIdentity { .. } | DecryptError::WrongIdentity { .. }),
            )) => Err(RestoreError::Key {
                slug: entry.slug.clone(),
                date,
                why,
            }),
            Err(e) => Err(failed(e.to_string())),
        };
        let header = match header {
            Ok(h) => h,
            Err(e) => {
                indexer.abort().await;
                return Err(e);
            }
        };
        indexer.commit().await.map_err(failed)?;
        if self.cancel.is_cancelled() {
            return Err(RestoreError::Cancelled);
        }
        let head = entry.head.clone();
        blocking(move || finish(&git_dir, &header, head, bare))
            .await
            .and_then(|r| r)
            .map_err(failed)
    }
}

/// `.<name>.restore-<random>` in `dir`'s parent (created if need be), with the mode a new
/// directory gets there (umask applies), so the final rename yields an ordinary directory.
fn temp_beside(dir: &Path) -> Result<tempfile::TempDir, RestoreError> {
    let bad = |why: String| RestoreError::BadTarget {
        path: dir.to_path_buf(),
        why,
    };
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| *n != "..")
        .ok_or_else(|| bad("needs a final path component to restore into".into()))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| bad(format!("cannot create {}: {e}", parent.display())))?;
    let prefix = format!(".{name}.restore-");
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o777));
    }
    b.tempdir_in(&parent).map_err(|e| {
        bad(format!(
            "cannot create a temp dir in {}: {e}",
            parent.display()
        ))
    })
}

/// After the pack is in: every ref of the header, `HEAD`, and the checkout. Blocking.
/// Returns the refs written, the symbolic head and whether a working tree was checked out.
fn finish(
    git_dir: &Path,
    header: &Header,
    head: Option<String>,
    bare: bool,
) -> Result<(Vec<String>, Option<String>, bool), String> {
    let git_err = |e: git2::Error| e.message().to_owned();
    let repo = Repository::open(git_dir).map_err(git_err)?;
    let odb = repo.odb().map_err(git_err)?;
    let mut written = Vec::with_capacity(header.refs.len());
    for (name, oid) in &header.refs {
        // Names come from a file we did not write on this machine: only real refs.
        if !name.starts_with("refs/") || !Reference::is_valid_name(name) {
            return Err(format!("the bundle names an invalid ref {name:?}"));
        }
        let oid = Oid::from_str(oid).map_err(git_err)?;
        if !odb.exists(oid) {
            return Err(format!("{name} points to {oid}, which is not in the pack"));
        }
        repo.reference(name, oid, true, REFLOG)
            .map_err(|e| format!("cannot write {name}: {}", e.message()))?;
        written.push(name.clone());
    }
    match (&head, &header.head) {
        (Some(h), _) => {
            if !header.refs.iter().any(|(name, _)| name == h) {
                return Err(format!(
                    "the manifest's head {h} is not a ref of the bundle"
                ));
            }
            repo.reference_symbolic("HEAD", h, true, REFLOG)
                .map_err(|e| format!("cannot point HEAD at {h}: {}", e.message()))?;
        }
        (None, Some(oid)) => {
            let oid = Oid::from_str(oid).map_err(git_err)?;
            repo.set_head_detached(oid).map_err(git_err)?;
        }
        // No head at all: HEAD stays unborn, like a clone of a remote without a default branch.
        (None, None) => {}
    }
    let checked_out = !bare && repo.head().is_ok();
    if checked_out {
        repo.checkout_head(Some(CheckoutBuilder::new().force()))
            .map_err(|e| format!("checkout: {}", e.message()))?;
    }
    Ok((written, head, checked_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_new_or_empty() {
        let tmp = tempfile::tempdir().unwrap();
        check_target(&tmp.path().join("new")).unwrap();
        check_target(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("f"), b"x").unwrap();
        let e = check_target(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let e = check_target(&tmp.path().join("f")).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn the_temp_dir_lies_beside_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("deep/er/repo");
        let t = temp_beside(&target).unwrap();
        assert_eq!(t.path().parent().unwrap(), tmp.path().join("deep/er"));
        let name = t.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(".repo.restore-"), "{name}");
        assert!(temp_beside(Path::new("/")).is_err());
    }
}
