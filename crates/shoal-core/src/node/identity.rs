//! The node's member keys: setting them (the driver loads them from its data directory),
//! the bindings of names to keys (`core::bindings`: counted refusals, the operator's
//! `forget`, the table handed out to persist), and sealing key material to one member.
//!
//! A child module of `core::node` (it reaches the node's fields) so that node/mod.rs stays about
//! membership. Must not verify or seal anything itself (`core::member_key` does) and must
//! stay sans-IO: the driver draws the key pair and persists the bindings.

use super::{Node, NodeError};
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
    pub fn take_bindings_change(&mut self) -> Option<Vec<(Arc<str>, MemberPub)>> {
        self.store_mut().bindings.take_change()
    }

    /// Adds the records the bindings refused since the last input to the stats.
    pub(super) fn count_refused_records(&mut self) {
        let (refused, store_full) = {
            let store = self.store_mut();
            (store.take_refused(), store.full_refused())
        };
        let [unsigned, wrong, full] = refused;
        self.stats.records_refused = store_full;
        self.stats.dropped_unsigned_record += unsigned;
        self.stats.dropped_wrong_member_key += wrong;
        self.stats.dropped_bindings_full += full;
    }

    /// The X25519 key of the member at `dst`, as bound to its name.
    fn seal_key_of(&self, dst: SocketAddr) -> Option<[u8; 32]> {
        let (name, _) = self.truth.iter().find(|(_, m)| m.id.addr() == dst)?;
        self.store().bindings.get(name).map(|k| k.seal)
    }

    /// The keyring message to send to `dst`: a message that carries key bytes (`Op`,
    /// `State`) is sealed to `dst`'s own X25519 key (`KeyMsg::Sealed`), so that only `dst`
    /// reads it, not every holder of the shared key it travels under (a former member that
    /// recorded every datagram learns no key installed after it left). A peer without a key
    /// bound to its name (a v0.1.0 agent, one whose record has not come yet) gets it as
    /// before, under the shared key only.
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

    /// Opens a `KeyMsg::Sealed` sent to us: the message inside (never another `Sealed`).
    pub(super) fn open_key_material(&self, sealed: &[u8]) -> Option<KeyMsg> {
        let keys = self.member_keys.as_ref()?;
        let (_from, plain) = open_sealed(keys, sealed).ok()?;
        match KeyMsg::decode(&plain).ok()? {
            KeyMsg::Sealed { .. } => None,
            m => Some(m),
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
