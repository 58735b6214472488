/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
//! (shoal fork) Lifeguard's extensions to SWIM (arXiv 1707.00788, as in
//! hashicorp/memberlist's `awareness.go` and `suspicion.go`).
//!
//! * **Local health** (`LHA-Probe`): a score from 0 to `max_health`
//!   that rises when a probe of ours fails or when we must refute a
//!   suspicion of ourselves, and falls when a probe succeeds. Probe
//!   period and probe timeout are stretched by `score + 1`, so a node
//!   that is itself slow or lossy probes less and waits longer instead of
//!   accusing healthy members.
//! * **Dynamic suspicion** (`LHA-Suspicion`): the time a member stays
//!   suspect before we declare it down starts long and shrinks as
//!   independent members confirm the suspicion. foca carries no accuser
//!   in its updates, so the driver disseminates accusations itself
//!   ([`Foca::take_accusations`](crate::Foca::take_accusations) and
//!   [`Foca::confirm_suspicion`](crate::Foca::confirm_suspicion)). The
//!   timeouts per number of confirmations are the driver's choice too
//!   ([`Lifeguard::suspicion_permille`]), since foca has no floats.
//! * **Buddy system**: a ping to a member we suspect carries that
//!   suspicion first, so the member hears of it and refutes at once.
//!
//! foca keeps no clock: with Lifeguard on, the driver tells it the time
//! before each call ([`Foca::set_now`](crate::Foca::set_now)).

extern crate alloc;
use alloc::vec::Vec;
use core::time::Duration;

use crate::member::Incarnation;

/// Lifeguard's settings. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifeguard {
    /// Highest local health score; timers stretch by `score + 1`
    /// (memberlist: 8).
    pub max_health: u8,
    /// Suspicion timeout in permille of `Config::suspect_to_down_after`,
    /// indexed by the number of independent confirmations beyond the
    /// first accuser (the last entry applies to any larger number).
    /// Must not be empty.
    pub suspicion_permille: Vec<u32>,
    /// Confirmations the timeouts expect: when fewer members than this
    /// (besides us and the suspect) exist, the plain
    /// `suspect_to_down_after` applies (memberlist's `k`).
    pub confirmations: usize,
    /// About how many members that hear of a suspicion probe the suspect
    /// promptly (from their next probe on, beside their round, which goes
    /// on) instead of at their timer's end; each does with probability
    /// `prompt_probers / (members - 1)`. 0: none (memberlist).
    pub prompt_probers: usize,
    /// A down notice is disseminated this many times
    /// `Config::max_transmissions` (1: like any update).
    pub down_transmissions: u8,
}

impl Lifeguard {
    /// The timeout after `confirmations` independent confirmations, for a
    /// cluster where `others` members besides us are active.
    pub fn timeout(&self, min: Duration, confirmations: usize, others: usize) -> Duration {
        if others.saturating_sub(1) < self.confirmations {
            return min;
        }
        let last = self.suspicion_permille.len().saturating_sub(1);
        let permille = self
            .suspicion_permille
            .get(confirmations.min(last))
            .copied()
            .unwrap_or(1000);
        min * permille / 1000
    }

    /// Most accusers worth remembering per suspect (more change nothing).
    pub(crate) fn max_accusers(&self) -> usize {
        self.suspicion_permille.len().max(1)
    }
}

/// What we know of the suspicion of one member: one identity at one
/// incarnation (a member renewed since, or refuted since, starts afresh).
#[derive(Debug, Clone)]
pub(crate) struct Suspicion<T, A> {
    pub(crate) id: T,
    pub(crate) incarnation: Incarnation,
    /// When our own probe first failed (we arm a timer only then).
    pub(crate) start: Option<Duration>,
    /// Distinct accusers (us included once we accuse), bounded.
    pub(crate) accusers: Vec<A>,
    pub(crate) deadline: Duration,
}

impl<T: PartialEq, A: PartialEq> Suspicion<T, A> {
    pub(crate) const fn new(id: T, incarnation: Incarnation) -> Self {
        Self {
            id,
            incarnation,
            start: None,
            accusers: Vec::new(),
            deadline: Duration::ZERO,
        }
    }

    /// Adds an accuser; whether it was new (and remembered).
    pub(crate) fn add(&mut self, accuser: A, max: usize) -> bool {
        if self.accusers.contains(&accuser) || self.accusers.len() >= max {
            return false;
        }
        self.accusers.push(accuser);
        true
    }

    /// Whether this record is about `id` at `incarnation`.
    pub(crate) fn is_about(&self, id: &T, incarnation: Incarnation) -> bool {
        self.incarnation == incarnation && &self.id == id
    }

    /// Independent confirmations beyond the first accuser.
    pub(crate) const fn confirmations(&self) -> usize {
        self.accusers.len().saturating_sub(1)
    }
}

/// Local health score changes (memberlist's awareness deltas).
pub(crate) const fn health_up(score: u8, max: u8) -> u8 {
    if score < max { score + 1 } else { max }
}

pub(crate) const fn health_down(score: u8) -> u8 {
    score.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lg() -> Lifeguard {
        Lifeguard {
            max_health: 8,
            suspicion_permille: alloc::vec![6000, 2845, 1000],
            confirmations: 2,
            prompt_probers: 0,
            down_transmissions: 1,
        }
    }

    #[test]
    fn timeout_shrinks_with_confirmations_and_needs_enough_members() {
        let min = Duration::from_secs(4);
        let l = lg();
        assert_eq!(l.timeout(min, 0, 10), Duration::from_secs(24));
        assert_eq!(l.timeout(min, 1, 10), Duration::from_millis(11_380));
        assert_eq!(l.timeout(min, 2, 10), min);
        assert_eq!(l.timeout(min, 9, 10), min);
        // Two others (the suspect and one more): no one could confirm twice.
        assert_eq!(l.timeout(min, 0, 2), min);
        assert_eq!(l.timeout(min, 0, 3), Duration::from_secs(24));
    }

    #[test]
    fn accusers_are_distinct_and_bounded() {
        let mut s = Suspicion::new(9u8, 3);
        assert!(s.add(1u8, 3));
        assert!(!s.add(1u8, 3));
        assert!(s.add(2u8, 3));
        assert!(s.add(3u8, 3));
        assert!(!s.add(4u8, 3));
        assert_eq!(s.confirmations(), 2);
    }

    #[test]
    fn health_is_bounded() {
        assert_eq!(health_up(7, 8), 8);
        assert_eq!(health_up(8, 8), 8);
        assert_eq!(health_down(0), 0);
        assert_eq!(health_down(3), 2);
    }
}
