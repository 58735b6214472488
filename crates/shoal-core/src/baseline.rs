//! The guard's baseline: the peers the guard compares against, kept current from the first
//! converged view on.
//!
//! A peer enters once this node has seen it alive with its metadata record; it leaves only by
//! intent (graceful leave, operator removal, forgotten by the truth) or after being down by
//! failure longer than `stable_after` while the guard is `normal`. So a cluster that formed a
//! second ago is protected, and so is one where a node joins or leaves every few seconds
//! forever (a baseline retaken only after a quiet period never exists under constant churn).
//! Owns the set and the queue of members waiting to age out; the guard decides when to call
//! what. Never ourselves. Never reads a clock.

use crate::hash::{FixedHashSet, HashSeed};
use crate::time::Time;
use crate::truth::{Truth, TruthState};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct Baseline {
    /// A hash set: a cluster of thousands looks names up here on every change.
    members: FixedHashSet<Arc<str>>,
    /// Baseline members that went down by failure, oldest first, with when.
    downs: VecDeque<(Time, Arc<str>)>,
}

impl Baseline {
    /// An empty baseline whose set is hashed with `seed` (the node's, see `hash::HashSeed`).
    pub(crate) fn with_seed(seed: HashSeed) -> Baseline {
        Baseline {
            members: seed.set(),
            downs: VecDeque::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.members.contains(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.members.iter()
    }

    /// Names, sorted (for snapshots).
    pub(crate) fn sorted(&self) -> Vec<&Arc<str>> {
        let mut v: Vec<&Arc<str>> = self.members.iter().collect();
        v.sort_unstable();
        v
    }

    pub(crate) fn admit(&mut self, name: &Arc<str>) -> bool {
        if self.members.contains(name) {
            return false;
        }
        self.members.insert(name.clone())
    }

    pub(crate) fn remove(&mut self, name: &str) -> bool {
        self.members.remove(name)
    }

    /// A baseline member went down by failure at `now`: it ages out after `stable_after`.
    pub(crate) fn note_down(&mut self, now: Time, name: &Arc<str>) {
        if self.members.contains(name) {
            self.downs.push_back((now, name.clone()));
        }
    }

    /// Removes members down by failure for `stable_after` or longer (call only while the
    /// guard is `normal`). Returns the names removed.
    pub(crate) fn age_out(
        &mut self,
        now: Time,
        stable_after: Duration,
        truth: &Truth,
    ) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        while let Some((t, _)) = self.downs.front() {
            if now.since(*t) < stable_after {
                break;
            }
            let Some((_, name)) = self.downs.pop_front() else {
                break;
            };
            // Still down since then (a member that came back and failed again has a later
            // entry of its own).
            let gone = match truth.get(&name) {
                Some(m) => m.state() == TruthState::Down && now.since(m.since()) >= stable_after,
                None => true,
            };
            if gone && self.members.remove(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Replaces the whole set (a restored snapshot, an operator thaw).
    pub(crate) fn reset(&mut self, names: impl Iterator<Item = Arc<str>>) {
        self.members.clear();
        self.members.extend(names);
        self.downs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;
    use std::net::SocketAddr;

    #[test]
    fn a_failed_member_ages_out_only_if_still_down() {
        let mut truth = Truth::default();
        let id = |n: &str, p: u16| NodeId::new(n, SocketAddr::from(([127, 0, 0, 1], p)), 1);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut base = Baseline::default();
        base.admit(&a);
        base.admit(&b);
        truth.set(Time(0), &id("a", 1), TruthState::Down);
        truth.set(Time(0), &id("b", 2), TruthState::Down);
        base.note_down(Time(0), &a);
        base.note_down(Time(0), &b);
        // b comes back at 10 s.
        truth.set(Time(10_000), &id("b", 2), TruthState::Alive);
        let s = Duration::from_secs(30);
        assert!(base.age_out(Time(29_000), s, &truth).is_empty());
        assert_eq!(base.age_out(Time(30_000), s, &truth), vec![a.clone()]);
        assert!(base.contains("b") && !base.contains("a"));
    }
}
