//! The node's side of service health: feeds the health guard (`core::health_guard`) with
//! what each member's record says and whether the served view serves the member, and turns
//! its decisions into events.
//!
//! Also publishes this node's own services' health: drivers hand in each checked service's
//! status as its checks give it (`offer_health`: the agent from its probes, the simulator
//! from its model), and the node writes it into its record, paced by `core::health_rate`
//! (a flapping check cannot flood the cluster; the last state wins) on its `Health` timer,
//! shortened to fit the record, never after a leave.
//!
//! A child module of `core::node` (it reaches the node's fields) so that node/mod.rs keeps only
//! a few hook lines. Must not decide what is served (the health guard does) and stays
//! sans-IO.

use super::{EventKind, Node};
use crate::health_rate::Published;
use crate::meta::{output_line, Health, MetaError, NodeMeta};
use crate::time::Time;
use std::sync::Arc;

impl Node {
    /// Tells the health guard what `name` offers now (after its record or its served status
    /// changed). A member without a record of its current life, or unknown, offers nothing.
    pub(super) fn health_observe(&mut self, now: Time, name: &Arc<str>) {
        let Some(m) = self.truth.get(name) else {
            self.health.forget(now, name);
            return;
        };
        let serving = self.guard.served(name, m.state()).is_serving();
        let generation = m.id.generation();
        let store = &self.foca.broadcast_handler().store;
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

    /// The current status of this node's checked service `service` (the worst of its checks,
    /// with that check's output): written into our record at once when the pacing allows,
    /// else when it does (the `Health` timer). A status equal to what was published is
    /// nothing to do. Ignored after a leave.
    pub fn offer_health(&mut self, now: Time, service: &str, health: Health, output: &str) {
        if self.left {
            return;
        }
        self.now = now;
        let p = Published {
            health,
            output: output_line(output),
        };
        self.health_rate.offer(service, p);
        self.publish_health(now);
        self.after_input(now);
    }

    /// `service` was just registered with `health` (its checks' initial status): the pacing
    /// counts its gap from now.
    pub fn health_registered(&mut self, now: Time, service: &str, health: Health) {
        let p = Published {
            health,
            output: String::new(),
        };
        self.health_rate.published(now, service, p);
        self.after_input(now);
    }

    /// `service` has no checks any more (deregistered, or its checks replaced): nothing of it
    /// waits to be published.
    pub fn forget_health(&mut self, now: Time, service: &str) {
        self.health_rate.forget(service);
        self.after_input(now);
    }

    /// Writes what the pacing lets out now into our record (the `Health` timer).
    pub(super) fn publish_health(&mut self, now: Time) {
        if self.left {
            return;
        }
        let due = self.health_rate.due(now);
        if due.is_empty() {
            return;
        }
        let mut meta = self.own.meta.clone();
        for (svc, p) in &due {
            if let Some(s) = meta.services.get_mut(svc) {
                s.health = Some(p.health);
                s.health_output = Some(p.output.clone());
            }
        }
        fit(&mut meta);
        if meta.validate().is_err() {
            return;
        }
        self.stats.health_published += due.len() as u64;
        if meta != self.own.meta {
            self.own.version += 1;
            self.own.set_meta(meta);
            self.publish_own();
        }
    }
}

/// Shortens check outputs until the record fits its size limit (status first, output last).
fn fit(meta: &mut NodeMeta) {
    for max in [64usize, 16, 0] {
        if !matches!(meta.validate(), Err(MetaError::TooLarge(_))) {
            return;
        }
        for s in meta.services.values_mut() {
            if let Some(o) = &mut s.health_output {
                let mut end = max.min(o.len());
                while !o.is_char_boundary(end) {
                    end -= 1;
                }
                o.truncate(end);
            }
        }
    }
}
