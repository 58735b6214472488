//! The checks of this node's services and their damping: each check's status from its raw
//! results (the thresholds `success_before_passing` and `failures_before_critical`, as Consul
//! and Kubernetes probes have), a ttl check turning critical when no result came within its
//! ttl, and a service's health from its checks (the worst status wins).
//!
//! Owns `HealthChecks`: per service, its checks in registered order, each with its damper,
//! result count and ttl deadline (bounded: [`MAX_CHECKS`] in all). The node hands what comes
//! out to its publishing (`core::health_rate` paces it; `node::health` fits it into the
//! record and refuses it after a leave). Drivers run the probes (the agent) or model their
//! outcomes (the simulator) and hand each raw result in through `Node::check_result`; they
//! decide no status. Pure and deterministic: time comes in with every call; must not run
//! anything.

use crate::health_rate::Published;
use crate::meta::{output_line, Health};
use crate::time::Time;
use std::collections::BTreeMap;
use std::time::Duration;

/// Most bytes of a check's output kept (the record carries only its first line, shorter).
pub const MAX_OUTPUT: usize = 4096;
/// Most checks on one node (the agent's configuration refuses more first).
pub(crate) const MAX_CHECKS: usize = 256;

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The status of one check as results come in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Damper {
    pub status: Health,
    /// Output of the result that set (or confirmed) `status`.
    pub output: String,
    success_before_passing: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl Damper {
    pub(crate) fn new(
        initial: Health,
        success_before_passing: u32,
        failures_before_critical: u32,
    ) -> Self {
        Damper {
            status: initial,
            output: String::new(),
            success_before_passing: success_before_passing.max(1),
            failures_before_critical: failures_before_critical.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// Takes one result; returns whether the status changed. A warning applies at once; a
    /// pass needs `success_before_passing` in a row, a failure `failures_before_critical` in
    /// a row. While a change waits, the status (and its output) stay.
    pub(crate) fn apply(&mut self, result: Health, output: String) -> bool {
        let before = self.status;
        let output = bounded(output, MAX_OUTPUT);
        match result {
            Health::Passing => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.status == Health::Passing || self.successes >= self.success_before_passing {
                    self.status = Health::Passing;
                    self.output = output;
                }
            }
            Health::Critical => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.status == Health::Critical || self.failures >= self.failures_before_critical
                {
                    self.status = Health::Critical;
                    self.output = output;
                }
            }
            Health::Warning => {
                self.successes = 0;
                self.failures = 0;
                self.status = Health::Warning;
                self.output = output;
            }
        }
        self.status != before
    }

    /// Sets the status at once, whatever the thresholds (a ttl that ran out: the app said
    /// nothing, there is no result to wait for).
    pub(crate) fn force(&mut self, status: Health, output: String) -> bool {
        let before = self.status;
        self.status = status;
        self.output = bounded(output, MAX_OUTPUT);
        self.successes = 0;
        self.failures = 0;
        self.status != before
    }
}

/// A service's health from its checks' (status, output): the worst status, with the output of
/// the first check that has it. `None` without checks.
pub(crate) fn aggregate<'a>(
    checks: impl IntoIterator<Item = (Health, &'a str)>,
) -> Option<(Health, &'a str)> {
    let mut worst: Option<(Health, &str)> = None;
    for (h, o) in checks {
        if worst.is_none_or(|(w, _)| h > w) {
            worst = Some((h, o));
        }
    }
    worst
}

/// One check as the driver registers it (what it probes stays with the driver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckParams {
    /// Unique on the node.
    pub id: String,
    /// The status before the first result.
    pub initial: Health,
    /// Passing results in a row needed before the check turns passing.
    pub success_before_passing: u32,
    /// Failing results in a row needed before the check turns critical.
    pub failures_before_critical: u32,
    /// A ttl check: critical when no result came within it (the app reports, nothing probes).
    pub ttl: Option<Duration>,
}

/// One check's state, as `GET /v1/checks` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckStatus {
    /// The check's id (unique on the node).
    pub id: String,
    /// The service the check belongs to.
    pub service: String,
    /// The damped status the node publishes.
    pub status: Health,
    /// Output of the result behind `status` (at most [`MAX_OUTPUT`] bytes).
    pub output: String,
    /// Results taken so far (probes run, or ttl updates and expiries).
    pub results: u64,
    /// When the last result came.
    pub last_result: Option<Time>,
}

/// Why a set of checks was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChecksError {
    /// Two checks share an id.
    #[error("check id {0:?} is used twice")]
    Duplicate(String),
    /// More checks than the table holds.
    #[error("more than {MAX_CHECKS} checks on this node")]
    TooMany,
}

#[derive(Clone, Debug)]
struct Check {
    params: CheckParams,
    damper: Damper,
    results: u64,
    last_result: Option<Time>,
    /// When a ttl check runs out (none once it ran out, until the next result).
    ttl_due: Option<Time>,
}

/// The checks of this node's services.
#[derive(Clone, Debug, Default)]
pub(crate) struct HealthChecks {
    services: BTreeMap<String, Vec<Check>>,
}

impl HealthChecks {
    /// Replaces the checks of `service` (none: it has no checks any more). Returns the
    /// service's health before any result (its checks' initial statuses aggregated).
    pub(crate) fn set(
        &mut self,
        now: Time,
        service: &str,
        checks: Vec<CheckParams>,
    ) -> Result<Option<Health>, ChecksError> {
        let others: usize = self
            .services
            .iter()
            .filter(|(s, _)| *s != service)
            .map(|(_, v)| v.len())
            .sum();
        if others + checks.len() > MAX_CHECKS {
            return Err(ChecksError::TooMany);
        }
        for (i, c) in checks.iter().enumerate() {
            let twice = checks[..i].iter().any(|o| o.id == c.id)
                || self
                    .services
                    .iter()
                    .filter(|(s, _)| *s != service)
                    .any(|(_, v)| v.iter().any(|o| o.params.id == c.id));
            if twice {
                return Err(ChecksError::Duplicate(c.id.clone()));
            }
        }
        self.services.remove(service);
        if checks.is_empty() {
            return Ok(None);
        }
        let initial = checks.iter().map(|c| c.initial).max();
        let checks = checks
            .into_iter()
            .map(|params| Check {
                damper: Damper::new(
                    params.initial,
                    params.success_before_passing,
                    params.failures_before_critical,
                ),
                results: 0,
                last_result: None,
                ttl_due: params.ttl.map(|t| now.plus(t)),
                params,
            })
            .collect();
        self.services.insert(service.to_string(), checks);
        Ok(initial)
    }

    /// One raw result of check `id`: damped into its status (`force`: at once, whatever the
    /// thresholds); a ttl check's ttl starts again. Returns its service, or `None` for an
    /// unknown check.
    pub(crate) fn result(
        &mut self,
        now: Time,
        id: &str,
        health: Health,
        output: String,
        force: bool,
    ) -> Option<String> {
        let (service, check) = self
            .services
            .iter_mut()
            .find_map(|(s, v)| v.iter_mut().find(|c| c.params.id == id).map(|c| (s, c)))?;
        check.results += 1;
        check.last_result = Some(now);
        if force {
            check.damper.force(health, output);
        } else {
            check.damper.apply(health, output);
        }
        check.ttl_due = check.params.ttl.map(|t| now.plus(t));
        Some(service.clone())
    }

    /// The ttl checks whose ttl ran out by `now` turn critical (once: the next result starts
    /// the ttl again). Returns the services they belong to.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<String> {
        let mut out = Vec::new();
        for (service, checks) in &mut self.services {
            let mut any = false;
            for c in checks.iter_mut() {
                if let (Some(due), Some(ttl)) = (c.ttl_due, c.params.ttl) {
                    if due <= now {
                        c.ttl_due = None;
                        c.results += 1;
                        c.last_result = Some(now);
                        c.damper.force(
                            Health::Critical,
                            format!("TTL expired: no update within {} ms", ttl.as_millis()),
                        );
                        any = true;
                    }
                }
            }
            if any {
                out.push(service.clone());
            }
        }
        out
    }

    /// When the next ttl runs out.
    pub(crate) fn next_due(&self) -> Option<Time> {
        self.services
            .values()
            .flatten()
            .filter_map(|c| c.ttl_due)
            .min()
    }

    /// The health of `service` as the record carries it (the worst of its checks, with the
    /// first line of that check's output). `None` without checks.
    pub(crate) fn current(&self, service: &str) -> Option<Published> {
        let checks = self.services.get(service)?;
        aggregate(
            checks
                .iter()
                .map(|c| (c.damper.status, c.damper.output.as_str())),
        )
        .map(|(health, o)| Published {
            health,
            output: output_line(o),
        })
    }

    /// Every check, by service then registered order.
    pub(crate) fn list(&self) -> Vec<CheckStatus> {
        self.services
            .iter()
            .flat_map(|(s, v)| v.iter().map(move |c| status(s, c)))
            .collect()
    }

    /// Check `id`, if registered.
    pub(crate) fn get(&self, id: &str) -> Option<CheckStatus> {
        self.services
            .iter()
            .find_map(|(s, v)| v.iter().find(|c| c.params.id == id).map(|c| status(s, c)))
    }
}

fn status(service: &str, c: &Check) -> CheckStatus {
    CheckStatus {
        id: c.params.id.clone(),
        service: service.to_string(),
        status: c.damper.status,
        output: c.damper.output.clone(),
        results: c.results,
        last_result: c.last_result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::TestNet;
    use crate::timer_tests::formed;
    use crate::Service;
    use Health::{Critical, Passing, Warning};

    #[test]
    fn damping_waits_for_consecutive_results() {
        let mut d = Damper::new(Passing, 2, 3);
        assert!(!d.apply(Critical, "a".into()));
        assert!(!d.apply(Critical, "b".into()));
        assert_eq!(d.status, Passing);
        // A pass in between resets the count.
        assert!(!d.apply(Passing, "ok".into()));
        assert!(!d.apply(Critical, "c".into()));
        assert!(!d.apply(Critical, "d".into()));
        assert!(d.apply(Critical, "e".into()));
        assert_eq!((d.status, d.output.as_str()), (Critical, "e"));
        assert!(!d.apply(Passing, "p1".into()));
        assert_eq!(d.output, "e");
        assert!(d.apply(Passing, "p2".into()));
        assert_eq!(d.status, Passing);
        assert!(d.apply(Warning, "slow".into()));
        assert_eq!(d.status, Warning);
    }

    #[test]
    fn no_damping_by_default_and_output_is_bounded() {
        let mut d = Damper::new(Critical, 1, 1);
        assert!(d.apply(Passing, "x".repeat(10_000)));
        assert_eq!(d.output.len(), MAX_OUTPUT);
        assert!(d.apply(Critical, "é".repeat(3000)));
        assert!(d.output.len() <= MAX_OUTPUT);
    }

    #[test]
    fn worst_check_decides() {
        assert_eq!(aggregate([]), None);
        assert_eq!(
            aggregate([
                (Passing, "a"),
                (Critical, "b"),
                (Warning, "c"),
                (Critical, "d")
            ]),
            Some((Critical, "b"))
        );
    }

    fn check(id: &str, fbc: u32, ttl: Option<u64>) -> CheckParams {
        CheckParams {
            id: id.into(),
            initial: Passing,
            success_before_passing: 1,
            failures_before_critical: fbc,
            ttl: ttl.map(Duration::from_millis),
        }
    }

    #[test]
    fn the_table_is_bounded_and_ids_are_unique() {
        let mut t = HealthChecks::default();
        let many: Vec<CheckParams> = (0..MAX_CHECKS)
            .map(|i| check(&i.to_string(), 1, None))
            .collect();
        assert_eq!(t.set(Time(0), "a", many.clone()), Ok(Some(Passing)));
        assert_eq!(
            t.set(Time(0), "b", vec![check("x", 1, None)]),
            Err(ChecksError::TooMany)
        );
        // Replacing a service's own checks is not counted twice.
        assert!(t.set(Time(0), "a", many).is_ok());
        assert!(t.set(Time(0), "a", vec![]).is_ok());
        assert!(t.set(Time(0), "b", vec![check("x", 1, None)]).is_ok());
        assert_eq!(
            t.set(Time(0), "c", vec![check("x", 1, None)]),
            Err(ChecksError::Duplicate("x".into()))
        );
        assert_eq!(
            t.set(Time(0), "c", vec![check("y", 1, None), check("y", 1, None)]),
            Err(ChecksError::Duplicate("y".into()))
        );
        assert_eq!(
            t.result(Time(1), "nope", Critical, String::new(), false),
            None
        );
    }

    fn service(name: &str) -> Service {
        Service {
            name: name.into(),
            port: 80,
            tags: Default::default(),
            health: None,
            health_output: None,
        }
    }

    /// Raw results go in, the core decides: thresholds damp them, a flapping check is paced
    /// (rate limit, on the `Health` timer), a ttl check runs out on the `Checks` timer (both
    /// reported by `poll_timeout`), outputs are cut to fit the record, and nothing is
    /// published after a leave.
    #[test]
    fn the_core_damps_paces_fits_and_stops_at_a_leave() {
        let mut net = TestNet::new(3);
        assert!(net.run_until_pred(5_000, formed));
        net.call(0, |n, now| n.register_service(now, service("web")).unwrap());
        // Registering the checks puts the initial status in the record.
        let version = |net: &TestNet| net.nodes[0].own_record().version;
        let v0 = version(&net);
        net.call(0, |n, now| {
            n.set_checks(now, "web", vec![check("web-http", 3, None)])
                .unwrap()
        });
        assert_eq!(version(&net), v0 + 1);
        let seen = |net: &TestNet, i: usize| {
            net.nodes[i]
                .services()
                .get("web")
                .and_then(|v| v.iter().find(|s| s.node == "n0").map(|s| s.health))
        };
        assert!(net.run_until_pred(2_000, |net| seen(net, 1) == Some(Some(Passing))));
        net.run_for_ms(3_000);
        // Two failures are under the threshold of three: nothing changes, nothing published.
        let v1 = version(&net);
        for _ in 0..2 {
            net.call(0, |n, now| {
                n.check_result(now, "web-http", Critical, "refused")
                    .unwrap();
            });
        }
        assert_eq!(version(&net), v1);
        assert_eq!(net.nodes[0].check("web-http").unwrap().status, Passing);
        assert_eq!(net.nodes[0].stats().health_published, 0);
        // The third is: published at once (nothing was published for the gap).
        let t0 = net.now;
        net.call(0, |n, now| {
            let st = n
                .check_result(now, "web-http", Critical, "refused\nmore")
                .unwrap();
            assert_eq!((st.status, st.results), (Critical, 3));
        });
        assert_eq!(version(&net), v1 + 1);
        assert_eq!(net.nodes[0].stats().health_published, 1);
        assert_eq!(
            net.nodes[0].check_health("web"),
            Some((Critical, "refused".to_string()))
        );
        // Flapping within the gap (a pass, three failures, a pass ...): nothing published
        // until the gap ends, then only the last state (passing).
        for k in 0..9u64 {
            net.run_for_ms(100);
            let h = if k % 4 == 0 { Passing } else { Critical };
            net.call(0, |n, now| {
                n.check_result(now, "web-http", h, "flap").unwrap();
            });
            assert_eq!(version(&net), v1 + 1, "published within the gap");
        }
        let due = Time(t0.0 + crate::health_rate::MIN_GAP.as_millis() as u64);
        assert!(net.nodes[0].poll_timeout().is_some_and(|t| t <= due));
        net.run_until(Time(due.0 - 1));
        assert_eq!(version(&net), v1 + 1);
        net.run_until(due);
        assert_eq!(version(&net), v1 + 2);
        assert_eq!(net.nodes[0].stats().health_published, 2);
        assert_eq!(
            net.nodes[0].own_meta().services["web"].health,
            Some(Passing)
        );
        // A ttl check: critical once its ttl passes without a result, on a timer the node
        // reports (and not before).
        net.run_for_ms(3_000);
        net.call(0, |n, now| n.register_service(now, service("job")).unwrap());
        let armed = net.now;
        net.call(0, |n, now| {
            n.set_checks(now, "job", vec![check("job-ttl", 1, Some(10_000))])
                .unwrap()
        });
        assert!(net.nodes[0]
            .poll_timeout()
            .is_some_and(|t| t <= Time(armed.0 + 10_000)));
        net.run_until(Time(armed.0 + 9_999));
        assert_eq!(net.nodes[0].check("job-ttl").unwrap().status, Passing);
        net.run_until(Time(armed.0 + 10_000));
        let st = net.nodes[0].check("job-ttl").unwrap();
        assert_eq!((st.status, st.results), (Critical, 1));
        assert!(st.output.starts_with("TTL expired"));
        assert!(net.run_until_pred(3_000, |net| {
            net.nodes[1].services().get("job").is_some_and(|v| {
                v.iter()
                    .any(|s| s.node == "n0" && s.health == Some(Critical))
            })
        }));
        // Outputs too long for the record are cut to fit; every status goes through.
        let long = "x".repeat(200);
        for i in 0..40 {
            let name = format!("s{i:02}{}", "y".repeat(20));
            net.call(0, |n, now| {
                n.register_service(now, service(&name)).unwrap_or_default();
                let _ = n.set_checks(now, &name, vec![check(&name, 1, None)]);
            });
        }
        net.run_for_ms(3_000);
        let names: Vec<String> = net.nodes[0].own_meta().services.keys().cloned().collect();
        for name in names.iter().filter(|n| n.starts_with('s')) {
            net.call(0, |n, now| {
                n.check_result(now, name, Critical, &long);
            });
        }
        let own = net.nodes[0].own_meta().clone();
        assert!(own.validate().is_ok());
        let fitted = own.services.values().filter(|s| s.name.starts_with('s'));
        assert!(fitted.clone().count() > 1);
        assert!(fitted.into_iter().all(|s| s.health == Some(Critical)));
        // After a leave, results are counted but nothing more is published.
        net.call(0, |n, now| n.leave(now).unwrap());
        let v = version(&net);
        net.run_for_ms(3_000);
        net.call(0, |n, now| {
            let st = n.check_result(now, "web-http", Passing, "back").unwrap();
            assert_eq!(st.status, Passing);
        });
        net.run_for_ms(3_000);
        assert_eq!(version(&net), v);
    }
}
