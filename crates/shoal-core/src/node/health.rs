//! The node's side of service health: feeds the health guard (`core::health_guard`) with
//! what each member's record says and whether the served view serves the member, and turns
//! its decisions into events.
//!
//! Also publishes this node's own services' health: drivers register each service's checks
//! (`set_checks`) and hand in every raw result (`check_result`: the agent from its probes,
//! the simulator from its model); `core::health_damper` damps them into each check's status
//! (a ttl check runs out on the `Checks` timer) and a service's health, and the node writes
//! that into its record, paced by `core::health_rate` (a flapping check cannot flood the
//! cluster; the last state wins) on its `Health` timer, shortened to fit the record, never
//! after a leave.
//!
//! A child module of `core::node` (it reaches the node's fields) so that node/mod.rs keeps only
//! a few hook lines. Must not decide what is served (the health guard does) and stays
//! sans-IO.

use super::{EventKind, Node};
use crate::health_damper::{CheckParams, CheckStatus, ChecksError};
use crate::health_rate::Published;
use crate::meta::{Health, MetaError, NodeMeta};
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

    /// Registers the checks of our service `service`, replacing any (none: it has no checks
    /// any more). Its health starts as its checks' initial status, in our record at once
    /// (the pacing counts its gap from now); results then come in through `check_result`.
    pub fn set_checks(
        &mut self,
        now: Time,
        service: &str,
        checks: Vec<CheckParams>,
    ) -> Result<(), ChecksError> {
        self.now = now;
        let initial = self.checks.set(now, service, checks)?;
        self.health_rate.forget(service);
        if let Some(health) = initial {
            let p = Published {
                health,
                output: String::new(),
            };
            self.health_rate.published(now, service, p);
            self.record_initial_health(service, health);
        }
        self.after_input(now);
        Ok(())
    }

    /// Puts `service`'s initial health in our record unless it says so already.
    fn record_initial_health(&mut self, service: &str, health: Health) {
        if self.left {
            return;
        }
        let mut meta = self.own.meta.clone();
        let Some(s) = meta.services.get_mut(service) else {
            return;
        };
        if s.health == Some(health) {
            return;
        }
        s.health = Some(health);
        s.health_output = None;
        if meta.validate().is_ok() {
            self.own.version += 1;
            self.own.set_meta(meta);
            self.publish_own();
        }
    }

    /// One raw result of our check `id` (a probe's, or an app's for a ttl check): damped
    /// into the check's status, and the service's health (the worst of its checks) written
    /// into our record when the pacing allows, else on the `Health` timer. Returns the
    /// check's state, or `None` for an unknown check. Counted but not published after a
    /// leave.
    pub fn check_result(
        &mut self,
        now: Time,
        id: &str,
        health: Health,
        output: &str,
    ) -> Option<CheckStatus> {
        self.now = now;
        let service = self
            .checks
            .result(now, id, health, output.to_string(), false)?;
        self.offer_current(now, &service);
        self.after_input(now);
        self.checks.get(id)
    }

    /// Every check of our services, by service then registered order.
    pub fn checks(&self) -> Vec<CheckStatus> {
        self.checks.list()
    }

    /// Our check `id`, if registered.
    pub fn check(&self, id: &str) -> Option<CheckStatus> {
        self.checks.get(id)
    }

    /// The health of our checked service `service` now (its checks' worst status, with that
    /// check's output), whether or not the pacing has published it yet.
    pub fn check_health(&self, service: &str) -> Option<(Health, String)> {
        self.checks.current(service).map(|p| (p.health, p.output))
    }

    /// The ttl checks that ran out turn critical (the `Checks` timer).
    pub(super) fn expire_checks(&mut self, now: Time) {
        for service in self.checks.expire(now) {
            self.offer_current(now, &service);
        }
    }

    /// Hands `service`'s current health to the pacing and publishes what is due.
    fn offer_current(&mut self, now: Time, service: &str) {
        if let Some(p) = self.checks.current(service) {
            self.offer(now, service, p);
        }
    }

    /// Hands `service`'s status to the pacing and writes what is due into our record at once
    /// (else the `Health` timer does). A status equal to what was published is nothing to do.
    /// Ignored after a leave.
    fn offer(&mut self, now: Time, service: &str, p: Published) {
        if self.left {
            return;
        }
        self.health_rate.offer(service, p);
        self.publish_health(now);
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
