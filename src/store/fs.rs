//! A local directory as a destination, laid out exactly like a bucket: key = relative path.
//!
//! Every write is staged in a temp file next to its target (`.<name>.tmp-<random>`), fsynced,
//! renamed into place and the directory fsynced, so a reader (or a restore after a power cut)
//! sees either the old object or the whole new one, never a prefix of it. The staging, the
//! fsyncs and the rename live in one type, [`Staged`], so no call site can forget a step; a
//! staged file that is not committed is deleted when dropped, which covers errors, panics and
//! cancelled futures. Only a crash can leave one behind; [`Store::sweep_incomplete`] removes
//! those, and [`Store::list`] never shows them.
//!
//! Files are created `0600` (tempfile's default): a bundle is a full copy of private source
//! code. User metadata is not kept (no sidecar files); `head` reports an empty map.
//!
//! The filesystem calls are blocking, so each operation runs in `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{Download, Key, Listing, ObjectMeta, PutOptions, Source, Store, StoreError};

/// Random characters in a temp name; also how [`temp_target`] recognises one.
const TEMP_RANDOM_LEN: usize = 12;
const TEMP_MARKER: &str = ".tmp-";
/// Copy granularity: how often a copy reports progress and notices it was abandoned.
const CHUNK: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &Key) -> PathBuf {
        // `Key` forbids `..`, `.`, empty segments and a leading `/`, so this stays under root.
        self.root.join(key.as_str())
    }

    /// Leaves a staged temp file for `key` behind, as a run killed mid-copy would. For tests
    /// of [`Store::sweep_incomplete`]; returns the temp file's path.
    #[doc(hidden)]
    pub fn leave_incomplete(&self, key: &Key) -> io::Result<PathBuf> {
        let mut staged = Staged::new(&self.path_of(key))?;
        staged.file().write_all(b"partial")?;
        let (_, path) = staged.tmp.keep().map_err(|e| e.error)?;
        Ok(path)
    }
}

/// A file being written next to `target`; removed on drop unless [`Staged::commit`]ted.
struct Staged {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl Staged {
    fn new(target: &Path) -> io::Result<Self> {
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

    fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Data to disk, then the rename, then the rename to disk: without the first fsync a crash
    /// can leave a renamed but empty file; without the directory fsync the rename may be lost.
    fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.target).map_err(|e| e.error)?;
        sync_dir_of(&self.target)
    }

    /// `target` becomes a hard link to `from` (the same bytes, no copy), atomically: the link
    /// is made under a temp name and renamed into place, then the directory is synced.
    /// `Ok(false)` when the filesystem cannot link here (another device, no hard links): the
    /// caller copies instead.
    fn link(from: &Path, target: &Path) -> io::Result<bool> {
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

/// Whether `dir` holds an object somewhere below it (temp files of uploads in flight do not
/// count), as an S3 listing would only show a folder with an object in it.
fn holds_an_object(dir: &Path) -> io::Result<bool> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let t = entry.file_type()?;
            if t.is_dir() {
                stack.push(entry.path());
            } else if t.is_file()
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| temp_target(n).is_none())
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Size of one read of a streamed download.
const STREAM_CHUNK: usize = 256 * 1024;

/// The object name a temp file stands for, or `None` if `name` is not one of our temp files.
fn temp_target(name: &str) -> Option<&str> {
    let (target, random) = name.strip_prefix('.')?.rsplit_once(TEMP_MARKER)?;
    let ours = !target.is_empty()
        && random.len() == TEMP_RANDOM_LEN
        && random.bytes().all(|b| b.is_ascii_alphanumeric());
    ours.then_some(target)
}

/// A regular file found under the root.
struct Entry {
    /// The object key; for a temp file, the key it was going to become.
    key: String,
    path: PathBuf,
    len: u64,
    modified: SystemTime,
    temp: bool,
}

/// Every regular file whose key starts with `prefix`, walking only the directory the prefix
/// names. Symlinks are skipped so a listing never leaves the root.
fn scan(root: &Path, prefix: &str) -> Result<Vec<Entry>, StoreError> {
    let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
    let start = if dir_part.is_empty() {
        root.to_path_buf()
    } else {
        root.join(Key::new(dir_part)?.as_str())
    };
    let mut out = Vec::new();
    let mut stack = vec![(start, dir_part.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(e) => return Err(io_err("cannot list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", &dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::debug!(path = %entry.path().display(), "skipping a non-UTF-8 file name");
                continue;
            };
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry
                .file_type()
                .map_err(|e| io_err("cannot list", &entry.path(), e))?;
            if file_type.is_dir() {
                // Only descend where keys matching the prefix can live.
                if child_rel.starts_with(prefix) || prefix.starts_with(&format!("{child_rel}/")) {
                    stack.push((entry.path(), child_rel));
                }
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let (key, temp) = match temp_target(&name) {
                Some(target) if rel.is_empty() => (target.to_string(), true),
                Some(target) => (format!("{rel}/{target}"), true),
                None => (child_rel, false),
            };
            if !key.starts_with(prefix) {
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(|e| io_err("cannot stat", &entry.path(), e))?;
            out.push(Entry {
                key,
                path: entry.path(),
                len: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                temp,
            });
        }
    }
    Ok(out)
}

fn io_err(context: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        context,
        path: path.display().to_string(),
        source,
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Io {
            context: "filesystem task failed",
            path: String::new(),
            source: io::Error::other(e),
        }),
    }
}

/// Sets the flag when the `put_file` future is dropped, so the blocking copy stops at its next
/// chunk and deletes its temp file instead of committing an object nobody waits for.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn copy_into(
    from: &Source,
    staged: &mut Staged,
    key: &Key,
    abandoned: &AtomicBool,
    opts: &PutOptions,
) -> Result<(), StoreError> {
    if !from.head.is_empty() {
        staged
            .file()
            .write_all(&from.head)
            .map_err(|e| io_err("cannot write", &staged.target, e))?;
        if let Some(progress) = &opts.on_progress {
            progress(from.head.len() as u64);
        }
    }
    let (source, size) = (from.path.as_path(), from.len);
    let mut src = File::open(source).map_err(|e| io_err("cannot open", source, e))?;
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK)).max(1)];
    let mut copied = 0u64;
    while copied < size {
        if abandoned.load(Ordering::Relaxed) {
            return Err(StoreError::Cancelled {
                key: key.to_string(),
            });
        }
        let want = usize::try_from((size - copied).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => {
                let msg = format!("the file ended after {copied} of the expected {size} bytes");
                return Err(io_err(
                    "cannot read",
                    source,
                    io::Error::new(io::ErrorKind::UnexpectedEof, msg),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("cannot read", source, e)),
        };
        staged
            .file()
            .write_all(&buf[..n])
            .map_err(|e| io_err("cannot write", &staged.target, e))?;
        copied += n as u64;
        if let Some(progress) = &opts.on_progress {
            progress(n as u64);
        }
    }
    Ok(())
}

#[async_trait]
impl Store for FsStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    /// No sidecar files: see the module doc.
    fn keeps_metadata(&self) -> bool {
        false
    }

    async fn check(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        blocking(move || {
            match fs::metadata(&root) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    let e = io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "it exists but is not a directory",
                    );
                    return Err(io_err("the destination must be a directory:", &root, e));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(&root)
                    .map_err(|e| io_err("cannot create the destination directory", &root, e))?,
                Err(e) => return Err(io_err("cannot read the destination", &root, e)),
            }
            // A probe write catches read-only mounts and missing permissions before any
            // repository is cloned; it is a staged file, so it is never committed.
            let probe = Staged::new(&root.join(".git-offsite-check"))
                .and_then(|mut s| s.file().write_all(b"probe").and(s.file().sync_all()));
            probe.map_err(|e| io_err("cannot write into the destination directory", &root, e))
        })
        .await
    }

    async fn put(&self, key: &Key, data: Bytes, opts: &PutOptions) -> Result<(), StoreError> {
        let target = self.path_of(key);
        let progress = opts.on_progress.clone();
        blocking(move || {
            let mut staged = Staged::new(&target)
                .map_err(|e| io_err("cannot create a temp file for", &target, e))?;
            staged
                .file()
                .write_all(&data)
                .map_err(|e| io_err("cannot write", &target, e))?;
            staged
                .commit()
                .map_err(|e| io_err("cannot commit", &target, e))?;
            if let Some(p) = progress {
                p(data.len() as u64);
            }
            Ok(())
        })
        .await
    }

    async fn put_source(
        &self,
        key: &Key,
        source: &Source,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        let target = self.path_of(key);
        let source = source.clone();
        let key = key.clone();
        let opts = opts.clone();
        let abandoned = Arc::new(AtomicBool::new(false));
        let _guard = AbandonOnDrop(abandoned.clone());
        blocking(move || {
            let mut staged = Staged::new(&target)
                .map_err(|e| io_err("cannot create a temp file for", &target, e))?;
            copy_into(&source, &mut staged, &key, &abandoned, &opts)?;
            if abandoned.load(Ordering::Relaxed) {
                return Err(StoreError::Cancelled {
                    key: key.to_string(),
                });
            }
            staged
                .commit()
                .map_err(|e| io_err("cannot commit", &target, e))
        })
        .await
    }

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let path = self.path_of(key);
        let key = key.to_string();
        blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if is_missing(&e) => return Err(StoreError::NotFound { key }),
                Err(e) => return Err(io_err("cannot open", &path, e)),
            };
            let meta = file
                .metadata()
                .map_err(|e| io_err("cannot stat", &path, e))?;
            if !meta.is_file() {
                return Err(StoreError::NotFound { key });
            }
            let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            file.read_to_end(&mut data)
                .map_err(|e| io_err("cannot read", &path, e))?;
            Ok(Bytes::from(data))
        })
        .await
    }

    async fn get_stream(&self, key: &Key) -> Result<Download, StoreError> {
        let path = self.path_of(key);
        let missing = || StoreError::NotFound {
            key: key.to_string(),
        };
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if is_missing(&e) => return Err(missing()),
            Err(e) => return Err(io_err("cannot open", &path, e)),
        };
        let meta = file
            .metadata()
            .await
            .map_err(|e| io_err("cannot stat", &path, e))?;
        if !meta.is_file() {
            return Err(missing());
        }
        let shown = path.display().to_string();
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, STREAM_CHUNK).map(move |chunk| {
                chunk.map_err(|source| StoreError::Io {
                    context: "cannot read",
                    path: shown.clone(),
                    source,
                })
            });
        Ok(Download {
            size: meta.len(),
            metadata: Default::default(),
            stream: Box::pin(stream),
        })
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path_of(key);
        let key = key.clone();
        blocking(move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key,
                size: m.len(),
                metadata: Default::default(),
            })),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(io_err("cannot stat", &path, e)),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let mut out: Vec<ObjectMeta> = scan(&root, &prefix)?
                .into_iter()
                .filter(|e| !e.temp)
                .filter_map(|e| match Key::new(e.key) {
                    Ok(key) => Some(ObjectMeta {
                        key,
                        size: e.len,
                        metadata: Default::default(),
                    }),
                    Err(err) => {
                        tracing::debug!(error = %err, "skipping a file that cannot be an object key");
                        None
                    }
                })
                .collect();
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn list_folder(&self, folder: &str) -> Result<Listing, StoreError> {
        let dir = match folder.strip_suffix('/') {
            None if folder.is_empty() => self.root.clone(),
            Some(rel) if !rel.is_empty() => self.root.join(Key::new(rel)?.as_str()),
            _ => {
                return Err(StoreError::InvalidKey {
                    key: folder.to_string(),
                    reason: "a folder is empty (the root) or ends with `/`".into(),
                });
            }
        };
        let folder = folder.to_string();
        blocking(move || {
            let mut listing = Listing::default();
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if is_missing(&e) => return Ok(listing),
                Err(e) => return Err(io_err("cannot list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err("cannot list", &dir, e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let t = entry
                    .file_type()
                    .map_err(|e| io_err("cannot list", &entry.path(), e))?;
                if t.is_dir() {
                    let holds = holds_an_object(&entry.path())
                        .map_err(|e| io_err("cannot list", &entry.path(), e))?;
                    if holds && Key::new(name.clone()).is_ok() {
                        listing.folders.push(format!("{folder}{name}/"));
                    }
                } else if t.is_file() && temp_target(&name).is_none() {
                    let Ok(key) = Key::new(format!("{folder}{name}")) else {
                        continue;
                    };
                    let len = entry
                        .metadata()
                        .map_err(|e| io_err("cannot stat", &entry.path(), e))?
                        .len();
                    listing.objects.push(ObjectMeta {
                        key,
                        size: len,
                        metadata: Default::default(),
                    });
                }
            }
            listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
            listing.folders.sort();
            Ok(listing)
        })
        .await
    }

    async fn copy(&self, from: &Key, to: &Key) -> Result<(), StoreError> {
        let (src, target) = (self.path_of(from), self.path_of(to));
        let from = from.to_string();
        blocking(move || {
            match fs::metadata(&src) {
                Ok(m) if m.is_file() => {}
                Ok(_) => return Err(StoreError::NotFound { key: from }),
                Err(e) if is_missing(&e) => return Err(StoreError::NotFound { key: from }),
                Err(e) => return Err(io_err("cannot stat", &src, e)),
            }
            if src == target {
                return Ok(());
            }
            match Staged::link(&src, &target) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if is_missing(&e) => return Err(StoreError::NotFound { key: from }),
                Err(e) => return Err(io_err("cannot link", &target, e)),
            }
            let mut staged = Staged::new(&target)
                .map_err(|e| io_err("cannot create a temp file for", &target, e))?;
            let mut input = File::open(&src).map_err(|e| io_err("cannot open", &src, e))?;
            io::copy(&mut input, staged.file())
                .map_err(|e| io_err("cannot copy to", &target, e))?;
            staged
                .commit()
                .map_err(|e| io_err("cannot commit", &target, e))
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let path = self.path_of(key);
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            // A directory is a prefix, not an object: there is no object to delete.
            Err(e) if is_missing(&e) || e.kind() == io::ErrorKind::IsADirectory => Ok(()),
            Err(e) => Err(io_err("cannot delete", &path, e)),
        })
        .await
    }

    async fn sweep_incomplete(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<usize, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let cutoff = SystemTime::now()
                .checked_sub(older_than)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let mut removed = 0;
            // The temp file's mtime moves while a copy writes to it, so a slow upload in flight
            // of a concurrent run looks fresh and is left alone.
            for e in scan(&root, &prefix)?
                .into_iter()
                .filter(|e| e.temp && e.modified <= cutoff)
            {
                match fs::remove_file(&e.path) {
                    Ok(()) => removed += 1,
                    Err(err) if is_missing(&err) => {}
                    Err(err) => return Err(io_err("cannot remove stale temp file", &e.path, err)),
                }
            }
            Ok(removed)
        })
        .await
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
