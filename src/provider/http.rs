//! HTTP behaviour every provider shares: the one retry policy for API calls (429, 5xx and
//! connection errors, capped jittered backoff, `Retry-After` honoured) and rate-limit pacing
//! from `X-RateLimit-*` headers ([`pace`]). A provider builds its requests and reads its own
//! wire format; how often and how long it waits is decided here, once.
//!
//! `backon` supplies the delay schedule; the loop is ours because it must honour `Retry-After`
//! (hosts send it on some 429s and not on others), count attempts for
//! [`ProviderError::RateLimited`] and choose the final error, which `backon`'s combinators would
//! only make more roundabout.

pub mod pace;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tracing::warn;
use url::Url;

use crate::http::{BodyError, ERROR_CAP, PAGE_CAP, read_capped, read_prefix};
use crate::provider::ProviderError;

/// Longest wait for a host's API to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest one API request may take, answer included (a listing page is small).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The HTTP client of one provider's API: its user agent, its redirect policy, and the one set
/// of timeouts every provider uses. `url` only names the client in an error.
pub fn api_client(
    user_agent: &str,
    redirect: reqwest::redirect::Policy,
    url: &Url,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(redirect)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| ProviderError::Transport {
            url: url.to_string(),
            message: format!("cannot set up the HTTP client: {}", crate::error::chain(&e)),
        })
}

/// A `Retry-After` longer than this ends the retries at once: failing with a clear rate-limit
/// error beats a backup job silently sleeping for most of an hour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How hard to retry transient failures (429, 5xx, connection errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request, the first included (0 is treated as 1).
    pub max_attempts: u32,
    /// First backoff delay; doubles per retry, plus up to 100 % jitter.
    pub base_delay: Duration,
    /// Cap on one backoff delay (not on an honoured `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Seven waits of 2 s doubling to the 120 s cap, 4–6 minutes with jitter: long enough to
    /// ride out a burst limit or a deploy, short enough that a scheduled job fails visibly when
    /// the hourly budget is gone.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The API's policy from `--retries` and `--retry-delay` (`retry`): a few more attempts
    /// than a clone gets, since waiting out a 429 costs nothing, with the delay capped at 30
    /// times the first.
    pub fn for_api(retry: (u32, Duration)) -> Self {
        let (retries, delay) = retry;
        Self {
            max_attempts: retries + 4,
            base_delay: delay,
            max_delay: delay.saturating_mul(30),
        }
    }
}

/// The body of an API answer that is not to be retried by status: a success in full up to
/// [`crate::http::PAGE_CAP`] (it is parsed, so a cut one is refused), an error's first
/// [`crate::http::ERROR_CAP`] bytes (only quoted). A connection lost mid-body is tried again.
pub async fn read_body(resp: reqwest::Response, url: &Url) -> Result<Try<Vec<u8>>, ProviderError> {
    let body = if resp.status().is_success() {
        read_capped(resp, PAGE_CAP).await
    } else {
        read_prefix(resp, ERROR_CAP).await
    };
    match body {
        Ok(body) => Ok(Try::Done(body.to_vec())),
        Err(BodyError::Transport(message)) => Ok(Try::again(Transient::Transport(message))),
        Err(e) => Err(ProviderError::Decode {
            url: url.to_string(),
            message: e.to_string(),
        }),
    }
}

/// Runs `attempt` until it is done, fails for good, or the retry budget is spent.
///
/// Takes closures returning boxed `Send` futures rather than async closures: `async_trait`
/// needs our futures to be `Send` for every lifetime, which rustc cannot prove through
/// unboxed closure futures yet ("implementation of `Send` is not general enough").
/// `provider` names the host in the final error.
pub async fn retrying<'a, T>(
    policy: &RetryPolicy,
    provider: &'static str,
    url: &Url,
    mut attempt: impl FnMut() -> BoxFuture<'a, Result<Try<T>, ProviderError>>,
) -> Result<T, ProviderError> {
    let max_attempts = policy.max_attempts.max(1);
    let mut backoff = ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(policy.base_delay)
        .with_max_delay(policy.max_delay)
        .without_max_times()
        .build();
    let mut n = 1;
    loop {
        let (why, retry_after) = match attempt().await? {
            Try::Done(v) => return Ok(v),
            Try::Again { why, retry_after } => (why, retry_after),
        };
        if n >= max_attempts || retry_after.is_some_and(|d| d > MAX_RETRY_AFTER) {
            return Err(why.into_error(provider, url, n));
        }
        let delay = match retry_after {
            Some(d) => d,
            // Jitter can double a delay; the cap still holds.
            None => backoff
                .next()
                .unwrap_or(policy.max_delay)
                .min(policy.max_delay),
        };
        warn!(
            %url,
            attempt = n,
            max_attempts,
            delay_ms = delay.as_millis() as u64,
            reason = %why.describe(),
            honoured_retry_after = retry_after.is_some(),
            provider,
            "API request failed; retrying"
        );
        tokio::time::sleep(delay).await;
        n += 1;
    }
}

/// What a failed try was, when it is worth another.
#[derive(Debug)]
pub enum Transient {
    RateLimited,
    Status(u16),
    Transport(String),
}

impl Transient {
    pub fn from_status(status: StatusCode) -> Option<Self> {
        match status {
            StatusCode::TOO_MANY_REQUESTS => Some(Transient::RateLimited),
            s if s.is_server_error() => Some(Transient::Status(s.as_u16())),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Transient::RateLimited => "HTTP 429 rate limited".into(),
            Transient::Status(s) => format!("HTTP {s}"),
            Transient::Transport(m) => m.clone(),
        }
    }

    fn into_error(self, provider: &'static str, url: &Url, attempts: u32) -> ProviderError {
        let url = url.to_string();
        match self {
            Transient::RateLimited => ProviderError::RateLimited {
                provider,
                url,
                attempts,
            },
            Transient::Status(status) => ProviderError::Http {
                provider,
                status,
                url,
                message: format!("still failing after {attempts} attempts"),
            },
            Transient::Transport(m) => ProviderError::Transport {
                url,
                message: format!("{m} (after {attempts} attempts)"),
            },
        }
    }
}

pub enum Try<T> {
    Done(T),
    Again {
        why: Transient,
        retry_after: Option<Duration>,
    },
}

impl<T> Try<T> {
    pub fn again(why: Transient) -> Self {
        Try::Again {
            why,
            retry_after: None,
        }
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    /// Runs `retrying` over a script of outcomes; returns the result and the tries made.
    async fn run(
        max_attempts: u32,
        script: impl Fn(u32) -> Result<Try<&'static str>, ProviderError> + Send + Sync,
    ) -> (Result<&'static str, ProviderError>, u32) {
        let url = Url::parse("https://api.example/x").unwrap();
        let tries = AtomicU32::new(0);
        let (tries, script) = (&tries, &script);
        let out = retrying(&policy(max_attempts), "test", &url, move || {
            Box::pin(async move { script(tries.fetch_add(1, Ordering::SeqCst) + 1) })
        })
        .await;
        (out, tries.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let (out, tries) = run(5, |n| match n {
            1 => Ok(Try::again(Transient::Status(502))),
            2 => Ok(Try::again(Transient::Transport("reset".into()))),
            _ => Ok(Try::Done("ok")),
        })
        .await;
        assert_eq!((out.unwrap(), tries), ("ok", 3));
    }

    #[tokio::test]
    async fn the_budget_ends_in_the_matching_error() {
        let (out, tries) = run(3, |_| Ok(Try::again(Transient::RateLimited))).await;
        assert!(matches!(
            out,
            Err(ProviderError::RateLimited { attempts: 3, .. })
        ));
        assert_eq!(tries, 3);
        let (out, _) = run(2, |_| Ok(Try::again(Transient::Status(503)))).await;
        assert!(matches!(out, Err(ProviderError::Http { status: 503, .. })));
        let (out, _) = run(0, |_| {
            Ok(Try::again(Transient::Transport("refused".into())))
        })
        .await;
        assert!(
            matches!(out, Err(ProviderError::Transport { .. })),
            "0 attempts means 1"
        );
    }

    #[tokio::test]
    async fn an_hour_long_retry_after_stops_at_once() {
        let (out, tries) = run(5, |_| {
            Ok(Try::Again {
                why: Transient::RateLimited,
                retry_after: Some(Duration::from_secs(3600)),
            })
        })
        .await;
        assert!(matches!(
            out,
            Err(ProviderError::RateLimited { attempts: 1, .. })
        ));
        assert_eq!(tries, 1);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let (out, tries) = run(5, |_| {
            Err(ProviderError::PaginationLoop { url: "u".into() })
        })
        .await;
        assert!(matches!(out, Err(ProviderError::PaginationLoop { .. })));
        assert_eq!(tries, 1);
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }
}
