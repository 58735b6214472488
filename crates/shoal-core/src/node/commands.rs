//! The node's commands: join and leave, its own metadata (tags, services and their
//! instances), and the operator's freeze and thaw of the guard. Each takes `now`, like every
//! input, and ends with `after_input`.
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO.

use super::{types, EventKind, LocalEvent, Node, NodeError};
use crate::meta::{MetaError, NodeMeta, Service};
use crate::sync::ShoalMsg;
use crate::time::Time;
use crate::timers::TimerName;
use crate::truth::TruthState;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

impl Node {
    /// Joins the cluster through these addresses (they are also kept as seeds for rejoins).
    pub fn join(&mut self, now: Time, addrs: &[SocketAddr]) -> Result<(), NodeError> {
        if self.left {
            return Err(NodeError::Left);
        }
        self.now = now;
        for a in addrs {
            if !self.seeds.contains(a) {
                self.seeds.push(*a);
            }
            self.announce(now, *a);
        }
        self.after_input(now);
        Ok(())
    }

    /// Leaves gracefully: marks our record as leaving (so that peers serve `left`, not a
    /// failure), tells a few peers and stops. Returns once the datagrams are queued. The
    /// leave is finished two gossip intervals later (the intent spreads by gossip meanwhile):
    /// then `leave_finished` holds and a `LeaveFinished` event comes out, and the driver
    /// stops the node (every driver the same way).
    pub fn leave(&mut self, now: Time) -> Result<(), NodeError> {
        if self.left {
            return Ok(());
        }
        self.now = now;
        self.own.version += 1;
        self.own.leaving = true;
        let own = self.publish_own();
        // Tell a few peers directly too, so that the intent does not depend on piggybacking.
        let push = ShoalMsg::Push {
            records: vec![Arc::new(own)],
        };
        let peers: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id().addr())
            .take(self.cfg.timings.gossip_fanout.max(3))
            .collect();
        for p in peers {
            self.send_shoal(p, &push);
        }
        self.swim(now, |foca, rt| foca.leave_cluster(rt));
        self.left = true;
        self.ending = Some(super::Ending::Leave);
        let linger = self.cfg.timings.gossip_interval * 2;
        self.named.set(TimerName::Leave, Some(now.plus(linger)));
        let me = self.foca.identity().clone();
        self.set_truth(now, &me, TruthState::Left);
        self.push_event(now, EventKind::Local(LocalEvent::Left));
        self.after_input(now);
        Ok(())
    }

    /// Replaces this node's metadata (tags and services) and spreads the new version.
    pub fn set_meta(&mut self, now: Time, meta: NodeMeta) -> Result<(), NodeError> {
        if self.left {
            return Err(NodeError::Left);
        }
        meta.validate()?;
        if meta == self.own.meta {
            return Ok(());
        }
        self.now = now;
        self.own.version += 1;
        self.own.set_meta(meta);
        self.publish_own();
        self.after_input(now);
        Ok(())
    }

    /// Sets and deletes tags of this node.
    pub fn set_tags(
        &mut self,
        now: Time,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), NodeError> {
        let mut meta = self.own.meta.clone();
        for k in delete {
            meta.tags.remove(k);
        }
        for (k, v) in set {
            meta.tags.insert(k.clone(), v.clone());
        }
        self.set_meta(now, meta)
    }

    /// Registers (or replaces) a service instance of this node, its id its service's name.
    pub fn register_service(&mut self, now: Time, svc: Service) -> Result<(), NodeError> {
        let id = svc.name.clone();
        self.register_instance(now, &id, svc)
    }

    /// Registers (or replaces) the instance `id` of a service of this node.
    pub fn register_instance(
        &mut self,
        now: Time,
        id: &str,
        svc: Service,
    ) -> Result<(), NodeError> {
        svc.validate()?;
        if !crate::instances::valid_id(id) {
            return Err(MetaError::BadInstanceId(id.to_string()).into());
        }
        let mut meta = self.own.meta.clone();
        meta.services.insert(id.to_string(), svc);
        self.set_meta(now, meta)
    }

    /// Deregisters a service instance of this node: the instance `id`, else the one instance
    /// of the service named `id` (an error when that service has several: give the id).
    /// Returns the id removed.
    pub fn deregister_service(&mut self, now: Time, id: &str) -> Result<String, NodeError> {
        let mut meta = self.own.meta.clone();
        let id = types::resolve(&meta, id)?;
        meta.services.remove(&id);
        self.set_meta(now, meta)?;
        Ok(id)
    }

    /// Operator override of the guard.
    pub fn guard_freeze(&mut self, now: Time, who: &str) {
        self.now = now;
        self.guard.freeze(now, who);
        self.after_input(now);
    }

    /// Operator override of the guard.
    pub fn guard_thaw(&mut self, now: Time, who: &str) {
        self.now = now;
        // The operator says the truth is right: the last reach check no longer counts.
        self.reach.forget();
        self.guard.thaw(now, who);
        self.after_input(now);
    }
}
