//! The guard's handling of a restart intent (`core::restart`): a member that announced "expect
//! me back within G" and then went down is served `restarting` (routable) for G, counts
//! against no limit meanwhile, and is a failure like any other (counted, held by the usual
//! rules) if it is not back when G has run out. Each grace is a named node timer
//! (`NodeTimer::RestartGrace`), not polling.
//!
//! A child module of `guard` (it reaches the guard's fields). Must not change what is
//! gossiped, and reads no clock.

use super::{Guard, GuardCtx, GuardState};
use crate::time::Time;
use crate::truth::TruthState;
use std::sync::Arc;
use std::time::Duration;

impl Guard {
    /// The grace `name`'s record announces for its current life (none when it leaves).
    pub(super) fn announced_restart(ctx: &GuardCtx<'_>, name: &str) -> Option<Duration> {
        let m = ctx.truth.get(name)?;
        let r = ctx.meta.get(name)?;
        if r.leaving || r.generation < m.id.generation() {
            return None;
        }
        r.restart().map(|i| i.grace())
    }

    /// Keeps `restarting` in step with a truth change of `name`. Returns true when `name`
    /// just went down with a restart announced: intent, not failure (nothing more to do).
    pub(super) fn restart_change(
        &mut self,
        now: Time,
        ctx: &GuardCtx<'_>,
        name: &Arc<str>,
        after: Option<TruthState>,
    ) -> bool {
        if after != Some(TruthState::Down) {
            // Back (a new life), left, suspected again or forgotten: the grace is over.
            self.restarting.remove(name);
            return false;
        }
        if self.restarting.contains_key(name) {
            return true;
        }
        let Some(grace) = Self::announced_restart(ctx, name) else {
            return false;
        };
        if let Some(g) = self.ghosts.remove(name) {
            // The truth knows it now (as in `on_change`): its restored metadata stays until warm.
            if self.state == GuardState::Warming {
                self.restored.insert(name.clone(), g);
            }
        }
        let until = now.plus(grace);
        self.restarting.insert(name.clone(), until);
        self.restart_timers.push((until, name.clone()));
        self.unhold(name);
        true
    }

    /// The grace of `name` may have run out (its timer fired): if it is still down, it is
    /// now a failure, counted and held by the usual rules. Returns whether it was.
    pub fn restart_expired(&mut self, now: Time, ctx: &GuardCtx<'_>, name: &Arc<str>) -> bool {
        match self.restarting.get(name) {
            Some(until) if *until <= now => {}
            _ => return false,
        }
        self.restarting.remove(name);
        self.dirty.insert(name.clone());
        let down = ctx
            .truth
            .get(name)
            .is_some_and(|m| m.state() == TruthState::Down);
        if down && !self.off() {
            self.on_failure(now, ctx, name, true);
            if matches!(self.state, GuardState::Normal | GuardState::Warming) {
                self.evaluate(now, ctx);
            }
        }
        down
    }

    /// Grace deadlines armed since the last call (the node arms a timer for each).
    pub fn take_restart_timers(&mut self) -> Vec<(Time, Arc<str>)> {
        std::mem::take(&mut self.restart_timers)
    }

    /// Members served `restarting`, with the end of their grace.
    pub fn restarting(&self) -> impl Iterator<Item = (&Arc<str>, Time)> {
        self.restarting.iter().map(|(n, t)| (n, *t))
    }
}
