//! The node's member keys: setting them (the driver loads them from its data directory),
//! the bindings of names to keys (`core::bindings`: counted refusals, the operator's
//! `forget`, the table handed out to persist), and sealing key material to one member.
//!
//! It also gates SWIM identities of bound names: a new address or a newer generation for a
//! name bound to a key is taken into the truth only once a record signed by that key says
//! so (`identity_admitted`); SWIM itself cannot tell who announced a name.
//!
//! A child module of `core::node` (it reaches the node's fields) so that node/mod.rs stays about
//! membership. Must not verify or seal anything itself (`core::member_key` does) and must
//! stay sans-IO: the driver draws the key pair and persists the bindings.

use super::{Node, NodeError, Time};
use crate::identity::NodeId;
use crate::keyops::KeyMsg;
use crate::member_key::{open_sealed, seal_to, MemberKeys, MemberPub};
use std::net::SocketAddr;
use std::sync::Arc;

impl Node {
    /// Sets this member's keys (its record is signed with them from now on) and the bindings
    /// of names to keys persisted by an earlier run. Call before `start` (the agent does at
    /// once). Our own name is bound to our key.
    pub fn set_member_keys(
        &mut self,
        keys: MemberKeys,
        bindings: Vec<(Arc<str>, MemberPub)>,
    ) -> Result<(), NodeError> {
        if self.started {
            return Err(NodeError::AlreadyStarted);
        }
        let store = &mut self.foca.broadcast_handler_mut().store;
        store.bindings = crate::bindings::Bindings::from_entries(bindings);
        store
            .bindings
            .bind(self.cfg.name.as_str().into(), keys.public());
        keys.sign_record(&mut self.own);
        self.member_keys = Some(keys);
        // Sealing finds the member at a datagram's address: only a node with keys needs that.
        self.truth.index_addresses();
        Ok(())
    }

    /// This member's public keys (`None`: it has none, its record goes unsigned).
    pub fn member_key(&self) -> Option<MemberPub> {
        self.member_keys.as_ref().map(MemberKeys::public)
    }

    /// The key bound to `name`, if any.
    pub fn bound_key(&self, name: &str) -> Option<MemberPub> {
        self.store().bindings.get(name).copied()
    }

    /// Every name bound to a key.
    pub fn bound_keys(&self) -> Vec<(Arc<str>, MemberPub)> {
        let store = self.store();
        store
            .bindings
            .iter()
            .map(|(n, k)| (n.clone(), *k))
            .collect()
    }

    /// Forgets the key bound to `name` (the operator's `shoal keys forget NAME`, after a host
    /// was rebuilt with a new key under the same name): its next signed record binds it
    /// again. Our own name cannot be forgotten. Returns the key it was bound to.
    pub fn forget_member_key(&mut self, name: &str) -> Option<MemberPub> {
        if *name == *self.cfg.name {
            return None;
        }
        self.store_mut().bindings.forget(name)
    }

    /// The bindings after a change (once per change), for the driver to persist.
    #[must_use]
    pub fn take_bindings_change(&mut self) -> Option<Vec<(Arc<str>, MemberPub)>> {
        self.store_mut().bindings.take_change()
    }

    /// Adds the records the bindings refused since the last input to the stats.
    pub(super) fn count_refused_records(&mut self) {
        let (refused, store_full) = {
            let store = self.store_mut();
            (store.take_refused(), store.full_refused())
        };
        let [unsigned, wrong, full, from_signer] = refused;
        self.stats.records_refused = store_full;
        self.stats.dropped_unsigned_record += unsigned;
        self.stats.dropped_wrong_member_key += wrong;
        self.stats.dropped_bindings_full += full;
        self.stats.dropped_unsigned_from_signer += from_signer;
    }

    /// The X25519 key of the member at `dst`, as bound to its name: one lookup in the
    /// truth's index of addresses (a rollout seals to every member: scanning the truth per
    /// destination made it quadratic in the cluster's size).
    pub(super) fn seal_key_of(&self, dst: SocketAddr) -> Option<[u8; 32]> {
        let m = self.truth.at_addr(dst)?;
        self.store().bindings.get(m.id.name()).map(|k| k.seal)
    }

    /// The keyring message to send to `dst`: a message that carries key bytes (`Op`,
    /// `State`) is sealed to `dst`'s own X25519 key (`KeyMsg::Sealed`), so that only `dst`
    /// reads it, not every holder of the shared key it travels under (a former member that
    /// recorded every datagram learns no key installed after it left). `None` for a peer
    /// without a key bound to its name (a v0.1.0 agent, one whose record has not come yet):
    /// it gets no key material at all (`Node::send_key_material`).
    pub(super) fn seal_key_material(&mut self, dst: SocketAddr, msg: &KeyMsg) -> Option<KeyMsg> {
        if !matches!(msg, KeyMsg::Op { .. } | KeyMsg::State { .. }) {
            return None;
        }
        let to = self.seal_key_of(dst)?;
        let keys = self.member_keys.as_ref()?;
        let mut nonce = [0u8; 24];
        rand::Rng::fill_bytes(&mut self.rng, &mut nonce);
        Some(KeyMsg::Sealed {
            sealed: seal_to(keys, &to, nonce, &msg.encode()),
        })
    }

    /// Opens a `KeyMsg::Sealed` sent to us: the message inside (never another `Sealed`) and
    /// whether its sealer is the member at `from`: `Some(true)` when the X25519 key it was
    /// sealed with is the one bound to the name of the member at that address, `Some(false)`
    /// when another key is bound there, `None` when none is (yet).
    pub(super) fn open_key_material(
        &self,
        from: SocketAddr,
        sealed: &[u8],
    ) -> Option<(KeyMsg, Option<bool>)> {
        let keys = self.member_keys.as_ref()?;
        let (sealer, plain) = open_sealed(keys, sealed).ok()?;
        let msg = match KeyMsg::decode(&plain).ok()? {
            KeyMsg::Sealed { .. } => return None,
            m => m,
        };
        Some((msg, self.seal_key_of(from).map(|k| k == sealer)))
    }
}

/// Unproven identities held at once (one per name); past it, more are refused unheld.
const MAX_UNPROVEN: usize = 1_024;

impl Node {
    /// Whether the record that speaks for `id`'s name proves `id`: the name is bound to no
    /// key (a v0.1.0 member, a node without member keys: as before), or the record held for
    /// it (admitted, so signed by the bound key) names `id`'s address with a generation at
    /// least `id`'s. Our own name is proven by our own record only.
    pub(super) fn identity_proven(&self, id: &NodeId) -> bool {
        if **id.name() == *self.cfg.name {
            return id.addr() == self.own.addr && id.generation() <= self.own.generation;
        }
        let store = self.store();
        if store.bindings.get(id.name()).is_none() {
            return true;
        }
        store
            .get(id.name())
            .is_some_and(|r| r.addr == id.addr() && r.generation >= id.generation())
    }

    /// Whether the truth may take `id` for its name (`set_truth` asks): the identity it
    /// holds already, or a proven one. Anything else is held aside (counted once per
    /// identity) and its record asked of the address it claims; `drain_meta_changes` takes
    /// it once a signed record proves it (a bound member's restart: the record comes one
    /// round trip later at most, usually in the same datagram).
    pub(super) fn identity_admitted(&mut self, now: Time, id: &NodeId) -> bool {
        if self.adopting || self.truth.get(id.name()).is_some_and(|m| m.id == *id) {
            return true;
        }
        if self.identity_proven(id) {
            self.unproven.remove(id.name());
            return true;
        }
        if self.unproven.get(id.name()) == Some(id) {
            return false;
        }
        self.stats.dropped_unproven_identity += 1;
        // Bounded: past `MAX_UNPROVEN` one held claim goes (claims never proven would
        // otherwise fill the table for good and a real restart would no longer be held).
        if self.unproven.len() >= MAX_UNPROVEN && !self.unproven.contains_key(id.name()) {
            self.unproven.pop_first();
        }
        self.unproven.insert(id.name().clone(), id.clone());
        if **id.name() != *self.cfg.name && self.discover_budget.take(now, id.addr()) {
            self.send_want(id.addr(), vec![id.name().clone()]);
        }
        false
    }

    /// A record about us that we did not issue arrived (stamp `stamp`, saying we leave if
    /// `leaving`): a key holder's forgery, or our record of an earlier life. Refute it at once
    /// as memberlist and Serf refute what is said about them: our own record, signed, with a
    /// stamp above it, so that everyone who took it takes ours over it (an agent that had no
    /// key bound to our name yet took an unsigned forgery). Nothing to do when ours is newer
    /// already and the forgery says nothing we did not say.
    ///
    /// Refutations are paced, one per probe period (each costs a signature and a gossip
    /// round): what arrives in between is merged into the next. A stamp past our wall clock
    /// plus `MAX_FUTURE` is not outbid: adopting it (our generation limit also allows our
    /// own generation plus `MAX_FUTURE`) would let a key holder push our generation ahead an
    /// hour per datagram until peers refuse every record we publish.
    pub(super) fn refute_record_about_us(&mut self, now: Time, stamp: (u64, u64), leaving: bool) {
        self.refute_pending = Some(match self.refute_pending.take() {
            Some((s, l)) => (s.max(stamp), l || leaving),
            None => (stamp, leaving),
        });
        self.flush_refute(now);
    }

    /// Refutes the pending record about us, if one is pending and the pace allows.
    pub(super) fn flush_refute(&mut self, now: Time) {
        if now < self.refute_after {
            return;
        }
        let Some((stamp, leaving)) = self.refute_pending.take() else {
            return;
        };
        let wall_limit = self
            .trust
            .wall_clock(now)
            .saturating_add(super::MAX_FUTURE.as_millis() as u64);
        // Refuting takes a generation above the forged one (when its version is the last):
        // keep that under the limit too.
        if stamp.0 >= wall_limit || !crate::meta::stamp_acceptable(stamp, wall_limit) {
            return;
        }
        let own = self.own.stamp();
        let contradicts = leaving && !self.left;
        if stamp <= own && !contradicts {
            return;
        }
        if stamp > own {
            let (generation, version) = stamp;
            if version >= crate::meta::MAX_VERSION {
                self.own.generation = generation.saturating_add(1);
                self.own.version = 1;
            } else {
                self.own.generation = generation;
                self.own.version = version + 1;
            }
        }
        self.stats.records_refuted += 1;
        self.refute_after = now.plus(self.cfg.timings.probe_period);
        self.publish_own();
        // Spread it now, not at the next gossip tick: the forgery is being served.
        self.gossip_now = true;
    }

    /// Takes the held identity of `name` into the truth if its record now proves it and SWIM
    /// still holds it (called when `name`'s record changed).
    pub(super) fn admit_proven_identity(&mut self, now: Time, name: &Arc<str>) {
        let Some(id) = self.unproven.get(name).cloned() else {
            return;
        };
        if !self.identity_proven(&id) {
            return;
        }
        self.unproven.remove(name);
        let key = crate::identity::AddrKey::of(id.addr());
        if self.foca.is_active_addr(&key) {
            self.apply_notification(now, foca::OwnedNotification::MemberUp(id));
        }
    }
}

#[cfg(test)]
impl Node {
    /// The record of `name` this node holds.
    pub(crate) fn record_of(&self, name: &str) -> Option<Arc<crate::MetaRecord>> {
        self.store().get_shared(name).cloned()
    }

    /// Queues `item` as a foca broadcast, as a key holder's modified agent would.
    pub(crate) fn gossip_record_for_test(&mut self, item: &[u8]) {
        let _ = self.foca.add_broadcast(item);
    }
}
