//! Mirror one remote repository into a private bare repository with libgit2.
//!
//! Everything here exists to make the fetch safe to run unattended against a hosting service:
//!
//! - **Credentials only through the callback.** The URL never carries user info, so the token
//!   cannot leak into libgit2's error messages, `FETCH_HEAD` or our logs. libgit2 calls the
//!   callback again after every 401 without saying the last answer was refused, and would replay
//!   up to 15 times (`GIT_HTTP_REPLAY_MAX`); a second call can only mean the token was refused,
//!   so we fail it at once and report [`MirrorError::AuthRejected`]: the pipeline can then ask
//!   the provider for a fresh token instead of hammering the server.
//! - **Every ref, as is.** `+refs/*:refs/*` with prune into a fresh bare repository gives the
//!   same refs as `git clone --mirror` (branches, tags, notes, anything custom).
//! - **HEAD from the remote.** libgit2 never moves a bare repository's HEAD on fetch; the
//!   remote's advertised default branch is still known after the fetch, so HEAD is pointed there
//!   and the bundle (and any `git clone` of it) checks out the right branch.
//! - **Credentials for one host only.** The callback refuses any URL whose scheme, host or port
//!   differ from the clone URL's (a redirect, a rewritten URL), off-site redirects are not
//!   followed, and libgit2 reads no user or system git configuration ([`crate::libgit2::init`]):
//!   `url.*.insteadOf`, `http.*` and credential helpers there could send the token elsewhere.
//! - **Proxy from the environment** (`ProxyOptions::auto()`), which libgit2 ignores by default.
//! - **Cancellation and the deadline** (`--repo-timeout`) through the transfer-progress and
//!   sideband callbacks, the only hooks libgit2 polls while the pack streams in. libgit2 calls
//!   them per pkt-line (or per 100 KiB), so a server trickling bytes inside one pkt-line is
//!   not seen here; the pipeline stops waiting for such a fetch (see `backup::git`).
//! - **Refs without a clone** ([`ls_remote`]): the ref advertisement alone, with the same
//!   credential rules, so an incremental run can tell an unchanged repository from a changed
//!   one for the price of one small request.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, Cred, Direction, ErrorClass, ErrorCode, FetchPrune, ProxyOptions,
    RemoteCallbacks, RemoteRedirect, Repository, RepositoryInitOptions,
};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::provider::GitAuth;

pub struct FetchOptions<'a> {
    /// Clone URL without user info.
    pub url: &'a Url,
    pub auth: Option<&'a GitAuth>,
    pub cancel: &'a CancellationToken,
    /// When the fetch must have ended; `None`: no limit.
    pub deadline: Option<Deadline>,
    /// Called with the total bytes received so far.
    pub on_progress: Option<&'a (dyn Fn(u64) + Send + Sync)>,
}

/// The moment one repository's git work must end (`--repo-timeout`), and the limit it came
/// from, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// The same deadline moved later by `by` (time spent waiting that does not count).
    pub fn extended(self, by: Duration) -> Self {
        Deadline {
            at: self.at + by,
            ..self
        }
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The one message for a repository out of time: "`what` did not finish within 2h
    /// (--repo-timeout)".
    pub fn exceeded(&self, what: &str) -> String {
        format!(
            "{what} did not finish within {} (--repo-timeout)",
            humantime::format_duration(self.limit)
        )
    }
}

fn passed(deadline: Option<Deadline>) -> bool {
    deadline.is_some_and(|d| d.passed())
}

#[derive(Debug, Clone, Default)]
pub struct Mirror {
    /// Symbolic target of HEAD after the fetch (`refs/heads/main`), `None` when the remote has no
    /// default branch (empty repository).
    pub head: Option<String>,
    /// Every ref fetched, name → hex oid.
    pub refs: BTreeMap<String, String>,
    pub received_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    #[error("the git server refused the credentials for {url}")]
    AuthRejected { url: String },
    /// The server wants credentials and the provider has none for this host (`urls` without a
    /// netrc entry): nothing to renew.
    #[error(
        "{url} requires credentials and none are configured for its host (a `machine` entry in --netrc)"
    )]
    CredentialsRequired { url: String },
    #[error("fetch of {url} was cancelled")]
    Cancelled { url: String },
    /// The repository's `--repo-timeout` passed while the fetch ran.
    #[error("{}", deadline.exceeded(&format!("fetch of {url}")))]
    TimedOut { url: String, deadline: Deadline },
    /// Credentials were asked for by another host than the clone URL's (a redirect).
    #[error("{url} sent the client to {host}; credentials are sent to the clone URL's host only")]
    ForeignHost { url: String, host: String },
    /// The server could not be reached or broke off (DNS, refused, TLS, reset, HTTP 5xx).
    #[error("could not connect to {url}: {message}")]
    Network { url: String, message: String },
    #[error("fetch of {url} failed: {message}")]
    Git { url: String, message: String },
}

impl MirrorError {
    /// Worth retrying after a pause (with the same credentials).
    pub fn is_transient(&self) -> bool {
        matches!(self, MirrorError::Network { .. })
    }
}

/// Every ref, force-updated, so the mirror is an exact copy of the remote's ref namespace.
const REFSPEC: &str = "+refs/*:refs/*";

/// How long a connection attempt may take before the fetch fails (and is retried).
pub const CONNECT_TIMEOUT_MS: i32 = 30_000;
/// How long a fetch may wait for the server to send anything before it fails: a stalled
/// server must not hang an unattended run until its deadline. libgit2 polls the cancel token
/// only when data arrives, so after SIGTERM a stalled fetch notices only at this timeout: it
/// must stay well below the CronJob's `terminationGracePeriodSeconds` (120 s), leaving time
/// to abort uploads and remove temp dirs. Git servers send keep-alives while they prepare a
/// pack, so a healthy fetch is never silent this long.
pub const READ_TIMEOUT_MS: i32 = 60_000;

/// Fetches every ref of `opts.url` (`+refs/*:refs/*`) into a new bare repository at `dir`
/// and points its HEAD at the remote's default branch. Blocking: call from `spawn_blocking`.
///
/// `dir` should not exist yet (or be empty): a fresh mirror holds exactly one pack, which
/// [`crate::bundle::write`] then copies verbatim. Fetching again into the same directory works
/// but adds a second pack, and the bundle has to build a new one.
pub fn fetch(dir: &Path, opts: &FetchOptions<'_>) -> Result<Mirror, MirrorError> {
    let url = display_url(opts.url);
    let secret = opts.auth.map(|a| a.password.expose()).unwrap_or("");
    let git_err = |e: git2::Error| MirrorError::Git {
        url: url.clone(),
        message: scrub(e.message(), secret),
    };
    if opts.cancel.is_cancelled() {
        return Err(MirrorError::Cancelled { url });
    }
    if let Some(deadline) = opts.deadline.filter(Deadline::passed) {
        return Err(MirrorError::TimedOut { url, deadline });
    }

    // Not from the system's template directory: its sample hooks and description are a dozen
    // files per repository that nothing here reads, and creating and deleting files is several
    // percent of a backup run's CPU. libgit2's built-in minimal template is used instead.
    let repo = Repository::init_opts(
        dir,
        RepositoryInitOptions::new()
            .bare(true)
            .external_template(false),
    )
    .map_err(git_err)?;
    // `remote_anonymous`, not `Remote::create_detached`: a detached remote has no repository
    // and libgit2 asserts one on fetch. An anonymous remote is in-memory only (nothing written
    // to the mirror's config) and has no refspecs of its own, so the one below is all it uses.
    let mut remote = repo.remote_anonymous(opts.url.as_str()).map_err(git_err)?;

    let auth_calls = Cell::new(0u32);
    let foreign = Cell::new(None);
    let mut callbacks = credential_callbacks(opts.auth, &auth_calls, opts.url, &foreign);
    let go_on = || !opts.cancel.is_cancelled() && !passed(opts.deadline);
    callbacks.transfer_progress(move |stats| {
        if let Some(report) = opts.on_progress {
            report(stats.received_bytes() as u64);
        }
        go_on()
    });
    // Also polled while the server prepares the pack, before pack bytes flow.
    callbacks.sideband_progress(move |_| go_on());

    let mut fetch_opts = git2::FetchOptions::new();
    fetch_opts
        .remote_callbacks(callbacks)
        .proxy_options(proxy_from_env())
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::All)
        .follow_redirects(RemoteRedirect::None)
        .update_fetchhead(false);

    if let Err(e) = remote.fetch(&[REFSPEC], Some(&mut fetch_opts), None) {
        if let Some(host) = foreign.take() {
            return Err(MirrorError::ForeignHost { url, host });
        }
        if !opts.cancel.is_cancelled()
            && let Some(deadline) = opts.deadline.filter(Deadline::passed)
        {
            return Err(MirrorError::TimedOut { url, deadline });
        }
        return Err(classify(e, url, auth_calls.get(), opts.cancel, secret));
    }
    let received_bytes = remote.stats().received_bytes() as u64;

    // The advertised ref list survives the disconnect, so this answers without a new request.
    // An empty remote has no default branch: not an error, the caller skips it.
    let head = match remote.default_branch() {
        Ok(buf) => buf.as_str().ok().map(str::to_owned),
        Err(_) => None,
    };
    let head = match head {
        Some(name) if repo.find_reference(&name).is_ok() => {
            repo.set_head(&name).map_err(git_err)?;
            Some(name)
        }
        _ => None,
    };

    let mut refs = BTreeMap::new();
    for reference in repo.references().map_err(git_err)? {
        let reference = reference.map_err(git_err)?;
        if let Some(oid) = reference.target() {
            let name = String::from_utf8_lossy(reference.name_bytes()).into_owned();
            refs.insert(name, oid.to_string());
        }
    }

    Ok(Mirror {
        head,
        refs,
        received_bytes,
    })
}

/// What the remote advertises, without fetching anything: see [`ls_remote`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteRefs {
    /// Every advertised `refs/*` ref, name → hex oid (annotated tags as the tag object, as a
    /// mirror stores them; no peeled `^{}` entries, no `HEAD`).
    pub refs: BTreeMap<String, String>,
    /// The default branch (`refs/heads/main`), as [`fetch`] would set HEAD: `None` when the
    /// remote has none or it names a ref that does not exist (an unborn branch).
    pub head: Option<String>,
}

pub struct LsRemoteOptions<'a> {
    /// Clone URL without user info.
    pub url: &'a Url,
    pub auth: Option<&'a GitAuth>,
    pub cancel: &'a CancellationToken,
}

/// Asks the remote for its refs only: one ref advertisement (`GET info/refs`), no pack, no
/// repository on disk. Credentials, proxy, timeouts and error classification are those of
/// [`fetch`], so the caller retries and renews the token the same way. Blocking: call from
/// `spawn_blocking`.
///
/// libgit2's `RemoteHead::name` panics on a ref name that is not UTF-8 (git allows them,
/// nobody uses them); the pipeline runs this inside `spawn_blocking`, which turns that panic
/// into an error, and an error here only means the repository is backed up in full.
pub fn ls_remote(opts: &LsRemoteOptions<'_>) -> Result<RemoteRefs, MirrorError> {
    let url = display_url(opts.url);
    let secret = opts.auth.map(|a| a.password.expose()).unwrap_or("");
    if opts.cancel.is_cancelled() {
        return Err(MirrorError::Cancelled { url });
    }
    // A detached remote needs no repository: connect and list never touch one (only fetch
    // does, see [`fetch`]).
    let mut remote =
        git2::Remote::create_detached(opts.url.as_str()).map_err(|e| MirrorError::Git {
            url: url.clone(),
            message: scrub(e.message(), secret),
        })?;
    let auth_calls = Cell::new(0u32);
    let foreign = Cell::new(None);
    let callbacks = credential_callbacks(opts.auth, &auth_calls, opts.url, &foreign);
    let connection =
        match remote.connect_auth(Direction::Fetch, Some(callbacks), Some(proxy_from_env())) {
            Ok(c) => c,
            Err(e) => {
                if let Some(host) = foreign.take() {
                    return Err(MirrorError::ForeignHost { url, host });
                }
                return Err(classify(e, url, auth_calls.get(), opts.cancel, secret));
            }
        };
    let listed = connection
        .list()
        .map_err(|e| classify(e, url.clone(), auth_calls.get(), opts.cancel, secret))?;
    let mut refs = BTreeMap::new();
    for head in listed {
        let name = head.name();
        // `HEAD` is the default branch (below); `^{}` lines repeat an annotated tag's target,
        // which a mirror does not store as a ref.
        if name.starts_with("refs/") && !name.ends_with("^{}") {
            refs.insert(name.to_owned(), head.oid().to_string());
        }
    }
    let head = connection
        .default_branch()
        .ok()
        .and_then(|buf| buf.as_str().ok().map(str::to_owned))
        .filter(|name| refs.contains_key(name));
    Ok(RemoteRefs { refs, head })
}

/// The credentials callback of [`fetch`] and [`ls_remote`]: the token on the first call, an
/// error on any later one (the server refused it), counted in `calls` for [`classify`]. A call
/// for a URL on another scheme, host or port than `clone_url` (libgit2 followed a redirect)
/// gets nothing; the host is noted in `foreign`.
fn credential_callbacks<'a>(
    auth: Option<&'a GitAuth>,
    calls: &'a Cell<u32>,
    clone_url: &'a Url,
    foreign: &'a Cell<Option<String>>,
) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |url, _username_from_url, _allowed| {
        let asking = Url::parse(url).ok();
        if !asking
            .as_ref()
            .is_some_and(|u| crate::config::url::same_origin(u, clone_url))
        {
            let host = asking
                .as_ref()
                .map(crate::config::url::redact)
                .unwrap_or_else(|| "an unparsable URL".into());
            foreign.set(Some(host));
            return Err(git2::Error::new(
                ErrorCode::GenericError,
                ErrorClass::Callback,
                "refusing to send credentials to another host",
            ));
        }
        calls.set(calls.get() + 1);
        match auth {
            // A second call means the server answered 401 to the first credentials.
            Some(auth) if calls.get() == 1 => {
                Cred::userpass_plaintext(&auth.username, auth.password.expose())
            }
            Some(_) => Err(auth_error("the server refused the credentials")),
            None => Err(auth_error(
                "the server requires credentials and none were given",
            )),
        }
    });
    callbacks
}

/// libgit2 ignores the environment's proxy settings unless told to read them.
pub(crate) fn proxy_from_env() -> ProxyOptions<'static> {
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    proxy
}

pub(crate) fn auth_error(message: &str) -> git2::Error {
    git2::Error::new(ErrorCode::Auth, ErrorClass::Http, message)
}

/// Turns libgit2's error into ours. Order matters: a cancelled fetch fails with whatever error
/// the aborted transfer produced, and a refused token shows up as our own callback error, as
/// libgit2's replay limit, or as a plain 401, depending on where the server said no. `secret`
/// is the password sent, empty when there were no credentials to send.
fn classify(
    e: git2::Error,
    url: String,
    auth_calls: u32,
    cancel: &CancellationToken,
    secret: &str,
) -> MirrorError {
    let message = scrub(e.message(), secret);
    if cancel.is_cancelled() {
        return MirrorError::Cancelled { url };
    }
    // libgit2 never asks us for proxy credentials (git2 sets none), and a proxy saying no is
    // not the hosting service refusing our token: renewing the token would not help.
    if message.starts_with("proxy") {
        return MirrorError::Git { url, message };
    }
    if auth_calls >= 2
        || e.code() == ErrorCode::Auth
        || message.contains("too many redirects or authentication replays")
        || message.contains("status code: 401")
        || message.contains("authentication required")
    {
        return match secret.is_empty() {
            true => MirrorError::CredentialsRequired { url },
            false => MirrorError::AuthRejected { url },
        };
    }
    if is_network(&e, &message) {
        return MirrorError::Network { url, message };
    }
    MirrorError::Git { url, message }
}

/// Failures of the connection rather than of the repository: worth a retry later.
fn is_network(e: &git2::Error, message: &str) -> bool {
    match e.class() {
        ErrorClass::Net | ErrorClass::Ssl => true,
        // Socket errors are reported with the OS class.
        ErrorClass::Os => {
            message.starts_with("failed to connect") || message.starts_with("failed to resolve")
        }
        ErrorClass::Http => {
            // "Invalid EOF state": the connection ended in the middle of an answer (a reset
            // mid-pack), which libgit2's HTTP parser reports in its own words.
            message.contains("unexpected EOF")
                || message.contains("Invalid EOF state")
                || message
                    .strip_prefix("unexpected http status code: ")
                    .is_some_and(|status| status.starts_with('5'))
        }
        _ => false,
    }
}

/// The URL as it may appear in errors: without a password even if a caller slipped one in.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(None);
    }
    shown.to_string()
}

/// Belt and braces: the token never reaches libgit2 except through the callback, but if some
/// server echoed it back into an error message it must still not reach a log.
pub(crate) fn scrub(message: &str, secret: &str) -> String {
    if secret.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret, "***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_broken_off_mid_answer_is_a_network_failure() {
        let http = |m: &str| git2::Error::new(ErrorCode::GenericError, ErrorClass::Http, m);
        for m in [
            "http parser did not consume entire buffer: Invalid EOF state",
            "unexpected EOF",
            "unexpected http status code: 503",
        ] {
            assert!(is_network(&http(m), m), "{m}");
        }
        let m = "unexpected http status code: 404";
        assert!(!is_network(&http(m), m));
    }

    #[test]
    fn scrub_hides_the_secret() {
        assert_eq!(scrub("bad token s3cr3t!", "s3cr3t"), "bad token ***!");
        assert_eq!(scrub("nothing here", ""), "nothing here");
    }

    #[test]
    fn display_url_drops_a_password() {
        let url = Url::parse("https://x-token-auth:tok@example.com/a/b.git").unwrap();
        assert_eq!(
            display_url(&url),
            "https://x-token-auth@example.com/a/b.git"
        );
    }

    #[test]
    fn server_errors_are_network_errors() {
        let e = git2::Error::new(
            ErrorCode::GenericError,
            ErrorClass::Http,
            "unexpected http status code: 503",
        );
        let err = classify(e, "u".into(), 0, &CancellationToken::new(), "");
        assert!(err.is_transient(), "{err:?}");
        let e = git2::Error::new(
            ErrorCode::GenericError,
            ErrorClass::Http,
            "unexpected http status code: 404",
        );
        assert!(matches!(
            classify(e, "u".into(), 0, &CancellationToken::new(), ""),
            MirrorError::Git { .. }
        ));
    }

    #[test]
    fn replay_limit_is_an_auth_failure() {
        let replayed = || {
            git2::Error::new(
                ErrorCode::GenericError,
                ErrorClass::Http,
                "too many redirects or authentication replays",
            )
        };
        assert!(matches!(
            classify(replayed(), "u".into(), 1, &CancellationToken::new(), "tok"),
            MirrorError::AuthRejected { .. }
        ));
        // No credentials sent: nothing was refused, none are configured.
        assert!(matches!(
            classify(replayed(), "u".into(), 1, &CancellationToken::new(), ""),
            MirrorError::CredentialsRequired { .. }
        ));
    }
}
