//! libgit2's process-wide settings, set once at start-up ([`init`]) before any thread uses
//! libgit2: network timeouts, no user or system git configuration, and memory limits.
//!
//! **Memory limits.** libgit2's defaults are made for a desktop: pack windows of 1 GiB, up to
//! 8 GiB mapped in all, and up to 256 MiB of parsed objects cached. Here they are libgit2's
//! 32-bit defaults (32 MiB windows) under a 128 MiB total, and a 32 MiB object cache, so that
//! no repository's size sets how much libgit2 may map or cache by its own accounting.
//!
//! Measured (README, Performance: "Memory"), these limits do **not** bound what a delta-heavy
//! fetch keeps resident: while the indexer resolves deltas, the pack it is writing ends up
//! mapped window after window (RssFile ≈ the pack, per repository in flight) with or without
//! them, 8 MiB windows under a 32 MiB total included. Those are clean or written-back file
//! pages that a memory cgroup reclaims instead of OOM-killing: four 500 MiB delta-heavy
//! repositories at `--jobs 4` completed under a 1 GiB limit. What a cgroup cannot reclaim is
//! the heap of delta resolution (a base and its result, about 3 × the largest deltified blob
//! per job), which is no libgit2 option.
//!
//! What is not set here: `mwindow_file_limit` (how many pack files stay open; 0 = no limit)
//! is already bounded by `--jobs`, each fetch opening the one pack it writes; the indexer's
//! delta-base cache is fixed at 16 MiB per pack (`GIT_PACK_CACHE_MEMORY_LIMIT`, objects over
//! 1 MiB never cached) and has no option. `PackBuilder`'s own limits are in
//! `bundle::PACK_LIMITS`.

use git2::ConfigLevel;

use crate::mirror::{CONNECT_TIMEOUT_MS, READ_TIMEOUT_MS};

/// Size of one mapped pack window (libgit2's 64-bit default: 1 GiB; its 32-bit one: 32 MiB).
/// Reading an object maps the window holding it.
pub const MWINDOW_SIZE: usize = 32 * 1024 * 1024;

/// Mapped pack windows of the whole process, all repositories together (libgit2's default:
/// 8 GiB). A soft limit: least-recently-used windows not in use are unmapped to stay under
/// it. Measured, the indexer's windows over the pack it writes stay mapped beyond it (module
/// doc); for packs read after the fetch (the `PackBuilder` fallback, `verify`) it is not
/// measured.
pub const MWINDOW_MAPPED_LIMIT: usize = 128 * 1024 * 1024;

/// Parsed objects libgit2 may keep in its object caches, all repositories together (default:
/// 256 MiB). Blobs are never cached by default; commits and trees (up to 4 KiB each) are,
/// by revwalks: the `PackBuilder` fallback and `verify --deep`, which read each once.
pub const CACHE_MAX_SIZE: usize = 32 * 1024 * 1024;

/// Sets libgit2's process-wide options: the network timeouts of [`crate::mirror`]; an empty
/// search path for the system, XDG, global and ProgramData configuration (`~/.gitconfig`,
/// `/etc/gitconfig`), so an `insteadOf`, `http.extraHeader` or credential helper there cannot
/// redirect a clone or add credentials to it; and the memory limits above. Call once at
/// start-up, before any thread uses libgit2. Errors are ignored: each setter only fails on an
/// invalid option number, which would be a libgit2-sys mismatch caught by the unit test.
pub fn init() {
    // SAFETY: these only store values in libgit2's global settings; called once, before any
    // thread uses libgit2.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS);
        let _ = git2::opts::set_server_timeout_in_milliseconds(READ_TIMEOUT_MS);
        for level in [
            ConfigLevel::System,
            ConfigLevel::XDG,
            ConfigLevel::Global,
            ConfigLevel::ProgramData,
        ] {
            let _ = git2::opts::set_search_path(level, "");
        }
        let _ = git2::opts::set_mwindow_size(MWINDOW_SIZE);
        let _ = git2::opts::set_mwindow_mapped_limit(MWINDOW_MAPPED_LIMIT);
        let _ = git2::opts::set_cache_max_size(CACHE_MAX_SIZE as libc::ssize_t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `init` leaves in libgit2 is what the constants (and the README) say. Process-wide
    /// state: the other unit tests of this binary see the same limits, which is what the
    /// program runs with.
    #[test]
    fn init_sets_the_limits_libgit2_reports_back() {
        init();
        // SAFETY: reads of libgit2's global settings.
        unsafe {
            assert_eq!(git2::opts::get_mwindow_size().unwrap(), MWINDOW_SIZE);
            assert_eq!(
                git2::opts::get_mwindow_mapped_limit().unwrap(),
                MWINDOW_MAPPED_LIMIT
            );
            let (_, allowed) = git2::opts::get_cached_memory().unwrap();
            assert_eq!(allowed, CACHE_MAX_SIZE as libc::ssize_t);
            assert_eq!(
                git2::opts::get_server_timeout_in_milliseconds().unwrap(),
                READ_TIMEOUT_MS
            );
            assert_eq!(
                git2::opts::get_server_connect_timeout_in_milliseconds().unwrap(),
                CONNECT_TIMEOUT_MS
            );
            for level in [ConfigLevel::System, ConfigLevel::Global, ConfigLevel::XDG] {
                let path = git2::opts::get_search_path(level).unwrap();
                assert!(path.as_bytes().is_empty(), "{level:?}: {path:?}");
            }
        }
    }
}
