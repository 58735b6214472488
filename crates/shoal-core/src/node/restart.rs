//! Restarts and operator commands: the snapshot a node persists and its schedule (handed to
//! the driver by `poll_snapshot`), restoring it after a restart (served as `warming`, its
//! peers used as seeds), adopting a formed cluster's membership before `start`, and the
//! operator's commands sent to every member (`force-leave`, the cluster-wide thaw).
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO: the driver
//! reads and writes the snapshot file.

use super::{EventKind, MemberChange, Node, NodeError, Transmit};
use crate::identity::NodeId;
use crate::meta::MetaRecord;
use crate::snapshot::{Restored, Snapshot, SnapshotError, SNAPSHOT_EVERY, SNAPSHOT_VERSION};
use crate::sync::ShoalMsg;
use crate::time::Time;
use crate::timers::TimerName;
use crate::truth::{MemberView, ServedStatus, TruthState};
use crate::wire::{self, Kind, MAX_DATAGRAM};
use rand::RngExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Stops to restart, which is not a decommission: our record says "restarting, expect me
    /// back within `grace`" (`core::restart`), spread like a leave (queued for gossip and
    /// pushed directly to a few peers, who relay it). Peers serve us `restarting` through the
    /// gap and take our next life's record when we are back. Nothing else changes here (we are
    /// still a member). The announcement is finished two gossip intervals later, as a leave
    /// (the `Leave` timer): then `leave_finished` holds and a `RestartAnnounced` event comes
    /// out, and the driver stops the node (every driver the same way).
    pub fn announce_restart(&mut self, now: Time, grace: Duration) -> Result<(), NodeError> {
        if self.left {
            return Err(NodeError::Left);
        }
        self.now = now;
        self.own.version += 1;
        self.own
            .set_restart(Some(crate::restart::RestartIntent::new(grace)));
        let own = self.publish_own();
        let push = ShoalMsg::Push {
            records: vec![Arc::new(own)],
        };
        let peers: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id().addr())
            .take(self.cfg.timings.gossip_fanout.max(3) * 2)
            .collect();
        for p in peers {
            self.send_shoal(p, &push);
        }
        self.ending = Some(super::Ending::Restart);
        let linger = self.cfg.timings.gossip_interval * 2;
        self.named.set(TimerName::Leave, Some(now.plus(linger)));
        self.after_input(now);
        Ok(())
    }

    /// Operator `force-leave` (Serf's name): `name` failed for good; stop holding it here and
    /// tell every active member to do the same (`core::operator`). Refused for this node and
    /// for a member SWIM believes alive or suspect (it would come back at once). Returns
    /// whether it was held here and how many members were told.
    pub fn force_leave(&mut self, now: Time, name: &str) -> Result<(bool, usize), NodeError> {
        self.force_leave_by(now, name, "an operator on this agent")
    }

    /// `force_leave`, saying who asked (`by`, in words: the member's cause names it here).
    pub fn force_leave_by(
        &mut self,
        now: Time,
        name: &str,
        by: &str,
    ) -> Result<(bool, usize), NodeError> {
        use crate::operator::OperatorMsg;
        self.now = now;
        if name == self.cfg.name {
            return Err(NodeError::ForceLeave(
                "this is the local node; use leave to leave gracefully".into(),
            ));
        }
        match self.truth.get(name).map(|m| m.state()) {
            Some(TruthState::Alive | TruthState::Suspect) => {
                return Err(NodeError::ForceLeave(format!(
                    "{name} is alive according to SWIM; force-leave only removes failed or \
                     held members (stop it first, or let it leave gracefully)"
                )))
            }
            None if self.guard.ghosts().all(|(n, _)| **n != *name) => {
                return Err(NodeError::ForceLeave(format!(
                    "no member named {name:?} is known to this agent"
                )))
            }
            _ => {}
        }
        if let Some(m) = self.truth.get(name) {
            let key = m.id.name().clone();
            self.causes.force_left(&key, by.to_string());
        }
        let released = self.guard.release(name);
        let body = OperatorMsg::ForceLeave {
            name: name.to_string(),
        }
        .encode();
        let told = self.send_operator(&body);
        self.after_input(now);
        Ok((released, told))
    }

    /// Operator thaw of the guard on every agent: thaws here (`who` in the reason, as
    /// `guard_thaw`) and tells every active member to thaw, each naming this agent in its
    /// reason ("thawed by operator at NODE (cluster-wide)"). Returns how many were told.
    pub fn guard_thaw_cluster(&mut self, now: Time, who: &str) -> usize {
        use crate::operator::OperatorMsg;
        self.now = now;
        self.thaws.admit(now);
        self.reach.forget();
        self.guard.thaw(now, &format!("{who} (cluster-wide)"));
        let body = OperatorMsg::Thaw {
            from: self.cfg.name.clone(),
        }
        .encode();
        let told = self.send_operator(&body);
        self.after_input(now);
        told
    }

    /// Queues `body` (an encoded `OperatorMsg`) to every member believed active; returns how
    /// many.
    fn send_operator(&mut self, body: &[u8]) -> usize {
        let me = self.foca.identity().addr();
        let peers: Vec<SocketAddr> = self
            .truth
            .iter()
            .filter(|(_, m)| m.state().is_active() && m.id.addr() != me)
            .map(|(_, m)| m.id.addr())
            .collect();
        for dst in &peers {
            wire::write_header(&mut self.out.buf, &self.cfg.cluster_label, Kind::Operator);
            self.out.buf.extend_from_slice(body);
            if self.out.buf.len() + wire::SEAL_OVERHEAD + wire::PAIR_TAG_LEN > MAX_DATAGRAM {
                break;
            }
            self.stats.tx_datagrams += 1;
            self.stats.tx_bytes += self.out.buf.len() as u64;
            self.out.transmits.push_back(Transmit {
                dst: *dst,
                data: self.out.buf.clone(),
            });
        }
        peers.len()
    }

    /// An operator command from another agent. A force-leave is applied only where SWIM
    /// agrees the member is gone (a live member is never removed by it). A thaw is taken only
    /// `sealed` when this node has a keyring (the cluster key is the operator's authority;
    /// plaintext accepted during a move to encryption is not enough), and at most once per
    /// `THAW_MIN_INTERVAL` (a repeat is counted in `operator_thaws_ignored`).
    pub(super) fn handle_operator(
        &mut self,
        now: Time,
        sender: SocketAddr,
        msg: crate::operator::OperatorMsg,
        sealed: bool,
    ) {
        use crate::operator::OperatorMsg;
        // Without a keyring nothing can be sealed: a command is taken only from an active
        // member's address, so that a stranger must at least join first (`--insecure`
        // protects nothing else; docs/security.md).
        if self.trust.keyring().is_none()
            && !self
                .foca
                .is_active_addr(&crate::identity::AddrKey::of(sender))
        {
            self.stats.operator_thaws_ignored += u64::from(matches!(msg, OperatorMsg::Thaw { .. }));
            self.stats.dropped_refused += 1;
            return;
        }
        // With member keys and every datagram sealed, a command is taken only from the member
        // bound to the sender's address (its pair tag verified, `core::trust`): a holder of a
        // ring key alone, even spoofing a member's address, commands nothing. While moving to
        // encryption (plaintext accepted or sent), the plaintext rules below apply as before.
        if self.member_keys.is_some()
            && self.trust.keyring().is_some()
            && self.trust.config().plaintext == crate::trust::Plaintext::Refuse
            && !self.trust.opened_from_member()
        {
            self.trust.count_operator_refused();
            return;
        }
        match msg {
            OperatorMsg::Thaw { from } => {
                if self.trust.keyring().is_some() && !sealed {
                    self.stats.dropped_plaintext += 1;
                } else if from == self.cfg.name || !self.thaws.admit(now) {
                    self.stats.operator_thaws_ignored += 1;
                } else {
                    self.reach.forget();
                    self.guard.thaw(
                        now,
                        &format!("at {from} (cluster-wide, sent from {sender})"),
                    );
                }
            }
            OperatorMsg::ForceLeave { name } => {
                let gone = match self.truth.get(name.as_str()) {
                    Some(m) => !m.state().is_active(),
                    None => true,
                };
                if gone && name != self.cfg.name {
                    if let Some(m) = self.truth.get(name.as_str()) {
                        let key = m.id.name().clone();
                        self.causes
                            .force_left(&key, format!("an operator through the agent at {sender}"));
                    }
                    self.guard.release(&name);
                }
            }
        }
    }

    /// Restores a snapshot taken by this node before a restart; call before `start`. A fresh
    /// enough snapshot is served as `warming` until synced; its peers are used to rejoin
    /// either way.
    /// Its age is read on the node's wall clock (`set_wall_clock`).
    pub fn restore(&mut self, now: Time, mut snap: Snapshot) -> Result<Restored, NodeError> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(snap.version).into());
        }
        if snap.node != self.cfg.name {
            return Err(SnapshotError::WrongNode {
                expected: self.cfg.name.clone(),
                found: snap.node,
            }
            .into());
        }
        if self.started {
            return Err(SnapshotError::AlreadyStarted.into());
        }
        self.now = now;
        // Events first: what was delivered stays delivered however old the view is.
        if let Some(mem) = snap.events.take() {
            self.fleet.restore(now, mem);
            // Catch up with what was fired while this node was down, soon after start.
            self.fleet.last_event = Some(now);
        }
        // Up to 16 known peers join the seeds; the rest stay reachable through the view.
        let me = self.cfg.advertise;
        let mut peers: Vec<SocketAddr> = snap
            .known_peers
            .iter()
            .copied()
            .filter(|a| *a != me && !self.seeds.contains(a))
            .collect();
        let mut added = 0;
        while !peers.is_empty() && added < 16 {
            let p = peers.swap_remove(self.rng.random_range(0..peers.len()));
            self.seeds.push(p);
            added += 1;
        }
        let age = snap.age(self.trust.wall_clock(now));
        if age > self.cfg.guard.snapshot_max_age {
            return Ok(Restored::PeersOnly { age, peers: added });
        }
        let members: Vec<MemberView> = snap
            .members
            .into_iter()
            .filter(|m| m.name != self.cfg.name)
            .collect();
        let n = members.iter().filter(|m| m.status.is_serving()).count();
        self.guard.restore(now, members, snap.baseline, age);
        for (name, g) in self.guard.ghosts() {
            self.served_ghosts.insert(name.clone(), g.status);
        }
        let views: Vec<MemberView> = self.guard.ghosts().map(|(_, g)| g.clone()).collect();
        for view in views {
            self.push_event(
                now,
                EventKind::Member {
                    change: MemberChange::Joined,
                    previous: None,
                    member: view,
                },
            );
        }
        self.after_input(now);
        Ok(Restored::Served {
            members: n,
            peers: added,
        })
    }

    /// Takes over the membership of a formed cluster before `start`, as a full state
    /// transfer from a peer would deliver it (foca's `apply_many` "state replication"): the
    /// records go to the metadata store, the members to SWIM as alive, without spreading
    /// them again (everyone holds them already). Each member is served from here on, without
    /// an event (the caller knows what it handed in: a formed cluster of thousands would
    /// otherwise queue thousands of events on each node). The simulator uses this to start a cluster
    /// as formed, so that a run measures faults on a steady cluster rather than the storm of
    /// every node joining at once. Our own entry, if listed, is skipped.
    pub fn adopt_members(
        &mut self,
        now: Time,
        members: &[(NodeId, Arc<MetaRecord>)],
    ) -> Result<(), NodeError> {
        if self.started {
            return Err(NodeError::AlreadyStarted);
        }
        self.now = now;
        let own = self.foca.identity().clone();
        self.truth.reserve(members.len());
        {
            let store = self.store_mut();
            store.reserve(members.len());
            for (id, rec) in members {
                if id.name() != own.name() && rec.name == *id.name() {
                    store.offer(rec.clone());
                }
            }
            // Served with their members below: no separate change events.
            store.take_changed();
        }
        // Collected first: foca makes room for exactly as many (a filtered iterator does not
        // say how many it holds, and a list that doubles on the way keeps up to twice that).
        let ids: Vec<_> = members
            .iter()
            .filter(|(id, _)| id.name() != own.name() && id.addr() != own.addr())
            .map(|(id, _)| foca::Member::alive(id.clone()))
            .collect();
        self.adopting = true;
        self.swim(now, |foca, rt| foca.apply_many(ids.into_iter(), false, rt));
        self.after_input(now);
        self.adopting = false;
        Ok(())
    }

    /// The snapshot schedule fired: a snapshot is due if the served view changed since the
    /// last one was handed out. Re-arms itself.
    pub(super) fn snapshot_timer(&mut self, now: Time) {
        if self.snapshot_index != Some(self.index) || self.fleet.changed {
            self.snapshot_due = true;
        }
        self.named
            .set(TimerName::Snapshot, Some(now.plus(SNAPSHOT_EVERY)));
    }

    /// An output: the snapshot to persist now, when one is due (at start, then every
    /// `SNAPSHOT_EVERY` while the served view changes). Drain it after every input like the
    /// other outputs; the node's wall clock at `now` stamps it. The driver saves what it is
    /// handed and takes no snapshot of its own, but on a graceful shutdown (`snapshot`).
    #[must_use]
    pub fn poll_snapshot(&mut self, now: Time) -> Option<Snapshot> {
        if !std::mem::take(&mut self.snapshot_due) {
            return None;
        }
        self.fleet.changed = false;
        self.snapshot_index = Some(self.index);
        Some(self.snapshot(now))
    }

    /// What to persist so that a restart serves the last view (see `restore`): the query
    /// behind `poll_snapshot`, and what the agent saves when it shuts down gracefully.
    pub fn snapshot(&self, now: Time) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            node: self.cfg.name.clone(),
            taken_at_unix_ms: self.trust.wall_clock(now),
            // Causes are this life's evidence, not part of the view to restore.
            members: self
                .members()
                .into_iter()
                .map(|mut m| {
                    m.cause = None;
                    // Statuses of this release written as v0.1.0's, so that a rollback still
                    // restores the snapshot (v0.1.0 refuses a status it does not know): a
                    // member served through its restart grace is a member SWIM calls down
                    // and still served, which v0.1.0 calls `held`; a damped member is not
                    // routed to, `down` there.
                    match m.status {
                        ServedStatus::Restarting => m.status = ServedStatus::Held,
                        ServedStatus::Damped => m.status = ServedStatus::Down,
                        _ => {}
                    }
                    m
                })
                .collect(),
            baseline: self.guard.baseline().map(|n| n.to_string()).collect(),
            known_peers: self.known_peers(),
            guard: self.guard.report(),
            events: self.fleet.memory(),
        }
    }
}
