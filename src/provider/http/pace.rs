//! Rate-limit pacing: slow down while a host says few requests are left, before it answers 429.
//!
//! GitHub and Gitea send `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix seconds), GitLab
//! `RateLimit-Remaining` / `RateLimit-Reset`, the IETF draft a reset in seconds from now;
//! Bitbucket sends access tokens only `X-RateLimit-Limit` and `X-RateLimit-NearLimit` (NOTES §1;
//! see [`near_limit`]). When fewer than [`LOW_REMAINING`]
//! requests are left, the requests that remain are spread evenly over the time to the reset,
//! the way gickup and ghorg wait out a nearly spent budget, instead of spending it at once and
//! then failing on 429. One wait is never longer than [`MAX_PACE`]: past that, failing with a
//! clear rate-limit error (the retry policy's) beats a job sleeping silently.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// Below this many requests left, requests are spread over the time to the reset.
pub const LOW_REMAINING: u64 = 10;
/// The longest pause between two requests that pacing adds.
pub const MAX_PACE: Duration = Duration::from_secs(300);
/// A reset above this is a Unix time, below it seconds from now (no host resets a window
/// that is decades long).
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// The pause before the next request, given the last answer's headers, the Unix time now and
/// the window a limit without a reset counts over (Bitbucket's, see [`near_limit`]).
pub fn delay_for(headers: &HeaderMap, now_unix: i64, window: Duration) -> Option<Duration> {
    let number = |names: &[&str]| {
        names.iter().find_map(|n| {
            headers
                .get(*n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
    };
    let Some(remaining) = number(&["x-ratelimit-remaining", "ratelimit-remaining"]) else {
        return near_limit(headers, number(&["x-ratelimit-limit"]), window);
    };
    if remaining >= LOW_REMAINING {
        return None;
    }
    let reset = number(&["x-ratelimit-reset", "ratelimit-reset"])?;
    let until_reset = if reset > EPOCH_THRESHOLD {
        reset.saturating_sub(now_unix.max(0) as u64)
    } else {
        reset
    };
    let delay = Duration::from_secs(until_reset) / (remaining as u32 + 1);
    (!delay.is_zero()).then_some(delay.min(MAX_PACE))
}

/// Bitbucket sends no remaining count or reset, only `X-RateLimit-Limit` (per rolling hour)
/// and `X-RateLimit-NearLimit: true` once fewer than a fifth of the requests are left
/// (SA/docs/api-request-limits): then the fifth that may be left is spread over the window,
/// so by the time it is spent the requests that filled the window have rolled out of it.
fn near_limit(headers: &HeaderMap, limit: Option<u64>, window: Duration) -> Option<Duration> {
    let near = headers
        .get("x-ratelimit-nearlimit")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let left = limit.filter(|_| near)?.div_ceil(5).max(1);
    Some((window / left as u32).min(MAX_PACE))
}

/// The window of a limit sent without a reset: Bitbucket's rolling hour.
pub const ROLLING_WINDOW: Duration = Duration::from_secs(3600);

/// One host's pace, shared by every request a provider makes to it.
#[derive(Debug)]
pub struct Pacer {
    not_before: Mutex<Option<Instant>>,
    /// What a limit without a reset counts over ([`ROLLING_WINDOW`] unless a host says else).
    window: Duration,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::with_window(ROLLING_WINDOW)
    }
}

impl Pacer {
    pub fn with_window(window: Duration) -> Self {
        Self {
            not_before: Mutex::new(None),
            window,
        }
    }

    /// Reads an answer's rate-limit headers: a nearly spent budget delays the next request.
    pub fn observe(&self, headers: &HeaderMap) {
        let Some(delay) = delay_for(headers, chrono::Utc::now().timestamp(), self.window) else {
            return;
        };
        tracing::debug!(
            delay_ms = delay.as_millis() as u64,
            "few API requests left before the rate limit resets; pacing"
        );
        let at = Instant::now() + delay;
        let mut slot = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(slot.map_or(at, |t| t.max(at)));
    }

    /// How long the next request would wait now.
    pub fn pending(&self) -> Duration {
        let slot = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        slot.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    /// Waits until the next request may go.
    pub async fn wait(&self) {
        let pending = self.pending();
        if !pending.is_zero() {
            tokio::time::sleep(pending).await;
        }
    }
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

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_low_budget_is_spread_over_the_time_to_the_reset() {
        let reset = (NOW + 90).to_string();
        let h = headers(&[
            ("x-ratelimit-remaining", "2"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(
            delay_for(&h, NOW, ROLLING_WINDOW),
            Some(Duration::from_secs(30))
        );
        // GitLab's names, and a reset in seconds from now.
        let h = headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "40")]);
        assert_eq!(
            delay_for(&h, NOW, ROLLING_WINDOW),
            Some(Duration::from_secs(40))
        );
        // An hour with nothing left waits at most MAX_PACE.
        let reset = (NOW + 3600).to_string();
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(delay_for(&h, NOW, ROLLING_WINDOW), Some(MAX_PACE));
    }

    #[test]
    fn bitbucket_near_limit_spreads_the_last_fifth_over_the_hour() {
        let h = headers(&[
            ("x-ratelimit-limit", "1000"),
            ("x-ratelimit-nearlimit", "true"),
        ]);
        assert_eq!(
            delay_for(&h, NOW, ROLLING_WINDOW),
            Some(Duration::from_secs(18))
        );
        // A small budget over a short window: its fifth (2) over 2 s.
        let h = headers(&[
            ("x-ratelimit-limit", "10"),
            ("x-ratelimit-nearlimit", "true"),
        ]);
        let two = Duration::from_secs(2);
        assert_eq!(delay_for(&h, NOW, two), Some(Duration::from_secs(1)));
        let h = headers(&[
            ("x-ratelimit-limit", "1000"),
            ("x-ratelimit-nearlimit", "false"),
        ]);
        assert_eq!(delay_for(&h, NOW, ROLLING_WINDOW), None);
    }

    #[test]
    fn a_healthy_budget_or_missing_headers_do_not_slow_down() {
        let reset = (NOW + 90).to_string();
        let h = headers(&[
            ("x-ratelimit-remaining", "10"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(delay_for(&h, NOW, ROLLING_WINDOW), None);
        assert_eq!(delay_for(&headers(&[]), NOW, ROLLING_WINDOW), None);
        let h = headers(&[("x-ratelimit-remaining", "1")]);
        assert_eq!(
            delay_for(&h, NOW, ROLLING_WINDOW),
            None,
            "no reset: nothing to pace against"
        );
        let past = (NOW - 5).to_string();
        let h = headers(&[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", &past)]);
        assert_eq!(
            delay_for(&h, NOW, ROLLING_WINDOW),
            None,
            "the window already reset"
        );
    }

    #[test]
    fn the_pacer_holds_the_next_request_back() {
        let p = Pacer::default();
        assert_eq!(p.pending(), Duration::ZERO);
        p.observe(&headers(&[("x-ratelimit-remaining", "100")]));
        assert_eq!(p.pending(), Duration::ZERO);
        p.observe(&headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "120"),
        ]));
        let pending = p.pending();
        assert!(
            pending > Duration::from_secs(100) && pending <= Duration::from_secs(120),
            "{pending:?}"
        );
        // A later, shorter pause does not cut an earlier, longer one short.
        p.observe(&headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "5"),
        ]));
        assert!(p.pending() > Duration::from_secs(100));
    }
}
