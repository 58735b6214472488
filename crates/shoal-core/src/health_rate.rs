//! Paces how often a node publishes its services' health in its record, so that a flapping
//! check cannot make its owner flood the cluster with new record versions.
//!
//! Owns, per service, what was last published, when, and the latest status waiting to be
//! published. A status change is published at once when the service published nothing for
//! `min_gap`, otherwise at the end of the gap; only the last status waiting is published (the
//! last state always wins). A change of the output alone (same status) waits `output_gap`
//! (Consul's `check_update_interval`). Pure and deterministic: time comes in with every call;
//! the driver (agent or simulator) applies what `due` returns through `Node::set_meta`.

use crate::meta::Health;
use crate::time::Time;
use std::collections::BTreeMap;
use std::time::Duration;

/// Shortest time between two published status changes of one service.
pub(crate) const MIN_GAP: Duration = Duration::from_secs(2);
/// Shortest time between two publications of an output change alone.
pub(crate) const OUTPUT_GAP: Duration = Duration::from_secs(300);

/// A service's health as published in the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The status.
    pub health: Health,
    /// The check's output.
    pub output: String,
}

#[derive(Clone, Debug, Default)]
struct Slot {
    published: Option<Published>,
    at: Option<Time>,
    pending: Option<Published>,
}

#[derive(Clone, Debug)]
pub(crate) struct HealthRate {
    min_gap: Duration,
    output_gap: Duration,
    slots: BTreeMap<String, Slot>,
}

impl Default for HealthRate {
    fn default() -> Self {
        HealthRate::new(MIN_GAP, OUTPUT_GAP)
    }
}

impl HealthRate {
    pub(crate) fn new(min_gap: Duration, output_gap: Duration) -> Self {
        HealthRate {
            min_gap,
            output_gap,
            slots: BTreeMap::new(),
        }
    }

    /// Records that `service` was published as `p` at `now` by another path (registration):
    /// the gap starts now.
    pub(crate) fn published(&mut self, now: Time, service: &str, p: Published) {
        let slot = self.slots.entry(service.to_string()).or_default();
        slot.published = Some(p);
        slot.at = Some(now);
        slot.pending = None;
    }

    /// The latest status of `service` (replaces any status still waiting).
    pub(crate) fn offer(&mut self, service: &str, p: Published) {
        let slot = self.slots.entry(service.to_string()).or_default();
        if slot.published.as_ref() == Some(&p) {
            slot.pending = None;
        } else {
            slot.pending = Some(p);
        }
    }

    /// Stops tracking `service` (deregistered).
    pub(crate) fn forget(&mut self, service: &str) {
        self.slots.remove(service);
    }

    fn ready_at(&self, slot: &Slot) -> Option<Time> {
        let p = slot.pending.as_ref()?;
        let gap = match &slot.published {
            Some(old) if old.health == p.health => self.output_gap,
            _ => self.min_gap,
        };
        Some(match slot.at {
            Some(at) => at.plus(gap),
            None => Time::ZERO,
        })
    }

    /// What to publish now (each taken as published at `now`).
    pub(crate) fn due(&mut self, now: Time) -> Vec<(String, Published)> {
        let ready: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| self.ready_at(s).is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in ready {
            if let Some(slot) = self.slots.get_mut(&k) {
                if let Some(p) = slot.pending.take() {
                    slot.published = Some(p.clone());
                    slot.at = Some(now);
                    out.push((k, p));
                }
            }
        }
        out
    }

    /// When the next status waiting may be published.
    pub(crate) fn next_due(&self) -> Option<Time> {
        self.slots.values().filter_map(|s| self.ready_at(s)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(h: Health, o: &str) -> Published {
        Published {
            health: h,
            output: o.into(),
        }
    }

    #[test]
    fn first_change_at_once_then_paced_and_last_wins() {
        let mut r = HealthRate::default();
        r.offer("web", p(Health::Critical, "down"));
        assert_eq!(
            r.due(Time(0)),
            vec![("web".into(), p(Health::Critical, "down"))]
        );
        // A flapping check: ten changes within the gap publish only the last.
        for i in 0..9u64 {
            let h = if i % 2 == 0 {
                Health::Passing
            } else {
                Health::Critical
            };
            r.offer("web", p(h, "x"));
            assert!(r.due(Time(100 * i)).is_empty());
        }
        assert_eq!(r.next_due(), Some(Time(2000)));
        assert_eq!(
            r.due(Time(2000)),
            vec![("web".into(), p(Health::Passing, "x"))]
        );
        assert_eq!(r.next_due(), None);
        // Back to what was published: nothing to do.
        r.offer("web", p(Health::Critical, "y"));
        r.offer("web", p(Health::Passing, "x"));
        assert!(r.due(Time(5000)).is_empty());
    }

    #[test]
    fn output_alone_waits_longer_and_services_are_paced_apart() {
        let mut r = HealthRate::default();
        r.published(Time(0), "web", p(Health::Passing, "200 OK"));
        r.offer("web", p(Health::Passing, "200 OK in 3 ms"));
        assert!(r.due(Time(10_000)).is_empty());
        assert_eq!(r.next_due(), Some(Time(300_000)));
        r.offer("db", p(Health::Critical, "refused"));
        assert_eq!(r.due(Time(10_000)).len(), 1);
        assert_eq!(r.due(Time(300_000)).len(), 1);
        r.forget("web");
        assert_eq!(r.next_due(), None);
    }
}
