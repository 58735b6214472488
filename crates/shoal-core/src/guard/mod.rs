//! The guard: decides what is served, from the truth, so that a partition or a fault of the
//! discovery layer never shrinks or empties the served view by failure.
//!
//! Owns the state machine (`normal`, `frozen`, `isolated`, `warming`), the held set, the
//! members restored from a snapshot ("ghosts") and the report every API answer carries; the
//! baseline lives in `baseline.rs`, the node's own reach evidence in `reach.rs`. It only
//! filters what is served; it must never change what is gossiped, and its decisions are
//! local. It never reads a clock: time comes in with every call.
//!
//! The rules, in short (see docs/guard.md):
//! - the baseline holds every peer seen alive with its record, from the first converged view
//!   on; it loses members only by intent or after `stable_after` down while `normal`;
//! - `frozen` when baseline peers that are suspect (SWIM), unreachable (a reach check) or
//!   down by failure within `window` exceed `max(min_removals, max_removal_ratio x
//!   baseline)`: the trip comes with the suspicion, before the suspicion timeout removes
//!   anyone; every member then declared down is held;
//! - `isolated` when this node hears nothing for a few probe periods, when a reach check
//!   reaches fewer than half of the baseline, or when SWIM keeps fewer than half active;
//! - a service that had instances is never served empty because they failed (every state);
//! - thaw once the held, suspect and unreachable peers are back under half the trip limit for
//!   `stable_after`, or by the operator; held members then drain at `drain_per_sec`.

pub use crate::guard_config::{
    GuardConfig, GuardMode, GuardReport, GuardState, GuardTransition, ServiceGuard,
};

use crate::baseline::Baseline;
use crate::damping::{Damping, DampingView};
use crate::hash::{FixedHashSet, HashSeed};
use crate::meta_store::MetaStore;
use crate::reach::ReachView;
use crate::time::Time;
use crate::truth::{MemberView, ServedStatus, Truth, TruthState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The evaluation and the state machine's transitions (a child module: it reaches the fields).
mod eval;
/// Members that announced a restart: served `restarting` through their grace.
mod restart;

/// Everything the guard may look at when it decides.
pub struct GuardCtx<'a> {
    pub truth: &'a Truth,
    pub meta: &'a MetaStore,
    pub self_name: &'a str,
    /// Peers foca currently considers active (not counting ourselves).
    pub active_peers: usize,
    /// foca reports no active peer at all.
    pub idle: bool,
    /// This node's own evidence of whom it reaches (silence, the last reach check).
    pub reach: ReachView<'a>,
    /// Members removed on several observers' evidence (`core::gray`): never doubted.
    pub gray: Option<&'a crate::gray::Gray>,
    /// When this node last heard from each member, as evidence against a failure.
    pub heard: Option<Heard<'a>>,
}

/// This node's own hearing of members (an authentic datagram from the member's address), as
/// evidence against a failure declared elsewhere: a member heard from just before it was
/// declared down was alive then. A lone accuser that cannot hear it (a host losing most of
/// its packets, whose suspicions are never refuted to it) declares it down, and the down
/// notice reaches this node while the member's own datagrams still arrive.
#[derive(Clone, Copy, Debug)]
pub struct Heard<'a> {
    pub causes: &'a crate::cause::Causes,
    /// How recent counts: shorter than the time any crashed member takes to be declared
    /// down after its last datagram (a probe timeout and the shortest suspicion; the node
    /// passes the smaller of a probe period and half the shortest suspicion).
    pub within: Duration,
    /// How recent counts for a failure nothing here confirmed (`Causes::unconfirmed`: a
    /// lone accuser's down notice): the shortest suspicion. A crashed member is declared
    /// down a probe timeout later than that after its last datagram; a wrong doubt costs
    /// one reach check.
    pub within_unconfirmed: Duration,
}

impl Heard<'_> {
    /// `Heard::within` for these timings: the smaller of a probe period and half the
    /// shortest suspicion (`suspicion_mult` probe periods, times `suspicion_floor` with
    /// Lifeguard). With the shipped profiles a crashed member is declared down at least 2.5
    /// probe periods after its last datagram; healthy members of a small cluster are heard
    /// every few gossip intervals.
    pub fn within_for(t: &crate::profile::Timings) -> Duration {
        (Self::shortest_suspicion(t) / 2).min(t.probe_period)
    }

    /// `suspicion_mult` probe periods, times `suspicion_floor` with Lifeguard.
    pub fn shortest_suspicion(t: &crate::profile::Timings) -> Duration {
        let floor = if t.lifeguard {
            t.suspicion_floor.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Duration::try_from_secs_f64(t.probe_period.as_secs_f64() * t.suspicion_mult * floor)
            .unwrap_or(Duration::ZERO)
    }
}

#[derive(Debug)]
/// The served view's guard: the baseline, the trip rule, the state and the held members.
pub struct Guard {
    cfg: GuardConfig,
    state: GuardState,
    since: Time,
    reason: String,
    transitions: Vec<GuardTransition>,
    /// The peers the rules compare against (see `baseline.rs`).
    baseline: Baseline,
    /// Members seen alive whose record has not arrived yet: outside the baseline (their
    /// services are unknown, so nothing of theirs can be protected or held as a ghost), but
    /// counted with it by the trip rule, so that a split a second after forming, before
    /// every record is in, trips as the same split a minute later does.
    unrecorded: FixedHashSet<Arc<str>>,
    /// Failures by failure detection of baseline members, oldest first (pruned to `window`).
    failures: Vec<(Time, Arc<str>)>,
    /// Members SWIM calls down that are served as `held`.
    held: BTreeSet<Arc<str>>,
    /// The held members held because of the current frozen/isolated episode (the thaw rule
    /// counts these; a member held only as the last instance of a service does not block a
    /// thaw).
    episode_held: BTreeSet<Arc<str>>,
    /// Members SWIM declared down although this node's own evidence says otherwise (they
    /// answered its last reach check, or its own hearing was in doubt: it had just refuted
    /// a suspicion of itself), with when: held until a check that started after that, and
    /// reached most peers, misses them (or for `window` at most).
    doubted: BTreeMap<Arc<str>, Time>,
    /// Members restored from a snapshot that the truth does not know yet (served as held).
    ghosts: BTreeMap<Arc<str>, MemberView>,
    /// While warming: restored views of members the truth learned, for their metadata until
    /// it arrives.
    restored: BTreeMap<Arc<str>, MemberView>,
    /// Retake the baseline from the truth at the next tick (after an operator thaw).
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
    /// The seed of the guard's hash tables (the node's, see `hash::HashSeed`).
    hashes: HashSeed,
    /// Members down after announcing a restart, with the end of their grace (served
    /// `restarting` until then; see `guard/restart.rs`).
    restarting: BTreeMap<Arc<str>, Time>,
    /// Grace deadlines armed since the node last asked (it arms a named timer for each).
    restart_timers: Vec<(Time, Arc<str>)>,
    /// Flap damping: members served `damped` until their penalty decays (`damping.rs`).
    damping: Damping,
}

impl Guard {
    /// A guard in `normal`; `hashes` seeds its tables (the node's, see `hash::HashSeed`).
    pub fn new(cfg: GuardConfig, now: Time, hashes: HashSeed) -> Self {
        Guard {
            cfg: cfg.clone(),
            state: GuardState::Normal,
            since: now,
            reason: String::from("no failures"),
            transitions: Vec::new(),
            baseline: Baseline::with_seed(hashes),
            unrecorded: hashes.set(),
            failures: Vec::new(),
            held: BTreeSet::new(),
            episode_held: BTreeSet::new(),
            doubted: BTreeMap::new(),
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
            hashes,
            restarting: BTreeMap::new(),
            restart_timers: Vec::new(),
            damping: Damping::new(cfg.damping_config(), hashes),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// Its state.
    pub fn state(&self) -> GuardState {
        self.state
    }

    /// Names in the baseline, sorted.
    pub fn baseline(&self) -> impl Iterator<Item = &Arc<str>> {
        self.baseline.sorted().into_iter()
    }

    /// Names in the baseline, in no particular order.
    pub fn baseline_unordered(&self) -> impl Iterator<Item = &Arc<str>> {
        self.baseline.iter()
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
        if **name == *ctx.self_name || self.restart_change(now, ctx, name, after) {
            return;
        }
        if self.off() {
            return;
        }
        let was_active = before.map(TruthState::is_active).unwrap_or(false);
        if let Some(g) = self.ghosts.remove(name) {
            // The truth knows it now: it decides (the restored metadata stays until warm).
            if self.state == GuardState::Warming {
                self.restored.insert(name.clone(), g);
            }
        }
        match after {
            Some(TruthState::Down) => self.on_failure(now, ctx, name, was_active),
            Some(TruthState::Left) => {
                // Intent, not failure: out of the served view and of the baseline at once.
                self.unhold(name);
                self.baseline.remove(name);
                self.unrecorded.remove(name);
            }
            Some(TruthState::Alive) => {
                // Back from a failure that removed it from the view (not an intent, not held
                // by the guard): one flap, which costs it a damping penalty.
                if before == Some(TruthState::Down) && !self.held.contains(name) {
                    let generation = ctx.truth.get(name).map_or(0, |m| m.id.generation());
                    self.damping.on_flap(now, name, generation);
                } else {
                    self.damping.held_through(name);
                }
                self.unhold(name);
                if Self::has_record(ctx, name) {
                    self.baseline.admit(name);
                    self.unrecorded.remove(name);
                } else if !self.baseline.contains(name) {
                    self.unrecorded.insert(name.clone());
                }
            }
            Some(TruthState::Suspect) => {
                self.unhold(name);
            }
            None => {
                self.unhold(name);
                self.baseline.remove(name);
                self.unrecorded.remove(name);
                self.damping.forget(name);
            }
        }
        // A change can only trip the guard while it is `normal` (or warming); the thaw rule is
        // checked on the tick (a large partition changes thousands of members one by one).
        if matches!(self.state, GuardState::Normal | GuardState::Warming) {
            self.evaluate(now, ctx);
        }
    }

    /// `name` went down by failure (SWIM, or the end of a restart grace): counted against
    /// the limits and held when the rules say so.
    fn on_failure(&mut self, now: Time, ctx: &GuardCtx<'_>, name: &Arc<str>, was_active: bool) {
        if was_active && self.counted(name) {
            self.failures.push((now, name.clone()));
            self.baseline.note_down(now, name);
        }
        let gray = ctx.gray.is_some_and(|g| g.is_removed(name));
        if !self.releasing() && !gray {
            // (A member removed on gray evidence was removed with the guard normal, on
            // several observers' agreement: served again now, it would leave the view a
            // second time at the thaw; see `hold_window`.)
            self.held.insert(name.clone());
            self.episode_held.insert(name.clone());
        } else if !gray
            && (Self::reached(ctx, name)
                || Self::heard_lately(ctx, name, now)
                || ctx
                    .reach
                    .refuted_at
                    .is_some_and(|t| now.since(t) <= self.cfg.window))
        {
            // (Not a member several observers agree they cannot reach: that is no one
            // prober's luck.)
            // It answered our own ping since it was suspected, or its datagrams reached
            // us just now (SWIM's verdict came from other probers' luck, or from a lone
            // accuser that cannot hear it), or we just had to refute a suspicion of
            // ourselves (peers could not hear us, so our failed probes of this one
            // may be our own fault). Hold it until a fresh check confirms it gone.
            self.held.insert(name.clone());
            self.doubted.insert(name.clone(), now);
        } else if self.protected(ctx, name, &mut None) {
            self.held.insert(name.clone());
        }
        if was_active {
            // A failure: its return will be a flap, unless the guard still holds it
            // then (it never left the view).
            let generation = ctx.truth.get(name).map_or(0, |m| m.id.generation());
            self.damping.on_down(now, name, generation);
        }
    }

    /// `name`'s metadata record arrived or changed: a member seen alive with its record
    /// joins the baseline.
    pub fn on_record(&mut self, ctx: &GuardCtx<'_>, name: &Arc<str>) {
        if self.off() || **name == *ctx.self_name {
            return;
        }
        let alive = ctx
            .truth
            .get(name)
            .is_some_and(|m| m.state() == TruthState::Alive);
        if alive && Self::has_record(ctx, name) {
            self.baseline.admit(name);
            self.unrecorded.remove(name);
        }
    }

    /// Whether the trip rule counts `name`: in the baseline, or seen alive without its
    /// record yet.
    fn counted(&self, name: &str) -> bool {
        self.baseline.contains(name) || self.unrecorded.contains(name)
    }

    /// Peers the trip rule compares against: the baseline and the members seen alive whose
    /// record has not arrived.
    fn counted_len(&self) -> usize {
        self.baseline.len() + self.unrecorded.len()
    }

    /// A reach check finished (or silence began): decide with the new evidence.
    pub fn on_reach(&mut self, now: Time, ctx: &GuardCtx<'_>) {
        if !self.off() {
            self.evaluate(now, ctx);
        }
    }

    /// Whether nothing in the guard changes with time alone: `normal`, no failure in the
    /// window, nothing held, doubted, restored, restarting or damped, no episode. Then its
    /// tick has nothing to do and the node need not wake for it.
    pub fn calm(&self) -> bool {
        self.state == GuardState::Normal
            && self.failures.is_empty()
            && self.held.is_empty()
            && self.episode_held.is_empty()
            && self.doubted.is_empty()
            && self.ghosts.is_empty()
            && self.restored.is_empty()
            && self.restarting.is_empty()
            && !self.rebase
            && self.episode_since.is_none()
            && self.damping.suppressed_count() == 0
    }

    /// Whether the node should check its reach now: some baseline peers are suspect or
    /// failed together (or it hears nothing), so a check tells a partition, or being cut off,
    /// from one crash before the suspicion timeout decides; and while frozen or isolated,
    /// to see who is back.
    pub fn wants_reach_check(&self, ctx: &GuardCtx<'_>) -> bool {
        if self.off() || self.baseline.is_empty() {
            return false;
        }
        match self.state {
            GuardState::Warming => false,
            GuardState::Frozen | GuardState::Isolated => true,
            GuardState::Normal => {
                // A suspicion: check at once, so that the answer (a few probe timeouts) is in
                // before the suspicion timeout declares anyone down. Failures already
                // confirmed need no more checks.
                let suspect = ctx.truth.suspects().any(|n| self.baseline.contains(n));
                ctx.reach.silent_for.is_some() || suspect || !self.doubted.is_empty()
            }
        }
    }

    fn reached(ctx: &GuardCtx<'_>, name: &str) -> bool {
        ctx.reach.last.is_some_and(|r| r.reached.contains(name))
    }

    /// Whether this node heard from `name` within `Heard::within` before `now`.
    fn heard_lately(ctx: &GuardCtx<'_>, name: &str, now: Time) -> bool {
        let (Some(h), Some(m)) = (ctx.heard, ctx.truth.get(name)) else {
            return false;
        };
        let within = if h.causes.unconfirmed(name) {
            h.within_unconfirmed.max(h.within)
        } else {
            h.within
        };
        h.causes
            .last_heard(m.id.addr())
            .is_some_and(|t| now.since(t) <= within)
    }

    fn has_record(ctx: &GuardCtx<'_>, name: &str) -> bool {
        match (ctx.truth.get(name), ctx.meta.get(name)) {
            (Some(m), Some(r)) => r.generation >= m.id.generation(),
            _ => false,
        }
    }

    /// Periodic evaluation: baseline, thaw, escalation, warming, draining.
    pub fn tick(&mut self, now: Time, ctx: &GuardCtx<'_>) {
        let elapsed = now.since(self.last_tick);
        self.last_tick = now;
        if self.off() {
            return;
        }
        // Members whose damping penalty decayed below the reuse limit are served again.
        for n in self.damping.tick(now) {
            self.dirty.insert(n);
        }
        // Forget failures older than the window.
        let window = self.cfg.window;
        self.failures.retain(|(t, _)| now.since(*t) < window);

        if self.rebase {
            // The operator says the truth is right: compare against it from now on.
            self.rebase = false;
            self.baseline.reset(
                ctx.truth
                    .iter()
                    .filter(|(n, m)| m.state().is_active() && ***n != *ctx.self_name)
                    .map(|(n, _)| n.clone()),
            );
        }
        if self.state == GuardState::Normal {
            // Members down by failure for `stable_after` leave the baseline (and the
            // members without a record, likewise).
            self.baseline.age_out(now, self.cfg.stable_after, ctx.truth);
            let stable_after = self.cfg.stable_after;
            self.unrecorded.retain(|n| {
                ctx.truth
                    .get(n)
                    .is_some_and(|m| m.state().is_active() || now.since(m.since()) < stable_after)
            });
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
                if let Some(t) = self.doubted.get(n) {
                    // Released once a check that started after the doubt began, and
                    // reached most peers (our own hearing works), missed it; or after
                    // `window` at the latest.
                    let confirmed = ctx.reach.last.is_some_and(|r| {
                        r.started > *t && r.reached_fraction() >= 0.5 && r.unreached.contains(n)
                    });
                    if !confirmed && now.since(*t) < self.cfg.window {
                        continue;
                    }
                }
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
            m.cause = None;
            self.ghosts.insert(Arc::from(m.name.as_str()), m);
        }
        self.baseline
            .reset(baseline.iter().map(|s| Arc::from(s.as_str())));
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

    // ----- outputs --------------------------------------------------------------------------

    /// What status to serve for a member SWIM believes is in `truth`.
    pub fn served(&self, name: &str, truth: TruthState) -> ServedStatus {
        match truth {
            // Damped while back, and while down again: going down again changes nothing apps
            // see (nor is it held: holding would serve again a member that was not served).
            // The first failure is served `down` as usual; the return makes it damped.
            TruthState::Alive | TruthState::Suspect
                if self.enforce() && self.damping.damped(name) =>
            {
                ServedStatus::Damped
            }
            TruthState::Down if self.restarting.contains_key(name) => ServedStatus::Restarting,
            TruthState::Down if self.enforce() && self.damping.damped(name) => ServedStatus::Damped,
            TruthState::Alive => ServedStatus::Alive,
            TruthState::Suspect => ServedStatus::Suspect,
            TruthState::Down if self.enforce() && self.held.contains(name) => ServedStatus::Held,
            TruthState::Down => ServedStatus::Down,
            TruthState::Left => ServedStatus::Left,
        }
    }

    /// Why the guard holds `name` (or, in shadow mode, would), in words; `None` when it
    /// does not.
    pub fn hold_reason(&self, name: &str) -> Option<String> {
        if !self.held.contains(name) {
            return None;
        }
        Some(if self.episode_held.contains(name) {
            format!("held while {} ({})", self.state.as_str(), self.reason)
        } else if self.doubted.contains_key(name) {
            "held: this node's own evidence doubts the failure (it answered our reach check, \
             or we had just refuted a suspicion of ourselves) until a reach check confirms it"
                .into()
        } else {
            "held: the last instance of a service (never served empty by failure)".into()
        })
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

    /// A restored member the truth does not know yet (any mode).
    pub fn ghost(&self, name: &str) -> Option<&MemberView> {
        self.ghosts.get(name)
    }

    /// While warming, a restored member's view (for metadata the truth has not received yet).
    pub fn restored(&self, name: &str) -> Option<&MemberView> {
        self.restored.get(name).filter(|_| self.enforce())
    }

    /// A member already recorded down (removed on gray evidence) was declared down by SWIM
    /// too: its return will be a flap counted from now.
    pub fn failed_again(&mut self, now: Time, name: &Arc<str>, generation: u64) {
        if !self.off() {
            self.damping.on_down(now, name, generation);
        }
    }

    /// Members served `damped` (enforce mode), in no particular order.
    pub fn damped(&self) -> impl Iterator<Item = &Arc<str>> {
        self.damping.suppressed().filter(|_| self.enforce())
    }

    /// A member's damping penalty, if it has one (any mode but off).
    pub fn damping(&self, now: Time, name: &str) -> Option<DampingView> {
        self.damping.view(now, name)
    }

    /// Its report (state, since when, why, held count).
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

    pub(crate) fn take_transitions(&mut self) -> Vec<GuardTransition> {
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
