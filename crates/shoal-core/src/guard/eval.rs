//! The guard's evaluation: which members the rules protect, what counts as lost, whether
//! this node is isolated, the state machine's transitions (enter, hold, unhold, warming) and
//! their records.
//!
//! A child module of `guard` (it reaches the guard's fields) so that guard/mod.rs stays about the
//! guard's inputs and what it serves. Must stay sans-IO and deterministic.

use super::{Guard, GuardCtx, GuardState, GuardTransition};
use crate::hash::FixedHashSet;
use crate::time::Time;
use crate::truth::TruthState;
use std::sync::Arc;

/// Baseline peers the rules count as lost, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Lost {
    /// Distinct peers (or the sampled estimate, when larger).
    count: usize,
    suspect: usize,
    unreachable: usize,
    failed: usize,
    /// The estimate of a sampled reach check.
    estimate: usize,
    /// When the earliest of them was lost.
    first: Option<Time>,
}

impl Guard {
    /// Services with at least one instance on a member SWIM calls alive or suspect.
    pub(super) fn active_services(&self, ctx: &GuardCtx<'_>) -> FixedHashSet<String> {
        let mut out = self.hashes.set();
        for (name, m) in ctx.truth.iter() {
            if !m.state().is_active() {
                continue;
            }
            match ctx
                .meta
                .get(name)
                .filter(|r| r.generation <= m.id.generation())
            {
                Some(r) => out.extend(r.meta.services.values().map(|s| s.name.clone())),
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
    pub(super) fn protected(
        &self,
        ctx: &GuardCtx<'_>,
        name: &str,
        active: &mut Option<FixedHashSet<String>>,
    ) -> bool {
        let services: Vec<String> = match (ctx.truth.get(name), ctx.meta.get(name)) {
            (Some(m), Some(r)) if r.generation <= m.id.generation() => {
                // By service name (the map is keyed by instance id).
                r.meta.services.values().map(|s| s.name.clone()).collect()
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

    /// Baseline peers lost: suspected by SWIM, unreachable in the last reach check, or down
    /// by failure within the window (and still down). Counted once each; a sampled check
    /// counts its estimate for the whole baseline when that is larger.
    pub(super) fn lost(&self, ctx: &GuardCtx<'_>) -> Lost {
        let unreached = ctx.reach.last.map(|r| r.unreached.len()).unwrap_or(0);
        let suspects = ctx.truth.suspects().count();
        let mut out = Lost::default();
        if suspects + self.failures.len() + unreached == 0 {
            return out;
        }
        let mut seen: FixedHashSet<&Arc<str>> = self.hashes.set();
        let mut first: Option<Time> = None;
        let note = |t: Time, first: &mut Option<Time>| {
            *first = Some(first.map(|f| f.min(t)).unwrap_or(t));
        };
        for n in ctx.truth.suspects() {
            // A member that announced a restart is expected to go quiet: not a loss.
            if self.counted(n) && Self::announced_restart(ctx, n).is_none() && seen.insert(n) {
                out.suspect += 1;
                if let Some(m) = ctx.truth.get(n) {
                    note(m.since(), &mut first);
                }
            }
        }
        for (t, n) in &self.failures {
            // A failure that aged out of the baseline no longer counts (nor does the
            // baseline it would be compared against).
            if !self.counted(n) {
                continue;
            }
            let gone = match ctx.truth.get(n) {
                Some(m) => m.state() == TruthState::Down,
                None => self.ghosts.contains_key(n),
            };
            if gone && seen.insert(n) {
                out.failed += 1;
                note(*t, &mut first);
            }
        }
        if let Some(r) = ctx.reach.last {
            for n in &r.unreached {
                let left = ctx
                    .truth
                    .get(n)
                    .is_some_and(|m| m.state() == TruthState::Left);
                let restarting = Self::announced_restart(ctx, n).is_some();
                if self.counted(n) && !left && !restarting && seen.insert(n) {
                    out.unreachable += 1;
                    note(r.at, &mut first);
                }
            }
            if r.targets < r.population {
                // A sampled check: scale what it found in the baseline to the whole of it.
                let found = r
                    .unreached
                    .iter()
                    .filter(|n| self.baseline.contains(n))
                    .count();
                out.estimate = (found * r.population).div_ceil(r.targets.max(1));
            }
        }
        out.count = seen.len().max(out.estimate);
        out.first = first;
        out
    }

    pub(super) fn isolated(&self, ctx: &GuardCtx<'_>) -> Option<String> {
        let b = self.baseline.len();
        if b == 0 {
            return None;
        }
        // (foca reports a member up before it reports itself active: not idle then.)
        if ctx.idle && ctx.active_peers == 0 {
            return Some(format!(
                "no active peer (foca idle); {b} baseline peers unreachable"
            ));
        }
        if let Some(q) = ctx.reach.silent_for {
            return Some(format!(
                "nothing received from any peer for {:.1} s (a connected node hears one every \
                 probe period); {b} baseline peers unreachable",
                q.as_secs_f64()
            ));
        }
        if let Some(r) = ctx.reach.last {
            if r.targets > 0 && r.reached_fraction() < 0.5 {
                return Some(format!(
                    "a reach check answered by {} of {} baseline peers{}, fewer than half",
                    r.reached(),
                    r.targets + r.skipped,
                    if r.targets < r.population {
                        format!(" (a sample of {b})")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if ctx.active_peers * 2 < b {
            return Some(format!(
                "reaching {} of {b} baseline peers, fewer than half",
                ctx.active_peers
            ));
        }
        None
    }

    pub(super) fn evaluate(&mut self, now: Time, ctx: &GuardCtx<'_>) {
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
        // The limit is on the reaching side: removal stops once the peers lost *reach*
        // `max_removal_ratio` of the cluster counting this node (4 of 10 trips; 3 are
        // removed), and the peers seen alive whose record is still on its way count too.
        let counted = self.counted_len();
        let limit = self.cfg.limit(counted);
        let lost = self.lost(ctx);
        let trip_reason = || {
            format!(
                "{} of {counted} baseline peers lost in {} s ({} suspect, {} unreachable, {} \
                 failed), limit {}%",
                lost.count,
                lost.first.map(|f| now.since(f).as_secs()).unwrap_or(0),
                lost.suspect,
                lost.unreachable,
                lost.failed,
                (self.cfg.max_removal_ratio * 100.0).round()
            )
        };
        match self.state {
            GuardState::Normal | GuardState::Warming => {
                if let Some(why) = self.isolated(ctx) {
                    self.hold_window(ctx);
                    self.enter(now, GuardState::Isolated, why);
                } else if lost.count as f64 > limit {
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
                // Held members, plus peers still suspect or unreachable (not yet held).
                let held = self.episode_held.len() + self.ghosts.len();
                let missing = held + lost.suspect + lost.unreachable;
                if (missing as f64) < limit / 2.0 {
                    let since = *self.calm_since.get_or_insert(now);
                    if now.since(since) >= self.cfg.stable_after {
                        self.failures.clear();
                        self.enter(
                            now,
                            GuardState::Normal,
                            format!(
                                "thawed: {missing} held, suspect or unreachable, under half the \
                                 limit for {} s",
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

    pub(super) fn leave_isolation(&mut self, now: Time, ctx: &GuardCtx<'_>, b: usize) {
        let why = format!(
            "reachable again ({} of {b} baseline peers); holding until the held members are back",
            ctx.active_peers
        );
        self.enter(now, GuardState::Frozen, why);
    }

    /// Warming ends: ghosts the truth knows are replaced by it; the others count as failures.
    pub(super) fn end_warming(&mut self, now: Time, ctx: &GuardCtx<'_>, synced: bool) {
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

    /// Holds every member that failed within the window and is still down, those removed on
    /// gray evidence too: a cut makes the far side look gray to several observers at once
    /// just before the guard trips (`tests/guard/never_down.rs`, split under churn, served a
    /// live member down when they were left out). A gray host removed within the window is
    /// served again until the thaw, and leaves the view a second time then.
    pub(super) fn hold_window(&mut self, ctx: &GuardCtx<'_>) {
        for (_, n) in &self.failures {
            if ctx
                .truth
                .get(n)
                .map(|m| m.state() == TruthState::Down)
                .unwrap_or(false)
            {
                self.episode_held.insert(n.clone());
                if self.held.insert(n.clone()) {
                    self.dirty.insert(n.clone());
                }
            }
        }
    }

    pub(super) fn unhold(&mut self, name: &str) -> bool {
        self.episode_held.remove(name);
        self.doubted.remove(name);
        self.held.remove(name)
    }

    pub(super) fn enter(&mut self, now: Time, to: GuardState, reason: String) {
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

    pub(super) fn push_transition(&mut self, from: GuardState) {
        let report = self.report();
        self.transitions.push(GuardTransition {
            from,
            to: self.state,
            report,
        });
    }
}
