//! git-offsite: offsite backups of every git repository an owner has on a hosting service.
//!
//! The pipeline is a chain of small modules, each one concept:
//! `cli` (what the user typed) → `config` (one checked struct) → `provider` (list repositories,
//! hand out git credentials) → `mirror` (libgit2 fetch into a private temp dir) → `bundle`
//! (write a standard `git bundle`) → `store` (local directory or S3) → `manifest` (written last,
//! so its presence marks a complete backup). `backup` drives them with bounded concurrency and
//! turns per-repository failures into a [`backup::Report`] instead of stopping.

pub mod backup;
pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod crypt;
pub mod error;
pub mod healthcheck;
pub mod http;
pub mod layout;
pub mod libgit2;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod mirror;
pub mod progress;
pub mod provider;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod secret;
pub mod store;
pub mod text;
pub mod verify;

pub use error::Error;

/// `git-offsite <version>`, as written into manifests and the User-Agent.
pub const TOOL: &str = concat!("git-offsite ", env!("CARGO_PKG_VERSION"));
