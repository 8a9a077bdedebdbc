//! When a cached token is replaced: the one renewal policy every provider's token cache uses
//! (Bitbucket's OAuth tokens, GitHub's installation tokens).
//!
//! A token is renewed while it still has a margin of life left, so a token handed to a clone is
//! still valid when the fetch starts; a refused token is replaced once, and callers that were
//! refused *the same* token share one renewal (the generation they saw tells them apart).

use std::time::Duration;

/// Renew a token when less than this (or a fifth of its lifetime, if smaller) remains.
pub const RENEW_MARGIN: Duration = Duration::from_secs(600);

/// True when less than min([`RENEW_MARGIN`], lifetime / 5) of the token's life remains.
pub fn needs_renewal(lifetime: Duration, elapsed: Duration) -> bool {
    let margin = RENEW_MARGIN.min(lifetime / 5);
    lifetime.saturating_sub(elapsed) <= margin
}

/// When to replace the cached token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renew {
    /// Only when missing or close to expiry.
    IfStale,
    /// Also when it is still generation `n`, the one that was refused; a newer one (another
    /// caller already renewed) is reused.
    IfStill(u64),
    Always,
}

impl Renew {
    /// Whether a cached token of `generation` that `stale` says is (not) close to expiry may be
    /// handed out again.
    pub fn reuses(self, generation: u64, stale: bool) -> bool {
        match self {
            Renew::IfStale => !stale,
            Renew::IfStill(g) => generation != g && !stale,
            Renew::Always => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_margin_is_min_of_ten_minutes_and_a_fifth() {
        let two_h = Duration::from_secs(7200);
        assert!(!needs_renewal(two_h, Duration::from_secs(7200 - 601)));
        assert!(needs_renewal(two_h, Duration::from_secs(7200 - 600)));
        let ten_s = Duration::from_secs(10);
        assert!(!needs_renewal(ten_s, Duration::from_millis(7900)));
        assert!(needs_renewal(ten_s, Duration::from_secs(8)));
        assert!(needs_renewal(ten_s, Duration::from_secs(60)));
    }

    #[test]
    fn a_refused_generation_is_renewed_a_newer_one_reused() {
        assert!(Renew::IfStale.reuses(3, false));
        assert!(!Renew::IfStale.reuses(3, true));
        assert!(!Renew::IfStill(3).reuses(3, false));
        assert!(Renew::IfStill(2).reuses(3, false));
        assert!(!Renew::Always.reuses(3, false));
    }
}
