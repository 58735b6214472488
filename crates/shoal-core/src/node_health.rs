//! The node's side of service health: feeds the health guard (`core::health_guard`) with
//! what each member's record says and whether the served view serves the member, and turns
//! its decisions into events.
//!
//! A child module of `core::node` (it reaches the node's fields) so that node.rs keeps only
//! a few hook lines. Must not decide anything itself (the health guard does) and stays
//! sans-IO. Checks run in the agent; their status reaches the core through the node's own
//! record (`Node::set_meta`).

use super::{EventKind, Node};
use crate::guard::GuardReport;
use crate::time::Time;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Node {
    /// Tells the health guard what `name` offers now (after its record or its served status
    /// changed). A member without a record of its current life, or unknown, offers nothing.
    pub(super) fn health_observe(&mut self, now: Time, name: &Arc<str>) {
        let Some(m) = self.truth.get(name) else {
            self.health.forget(now, name);
            return;
        };
        let serving = self.guard.served(name, m.state).is_serving();
        let generation = m.id.generation();
        let store = self.store.lock();
        match store.get(name).filter(|r| r.generation <= generation) {
            Some(r) => self.health.observe(
                now,
                name,
                r.meta
                    .services
                    .iter()
                    .map(|(id, s)| (id.as_str(), s.name.as_str(), s.health)),
                serving,
            ),
            None => self.health.forget(now, name),
        }
    }

    /// Emits the health guard's transitions, and re-serves members whose instances' held
    /// status changed (a `meta` event each, so that watchers and blocking queries see it).
    pub(super) fn health_flush(&mut self, now: Time) {
        for t in self.health.take_transitions() {
            self.push_event(now, EventKind::Health(t));
        }
        for name in self.health.take_dirty() {
            self.emit_served(now, &name, false, true);
        }
    }

    /// Why `node`'s instance `id` of `service` is served as held in the passing view, if it
    /// is.
    pub fn health_held(&self, service: &str, node: &str, id: &str) -> Option<&str> {
        self.health.held(service, node, id)
    }

    /// The health guard's report of every service that is not `normal`.
    pub fn health_reports(&self) -> BTreeMap<String, GuardReport> {
        self.health.reports()
    }
}
