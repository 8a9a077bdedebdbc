//! The one atomic file write of the project: stage next to the target, fsync, rename, fsync
//! the directory. Every write of the local store goes through [`Staged`], so no call site can
//! forget a step; an uncommitted stage is deleted on drop (errors, panics, cancelled futures),
//! and its recognisable name (`.<name>.tmp-<random>`) lets listings hide it and sweeps remove
//! what a crash left.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Random characters in a temp name; also how [`temp_target`] recognises one.
pub(super) const TEMP_RANDOM_LEN: usize = 12;
pub(super) const TEMP_MARKER: &str = ".tmp-";

/// A file being written next to `target`; removed on drop unless [`Staged::commit`]ted.
pub(super) struct Staged {
    pub(super) tmp: tempfile::NamedTempFile,
    pub(super) target: PathBuf,
}

impl Staged {
    pub(super) fn new(target: &Path) -> io::Result<Self> {
        let dir = target
            .parent()
            .ok_or_else(|| io::Error::other("target has no parent directory"))?;
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::other("target has no file name"))?
            .to_string_lossy();
        fs::create_dir_all(dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}{TEMP_MARKER}"))
            .rand_bytes(TEMP_RANDOM_LEN)
            .tempfile_in(dir)?;
        Ok(Self {
            tmp,
            target: target.to_path_buf(),
        })
    }

    pub(super) fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Data to disk, then the rename, then the rename to disk: without the first fsync a crash
    /// can leave a renamed but empty file; without the directory fsync the rename may be lost.
    pub(super) fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.target).map_err(|e| e.error)?;
        sync_dir_of(&self.target)
    }

    /// [`Staged::commit`], but only where nothing exists at the target: the rename does not
    /// replace (`renameat2(RENAME_NOREPLACE)`, or link-then-unlink where that is missing), so
    /// of two concurrent creators exactly one wins. `Ok(None)`: the name was taken; the
    /// stage is removed. `Some(version)` of the file written (see [`version_of`]).
    pub(super) fn commit_new(self) -> io::Result<Option<String>> {
        self.tmp.as_file().sync_all()?;
        let file = match self.tmp.persist_noclobber(&self.target) {
            Ok(f) => f,
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(e.error),
        };
        sync_dir_of(&self.target)?;
        Ok(Some(version_of(&file.metadata()?)))
    }

    /// [`Staged::commit`], but only if the target is still the file `expected` names (see
    /// [`version_of`]): a compare-and-swap. The target is first renamed to a temp name of
    /// ours, which only one of several concurrent callers can do to the same file; the one
    /// that got it checks it is the expected file (else puts it back) and moves its stage in
    /// without replacing, so a creator that came in between wins over it. `Ok(None)`: the
    /// target changed or is gone, nothing was written.
    pub(super) fn commit_if(self, expected: &str) -> io::Result<Option<String>> {
        self.tmp.as_file().sync_all()?;
        // A fresh temp name beside the target; removed on drop, whatever happens.
        let claim = Staged::new(&self.target)?.tmp.into_temp_path();
        match fs::rename(&self.target, &claim) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        if version_of(&fs::metadata(&claim)?) != expected {
            // Someone replaced it after the caller read it: theirs goes back, untouched,
            // unless yet another file took the name meanwhile.
            if let Err(e) = fs::hard_link(&claim, &self.target)
                && e.kind() != io::ErrorKind::AlreadyExists
            {
                return Err(e);
            }
            return Ok(None);
        }
        self.commit_new()
    }

    /// `target` becomes a hard link to `from` (the same bytes, no copy), atomically: the link
    /// is made under a temp name and renamed into place, then the directory is synced.
    /// `Ok(false)` when the filesystem cannot link here (another device, no hard links): the
    /// caller copies instead.
    pub(super) fn link(from: &Path, target: &Path) -> io::Result<bool> {
        let staged = Staged::new(target)?;
        // The temp name is ours; the empty file tempfile made there is replaced by the link.
        let tmp_path = staged.tmp.path().to_path_buf();
        fs::remove_file(&tmp_path)?;
        let result = fs::hard_link(from, &tmp_path);
        // Whatever happens, the (now absent or linked) temp name must not be deleted twice.
        let _ = staged.tmp.into_temp_path().keep();
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "cannot hard-link; copying instead");
                let _ = fs::remove_file(&tmp_path);
                return Ok(false);
            }
        }
        if let Err(e) = fs::rename(&tmp_path, target) {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        sync_dir_of(target)?;
        Ok(true)
    }
}

/// The identity of a file's content for [`Staged::commit_if`]: every staged write makes a new
/// inode, and a rename keeps inode, size and mtime, so these three change exactly when the file
/// is replaced.
pub(super) fn version_of(meta: &fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0u64;
    format!("{ino:x}-{:x}-{mtime:x}", meta.len())
}

/// A rename is durable only once its directory is synced.
fn sync_dir_of(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The object name a temp file stands for, or `None` if `name` is not one of our temp files.
pub(super) fn temp_target(name: &str) -> Option<&str> {
    let (target, random) = name.strip_prefix('.')?.rsplit_once(TEMP_MARKER)?;
    let ours = !target.is_empty()
        && random.len() == TEMP_RANDOM_LEN
        && random.bytes().all(|b| b.is_ascii_alphanumeric());
    ours.then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn temp_names_are_recognised_and_only_ours() {
        assert_eq!(
            temp_target(".api.bundle.tmp-Ab12Cd34Ef56"),
            Some("api.bundle")
        );
        assert_eq!(temp_target(".a.tmp-b.tmp-Ab12Cd34Ef56"), Some("a.tmp-b"));
        for not_ours in [
            "api.bundle",
            ".api.bundle",
            "api.bundle.tmp-Ab12Cd34Ef56",
            ".api.bundle.tmp-short",
            ".api.bundle.tmp-Ab12Cd34Ef5!",
            "..tmp-Ab12Cd34Ef56",
        ] {
            assert_eq!(temp_target(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn staged_files_use_the_recognised_name_and_vanish_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/x.bundle");
        let staged = Staged::new(&target).unwrap();
        let name = staged
            .tmp
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(temp_target(&name), Some("x.bundle"));
        drop(staged);
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 0);

        let mut staged = Staged::new(&target).unwrap();
        staged.file().write_all(b"hi").unwrap();
        staged.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"hi");
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }
}
