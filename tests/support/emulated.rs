//! Small pieces every host emulator's listing shares (besides git, [`super::git_http`], and
//! serving, [`super::server`]): a JSON patch over a listed entry, a repository's size as hosts
//! report it, and token-like random strings.

use std::hash::{BuildHasher, RandomState};
use std::path::Path;

use serde_json::Value;

/// `patch` over `base`: objects key by key, anything else replaced (a hostile or broken entry).
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Bytes under `path`, in KiB (what GitHub's and Gitea's `size` report).
pub fn dir_kb(path: &Path) -> u64 {
    fn bytes(path: &Path) -> u64 {
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => bytes(&e.path()),
                Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }
    bytes(path) / 1024
}

/// `len` random lower-case hex digits.
pub fn random_hex(len: usize) -> String {
    let state = RandomState::new();
    (0..len.div_ceil(16))
        .map(|i| format!("{:016x}", state.hash_one(i)))
        .collect::<String>()[..len]
        .to_string()
}
