//! The node's queries, in one place: identity and config, the served view (members, services,
//! a member's history), the guard's and health guard's reports, leave progress, Lifeguard's
//! and the transport's counters. Every method reads the state and changes nothing.
//!
//! Queries that belong to one concern's own state stay with it: keyring and trust
//! (`trust.rs`), member keys (`identity.rs`), outlier ejections (`outlier.rs`), user events
//! (`fleet.rs`), the snapshot (`restart.rs`).
//!
//! A child module of `node` (it reaches the node's fields). Must not change state and stays
//! sans-IO.

use super::{Node, NodeConfig, NodeError, Stats};
use crate::guard::GuardReport;
use crate::identity::NodeId;
use crate::meta::{MetaRecord, NodeMeta};
use crate::time::Time;
use crate::timers::TimerName;
use crate::truth::{Instance, MemberView, ServedStatus, TruthState};
use std::collections::BTreeMap;
use std::net::SocketAddr;

impl Node {
    /// This node's identity.
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// This node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// This node's own metadata.
    pub fn own_meta(&self) -> &NodeMeta {
        &self.own.meta
    }

    /// Our current metadata record, as peers receive it.
    pub fn own_record(&self) -> &MetaRecord {
        &self.own
    }

    /// Whether this node has left the cluster.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// True while foca has no active peer.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Active peers according to SWIM (not counting ourselves).
    pub fn active_peers(&self) -> usize {
        self.foca.num_members()
    }

    /// Index of the last event (the watch stream's index).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The node's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Who sent datagrams this node refused lately, why and how many (at most
    /// `drops::MAX_SENDERS` pairs of sender and reason).
    pub fn drops(&self) -> &crate::drops::DropTable {
        &self.drops
    }

    /// SWIM's own view, for the core's tests. Drivers read what the API shows (the served
    /// view: `members`, `member`, `served_status` and the events), never this.
    #[cfg(test)]
    pub(crate) fn truth(&self) -> &crate::truth::Truth {
        &self.truth
    }

    /// The causes table, for the core's tests of its bounds.
    #[cfg(test)]
    pub(crate) fn causes(&self) -> &crate::cause::Causes {
        &self.causes
    }

    /// The guard's report.
    pub fn guard_report(&self) -> GuardReport {
        self.guard.report()
    }

    /// The served status of member `name`, if known.
    pub fn served_status(&self, name: &str) -> Option<ServedStatus> {
        let m = self.truth.get(name)?;
        Some(self.guard.served(name, m.state()))
    }

    /// The served view: every known member with its served status, sorted by name (plus,
    /// after a restart, the restored members the truth does not know yet, as `held`).
    pub fn members(&self) -> Vec<MemberView> {
        let store = self.store();
        let mut v: Vec<MemberView> = self
            .truth
            .iter()
            .map(|(name, m)| self.view(name, m, store.get(name)))
            .collect();
        for (name, g) in self.guard.ghosts() {
            if self.truth.get(name).is_none() {
                v.push(g.clone());
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Member `name` as served, if known.
    pub fn member(&self, name: &str) -> Option<MemberView> {
        let Some(m) = self.truth.get(name) else {
            return self
                .guard
                .ghosts()
                .find(|(n, _)| ***n == *name)
                .map(|(_, g)| g.clone());
        };
        let store = self.store();
        Some(self.view(name, m, store.get(name)))
    }

    pub(super) fn view(
        &self,
        name: &str,
        m: &crate::truth::TruthMember,
        rec: Option<&MetaRecord>,
    ) -> MemberView {
        let mut v = MemberView::build(m, self.guard.served(name, m.state()), rec);
        v.cause = self.causes.current(name).or_else(|| {
            // No entry: it only joined (most members of a large cluster).
            (m.state() == TruthState::Alive).then(crate::cause::Causes::joined)
        });
        v.damping = self.guard.damping(self.now, name);
        if let Some(cause) = self.gray.cause(name) {
            v.gray = Some(cause.to_string());
            v.truth = self.gray_swim.get(name).copied().or(v.truth);
        }
        if v.meta_version == 0 {
            // Warming: metadata not received yet; serve the restored one meanwhile.
            if let Some(g) = self.guard.restored(name) {
                v.tags = g.tags.clone();
                v.services = g.services.clone();
                v.meta_version = g.meta_version;
                v.protocol = g.protocol;
            }
        }
        v
    }

    /// The last served transitions of a member (at most `cause::HISTORY`), oldest first,
    /// each with its cause: what `shoal explain` prints.
    pub fn history(&self, name: &str) -> Vec<crate::cause::Transition> {
        let h = self.causes.history(name);
        match self.truth.get(name) {
            // No entry: it joined (when it entered its state) and nothing happened since.
            Some(m) if h.is_empty() && m.state() == TruthState::Alive => {
                vec![crate::cause::Transition {
                    at_ms: m.since().as_millis(),
                    from: None,
                    to: ServedStatus::Alive,
                    generation: m.id.generation(),
                    cause: crate::cause::Causes::joined(),
                }]
            }
            _ => h,
        }
    }

    /// This node as a member.
    pub fn local_member(&self) -> MemberView {
        let id = self.foca.identity();
        self.member(id.name()).unwrap_or_else(|| {
            MemberView::build(
                &crate::truth::TruthMember::new(id.clone(), TruthState::Alive, self.now, None),
                ServedStatus::Alive,
                Some(&self.own),
            )
        })
    }

    /// Every service with its instances on members the served view says are serving
    /// (alive, suspect or held), sorted by service name then node.
    pub fn services(&self) -> BTreeMap<String, Vec<Instance>> {
        let mut out: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for m in self.members() {
            if !m.status.is_serving() {
                continue;
            }
            for (s, mut inst) in m.services.iter().zip(m.instances()) {
                if !self.guard.serves_instance(&s.name, m.status) {
                    continue;
                }
                inst.health_held = self
                    .health
                    .held(&s.name, &m.name, &s.id)
                    .map(str::to_string);
                inst.ejected = self.outliers.ejected(&s.name, &m.name, &s.id).cloned();
                out.entry(s.name.clone()).or_default().push(inst);
            }
        }
        out
    }

    /// Addresses worth announcing to after a restart: every member we know of but ourselves.
    pub fn known_peers(&self) -> Vec<SocketAddr> {
        let me = self.foca.identity().addr();
        let mut v: Vec<SocketAddr> = self
            .truth
            .iter()
            .map(|(_, m)| m.id.addr())
            .chain(self.guard.ghosts().map(|(_, g)| g.addr))
            .filter(|a| *a != me)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Backlog of SWIM updates and metadata broadcasts still being disseminated.
    pub fn backlog(&self) -> (usize, usize) {
        (
            self.foca.updates_backlog(),
            self.foca.custom_broadcast_backlog(),
        )
    }

    /// Why `node`'s instance `id` of `service` is served as held in the passing view, if it
    /// is.
    pub fn health_held(&self, service: &str, node: &str, id: &str) -> Option<&str> {
        self.health.held(service, node, id)
    }

    /// The health guard's report of every service that is not `normal`.
    pub fn health_reports(&self) -> BTreeMap<String, GuardReport> {
        self.health.reports()
    }

    /// The instance `key` names among this node's own services: the instance of that id, else
    /// the one instance of the service of that name (`NodeError::AmbiguousService` when it
    /// has several, `NodeError::NoSuchService` when none).
    pub fn resolve_instance(&self, key: &str) -> Result<String, NodeError> {
        super::types::resolve(&self.own.meta, key)
    }

    /// Whether a graceful leave, or a restart announcement (`announce_restart`), is finished:
    /// the driver may stop the node now (and should: the agent exits, the simulator stops the
    /// host). False until then, and without either.
    #[must_use]
    pub fn leave_finished(&self) -> bool {
        self.leave_finished && self.out.transmits.is_empty()
    }

    /// When the leave (or restart announcement) will be finished, while one is under way
    /// (drivers may sleep until then).
    pub fn leave_finishes_at(&self) -> Option<Time> {
        if self.leave_finished {
            return None;
        }
        self.named.get(TimerName::Leave)
    }

    /// Lifeguard's local health score (0 = healthy; probes stretch by score + 1).
    pub fn local_health(&self) -> u8 {
        self.foca.local_health()
    }

    /// Probes of this node that failed (no direct nor indirect ack) since it started.
    pub fn probe_failures(&self) -> u64 {
        self.foca.probe_failures()
    }

    /// Members SWIM holds active (alive or suspect), this node excluded.
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }
}
