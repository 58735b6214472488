//! Replay protection for sealed datagrams, bound to the sender and independent of clocks.
//!
//! Owns the table of the senders this node has heard from. Every sealed datagram carries its
//! sender's session (a random 64-bit number drawn when the sender started), a counter the
//! sender increments for every datagram (to any destination) and the sender's wall clock in
//! seconds. The state is keyed by the datagram's **sender**: its source address and whether
//! it carried a valid pair tag (`core::trust`: only the member bound to that address's name
//! can write one), then by session. So what one sender's datagrams do to the table touches
//! that sender's entry only: a key holder that writes another member's session into its own
//! datagrams creates an entry of its own; and one that also spoofs the member's source
//! address (UDP lets it) writes into the entry of unauthenticated datagrams from that
//! address, never into the member's own, which only datagrams tagged by the member move
//! (WireGuard advances a peer's counter only for datagrams authenticated as the peer's).
//!
//! A datagram is accepted once:
//! - within a known (source, session), each counter once: a sliding window of [`WINDOW`]
//!   counters behind the highest seen (WireGuard's), wide enough for a sender's bursts of reach
//!   checks to many peers interleaved with reordering;
//! - a session new to its source is refused when the source's newest session is live (heard
//!   within `window`) and started later than the new one's timestamp by more than `window`:
//!   it is a capture of a previous run of the sender (timestamps are compared with the
//!   *sender's own* earlier timestamps, never with our clock). Otherwise it is accepted: a
//!   sender that restarted, or one heard for the first time.
//!
//! The timestamp is otherwise not checked against our clock: membership needs no clock
//! agreement. The caller measures the skew (`Trust`) for the log and the metrics.
//!
//! Memory: at most `max_sessions` sessions in all (about 300 bytes each), at most
//! [`SESSIONS_PER_SOURCE`] per source address (a new one replaces the source's least recently
//! heard: a flood of new sessions from one address only churns that address's entries). When
//! the table is full, a new source evicts the source heard from longest ago (counted). A
//! source silent for `FORGET_WINDOWS` windows is forgotten with its sessions; while it
//! speaks, its previous sessions are kept (up to the quota), so their counters stay refused.
//!
//! Must not authenticate anything itself: callers check first, authenticate, then commit.

use crate::hash::{FixedHashMap, HashSeed};
use crate::time::Time;
use std::net::SocketAddr;
use std::time::Duration;

/// Counters remembered behind the highest one of a session (2,048 bits, less the word being
/// filled).
pub(crate) const WINDOW: u64 = (WORDS as u64 - 1) * 64;
const WORDS: usize = 32;
/// Sessions kept per source address: a restart overlaps two; more is a sender (or a
/// spoofer) cycling sessions, which only replaces its own.
pub(crate) const SESSIONS_PER_SOURCE: usize = 4;
/// A source silent this many windows is forgotten (10 minutes with the default 60 s).
pub(crate) const FORGET_WINDOWS: u32 = 10;

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Seen before, or older than the sliding window of its session, or a session of the
    /// sender older than its live one.
    Replay,
}

#[derive(Clone, Debug)]
struct Session {
    id: u64,
    top: u64,
    /// Bit `c % (WORDS * 64)` set: counter `c` (within the window behind `top`) was seen.
    bits: Box<[u64; WORDS]>,
    /// The smallest timestamp seen in this session (sender's clock, seconds).
    start_ts: u32,
    last: Time,
}

impl Session {
    fn new(id: u64, counter: u64, ts: u32, now: Time) -> Session {
        let mut s = Session {
            id,
            top: counter,
            bits: Box::new([0; WORDS]),
            start_ts: ts,
            last: now,
        };
        s.set(counter);
        s
    }

    fn set(&mut self, c: u64) {
        let bit = c % (WORDS as u64 * 64);
        self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
    }

    fn seen(&self, c: u64) -> bool {
        if c > self.top {
            return false;
        }
        if self.top - c >= WINDOW {
            return true;
        }
        let bit = c % (WORDS as u64 * 64);
        self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    fn commit(&mut self, c: u64, ts: u32, now: Time) {
        if c > self.top {
            let (cur, new) = (self.top / 64, c / 64);
            let clear = (new - cur).min(WORDS as u64);
            for i in 1..=clear {
                self.bits[((cur + i) % WORDS as u64) as usize] = 0;
            }
            self.top = c;
        }
        self.set(c);
        self.start_ts = self.start_ts.min(ts);
        self.last = now;
    }
}

#[derive(Clone, Debug, Default)]
struct Source {
    sessions: Vec<Session>,
    /// Sender's clock minus ours (ms) at its last datagram.
    skew_ms: i64,
}

impl Source {
    fn last(&self) -> Time {
        self.sessions
            .iter()
            .map(|s| s.last)
            .max()
            .unwrap_or(Time::ZERO)
    }
}

pub(crate) struct ReplayGuard {
    /// By source address and whether the datagrams were authenticated as the member's.
    sources: FixedHashMap<(SocketAddr, bool), Source>,
    sessions: usize,
    window: Duration,
    max_sessions: usize,
    next_sweep: Time,
    pub evictions: u64,
}

impl ReplayGuard {
    /// `hashes` seeds the table (the node's private seed, never anything sent in clear).
    pub(crate) fn new(window: Duration, max_sessions: usize, hashes: HashSeed) -> ReplayGuard {
        ReplayGuard {
            sources: hashes.map(),
            sessions: 0,
            window,
            max_sessions: max_sessions.max(1),
            next_sweep: Time::ZERO,
            evictions: 0,
        }
    }

    /// Sessions tracked.
    pub(crate) fn len(&self) -> usize {
        self.sessions
    }

    /// Whether a datagram from `from` (`member`: authenticated as the member bound to that
    /// address) of `session` numbered `counter`, stamped `ts_secs` by its sender, may be
    /// accepted at `now`. Changes nothing.
    pub(crate) fn check(
        &self,
        now: Time,
        from: SocketAddr,
        member: bool,
        session: u64,
        counter: u64,
        ts_secs: u32,
    ) -> Result<(), Refusal> {
        let Some(src) = self.sources.get(&(from, member)) else {
            return Ok(());
        };
        if let Some(s) = src.sessions.iter().find(|s| s.id == session) {
            return if s.seen(counter) {
                Err(Refusal::Replay)
            } else {
                Ok(())
            };
        }
        // A new session: older than the source's live one is a capture of an earlier run.
        let w = self.window.as_secs().min(u64::from(u32::MAX)) as u32;
        let live_start = src
            .sessions
            .iter()
            .filter(|s| now.since(s.last) <= self.window)
            .map(|s| s.start_ts)
            .max();
        match live_start {
            Some(start) if ts_secs.saturating_add(w) < start => Err(Refusal::Replay),
            _ => Ok(()),
        }
    }

    /// Records an accepted datagram (after `check` and authentication); `skew_ms` is the
    /// sender's clock minus ours.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit(
        &mut self,
        now: Time,
        from: SocketAddr,
        member: bool,
        session: u64,
        counter: u64,
        ts_secs: u32,
        skew_ms: i64,
    ) {
        self.sweep(now);
        let from = (from, member);
        if let Some(src) = self.sources.get_mut(&from) {
            src.skew_ms = skew_ms;
            if let Some(s) = src.sessions.iter_mut().find(|s| s.id == session) {
                s.commit(counter, ts_secs, now);
                return;
            }
            if src.sessions.len() >= SESSIONS_PER_SOURCE {
                // The source's own least recently heard session makes room.
                if let Some(i) = (0..src.sessions.len()).min_by_key(|i| src.sessions[*i].last) {
                    src.sessions.swap_remove(i);
                    self.sessions -= 1;
                }
            }
        } else if self.sessions >= self.max_sessions {
            self.evict_oldest_source();
        }
        let src = self.sources.entry(from).or_default();
        src.skew_ms = skew_ms;
        src.sessions
            .push(Session::new(session, counter, ts_secs, now));
        self.sessions += 1;
    }

    fn evict_oldest_source(&mut self) {
        let oldest = self
            .sources
            .iter()
            .min_by_key(|(a, s)| (s.last(), **a))
            .map(|(a, _)| *a);
        if let Some(a) = oldest {
            if let Some(s) = self.sources.remove(&a) {
                self.sessions -= s.sessions.len();
                self.evictions += s.sessions.len() as u64;
            }
        }
    }

    /// The sources heard within a window and their skew (sender's clock minus ours, ms).
    pub(crate) fn skews(&self, now: Time) -> impl Iterator<Item = (SocketAddr, i64)> + '_ {
        self.sources
            .iter()
            .filter(move |(_, s)| now.since(s.last()) <= self.window)
            .map(|((a, _), s)| (*a, s.skew_ms))
    }

    /// Forgets sources silent for `FORGET_WINDOWS` windows (at most once per window).
    fn sweep(&mut self, now: Time) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.plus(self.window);
        let idle = self.window * FORGET_WINDOWS;
        let mut n = 0;
        self.sources.retain(|_, src| {
            let keep = now.since(src.last()) <= idle;
            if keep {
                n += src.sessions.len();
            }
            keep
        });
        self.sessions = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn ok(g: &mut ReplayGuard, now: u64, from: SocketAddr, s: u64, c: u64, ts: u32) -> bool {
        let now = Time(now);
        let r = g.check(now, from, false, s, c, ts).is_ok();
        if r {
            g.commit(now, from, false, s, c, ts, 0);
        }
        r
    }

    fn ok_member(g: &mut ReplayGuard, from: SocketAddr, s: u64, c: u64) -> bool {
        let r = g.check(Time(0), from, true, s, c, 100).is_ok();
        if r {
            g.commit(Time(0), from, true, s, c, 100, 0);
        }
        r
    }

    /// The review's finding: a key holder spoofing a member's source address, with the
    /// member's session and a huge counter (or one far past every session's start), made
    /// the member's real datagrams replays. Authenticated datagrams of the member have their
    /// own entry, which nothing unauthenticated moves.
    #[test]
    fn a_spoofed_source_cannot_move_the_members_authenticated_window() {
        let mut g = ReplayGuard::new(W, 16, HashSeed::default());
        let victim = a(1);
        assert!(ok_member(&mut g, victim, 7, 1));
        for c in [1u64 << 62, u64::MAX - 1] {
            assert!(ok(&mut g, 0, victim, 7, c, u32::MAX));
        }
        for s in 100..200u64 {
            ok(&mut g, 0, victim, s, u64::MAX, u32::MAX);
        }
        for c in 2..3000 {
            assert!(ok_member(&mut g, victim, 7, c), "victim's {c}");
        }
        assert!(!ok_member(&mut g, victim, 7, 2999), "a replay");
    }

    #[test]
    fn each_counter_once_with_wide_reordering() {
        let mut g = ReplayGuard::new(W, 16, HashSeed::default());
        let x = a(1);
        for c in [5u64, 3, 4, 1500, 10, 1499] {
            assert!(ok(&mut g, 0, x, 9, c, 100), "counter {c}");
        }
        for c in [5u64, 3, 1500, 10, 1499] {
            assert!(!ok(&mut g, 0, x, 9, c, 100), "counter {c} twice");
        }
        // Reordered by 1,900: still inside the window; 4,000 behind: refused.
        assert!(ok(&mut g, 0, x, 9, 3400, 100));
        assert!(ok(&mut g, 0, x, 9, 1501, 100));
        assert!(ok(&mut g, 0, x, 9, 6000, 100));
        assert!(!ok(&mut g, 0, x, 9, 1502, 100));
        // A jump far ahead clears the window, nothing seen before it is accepted again.
        assert!(ok(&mut g, 0, x, 9, 1 << 40, 100));
        assert!(!ok(&mut g, 0, x, 9, 6000, 100));
        assert!(ok(&mut g, 0, x, 9, (1 << 40) - 7, 100));
    }

    #[test]
    fn one_sender_cannot_touch_another_senders_state() {
        let mut g = ReplayGuard::new(W, 16, HashSeed::default());
        let (victim, attacker) = (a(1), a(2));
        assert!(ok(&mut g, 0, victim, 7, 1, 100));
        // The attacker writes the victim's session with a huge counter, from its address.
        assert!(ok(&mut g, 0, attacker, 7, 1 << 62, 100));
        for c in 2..100 {
            assert!(ok(&mut g, 0, victim, 7, c, 100), "victim's {c}");
        }
        // A flood of sessions from the attacker's address churns only its own entries.
        for s in 100..10_000u64 {
            ok(&mut g, 1, attacker, s, 1, 100);
        }
        assert!(g.len() <= 1 + SESSIONS_PER_SOURCE);
        assert!(ok(&mut g, 2, victim, 7, 100, 100));
        assert!(!ok(&mut g, 2, victim, 7, 99, 100));
    }

    #[test]
    fn a_previous_session_is_refused_while_the_current_one_is_live() {
        let mut g = ReplayGuard::new(W, 16, HashSeed::default());
        let x = a(1);
        // Session 1 ran at 1000..1010 (sender's clock), then the sender restarted at 2000.
        assert!(ok(&mut g, 0, x, 1, 1, 1000));
        assert!(ok(&mut g, 10_000, x, 2, 1, 2000));
        // Session 1's sessions entry: still known, counters refused; a never seen session
        // stamped before 2000 - 60: refused (a capture of an earlier run).
        assert!(!ok(&mut g, 11_000, x, 1, 1, 1000));
        assert!(!ok(&mut g, 11_000, x, 3, 5, 1500));
        // Within the window of the current start (a restart with a small clock step back).
        assert!(ok(&mut g, 11_000, x, 4, 1, 1950));
        // Another source is not judged by this one's sessions.
        assert!(ok(&mut g, 11_000, a(2), 3, 5, 1500));
        // Once the current sessions are silent for a window, a new session is a restart of a
        // sender whose clock stepped back: accepted.
        assert!(ok(&mut g, 80_000, x, 5, 1, 1200));
    }

    #[test]
    fn bounded_and_idle_sessions_forgotten() {
        let mut g = ReplayGuard::new(W, 4, HashSeed::default());
        for s in 0..10u64 {
            g.commit(Time(s), a(s as u16), false, s, 1, 1, 0);
        }
        assert_eq!(g.len(), 4);
        assert_eq!(g.evictions, 6);
        g.commit(Time(10_000_000), a(99), false, 99, 1, 1, 0);
        assert_eq!(g.len(), 1);
    }
}
