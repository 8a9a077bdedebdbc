//! Walking the directory tree: what a listing or a sweep sees (objects, and staged temp files
//! by the key they were going to become). Symlinks are never followed, so nothing outside the
//! root is ever listed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::staged::temp_target;
use super::{Key, StoreError, io_err};

/// Whether `dir` holds an object somewhere below it (temp files of uploads in flight do not
/// count), as an S3 listing would only show a folder with an object in it.
pub(super) fn holds_an_object(dir: &Path) -> io::Result<bool> {
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

/// A regular file found under the root.
pub(super) struct Entry {
    /// The object key; for a temp file, the key it was going to become.
    pub(super) key: String,
    pub(super) path: PathBuf,
    pub(super) len: u64,
    pub(super) modified: SystemTime,
    pub(super) temp: bool,
}

/// Every regular file whose key starts with `prefix`, walking only the directory the prefix
/// names. Symlinks are skipped so a listing never leaves the root.
pub(super) fn scan(root: &Path, prefix: &str) -> Result<Vec<Entry>, StoreError> {
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
