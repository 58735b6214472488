//! The guard: decides what is served, from the truth, so that a partition or a fault of the
//! discovery layer never shrinks or empties the served view by failure.
//!
//! Owns the guard's configuration, its state machine (`normal`, `frozen`, `isolated`,
//! `warming`), the held set and the report every API answer carries. It only filters what is
//! served; it must never change what is gossiped, and its decisions are local.
//!
//! NOTE: this first version serves the truth unchanged (state always `normal`); the state
//! machine lands with the guard issue behind the same interface.

use crate::core::meta::MetaStore;
use crate::core::time::Time;
use crate::core::truth::{ServedStatus, Truth, TruthState};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GuardMode {
    /// Hold members the rules protect (default).
    #[default]
    Enforce,
    /// Compute and report what the guard would do, but serve the truth.
    Shadow,
    /// No guard: serve the truth.
    Off,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardState {
    #[default]
    Normal,
    Frozen,
    Isolated,
    Warming,
}

impl GuardState {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardState::Normal => "normal",
            GuardState::Frozen => "frozen",
            GuardState::Isolated => "isolated",
            GuardState::Warming => "warming",
        }
    }
}

/// Guard configuration (see the README's config reference).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardConfig {
    pub mode: GuardMode,
    /// No membership change for this long makes the current served view the baseline.
    pub stable_after: Duration,
    /// Failures of baseline members are counted within this sliding window.
    pub window: Duration,
    /// Trip when failures exceed `max(min_removals, max_removal_ratio x baseline)`.
    pub min_removals: usize,
    pub max_removal_ratio: f64,
    /// After this long frozen or isolated, the alert escalates.
    pub max_freeze: Duration,
    /// What to do after `max_freeze`: keep holding (false) or release held members (true).
    pub release_after_max_freeze: bool,
    /// Held members released per second after a thaw.
    pub drain_per_sec: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            mode: GuardMode::Enforce,
            stable_after: Duration::from_secs(30),
            window: Duration::from_secs(60),
            min_removals: 2,
            max_removal_ratio: 0.4,
            max_freeze: Duration::from_secs(3600),
            release_after_max_freeze: false,
            drain_per_sec: 5,
        }
    }
}

impl GuardConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.max_removal_ratio > 0.0 && self.max_removal_ratio <= 1.0) {
            return Err("guard.max_removal_ratio must be in (0, 1]".into());
        }
        if self.window.is_zero() {
            return Err("guard.window must be greater than zero".into());
        }
        if self.stable_after.is_zero() {
            return Err("guard.stable_after must be greater than zero".into());
        }
        if self.drain_per_sec == 0 {
            return Err("guard.drain_per_sec must be at least 1".into());
        }
        Ok(())
    }
}

/// What every API answer says about the guard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardReport {
    pub mode: GuardMode,
    pub state: GuardState,
    /// Driver time (ms) the state was entered.
    pub since_ms: u64,
    /// Why, in words ("6 of 10 peers lost in 9 s, limit 40%").
    pub reason: String,
    /// Members served as `held`.
    pub held: usize,
    /// Size of the baseline the rules compare against.
    pub baseline: usize,
    /// Whether the alert escalated (frozen longer than `max_freeze`).
    pub escalated: bool,
}

/// Everything the guard may look at when it decides.
pub struct GuardCtx<'a> {
    pub truth: &'a Truth,
    pub meta: &'a MetaStore,
    pub self_name: &'a str,
    /// Peers foca currently considers active (not counting ourselves).
    pub active_peers: usize,
    /// foca reports no active peer at all.
    pub idle: bool,
}

/// A state change of the guard, to be logged, evented and sent to the alert hook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardTransition {
    pub from: GuardState,
    pub to: GuardState,
    pub report: GuardReport,
}

#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    state: GuardState,
    since: Time,
    reason: String,
    transitions: Vec<GuardTransition>,
}

impl Guard {
    pub fn new(cfg: GuardConfig, now: Time) -> Self {
        Guard {
            cfg,
            state: GuardState::Normal,
            since: now,
            reason: String::from("no failures"),
            transitions: Vec::new(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// A member's SWIM state changed (`after == None`: it was forgotten).
    pub fn on_change(
        &mut self,
        _now: Time,
        _ctx: &GuardCtx<'_>,
        _name: &Arc<str>,
        _before: Option<TruthState>,
        _after: Option<TruthState>,
    ) {
    }

    /// Periodic evaluation.
    pub fn tick(&mut self, _now: Time, _ctx: &GuardCtx<'_>) {}

    /// What status to serve for a member SWIM believes is in `truth`.
    pub fn served(&self, _name: &str, truth: TruthState) -> ServedStatus {
        match truth {
            TruthState::Alive => ServedStatus::Alive,
            TruthState::Suspect => ServedStatus::Suspect,
            TruthState::Down => ServedStatus::Down,
            TruthState::Left => ServedStatus::Left,
        }
    }

    /// Operator override: freeze now.
    pub fn freeze(&mut self, _now: Time, _who: &str) {}

    /// Operator override: thaw now.
    pub fn thaw(&mut self, _now: Time, _who: &str) {}

    pub fn report(&self) -> GuardReport {
        GuardReport {
            mode: self.cfg.mode,
            state: self.state,
            since_ms: self.since.as_millis(),
            reason: self.reason.clone(),
            held: 0,
            baseline: 0,
            escalated: false,
        }
    }

    pub fn take_transitions(&mut self) -> Vec<GuardTransition> {
        std::mem::take(&mut self.transitions)
    }
}
