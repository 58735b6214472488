//! Flap damping, in the manner of BGP route-flap damping (RFC 2439): a member that goes down
//! by failure collects a penalty that decays exponentially; once the penalty reaches the
//! suppress limit the member is served `damped` (known, not routable) even when SWIM says it
//! is alive. The penalty is charged when the member comes back (a flap is a failure and a
//! return): its first failure is served `down` as any, its return `damped`. It is served again once the penalty has decayed below the reuse limit, or once it
//! has been back for `probation` without failing with its penalty under the suppress limit.
//!
//! Owns the per-member penalties and which members are suppressed. It is told of flaps
//! (the guard calls `on_flap` when a member served down by failure comes back, `on_down`
//! when it goes down again) and of time (`tick`); it never reads a clock and decides nothing else: the guard asks `damped`
//! when it computes what to serve. Graceful leaves, restarts with intent and suspicions that
//! were refuted are not failures and cost nothing. See docs/gray-failures.md.

use crate::hash::{FixedHashMap, HashSeed};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The penalty one failure adds (the unit the limits are expressed in).
pub(crate) const PENALTY_PER_FAILURE: f64 = 1000.0;

/// The penalty of a failure the member came back from as a new life (it restarted: a crash
/// and a reboot), half a failure's: under the default suppress limit, so one crash and reboot
/// costs nothing visible, while a second within about two minutes (a crash loop) is damped.
/// A member that comes back in the same life (its network came back: it only renewed its
/// identity) pays the full penalty, so a host whose ingress comes and goes is damped on its
/// first return.
pub(crate) const PENALTY_PER_RESTART: f64 = 500.0;

/// How far a generation may advance within one life: it is the start time in ms, and a
/// renewal (the member learned it was declared down, and rejoins) adds one. A process is
/// declared down at most once per few seconds, so a jump past this is a restart.
const RENEWALS_PER_LIFE: u64 = 1000;

/// A penalty that decayed below this is forgotten (the entry is dropped).
const FORGET_BELOW: f64 = 10.0;

/// Damping settings (part of `GuardConfig`; see docs/configuration.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DampingConfig {
    pub enabled: bool,
    /// The penalty halves in this long.
    pub half_life: Duration,
    /// Served `damped` once the penalty reaches this (each failure adds 1000).
    pub suppress: f64,
    /// Served again once the penalty has decayed below this.
    pub reuse: f64,
    /// The penalty never grows past this (bounds how long a member stays damped after its
    /// last failure: `half_life x log2(max_penalty / reuse)`).
    pub max_penalty: f64,
    /// Back this long without failing (and its penalty under `suppress`): served again.
    pub probation: Duration,
}

impl Default for DampingConfig {
    fn default() -> Self {
        DampingConfig {
            enabled: true,
            half_life: Duration::from_secs(60),
            suppress: 600.0,
            reuse: 300.0,
            max_penalty: 3000.0,
            probation: Duration::from_secs(30),
        }
    }
}

impl DampingConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.half_life.is_zero() {
            return Err("guard.damping_half_life must be greater than zero".into());
        }
        if !(self.reuse > 0.0 && self.reuse < self.suppress) {
            return Err(
                "guard.damping_reuse must be above 0 and below guard.damping_suppress".into(),
            );
        }
        if self.max_penalty < self.suppress {
            return Err(
                "guard.damping_max_penalty must not be below guard.damping_suppress".into(),
            );
        }
        Ok(())
    }

    /// How long a penalty of `p` takes to decay to `to`.
    fn time_to(&self, p: f64, to: f64) -> Duration {
        if p <= to {
            return Duration::ZERO;
        }
        self.half_life.mul_f64((p / to).log2())
    }
}

/// What the API shows of a member's damping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DampingView {
    /// The penalty now (1000 per failure, decaying).
    pub penalty: u32,
    /// Driver time (ms) the member was suppressed (`None`: not damped).
    pub suppressed_since: Option<u64>,
    /// Driver time (ms) it will be served again if it does not fail meanwhile.
    pub reuse_at: Option<u64>,
}

#[derive(Clone, Debug)]
struct Flap {
    /// The penalty at `at`.
    penalty: f64,
    at: Time,
    suppressed_since: Option<Time>,
    /// Since when SWIM calls it alive again (`None`: down).
    up_since: Option<Time>,
}

impl Flap {
    fn now(&self, cfg: &DampingConfig, now: Time) -> f64 {
        let dt = now.since(self.at).as_secs_f64();
        self.penalty * (-dt / cfg.half_life.as_secs_f64()).exp2()
    }
}

/// Penalties by member (only members that failed recently: bounded by the member table).
#[derive(Debug)]
pub(crate) struct Damping {
    cfg: DampingConfig,
    flaps: FixedHashMap<Arc<str>, Flap>,
    /// Members down by failure now, with since when (the penalty of their return decays from
    /// then, as if charged at the failure: a long outage costs little) and the generation
    /// that went down (a return as a new life costs less).
    down_at: FixedHashMap<Arc<str>, (Time, u64)>,
}

impl Damping {
    pub(crate) fn new(cfg: DampingConfig, hashes: HashSeed) -> Damping {
        Damping {
            cfg,
            flaps: hashes.map(),
            down_at: hashes.map(),
        }
    }

    /// `name` came back (SWIM calls it alive) at `now`, as `generation`, after a failure that
    /// removed it from the view: one flap, charged as if at the failure (`on_down`; a penalty
    /// decayed over the outage), half of it if it came back as a new life (restarted). Returns
    /// true if it is now suppressed and was not before. Its probation starts now.
    pub(crate) fn on_flap(&mut self, now: Time, name: &Arc<str>, generation: u64) -> bool {
        // (Not served down at its failure, e.g. held by the guard: no flap.)
        let Some((down_at, down_gen)) = self.down_at.remove(name) else {
            return false;
        };
        if !self.cfg.enabled {
            return false;
        }
        let cfg = &self.cfg;
        let restarted = generation > down_gen.saturating_add(RENEWALS_PER_LIFE);
        let unit = if restarted {
            PENALTY_PER_RESTART
        } else {
            PENALTY_PER_FAILURE
        };
        let charge =
            unit * (-now.since(down_at).as_secs_f64() / cfg.half_life.as_secs_f64()).exp2();
        let f = self.flaps.entry(name.clone()).or_insert(Flap {
            penalty: 0.0,
            at: now,
            suppressed_since: None,
            up_since: None,
        });
        f.penalty = (f.now(cfg, now) + charge).min(cfg.max_penalty);
        f.at = now;
        f.up_since = Some(now);
        if f.suppressed_since.is_none() && f.penalty >= cfg.suppress {
            f.suppressed_since = Some(now);
            return true;
        }
        false
    }

    /// `name` (its life `generation`) went down by failure at `now` (and is not held): its
    /// probation, if any, is over; its return will be charged.
    pub(crate) fn on_down(&mut self, now: Time, name: &Arc<str>, generation: u64) {
        if let Some(f) = self.flaps.get_mut(name) {
            f.up_since = None;
        }
        if self.cfg.enabled {
            self.down_at.insert(name.clone(), (now, generation));
        }
    }

    /// `name` came back but was held by the guard meanwhile: it never left the view, so its
    /// return is no flap.
    pub(crate) fn held_through(&mut self, name: &str) {
        self.down_at.remove(name);
    }

    /// Whether `name` is served `damped` (unless it left).
    pub(crate) fn damped(&self, name: &str) -> bool {
        self.flaps
            .get(name)
            .is_some_and(|f| f.suppressed_since.is_some())
    }

    /// Members suppressed now, in no particular order.
    pub(crate) fn suppressed(&self) -> impl Iterator<Item = &Arc<str>> {
        self.flaps
            .iter()
            .filter(|(_, f)| f.suppressed_since.is_some())
            .map(|(n, _)| n)
    }

    /// How many members are suppressed now.
    pub(crate) fn suppressed_count(&self) -> usize {
        self.flaps
            .values()
            .filter(|f| f.suppressed_since.is_some())
            .count()
    }

    /// Decays the penalties: returns the members released (their penalty fell below the
    /// reuse limit), sorted, and forgets penalties that decayed to nothing.
    pub(crate) fn tick(&mut self, now: Time) -> Vec<Arc<str>> {
        let cfg = &self.cfg;
        let mut released = Vec::new();
        self.flaps.retain(|name, f| {
            let p = f.now(cfg, now);
            let proven = f
                .up_since
                .is_some_and(|u| now.since(u) >= cfg.probation && p < cfg.suppress);
            if f.suppressed_since.is_some() && (p < cfg.reuse || proven) {
                f.suppressed_since = None;
                released.push(name.clone());
            }
            f.suppressed_since.is_some() || p >= FORGET_BELOW
        });
        released.sort_unstable();
        released
    }

    /// The member is gone (forgotten, or left by intent): its penalty goes with it.
    pub(crate) fn forget(&mut self, name: &str) -> bool {
        self.down_at.remove(name);
        self.flaps
            .remove(name)
            .is_some_and(|f| f.suppressed_since.is_some())
    }

    pub(crate) fn view(&self, now: Time, name: &str) -> Option<DampingView> {
        let f = self.flaps.get(name)?;
        let p = f.now(&self.cfg, now);
        Some(DampingView {
            penalty: p.round() as u32,
            suppressed_since: f.suppressed_since.map(Time::as_millis),
            reuse_at: f.suppressed_since.map(|_| {
                let decayed = now.plus(self.cfg.time_to(p, self.cfg.reuse));
                let proven = f.up_since.map(|u| {
                    let under = now.plus(self.cfg.time_to(p, self.cfg.suppress));
                    u.plus(self.cfg.probation).max(under)
                });
                proven.map_or(decayed, |t| t.min(decayed)).as_millis()
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damping() -> Damping {
        Damping::new(DampingConfig::default(), HashSeed::of_node(1))
    }

    #[test]
    fn one_failure_suppresses_until_the_penalty_halves() {
        let mut d = damping();
        let a: Arc<str> = Arc::from("a");
        d.on_down(Time(0), &a, 1);
        assert!(d.on_flap(Time(0), &a, 2));
        assert!(d.damped("a"));
        d.on_down(Time(0), &a, 1);
        // Down again: 1000 decays to the reuse limit (300) in 60 x log2(10/3) = 104.2 s.
        assert!(d.tick(Time(104_000)).is_empty());
        let v = d.view(Time(10_000), "a").expect("a view");
        assert_eq!(v.suppressed_since, Some(0));
        assert_eq!(v.reuse_at, Some(104_217));
        assert_eq!(d.tick(Time(104_300)), vec![a.clone()]);
        assert!(!d.damped("a"));
    }

    #[test]
    fn one_failure_then_back_is_served_after_the_probation() {
        let mut d = damping();
        let a: Arc<str> = Arc::from("a");
        // Down at 0, back at 10 s: 1000 x 2^(-10/60) = 891, suppressed (limit 600).
        d.on_down(Time(0), &a, 1);
        assert!(d.on_flap(Time(10_000), &a, 2));
        // Served again once back 30 s and under 600: 891 decays to 600 by 44.2 s.
        assert_eq!(
            d.view(Time(10_000), "a").and_then(|v| v.reuse_at),
            Some(44_217)
        );
        assert!(d.tick(Time(44_000)).is_empty());
        assert_eq!(d.tick(Time(44_300)), vec![a.clone()]);

        // Back after 30 s down: 1000 x 2^(-30/60) = 707, suppressed; served 30 s later.
        let b: Arc<str> = Arc::from("b");
        d.on_down(Time(0), &b, 1);
        assert!(d.on_flap(Time(30_000), &b, 2));
        assert!(d.tick(Time(59_900)).is_empty());
        assert_eq!(d.tick(Time(60_000)), vec![b.clone()]);
    }

    #[test]
    fn flapping_every_forty_seconds_stays_suppressed() {
        let mut d = damping();
        let a: Arc<str> = Arc::from("a");
        // Back every 40 s for 160 s, down 20 s after each return: never stable for the
        // probation, the penalty never below the reuse limit: never served meanwhile.
        for k in 0..5u64 {
            if k == 0 {
                d.on_down(Time(0), &a, 1);
            }
            d.on_flap(Time(k * 40_000), &a, 2);
            for s in 0..40u64 {
                if s == 20 {
                    // Down 20 s after each return, back 20 s later.
                    d.on_down(Time(k * 40_000 + s * 1000), &a, 1);
                }
                assert!(d.tick(Time(k * 40_000 + s * 1000)).is_empty(), "at {k}/{s}");
            }
        }
        // Still down after the last failure (at 180 s): released once the penalty decays
        // to the reuse limit, at most half_life x log2(3000 / 300) = 199 s later.
        let back = (0..400u64)
            .map(|s| 200_000 + s * 1000)
            .find(|t| !d.tick(Time(*t)).is_empty())
            .expect("released");
        assert!(back <= 180_000 + 200_000, "released at {back}");
    }

    #[test]
    fn one_crash_and_reboot_is_not_damped_a_crash_loop_is() {
        let mut d = damping();
        let a: Arc<str> = Arc::from("a");
        // Down at 0, back at once as a new life (its generation is its start time in ms):
        // half a failure, under the suppress limit.
        d.on_down(Time(0), &a, 5_000);
        assert!(!d.on_flap(Time(0), &a, 60_000));
        assert!(!d.damped("a"));
        // It crashes again 20 s later and is back 10 s after that: a crash loop.
        d.on_down(Time(20_000), &a, 60_000);
        assert!(d.on_flap(Time(30_000), &a, 95_000));
        assert!(d.damped("a"));
        // The same life back (renewed: one generation more) pays a full failure.
        let b: Arc<str> = Arc::from("b");
        d.on_down(Time(0), &b, 5_000);
        assert!(d.on_flap(Time(10_000), &b, 5_001));
    }

    #[test]
    fn a_long_outage_costs_little() {
        let mut d = damping();
        let a: Arc<str> = Arc::from("a");
        d.on_down(Time(0), &a, 1);
        // Back after 2 minutes: 1000 decayed to 250, under the suppress limit.
        assert!(!d.on_flap(Time(120_000), &a, 2));
        assert!(!d.damped("a"));
        // Back 10 s after a failure: suppressed.
        d.on_down(Time(130_000), &a, 1);
        assert!(d.on_flap(Time(140_000), &a, 2));
    }

    #[test]
    fn disabled_damping_never_suppresses() {
        let mut d = Damping::new(
            DampingConfig {
                enabled: false,
                ..DampingConfig::default()
            },
            HashSeed::of_node(1),
        );
        let a: Arc<str> = Arc::from("a");
        d.on_down(Time(0), &a, 1);
        assert!(!d.on_flap(Time(0), &a, 2));
        assert!(!d.damped("a"));
    }
}
