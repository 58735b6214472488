//! The store of every node's latest record: `MetaStore` (records by name, an
//! order-independent fingerprint, the changed names, the key bindings every record from the
//! wire passes). It is a field of foca's broadcast handler (`meta_gossip::MetaBroadcasts`),
//! which stores what foca receives; the node reaches it through `Foca::broadcast_handler`.
//!
//! Above `core::meta` (the record) and `core::bindings` (which key speaks for which name);
//! `meta_gossip` feeds it what foca receives. Must not decide membership: a record says
//! nothing about whether its node is alive.

use crate::hash::fnv1a;
use crate::meta::MetaRecord;
use crate::names::NameTable;
use std::sync::Arc;

/// Every node's latest known record, plus an order-independent fingerprint of the whole set
/// so that two nodes can tell cheaply whether they agree.
#[derive(Debug, Default)]
pub struct MetaStore {
    records: NameTable<Arc<MetaRecord>>,
    fingerprint: u64,
    /// Names whose record changed since the owner of the store last drained this list.
    changed: Vec<Arc<str>>,
    /// Which key speaks for which name (`core::bindings`): every record from the wire passes
    /// [`MetaStore::admit`] before [`MetaStore::offer`].
    pub bindings: crate::bindings::Bindings,
    /// Records [`MetaStore::admit`] refused since the node last took the counts, by reason
    /// (`Refused as usize`).
    refused: [u64; 4],
    /// Most records held (`max_members`, `Node::set_max_members`); `None`: unbounded.
    max_records: Option<usize>,
    /// Records of names not held refused because the store was full (cumulative).
    full_refused: u64,
}

impl MetaStore {
    /// An empty store whose table is hashed with `seed` (see `NameTable::with_seed`).
    pub fn with_seed(seed: u64) -> Self {
        MetaStore {
            records: NameTable::with_seed(seed),
            ..MetaStore::default()
        }
    }

    /// Makes room for `additional` more records at once.
    pub fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
    }

    pub fn get(&self, name: &str) -> Option<&MetaRecord> {
        self.records.get(name).map(|r| &**r)
    }

    /// The shared record of `name` (cloning it is cheap).
    pub fn get_shared(&self, name: &str) -> Option<&Arc<MetaRecord>> {
        self.records.get(name)
    }

    /// Whether a record with this stamp would be stored (it is newer than what we hold).
    pub fn is_newer(&self, name: &str, stamp: (u64, u64)) -> bool {
        self.records
            .get(name)
            .map(|r| r.stamp() < stamp)
            .unwrap_or(true)
    }

    /// Whether a record with this stamp, with extension fields or not (`has_ext`), would be
    /// stored: it is newer than what we hold, or it is the same version with extension
    /// fields where ours has none. A v0.1.0 agent that relays a record in a `Push` writes it
    /// without its fields (it never adds any), so the copy with them is the owner's.
    pub fn wants(&self, name: &str, stamp: (u64, u64), has_ext: bool) -> bool {
        self.records
            .get(name)
            .map(|r| r.stamp() < stamp || (r.stamp() == stamp && has_ext && r.ext.is_empty()))
            .unwrap_or(true)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn iter(&self) -> impl Iterator<Item = &MetaRecord> {
        self.records.iter().map(|r| &**r)
    }

    /// Stores `rec` if [`MetaStore::wants`] it. Returns whether it was stored.
    pub fn offer(&mut self, rec: impl Into<Arc<MetaRecord>>) -> bool {
        let rec: Arc<MetaRecord> = rec.into();
        if !self.wants(&rec.name, rec.stamp(), !rec.ext.is_empty()) {
            return false;
        }
        if let Some(old) = self.records.get(&rec.name) {
            self.fingerprint ^= record_hash(&old.name, old.generation, old.version);
        } else if self
            .max_records
            .is_some_and(|max| self.records.len() >= max)
        {
            // A record of a name not held, the store full: records of names SWIM never
            // reported would otherwise grow it without bound.
            self.full_refused += 1;
            return false;
        }
        self.fingerprint ^= record_hash(&rec.name, rec.generation, rec.version);
        self.changed.push(rec.name.clone());
        self.records.insert(rec);
        true
    }

    /// Whether `rec`, a record from the wire that [`MetaStore::wants`], may be stored: its
    /// signature and the key bound to its name (`bindings::Bindings::admit`). A refusal is
    /// counted (`take_refused`).
    pub fn admit(&mut self, rec: &MetaRecord) -> bool {
        use crate::fields::record::{MEMBER_KEY, SIGNATURE};
        let signs = |r: &MetaRecord| {
            r.ext.raw(MEMBER_KEY.number).is_some() || r.ext.raw(SIGNATURE.number).is_some()
        };
        // An owner whose record we hold signed signs all its records: an unsigned one is a
        // forgery (or a copy a v0.1.0 agent relayed without its fields: the signed one comes
        // through any other agent), even where its name is bound to no key (a bound name
        // takes signed records only: `Bindings::admit`).
        if !signs(rec)
            && self.bindings.get(&rec.name).is_none()
            && self.records.get(&rec.name).is_some_and(|h| signs(h))
        {
            self.refused[crate::bindings::Refused::UnsignedFromSigner as usize] += 1;
            return false;
        }
        let records = &self.records;
        match self.bindings.admit(rec, |n| records.get(n).is_some()) {
            Ok(()) => true,
            Err(r) => {
                self.refused[r as usize] += 1;
                false
            }
        }
    }

    /// Bounds the records held (the node's `max_members`): past it a record of a name not
    /// held is refused and counted ([`MetaStore::full_refused`]).
    pub fn set_max_records(&mut self, max: usize) {
        self.max_records = Some(max);
    }

    /// Records of names not held refused because the store was full, since the start.
    pub fn full_refused(&self) -> u64 {
        self.full_refused
    }

    /// Records refused by [`MetaStore::admit`] since the last call: unsigned (for a bound
    /// name), signed by another key, the table of bindings full.
    pub fn take_refused(&mut self) -> [u64; 4] {
        std::mem::take(&mut self.refused)
    }

    /// Forgets a node's record (when the node is reaped).
    pub fn remove(&mut self, name: &str) -> Option<Arc<MetaRecord>> {
        let old = self.records.remove(name)?;
        self.fingerprint ^= record_hash(&old.name, old.generation, old.version);
        Some(old)
    }

    pub fn take_changed(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.changed)
    }
}

fn record_hash(name: &str, generation: u64, version: u64) -> u64 {
    fnv1a(&[
        name.as_bytes(),
        &generation.to_le_bytes(),
        &version.to_le_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::tests::rec;

    /// Review of #22: records of names SWIM never reported grew the store without bound. Past
    /// `max_members` a record of a new name is refused and counted; held names still update.
    #[test]
    fn a_full_store_refuses_new_names_and_keeps_updating_held_ones() {
        let mut store = MetaStore::default();
        store.set_max_records(2);
        assert!(store.offer(rec("a", 1, 1)));
        assert!(store.offer(rec("b", 1, 1)));
        for i in 0..100 {
            assert!(!store.offer(rec(&format!("fake-{i}"), 1, 1)));
        }
        assert_eq!((store.len(), store.full_refused()), (2, 100));
        assert!(store.offer(rec("a", 1, 2)), "a held name still updates");
        assert_eq!(store.get("a").map(|r| r.version), Some(2));
    }

    #[test]
    fn store_keeps_newest_and_fingerprint_is_order_independent() {
        let mut a = MetaStore::default();
        let mut b = MetaStore::default();
        assert!(a.offer(rec("x", 1, 1)));
        assert!(a.offer(rec("y", 1, 3)));
        assert!(!a.offer(rec("y", 1, 2)));
        assert!(a.offer(rec("x", 2, 0)));
        assert!(b.offer(rec("y", 1, 3)));
        assert!(b.offer(rec("x", 2, 0)));
        assert_eq!(a.fingerprint(), b.fingerprint());
        a.remove("x");
        b.remove("x");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.get("y").unwrap().version, 3);
    }
}
