//! The node's side of gray-failure detection (`core::gray`): foca's probe outcomes in, reach
//! reports pushed to random members and received from them, removals and returns applied to
//! the truth (a removed member is recorded `down` while SWIM calls it alive, so the guard
//! counts it like any failure and damping penalizes it).
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO and must not
//! change what SWIM believes.

use super::Node;
use crate::gray::{GrayChange, Members, ReachReport};
use crate::guard::GuardState;
use crate::sync::ShoalMsg;
use crate::time::Time;
use crate::truth::{Truth, TruthState};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// The truth as `gray` sees it: active members (a gray-removed one is not active, so its own
/// reports about others stop counting), and the foca member count for the population.
struct TruthMembers<'a> {
    truth: &'a Truth,
    population: usize,
}

impl Members for TruthMembers<'_> {
    fn population(&self) -> usize {
        self.population
    }

    fn member(&self, name: &str) -> Option<(u64, bool)> {
        self.truth
            .get(name)
            .map(|m| (m.id.generation(), m.state().is_active()))
    }
}

impl Node {
    /// The outcomes of our probes that finished during the last input.
    pub(super) fn gray_probes(&mut self, now: Time) {
        let outcomes = self.foca.take_probe_outcomes();
        if outcomes.is_empty() {
            return;
        }
        if self.guard.state() != GuardState::Normal {
            // A correlated event: no gray evidence (see `Gray::forget_evidence`).
            return;
        }
        let healthy = self.foca.local_health() <= crate::lifeguard::MAX_ACCUSER_HEALTH;
        for (id, answered) in outcomes {
            self.gray
                .on_probe(now, id.name(), id.generation(), answered, healthy);
        }
    }

    /// What the truth records for a member SWIM says is in `state`: `down` while gray
    /// evidence removes it (SWIM's own state is kept for its return).
    pub(super) fn gray_overlay(&mut self, name: &Arc<str>, state: TruthState) -> TruthState {
        if !self.gray.is_removed(name) {
            return state;
        }
        if !state.is_active() {
            // SWIM declared it down (or it left): SWIM's verdict stands from here on, and
            // the gray evidence against this life of it is moot. Its return is then a flap
            // from now (damping), as after any failure.
            self.gray.end_removal(name);
            self.gray_swim.remove(name);
            self.stats.gray_removals_ended_by_swim += 1;
            if state == TruthState::Down {
                let generation = self.truth.get(name).map_or(0, |m| m.id.generation());
                self.guard.failed_again(self.now, name, generation);
            }
            return state;
        }
        self.gray_swim.insert(name.clone(), state);
        TruthState::Down
    }

    /// A member we do not serve because of its own failures (removed on gray evidence, or
    /// damped) speaks only for itself in SWIM: a host that cannot hear most of the cluster
    /// (or keeps losing its ingress) suspects healthy members, their refutations do not
    /// reach it, and its down notices would declare them down everywhere.
    fn sync_distrusted(&mut self) {
        if self.distrusted.is_empty()
            && self.gray.removed_count() == 0
            && self.guard.damped().next().is_none()
        {
            return;
        }
        let mut now_set: BTreeSet<Arc<str>> = self.gray.removed_names().cloned().collect();
        now_set.extend(self.guard.damped().cloned());
        let gone: Vec<Arc<str>> = self.distrusted.difference(&now_set).cloned().collect();
        let new: Vec<Arc<str>> = now_set.difference(&self.distrusted).cloned().collect();
        for (names, distrust) in [(gone, false), (new, true)] {
            for n in names {
                if let Some(m) = self.truth.get(&n) {
                    let key = foca::Identity::addr(&m.id);
                    self.foca.set_distrusted(key, distrust);
                }
            }
        }
        self.distrusted = now_set;
    }

    pub(super) fn receive_reach(&mut self, now: Time, reports: Vec<ReachReport>) {
        let members = TruthMembers {
            truth: &self.truth,
            population: self.foca.num_members() + 1,
        };
        for r in reports.into_iter().take(crate::gray::MAX_PER_MSG) {
            if self.gray.receive(now, r, &members).is_err() {
                self.stats.dropped_refused += 1;
            }
        }
    }

    /// Applies the rule, then pushes reports still to be spread (once per probe period).
    pub(super) fn gray_tick(&mut self, now: Time) {
        let members = TruthMembers {
            truth: &self.truth,
            // foca's active members (O(1)) plus ourselves.
            population: self.foca.num_members() + 1,
        };
        let normal = self.guard.state() == GuardState::Normal;
        if !normal {
            self.gray.forget_evidence();
        }
        self.gray.evaluate(now, &members, normal);
        for GrayChange { name, removed } in self.gray.take_changes() {
            let Some(m) = self.truth.get(&name) else {
                continue;
            };
            let (id, state) = (m.id.clone(), m.state());
            match removed {
                Some(_) => {
                    self.stats.gray_removals += 1;
                    // The overlay records it down now (and keeps SWIM's state).
                    self.set_truth(now, &id, state);
                    self.gossip_now = true;
                }
                None => {
                    if let Some(swim) = self.gray_swim.remove(&name) {
                        self.set_truth(now, &id, swim);
                    }
                }
            }
        }
        self.sync_distrusted();
        if now < self.next_gray_push {
            return;
        }
        self.next_gray_push = now.plus(self.cfg.timings.probe_period);
        // (The message's own bytes: its kind and the length of the list.)
        let reports = self
            .gray
            .outgoing(now, self.shoal_budget().saturating_sub(4));
        if reports.is_empty() {
            return;
        }
        let msg = ShoalMsg::Reach { reports };
        let mut peers = Vec::with_capacity(crate::gray::PUSH_FANOUT);
        self.foca
            .random_members(crate::gray::PUSH_FANOUT, &mut peers, &mut self.rng);
        // Only to members that speak this release's protocol: v0.1.0 would drop the kind as
        // undecodable (a wasted datagram and a drop counted there).
        let store = self.store();
        let addrs: Vec<SocketAddr> = peers
            .iter()
            .filter(|m| {
                store
                    .get(m.id().name())
                    .is_some_and(|r| r.protocol().max >= crate::wire::PROTOCOL.max)
            })
            .map(|m| m.id().addr())
            .collect();
        for a in addrs {
            self.stats.reach_reports_sent += 1;
            self.send_shoal(a, &msg);
        }
    }
}
