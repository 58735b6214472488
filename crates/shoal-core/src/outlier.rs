//! Outlier ejection from the reports of local apps (the seeds' "outlier instance removal",
//! Envoy's outlier detection, the consumer-side passive check).
//!
//! Owns, per instance (service, node, instance id) this node was told about, a sliding window of call
//! outcomes (success, error, timeout) in `BUCKETS` buckets, the ejection state (since, until,
//! the ejection count behind the back-off, the reason), and the rules (docs/outliers.md):
//! - an instance whose failures (errors + timeouts) over all calls in `window` reach
//!   `error_ratio`, with at least `min_requests` calls, is ejected;
//! - for `base_ejection_time` x its ejection count, capped at `max_ejection_time`; the count
//!   loses one step per `base_ejection_time` the instance stays in;
//! - never more than `floor(max_ejection_ratio x instances)` of a service's served instances
//!   are ejected at once, and never the last instance of its passing view (one that passes
//!   the threshold beyond the cap is `capped`: reported, not ejected);
//! - restored when its back-off ends, with an empty window (a fresh chance, as Envoy does;
//!   reports during the ejection are counted, shown, and forgotten then).
//!
//! Local only: what one agent's apps report ejects the instance in this agent's view; nothing
//! of it is gossiped (docs/outliers.md says why and what spreading it would need). It decides
//! only what the passing view leaves out; it never changes a record, a member or the guard.
//! Deterministic: no clock (time comes in with every call), ordered maps only. Bounded: an
//! entry exists only for an instance the served view serves (the caller checks), and entries
//! with nothing left to remember are dropped at the next sweep.

use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Buckets of the sliding window (its resolution is `window / BUCKETS`).
pub(crate) const BUCKETS: usize = 10;
/// Most calls of one outcome one report may count (a report is a batch of a few seconds).
pub const MAX_COUNT: u64 = 1_000_000;

/// Outlier ejection settings (`[outlier]` in the config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutlierConfig {
    /// Outcomes are counted over this sliding window.
    pub window: Duration,
    /// An instance with fewer calls than this in the window is never ejected.
    pub min_requests: u64,
    /// Eject when (errors + timeouts) / calls in the window reach this.
    pub error_ratio: f64,
    /// The first ejection lasts this long; the n-th, n times as long.
    pub base_ejection_time: Duration,
    /// No ejection lasts longer.
    pub max_ejection_time: Duration,
    /// At most this share of a service's served instances is ejected at once (0: never).
    pub max_ejection_ratio: f64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            window: Duration::from_secs(30),
            min_requests: 20,
            error_ratio: 0.5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_ratio: 0.5,
        }
    }
}

impl OutlierConfig {
    /// Checks the bounds; the error says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.window < Duration::from_millis(100) || self.window > Duration::from_secs(3600) {
            return Err("outlier.window must be between 100ms and 1h".into());
        }
        if self.min_requests == 0 || self.min_requests > MAX_COUNT {
            return Err(format!(
                "outlier.min_requests must be between 1 and {MAX_COUNT}"
            ));
        }
        if !(self.error_ratio > 0.0 && self.error_ratio <= 1.0) {
            return Err("outlier.error_ratio must be in (0, 1]".into());
        }
        if self.base_ejection_time < Duration::from_millis(10) {
            return Err("outlier.base_ejection_time must be at least 10ms".into());
        }
        if self.max_ejection_time < self.base_ejection_time {
            return Err(
                "outlier.max_ejection_time must not be shorter than outlier.base_ejection_time"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.max_ejection_ratio) {
            return Err("outlier.max_ejection_ratio must be in [0, 1]".into());
        }
        Ok(())
    }

    /// How many of `n` served instances may be ejected at once.
    pub fn cap(&self, n: usize) -> usize {
        // The small epsilon keeps 0.3 x 10 at 3 despite binary fractions.
        ((self.max_ejection_ratio * n as f64) + 1e-9).floor() as usize
    }

    /// The back-off of an instance's `count`-th ejection.
    pub fn backoff(&self, count: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(count.max(1))
            .min(self.max_ejection_time)
    }

    /// The count at which the back-off reaches `max_ejection_time`.
    fn max_count(&self) -> u32 {
        let base = self.base_ejection_time.as_millis().max(1);
        self.max_ejection_time
            .as_millis()
            .div_ceil(base)
            .clamp(1, u32::MAX as u128) as u32
    }

    fn bucket_ms(&self) -> u64 {
        (self.window.as_millis() as u64 / BUCKETS as u64).max(1)
    }
}

/// Call outcomes, as an app reports them and as the window sums them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    #[serde(default)]
    /// Calls that succeeded.
    pub success: u64,
    #[serde(default)]
    /// Calls that failed.
    pub error: u64,
    #[serde(default)]
    /// Calls that timed out.
    pub timeout: u64,
}

impl Outcomes {
    /// Every call.
    pub fn total(&self) -> u64 {
        self.success
            .saturating_add(self.error)
            .saturating_add(self.timeout)
    }

    /// Errors and timeouts.
    pub fn failures(&self) -> u64 {
        self.error.saturating_add(self.timeout)
    }

    fn add(&mut self, o: &Outcomes) {
        self.success = self.success.saturating_add(o.success);
        self.error = self.error.saturating_add(o.error);
        self.timeout = self.timeout.saturating_add(o.timeout);
    }

    /// Failures over calls (0 with no call).
    pub fn ratio(&self) -> f64 {
        match self.total() {
            0 => 0.0,
            t => self.failures() as f64 / t as f64,
        }
    }
}

/// Why and until when an instance is ejected (the `ejected` field of an instance).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ejection {
    /// Why, in words.
    pub reason: String,
    /// Agent-clock ms when the ejection started (`since` beside it: wall clock).
    pub since_ms: u64,
    /// Agent-clock ms when it ends (`until` beside it: wall clock).
    pub until_ms: u64,
    /// This instance's ejection count: the back-off is `base_ejection_time` x count, capped.
    pub count: u32,
}

/// What happened to an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutlierAction {
    /// Out of the passing view until `ejection.until_ms`.
    Ejected,
    /// Back in the passing view (its back-off ended).
    Restored,
    /// Passed the threshold but the service's ejection cap is reached: still served.
    Capped,
}

impl OutlierAction {
    /// The action as written in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OutlierAction::Ejected => "ejected",
            OutlierAction::Restored => "restored",
            OutlierAction::Capped => "capped",
        }
    }
}

/// One ejection, restoration or cap of an instance (logged, evented, sent to the alert hook).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierTransition {
    /// The service.
    pub service: String,
    /// The instance's node.
    pub node: String,
    /// The instance id on `node` (the service's name unless it was given one).
    #[serde(default)]
    pub id: String,
    /// Ejected or restored.
    pub action: OutlierAction,
    /// In words: the figures behind it.
    pub reason: String,
    /// The ejection that starts or ends (for `capped`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejection: Option<Ejection>,
    /// The window's figures when it happened (for `restored`: those of the ejection).
    pub window: Outcomes,
}

/// One instance as the served view offers it, for the cap: its node and whether it is in
/// the passing view apart from ejection (passing health, or held by the health guard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Census {
    pub node: String,
    /// The instance id on `node`.
    pub id: String,
    pub passing: bool,
}

impl Census {
    fn key(&self) -> Key {
        (self.node.clone(), self.id.clone())
    }
}

/// An instance: its node and its id there.
type Key = (String, String);

/// An instance's window and ejection, as `POST /v1/reports` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierStatus {
    /// The service.
    pub service: String,
    /// The instance's node.
    pub node: String,
    /// The instance id on `node`.
    #[serde(default)]
    pub id: String,
    /// The outcomes counted in the window now.
    pub window: Outcomes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Its ejection, while it lasts.
    pub ejected: Option<Ejection>,
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierCounters {
    /// Instances ejected.
    pub ejections: u64,
    /// Instances restored.
    pub restorations: u64,
    /// Ejections refused by `max_ejection_ratio`.
    pub capped: u64,
    /// Reports received.
    pub reports: u64,
}

#[derive(Debug, Default)]
struct Entry {
    /// The outcomes of each bucket, and the bucket number (time / bucket length) it holds.
    buckets: [(u64, Outcomes); BUCKETS],
    ejected: Option<Ejection>,
    /// Ejections so far, after decay.
    count: u32,
    /// Since when the count decays (the last restoration or decay step).
    calm_since: Time,
    /// A capped transition was sent for the current excess (sent again once it clears).
    capped: bool,
    last_report: Time,
}

impl Entry {
    fn add(&mut self, bucket: u64, o: &Outcomes) {
        let slot = &mut self.buckets[(bucket % BUCKETS as u64) as usize];
        if slot.0 != bucket {
            *slot = (bucket, Outcomes::default());
        }
        slot.1.add(o);
    }

    fn window(&self, bucket: u64) -> Outcomes {
        let mut sum = Outcomes::default();
        for (b, o) in &self.buckets {
            if *b + (BUCKETS as u64) > bucket && *b <= bucket {
                sum.add(o);
            }
        }
        sum
    }

    fn clear_window(&mut self) {
        self.buckets = Default::default();
    }

    /// The count after the decay of the calm time up to `now`.
    fn decay(&mut self, now: Time, step: Duration) {
        let step_ms = (step.as_millis() as u64).max(1);
        let steps = now.since(self.calm_since).as_millis() as u64 / step_ms;
        if steps > 0 {
            self.count = self.count.saturating_sub(steps.min(u32::MAX as u64) as u32);
            self.calm_since = Time(self.calm_since.0 + steps * step_ms);
        }
    }
}

/// The outlier ejection state of one node (see the module doc).
#[derive(Debug)]
pub(crate) struct Outliers {
    cfg: OutlierConfig,
    /// service -> (node, instance id) -> entry.
    services: BTreeMap<String, BTreeMap<Key, Entry>>,
    transitions: Vec<OutlierTransition>,
    counters: OutlierCounters,
    /// The earliest deadline the node's queue holds for us.
    armed: Option<Time>,
    /// A deadline the node has yet to arm (`take_deadline`).
    pending: Option<Time>,
}

impl Outliers {
    pub(crate) fn new(cfg: OutlierConfig) -> Self {
        Outliers {
            cfg,
            services: BTreeMap::new(),
            transitions: Vec::new(),
            counters: OutlierCounters::default(),
            armed: None,
            pending: None,
        }
    }

    fn bucket(&self, now: Time) -> u64 {
        now.0 / self.cfg.bucket_ms()
    }

    /// An app's report of calls to `node`'s instance `id` of `service`. `census`: every
    /// instance of `service` the served view serves now (the caller has checked that this
    /// is one).
    pub(crate) fn report(
        &mut self,
        now: Time,
        service: &str,
        (node, id): (&str, &str),
        outcomes: &Outcomes,
        census: &[Census],
    ) {
        self.counters.reports += 1;
        let bucket = self.bucket(now);
        let key: Key = (node.to_string(), id.to_string());
        let e = self
            .services
            .entry(service.to_string())
            .or_default()
            .entry(key.clone())
            .or_default();
        e.add(bucket, outcomes);
        e.last_report = now;
        self.evaluate(now, service, &key, census);
    }

    /// Ejects the instance `key` if its window passes the threshold and the cap allows.
    fn evaluate(&mut self, now: Time, service: &str, key: &Key, census: &[Census]) {
        let bucket = self.bucket(now);
        let cfg = &self.cfg;
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let Some(e) = svc.get(key) else {
            return;
        };
        if e.ejected.is_some() {
            return;
        }
        let w = e.window(bucket);
        let failing = w.total() >= cfg.min_requests && w.ratio() >= cfg.error_ratio;
        if !failing {
            if let Some(e) = svc.get_mut(key) {
                e.capped = false;
            }
            return;
        }
        let served = census.len();
        let ejected = census
            .iter()
            .filter(|c| svc.get(&c.key()).is_some_and(|e| e.ejected.is_some()))
            .count();
        let passing_left = census
            .iter()
            .filter(|c| c.passing && c.key() != *key)
            .filter(|c| svc.get(&c.key()).is_none_or(|e| e.ejected.is_none()))
            .count();
        let cap = cfg.cap(served);
        let percent = (w.ratio() * 100.0).round();
        let figures = format!(
            "{} of {} calls failed in the last {} s ({} errors, {} timeouts; {percent}% >= {}%, \
             at least {} calls)",
            w.failures(),
            w.total(),
            cfg.window.as_secs_f64(),
            w.error,
            w.timeout,
            (cfg.error_ratio * 100.0).round(),
            cfg.min_requests,
        );
        let Some(e) = svc.get_mut(key) else {
            return;
        };
        if ejected + 1 > cap || passing_left == 0 {
            if !e.capped {
                e.capped = true;
                self.counters.capped += 1;
                let why = if passing_left == 0 {
                    "it is the last instance of the passing view".to_string()
                } else {
                    format!(
                        "{ejected} of {served} instances of {service} are ejected already, cap \
                         {cap} (max_ejection_ratio {})",
                        cfg.max_ejection_ratio
                    )
                };
                self.transitions.push(OutlierTransition {
                    service: service.to_string(),
                    node: key.0.clone(),
                    id: key.1.clone(),
                    action: OutlierAction::Capped,
                    reason: format!("{figures}; not ejected: {why}"),
                    ejection: None,
                    window: w,
                });
            }
            return;
        }
        e.decay(now, cfg.base_ejection_time);
        // The count stops where the back-off stops growing (so that its decay is as short).
        e.count = e.count.saturating_add(1).min(cfg.max_count());
        e.capped = false;
        let backoff = cfg.backoff(e.count);
        let until = now.plus(backoff);
        let ejection = Ejection {
            reason: format!(
                "{figures}; ejected for {} s (ejection {})",
                backoff.as_secs_f64(),
                e.count
            ),
            since_ms: now.0,
            until_ms: until.0,
            count: e.count,
        };
        // The window stays (answers show what ejected it); it is emptied at the restoration.
        e.ejected = Some(ejection.clone());
        self.counters.ejections += 1;
        self.transitions.push(OutlierTransition {
            service: service.to_string(),
            node: key.0.clone(),
            id: key.1.clone(),
            action: OutlierAction::Ejected,
            reason: ejection.reason.clone(),
            ejection: Some(ejection),
            window: w,
        });
        self.want(until);
    }

    /// Restores instances whose back-off ended and drops entries with nothing to remember.
    pub(crate) fn handle_timeout(&mut self, now: Time) {
        let bucket = self.bucket(now);
        let cfg = &self.cfg;
        for (service, svc) in &mut self.services {
            for ((node, id), e) in svc.iter_mut() {
                let Some(ej) = &e.ejected else { continue };
                if ej.until_ms > now.0 {
                    continue;
                }
                let ejection = e.ejected.take();
                let w = e.window(bucket);
                e.clear_window();
                e.calm_since = now;
                self.counters.restorations += 1;
                self.transitions.push(OutlierTransition {
                    service: service.clone(),
                    node: node.clone(),
                    id: id.clone(),
                    action: OutlierAction::Restored,
                    reason: format!(
                        "back-off over after {} s: back in the passing view with an empty \
                         window",
                        now.since(Time(ejection.as_ref().map_or(0, |j| j.since_ms)))
                            .as_secs_f64()
                    ),
                    ejection,
                    window: w,
                });
            }
            svc.retain(|_, e| {
                if e.ejected.is_some() {
                    // The count decays only while the instance is in.
                    return true;
                }
                e.decay(now, cfg.base_ejection_time);
                e.count > 0 || now.since(e.last_report) < cfg.window
            });
        }
        self.services.retain(|_, svc| !svc.is_empty());
        self.armed = None;
        if let Some(next) = self.next_deadline(now) {
            self.want(next);
        }
    }

    /// The next time `handle_timeout` has work: the first restoration, else a sweep one
    /// window on while any entry is kept.
    fn next_deadline(&self, now: Time) -> Option<Time> {
        let restore = self
            .services
            .values()
            .flat_map(|s| s.values())
            .filter_map(|e| e.ejected.as_ref().map(|j| Time(j.until_ms)))
            .min();
        let sweep = (!self.services.is_empty()).then(|| now.plus(self.cfg.window));
        match (restore, sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn want(&mut self, at: Time) {
        if self.armed.is_some_and(|t| t <= at) {
            return;
        }
        self.armed = Some(at);
        self.pending = Some(at);
    }

    /// A deadline the node must arm a timer for (one earlier than what it holds), once.
    pub(crate) fn take_deadline(&mut self) -> Option<Time> {
        self.pending.take()
    }

    pub(crate) fn take_transitions(&mut self) -> Vec<OutlierTransition> {
        std::mem::take(&mut self.transitions)
    }

    /// Why and until when `node`'s instance `id` of `service` is ejected, if it is.
    pub(crate) fn ejected(&self, service: &str, node: &str, id: &str) -> Option<&Ejection> {
        self.services
            .get(service)?
            .get(&(node.to_string(), id.to_string()))?
            .ejected
            .as_ref()
    }

    /// The window and ejection of `node`'s instance `id` of `service`.
    pub(crate) fn status(&self, now: Time, service: &str, node: &str, id: &str) -> OutlierStatus {
        let key: Key = (node.to_string(), id.to_string());
        let e = self.services.get(service).and_then(|s| s.get(&key));
        OutlierStatus {
            service: service.to_string(),
            node: node.to_string(),
            id: id.to_string(),
            window: e.map(|e| e.window(self.bucket(now))).unwrap_or_default(),
            ejected: e.and_then(|e| e.ejected.clone()),
        }
    }

    /// Instances ejected now, by service.
    pub(crate) fn ejected_counts(&self) -> BTreeMap<String, usize> {
        self.services
            .iter()
            .map(|(s, v)| {
                (
                    s.clone(),
                    v.values().filter(|e| e.ejected.is_some()).count(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub(crate) fn counters(&self) -> OutlierCounters {
        self.counters
    }
}
