//! The simulation harness: many copies of the core in virtual time under a network model.
//!
//! `scenario` reads `simulations/*.toml`, `world` runs one scenario in one guard mode with a
//! discrete-event loop over `queue` (same seed, same result, byte for byte), `net` decides
//! each datagram's fate, `measure` records what happened and `result` is the JSON result it shapes,
//! `growth` runs one scenario at several sizes, `model` fits a mean-field model to such a sweep, `health` the services' check model, `report` renders self-contained HTML pages (its growth page in `report_growth.rs`; scenario checks in `scenario_validate.rs`)
//! with inline SVG plots. This module drives the same `core::Node` the agent runs; it must
//! not reimplement or patch any of its decisions, nor decide what the agent does not: a node's
//! snapshots are the ones the core hands out on its schedule, a restart uses the agent's
//! seeds, and every figure is read through the served view (what the API shows).

#![forbid(unsafe_code)]

pub mod bursty;
pub mod growth;
pub mod health;
pub mod measure;
pub mod measure_coords;
pub mod measure_events;
pub mod measure_gray;
pub mod measure_queries;
pub mod model;
pub mod net;
pub mod quantiles;
pub mod queue;
pub mod report;
pub mod result;
pub mod scenario;
pub mod svg;
pub mod world;

pub use measure::RunResult;
pub use scenario::{Scenario, ScenarioError};
pub use world::{Progress, SimError, World};

use shoal_core::GuardMode;

/// Runs `sc` once with the guard in `mode`.
pub fn run(
    sc: &Scenario,
    mode: GuardMode,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunResult, SimError> {
    World::new(sc, mode).run(progress)
}

/// The result as JSON without the wall-clock figures: identical for identical seeds.
pub fn deterministic_json(r: &RunResult) -> String {
    let mut r = r.clone();
    r.perf = Default::default();
    serde_json::to_string(&r).unwrap_or_default()
}
