//! Service health checks, run by the agent that owns the service.
//!
//! `spec` (`config::checks`: checks are config) is the configured shape and its validation, `probe` runs one http/tcp/exec probe
//! (`tls` configures the https ones),
//! This file owns the `CheckManager`: the checks by service and by id (for the ttl route),
//! and one task per http/tcp/exec check (at most one probe of a check at a time). The checks
//! are registered with the core (`Node::set_checks`) and each raw result goes to it
//! (`Node::check_result`): the core damps it into the check's status (thresholds, a ttl
//! check running out on its own timer), takes the worst of a service's checks and publishes
//! it in the node's record on its own schedule (paced, fitted, never after a leave). Nothing
//! here blocks the event loop: probes are async, and the node's lock is taken only to hand a
//! result over. It must not decide a status, nor what is published or served (the core does).

pub mod probe;
pub mod tls;

// The configured shape of a check is config (`config::checks`); the agent runs it.
pub use crate::config::checks as spec;
pub use spec::{resolve_services, CheckDef, CheckError, CheckKind, CheckSpec};

use serde::{Deserialize, Serialize};
use shoal_core::{CheckParams, CheckStatus};
use shoal_core::{Health, Node, NodeMeta, Time};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

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

struct Check {
    def: CheckDef,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Check {
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

/// What the checks need of the agent that holds them: its node (under the node's lock) and
/// its `CheckManager`. `AgentShared` implements it; the checks hold it weakly, so that they
/// neither keep the agent alive nor import it.
pub trait CheckHost: Send + Sync {
    /// The node's check states (`Node::checks`), read under the node's lock.
    fn check_states(&self) -> Vec<CheckStatus>;
    /// Runs `f` on the node with the current time, then wakes the event loop to flush what
    /// it produced (as `AgentShared::with_node`).
    fn on_node(&self, f: &mut dyn FnMut(&mut Node, Time));
    /// The agent's checks.
    fn check_manager(&self) -> &CheckManager;
}

/// The agent's checks. Lives in `AgentShared`; `attach` gives it the way back to the node.
#[derive(Default)]
pub struct CheckManager {
    inner: Mutex<Inner>,
    shared: OnceLock<Weak<dyn CheckHost>>,
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
    pub fn attach<H: CheckHost + 'static>(&self, shared: &Arc<H>) {
        let weak: Weak<H> = Arc::downgrade(shared);
        let _ = self.shared.set(weak);
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
        let params = defs.iter().map(params).collect();
        if let Err(e) = node.set_checks(now, service, params) {
            // `check_ids` refused these before; nothing runs that the core does not know.
            warn!(service, error = %e, "checks not registered");
            return;
        }
        if defs.is_empty() {
            return;
        }
        let weak = self.shared.get().cloned();
        let mut checks = Vec::new();
        for def in defs {
            let is_ttl = matches!(def.kind, CheckKind::Ttl(_));
            let c = Arc::new(Check {
                def,
                task: Mutex::new(None),
            });
            // A ttl check has nothing to probe: the app reports, the core's timer runs it out.
            if !is_ttl {
                let task = tokio::spawn(run_check(weak.clone(), c.clone()));
                *c.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
            }
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
        node: &Node,
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
        self.overlay(node, meta);
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
    pub fn overlay(&self, node: &Node, meta: &mut NodeMeta) {
        let inner = self.lock();
        for name in inner.services.keys() {
            if let (Some(svc), Some((h, o))) =
                (meta.services.get_mut(name), node.check_health(name))
            {
                svc.health = Some(h);
                svc.health_output = Some(o);
            }
        }
    }

    /// A ttl update from the app (`PUT /v1/checks/{id}/pass|warn|fail`): a result like a
    /// probe's (damped by the core), and the ttl starts again.
    pub fn ttl_update(
        &self,
        id: &str,
        health: Health,
        output: String,
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
        self.on_result(&check, health, &output)
            .map(|st| view(&check.def, &st))
            .ok_or_else(|| CheckError::NotFound(id.into()))
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
        let defs: Vec<Arc<Check>> = self.lock().services.values().flatten().cloned().collect();
        let Some(sh) = self.shared.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        let states: BTreeMap<String, CheckStatus> = sh
            .check_states()
            .into_iter()
            .map(|st| (st.id.clone(), st))
            .collect();
        defs.iter()
            .filter_map(|c| states.get(&c.def.id).map(|st| view(&c.def, st)))
            .collect()
    }

    /// A raw result of `check`, handed to the core unless the check was replaced or removed
    /// meanwhile. Returns the check's state.
    fn on_result(&self, check: &Arc<Check>, health: Health, output: &str) -> Option<CheckStatus> {
        let sh = self.shared.get().and_then(Weak::upgrade)?;
        let mut st = None;
        sh.on_node(&mut |n, now| st = self.hand_over(n, now, check, health, output));
        st
    }

    /// `on_result` under the node's lock, as `set_checks`: a replaced check's last result is
    /// dropped.
    fn hand_over(
        &self,
        n: &mut Node,
        now: Time,
        check: &Arc<Check>,
        health: Health,
        output: &str,
    ) -> Option<CheckStatus> {
        let current = self
            .lock()
            .services
            .get(&check.def.service)
            .is_some_and(|v| v.iter().any(|c| Arc::ptr_eq(c, check)));
        if !current {
            return None;
        }
        let before = n.check(&check.def.id);
        let st = n.check_result(now, &check.def.id, health, output)?;
        if before.is_some_and(|b| b.status != st.status) {
            debug!(check = %check.def.id, status = %st.status, "check status changed");
        }
        Some(st)
    }
}

/// The core's registration of a configured check.
fn params(def: &CheckDef) -> CheckParams {
    CheckParams {
        id: def.id.clone(),
        initial: def.initial,
        success_before_passing: def.success_before_passing,
        failures_before_critical: def.failures_before_critical,
        ttl: match def.kind {
            CheckKind::Ttl(d) => Some(d),
            _ => None,
        },
    }
}

fn view(def: &CheckDef, st: &CheckStatus) -> CheckView {
    CheckView {
        id: def.id.clone(),
        service: def.service.clone(),
        kind: def.kind.word().to_string(),
        target: match &def.kind {
            CheckKind::Http(h) => h.uri.to_string(),
            CheckKind::Tcp(a) => a.to_string(),
            CheckKind::Exec(v) => v.join(" "),
            CheckKind::Ttl(d) => format!("{} ms", d.as_millis()),
        },
        status: st.status,
        output: st.output.clone(),
        results: st.results,
        last_result_ms: st.last_result.map(|t| t.as_millis()),
    }
}

/// One http/tcp/exec check's task: probe, report, wait out the interval (from the start of
/// the probe), so that a check never runs twice at once.
/// `shared` is `None` for a manager not attached: the task ends after its first probe.
async fn run_check(shared: Option<Weak<dyn CheckHost>>, check: Arc<Check>) {
    loop {
        let started = tokio::time::Instant::now();
        let (health, output) = probe::probe(&check.def.kind, check.def.timeout).await;
        let Some(sh) = shared.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        sh.check_manager().on_result(&check, health, &output);
        drop(sh);
        tokio::time::sleep_until(started + check.def.interval).await;
    }
}
