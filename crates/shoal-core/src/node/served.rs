//! The served view: what this node serves for every member (the truth through the guard),
//! its change events (the queries that read it are in `queries.rs`), the one place
//! `GuardCtx` is built (`with_guard`) and the reach checks the guard asks for.
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO.

use super::{Event, EventKind, MemberChange, Node};
use crate::guard::{Guard, GuardCtx, GuardState};
use crate::identity::NodeId;
use crate::sync::ShoalMsg;
use crate::time::Time;
use crate::truth::{MemberView, ServedStatus, TruthState};
use std::net::SocketAddr;
use std::sync::Arc;

impl Node {
    /// Runs `f` on the guard with everything it may look at.
    pub(super) fn with_guard<R>(
        &mut self,
        now: Time,
        f: impl FnOnce(&mut Guard, &GuardCtx<'_>) -> R,
    ) -> R {
        self.reach
            .set_stretch(u32::from(self.foca.local_health()) + 1);
        let store = &self.foca.broadcast_handler().store;
        let ctx = GuardCtx {
            truth: &self.truth,
            meta: store,
            self_name: &self.cfg.name,
            active_peers: self.foca.num_members(),
            idle: self.idle,
            reach: self.reach.view(now),
            gray: Some(&self.gray),
            heard: Some(crate::guard::Heard {
                causes: &self.causes,
                within: crate::guard::Heard::within_for(&self.cfg.timings),
                within_unconfirmed: crate::guard::Heard::shortest_suspicion(&self.cfg.timings),
            }),
        };
        f(&mut self.guard, &ctx)
    }

    /// Advances the reach check in flight and starts one when the guard wants it (or when
    /// we just refuted a suspicion of ourselves: the cluster cannot hear us well).
    pub(super) fn check_reach(&mut self, now: Time) {
        let connected = !self.idle && !self.reconnecting;
        self.reach.set_connected(now, connected);
        let period = self.cfg.timings.probe_period;
        let state = self.guard.state();
        if state != self.reach_state {
            // A new episode (or its end): check promptly again.
            self.reach_state = state;
            self.reach.set_spacing(period);
        }
        let (pings, finished) = self.reach.poll(now);
        self.send_pings(pings);
        if finished {
            self.with_guard(now, |g, ctx| g.on_reach(now, ctx));
            if matches!(
                self.guard.state(),
                GuardState::Frozen | GuardState::Isolated
            ) {
                // While the fault lasts, full checks back off (1, 2, 4 ... 16 probe
                // periods apart); heal pings below notice the end of it meanwhile.
                let wider = (self.reach.spacing() * 2).min(period * 16);
                self.reach.set_spacing(wider);
            }
        }
        // (Also while foca is idle: an agent cut off from everyone needs these most.)
        if matches!(state, GuardState::Frozen | GuardState::Isolated) && now >= self.next_heal {
            self.next_heal = now.plus(period);
            let missing = self.missing_peers();
            let pings = self.reach.heal_pings(missing, &mut self.rng);
            self.send_pings(pings);
        }
        if !connected || !self.reach.can_start(now) {
            return;
        }
        let wanted = self.with_guard(now, |g, ctx| g.wants_reach_check(ctx));
        if !(wanted || std::mem::take(&mut self.refuted)) {
            return;
        }
        let mut suspects = self.hashes.set();
        let mut candidates: Vec<(Arc<str>, SocketAddr)> = self
            .guard
            .baseline_unordered()
            .filter_map(|n| match self.truth.get(n) {
                Some(m) if m.state() == TruthState::Left => None,
                Some(m) => {
                    if m.state() == TruthState::Suspect {
                        suspects.insert(n.clone());
                    }
                    Some((n.clone(), m.id.addr()))
                }
                None => self.guard.ghost(n).map(|g| (n.clone(), g.addr)),
            })
            .collect();
        // The baseline's order is its hash table's: sort so that the sample replays exactly.
        candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let pings = self.reach.start(now, candidates, &suspects, &mut self.rng);
        self.stats.reach_checks = self.reach.checks;
        self.send_pings(pings);
    }

    /// Baseline peers SWIM does not call alive, or that the last check did not reach,
    /// sorted by name (so that the pick replays exactly).
    pub(super) fn missing_peers(&self) -> Vec<(Arc<str>, SocketAddr)> {
        let unreached = self.reach.view(self.now).last.map(|r| &r.unreached);
        let mut out: Vec<(Arc<str>, SocketAddr)> = self
            .guard
            .baseline_unordered()
            .filter_map(|n| match self.truth.get(n) {
                Some(m) if m.state() == TruthState::Left => None,
                Some(m)
                    if m.state() == TruthState::Alive
                        && !unreached.is_some_and(|u| u.contains(n)) =>
                {
                    None
                }
                Some(m) => Some((n.clone(), m.id.addr())),
                None => self.guard.ghost(n).map(|g| (n.clone(), g.addr)),
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(super) fn send_pings(&mut self, pings: Vec<(SocketAddr, u64)>) {
        for (addr, nonce) in pings {
            self.stats.reach_pings += 1;
            self.send_shoal(addr, &ShoalMsg::Ping { nonce });
        }
    }

    pub(super) fn reap(&mut self, now: Time, name: &Arc<str>) {
        if **name == *self.cfg.name {
            return;
        }
        let Some(m) = self.truth.remove(name) else {
            return;
        };
        self.health.forget(now, name);
        self.gray.forget(name);
        self.gray_swim.remove(name);
        self.store_mut().remove(name);
        self.discover.remove(name);
        let prev = m.served().or(self.served_ghosts.remove(name));
        self.with_guard(now, |g, ctx| {
            g.on_change(now, ctx, name, Some(m.state()), None)
        });
        let mut view = MemberView::build(&m, prev.unwrap_or(ServedStatus::Down), None);
        view.cause = self.causes.remove(name);
        self.push_reaped(now, prev, view);
    }

    /// The event of a member that is gone from the served view (reaped, or a restored
    /// ghost dropped), with what was served for it before.
    pub(super) fn push_reaped(
        &mut self,
        now: Time,
        previous: Option<ServedStatus>,
        member: MemberView,
    ) {
        self.push_event(
            now,
            EventKind::Member {
                change: MemberChange::Reaped,
                previous,
                member,
            },
        );
    }

    /// Records a SWIM state for a member, tells the guard, and emits the served change.
    pub(super) fn set_truth(&mut self, now: Time, id: &NodeId, state: TruthState) {
        if !self.identity_admitted(now, id) {
            return;
        }
        let state = self.gray_overlay(id.name(), state);
        let (changed, prev) = self.truth.set(now, id, state);
        if !changed {
            return;
        }
        self.with_guard(now, |g, ctx| {
            g.on_change(now, ctx, id.name(), prev, Some(state))
        });
        self.emit_served(now, id.name(), prev.is_none(), false);
    }

    /// Emits an event if what we serve for `name` changed (or its metadata did).
    pub(super) fn emit_served(
        &mut self,
        now: Time,
        name: &Arc<str>,
        joined: bool,
        meta_changed: bool,
    ) {
        if self.adopting {
            if let Some(m) = self.truth.get(name) {
                let status = self.guard.served(name, m.state());
                self.swap_served(name, status);
            }
            return;
        }
        // Most calls change nothing: decide that before building the view.
        if !joined && !meta_changed {
            if let Some(m) = self.truth.get(name) {
                let status = self.guard.served(name, m.state());
                if m.served() == Some(status)
                    && (self.served_ghosts.is_empty() || !self.served_ghosts.contains_key(name))
                {
                    return;
                }
            }
        }
        let Some(mut view) = self.member(name) else {
            return;
        };
        let prev = self.swap_served(name, view.status);
        if prev != Some(view.status) && self.truth.get(name).is_some() {
            view.cause = Some(self.record_cause(now, name, prev, &view));
        }
        let change = if joined || prev.is_none() {
            MemberChange::Joined
        } else if prev != Some(view.status) {
            MemberChange::Status
        } else if meta_changed {
            MemberChange::Meta
        } else {
            return;
        };
        if change != MemberChange::Meta {
            self.health_observe(now, name);
        }
        self.push_event(
            now,
            EventKind::Member {
                change,
                previous: prev,
                member: view,
            },
        );
    }

    /// Records a served transition of `name` with its cause, from what the node saw.
    fn record_cause(
        &mut self,
        now: Time,
        name: &Arc<str>,
        from: Option<ServedStatus>,
        view: &MemberView,
    ) -> crate::cause::Cause {
        if from.is_none() && view.status == ServedStatus::Alive && !self.causes.has(name) {
            // A join (every member of a forming cluster, on every node): nothing to keep.
            return crate::cause::Causes::joined();
        }
        let mode = self.guard.config().mode;
        // The guard's words only matter for a member going down or held.
        let guard_state = if matches!(view.status, ServedStatus::Down | ServedStatus::Held) {
            let report = self.guard.report();
            format!("{}: {}", report.state.as_str(), report.reason)
        } else {
            String::new()
        };
        let facts = crate::cause::Facts {
            now,
            generation: view.generation,
            from,
            to: view.status,
            addr: view.addr,
            hold: self.guard.hold_reason(name),
            guard_state: &guard_state,
            enforce: mode == crate::GuardMode::Enforce,
            guard_off: mode == crate::GuardMode::Off,
        };
        self.causes.transition(name, &facts)
    }

    /// Records what is served for `name`; returns what was served before.
    pub(super) fn swap_served(
        &mut self,
        name: &Arc<str>,
        status: ServedStatus,
    ) -> Option<ServedStatus> {
        let ghost = if self.served_ghosts.is_empty() {
            None
        } else {
            self.served_ghosts.remove(name)
        };
        match self.truth.swap_served(name, status) {
            Some(prev) => prev.or(ghost),
            None => {
                self.served_ghosts.insert(name.clone(), status);
                ghost
            }
        }
    }

    pub(super) fn push_event(&mut self, now: Time, kind: EventKind) {
        self.index += 1;
        self.events.push_back(Event {
            index: self.index,
            at_ms: now.as_millis(),
            kind,
        });
    }
}
