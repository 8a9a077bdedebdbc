//! Pushing a restored repository to a new, empty remote (`restore --push-to URL`).
//!
//! The usual reason to restore is that the hosting service lost a repository; the quickest
//! way back is to push every ref into a freshly created one. Three rules make that safe:
//!
//! - **Credentials never in argv, URLs or logs.** They come from `GIT_OFFSITE_PUSH_USERNAME`
//!   / `GIT_OFFSITE_PUSH_PASSWORD` or from the user's git credential helpers (libgit2's
//!   support, with the default git config), and reach libgit2 only through the credentials
//!   callback. As in [`crate::mirror`], a second call of the callback means the server refused
//!   the first answer: the push fails at once instead of replaying up to 15 times.
//! - **Only into an empty remote.** The refspecs are forced (`+<ref>:<ref>`, so a ref is
//!   written exactly as the bundle has it), which on a remote that already holds those refs
//!   would overwrite someone's work; the negotiation callback refuses the push when any ref
//!   being pushed already exists there.
//! - **Every ref, as is**: the header's refs, one refspec each, and every server answer per
//!   ref is checked (a hook may reject some).
//!
//! Blocking (libgit2): call from `spawn_blocking`.

use std::cell::{Cell, RefCell};
use std::path::Path;

use git2::{Cred, CredentialType, ErrorCode, RemoteCallbacks, Repository};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::mirror::{auth_error, display_url, proxy_from_env, scrub};
use crate::secret::Secret;

/// Where push credentials come from.
#[derive(Debug, Clone, Default)]
pub struct PushAuth {
    /// `GIT_OFFSITE_PUSH_USERNAME` (else the URL's user name).
    pub username: Option<String>,
    /// `GIT_OFFSITE_PUSH_PASSWORD`; without it, git's credential helpers are asked.
    pub password: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    #[error("{url} refused the credentials")]
    AuthRejected { url: String },
    #[error(
        "{url} asks for credentials and none were found: set GIT_OFFSITE_PUSH_USERNAME and \
         GIT_OFFSITE_PUSH_PASSWORD, or configure a git credential helper for it"
    )]
    NoCredentials { url: String },
    #[error("{url} is not empty ({refs} already there): push only into a new, empty repository")]
    NotEmpty { url: String, refs: String },
    #[error("{url} rejected {}: {}", if rejected.len() == 1 { "a ref" } else { "refs" }, rejected.join("; "))]
    Rejected { url: String, rejected: Vec<String> },
    #[error("push to {url} was cancelled")]
    Cancelled { url: String },
    #[error("push to {url} failed: {message}")]
    Git { url: String, message: String },
}

/// Pushes `refs` (each as `+<ref>:<ref>`) from the repository at `git_dir` to `url`.
/// Returns how many refs were pushed.
pub fn push(
    git_dir: &Path,
    url: &Url,
    auth: &PushAuth,
    refs: &[String],
    cancel: &CancellationToken,
) -> Result<usize, PushError> {
    let shown = display_url(url);
    let secret = auth.password.as_ref().map(Secret::expose).unwrap_or("");
    let git_err = |e: git2::Error| PushError::Git {
        url: shown.clone(),
        message: scrub(e.message(), secret),
    };
    if cancel.is_cancelled() {
        return Err(PushError::Cancelled { url: shown });
    }
    let repo = Repository::open(git_dir).map_err(git_err)?;
    let mut remote = repo.remote_anonymous(url.as_str()).map_err(git_err)?;

    let calls = Cell::new(0u32);
    let missing_credentials = Cell::new(false);
    let existing = RefCell::new(Vec::new());
    let rejected = RefCell::new(Vec::new());
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|cred_url, url_user, allowed| {
        calls.set(calls.get() + 1);
        if calls.get() > 1 {
            return Err(auth_error("the server refused the credentials"));
        }
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            missing_credentials.set(true);
            return Err(auth_error(
                "the server wants credentials other than a password",
            ));
        }
        let username = auth.username.as_deref().or(url_user);
        match (&auth.password, username) {
            (Some(password), Some(user)) => Cred::userpass_plaintext(user, password.expose()),
            (Some(_), None) => {
                missing_credentials.set(true);
                Err(auth_error(
                    "GIT_OFFSITE_PUSH_PASSWORD is set, but no user name",
                ))
            }
            (None, _) => user_git_config()
                .and_then(|config| Cred::credential_helper(&config, cred_url, username))
                .map_err(|_| {
                    missing_credentials.set(true);
                    auth_error("no credential helper had credentials")
                }),
        }
    });
    callbacks.push_negotiation(|updates| {
        let taken: Vec<String> = updates
            .iter()
            .filter(|u| !u.src().is_zero())
            .map(|u| String::from_utf8_lossy(u.dst_refname_bytes()).into_owned())
            .collect();
        if !taken.is_empty() {
            *existing.borrow_mut() = taken;
            return Err(git2::Error::from_str("the remote is not empty"));
        }
        if cancel.is_cancelled() {
            return Err(git2::Error::from_str("cancelled"));
        }
        Ok(())
    });
    callbacks.push_update_reference(|name, status| {
        if let Some(why) = status {
            rejected.borrow_mut().push(format!("{name} ({why})"));
        }
        Ok(())
    });
    callbacks.sideband_progress(|_| !cancel.is_cancelled());

    let mut opts = git2::PushOptions::new();
    opts.remote_callbacks(callbacks)
        .proxy_options(proxy_from_env());
    let specs: Vec<String> = refs.iter().map(|r| format!("+{r}:{r}")).collect();
    let pushed = remote.push(&specs, Some(&mut opts));
    drop(opts);

    let existing = existing.into_inner();
    if !existing.is_empty() {
        let mut refs: Vec<&str> = existing.iter().take(3).map(String::as_str).collect();
        if existing.len() > 3 {
            refs.push("…");
        }
        return Err(PushError::NotEmpty {
            url: shown,
            refs: refs.join(", "),
        });
    }
    if let Err(e) = pushed {
        if cancel.is_cancelled() {
            return Err(PushError::Cancelled { url: shown });
        }
        if missing_credentials.get() {
            return Err(PushError::NoCredentials { url: shown });
        }
        let message = scrub(e.message(), secret);
        if calls.get() >= 2
            || e.code() == ErrorCode::Auth
            || message.contains("too many redirects or authentication replays")
            || message.contains("status code: 401")
        {
            return Err(PushError::AuthRejected { url: shown });
        }
        return Err(PushError::Git {
            url: shown,
            message,
        });
    }
    let rejected = rejected.into_inner();
    if !rejected.is_empty() {
        return Err(PushError::Rejected {
            url: shown,
            rejected,
        });
    }
    Ok(refs.len())
}

/// The user's and system's git configuration, read only here, for their credential helpers:
/// the process keeps libgit2 away from it otherwise ([`crate::libgit2::init`]
/// empties its search path, so no `insteadOf` or `http.*` setting touches a backup).
fn user_git_config() -> Result<git2::Config, git2::Error> {
    let mut config = git2::Config::new()?;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let files = [
        (
            Some(std::path::PathBuf::from("/etc/gitconfig")),
            git2::ConfigLevel::System,
        ),
        (
            xdg.map(|x| x.join("git").join("config")),
            git2::ConfigLevel::XDG,
        ),
        (
            home.map(|h| h.join(".gitconfig")),
            git2::ConfigLevel::Global,
        ),
    ];
    for (path, level) in files {
        if let Some(path) = path.filter(|p| p.is_file()) {
            config.add_file(&path, level, false)?;
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local bare repository accepts pushes over the file transport; pushing twice must be
    /// refused the second time (the remote is no longer empty), and nothing is overwritten.
    #[test]
    fn pushes_every_ref_and_only_into_an_empty_remote() {
        let tmp = tempfile::tempdir().unwrap();
        let src = Repository::init_bare(tmp.path().join("src")).unwrap();
        let sig = git2::Signature::new("T", "t@example.invalid", &git2::Time::new(1, 0)).unwrap();
        let tree = {
            let tb = src.treebuilder(None).unwrap();
            tb.write().unwrap()
        };
        let tree = src.find_tree(tree).unwrap();
        let c = src
            .commit(Some("refs/heads/main"), &sig, &sig, "one", &tree, &[])
            .unwrap();
        src.reference("refs/notes/commits", c, true, "t").unwrap();
        let dst = Repository::init_bare(tmp.path().join("dst")).unwrap();
        let url = Url::from_file_path(dst.path()).unwrap();
        let refs = vec![
            "refs/heads/main".to_string(),
            "refs/notes/commits".to_string(),
        ];
        let cancel = CancellationToken::new();
        assert_eq!(
            push(src.path(), &url, &PushAuth::default(), &refs, &cancel).unwrap(),
            2
        );
        for r in &refs {
            assert_eq!(dst.refname_to_id(r).unwrap(), c, "{r}");
        }
        let e = push(src.path(), &url, &PushAuth::default(), &refs, &cancel).unwrap_err();
        assert!(matches!(e, PushError::NotEmpty { .. }), "{e}");
        assert!(e.to_string().contains("refs/heads/main"), "{e}");
    }
}
