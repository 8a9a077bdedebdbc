//! libgit2 work for the pipeline: off the async threads, with the one retry policy.
//!
//! Both git operations (the full fetch and the refs-only listing that decides whether a
//! repository changed) run inside `spawn_blocking` (libgit2 blocks, and a panic there must
//! become one repository's error, not the run's), take credentials only from the provider,
//! renew a refused token once (tokens expire mid-run on long backups: renewing more often
//! would hammer a server that really says no), and retry transient failures with the
//! pipeline's backoff. The mirrors live in private temp dirs: a mirror is a full copy of
//! private source code.
//!
//! Both end by the repository's [`Deadline`] (`--repo-timeout`) and on cancellation. libgit2
//! notices either only in its progress callbacks, which a server trickling bytes inside one
//! pkt-line (or a ref advertisement, which has no callbacks) never lets it reach; the 60 s read
//! timeout does not help against a trickle either. So the pipeline also stops *waiting*:
//! [`ABANDON_AFTER`] past the deadline or a cancel, the attempt is given up and its blocking
//! thread left to end by itself (it fails once its temp dir is gone, or at the server's next
//! stall). The run goes on, and a SIGTERM ends the run well inside the pod's grace period.

use std::path::Path;
use std::time::Duration;

use super::Pipeline;
use crate::mirror::{self, Deadline, FetchOptions, LsRemoteOptions, MirrorError, RemoteRefs};
use crate::provider::{GitAuth, ProviderError, RemoteRepo};

/// How long a libgit2 call may go on past its deadline or a cancel, to stop cleanly at its
/// next callback, before the pipeline stops waiting for it. Together with the time cleanup
/// takes, well inside the CronJob's 120 s grace period.
pub(crate) const ABANDON_AFTER: Duration = Duration::from_secs(10);

impl Pipeline {
    pub(super) async fn fetch_with_retries(
        &self,
        repo: &RemoteRepo,
        dir: &Path,
        deadline: Deadline,
    ) -> Result<mirror::Mirror, String> {
        self.git_with_retries(repo, "mirror", "fetch", deadline, |auth| {
            let (dir, url, cancel, observer, slug) = (
                dir.to_path_buf(),
                repo.clone_url.clone(),
                self.cancel.clone(),
                self.observer.clone(),
                repo.slug.clone(),
            );
            move || {
                // A failed attempt may have left a half-written mirror.
                if dir.exists() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                let progress = |total: u64| observer.received(&slug, total);
                mirror::fetch(
                    &dir,
                    &FetchOptions {
                        url: &url,
                        auth: auth.as_ref(),
                        cancel: &cancel,
                        deadline: Some(deadline),
                        on_progress: Some(&progress),
                    },
                )
            }
        })
        .await
    }

    pub(super) async fn ls_remote_with_retries(
        &self,
        repo: &RemoteRepo,
        deadline: Deadline,
    ) -> Result<RemoteRefs, String> {
        self.git_with_retries(repo, "ls-remote", "listing refs", deadline, |auth| {
            let (url, cancel) = (repo.clone_url.clone(), self.cancel.clone());
            move || {
                mirror::ls_remote(&LsRemoteOptions {
                    url: &url,
                    auth: auth.as_ref(),
                    cancel: &cancel,
                })
            }
        })
        .await
    }

    /// Runs a libgit2 operation off the async threads with the git credentials: a refused
    /// token is renewed once (it most likely expired between `git_auth` and the request),
    /// transient failures are retried with backoff until `deadline`. `op(auth)` builds one
    /// attempt.
    pub(super) async fn git_with_retries<T, G>(
        &self,
        repo: &RemoteRepo,
        what: &str,
        doing: &str,
        deadline: Deadline,
        op: impl Fn(Option<GitAuth>) -> G,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        G: FnOnce() -> Result<T, MirrorError> + Send + 'static,
    {
        let mut delays = self.backoff();
        let mut renewed = false;
        let mut auth = self
            .provider
            .git_auth(repo, false)
            .await
            .map_err(|e| self.credential_error(e))?;
        loop {
            let outcome = tokio::select! {
                done = blocking(op(auth.clone())) => done?,
                () = self.stop_waiting(deadline) => {
                    tracing::warn!(repo = %repo.full_name, "libgit2 did not stop at its deadline or cancel; no longer waiting for it");
                    return Err(format!("{what}: {}", self.gave_up(repo, deadline)));
                }
            };
            match outcome {
                Ok(m) => return Ok(m),
                Err(MirrorError::AuthRejected { .. }) if !renewed => {
                    tracing::info!(repo = %repo.full_name, "git refused the token; renewing it once");
                    renewed = true;
                    auth = self
                        .provider
                        .git_auth(repo, true)
                        .await
                        .map_err(|e| self.credential_error(e))?;
                }
                Err(e) if !e.is_transient() => return Err(format!("{what}: {e}")),
                Err(e) => match delays.next() {
                    Some(delay) if !self.cancel.is_cancelled() && !deadline.passed() => {
                        tracing::warn!(repo = %repo.full_name, error = %e, retry_in = ?delay, "{doing} failed; retrying");
                        self.pause(
                            delay.min(
                                deadline
                                    .at
                                    .saturating_duration_since(std::time::Instant::now()),
                            ),
                        )
                        .await;
                    }
                    Some(_) if deadline.passed() => {
                        return Err(format!("{what}: {e}; {}", self.gave_up(repo, deadline)));
                    }
                    _ => return Err(format!("{what}: {e}")),
                },
            }
        }
    }

    /// A failure to get git credentials, as the repository's error; an auth error (the
    /// credentials themselves were refused) also stops the run from starting more
    /// repositories ([`Pipeline::refused`]).
    fn credential_error(&self, e: ProviderError) -> String {
        let message = e.to_string();
        if e.exit_code() == crate::error::exit::AUTH && self.refused.set(message.clone()).is_ok() {
            tracing::error!(error = %message, "the provider's credentials were refused: no further repository is started");
        }
        message
    }

    /// Ends [`ABANDON_AFTER`] past `deadline`, or that long after a cancel.
    async fn stop_waiting(&self, deadline: Deadline) {
        let late = tokio::time::Instant::from_std(deadline.at) + ABANDON_AFTER;
        tokio::select! {
            () = tokio::time::sleep_until(late) => {}
            () = async {
                self.cancel.cancelled().await;
                tokio::time::sleep(ABANDON_AFTER).await;
            } => {}
        }
    }

    /// Why a repository's git work was given up: the cancel, else its deadline.
    fn gave_up(&self, repo: &RemoteRepo, deadline: Deadline) -> MirrorError {
        let url = mirror::display_url(&repo.clone_url);
        match self.cancel.is_cancelled() {
            true => MirrorError::Cancelled { url },
            false => MirrorError::TimedOut { url, deadline },
        }
    }
}

/// Runs blocking git work off the async threads. A panic inside becomes this repository's
/// error instead of taking the run down.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("internal error: {e}"))
}

/// `message` (a failed fetch or bundle), saying so and naming the directory when the temp
/// dir's disk is full or a quota or file-size limit was hit: the fix is there (free space, or
/// `--tmp-dir` elsewhere), not at the git server. Both libgit2 and std end such messages with
/// the OS's text for the error, which is what is looked for.
pub(crate) fn name_full_disk(tmp_dir: &Path, message: String) -> String {
    let full = [libc::ENOSPC, libc::EDQUOT, libc::EFBIG]
        .iter()
        .any(|&code| {
            let text = std::io::Error::from_raw_os_error(code).to_string();
            message.contains(text.split(" (os error").next().unwrap_or(&text))
        });
    if full {
        format!(
            "the temp dir {} is full (free space there or point --tmp-dir elsewhere): {message}",
            tmp_dir.display()
        )
    } else {
        message
    }
}

/// A temp dir only we can read (0700): a mirror is a full copy of private source code.
pub(crate) fn make_private_tempdir(parent: &Path) -> std::io::Result<tempfile::TempDir> {
    std::fs::create_dir_all(parent)?;
    let mut b = tempfile::Builder::new();
    b.prefix("git-offsite-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o700));
    }
    b.tempdir_in(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn temp_dirs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let d = make_private_tempdir(&parent.path().join("nested")).unwrap();
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let p = d.path().to_path_buf();
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn a_full_disk_is_named_and_other_failures_are_left_alone() {
        let tmp = Path::new("/var/tmp/offsite");
        for os in [libc::ENOSPC, libc::EDQUOT, libc::EFBIG] {
            let e = std::io::Error::from_raw_os_error(os);
            let text = name_full_disk(tmp, format!("mirror: fetch failed: cannot write pack: {e}"));
            assert!(
                text.starts_with("the temp dir /var/tmp/offsite is full")
                    && text.contains("--tmp-dir"),
                "{text}"
            );
        }
        let other = "mirror: fetch of u failed: unexpected http status code: 404".to_string();
        assert_eq!(name_full_disk(tmp, other.clone()), other);
    }
}
