//! The agent's wall clock: the one place the agent reads the time of day for the core (seal
//! timestamps, its generation, snapshot dates), and the skew warning.
//!
//! Owns `WallClock` (the system clock plus an offset that only tests set, to run a real agent
//! whose clock is off: `Config::clock_offset_ms`, or the hidden environment variable
//! `SHOAL_TEST_CLOCK_OFFSET_MS` read at start) and `SkewLog`, the rate limit of the warning
//! about peers whose clock differs from ours. Must not be used for durations or deadlines
//! (`Instant` is), and must not decide anything about a peer: datagrams are accepted whatever
//! their timestamps say (docs/security.md, "Replay protection and clocks").

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The hidden environment variable that offsets the agent's wall clock (tests only).
pub const TEST_OFFSET_ENV: &str = "SHOAL_TEST_CLOCK_OFFSET_MS";

/// At most one warning about peers' clocks this often.
pub const SKEW_LOG_EVERY: Duration = Duration::from_secs(60);

/// The time of day as the agent tells it to the core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallClock {
    offset_ms: i64,
}

impl WallClock {
    pub fn new(offset_ms: i64) -> WallClock {
        WallClock { offset_ms }
    }

    /// The offset a test asked for through `SHOAL_TEST_CLOCK_OFFSET_MS` (0 without one).
    pub fn test_offset_from_env() -> i64 {
        std::env::var(TEST_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Unix time in ms.
    pub fn unix_ms(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        now.saturating_add(self.offset_ms).max(0) as u64
    }
}

/// The rate limit of the warning about a peer whose clock is off.
#[derive(Debug, Default)]
pub struct SkewLog {
    last: Option<Instant>,
}

impl SkewLog {
    /// Logs `skewed` (a peer and its clock minus ours, ms) unless a warning went out within
    /// `SKEW_LOG_EVERY`.
    pub fn note(&mut self, now: Instant, skewed: Option<(SocketAddr, i64)>, window: Duration) {
        let Some((peer, skew_ms)) = skewed else {
            return;
        };
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < SKEW_LOG_EVERY)
        {
            return;
        }
        self.last = Some(now);
        tracing::warn!(
            %peer,
            skew_s = skew_ms as f64 / 1000.0,
            window_s = window.as_secs(),
            "a peer's clock differs from ours by more than the replay window (its datagrams \
             are accepted: membership needs no clock sync; check NTP on both hosts; \
             shoal_clock_skew_seconds in /metrics)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_applies_and_warnings_are_spaced() {
        let base = WallClock::default().unix_ms();
        let ahead = WallClock::new(120_000).unix_ms();
        assert!((119_000..=121_000).contains(&(ahead - base)));
        let mut log = SkewLog::default();
        let t0 = Instant::now();
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let w = Duration::from_secs(60);
        log.note(t0, Some((peer, 120_000)), w);
        assert_eq!(log.last, Some(t0));
        log.note(t0 + Duration::from_secs(5), Some((peer, 120_000)), w);
        assert_eq!(log.last, Some(t0));
        log.note(t0 + SKEW_LOG_EVERY, None, w);
        assert_eq!(log.last, Some(t0));
        log.note(t0 + SKEW_LOG_EVERY, Some((peer, 1)), w);
        assert_eq!(log.last, Some(t0 + SKEW_LOG_EVERY));
    }
}
