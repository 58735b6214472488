//! Scenario validation: every rule a scenario file must satisfy, with errors that name the
//! offending field (counts, node indices, fault times and kinds, services and checks).
//!
//! A child module of `scenario`. Must not change the scenario: it only reads it.

use super::*;

impl Scenario {
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.nodes == 0 {
            return bad("nodes must be at least 1".into());
        }
        if self.total_nodes() > MAX_NODES {
            return bad(format!("at most {MAX_NODES} nodes"));
        }
        if self.duration.0.is_zero() {
            return bad("duration must be greater than zero".into());
        }
        if self.cluster.seeds == 0 {
            return bad("cluster.seeds must be at least 1".into());
        }
        for (name, p) in [
            ("network.loss", self.network.loss),
            ("network.duplicate", self.network.duplicate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} must be between 0 and 1"));
            }
        }
        self.guard
            .config(GuardMode::Enforce)
            .validate()
            .map_err(ScenarioError::Invalid)?;
        self.lifeguard
            .apply(self.profile.timings())
            .validate()
            .map_err(|m| ScenarioError::Invalid(m.replace("timings.", "lifeguard.")))?;
        if self.measure.sample_every.0.is_zero() {
            return bad("measure.sample_every must be greater than zero".into());
        }
        for s in &self.services {
            if let Some(c) = &s.check {
                if c.interval.0 < Duration::from_millis(100) {
                    return bad(format!("service {}: check.interval below 100ms", s.name));
                }
            }
            if let Some(ns) = &s.nodes {
                if let Some(n) = ns.iter().find(|n| **n >= self.nodes) {
                    return bad(format!("service {}: node {n} does not exist", s.name));
                }
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            let at = format!("fault #{} ({:?} at {})", i + 1, f.kind, f.at);
            let total = self.total_nodes();
            for n in f.node.iter().chain(f.nodes.iter().flatten()) {
                if *n >= total {
                    return bad(format!("{at}: node {n} does not exist"));
                }
            }
            if let Some(fr) = f.fraction {
                if !(0.0..=1.0).contains(&fr) {
                    return bad(format!("{at}: fraction must be between 0 and 1"));
                }
            }
            for (name, v) in [
                ("rate", f.rate),
                ("good_loss", f.good_loss),
                ("bad_loss", f.bad_loss),
                ("storm_fraction", f.storm_fraction),
            ] {
                if let Some(r) = v {
                    if !(0.0..=1.0).contains(&r) {
                        return bad(format!("{at}: {name} must be between 0 and 1"));
                    }
                }
            }
            let need_duration = matches!(
                f.kind,
                FaultKind::Partition
                    | FaultKind::Isolate
                    | FaultKind::Flap
                    | FaultKind::Loss
                    | FaultKind::Slow
                    | FaultKind::Pause
                    | FaultKind::CheckFail
                    | FaultKind::Bursty
            );
            if need_duration && f.duration.is_none() {
                return bad(format!("{at}: needs a duration"));
            }
            match f.kind {
                FaultKind::Flap if f.on.is_none() || f.off.is_none() => {
                    return bad(format!("{at}: flap needs `on` and `off` periods"));
                }
                FaultKind::Flap
                    if f.on.unwrap_or_default().0.is_zero()
                        || f.off.unwrap_or_default().0.is_zero() =>
                {
                    return bad(format!("{at}: flap periods must be greater than zero"));
                }
                FaultKind::RollingRestart if f.every.is_none() || f.down.is_none() => {
                    return bad(format!("{at}: rolling-restart needs `every` and `down`"));
                }
                _ if f.terminate.is_some()
                    && !matches!(f.kind, FaultKind::Crash | FaultKind::RollingRestart) =>
                {
                    return bad(format!(
                        "{at}: `terminate` applies to crash and rolling-restart only"
                    ));
                }
                _ if f.terminate.is_some_and(|t| {
                    !(shoal_core::MIN_GRACE..=shoal_core::MAX_GRACE).contains(&t.restart_grace.0)
                }) =>
                {
                    return bad(format!("{at}: restart_grace must be within 1s and 1h"));
                }
                FaultKind::Loss if f.rate.is_none() => {
                    return bad(format!("{at}: loss needs a `rate`"));
                }
                FaultKind::Bursty
                    if f.bad_loss.is_none()
                        || f.bad_for.is_none_or(|d| d.0.is_zero())
                        || (f.good_for.is_none() && f.storm_every.is_none()) =>
                {
                    return bad(format!(
                        "{at}: bursty needs `bad_loss`, a non-zero `bad_for`, and `good_for` or `storm_every`"
                    ));
                }
                FaultKind::Slow if f.delay.is_none() => {
                    return bad(format!("{at}: slow needs a `delay`"));
                }
                FaultKind::CheckFail if self.check_providers(f).is_empty() => {
                    return bad(format!(
                        "{at}: check-fail needs a service with a [service.check]{}",
                        f.service
                            .as_ref()
                            .map(|n| format!(" (service {n:?} has none)"))
                            .unwrap_or_default()
                    ));
                }
                FaultKind::Partition
                    if f.groups.is_none()
                        && f.fraction.is_none()
                        && f.nodes.is_none()
                        && f.count.is_none() =>
                {
                    return bad(format!(
                        "{at}: partition needs `groups`, `nodes`, `count` or `fraction`"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
