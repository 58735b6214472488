//! The health guard: keeps a service's instances in the passing view when too many of them
//! turn critical at once (a shared dependency down, a DNS outage), as the membership guard
//! does for members SWIM declares down.
//!
//! Owns, per service, the instances this node knows with their health, the instances that
//! turned critical within `window`, the held set and the per-service state (`normal` or
//! `frozen`) with its reason. Rules (docs/health.md):
//! - more than `max(min_removals, max_removal_ratio x instances)` instances turned critical
//!   within `window` -> the service is `frozen`: those instances, and every instance that turns
//!   critical while frozen, are served `held` in the passing view;
//! - every instance critical -> they are held too (never empty by failure);
//! - fewer failures are removed from the passing view at once;
//! - thaw once held plus recently failed instances stay under half the limit for
//!   `stable_after`; an instance that passes again is no longer held; a deregistration is
//!   intent and is never held;
//! - a `fail_closed` service is never held; `shadow` mode reports, `off` does nothing.
//!
//! It only decides what the passing view shows; it never changes a record. Deterministic: no
//! clock (time comes in with every call), ordered maps only.

use crate::guard_config::{GuardConfig, GuardMode, GuardReport, GuardState};
use crate::meta::Health;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A state change of one service's health guard (logged, evented, sent to the alert hook).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthTransition {
    /// The service.
    pub service: String,
    /// The state before.
    pub from: GuardState,
    /// The state after.
    pub to: GuardState,
    /// The service's report after the change (`baseline`: its serving instances).
    pub report: GuardReport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Inst {
    health: Health,
    /// On a member the served view serves (alive, suspect or held).
    serving: bool,
    /// Was seen serving and not critical at some point (an instance critical from its
    /// registration on never failed: it is not held).
    was_ok: bool,
}

impl Inst {
    fn critical(self) -> bool {
        self.serving && self.health == Health::Critical
    }
}

/// An instance: its node and its id on that node (several instances of a service may run on
/// one node).
type Key = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
struct Svc {
    instances: BTreeMap<Key, Inst>,
    /// Instances that turned critical, with when, oldest first (pruned to `window`).
    failures: Vec<(Time, Key)>,
    held: BTreeSet<Key>,
    frozen: Option<Frozen>,
}

#[derive(Debug, Clone)]
struct Frozen {
    since: Time,
    reason: String,
    calm_since: Option<Time>,
}

#[derive(Debug)]
/// The guard of services' health: holds instances that fail their checks together.
pub struct HealthGuard {
    cfg: GuardConfig,
    services: BTreeMap<String, Svc>,
    /// The instances each node offers, as (service, id) (to forget what it no longer offers).
    by_node: BTreeMap<Arc<str>, BTreeSet<(String, Arc<str>)>>,
    transitions: Vec<HealthTransition>,
    /// Nodes whose held status in some service changed (their instances must be re-served).
    dirty: BTreeSet<Arc<str>>,
}

impl HealthGuard {
    /// A health guard with `cfg`.
    pub fn new(cfg: GuardConfig) -> Self {
        HealthGuard {
            cfg,
            services: BTreeMap::new(),
            by_node: BTreeMap::new(),
            transitions: Vec::new(),
            dirty: BTreeSet::new(),
        }
    }

    fn off(&self) -> bool {
        self.cfg.mode == GuardMode::Off
    }

    /// What `node` offers now: every service instance as (id, service, health; `None`:
    /// passing), and whether the served view serves the node. Instances it no longer offers
    /// are forgotten (intent: a deregistered instance is never held).
    pub fn observe<'a>(
        &mut self,
        now: Time,
        node: &Arc<str>,
        services: impl IntoIterator<Item = (&'a str, &'a str, Option<Health>)>,
        serving: bool,
    ) {
        if self.off() {
            return;
        }
        let mut offered = BTreeSet::new();
        for (id, name, health) in services {
            let key: Key = (node.clone(), Arc::from(id));
            offered.insert((name.to_string(), key.1.clone()));
            let health = health.unwrap_or(Health::Passing);
            let svc = self.services.entry(name.to_string()).or_default();
            let before = svc.instances.get(&key).copied();
            let mut now_inst = Inst {
                health,
                serving,
                was_ok: before.is_some_and(|b| b.was_ok),
            };
            now_inst.was_ok |= serving && health != Health::Critical;
            svc.instances.insert(key.clone(), now_inst);
            let turned = now_inst.critical() && before.is_some_and(|b| !b.critical());
            if turned {
                svc.failures.push((now, key.clone()));
                if svc.frozen.is_some() && !self.cfg.fail_closed(name) {
                    svc.held.insert(key.clone());
                    self.dirty.insert(node.clone());
                }
            }
            if !now_inst.critical() && svc.held.remove(&key) {
                self.dirty.insert(node.clone());
            }
            // Only a failure can trip the guard, and only a frozen guard has more to decide:
            // the common case (a passing record arriving) costs no scan of the instances.
            if turned || svc.frozen.is_some() {
                self.evaluate(now, name);
            }
        }
        let gone: Vec<(String, Arc<str>)> = match self.by_node.get(node) {
            Some(old) => old.difference(&offered).cloned().collect(),
            None => Vec::new(),
        };
        for (name, id) in gone {
            self.drop_instance(now, &name, &(node.clone(), id));
        }
        if offered.is_empty() {
            self.by_node.remove(node);
        } else {
            self.by_node.insert(node.clone(), offered);
        }
    }

    /// `node` is gone for good (left, reaped, or its record is no longer of its life).
    pub fn forget(&mut self, now: Time, node: &Arc<str>) {
        if let Some(old) = self.by_node.remove(node) {
            for (name, id) in old {
                self.drop_instance(now, &name, &(node.clone(), id));
            }
        }
    }

    fn drop_instance(&mut self, now: Time, service: &str, key: &Key) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.instances.remove(key);
        svc.failures.retain(|(_, k)| k != key);
        if svc.held.remove(key) {
            self.dirty.insert(key.0.clone());
        }
        if svc.frozen.is_none() {
            if svc.instances.is_empty() {
                self.services.remove(service);
            }
            return;
        }
        if svc.instances.is_empty() {
            let was = self.services.remove(service);
            if let Some(Svc {
                frozen: Some(_), ..
            }) = was
            {
                self.push(
                    service,
                    GuardState::Frozen,
                    GuardState::Normal,
                    now,
                    "no instance left (deregistered or gone)".into(),
                    0,
                    0,
                );
            }
            return;
        }
        self.evaluate(now, service);
    }

    /// Periodic evaluation: forgets failures older than `window`, thaws.
    /// Whether `tick` has work: a service frozen or with failures in the window.
    pub fn busy(&self) -> bool {
        !self.off()
            && self
                .services
                .values()
                .any(|s| s.frozen.is_some() || !s.failures.is_empty())
    }

    /// Advances time: thaws a service whose failures have been back under the limit long enough.
    pub fn tick(&mut self, now: Time) {
        if self.off() {
            return;
        }
        let window = self.cfg.window;
        let mut busy = Vec::new();
        for (name, svc) in &mut self.services {
            svc.failures.retain(|(t, _)| now.since(*t) < window);
            if svc.frozen.is_some() || !svc.failures.is_empty() {
                busy.push(name.clone());
            }
        }
        for name in busy {
            self.evaluate(now, &name);
        }
    }

    fn evaluate(&mut self, now: Time, service: &str) {
        if self.cfg.fail_closed(service) {
            return;
        }
        let cfg = &self.cfg;
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let n = svc.instances.values().filter(|i| i.serving).count();
        let critical: Vec<&Key> = svc
            .instances
            .iter()
            .filter(|(_, i)| i.critical())
            .map(|(k, _)| k)
            .collect();
        let recent: BTreeSet<&Key> = svc
            .failures
            .iter()
            .filter(|(t, _)| now.since(*t) < cfg.window)
            .map(|(_, k)| k)
            .filter(|k| svc.instances.get(*k).is_some_and(|i| i.critical()))
            .collect();
        let limit = cfg.limit(n);
        let window_s = cfg.window.as_secs();
        let ratio = (cfg.max_removal_ratio * 100.0).round();
        match &mut svc.frozen {
            None => {
                let (hold, reason): (Vec<Key>, String) = if recent.len() as f64 > limit {
                    (
                        recent.iter().map(|k| (*k).clone()).collect(),
                        format!(
                            "{} of {n} instances of {service} turned critical within {window_s} \
                             s, limit {ratio}%: more likely a shared fault than broken \
                             instances; served as held in the passing view",
                            recent.len()
                        ),
                    )
                } else if n > 0
                    && critical.len() == n
                    && critical
                        .iter()
                        .any(|k| svc.instances.get(*k).is_some_and(|i| i.was_ok))
                {
                    (
                        critical
                            .iter()
                            .filter(|k| svc.instances.get(**k).is_some_and(|i| i.was_ok))
                            .map(|k| (*k).clone())
                            .collect(),
                        format!(
                            "every instance of {service} ({n}) is critical: served as held so \
                             that the service is never empty by failure"
                        ),
                    )
                } else {
                    return;
                };
                let held = hold.len();
                for k in hold {
                    self.dirty.insert(k.0.clone());
                    svc.held.insert(k);
                }
                svc.frozen = Some(Frozen {
                    since: now,
                    reason: reason.clone(),
                    calm_since: None,
                });
                self.push(
                    service,
                    GuardState::Normal,
                    GuardState::Frozen,
                    now,
                    reason,
                    held,
                    n,
                );
            }
            Some(f) => {
                // Held instances that are still critical, plus recent failures.
                svc.held
                    .retain(|k| svc.instances.get(k).is_some_and(|i| i.critical()));
                let missing = svc
                    .held
                    .iter()
                    .chain(recent.iter().copied())
                    .collect::<BTreeSet<_>>()
                    .len();
                let all_critical = n > 0 && critical.len() == n;
                if (missing as f64) < limit / 2.0 && !all_critical {
                    let since = *f.calm_since.get_or_insert(now);
                    if now.since(since) >= cfg.stable_after {
                        let reason = format!(
                            "thawed: {missing} of {n} instances of {service} critical, under \
                             half the limit for {} s",
                            cfg.stable_after.as_secs()
                        );
                        svc.frozen = None;
                        svc.failures.clear();
                        for k in std::mem::take(&mut svc.held) {
                            self.dirty.insert(k.0);
                        }
                        self.push(
                            service,
                            GuardState::Frozen,
                            GuardState::Normal,
                            now,
                            reason,
                            0,
                            n,
                        );
                    }
                } else {
                    f.calm_since = None;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        service: &str,
        from: GuardState,
        to: GuardState,
        now: Time,
        reason: String,
        held: usize,
        n: usize,
    ) {
        let enforce = self.cfg.mode == GuardMode::Enforce;
        self.transitions.push(HealthTransition {
            service: service.to_string(),
            from,
            to,
            report: GuardReport {
                mode: self.cfg.mode,
                state: to,
                since_ms: now.as_millis(),
                reason,
                held: if enforce { held } else { 0 },
                would_hold: held,
                baseline: n,
                escalated: false,
            },
        });
    }

    // ----- outputs --------------------------------------------------------------------------

    /// Why `node`'s instance `id` of `service` is served as held in the passing view
    /// (enforce mode only), or `None`.
    pub fn held(&self, service: &str, node: &str, id: &str) -> Option<&str> {
        if self.cfg.mode != GuardMode::Enforce {
            return None;
        }
        let svc = self.services.get(service)?;
        if !svc.held.iter().any(|(n, i)| &**n == node && &**i == id) {
            return None;
        }
        svc.frozen.as_ref().map(|f| f.reason.as_str())
    }

    /// The report of every service that is not `normal`, by name.
    pub fn reports(&self) -> BTreeMap<String, GuardReport> {
        let enforce = self.cfg.mode == GuardMode::Enforce;
        self.services
            .iter()
            .filter_map(|(name, svc)| {
                let f = svc.frozen.as_ref()?;
                let held = svc.held.len();
                Some((
                    name.clone(),
                    GuardReport {
                        mode: self.cfg.mode,
                        state: GuardState::Frozen,
                        since_ms: f.since.as_millis(),
                        reason: f.reason.clone(),
                        held: if enforce { held } else { 0 },
                        would_hold: held,
                        baseline: svc.instances.values().filter(|i| i.serving).count(),
                        escalated: false,
                    },
                ))
            })
            .collect()
    }

    pub(crate) fn take_transitions(&mut self) -> Vec<HealthTransition> {
        std::mem::take(&mut self.transitions)
    }

    /// Nodes whose instances' held status changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }
}

#[cfg(test)]
#[path = "health_guard_tests.rs"]
mod tests;
