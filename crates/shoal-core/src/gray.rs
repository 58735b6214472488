//! Gray failures: a member that most of several independent observers cannot reach is
//! removed from the served view, as one decision every agent reaches from the same evidence.
//!
//! SWIM alone never removes a host that hears one packet in five: each suspicion reaches it
//! sooner or later and it refutes. But the probes other members send it fail most of the
//! time, and each prober sees that. So every node keeps, per member it probed, the outcome of
//! its own full probes (direct and indirect; foca reports them) over a sliding `window`; when
//! at least `failure_ratio` of them failed, it publishes a compact **reach report**
//! (subject, its generation, observer, attempts, failures, age) and keeps republishing the
//! latest one while the window lasts (a report whose failures dropped supersedes it).
//! Reports travel in their own datagram (`ShoalMsg::Reach`), pushed to two random members
//! once per probe period while a node holds reports still to be spread, each report sent a
//! few times (about log2 N) by every node that learns it: infection-style gossip, so a
//! report reaches everyone in a few probe periods, and nothing is sent while nobody fails.
//!
//! Every node applies the same rule to the same reports: a member is **removed** once
//! `needed(N)` distinct active observers (a third of the other members, at least
//! `gray_observers`, at most `MAX_OBSERVERS_NEEDED`) each report it unreachable within the
//! window; it returns once fewer than half that many have reported it for `stable_after`.
//! A member under light loss (5-10 %) fails one full probe in a hundred or fewer: a few
//! observers agreeing within a window is then vanishingly rare.
//!
//! Owns the own-probe windows, the report table (bounded: `MAX_SUBJECTS` subjects,
//! `MAX_OBSERVERS` observers each, one report per (observer, subject)) and the removed set.
//! Reports are validated before anything is stored (names, counts, age, observer and
//! subject known members). It never reads a clock; it sends nothing itself (the node sends
//! what `outgoing` returns) and changes nothing in SWIM: the node serves a removed member
//! `down`, and the guard counts that like any failure. See docs/gray-failures.md.

use crate::guard_config::GuardConfig;
use crate::identity::validate_name;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Most observers that must agree, whatever the cluster's size (at 1,000 members a third
/// would be more observers than probe a member within a window).
pub const MAX_OBSERVERS_NEEDED: usize = 8;
/// Members with reports kept at most (more are dropped and counted).
pub const MAX_SUBJECTS: usize = 256;
/// Observers kept per member (the oldest report is replaced past that).
pub const MAX_OBSERVERS: usize = 64;
/// Outcomes of our own probes kept per member within the window.
pub const MAX_OWN: usize = 16;
/// Reports one datagram carries at most (each is under 150 bytes, about 20 with short names:
/// a datagram is filled up to the shoal message budget, and a receiver reads no more).
pub const MAX_PER_MSG: usize = 96;
/// Members one node pushes its reports to per probe period.
pub const PUSH_FANOUT: usize = 2;
/// An observer that reports more members than this failing at once is itself the likely
/// fault (a lossy host fails its probes of everyone): its reports do not count.
pub const MAX_FAILING_PER_OBSERVER: usize = 3;
/// Probe periods the rule must hold, with the guard normal, before a member is removed.
pub const CONFIRM_PERIODS: u32 = 5;
/// Oldest age a report may claim (longer windows are refused by config validation).
pub const MAX_AGE_MS: u32 = 600_000;

/// One observer's recent probes of one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachReport {
    pub subject: String,
    /// The subject's generation the probes were of (a restarted member starts afresh).
    pub generation: u64,
    pub observer: String,
    /// Full probes (direct and indirect) within the observer's window, and how many failed.
    pub attempts: u8,
    pub failures: u8,
    /// The observer's latest probe of it failed (so a member that answers again stops
    /// counting as soon as each observer's next probe says so).
    pub latest_failed: bool,
    /// How old the report is, in ms (relays add the time they held it).
    pub age_ms: u32,
}

/// Why a report was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("invalid name")]
    BadName,
    #[error("inconsistent counts")]
    BadCounts,
    #[error("too old")]
    TooOld,
    #[error("subject or observer unknown")]
    Unknown,
    #[error("report table full")]
    Full,
}

impl ReachReport {
    /// The checks that need no state: names, counts, age.
    pub fn validate(&self) -> Result<(), ReportError> {
        if validate_name(&self.subject).is_err()
            || validate_name(&self.observer).is_err()
            || self.subject == self.observer
        {
            return Err(ReportError::BadName);
        }
        if self.attempts == 0
            || self.failures > self.attempts
            || (self.latest_failed && self.failures == 0)
        {
            return Err(ReportError::BadCounts);
        }
        if self.age_ms > MAX_AGE_MS {
            return Err(ReportError::TooOld);
        }
        Ok(())
    }

    fn failing(&self, ratio: f64) -> bool {
        self.latest_failed && failing(self.attempts, self.failures, ratio)
    }

    /// The most bytes a report about `subject` by `observer` takes in a message: the names
    /// with their lengths, the largest generation and age, the counts and the flag.
    pub fn max_encoded_len(subject: &str, observer: &str) -> usize {
        subject.len() + observer.len() + 2 * 2 + 10 + 5 + 3
    }
}

fn failing(attempts: u8, failures: u8, ratio: f64) -> bool {
    failures > 0 && f64::from(failures) >= ratio * f64::from(attempts)
}

/// The settings, from `GuardConfig`.
#[derive(Clone, Debug)]
struct Settings {
    enabled: bool,
    window: Duration,
    ratio: f64,
    observers: usize,
    stable_after: Duration,
}

#[derive(Debug)]
struct Own {
    generation: u64,
    outcomes: VecDeque<(Time, bool)>,
    /// Our last report about it said "failing".
    published: bool,
}

#[derive(Clone, Debug)]
struct Held {
    report: ReachReport,
    /// When the observer made it (our clock).
    born: Time,
    /// When it reached us (`born` for our own).
    arrived: Time,
    /// Times it is still to be pushed.
    sends_left: u8,
}

#[derive(Debug)]
struct Removed {
    cause: String,
    /// Since when fewer than half the needed observers report it.
    calm_since: Option<Time>,
}

/// A member the node must start or stop serving `down` on gray evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrayChange {
    pub name: Arc<str>,
    /// `Some(cause)`: removed; `None`: back.
    pub removed: Option<String>,
}

#[derive(Debug)]
pub struct Gray {
    s: Settings,
    me: Arc<str>,
    own: BTreeMap<Arc<str>, Own>,
    /// Reports by subject, then observer.
    reports: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Held>>,
    removed: BTreeMap<Arc<str>, Removed>,
    /// Members the rule has held for since then (removed once it held for `confirm`).
    pending: BTreeMap<Arc<str>, Time>,
    /// How long the rule must hold, with the guard normal throughout, before a removal: a
    /// partition's correlated suspicions trip the guard within a few probe periods, and
    /// then nobody is removed on this evidence (set by the node: `CONFIRM_PERIODS` probe
    /// periods).
    confirm: Duration,
    changes: Vec<GrayChange>,
    /// Reports refused (counted by the node).
    pub refused: u64,
}

/// What `evaluate` needs to know about the members.
pub trait Members {
    /// Active (alive or suspect in SWIM) members, ourselves included.
    fn population(&self) -> usize;
    /// The member's current generation, and whether SWIM calls it active.
    fn member(&self, name: &str) -> Option<(u64, bool)>;
}

impl Gray {
    pub fn new(cfg: &GuardConfig, me: Arc<str>) -> Gray {
        Gray {
            s: Settings {
                enabled: cfg.gray && cfg.mode != crate::guard_config::GuardMode::Off,
                window: cfg.gray_window,
                ratio: cfg.gray_failure_ratio,
                observers: cfg.gray_observers,
                stable_after: cfg.gray_stable_after,
            },
            me,
            own: BTreeMap::new(),
            reports: BTreeMap::new(),
            removed: BTreeMap::new(),
            pending: BTreeMap::new(),
            confirm: Duration::ZERO,
            changes: Vec::new(),
            refused: 0,
        }
    }

    /// Drops the evidence gathered so far (our own probe windows, the reports held, the
    /// rules pending), keeping the removals made: the node calls it while its guard is not
    /// `normal`. Probes that failed during a correlated event (a partition, this node cut
    /// off) say nothing about one member's health, and must not remove it once the event is
    /// over and the guard normal again.
    pub fn forget_evidence(&mut self) {
        self.own.clear();
        self.reports.clear();
        self.pending.clear();
    }

    /// How long the rule must hold before a removal (see `confirm`).
    pub fn set_confirm(&mut self, d: Duration) {
        self.confirm = d;
    }

    /// Observers that must agree in a cluster of `population` active members (`None`: too
    /// few members for an agreement).
    pub fn needed(&self, population: usize) -> Option<usize> {
        let others = population.saturating_sub(1);
        let want = others
            .div_ceil(3)
            .clamp(self.s.observers, self.s.observers.max(MAX_OBSERVERS_NEEDED));
        // The member itself never observes itself; another must be left over so that one
        // lossy observer alone is not the whole agreement.
        (others > want).then_some(want)
    }

    /// Times each node that learns a report pushes it on (to `PUSH_FANOUT` members each
    /// time): 3 up to 256 members, 4 up to 65,536. A member then receives a report about
    /// `2 x transmissions` times on average and misses it with probability about
    /// e^-(2 x transmissions) (0.25 % with 3): the rule needs several reports, not every one.
    fn transmissions(population: usize) -> u8 {
        let log2 = usize::BITS - population.max(1).leading_zeros();
        (2 + log2.div_ceil(8)).min(16) as u8
    }

    /// One of our probes of `subject` (generation `generation`) ended. `healthy`: our own
    /// local health (Lifeguard) says our probes fail for our own reasons no more than usual;
    /// a node in trouble itself fails its probes of healthy members, and its failing reports
    /// are no independent evidence (they are not published, as Lifeguard's accusations are
    /// not counted; a report saying it answered still is).
    pub fn on_probe(
        &mut self,
        now: Time,
        subject: &Arc<str>,
        generation: u64,
        answered: bool,
        healthy: bool,
    ) {
        if !self.s.enabled || *subject == self.me {
            return;
        }
        let window = self.s.window;
        let own = self.own.entry(subject.clone()).or_insert(Own {
            generation,
            outcomes: VecDeque::new(),
            published: false,
        });
        if own.generation != generation {
            own.generation = generation;
            own.outcomes.clear();
        }
        own.outcomes.push_back((now, answered));
        while own.outcomes.len() > MAX_OWN
            || own
                .outcomes
                .front()
                .is_some_and(|(t, _)| now.since(*t) >= window)
        {
            own.outcomes.pop_front();
        }
        let attempts = own.outcomes.len().min(usize::from(u8::MAX)) as u8;
        let failures = own.outcomes.iter().filter(|(_, ok)| !ok).count() as u8;
        let is_failing = !answered && failing(attempts, failures, self.s.ratio);
        if !(is_failing || own.published) || (is_failing && !healthy) {
            return;
        }
        own.published = is_failing;
        let report = ReachReport {
            subject: subject.to_string(),
            generation,
            observer: self.me.to_string(),
            attempts,
            failures,
            latest_failed: !answered,
            age_ms: 0,
        };
        // Our own reports are spread as much as the most a relay would.
        let sends = Self::transmissions(MAX_SUBJECTS);
        self.store(subject.clone(), self.me.clone(), report, (now, now), sends);
    }

    /// A report from a peer: validated, then kept if it is newer than what we hold.
    pub fn receive(
        &mut self,
        now: Time,
        report: ReachReport,
        members: &impl Members,
    ) -> Result<(), ReportError> {
        if !self.s.enabled {
            return Ok(());
        }
        report.validate()?;
        if *report.observer == *self.me {
            return Ok(()); // our own, back from a relay
        }
        let (Some((generation, _)), Some(_)) = (
            members.member(&report.subject),
            members.member(&report.observer),
        ) else {
            return Err(ReportError::Unknown);
        };
        if report.generation != generation {
            return Ok(()); // about another life of the member
        }
        let age = Duration::from_millis(u64::from(report.age_ms));
        if age >= self.s.window {
            return Ok(());
        }
        let born = Time(now.0.saturating_sub(age.as_millis() as u64));
        let subject: Arc<str> = Arc::from(report.subject.as_str());
        let observer: Arc<str> = Arc::from(report.observer.as_str());
        let sends = Self::transmissions(members.population());
        if !self.reports.contains_key(&subject) && self.reports.len() >= MAX_SUBJECTS {
            return Err(ReportError::Full);
        }
        self.store(subject, observer, report, (born, now), sends);
        Ok(())
    }

    fn store(
        &mut self,
        subject: Arc<str>,
        observer: Arc<str>,
        report: ReachReport,
        (born, arrived): (Time, Time),
        sends: u8,
    ) {
        let ours = *observer == *self.me;
        let by_obs = self.reports.entry(subject).or_default();
        if let Some(h) = by_obs.get(&observer) {
            if h.born > born || (h.born == born && !ours) {
                return;
            }
        } else if by_obs.len() >= MAX_OBSERVERS {
            // Replace the oldest report.
            let oldest = by_obs
                .iter()
                .min_by_key(|(_, h)| h.born)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                by_obs.remove(&k);
            }
        }
        by_obs.insert(
            observer,
            Held {
                report,
                born,
                arrived,
                sends_left: sends,
            },
        );
    }

    /// The reports to push now (to `PUSH_FANOUT` random members), as many as fit in `budget`
    /// bytes of encoding, with their ages as of `now`; each counts one send. Empty when there
    /// is nothing left to spread. A report no longer fresh is not spread: it cannot count
    /// for a removal anywhere (and what it superseded was older still).
    pub fn outgoing(&mut self, now: Time, budget: usize) -> Vec<ReachReport> {
        let fresh = self.s.window / 2;
        let mut picked: Vec<(u8, Arc<str>, Arc<str>)> = Vec::new();
        for (subject, by_obs) in &self.reports {
            for (observer, h) in by_obs {
                if h.sends_left > 0 && now.since(h.born) < fresh {
                    picked.push((h.sends_left, subject.clone(), observer.clone()));
                }
            }
        }
        // Most sends left first (the newest news), then by name: the same choice every run.
        picked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2))));
        let mut used = 0;
        picked.retain(|(_, subject, observer)| {
            let len = ReachReport::max_encoded_len(subject, observer);
            if used + len > budget {
                return false;
            }
            used += len;
            true
        });
        picked.truncate(MAX_PER_MSG);
        let mut out = Vec::with_capacity(picked.len());
        for (_, subject, observer) in picked {
            if let Some(h) = self
                .reports
                .get_mut(&subject)
                .and_then(|m| m.get_mut(&observer))
            {
                h.sends_left -= 1;
                let mut r = h.report.clone();
                r.age_ms = now.since(h.born).as_millis().min(u128::from(MAX_AGE_MS)) as u32;
                out.push(r);
            }
        }
        out
    }

    /// Ages the reports out and applies the rule: members removed or back are queued for
    /// `take_changes`. `may_remove`: the guard is `normal` (while it holds the view for a
    /// correlated event, nobody is removed on this evidence either: a partition is not a
    /// gray failure; returns still happen).
    pub fn evaluate(&mut self, now: Time, members: &impl Members, may_remove: bool) {
        if !self.s.enabled {
            return;
        }
        let window = self.s.window;
        let removed = &self.removed;
        self.reports.retain(|subject, by_obs| {
            by_obs.retain(|_, h| now.since(h.born) < window);
            // A member SWIM declared down (or that left) needs no more evidence: its
            // reports are dropped, not spread.
            let active = members.member(subject).is_some_and(|(_, a)| a);
            !by_obs.is_empty() && (active || removed.contains_key(subject))
        });
        self.own.retain(|_, o| {
            o.outcomes
                .back()
                .is_some_and(|(t, _)| now.since(*t) < window)
        });
        let Some(needed) = self.needed(members.population()) else {
            self.pending.clear();
            return;
        };
        if !may_remove {
            self.pending.clear();
        }
        let ratio = self.s.ratio;
        // Observers failing more members than `MAX_FAILING_PER_OBSERVER` at once.
        let mut failing_by_obs: BTreeMap<&Arc<str>, usize> = BTreeMap::new();
        for by_obs in self.reports.values() {
            for (obs, h) in by_obs {
                if h.report.failing(ratio) {
                    *failing_by_obs.entry(obs).or_default() += 1;
                }
            }
        }
        let suspect_observer = |obs: &Arc<str>| {
            failing_by_obs
                .get(obs)
                .is_some_and(|n| *n > MAX_FAILING_PER_OBSERVER)
        };
        // A failing report counts while it is fresh, half the window from when it reached
        // us (and within the window of the probe): an observer probes a given member only
        // every N probe periods, so in a large cluster its latest probe may be long past,
        // and a loss burst of a few seconds would go on counting against the member long
        // after it ended. From its arrival, not from the probe: in a large cluster a report
        // takes several probe periods to reach everyone, and counted from the probe, fewer
        // fresh ones would be known at once than `needed` (at 1,000 members about one
        // observer probes a given member per period).
        let fresh = window / 2;
        // Failing and all observers of a subject's current life (an observer that is not
        // active, fails too many members, or is the subject itself, does not count).
        let count = |subject: &str, generation: u64, by_obs: &BTreeMap<Arc<str>, Held>| {
            let mut failing_obs = 0;
            let mut total = 0;
            for (obs, h) in by_obs {
                if **obs == *subject
                    || h.report.generation != generation
                    || suspect_observer(obs)
                    || !members.member(obs).is_some_and(|(_, active)| active)
                {
                    continue;
                }
                total += 1;
                if h.report.failing(ratio) && now.since(h.arrived) < fresh {
                    failing_obs += 1;
                }
            }
            (failing_obs, total)
        };
        for (subject, by_obs) in self.reports.iter().filter(|_| may_remove) {
            if self.removed.contains_key(subject) || **subject == *self.me {
                continue;
            }
            let Some((generation, true)) = members.member(subject) else {
                continue;
            };
            let (failing_obs, total) = count(subject, generation, by_obs);
            if failing_obs < needed {
                self.pending.remove(subject);
                continue;
            }
            let since = *self.pending.entry(subject.clone()).or_insert(now);
            if now.since(since) >= self.confirm {
                self.pending.remove(subject);
                let cause = format!("gray: {failing_obs} of {total} observers cannot reach it");
                self.removed.insert(
                    subject.clone(),
                    Removed {
                        cause: cause.clone(),
                        calm_since: None,
                    },
                );
                self.changes.push(GrayChange {
                    name: subject.clone(),
                    removed: Some(cause),
                });
            }
        }
        let reports = &self.reports;
        self.pending.retain(|k, _| reports.contains_key(k));
        let stable = self.s.stable_after;
        let mut back = Vec::new();
        for (name, r) in self.removed.iter_mut() {
            let failing_obs = match (self.reports.get(name), members.member(name)) {
                (Some(by_obs), Some((generation, _))) => count(name, generation, by_obs).0,
                _ => 0,
            };
            if failing_obs * 2 < needed {
                let since = *r.calm_since.get_or_insert(now);
                if now.since(since) >= stable {
                    back.push(name.clone());
                }
            } else {
                r.calm_since = None;
            }
        }
        for name in back {
            self.removed.remove(&name);
            self.changes.push(GrayChange {
                name,
                removed: None,
            });
        }
    }

    /// Why `name` is removed, if it is.
    pub fn cause(&self, name: &str) -> Option<&str> {
        self.removed.get(name).map(|r| r.cause.as_str())
    }

    /// Whether nothing here changes with time alone: no report held, no removal, nothing
    /// pending, and our own outcomes all successes (none reported failing).
    pub fn quiet(&self) -> bool {
        self.reports.is_empty()
            && self.removed.is_empty()
            && self.pending.is_empty()
            && self
                .own
                .values()
                .all(|o| !o.published && o.outcomes.iter().all(|(_, ok)| *ok))
    }

    pub fn is_removed(&self, name: &str) -> bool {
        self.removed.contains_key(name)
    }

    /// Members removed now, sorted.
    pub fn removed_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.removed.keys()
    }

    pub fn removed_count(&self) -> usize {
        self.removed.len()
    }

    /// SWIM declared the member down itself: the removal ends (without a change to apply).
    pub fn end_removal(&mut self, name: &str) {
        self.removed.remove(name);
        self.pending.remove(name);
    }

    /// The member left or was forgotten: nothing about it counts any more.
    pub fn forget(&mut self, name: &str) {
        self.own.remove(name);
        self.reports.remove(name);
        self.removed.remove(name);
    }

    pub fn take_changes(&mut self) -> Vec<GrayChange> {
        std::mem::take(&mut self.changes)
    }
}

#[cfg(test)]
#[path = "gray_tests.rs"]
mod tests;
