//! GitHub's wire: one API request through the shared retry policy, and how GitHub signals a
//! rate limit (429, or 403 with `x-ratelimit-remaining: 0`, `Retry-After` or a "rate limit"
//! message) as opposed to a permission error.

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};
use url::Url;

use super::page::api_error_message;
use super::{API_VERSION, GithubProvider, PROVIDER};
use crate::provider::ProviderError;
use crate::provider::http::{Transient, Try, parse_retry_after, read_body, retrying};
use crate::provider::pages::{Answer, next_in};
use crate::secret::Secret;

impl GithubProvider {
    /// One request with `bearer` (a JWT, an installation or a personal token), through the
    /// shared retry policy: rate limits, 5xx and connection failures are tried again.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &Url,
        bearer: &Secret,
    ) -> Result<Answer, ProviderError> {
        retrying(&self.retry, PROVIDER, url, || {
            Box::pin(self.send_once(method.clone(), url, bearer))
        })
        .await
    }

    async fn send_once(
        &self,
        method: Method,
        url: &Url,
        bearer: &Secret,
    ) -> Result<Try<Answer>, ProviderError> {
        self.pacer.wait().await;
        let sent = self
            .http
            .request(method, url.clone())
            .bearer_auth(bearer.expose())
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Ok(Try::again(Transient::Transport(crate::error::chain(&e)))),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        self.pacer.observe(&headers);
        if let Some(retry_after) = rate_limit_wait(status, &headers, chrono::Utc::now().timestamp())
        {
            return Ok(Try::Again {
                why: Transient::RateLimited,
                retry_after,
            });
        }
        if let Some(why) = Transient::from_status(status) {
            let retry_after = parse_retry_after(&headers);
            return Ok(Try::Again { why, retry_after });
        }
        let body = match read_body(resp, url).await? {
            Try::Done(body) => body,
            Try::Again { why, retry_after } => return Ok(Try::Again { why, retry_after }),
        };
        // A secondary limit may come without either header (GitHub: "otherwise, wait at
        // least one minute"); its message says so.
        if status == StatusCode::FORBIDDEN
            && api_error_message(&body)
                .to_ascii_lowercase()
                .contains("rate limit")
        {
            return Ok(Try::again(Transient::RateLimited));
        }
        let next = next_in(&headers);
        Ok(Try::Done(Answer { status, next, body }))
    }
}

/// When an answer is a rate limit, how long to wait before the next try (`None`: the shared
/// backoff decides): `Retry-After` if sent, else for a spent primary limit
/// (`x-ratelimit-remaining: 0`) the time to `x-ratelimit-reset`. 429 always is one; 403 only
/// with those headers (GitHub, "Rate limits for the REST API"), or its message (see
/// `send_once`). `None` overall: not a rate limit.
pub fn rate_limit_wait(
    status: StatusCode,
    headers: &HeaderMap,
    now_unix: i64,
) -> Option<Option<Duration>> {
    if !matches!(
        status,
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    ) {
        return None;
    }
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let Some(d) = parse_retry_after(headers) {
        return Some(Some(d));
    }
    if number("x-ratelimit-remaining") == Some(0) {
        let wait = number("x-ratelimit-reset").map(|reset| {
            // One second more: the window resets at that second, not before it.
            Duration::from_secs((reset - now_unix).max(0) as u64 + 1)
        });
        return Some(wait);
    }
    (status == StatusCode::TOO_MANY_REQUESTS).then_some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn primary_and_secondary_limits_are_told_from_permission_errors() {
        const NOW: i64 = 1_800_000_000;
        let reset = (NOW + 30).to_string();
        let primary = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &primary, NOW),
            Some(Some(Duration::from_secs(31)))
        );
        assert_eq!(
            rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &primary, NOW),
            Some(Some(Duration::from_secs(31)))
        );
        let secondary = headers(&[("retry-after", "7"), ("x-ratelimit-remaining", "4000")]);
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &secondary, NOW),
            Some(Some(Duration::from_secs(7)))
        );
        let denied = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &denied, NOW), None);
        assert_eq!(
            rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &denied, NOW),
            Some(None)
        );
        assert_eq!(rate_limit_wait(StatusCode::OK, &primary, NOW), None);
    }
}
