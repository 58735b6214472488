//! The guard: decides what is served, from the truth, so that a partition or a fault of the
//! discovery layer never shrinks or empties the served view by failure.
//!
//! Owns the guard's configuration, its state machine (`normal`, `frozen`, `isolated`,
//! `warming`), the baseline, the held set, the members restored from a snapshot ("ghosts")
//! and the report every API answer carries. It only filters what is served; it must never
//! change what is gossiped, and its decisions are local. It never reads a clock: time comes in
//! with every call.
//!
//! The rules, in short (see DESIGN.md, "The served view and its guard"):
//! - the baseline is the set of peers served alive or suspect at the last stable point (no
//!   membership change for `stable_after`); graceful leaves leave it at once;
//! - `frozen` when more than `max(min_removals, max_removal_ratio x baseline)` baseline peers
//!   were declared down by failure within `window`; every failure in the window is then held;
//! - `isolated` when fewer than half of the baseline is reachable, or foca is idle;
//! - a service that had instances is never served empty because they failed (every state);
//! - thaw once the held members are back under half the trip limit for `stable_after`, or by
//!   the operator; held members then drain at `drain_per_sec`.

use crate::core::meta::MetaStore;
use crate::core::time::Time;
use crate::core::truth::{MemberView, ServedStatus, Truth, TruthState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
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

/// Guard configuration (see the README's config reference).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
/// An escalation is a transition with `from == to` and `report.escalated` set.
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
    /// Peers served alive or suspect at the last stable point (never ourselves). A hash
    /// set: it is retaken from the whole truth after every change once things settle, and
    /// in a cluster of thousands sorting the names each time cost more than everything else
    /// the node did in between.
    baseline: HashSet<Arc<str>, foldhash::fast::RandomState>,
    /// Last membership change (join, failure, leave, return).
    last_change: Time,
    /// When the baseline was last taken (`None`: never).
    baseline_at: Option<Time>,
    /// Failures by failure detection, oldest first (any member; pruned to `window`).
    failures: Vec<(Time, Arc<str>)>,
    /// Members SWIM calls down that are served as `held`.
    held: BTreeSet<Arc<str>>,
    /// The held members held because of the current frozen/isolated episode (the thaw rule
    /// counts these; a member held only as the last instance of a service does not block a
    /// thaw).
    episode_held: BTreeSet<Arc<str>>,
    /// Members restored from a snapshot that the truth does not know yet (served as held).
    ghosts: BTreeMap<Arc<str>, MemberView>,
    /// While warming: restored views of members the truth learned, for their metadata until
    /// it arrives.
    restored: BTreeMap<Arc<str>, MemberView>,
    /// Retake the baseline at the next tick (after an operator thaw).
    rebase: bool,
    /// Ghosts dropped since the node last asked (it emits their removal).
    dropped_ghosts: Vec<MemberView>,
    /// Members whose served status may have changed outside `on_change` of that member.
    dirty: BTreeSet<Arc<str>>,
    /// Start of the current frozen/isolated episode.
    episode_since: Option<Time>,
    escalated: bool,
    operator_frozen: bool,
    /// Since when the thaw condition has held without interruption.
    calm_since: Option<Time>,
    /// Release budget (token bucket refilled at `drain_per_sec`).
    drain_tokens: f64,
    last_tick: Time,
    /// While warming: since when foca has been active without interruption.
    active_since: Option<Time>,
}

impl Guard {
    pub fn new(cfg: GuardConfig, now: Time) -> Self {
        Guard {
            cfg,
            state: GuardState::Normal,
            since: now,
            reason: String::from("no failures"),
            transitions: Vec::new(),
            baseline: HashSet::default(),
            last_change: now,
            baseline_at: None,
            failures: Vec::new(),
            held: BTreeSet::new(),
            episode_held: BTreeSet::new(),
            ghosts: BTreeMap::new(),
            restored: BTreeMap::new(),
            rebase: false,
            dropped_ghosts: Vec::new(),
            dirty: BTreeSet::new(),
            episode_since: None,
            escalated: false,
            operator_frozen: false,
            calm_since: None,
            drain_tokens: 0.0,
            last_tick: now,
            active_since: None,
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    pub fn state(&self) -> GuardState {
        self.state
    }

    /// Names in the baseline, sorted.
    pub fn baseline(&self) -> impl Iterator<Item = &Arc<str>> {
        let mut names: Vec<&Arc<str>> = self.baseline.iter().collect();
        names.sort_unstable();
        names.into_iter()
    }

    fn off(&self) -> bool {
        self.cfg.mode == GuardMode::Off
    }

    fn enforce(&self) -> bool {
        self.cfg.mode == GuardMode::Enforce
    }

    fn releasing(&self) -> bool {
        self.state == GuardState::Normal || (self.escalated && self.cfg.release_after_max_freeze)
    }

    // ----- inputs ---------------------------------------------------------------------------

    /// A member's SWIM state changed (`after == None`: it was forgotten).
    pub fn on_change(
        &mut self,
        now: Time,
        ctx: &GuardCtx<'_>,
        name: &Arc<str>,
        before: Option<TruthState>,
        after: Option<TruthState>,
    ) {
        if self.off() || **name == *ctx.self_name {
            return;
        }
        let was_active = before.map(TruthState::is_active).unwrap_or(false);
        let is_active = after.map(TruthState::is_active).unwrap_or(false);
        if was_active != is_active || before.is_none() {
            self.last_change = now;
        }
        if let Some(g) = self.ghosts.remove(name) {
            // The truth knows it now: it decides (the restored metadata stays until warm).
            if self.state == GuardState::Warming {
                self.restored.insert(name.clone(), g);
            }
        }
        match after {
            Some(TruthState::Down) => {
                if was_active {
                    self.failures.push((now, name.clone()));
                }
                if !self.releasing() {
                    self.held.insert(name.clone());
                    self.episode_held.insert(name.clone());
                } else if self.protected(ctx, name, &mut None) {
                    self.held.insert(name.clone());
                }
            }
            Some(TruthState::Left) => {
                // Intent, not failure: out of the served view and of the baseline at once.
                self.unhold(name);
                self.baseline.remove(name);
            }
            Some(TruthState::Alive) | Some(TruthState::Suspect) => {
                self.unhold(name);
            }
            None => {
                self.unhold(name);
                self.baseline.remove(name);
            }
        }
        self.evaluate(now, ctx);
    }

    /// Periodic evaluation: baseline, thaw, escalation, warming, draining.
    pub fn tick(&mut self, now: Time, ctx: &GuardCtx<'_>) {
        let elapsed = now.since(self.last_tick);
        self.last_tick = now;
        if self.off() {
            return;
        }
        // Forget failures older than the window.
        let window = self.cfg.window;
        self.failures.retain(|(t, _)| now.since(*t) < window);

        // Baseline at the last stable point.
        if self.state == GuardState::Normal
            && (self.rebase
                || (now.since(self.last_change) >= self.cfg.stable_after
                    && self
                        .baseline_at
                        .map(|t| t < self.last_change)
                        .unwrap_or(true)))
        {
            self.rebase = false;
            // Refilled in place: the table keeps its size from one retake to the next.
            self.baseline.clear();
            self.baseline.extend(
                ctx.truth
                    .iter()
                    .filter(|(n, m)| m.state.is_active() && ***n != *ctx.self_name)
                    .map(|(n, _)| n.clone()),
            );
            self.baseline_at = Some(now);
        }

        // Escalation after `max_freeze`.
        if let Some(ep) = self.episode_since {
            if !self.escalated && now.since(ep) >= self.cfg.max_freeze {
                self.escalated = true;
                let st = self.state;
                self.reason = format!(
                    "{}; escalated: {} s longer than max_freeze ({} s){}",
                    self.reason,
                    now.since(ep).as_secs(),
                    self.cfg.max_freeze.as_secs(),
                    if self.cfg.release_after_max_freeze {
                        ", releasing held members"
                    } else {
                        ", still holding"
                    }
                );
                self.drain_tokens = 0.0;
                self.push_transition(st);
            }
        }

        self.evaluate(now, ctx);

        // Drain held members at a bounded rate.
        let rate = self.cfg.drain_per_sec as f64;
        self.drain_tokens = (self.drain_tokens + rate * elapsed.as_secs_f64()).min(rate.max(1.0));
        if self.releasing() && self.drain_tokens >= 1.0 {
            // Computed only if a candidate offers a service (it scans every member).
            let mut active = None;
            let mut candidates: Vec<Arc<str>> = Vec::new();
            for n in self.held.iter().chain(self.ghosts.keys()) {
                if !self.protected(ctx, n, &mut active) {
                    candidates.push(n.clone());
                }
            }
            for n in candidates {
                if self.drain_tokens < 1.0 {
                    break;
                }
                self.drain_tokens -= 1.0;
                if self.unhold(&n) {
                    self.dirty.insert(n);
                } else if let Some(mut g) = self.ghosts.remove(&n) {
                    g.status = ServedStatus::Down;
                    self.dropped_ghosts.push(g);
                }
            }
        }
    }

    /// Operator override: freeze now (no automatic thaw until `thaw`).
    pub fn freeze(&mut self, now: Time, who: &str) {
        if self.off() {
            return;
        }
        self.operator_frozen = true;
        if self.state == GuardState::Normal {
            self.enter(now, GuardState::Frozen, format!("frozen by operator {who}"));
        } else {
            self.reason = format!("{}; frozen by operator {who}", self.reason);
        }
    }

    /// Operator override: thaw now. The current truth becomes the baseline; held members drain
    /// at `drain_per_sec` (except the last instances of a service).
    pub fn thaw(&mut self, now: Time, who: &str) {
        if self.off() {
            return;
        }
        self.operator_frozen = false;
        self.failures.clear();
        // The operator says the truth is right: compare against it from now on.
        self.rebase = true;
        self.restored.clear();
        if self.state != GuardState::Normal {
            self.enter(now, GuardState::Normal, format!("thawed by operator {who}"));
        }
    }

    /// Operator removal of one member: stop holding it (served `down` at once).
    pub fn release(&mut self, name: &str) -> bool {
        let key: Option<Arc<str>> = self.held.get(name).cloned();
        if let Some(k) = key {
            self.unhold(&k);
            self.baseline.remove(&k);
            self.dirty.insert(k);
            return true;
        }
        if let Some(mut g) = self.ghosts.remove(name) {
            self.baseline.remove(name);
            g.status = ServedStatus::Down;
            self.dropped_ghosts.push(g);
            return true;
        }
        false
    }

    /// Starts serving a restored view: `members` (other than ourselves) are served as `held`
    /// until the truth knows them, the state is `warming` until synced.
    pub fn restore(
        &mut self,
        now: Time,
        members: Vec<MemberView>,
        baseline: Vec<String>,
        age: Duration,
    ) {
        if self.off() {
            return;
        }
        for mut m in members {
            if !m.status.is_serving() {
                continue;
            }
            m.status = ServedStatus::Held;
            m.truth = None;
            self.ghosts.insert(Arc::from(m.name.as_str()), m);
        }
        self.baseline = baseline.iter().map(|s| Arc::from(s.as_str())).collect();
        self.baseline_at = Some(now);
        self.last_change = now;
        self.active_since = None;
        let n = self.ghosts.len();
        self.enter(
            now,
            GuardState::Warming,
            format!(
                "restored {n} members from a snapshot taken {} s ago; syncing",
                age.as_secs()
            ),
        );
    }

    // ----- the rules ------------------------------------------------------------------------

    /// Services with at least one instance on a member SWIM calls alive or suspect.
    fn active_services(&self, ctx: &GuardCtx<'_>) -> HashSet<String> {
        let mut out = HashSet::new();
        for (name, m) in ctx.truth.iter() {
            if !m.state.is_active() {
                continue;
            }
            match ctx
                .meta
                .get(name)
                .filter(|r| r.generation <= m.id.generation())
            {
                Some(r) => out.extend(r.meta.services.keys().cloned()),
                None => {
                    if let Some(g) = self.restored.get(name) {
                        out.extend(g.services.iter().map(|s| s.name.clone()));
                    }
                }
            }
        }
        out
    }

    /// Whether `name` offers a service (not fail-closed) that would be served empty without it.
    /// `active` caches `active_services`, computed on first need.
    fn protected(
        &self,
        ctx: &GuardCtx<'_>,
        name: &str,
        active: &mut Option<HashSet<String>>,
    ) -> bool {
        let services: Vec<String> = match (ctx.truth.get(name), ctx.meta.get(name)) {
            (Some(m), Some(r)) if r.generation <= m.id.generation() => {
                r.meta.services.keys().cloned().collect()
            }
            _ => match self.ghosts.get(name).or_else(|| self.restored.get(name)) {
                Some(g) => g.services.iter().map(|s| s.name.clone()).collect(),
                None => Vec::new(),
            },
        };
        for s in services.iter().filter(|s| !self.cfg.fail_closed(s)) {
            let active = active.get_or_insert_with(|| self.active_services(ctx));
            if !active.contains(s) {
                return true;
            }
        }
        false
    }

    /// Baseline peers lost by failure within the window: (count, first failure time).
    fn lost(&self, ctx: &GuardCtx<'_>) -> (usize, Option<Time>) {
        let mut seen: BTreeSet<&Arc<str>> = BTreeSet::new();
        let mut first = None;
        for (t, n) in &self.failures {
            if !self.baseline.contains(n) || seen.contains(n) {
                continue;
            }
            let gone = match ctx.truth.get(n) {
                Some(m) => m.state == TruthState::Down,
                None => self.ghosts.contains_key(n),
            };
            if gone {
                seen.insert(n);
                first = Some(first.map(|f: Time| f.min(*t)).unwrap_or(*t));
            }
        }
        (seen.len(), first)
    }

    fn isolated(&self, ctx: &GuardCtx<'_>) -> Option<String> {
        let b = self.baseline.len();
        if b == 0 {
            return None;
        }
        if ctx.idle {
            return Some(format!(
                "no active peer (foca idle); {b} baseline peers unreachable"
            ));
        }
        if ctx.active_peers * 2 < b {
            return Some(format!(
                "reaching {} of {b} baseline peers, fewer than half",
                ctx.active_peers
            ));
        }
        None
    }

    fn evaluate(&mut self, now: Time, ctx: &GuardCtx<'_>) {
        if self.off() {
            return;
        }
        if self.state == GuardState::Warming {
            if ctx.idle {
                self.active_since = None;
            } else if self.active_since.is_none() {
                self.active_since = Some(now);
            }
            let synced = self
                .active_since
                .map(|t| now.since(t) >= self.cfg.warming_sync)
                .unwrap_or(false);
            let timed_out = now.since(self.since) >= self.cfg.warming_timeout;
            if !(synced || timed_out) {
                return;
            }
            self.end_warming(now, ctx, synced);
        }
        let b = self.baseline.len();
        let limit = self.cfg.limit(b);
        let (lost, first) = self.lost(ctx);
        let trip_reason = || {
            format!(
                "{lost} of {b} peers lost in {} s, limit {}%",
                first.map(|f| now.since(f).as_secs()).unwrap_or(0),
                (self.cfg.max_removal_ratio * 100.0).round()
            )
        };
        match self.state {
            GuardState::Normal | GuardState::Warming => {
                if let Some(why) = self.isolated(ctx) {
                    self.hold_window(ctx);
                    self.enter(now, GuardState::Isolated, why);
                } else if lost as f64 > limit {
                    let why = trip_reason();
                    self.hold_window(ctx);
                    self.enter(now, GuardState::Frozen, why);
                } else if self.state == GuardState::Warming {
                    self.enter(now, GuardState::Normal, "synced after restart".into());
                }
            }
            GuardState::Frozen => {
                if let Some(why) = self.isolated(ctx) {
                    self.enter(now, GuardState::Isolated, why);
                    return;
                }
                if self.operator_frozen {
                    return;
                }
                let held = self.episode_held.len() + self.ghosts.len();
                if (held as f64) < limit / 2.0 {
                    let since = *self.calm_since.get_or_insert(now);
                    if now.since(since) >= self.cfg.stable_after {
                        self.failures.clear();
                        self.enter(
                            now,
                            GuardState::Normal,
                            format!(
                                "thawed: {held} held, under half the limit for {} s",
                                self.cfg.stable_after.as_secs()
                            ),
                        );
                    }
                } else {
                    self.calm_since = None;
                }
            }
            GuardState::Isolated => {
                match self.isolated(ctx) {
                    // Still cut off: keep the reason current (how many peers it reaches now),
                    // without a new transition.
                    Some(why) => self.reason = why,
                    None => self.leave_isolation(now, ctx, b),
                }
            }
        }
    }

    fn leave_isolation(&mut self, now: Time, ctx: &GuardCtx<'_>, b: usize) {
        let why = format!(
            "reachable again ({} of {b} baseline peers); holding until the held members are back",
            ctx.active_peers
        );
        self.enter(now, GuardState::Frozen, why);
    }

    /// Warming ends: ghosts the truth knows are replaced by it; the others count as failures.
    fn end_warming(&mut self, now: Time, ctx: &GuardCtx<'_>, synced: bool) {
        // Members that got their metadata are served from the truth alone from now on.
        for n in std::mem::take(&mut self.restored).into_keys() {
            self.dirty.insert(n);
        }
        let names: Vec<Arc<str>> = self.ghosts.keys().cloned().collect();
        for n in names {
            if ctx.truth.get(&n).is_some() {
                self.ghosts.remove(&n);
                self.dirty.insert(n);
            } else {
                self.failures.push((now, n));
            }
        }
        if !synced {
            self.reason = format!(
                "{}; not synced after {} s",
                self.reason,
                self.cfg.warming_timeout.as_secs()
            );
        }
    }

    /// Holds every member that failed within the window and is still down.
    fn hold_window(&mut self, ctx: &GuardCtx<'_>) {
        for (_, n) in &self.failures {
            if ctx
                .truth
                .get(n)
                .map(|m| m.state == TruthState::Down)
                .unwrap_or(false)
            {
                self.episode_held.insert(n.clone());
                if self.held.insert(n.clone()) {
                    self.dirty.insert(n.clone());
                }
            }
        }
    }

    fn unhold(&mut self, name: &str) -> bool {
        self.episode_held.remove(name);
        self.held.remove(name)
    }

    fn enter(&mut self, now: Time, to: GuardState, reason: String) {
        let from = self.state;
        self.state = to;
        self.since = now;
        self.reason = reason;
        self.calm_since = None;
        match to {
            GuardState::Normal => {
                self.episode_held.clear();
                self.episode_since = None;
                self.escalated = false;
                self.operator_frozen = false;
                self.drain_tokens = 0.0;
                self.last_change = now;
            }
            GuardState::Frozen | GuardState::Isolated => {
                self.episode_since.get_or_insert(now);
            }
            GuardState::Warming => {}
        }
        if from != to {
            self.push_transition(from);
        }
    }

    fn push_transition(&mut self, from: GuardState) {
        let report = self.report();
        self.transitions.push(GuardTransition {
            from,
            to: self.state,
            report,
        });
    }

    // ----- outputs --------------------------------------------------------------------------

    /// What status to serve for a member SWIM believes is in `truth`.
    pub fn served(&self, name: &str, truth: TruthState) -> ServedStatus {
        match truth {
            TruthState::Alive => ServedStatus::Alive,
            TruthState::Suspect => ServedStatus::Suspect,
            TruthState::Down if self.enforce() && self.held.contains(name) => ServedStatus::Held,
            TruthState::Down => ServedStatus::Down,
            TruthState::Left => ServedStatus::Left,
        }
    }

    /// Whether an instance of `service` on a member served as `status` is served.
    pub fn serves_instance(&self, service: &str, status: ServedStatus) -> bool {
        status.is_serving() && !(status == ServedStatus::Held && self.cfg.fail_closed(service))
    }

    /// Restored members served as `held` although the truth does not know them (enforce mode
    /// only). The caller skips names the truth knows.
    pub fn ghosts(&self) -> impl Iterator<Item = (&Arc<str>, &MemberView)> {
        self.ghosts.iter().filter(|_| self.enforce())
    }

    /// While warming, a restored member's view (for metadata the truth has not received yet).
    pub fn restored(&self, name: &str) -> Option<&MemberView> {
        self.restored.get(name).filter(|_| self.enforce())
    }

    pub fn report(&self) -> GuardReport {
        let would_hold = self.held.len() + self.ghosts.len();
        GuardReport {
            mode: self.cfg.mode,
            state: self.state,
            since_ms: self.since.as_millis(),
            reason: self.reason.clone(),
            held: if self.enforce() { would_hold } else { 0 },
            would_hold,
            baseline: self.baseline.len(),
            escalated: self.escalated,
        }
    }

    pub fn take_transitions(&mut self) -> Vec<GuardTransition> {
        std::mem::take(&mut self.transitions)
    }

    /// Members whose served status may have changed without a truth change of their own.
    pub fn take_dirty(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// Restored members dropped from the served view (status `down`).
    pub fn take_dropped_ghosts(&mut self) -> Vec<MemberView> {
        std::mem::take(&mut self.dropped_ghosts)
    }
}
