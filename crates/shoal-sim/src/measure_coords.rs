//! Network coordinates in the simulator: how far the nodes' estimates are from the model's
//! round trips at the end of a run, and what the coordinates cost in datagrams.
//!
//! Owns the figure only (read through the core's public `rtt_between`, as `shoal rtt` does);
//! must not change a node. The network model gives every pair the same path (twice the
//! one-way latency; jitter only adds), so the figure checks that coordinates stay near the
//! path, not that they separate racks (the core's tests and the namespace bench do that).

use crate::quantiles::Quantiles;
use serde::{Deserialize, Serialize};
use shoal_core::Node;

/// Observers asked (the first running nodes), and members whose pairs they are asked about.
const OBSERVERS: usize = 5;
const MEMBERS: usize = 30;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoordFigures {
    /// The model's round trip of every path, in µs (twice the one-way latency).
    pub path_rtt_us: u64,
    /// |estimate - path| / path between two other members, from coordinates only.
    pub remote_error: Quantiles,
    /// The same from an observer to a member it probed (its measured minimum).
    pub own_error: Quantiles,
    pub pairs: usize,
}

/// `nodes`: the running nodes by index (name `n{i}`).
pub fn figures(nodes: &[(usize, &Node)], path_rtt_us: u64) -> Option<CoordFigures> {
    if path_rtt_us == 0 || nodes.len() < 3 {
        return None;
    }
    let real = path_rtt_us as f64;
    let rel = |est: u64| (est as f64 - real).abs() / real;
    let members: Vec<String> = nodes
        .iter()
        .take(MEMBERS)
        .map(|(i, _)| format!("n{i}"))
        .collect();
    let (mut remote, mut own) = (Vec::new(), Vec::new());
    for (k, node) in nodes.iter().take(OBSERVERS) {
        let me = format!("n{k}");
        for (x, a) in members.iter().enumerate().filter(|(_, a)| **a != me) {
            if let Some(e) = node.rtt_between(&me, a).filter(|e| e.measured) {
                own.push(rel(e.rtt_us));
            }
            for b in members.iter().skip(x + 1).filter(|b| **b != me) {
                if let Some(e) = node.rtt_between(a, b) {
                    remote.push(rel(e.rtt_us));
                }
            }
        }
    }
    if remote.is_empty() {
        return None;
    }
    Some(CoordFigures {
        path_rtt_us,
        pairs: remote.len(),
        remote_error: Quantiles::of(remote),
        own_error: Quantiles::of(own),
    })
}
