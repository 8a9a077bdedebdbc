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

mod scan;
mod staged;

use self::scan::{holds_an_object, scan};
use self::staged::{Staged, temp_target, version_of};
use super::{
    DeleteFailure, Download, Key, Listing, MAX_DELETE_BATCH, ObjectMeta, PutOptions, Source, Store,
    StoreError, Version, Versioned,
};

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
/// Size of one read of a streamed download.
const STREAM_CHUNK: usize = 256 * 1024;

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
            stage_bytes(&target, &data)?
                .commit()
                .map_err(|e| io_err("cannot commit", &target, e))?;
            if let Some(p) = progress {
                p(data.len() as u64);
            }
            Ok(())
        })
        .await
    }

    async fn put_if_absent(
        &self,
        key: &Key,
        data: Bytes,
        _opts: &PutOptions,
    ) -> Result<Option<Version>, StoreError> {
        let target = self.path_of(key);
        blocking(move || {
            let staged = stage_bytes(&target, &data)?;
            let written = staged
                .commit_new()
                .map_err(|e| io_err("cannot commit", &target, e))?;
            Ok(written.map(Version))
        })
        .await
    }

    async fn put_if_version(
        &self,
        key: &Key,
        data: Bytes,
        _opts: &PutOptions,
        expected: &Version,
    ) -> Result<Option<Version>, StoreError> {
        let target = self.path_of(key);
        let expected = expected.0.clone();
        blocking(move || {
            let staged = stage_bytes(&target, &data)?;
            let written = staged
                .commit_if(&expected)
                .map_err(|e| io_err("cannot commit", &target, e))?;
            Ok(written.map(Version))
        })
        .await
    }

    async fn get_versioned(&self, key: &Key) -> Result<Option<Versioned>, StoreError> {
        let path = self.path_of(key);
        blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(io_err("cannot open", &path, e)),
            };
            // The open file's own metadata: a rename over the name meanwhile does not mix two
            // versions up.
            let meta = file
                .metadata()
                .map_err(|e| io_err("cannot stat", &path, e))?;
            if !meta.is_file() {
                return Ok(None);
            }
            let mut data = Vec::new();
            file.read_to_end(&mut data)
                .map_err(|e| io_err("cannot read", &path, e))?;
            Ok(Some(Versioned {
                data: Bytes::from(data),
                version: Version(version_of(&meta)),
            }))
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

    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<DeleteFailure>, StoreError> {
        let mut failures = Vec::new();
        for batch in keys.chunks(MAX_DELETE_BATCH) {
            let root = self.root.clone();
            let batch: Vec<(Key, PathBuf)> =
                batch.iter().map(|k| (k.clone(), self.path_of(k))).collect();
            failures.extend(blocking(move || Ok(remove_files(&root, batch))).await?);
        }
        Ok(failures)
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

/// `data` staged next to `target`, not yet committed.
fn stage_bytes(target: &Path, data: &[u8]) -> Result<Staged, StoreError> {
    let mut staged =
        Staged::new(target).map_err(|e| io_err("cannot create a temp file for", target, e))?;
    staged
        .file()
        .write_all(data)
        .map_err(|e| io_err("cannot write", target, e))?;
    Ok(staged)
}

/// Removes each file (a missing one counts as removed), then the directories left empty
/// between them and `root`, so a pruned date folder does not stay behind as an empty
/// directory.
fn remove_files(root: &Path, files: Vec<(Key, PathBuf)>) -> Vec<DeleteFailure> {
    let mut failures = Vec::new();
    let mut parents = std::collections::BTreeSet::new();
    for (key, path) in files {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if is_missing(&e) || e.kind() == io::ErrorKind::IsADirectory => {}
            Err(e) => {
                failures.push(DeleteFailure {
                    error: io_err("cannot delete", &path, e),
                    key,
                });
                continue;
            }
        }
        if let Some(p) = path.parent() {
            parents.insert(p.to_path_buf());
        }
    }
    // Deepest first; `remove_dir` refuses a directory that still holds anything.
    for dir in parents.into_iter().rev() {
        let mut dir = dir.as_path();
        while dir != root && dir.starts_with(root) && fs::remove_dir(dir).is_ok() {
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
    }
    failures
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
