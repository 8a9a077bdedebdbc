//! Pushing each owner's metrics to a Pushgateway, one group per owner (see the module docs of
//! [`super`] for why).

use std::time::Duration;

use url::Url;

use super::{CONTENT_TYPE, JOB, RunMetrics};
use crate::healthcheck::{Failure, HttpClient, parse_http_url, redact_url};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The message never repeats the URL: it may hold credentials.
    #[error("invalid Pushgateway URL: {0}")]
    InvalidUrl(String),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("pushing metrics to {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("the Pushgateway at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// A Pushgateway to `POST` each owner's metrics to.
#[derive(Debug, Clone)]
pub struct Pushgateway {
    base: Url,
    http: HttpClient,
}

impl Pushgateway {
    /// `url` is the gateway's base (`http://pushgateway.monitoring.svc:9091`, possibly with a
    /// path prefix and `user:password@` for basic auth). Timeout 10 s, two retries.
    pub fn new(url: &str) -> Result<Self, PushError> {
        let base = parse_http_url(url).map_err(PushError::InvalidUrl)?;
        Ok(Pushgateway {
            base,
            http: HttpClient::new().map_err(PushError::Client)?,
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

    /// `{base}/metrics/job/git-offsite/owner/<owner>`; owners with characters outside
    /// `[A-Za-z0-9._~-]` use the gateway's `owner@base64/<url-safe base64>` form.
    pub fn group_url(&self, owner: &str) -> Url {
        let mut url = self.base.clone();
        let plain = !owner.is_empty()
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
        let (label, value) = if plain {
            ("owner", owner.to_string())
        } else {
            ("owner@base64", base64url(owner))
        };
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["metrics", "job", JOB, label, &value]);
        }
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// Pushes every owner's group. All owners are tried; the first error is returned.
    pub async fn push(&self, metrics: &RunMetrics) -> Result<(), PushError> {
        let mut first: Option<PushError> = None;
        for run in metrics.runs() {
            let url = self.group_url(&run.owner);
            let body = metrics.render_owner(run);
            if let Err(e) = self.http.post(&url, body, CONTENT_TYPE).await {
                let shown = redact_url(&url, true);
                let err = match e {
                    Failure::Request(message) => PushError::Request {
                        url: shown,
                        message,
                    },
                    Failure::Status(status, body) => PushError::Status {
                        url: shown,
                        status,
                        body,
                    },
                };
                tracing::debug!(owner = %run.owner, error = %err, "metrics push failed");
                first.get_or_insert(err);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// RFC 4648 §5 base64 without padding, as the Pushgateway's `@base64` label form takes;
/// `=` for the empty string, which the Pushgateway requires.
fn base64url(value: &str) -> String {
    use base64::Engine;
    if value.is_empty() {
        return "=".into();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value)
}

/// `Pushgateway::new(url)?.push(metrics)` with the defaults.
pub async fn push(url: &str, metrics: &RunMetrics) -> Result<(), PushError> {
    Pushgateway::new(url)?.push(metrics).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648() {
        assert_eq!(base64url(""), "=");
        assert_eq!(base64url("f"), "Zg");
        assert_eq!(base64url("fo"), "Zm8");
        assert_eq!(base64url("foo"), "Zm9v");
        assert_eq!(base64url("/var/tmp"), "L3Zhci90bXA");
        assert_eq!(base64url("Προμηθεύς"), "zqDPgc6_zrzOt864zrXPjc-C");
    }

    #[test]
    fn group_urls_keep_the_base_path_and_encode_odd_owners() {
        let p = Pushgateway::new("http://u:p@gw.example:9091/prefix/?x=1").unwrap();
        assert_eq!(
            p.group_url("acme").as_str(),
            "http://u:p@gw.example:9091/prefix/metrics/job/git-offsite/owner/acme"
        );
        assert_eq!(
            p.group_url("a/b").as_str(),
            "http://u:p@gw.example:9091/prefix/metrics/job/git-offsite/owner@base64/YS9i"
        );
        let p = Pushgateway::new("http://gw.example:9091").unwrap();
        assert_eq!(
            p.group_url("acme").as_str(),
            "http://gw.example:9091/metrics/job/git-offsite/owner/acme"
        );
        assert!(matches!(
            Pushgateway::new("ftp://x"),
            Err(PushError::InvalidUrl(_))
        ));
        let err = Pushgateway::new("not a url with secret")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
