//! The simulator's check model: each provider of a service with `[service.check]` registers
//! one check with its node (`Node::set_checks`: the thresholds `failures_before_critical`,
//! `success_before_passing`) and runs it every `interval` (a seeded phase per instance); a
//! `check-fail` fault turns the results of chosen instances (or a fraction of all of them: a
//! shared dependency down) critical for a while. Each raw result goes to the core
//! (`Node::check_result`), as the agent's probes do: the core damps it, paces it and
//! publishes it in the node's record.
//!
//! Owns the model's outcomes, the failing windows and the measure: no-passing-provider
//! node-seconds (a running node whose passing view of a checked service is empty while a
//! provider of it runs). Must not decide a check's status (the core's damper does) nor what
//! is served (the core's health guard does).

use serde::{Deserialize, Serialize};
use shoal_core::CheckParams;
use shoal_core::{Health, Node, Time};

/// Per service: node-seconds without a passing provider, and the nodes affected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthOutcome {
    /// Sum over checked services.
    pub no_passing_s: f64,
    pub services: Vec<ServiceHealthOutcome>,
    /// Status changes published in records (all nodes, all services).
    pub published: u64,
    /// Check results taken (all instances).
    pub results: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceHealthOutcome {
    pub name: String,
    pub no_passing_s: f64,
    pub nodes_affected: u32,
}

/// The model's state for one run.
pub struct SimHealth {
    /// Per checked service: (index in the scenario, name, interval ms, sbp, fbc).
    pub checked: Vec<(usize, String, u64, u32, u32)>,
    /// Per (host, checked service): active `check-fail` windows covering it.
    failing: Vec<u16>,
    no_passing_ms: Vec<u64>,
    hosts: usize,
    published: u64,
    results: u64,
}

impl SimHealth {
    pub fn new(hosts: usize, checked: Vec<(usize, String, u64, u32, u32)>) -> Self {
        let k = checked.len();
        SimHealth {
            checked,
            failing: vec![0; hosts * k],
            no_passing_ms: vec![0; hosts * k],
            hosts,
            published: 0,
            results: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.checked.is_empty()
    }

    /// Position of scenario service `svc` among the checked ones.
    pub fn slot_of(&self, svc: usize) -> Option<usize> {
        self.checked.iter().position(|c| c.0 == svc)
    }

    fn at(&self, host: usize, slot: usize) -> usize {
        host * self.checked.len() + slot
    }

    /// Host `host` (re)started offering checked service `slot`: its check is registered
    /// with its new node, passing at first (a new node damps and paces afresh).
    pub fn start(&self, node: &mut Node, slot: usize, now: Time) {
        let (_, name, _, sbp, fbc) = &self.checked[slot];
        let check = CheckParams {
            id: name.clone(),
            initial: Health::Passing,
            success_before_passing: *sbp,
            failures_before_critical: *fbc,
            ttl: None,
        };
        // One check per service, ids the service names: nothing to refuse.
        let _ = node.set_checks(now, name, vec![check]);
    }

    /// Adds the statuses a node published in its life (read when it stops, or at the end).
    pub fn add_published(&mut self, n: u64) {
        self.published += n;
    }

    /// A `check-fail` window begins (`on`) or ends for `host`'s instance of `slot`.
    pub fn set_failing(&mut self, host: usize, slot: usize, on: bool) {
        let i = self.at(host, slot);
        self.failing[i] = if on {
            self.failing[i].saturating_add(1)
        } else {
            self.failing[i].saturating_sub(1)
        };
    }

    /// One check run of `host`'s instance of `slot` at `now`: its raw result goes to the core.
    pub fn check(&mut self, node: &mut Node, host: usize, slot: usize, now: Time) {
        let i = self.at(host, slot);
        let (result, output) = if self.failing[i] > 0 {
            (Health::Critical, "dependency unreachable")
        } else {
            (Health::Passing, "ok")
        };
        self.results += 1;
        let _ = node.check_result(now, &self.checked[slot].1, result, output);
    }

    /// Samples observer `o`'s passing view of each checked service (`live`: a provider of it
    /// runs), adding `step` ms where it is empty.
    pub fn sample(&mut self, o: usize, node: &Node, live: &[bool], step: u64) {
        let services = node.services();
        for (slot, live) in live.iter().enumerate().take(self.checked.len()) {
            if !live {
                continue;
            }
            let name = &self.checked[slot].1;
            let passing = services
                .get(name)
                .is_some_and(|v| v.iter().any(|i| i.in_passing_view(false)));
            if !passing {
                let i = self.at(o, slot);
                self.no_passing_ms[i] += step;
            }
        }
    }

    pub fn outcome(&self) -> HealthOutcome {
        let k = self.checked.len();
        let mut out = HealthOutcome {
            published: self.published,
            results: self.results,
            ..HealthOutcome::default()
        };
        for (slot, c) in self.checked.iter().enumerate() {
            let mut total = 0u64;
            let mut affected = 0u32;
            for h in 0..self.hosts {
                let v = self.no_passing_ms[h * k + slot];
                total += v;
                affected += u32::from(v > 0);
            }
            out.no_passing_s += total as f64 / 1000.0;
            out.services.push(ServiceHealthOutcome {
                name: c.1.clone(),
                no_passing_s: total as f64 / 1000.0,
                nodes_affected: affected,
            });
        }
        out
    }
}
