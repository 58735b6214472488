//! Formation: how a node that just joined learns the member list in bulk, and how much any
//! node answers such requests.
//!
//! - [`Pull`]: right after connecting, a node asks random peers (not the seeds, while it
//!   knows any other) for the members it lacks, one name-space shard per request
//!   (`ShoalMsg::Members`, a Bloom filter of what it knows), a few requests per tick, until
//!   several requests in a row bring nothing new. Each answer is at most
//!   `INTRO_MSGS_PER_ROUND` `Intro` datagrams: a paged state transfer, not one gossip item
//!   at a time. Members learned this way are not gossiped on (everyone else has them).
//! - [`AnswerBudget`]: a node answers at most [`ANSWER_MSGS_PER_SEC`] bulk datagrams a
//!   second, so thousands of joiners cannot overload a seed: those it does not answer ask
//!   another peer at their next pull.
//!
//! It owns these two counters and nothing else: the node decides whom to ask and what to
//! send (`node/sync.rs`). Sans-IO: time comes in as arguments.

use crate::time::Time;
use std::time::Duration;

/// Member pulls sent per tick while pulling (each to another random peer).
pub(crate) const PULLS_PER_TICK: u16 = 2;

/// Most pulls of one bulk transfer (bounds a transfer whatever the peers answer: with 2 a
/// tick, 64 virtual seconds of pulling at the LAN profile's 250 ms tick).
pub(crate) const MAX_PULLS: u16 = 512;

/// Pulls in a row that brought no new member, beyond one per shard, before the transfer
/// ends (a peer may lack nothing of the shard asked; ending needs every shard asked again).
pub(crate) const EMPTY_PULLS_SLACK: u16 = 6;

/// Most bulk answers (`Intro` datagrams) a node sends per second, whoever asks. At the
/// target of ~30 members per datagram, about 700 members a second to all joiners together;
/// a joiner left unanswered asks another peer at its next pull.
pub(crate) const ANSWER_MSGS_PER_SEC: u32 = 24;

/// The bulk transfer of the member list after joining.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pull {
    /// Pulls left in this transfer (0: not pulling).
    left: u16,
    /// Pulls sent since the last one that brought a new member.
    empty: u16,
}

impl Pull {
    /// Starts (or restarts) a transfer: the node just connected.
    pub(crate) fn start(&mut self) {
        self.left = MAX_PULLS;
        self.empty = 0;
    }

    /// Whether a transfer is in progress.
    pub(crate) fn active(&self) -> bool {
        self.left > 0
    }

    /// How many pulls to send now, the member list being split into `parts` shards. Ends the
    /// transfer once every shard has been asked about (plus some slack) without news.
    pub(crate) fn due(&mut self, parts: u32) -> u16 {
        if self.left == 0 {
            return 0;
        }
        let limit = u16::try_from(parts)
            .unwrap_or(u16::MAX)
            .saturating_mul(2)
            .saturating_add(EMPTY_PULLS_SLACK);
        if self.empty >= limit {
            self.left = 0;
            return 0;
        }
        let k = PULLS_PER_TICK.min(self.left);
        self.left -= k;
        self.empty = self.empty.saturating_add(k);
        k
    }

    /// An answer brought members we did not know.
    pub(crate) fn news(&mut self) {
        self.empty = 0;
    }
}

/// How many bulk datagrams this node still may send in the current one-second window.
#[derive(Clone, Debug, Default)]
pub(crate) struct AnswerBudget {
    window: Time,
    used: u32,
}

impl AnswerBudget {
    /// Takes up to `want` datagrams from the budget at `now`; returns how many may be sent.
    pub(crate) fn take(&mut self, now: Time, want: u32) -> u32 {
        if now.since(self.window) >= Duration::from_secs(1) || now < self.window {
            self.window = now;
            self.used = 0;
        }
        let k = want.min(ANSWER_MSGS_PER_SEC.saturating_sub(self.used));
        self.used += k;
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_ends_after_every_shard_was_asked_without_news() {
        let mut p = Pull::default();
        assert_eq!(p.due(1), 0, "not pulling before start");
        p.start();
        let mut sent = 0;
        // Two shards: ends after 2 * 2 + slack empty pulls.
        for _ in 0..100 {
            let k = p.due(2);
            if k == 0 {
                break;
            }
            sent += k;
        }
        assert!(!p.active());
        assert_eq!(sent, 2 * 2 + EMPTY_PULLS_SLACK);
        // News keeps it going; MAX_PULLS bounds it whatever the answers.
        p.start();
        let mut total = 0u32;
        for _ in 0..10_000 {
            let k = p.due(1);
            if k == 0 {
                break;
            }
            total += u32::from(k);
            p.news();
        }
        assert_eq!(total, u32::from(MAX_PULLS));
        assert!(!p.active());
    }

    #[test]
    fn the_answer_budget_is_per_second() {
        let mut b = AnswerBudget::default();
        let mut sent = 0;
        // 1,000 joiners asking 3 datagrams each within one second get the budget, no more.
        for i in 0..1000u64 {
            sent += b.take(Time(i), 3);
        }
        assert_eq!(sent, ANSWER_MSGS_PER_SEC);
        assert_eq!(b.take(Time(999), 3), 0);
        assert_eq!(b.take(Time(1000), 3), 3, "a new second, a new budget");
    }
}
