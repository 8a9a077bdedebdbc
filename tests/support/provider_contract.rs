//! The properties every provider must have against its host's emulator, one function each, so
//! every provider runs the same list (the store conformance suite's idea): `provider_suite!` in
//! `tests/provider_contract.rs` stamps one `#[tokio::test]` per function per provider, and a
//! failure reads `bitbucket::an_unknown_owner_is_owner_not_found`.
//!
//! A host's emulator is reached through [`HostFixture`]: how to add repositories, break the
//! credentials, expire them or rate-limit the listing is the emulator's business. Properties a
//! provider cannot have (a plain URL list has no owner to be unknown) are left out of its stamp
//! with a comment saying why; none is weakened for one provider.

use git_offsite::error::exit;
use git_offsite::provider::{Provider, ProviderError, RemoteRepo};

/// One provider and the emulator of its host.
pub trait HostFixture {
    /// The provider under test, with credentials the emulator accepts and a retry policy of
    /// milliseconds.
    fn provider(&self) -> Box<dyn Provider>;
    /// The provider with a secret the emulator refuses, and that secret (for leak checks).
    fn provider_with_bad_credentials(&self) -> (Box<dyn Provider>, &'static str);
    /// Adds git repositories named `slugs` to `owner`, in this order.
    fn add_repos(&self, owner: &str, slugs: &[String]);
    /// Creates `owner` with no repositories.
    fn add_empty_owner(&self, owner: &str);
    /// Repositories per page of the host's listing (as the provider asks for it).
    fn page_len(&self) -> usize;
    /// Listing requests served so far, faulted ones included.
    fn list_requests(&self) -> u64;
    /// Expires every credential issued so far, as a long run outlives a token.
    fn expire_credentials(&self);
    /// `false` for a credential that cannot be renewed (a Bitbucket access or API token):
    /// then expiry must fail clearly instead (an auth error saying it was revoked or expired),
    /// for the listing and for a git credential git refused; a bad one is handed out to git
    /// as is (only the host can tell it is bad).
    fn renewable(&self) -> bool {
        true
    }
    /// The next listing request answers 429, with `Retry-After: secs` or without.
    fn rate_limit_next_list(&self, retry_after: Option<u64>);
    /// 429s served so far.
    fn rate_limited(&self) -> u64;
}

fn slugs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("repo-{i:03}")).collect()
}

fn listed(repos: &[RemoteRepo]) -> Vec<String> {
    repos.iter().map(|r| r.slug.clone()).collect()
}

/// Two full pages and one more: every page is read, in the host's order, nothing twice.
pub async fn lists_every_page(f: &dyn HostFixture) {
    let want = slugs(f.page_len() * 2 + 1);
    f.add_repos("acme", &want);
    let before = f.list_requests();
    let listing = f.provider().list_repos("acme").await.unwrap();
    assert_eq!(listed(&listing.repos), want);
    assert!(listing.rejected.is_empty(), "{:?}", listing.rejected);
    assert_eq!(f.list_requests() - before, 3, "three pages, each read once");
    for r in &listing.repos {
        assert_eq!(r.full_name, format!("acme/{}", r.slug));
        assert_eq!(r.clone_url.username(), "", "no user info in clone URLs");
        assert!(r.clone_url.password().is_none());
    }
}

/// An owner without repositories is an empty listing, not an error.
pub async fn an_empty_owner_lists_nothing(f: &dyn HostFixture) {
    f.add_empty_owner("quiet");
    let listing = f.provider().list_repos("quiet").await.unwrap();
    assert!(listing.repos.is_empty() && listing.rejected.is_empty());
}

/// An owner the host does not know is `OwnerNotFound` (exit 2, "check --owner").
pub async fn an_unknown_owner_is_owner_not_found(f: &dyn HostFixture) {
    let err = f.provider().list_repos("ghost").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::OwnerNotFound { ref owner, .. } if owner == "ghost"),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), exit::USAGE);
    assert!(err.to_string().contains("--owner"), "{err}");
}

/// Refused credentials are an auth error (exit 3) that never shows the secret, for the
/// listing and for git credentials alike.
pub async fn bad_credentials_are_an_auth_error(f: &dyn HostFixture) {
    f.add_repos("acme", &slugs(1));
    let (provider, secret) = f.provider_with_bad_credentials();
    let err = provider.list_repos("acme").await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert_eq!(err.exit_code(), exit::AUTH);
    let shown = format!("{err} {err:?} {provider:?}");
    assert!(!shown.contains(secret), "the secret leaked: {shown}");
    let repo = f
        .provider()
        .list_repos("acme")
        .await
        .unwrap()
        .repos
        .remove(0);
    if f.renewable() {
        let err = provider.git_auth(&repo, false).await.unwrap_err();
        assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    }
}

/// Credentials that expire between two calls (a long run) are renewed without an error, and
/// a refused git credential gives way to a new one.
pub async fn a_token_expiring_mid_run_is_renewed(f: &dyn HostFixture) {
    f.add_repos("acme", &slugs(2));
    let provider = f.provider();
    let repos = provider.list_repos("acme").await.unwrap().repos;
    let before = provider
        .git_auth(&repos[0], false)
        .await
        .unwrap()
        .expect("the provider hands out git credentials");
    f.expire_credentials();
    if !f.renewable() {
        // Nothing to renew with: one clear auth failure (exit 3) that says why.
        let err = provider.list_repos("acme").await.unwrap_err();
        assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
        assert_eq!(err.exit_code(), exit::AUTH);
        assert!(err.to_string().contains("revoked or expired"), "{err}");
        assert!(!err.to_string().contains(before.password.expose()), "{err}");
        // A git credential git refused cannot give way to a new one: an auth error that says
        // why, instead of the same token again.
        let err = provider.git_auth(&repos[1], true).await.unwrap_err();
        assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
        assert!(err.to_string().contains("revoked or expired"), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(before.password.expose()), "{shown}");
        return;
    }
    let again = provider.list_repos("acme").await.unwrap().repos;
    assert_eq!(listed(&again), listed(&repos));
    let after = provider
        .git_auth(&repos[1], true)
        .await
        .unwrap()
        .expect("the provider hands out git credentials");
    assert_ne!(
        after.password.expose(),
        before.password.expose(),
        "a refused credential is replaced"
    );
}

/// For a host whose token cannot be renewed (Gitea: an access token lives until someone deletes
/// it), the adaptation of [`a_token_expiring_mid_run_is_renewed`]: `expire_credentials` revokes
/// it mid-run, and the provider then fails clearly (an auth error saying the token must be
/// replaced, the secret never shown) for the listing and for git credentials alike, instead of
/// retrying or handing out the dead token again.
pub async fn a_token_revoked_mid_run_fails_clearly(f: &dyn HostFixture) {
    f.add_repos("acme", &slugs(2));
    let provider = f.provider();
    let repos = provider.list_repos("acme").await.unwrap().repos;
    let before = provider
        .git_auth(&repos[0], false)
        .await
        .unwrap()
        .expect("the provider hands out git credentials");
    f.expire_credentials();
    let err = provider.list_repos("acme").await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert_eq!(err.exit_code(), exit::AUTH);
    let err = provider.git_auth(&repos[1], true).await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert_eq!(err.exit_code(), exit::AUTH);
    let shown = format!("{err} {err:?} {provider:?}");
    assert!(
        !shown.contains(before.password.expose()),
        "the secret leaked: {shown}"
    );
}

/// A 429 with `Retry-After` is waited out and retried.
pub async fn rate_limited_with_retry_after_is_retried(f: &dyn HostFixture) {
    rate_limited(f, Some(1)).await;
}

/// A 429 without `Retry-After` (Bitbucket documents none) is retried with backoff.
pub async fn rate_limited_without_retry_after_is_retried(f: &dyn HostFixture) {
    rate_limited(f, None).await;
}

async fn rate_limited(f: &dyn HostFixture, retry_after: Option<u64>) {
    f.add_repos("acme", &slugs(3));
    let provider = f.provider();
    f.rate_limit_next_list(retry_after);
    let before = (f.rate_limited(), f.list_requests());
    let listing = provider.list_repos("acme").await.unwrap();
    assert_eq!(listed(&listing.repos), slugs(3));
    assert_eq!(f.rate_limited() - before.0, 1);
    assert_eq!(f.list_requests() - before.1, 2, "the 429, then the page");
}
