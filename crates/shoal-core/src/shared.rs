//! What nodes may share: the context a driver creates and hands to each node it builds.
//!
//! Owns `Shared`: the interner of node names (`intern`), of identities (`identity`) and the
//! cache of validated metadata records (`record_cache`), behind one lock, hashed with a seed
//! the driver chooses. The agent gives each node a context of its own (`Node::new` makes
//! one); the simulator gives one context to all the nodes of a run, so that a name, an
//! identity or a record thousands of nodes decode is held once per run, not once per node.
//! Two nodes given different contexts share nothing; two given one context share only
//! values (a cached entry is used only when equal to what was received), never a decision.
//!
//! Must not hold anything but these caches: no per-node state, no clock, no decision. Entries
//! nobody else holds are pruned as the caches grow, so they stay bounded by what is live.

use crate::hash::HashSeed;
use crate::identity::{IdCache, NodeId, WireId};
use crate::intern::Names;
use crate::meta::{MetaError, MetaRecord};
use crate::record_cache::Records;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The caches nodes built with one context share (see the module doc).
pub struct Shared {
    seed: HashSeed,
    caches: Mutex<Caches>,
}

pub(crate) struct Caches {
    pub(crate) names: Names,
    pub(crate) ids: IdCache,
    pub(crate) records: Records,
}

impl Shared {
    /// A new, empty context whose tables are hashed with `seed` (from the driver: the agent
    /// uses its node's seed, the simulator its run's), so that peers cannot precompute names
    /// that collide in them. The seed changes no value, only where an entry sits.
    pub fn new(seed: u64) -> Arc<Shared> {
        let seed = HashSeed::of_node(seed);
        Arc::new(Shared {
            seed,
            caches: Mutex::new(Caches {
                names: Names::new(seed),
                ids: IdCache::new(seed),
                records: Records::new(seed),
            }),
        })
    }

    /// The seed of this context's tables.
    pub fn seed(&self) -> HashSeed {
        self.seed
    }

    fn lock(&self) -> MutexGuard<'_, Caches> {
        // A panic while the lock was held left the caches consistent (every change is one
        // insert or one prune), so a poisoned lock is taken as it is.
        self.caches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared `Arc<str>` for `s` (allocated on first sight).
    pub fn name(&self, s: &str) -> Arc<str> {
        self.lock().names.get(s)
    }

    /// The shared identity (name, addr, generation), allocated on first sight.
    pub fn id(&self, name: &str, addr: SocketAddr, generation: u64) -> NodeId {
        let mut c = self.lock();
        let Caches { names, ids, .. } = &mut *c;
        ids.intern(names, name, addr, generation)
    }

    /// The shared identity a datagram names, once checked (`identity::WireId::checked`).
    pub(crate) fn resolve(&self, w: &WireId<'_>, max_generation: u64) -> Result<NodeId, String> {
        let (name, addr, generation) = w.checked(max_generation)?;
        Ok(self.id(name, addr, generation))
    }

    /// The validated record encoded as `data`, whose head decoded to `name` and `stamp`:
    /// shared when the same bytes were seen before, else decoded, validated and cached.
    pub fn record_from_bytes(
        &self,
        data: &[u8],
        name: &str,
        stamp: (u64, u64),
    ) -> Result<Arc<MetaRecord>, MetaError> {
        if let Some(rec) = self.lock().records.find_bytes(data, name, stamp) {
            return Ok(rec);
        }
        // Decoded outside the lock: the slow part, and it takes no other cache.
        let mut rec = MetaRecord::decode(data)?;
        let mut c = self.lock();
        rec.name = c.names.get(&rec.name);
        Ok(c.records.insert(Arc::new(rec), data.into()))
    }

    /// `rec` (received inside a message) as a shared, validated record: the cached copy when
    /// an equal one is known, else `rec` after validation.
    pub fn record(&self, mut rec: MetaRecord) -> Result<Arc<MetaRecord>, MetaError> {
        if let Some(hit) = self.lock().records.find_equal(&rec) {
            return Ok(hit);
        }
        rec.validate()?;
        let bytes = rec.encode().into_boxed_slice();
        let mut c = self.lock();
        rec.name = c.names.get(&rec.name);
        Ok(c.records.insert(Arc::new(rec), bytes))
    }

    /// The name `s` as this context holds it, if it does (a look, not an insert).
    pub fn known_name(&self, s: &str) -> Option<Arc<str>> {
        self.lock().names.peek(s)
    }

    /// How many names, identities and records the context holds (for tests and figures).
    pub fn len(&self) -> (usize, usize, usize) {
        let c = self.lock();
        (c.names.len(), c.ids.len(), c.records.len())
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (names, ids, records) = self.len();
        write!(
            f,
            "Shared {{ names: {names}, ids: {ids}, records: {records} }}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NodeMeta;

    fn rec(name: &str) -> MetaRecord {
        MetaRecord {
            name: Arc::from(name),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
            version: 2,
            leaving: false,
            meta: NodeMeta::default(),
            ext: Default::default(),
        }
    }

    #[test]
    fn one_context_shares_and_two_contexts_do_not() {
        let a = Shared::new(1);
        let b = Shared::new(2);
        assert_ne!(a.seed(), b.seed());
        let addr: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        assert!(Arc::ptr_eq(&a.name("n1"), &a.name("n1")));
        assert!(!Arc::ptr_eq(&a.name("n1"), &b.name("n1")));
        let (x, y, z) = (
            a.id("n1", addr, 3),
            a.id("n1", addr, 3),
            b.id("n1", addr, 3),
        );
        assert!(x.same_allocation(&y));
        assert!(!x.same_allocation(&z));
        assert_eq!(x, z, "values are equal whatever the context");
        let r = rec("intern-test");
        let bytes = r.encode();
        let ra = a.record_from_bytes(&bytes, "intern-test", (1, 2)).unwrap();
        assert!(Arc::ptr_eq(&ra, &a.record(r.clone()).unwrap()));
        let rb = b.record(r.clone()).unwrap();
        assert!(!Arc::ptr_eq(&ra, &rb));
        assert_eq!(*ra, *rb);
        // The record's name is the context's name.
        assert!(Arc::ptr_eq(&ra.name, &a.name("intern-test")));
        assert_eq!(b.len().2, 1);
    }

    #[test]
    fn records_are_shared_only_when_equal() {
        let s = Shared::new(7);
        let r = rec("intern-test");
        let bytes = r.encode();
        let a = s.record_from_bytes(&bytes, "intern-test", (1, 2)).unwrap();
        let b = s.record_from_bytes(&bytes, "intern-test", (1, 2)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = s.record(r.clone()).unwrap();
        assert!(Arc::ptr_eq(&a, &c));
        let mut other = r;
        other.leaving = true;
        let d = s.record(other.clone()).unwrap();
        assert_eq!(*d, other);
        assert!(s.record_from_bytes(&[0xff; 4], "x", (0, 0)).is_err());
    }
}
