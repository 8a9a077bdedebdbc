//! The crate's top-level error and the one place exit codes are chosen.
//!
//! Each module has its own small `thiserror` enum ([`ConfigError`], [`ProviderError`],
//! [`StoreError`], …); this enum wraps the ones that end a run. Per-repository failures never
//! get here: the pipeline records them in its report, and only the summary turns them into
//! [`Error::Partial`]. Exit codes are part of the CLI contract, so they live in
//! [`Error::exit_code`] and nowhere else.

use crate::backup::lock::LockError;
use crate::config::ConfigError;
use crate::provider::ProviderError;
use crate::restore::RestoreError;
use crate::store::StoreError;
use crate::verify::VerifyError;

/// Exit codes of the CLI contract.
pub mod exit {
    /// Every repository was backed up (or was empty).
    pub const OK: u8 = 0;
    /// Something unexpected: a bug or an environment problem not covered below.
    pub const INTERNAL: u8 = 1;
    /// Usage or configuration error: fix the flags, environment or config file.
    pub const USAGE: u8 = 2;
    /// The hosting service refused the credentials.
    pub const AUTH: u8 = 3;
    /// The destination is unreachable or refused the request.
    pub const DESTINATION: u8 = 4;
    /// Some repositories failed; the others were uploaded and the manifest lists the failures.
    pub const PARTIAL: u8 = 5;
    /// The hosting service could not be reached or kept failing (network, 5xx, rate limit).
    pub const SOURCE: u8 = 6;
    /// Another run of the same owner and date holds the lock (or took it from this run).
    pub const LOCKED: u8 = 7;
    /// Stopped by SIGINT/SIGTERM (128 + signal number is what shells expect; we use 130 for both
    /// so scripts can test one value).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Locked(#[from] LockError),
    /// Some repositories failed; the message names how many and where the manifest is.
    #[error("{failed} of {total} repositories failed (see the manifest at {manifest})")]
    Partial {
        failed: usize,
        total: usize,
        manifest: String,
    },
    /// The provider's credentials were refused mid-run: the repositories not yet backed up
    /// were not attempted (the manifest says which).
    #[error(
        "{reason}: the backup of `{owner}` stopped starting repositories; {manifest} records what was backed up"
    )]
    CredentialsRefused {
        owner: String,
        reason: String,
        manifest: String,
    },
    #[error("interrupted: in-flight uploads were aborted and no manifest was written for this run")]
    Interrupted,
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Some repositories failed `verify` or `restore`; the message names them.
    #[error("{} of {total} repositories {what}: {}", failed.len(), failed.join(", "))]
    Failed {
        what: &'static str,
        failed: Vec<String>,
        total: usize,
    },
    /// `prune` could not remove (or rewrite) some objects; it did the rest.
    #[error("prune: {} objects could not be removed, e.g. {first}", failed)]
    PruneIncomplete { failed: usize, first: String },
    /// A read command (verify, restore) stopped by a signal; `cleanup` says what was undone.
    #[error("interrupted: {cleanup}")]
    Stopped { cleanup: &'static str },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::USAGE,
            Error::Provider(e) => e.exit_code(),
            Error::Store(_) => exit::DESTINATION,
            Error::Locked(_) => exit::LOCKED,
            Error::Partial { .. } => exit::PARTIAL,
            Error::CredentialsRefused { .. } => exit::AUTH,
            Error::Interrupted | Error::Stopped { .. } => exit::INTERRUPTED,
            Error::Verify(VerifyError::Store(_)) => exit::DESTINATION,
            Error::Verify(_) => exit::USAGE,
            Error::Restore(e) => match e {
                RestoreError::Store(_) => exit::DESTINATION,
                RestoreError::NoSuchDate { .. }
                | RestoreError::NoSnapshotWith { .. }
                | RestoreError::NoSnapshot { .. }
                | RestoreError::NotInSnapshot { .. }
                | RestoreError::NoBundle { .. }
                | RestoreError::BadTarget { .. }
                | RestoreError::Key { .. } => exit::USAGE,
                RestoreError::Cancelled => exit::INTERRUPTED,
                _ => exit::PARTIAL,
            },
            Error::Failed { .. } => exit::PARTIAL,
            // The destination refused to delete: like any refused request.
            Error::PruneIncomplete { .. } => exit::DESTINATION,
            Error::Io { .. } | Error::Internal(_) => exit::INTERNAL,
        }
    }
}

/// An error and its causes on one line, skipping causes the message already quotes.
/// (Many libraries' own messages are just "error sending request"; the cause says why.)
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
