//! Service health checks, run by the agent that owns the service.
//!
//! `spec` (`config::checks`: checks are config) is the configured shape and its validation, `probe` runs one http/tcp/exec probe
//! (`tls` configures the https ones),
//! `damper` turns results into a status (thresholds) and a service's checks into its health.
//! This file owns the `CheckManager`: one task per check (at most one probe of a check at a
//! time; a ttl check's task only waits for its deadline), the checks by id for the ttl
//! route. Each result's service status (the worst of its checks) goes to the core
//! (`Node::offer_health`), which publishes it in the node's record on its own schedule (paced,
//! fitted, never after a leave). Nothing here blocks the event loop: probes are async, and
//! the node's lock is taken only to hand a result over. It must not decide what is published
//! or served (the core does).

pub mod damper;
pub mod probe;
pub mod tls;

// The configured shape of a check is config (`config::checks`); the agent runs it.
pub use crate::config::checks as spec;
pub use spec::{resolve_services, CheckDef, CheckError, CheckKind, CheckSpec};

use crate::agent::shared::AgentShared;
use damper::Damper;
use serde::{Deserialize, Serialize};
use shoal_core::output_line;
use shoal_core::Published;
use shoal_core::{Health, Node, NodeMeta, Time};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::debug;

/// One check as `GET /v1/checks` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    pub id: String,
    pub service: String,
    /// `http`, `tcp`, `exec` or `ttl`.
    pub kind: String,
    /// What it probes: the URL, the address, the argv joined by spaces, or the ttl.
    pub target: String,
    pub status: Health,
    /// Output of the result behind `status` (at most 4 KiB).
    pub output: String,
    /// Results taken so far (probes run, or ttl updates and expiries).
    pub results: u64,
    /// Agent clock (ms) of the last result, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result_ms: Option<u64>,
}

struct CheckState {
    damper: Damper,
    results: u64,
    last_result: Option<Time>,
}

struct Check {
    def: CheckDef,
    state: Mutex<CheckState>,
    /// A ttl update arrived: the ttl starts again.
    ttl_reset: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Check {
    fn lock(&self) -> MutexGuard<'_, CheckState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Checks by service, in configured order.
    services: BTreeMap<String, Vec<Arc<Check>>>,
    /// The config file's checks when it was last read (start or SIGHUP).
    file_checks: BTreeMap<String, Vec<CheckDef>>,
}

/// The agent's checks. Lives in `AgentShared`; `attach` gives it the way back to the node.
#[derive(Default)]
pub struct CheckManager {
    inner: Mutex<Inner>,
    shared: OnceLock<Weak<AgentShared>>,
}

/// The health a service starts with: its checks' initial statuses aggregated.
pub fn initial_health(defs: &[CheckDef]) -> Option<Health> {
    defs.iter().map(|d| d.initial).max()
}

/// Gives every checked service of `meta` its initial health (before its first result).
pub fn with_initial_health(meta: &mut NodeMeta, checks: &[(String, Vec<CheckDef>)]) {
    for (service, defs) in checks {
        if let (Some(s), Some(h)) = (meta.services.get_mut(service), initial_health(defs)) {
            s.health = Some(h);
            s.health_output = None;
        }
    }
}

impl CheckManager {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects the manager to its agent (call once, before the checks start).
    pub fn attach(&self, shared: &Arc<AgentShared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
    }

    /// Stops every check (the agent is stopping).
    pub fn stop_all(&self) {
        let services = std::mem::take(&mut self.lock().services);
        for c in services.values().flatten() {
            c.stop();
        }
    }

    /// Refuses ids that another service's checks already use.
    pub fn check_ids(&self, service: &str, defs: &[CheckDef]) -> Result<(), CheckError> {
        let inner = self.lock();
        let total: usize = inner
            .services
            .iter()
            .filter(|(s, _)| *s != service)
            .map(|(_, v)| v.len())
            .sum();
        if total + defs.len() > spec::MAX_CHECKS {
            return Err(CheckError::TooManyOnAgent);
        }
        for (s, checks) in &inner.services {
            if s == service {
                continue;
            }
            if let Some(c) = checks
                .iter()
                .find(|c| defs.iter().any(|d| d.id == c.def.id))
            {
                return Err(CheckError::Duplicate(c.def.id.clone()));
            }
        }
        Ok(())
    }

    /// Replaces the checks of `service` (none: it has no checks any more) and starts them.
    /// `now`: the service was just published with its initial health. Under the node's lock
    /// (`node`), so that no result is handed over before the service exists.
    pub fn set_checks(&self, node: &mut Node, service: &str, defs: Vec<CheckDef>, now: Time) {
        let mut inner = self.lock();
        if let Some(old) = inner.services.remove(service) {
            for c in old {
                c.stop();
            }
        }
        node.forget_health(now, service);
        if defs.is_empty() {
            return;
        }
        if let Some(h) = initial_health(&defs) {
            node.health_registered(now, service, h);
        }
        let weak = self.shared.get().cloned().unwrap_or_default();
        let mut checks = Vec::new();
        for def in defs {
            let c = Arc::new(Check {
                state: Mutex::new(CheckState {
                    damper: Damper::new(
                        def.initial,
                        def.success_before_passing,
                        def.failures_before_critical,
                    ),
                    results: 0,
                    last_result: None,
                }),
                def,
                ttl_reset: Notify::new(),
                task: Mutex::new(None),
            });
            let task = tokio::spawn(run_check(weak.clone(), c.clone()));
            *c.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
            checks.push(c);
        }
        inner.services.insert(service.to_string(), checks);
    }

    /// Starts the checks at agent start (the services carry their initial health already):
    /// `file` is what the config file says (the base of a reload), `run` what runs (the file's
    /// and the persisted API registrations', merged: `agent::registrations::startup`).
    pub fn start_checks(
        &self,
        node: &mut Node,
        file: Vec<(String, Vec<CheckDef>)>,
        run: Vec<(String, Vec<CheckDef>)>,
        now: Time,
    ) {
        self.lock().file_checks = file.into_iter().collect();
        for (service, defs) in run {
            self.set_checks(node, &service, defs, now);
        }
    }

    /// SIGHUP: the file's checks of a service apply when they changed in the file since it
    /// was last read (and the service is still registered); the others stay. `meta` (the
    /// merged metadata about to be set) gets each checked service's health. Returns the
    /// checks to start once `meta` is set (`apply_reload`).
    pub fn plan_reload(
        &self,
        new_file: Vec<(String, Vec<CheckDef>)>,
        meta: &mut NodeMeta,
    ) -> Vec<(String, Vec<CheckDef>)> {
        let new_file: BTreeMap<String, Vec<CheckDef>> = new_file.into_iter().collect();
        let mut restart = Vec::new();
        {
            let mut inner = self.lock();
            let names: std::collections::BTreeSet<String> = inner
                .file_checks
                .keys()
                .chain(new_file.keys())
                .cloned()
                .collect();
            for name in names {
                let (old, new) = (inner.file_checks.get(&name), new_file.get(&name));
                if old != new && meta.services.contains_key(&name) {
                    restart.push((name, new.cloned().unwrap_or_default()));
                }
            }
            inner.file_checks = new_file;
        }
        self.overlay(meta);
        for (name, defs) in &restart {
            if let Some(s) = meta.services.get_mut(name) {
                s.health = initial_health(defs);
                s.health_output = None;
            }
        }
        restart
    }

    /// Starts what `plan_reload` returned and stops the checks of services `meta` lost.
    pub fn apply_reload(
        &self,
        node: &mut Node,
        restart: Vec<(String, Vec<CheckDef>)>,
        meta: &NodeMeta,
        now: Time,
    ) {
        for (name, defs) in restart {
            self.set_checks(node, &name, defs, now);
        }
        self.retain_services(node, meta, now);
    }

    /// Stops the checks of services `meta` no longer has (deregistered, or removed by a
    /// reload).
    pub fn retain_services(&self, node: &mut Node, meta: &NodeMeta, now: Time) {
        let gone: Vec<String> = self
            .lock()
            .services
            .keys()
            .filter(|s| !meta.services.contains_key(*s))
            .cloned()
            .collect();
        for s in gone {
            self.set_checks(node, &s, Vec::new(), now);
        }
    }

    /// Whether `service` has checks here.
    pub fn has_checks(&self, service: &str) -> bool {
        self.lock().services.contains_key(service)
    }

    /// The current health of every checked service (for a reload that rewrote a service).
    pub fn overlay(&self, meta: &mut NodeMeta) {
        let inner = self.lock();
        for (name, checks) in &inner.services {
            if let (Some(svc), Some(p)) = (meta.services.get_mut(name), current(checks)) {
                svc.health = Some(p.health);
                svc.health_output = Some(p.output);
            }
        }
    }

    /// A ttl update from the app (`PUT /v1/checks/{id}/pass|warn|fail`).
    pub fn ttl_update(
        &self,
        id: &str,
        health: Health,
        output: String,
        now: Time,
    ) -> Result<CheckView, CheckError> {
        let check = self
            .find(id)
            .ok_or_else(|| CheckError::NotFound(id.into()))?;
        if !matches!(check.def.kind, CheckKind::Ttl(_)) {
            return Err(CheckError::NotTtl {
                id: id.into(),
                kind: check.def.kind.word(),
            });
        }
        let output = if output.trim().is_empty() {
            format!("TTL check updated: {health}")
        } else {
            output
        };
        self.on_result(&check, health, output, now, false);
        check.ttl_reset.notify_one();
        Ok(view(&check))
    }

    fn find(&self, id: &str) -> Option<Arc<Check>> {
        self.lock()
            .services
            .values()
            .flatten()
            .find(|c| c.def.id == id)
            .cloned()
    }

    /// Every check, by service then configured order.
    pub fn list(&self) -> Vec<CheckView> {
        self.lock()
            .services
            .values()
            .flatten()
            .map(|c| view(c))
            .collect()
    }

    /// A result of `check`; `force`: set the status whatever the thresholds (ttl expiry).
    fn on_result(
        &self,
        check: &Arc<Check>,
        health: Health,
        output: String,
        now: Time,
        force: bool,
    ) {
        {
            let mut st = check.lock();
            st.results += 1;
            st.last_result = Some(now);
            let changed = if force {
                st.damper.force(health, output)
            } else {
                st.damper.apply(health, output)
            };
            if changed {
                debug!(check = %check.def.id, status = %st.damper.status, "check status changed");
            }
        }
        let p = {
            let inner = self.lock();
            let Some(checks) = inner.services.get(&check.def.service) else {
                return; // replaced or removed meanwhile
            };
            if !checks.iter().any(|c| Arc::ptr_eq(c, check)) {
                return;
            }
            current(checks)
        };
        let (Some(p), Some(sh)) = (p, self.shared.get().and_then(Weak::upgrade)) else {
            return;
        };
        // The core publishes it in the record when its pacing allows.
        sh.with_node(|n, now| n.offer_health(now, &check.def.service, p.health, &p.output));
    }
}

/// A service's health from its checks, as the record carries it.
fn current(checks: &[Arc<Check>]) -> Option<Published> {
    let states: Vec<(Health, String)> = checks
        .iter()
        .map(|c| {
            let st = c.lock();
            (st.damper.status, st.damper.output.clone())
        })
        .collect();
    damper::aggregate(states.iter().map(|(h, o)| (*h, o.as_str()))).map(|(h, o)| Published {
        health: h,
        output: output_line(o),
    })
}

fn view(c: &Check) -> CheckView {
    let st = c.lock();
    CheckView {
        id: c.def.id.clone(),
        service: c.def.service.clone(),
        kind: c.def.kind.word().to_string(),
        target: match &c.def.kind {
            CheckKind::Http(h) => h.uri.to_string(),
            CheckKind::Tcp(a) => a.to_string(),
            CheckKind::Exec(v) => v.join(" "),
            CheckKind::Ttl(d) => format!("{} ms", d.as_millis()),
        },
        status: st.damper.status,
        output: st.damper.output.clone(),
        results: st.results,
        last_result_ms: st.last_result.map(|t| t.as_millis()),
    }
}

/// One check's task: probe, report, wait out the interval (from the start of the probe), so
/// that a check never runs twice at once; or, for a ttl check, turn critical when no update
/// came within the ttl.
async fn run_check(shared: Weak<AgentShared>, check: Arc<Check>) {
    if let CheckKind::Ttl(ttl) = check.def.kind {
        loop {
            tokio::select! {
                _ = check.ttl_reset.notified() => continue,
                _ = tokio::time::sleep(ttl) => {}
            }
            let Some(sh) = shared.upgrade() else { return };
            let now = sh.now();
            sh.checks.on_result(
                &check,
                Health::Critical,
                format!("TTL expired: no update within {} ms", ttl.as_millis()),
                now,
                true,
            );
            drop(sh);
            // Expired: wait for the next update before counting again.
            check.ttl_reset.notified().await;
        }
    }
    loop {
        let started = tokio::time::Instant::now();
        let (health, output) = probe::probe(&check.def.kind, check.def.timeout).await;
        let Some(sh) = shared.upgrade() else { return };
        let now = sh.now();
        sh.checks.on_result(&check, health, output, now, false);
        drop(sh);
        tokio::time::sleep_until(started + check.def.interval).await;
    }
}
