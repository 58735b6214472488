//! Replay protection for sealed datagrams.
//!
//! Owns the table of sender sessions this node has heard from. Every sealed datagram carries
//! its sender's session (a random 64-bit number drawn when the sender started), a counter the
//! sender increments for every datagram, and the sender's clock in seconds. A datagram is
//! accepted once:
//!
//! - its timestamp must be within `window` of our clock (either way: clocks that disagree by
//!   less than the window are fine, more and the datagram is dropped as `stale`);
//! - within a known session, a counter is accepted once: a 64-entry sliding window behind the
//!   highest counter seen (as IPsec and WireGuard do), so datagrams reordered by up to 64
//!   still pass and anything older is refused;
//! - a session idle for more than twice the window is forgotten: any datagram of it is then
//!   older than the window anyway (we accepted its timestamps up to `window` ahead of our
//!   clock, and a window has passed since).
//!
//! Memory: at most `max_sessions` entries of 40 bytes (the agent's default 4,096: 160 KiB).
//! Only datagrams that passed authentication reach this table, so only key holders make it
//! grow. When it is full the least recently heard session is evicted (counted): a datagram of
//! that session captured within the last window could then be accepted once more; size the
//! table above the number of live members to rule that out.
//!
//! Must not authenticate anything itself: callers check first, authenticate, then commit.

use crate::time::Time;
use std::collections::HashMap;
use std::time::Duration;

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Seen before, or older than the sliding window of its session.
    Replay,
    /// Its timestamp is further than the window from our clock.
    Stale,
}

#[derive(Clone, Copy, Debug)]
struct Session {
    top: u64,
    /// Bit i set: counter `top - i` was seen.
    seen: u64,
    last: Time,
}

pub struct ReplayGuard {
    sessions: HashMap<u64, Session, foldhash::fast::FixedState>,
    window: Duration,
    max_sessions: usize,
    next_sweep: Time,
    pub evictions: u64,
}

impl ReplayGuard {
    pub fn new(window: Duration, max_sessions: usize, seed: u64) -> ReplayGuard {
        ReplayGuard {
            sessions: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(seed)),
            window,
            max_sessions: max_sessions.max(1),
            next_sweep: Time::ZERO,
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether a datagram of `session` numbered `counter`, stamped `ts_secs` by its sender,
    /// may be accepted at `wall_ms` (our clock). Changes nothing.
    pub fn check(
        &self,
        session: u64,
        counter: u64,
        ts_secs: u32,
        wall_ms: u64,
    ) -> Result<(), Refusal> {
        let ts_ms = u64::from(ts_secs) * 1000;
        let w = self.window.as_millis() as u64;
        // The sender's clock is read in whole seconds: allow the second it rounded down.
        if ts_ms + 1000 + w < wall_ms || ts_ms > wall_ms.saturating_add(w) {
            return Err(Refusal::Stale);
        }
        if let Some(s) = self.sessions.get(&session) {
            if counter <= s.top {
                let back = s.top - counter;
                if back >= 64 || s.seen & (1u64 << back) != 0 {
                    return Err(Refusal::Replay);
                }
            }
        }
        Ok(())
    }

    /// Records an accepted datagram (after `check` and authentication).
    pub fn commit(&mut self, now: Time, session: u64, counter: u64) {
        self.sweep(now);
        if let Some(s) = self.sessions.get_mut(&session) {
            if counter > s.top {
                let shift = counter - s.top;
                s.seen = if shift >= 64 { 0 } else { s.seen << shift };
                s.seen |= 1;
                s.top = counter;
            } else {
                s.seen |= 1u64 << (s.top - counter);
            }
            s.last = now;
            return;
        }
        if self.sessions.len() >= self.max_sessions {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(k, s)| (s.last, **k))
                .map(|(k, _)| *k)
            {
                self.sessions.remove(&oldest);
                self.evictions += 1;
            }
        }
        self.sessions.insert(
            session,
            Session {
                top: counter,
                seen: 1,
                last: now,
            },
        );
    }

    /// Forgets sessions idle for more than twice the window (at most once per window).
    fn sweep(&mut self, now: Time) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.plus(self.window);
        let idle = self.window * 2;
        self.sessions.retain(|_, s| now.since(s.last) <= idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    #[test]
    fn each_counter_once_with_reordering() {
        let mut g = ReplayGuard::new(W, 16, 1);
        let wall = 1_000_000_000;
        let ts = (wall / 1000) as u32;
        for c in [5u64, 3, 4, 70, 10] {
            assert_eq!(g.check(9, c, ts, wall), Ok(()), "counter {c}");
            g.commit(Time(0), 9, c);
        }
        for c in [5u64, 3, 70, 10] {
            assert_eq!(g.check(9, c, ts, wall), Err(Refusal::Replay));
        }
        // 6 is too far behind 70 now (64-entry window).
        assert_eq!(g.check(9, 6, ts, wall), Err(Refusal::Replay));
        assert_eq!(g.check(9, 69, ts, wall), Ok(()));
        // Another session is independent.
        assert_eq!(g.check(8, 5, ts, wall), Ok(()));
    }

    #[test]
    fn timestamps_outside_the_window_are_stale() {
        let g = ReplayGuard::new(W, 16, 1);
        let wall = 1_000_000_000u64;
        let secs = (wall / 1000) as u32;
        assert_eq!(g.check(1, 1, secs - 59, wall), Ok(()));
        assert_eq!(g.check(1, 1, secs + 59, wall), Ok(()));
        assert_eq!(g.check(1, 1, secs - 62, wall), Err(Refusal::Stale));
        assert_eq!(g.check(1, 1, secs + 61, wall), Err(Refusal::Stale));
    }

    #[test]
    fn bounded_and_idle_sessions_forgotten() {
        let mut g = ReplayGuard::new(W, 4, 1);
        for s in 0..10u64 {
            g.commit(Time(s), s, 1);
        }
        assert_eq!(g.len(), 4);
        assert_eq!(g.evictions, 6);
        g.commit(Time(10_000_000), 99, 1);
        assert_eq!(g.len(), 1);
    }
}
