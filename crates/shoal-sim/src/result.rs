//! The JSON result of one run: `RunResult` and the serialisable figures it holds (spread
//! times, false downs, stale seconds, no-provider seconds, traffic, series, guard changes,
//! sides, fault windows) and the quantile helpers that summarise them.
//!
//! Plain data: the recorder (`measure`) fills it at the end of a run. Field names and
//! shapes are the report's contract (add, don't rename). Must not drive nodes or record.

use serde::{Deserialize, Serialize};
use shoal_core::{GuardMode, GuardState};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpreadKind {
    Join,
    Leave,
    Crash,
}

/// How far one join, leave or crash got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpreadResult {
    pub kind: SpreadKind,
    pub node: u32,
    pub at_s: f64,
    /// Live observers that count (live at the start and at the end of the spread).
    pub observers: u32,
    pub seen: u32,
    pub t50_s: Option<f64>,
    pub t99_s: Option<f64>,
    pub t100_s: Option<f64>,
}

/// Summary of a set of intervals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalStats {
    pub count: u64,
    pub total_s: f64,
    pub mean_s: f64,
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

pub use crate::quantiles::Quantiles;
pub(crate) use crate::quantiles::{quantile_f64, quantile_u32};

/// Aggregate of one kind of spread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpreadStats {
    pub count: u32,
    /// Spreads that reached every live observer.
    pub complete: u32,
    /// Over spreads: time to 50 / 99 / 100% of live observers.
    pub t50_s: Quantiles,
    pub t99_s: Quantiles,
    pub t100_s: Quantiles,
    /// Pooled per-observer latency (s), as CDF points (quantiles 0, 1, ..., 100%).
    pub cdf_s: Vec<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spreads {
    pub join: SpreadStats,
    pub leave: SpreadStats,
    pub crash: SpreadStats,
    /// The first spreads, one by one.
    pub list: Vec<SpreadResult>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FalseDowns {
    /// A live node declared down by SWIM on an observer (served `down` or `held`).
    pub declared: IntervalStats,
    /// ...and actually served `down` to apps.
    pub served: IntervalStats,
    /// ...and served `held` instead (the guard's work).
    pub held: IntervalStats,
    /// Live nodes that were declared down at least once by someone.
    pub victims: u32,
    /// The nodes declared down most often: (node, times).
    pub top: Vec<(u32, u32)>,
}

/// What one side of a cut saw: the nodes a partition, isolation or flap selected (the
/// cut-off side), or every other node (the rest).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SideOutcome {
    pub nodes: u32,
    /// Lowest share of the live peers any node of this side served (alive, suspect or
    /// held), at any moment from `measure.from` on.
    pub min_served_fraction: f64,
    /// Observer-seconds live members were served `down` by nodes of this side.
    pub live_served_down_s: f64,
}

/// The cut-off side and the rest, separately, and how long after the last cut was lifted
/// every live node served exactly the live nodes, all alive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sides {
    pub cut_off: SideOutcome,
    pub rest: SideOutcome,
    /// Seconds from the end of the last cut to the exact truth everywhere (`None`: no cut
    /// ended, or never within the run).
    pub exact_truth_after_heal_s: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stale {
    /// Observer-seconds a crashed node was served `alive`/`suspect` (detection delay).
    pub served_alive: IntervalStats,
    /// Observer-seconds a crashed node was served `held` (the guard's cost).
    pub held: IntervalStats,
    pub total_s: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceOutcome {
    pub name: String,
    pub providers: Vec<u32>,
    /// Node-seconds during which a node saw no serving instance although one was live.
    pub no_provider_s: f64,
    /// Nodes that saw it empty at least once.
    pub nodes_affected: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NoProvider {
    pub total_s: f64,
    pub services: Vec<ServiceOutcome>,
    /// Per node (summed over services): quantiles of seconds, and the worst nodes.
    pub per_node_s: Quantiles,
    pub worst: Vec<(u32, f64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Per node over the measure window (while it ran).
    pub tx_msgs_per_s: Quantiles,
    pub tx_bytes_per_s: Quantiles,
    pub rx_bytes_per_s: Quantiles,
    /// tx bytes/s of every node, sorted (downsampled to at most 200 points).
    pub tx_bytes_per_s_sorted: Vec<f64>,
    pub datagrams: u64,
    /// Of those, coordinates (`ShoalMsg::Coord`) the nodes sent, over the whole run.
    #[serde(default)]
    pub coordinate_datagrams: u64,
    pub lost: u64,
    pub partitioned: u64,
    pub cut: u64,
    pub duplicated: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FullView {
    /// Nodes of the initial cluster that saw all of it as serving at some point.
    pub nodes: u32,
    pub of: u32,
    /// Time (s since 0) at which 50 / 99 / 100% of nodes had the full view.
    pub t50_s: Option<f64>,
    pub t99_s: Option<f64>,
    pub t100_s: Option<f64>,
    /// Same, measured from the start of the last initial node.
    pub after_last_start_s: Option<f64>,
    /// Distinct served view sizes the nodes settled on over the run (Rapid's count of
    /// cluster sizes seen while forming: Rapid 4, memberlist 1,858 at 2,000 processes).
    #[serde(default)]
    pub distinct_sizes: u32,
    /// Fewest members (itself included) a node that had had the full view served after the
    /// measure start, when any member it served stopped serving (`None`: none ever did).
    #[serde(default)]
    pub min_served_after_full: Option<u32>,
    /// Seconds from the last restart or lifted cut to every live node serving exactly the
    /// live nodes, all alive (a mass restart's recovery; `None`: none, or never in the run).
    #[serde(default)]
    pub exact_after_last_heal_s: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSeries {
    pub node: u32,
    pub role: String,
    /// Served view size (None while the node does not run).
    pub size: Vec<Option<u32>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub t_s: Vec<f64>,
    pub live: Vec<u32>,
    pub view_min: Vec<u32>,
    pub view_mean: Vec<f64>,
    pub view_max: Vec<u32>,
    pub nodes: Vec<NodeSeries>,
    pub guard_frozen: Vec<u32>,
    pub guard_isolated: Vec<u32>,
    pub guard_warming: Vec<u32>,
    /// (observer, live subject) pairs currently served down / held.
    pub served_down_pairs: Vec<u32>,
    pub held_pairs: Vec<u32>,
    /// (observer, crashed subject) pairs still served.
    pub stale_pairs: Vec<u32>,
    pub no_provider_nodes: Vec<u32>,
    pub tx_bytes_per_s: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardChange {
    pub node: u32,
    pub at_s: f64,
    pub from: GuardState,
    pub to: GuardState,
    pub reason: String,
    pub held: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardStats {
    pub transitions: u64,
    /// "normal->frozen" -> count.
    pub by_kind: BTreeMap<String, u64>,
    pub nodes_tripped: u32,
    pub first: Vec<GuardChange>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub kind: String,
    pub label: String,
    pub start_s: f64,
    pub end_s: f64,
    pub nodes: usize,
}

/// Wall-clock figures: not part of the deterministic outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Perf {
    pub events: u64,
    pub wall_s: f64,
    pub virtual_s_per_wall_s: f64,
}

/// Everything one run (one scenario, one guard mode) produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub scenario: String,
    pub mode: GuardMode,
    pub seed: u64,
    pub nodes: usize,
    pub duration_s: f64,
    pub measure_from_s: f64,
    pub faults: Vec<FaultWindow>,
    pub spreads: Spreads,
    pub full_view: FullView,
    pub false_downs: FalseDowns,
    pub stale: Stale,
    pub no_provider: NoProvider,
    pub traffic: Traffic,
    pub guard: GuardStats,
    pub series: Series,
    pub perf: Perf,
    /// Per side of the cut (scenarios with a partition, isolation or flap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sides: Option<Sides>,
    /// Scenarios with checked services: no-passing-provider node-seconds (`sim::health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthOutcome>,
    /// Scenarios with faulty members (a `loss` or `flap` fault on chosen hosts): how they
    /// fared in the served views (`measure_gray`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray: Option<crate::measure_gray::GrayFigures>,
    /// Scenarios with `user-event` faults: each event's spread and the traffic of events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_events: Option<crate::measure_events::EventFigures>,
    /// Network coordinates at the end: estimates against the model's round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<crate::measure_coords::CoordFigures>,
    /// Scenarios with `query` faults: each query's counts and latency at its origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<crate::measure_queries::QueryFigures>,
}
