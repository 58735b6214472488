//! The guard's vocabulary: its modes, states, configuration, and the report and transitions
//! it hands out. Plain data with validation; the decisions are in `guard.rs`. Must not hold
//! any state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

impl std::fmt::Display for GuardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-service override of the guard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceGuard {
    /// Never serve instances of this service as `held`: apps prefer no instance to a stale
    /// one (e.g. a leader endpoint).
    pub fail_closed: bool,
}

/// Guard configuration (see docs/configuration.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardConfig {
    pub mode: GuardMode,
    /// A baseline member down by failure this long (while the guard is `normal`) leaves the
    /// baseline; the thaw waits this long with the held members under half the limit.
    pub stable_after: Duration,
    /// Failures of baseline members are counted within this sliding window (suspicions and
    /// unreachable peers count while they last).
    pub window: Duration,
    /// Trip when baseline members suspect, unreachable or failed exceed
    /// `max(min_removals, max_removal_ratio x baseline)`.
    pub min_removals: usize,
    pub max_removal_ratio: f64,
    /// After this long frozen or isolated, the alert escalates.
    pub max_freeze: Duration,
    /// What to do after `max_freeze`: keep holding (false) or release held members (true).
    pub release_after_max_freeze: bool,
    /// Held members released per second after a thaw.
    pub drain_per_sec: u32,
    /// After a restart from a snapshot: foca must have been active this long to call the node
    /// synced and end `warming`.
    pub warming_sync: Duration,
    /// After a restart from a snapshot: end `warming` after this long even if not synced (the
    /// rules then decide between `normal`, `frozen` and `isolated`).
    pub warming_timeout: Duration,
    /// A snapshot older than this is not served (its peers are still used to rejoin).
    pub snapshot_max_age: Duration,
    /// Per-service overrides, by service name.
    pub services: BTreeMap<String, ServiceGuard>,
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
            warming_sync: Duration::from_secs(5),
            warming_timeout: Duration::from_secs(60),
            snapshot_max_age: Duration::from_secs(3600),
            services: BTreeMap::new(),
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
        if self.warming_timeout < self.warming_sync {
            return Err("guard.warming_timeout must not be shorter than guard.warming_sync".into());
        }
        Ok(())
    }

    /// Whether instances of `service` must never be served as held.
    pub fn fail_closed(&self, service: &str) -> bool {
        self.services
            .get(service)
            .map(|s| s.fail_closed)
            .unwrap_or(false)
    }

    /// The trip limit for a baseline of `n` peers: more failures than this trips.
    pub fn limit(&self, n: usize) -> f64 {
        (self.min_removals as f64).max(self.max_removal_ratio * n as f64)
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
    /// Members served as `held` (0 in shadow mode: see `would_hold`).
    pub held: usize,
    /// Members the rules hold (served as `held` in enforce mode; only reported in shadow).
    #[serde(default)]
    pub would_hold: usize,
    /// Size of the baseline the rules compare against.
    pub baseline: usize,
    /// Whether the alert escalated (frozen longer than `max_freeze`).
    pub escalated: bool,
}

/// A state change of the guard, to be logged, evented and sent to the alert hook.
/// An escalation is a transition with `from == to` and `report.escalated` set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardTransition {
    pub from: GuardState,
    pub to: GuardState,
    pub report: GuardReport,
}
