//! `--healthcheck-url`: a dead-man's switch in the style of healthchecks.io.
//!
//! Metrics answer "when did the last good backup finish?" only if someone runs Prometheus and
//! an alert on it. A dead-man's switch is the simpler, independent answer: the run pings
//! `{url}/start` when it begins and `{url}` (success) or `{url}/fail` when it ends; the service
//! alerts when a success ping does not arrive on schedule, which also covers the cases the
//! tool cannot report itself (the CronJob never started, the pod was OOM-killed).
//!
//! Rules that follow from its purpose:
//! - A monitoring outage must never fail the backup: every ping returns an error for the caller
//!   to log as a warning, with short timeouts and a couple of retries, never a panic.
//! - The ping URL is a credential (anyone who has it can report success), so errors never
//!   contain it: only scheme and host. The body is the caller's short summary, which must not
//!   hold secrets either; it is cut to [`MAX_BODY`] bytes (the service stores the start of it).
//! - The URL may have a trailing slash or a query (`?create=1` of slug URLs): `/start` and
//!   `/fail` are added as path segments and the query is kept.
//!
//! This module also holds the small retrying HTTP client that [`crate::metrics`] uses for the
//! Pushgateway: both are best-effort reports to a monitoring service.

use std::time::Duration;

use url::Url;

/// Bodies are cut to this many bytes: self-hosted Healthchecks keeps 10 kB by default.
pub const MAX_BODY: usize = 10_000;
/// Per-request timeout (connect, send, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Further attempts after a connection error, timeout, 429 or 5xx.
pub const DEFAULT_RETRIES: u32 = 2;
/// First pause before a retry; doubles each time.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthcheckError {
    /// The message never repeats the URL: it is a credential.
    #[error("invalid healthcheck URL: {0}")]
    InvalidUrl(String),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("healthcheck {ping} ping to {url} failed: {message}")]
    Request {
        ping: &'static str,
        url: String,
        message: String,
    },
    #[error("healthcheck {ping} ping to {url} was answered {status}: {body}")]
    Status {
        ping: &'static str,
        url: String,
        status: u16,
        body: String,
    },
}

/// A healthchecks.io-style check, e.g. `https://hc-ping.com/<uuid>`.
#[derive(Debug, Clone)]
pub struct Healthcheck {
    url: Url,
    http: HttpClient,
}

impl Healthcheck {
    pub fn new(url: &str) -> Result<Self, HealthcheckError> {
        let url = parse_http_url(url).map_err(HealthcheckError::InvalidUrl)?;
        Ok(Healthcheck {
            url,
            http: HttpClient::new().map_err(HealthcheckError::Client)?,
        })
    }

    /// Retries after a connection error, timeout, 429 or 5xx, `delay` doubling each time.
    pub fn with_retries(mut self, retries: u32, delay: Duration) -> Self {
        self.http = self.http.with_retries(retries, delay);
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.http = self.http.with_timeout(timeout);
        self
    }

    /// The URL as it may be logged: scheme and host only.
    pub fn display_url(&self) -> String {
        redact_url(&self.url, false)
    }

    /// `POST {url}/start`: the run began (the service then also measures its duration).
    pub async fn start(&self) -> Result<(), HealthcheckError> {
        self.ping("start", Some("start"), "").await
    }

    /// `POST {url}` with a short summary: the run succeeded.
    pub async fn success(&self, body: &str) -> Result<(), HealthcheckError> {
        self.ping("success", None, body).await
    }

    /// `POST {url}/fail` with a short summary: the run failed.
    pub async fn fail(&self, body: &str) -> Result<(), HealthcheckError> {
        self.ping("fail", Some("fail"), body).await
    }

    fn endpoint(&self, suffix: Option<&str>) -> Url {
        let mut url = self.url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            if let Some(s) = suffix {
                segments.push(s);
            }
        }
        url.set_fragment(None);
        url
    }

    async fn ping(
        &self,
        ping: &'static str,
        suffix: Option<&str>,
        body: &str,
    ) -> Result<(), HealthcheckError> {
        let url = self.endpoint(suffix);
        self.http
            .post(
                &url,
                truncate(body, MAX_BODY).to_string(),
                "text/plain; charset=utf-8",
            )
            .await
            .map_err(|f| match f {
                Failure::Request(message) => HealthcheckError::Request {
                    ping,
                    url: self.display_url(),
                    message,
                },
                Failure::Status(status, body) => HealthcheckError::Status {
                    ping,
                    url: self.display_url(),
                    status,
                    body,
                },
            })
    }
}

/// The first `max` bytes of `s`, cut on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `url` parsed, and refused unless it is an `http://` or `https://` URL with a host: the one
/// check for every monitoring endpoint (healthcheck, Pushgateway).
pub(crate) fn parse_http_url(url: &str) -> Result<Url, String> {
    let url = Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err("it must be an http:// or https:// URL".into());
    }
    Ok(url)
}

/// `url` without user info, query or fragment, and without its path unless `keep_path`: what
/// may appear in a log line.
pub(crate) fn redact_url(url: &Url, keep_path: bool) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = if keep_path { url.path() } else { "/…" };
    format!("{}://{host}{port}{path}", url.scheme())
}

/// Why a best-effort POST failed: a transport error (message without the URL), or the
/// server's status and the start of its answer.
#[derive(Debug)]
pub(crate) enum Failure {
    Request(String),
    Status(u16, String),
}

/// A reqwest client with a per-request timeout and bounded retries, for monitoring pings.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    retries: u32,
    retry_delay: Duration,
}

impl HttpClient {
    pub(crate) fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .user_agent(crate::TOOL)
            .connect_timeout(DEFAULT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| crate::error::chain(&e.without_url()))?;
        Ok(HttpClient {
            client,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            retry_delay: DEFAULT_RETRY_DELAY,
        })
    }

    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub(crate) fn with_retries(mut self, retries: u32, delay: Duration) -> Self {
        self.retries = retries;
        self.retry_delay = delay;
        self
    }

    pub(crate) async fn post(
        &self,
        url: &Url,
        body: String,
        content_type: &str,
    ) -> Result<(), Failure> {
        let mut delay = self.retry_delay;
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .post(url.clone())
                .timeout(self.timeout)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone())
                .send()
                .await;
            let failure = match result {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let text = crate::http::read_prefix(resp, crate::http::ERROR_CAP)
                        .await
                        .unwrap_or_default();
                    let failure = Failure::Status(
                        status.as_u16(),
                        crate::text::quote(&String::from_utf8_lossy(&text)),
                    );
                    if !(status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS)
                    {
                        return Err(failure);
                    }
                    failure
                }
                Err(e) if e.is_builder() => {
                    return Err(Failure::Request(crate::error::chain(&e.without_url())));
                }
                Err(e) => Failure::Request(crate::error::chain(&e.without_url())),
            };
            if attempt >= self.retries {
                return Err(failure);
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(url: &str) -> (String, String, String) {
        let h = Healthcheck::new(url).unwrap();
        (
            h.endpoint(Some("start")).to_string(),
            h.endpoint(None).to_string(),
            h.endpoint(Some("fail")).to_string(),
        )
    }

    #[test]
    fn endpoints_with_and_without_trailing_slash() {
        let want = (
            "https://hc-ping.com/abc/start".to_string(),
            "https://hc-ping.com/abc".to_string(),
            "https://hc-ping.com/abc/fail".to_string(),
        );
        assert_eq!(endpoints("https://hc-ping.com/abc"), want);
        assert_eq!(endpoints("https://hc-ping.com/abc/"), want);
        assert_eq!(
            endpoints("https://hc-ping.com/key/backup?create=1").0,
            "https://hc-ping.com/key/backup/start?create=1"
        );
    }

    #[test]
    fn the_url_never_shows_in_errors() {
        let h = Healthcheck::new("https://user:pw@hc-ping.com/secret-uuid?x=1").unwrap();
        assert_eq!(h.display_url(), "https://hc-ping.com/…");
        for bad in ["secret-uuid", "ftp://hc/secret-uuid", "https://"] {
            let e = Healthcheck::new(bad).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn bodies_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(
            truncate(&"x".repeat(MAX_BODY + 5), MAX_BODY).len(),
            MAX_BODY
        );
    }
}
