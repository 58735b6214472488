//! User events in the simulator: when each `user-event` fault fired, when every node
//! delivered it (its served-view event `user_event`, as the agent's watch stream shows it),
//! and what events cost in traffic (`Stats::fleet_tx_bytes`).
//!
//! Owns the figures only: the world fires the events and hands over the deliveries. Must not
//! decide anything the core does.

use crate::quantiles::Quantiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One event's spread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventSpread {
    pub from: u32,
    pub fired_s: f64,
    /// Nodes running at the end that delivered it, of those running at the end.
    pub reached: usize,
    pub of: usize,
    /// Delivered more than once on some node (must stay 0).
    pub duplicates: usize,
    /// Delivery latency over the nodes that delivered it, in ms.
    pub latency_ms: Quantiles,
}

/// Every event of a run, and the traffic they cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFigures {
    pub events: Vec<EventSpread>,
    /// Bytes of event datagrams (pushes and anti-entropy) per node, over the run.
    pub fleet_bytes_per_node: f64,
    /// The same, per second of the run.
    pub fleet_bytes_per_node_s: f64,
    /// A node's idle traffic: the median node's bytes sent per second over the measured
    /// window, less the events' share of that window (membership, probes, digests). The
    /// budget events are compared with.
    #[serde(default)]
    pub other_bytes_per_node_s: f64,
    /// Event bytes per node for one event (the run's event bytes over its events).
    #[serde(default)]
    pub bytes_per_node_per_event: f64,
    /// Events per hour a node can carry within 1 % of its idle traffic at this cost.
    #[serde(default)]
    pub events_per_hour_at_1pct: f64,
}

/// One fired event: who fired it, when (ms), and each delivery (node, ms).
type Fired = (u32, u64, Vec<(u32, u64)>);

#[derive(Default)]
pub struct UserEvents {
    /// By event id.
    fired: BTreeMap<u64, Fired>,
}

impl UserEvents {
    pub fn is_empty(&self) -> bool {
        self.fired.is_empty()
    }

    pub fn fired(&mut self, id: u64, from: u32, at_ms: u64) {
        self.fired.entry(id).or_insert((from, at_ms, Vec::new()));
    }

    pub fn delivered(&mut self, id: u64, node: u32, at_ms: u64) {
        if let Some(e) = self.fired.get_mut(&id) {
            e.2.push((node, at_ms));
        }
    }

    /// `tx_p50`: the median node's bytes sent per second over the measured window
    /// (`window_ms`, events included).
    pub fn finish(
        &self,
        running: &[bool],
        fleet_bytes: u64,
        tx_p50: f64,
        end_ms: u64,
        window_ms: u64,
    ) -> EventFigures {
        let n = running.len().max(1) as f64;
        let secs = end_ms.max(1) as f64 / 1000.0;
        let per_event = fleet_bytes as f64 / n / self.fired.len().max(1) as f64;
        let window_s = window_ms.max(1) as f64 / 1000.0;
        let other = (tx_p50 - fleet_bytes as f64 / n / window_s).max(0.0);
        let events = self
            .fired
            .values()
            .map(|(from, at, d)| {
                let mut first: BTreeMap<u32, u64> = BTreeMap::new();
                let mut dup = 0;
                for (node, ms) in d {
                    if first.insert(*node, *ms).is_some() {
                        dup += 1;
                    }
                }
                let of = running.iter().filter(|r| **r).count();
                let reached = first
                    .keys()
                    .filter(|k| running.get(**k as usize).copied().unwrap_or(false))
                    .count();
                EventSpread {
                    from: *from,
                    fired_s: *at as f64 / 1000.0,
                    reached,
                    of,
                    duplicates: dup,
                    latency_ms: Quantiles::of(
                        first
                            .values()
                            .map(|ms| ms.saturating_sub(*at) as f64)
                            .collect(),
                    ),
                }
            })
            .collect();
        EventFigures {
            events,
            fleet_bytes_per_node: fleet_bytes as f64 / n,
            fleet_bytes_per_node_s: fleet_bytes as f64 / n / secs,
            other_bytes_per_node_s: other,
            bytes_per_node_per_event: per_event,
            events_per_hour_at_1pct: if per_event > 0.0 {
                0.01 * other * 3600.0 / per_event
            } else {
                0.0
            },
        }
    }
}
