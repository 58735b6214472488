//! The guard's vocabulary: its modes, states, configuration, and the report and transitions
//! it hands out. Plain data with validation; the decisions are in `guard/`. Must not hold
//! any state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// What the guard does.
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
/// The guard's state.
pub enum GuardState {
    #[default]
    /// Serving the truth.
    Normal,
    /// Tripped: members SWIM calls down are held.
    Frozen,
    /// This node is most likely the one cut off: everything is held.
    Isolated,
    /// Serving a restored snapshot until synced with the cluster.
    Warming,
}

impl GuardState {
    /// The state as written in JSON and logs.
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
    /// Enforce, shadow or off.
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
    /// Share of the baseline that may fail within the window before the guard trips.
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
    /// Flap damping (`core::damping`): a member that keeps failing and coming back is served
    /// `damped` until its penalty decays.
    pub damping: bool,
    /// The damping penalty halves in this long.
    pub damping_half_life: Duration,
    /// Served `damped` once the penalty reaches this (each failure adds 1000).
    pub damping_suppress: f64,
    /// Served again once the penalty decayed below this.
    pub damping_reuse: f64,
    /// The penalty never grows past this.
    pub damping_max_penalty: f64,
    /// Back this long without failing, with a penalty under the suppress limit: served again.
    pub damping_probation: Duration,
    /// Gray-failure removal (`core::gray`): a member most of several observers cannot reach
    /// is served `down` although it refutes every suspicion.
    pub gray: bool,
    /// Probe outcomes (our own and the observers' reports) count within this window.
    pub gray_window: Duration,
    /// An observer counts against a member when at least this share of its probes of it in
    /// the window failed.
    pub gray_failure_ratio: f64,
    /// Fewest observers that must agree (more in a larger cluster: a third of the members,
    /// up to `gray::MAX_OBSERVERS_NEEDED`).
    pub gray_observers: usize,
    /// A removed member returns once fewer than half the needed observers have reported it
    /// unreachable for this long.
    pub gray_stable_after: Duration,
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
            damping: true,
            damping_half_life: Duration::from_secs(60),
            damping_suppress: 600.0,
            damping_reuse: 300.0,
            damping_max_penalty: 3000.0,
            damping_probation: Duration::from_secs(30),
            gray: true,
            gray_window: Duration::from_secs(30),
            gray_failure_ratio: 0.5,
            gray_observers: 3,
            gray_stable_after: Duration::from_secs(30),
        }
    }
}

impl GuardConfig {
    /// Checks the bounds; the error says which one is wrong.
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
        self.damping_config().validate()?;
        if self.gray_window.is_zero() || self.gray_stable_after.is_zero() {
            return Err(
                "guard.gray_window and guard.gray_stable_after must be greater than zero".into(),
            );
        }
        if !(self.gray_failure_ratio > 0.0 && self.gray_failure_ratio <= 1.0) {
            return Err("guard.gray_failure_ratio must be in (0, 1]".into());
        }
        if self.gray_observers < 2 {
            return Err(
                "guard.gray_observers must be at least 2 (one observer is no agreement)".into(),
            );
        }
        Ok(())
    }

    /// The damping settings.
    pub fn damping_config(&self) -> crate::damping::DampingConfig {
        crate::damping::DampingConfig {
            enabled: self.damping,
            half_life: self.damping_half_life,
            suppress: self.damping_suppress,
            reuse: self.damping_reuse,
            max_penalty: self.damping_max_penalty,
            probation: self.damping_probation,
        }
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
    /// The guard's mode.
    pub mode: GuardMode,
    /// The guard's state.
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
    /// The state before.
    pub from: GuardState,
    /// The state after.
    pub to: GuardState,
    /// The report at the transition.
    pub report: GuardReport,
}
