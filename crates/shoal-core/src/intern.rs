//! Sharing of decoded names between the nodes of one thread (a leaf module).
//!
//! Owns a thread-local interner of node names (`Arc<str>`) used when a name is decoded from
//! the wire (the cache of metadata records is `record_cache`). In the agent they only save a few allocations;
//! in the simulator, where thousands of nodes decode the same names and records, they keep one
//! copy per process instead of one per node. Entries nobody else holds are pruned as the
//! caches grow, so they stay bounded by what is live. Must not change any value: a cached
//! record is only used when it is equal to what was received.
//!
//! The thread's caches (names here, identities in `identity`, records in `record_cache`)
//! are hashed with the seed of the first node built on the thread (`seed_thread_caches`):
//! peers cannot precompute colliding names, and the seed changes no value, only where an
//! entry sits.

use crate::hash::{FixedHashSet, HashSeed};
use serde::de::{Deserializer, Error as _, Visitor};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// Caches prune entries nobody else holds when they grow past twice their last live size.
pub(crate) const MIN_PRUNE_AT: usize = 4096;

struct Names {
    set: FixedHashSet<Arc<str>>,
    prune_at: usize,
    seeded: bool,
}

thread_local! {
    static NAMES: RefCell<Names> = RefCell::new(Names {
        set: FixedHashSet::default(),
        prune_at: MIN_PRUNE_AT,
        seeded: false,
    });
}

/// Hashes this thread's caches (names, identities, records) with `seed` unless a node built
/// earlier on the thread already did: the first node's seed stays (in the simulator every
/// node of the thread shares the caches). Entries already cached are kept, rehashed.
pub(crate) fn seed_thread_caches(seed: HashSeed) {
    let first = NAMES.with(|n| {
        let mut n = n.borrow_mut();
        if n.seeded {
            return false;
        }
        n.seeded = true;
        let old = std::mem::replace(&mut n.set, seed.set());
        n.set.extend(old);
        true
    });
    if first {
        crate::identity::reseed_cache(seed);
        crate::record_cache::reseed_cache(seed);
    }
}

/// The shared `Arc<str>` for `s` (allocated on first sight).
pub fn name(s: &str) -> Arc<str> {
    NAMES.with(|n| {
        let mut n = n.borrow_mut();
        if let Some(a) = n.set.get(s) {
            return a.clone();
        }
        if n.set.len() >= n.prune_at {
            n.set.retain(|a| Arc::strong_count(a) > 1);
            n.prune_at = (n.set.len() * 2).max(MIN_PRUNE_AT);
        }
        let a: Arc<str> = Arc::from(s);
        n.set.insert(a.clone());
        a
    })
}

/// Serde helper: deserializes a string into an interned `Arc<str>` (no allocation when the
/// name is known).
pub fn de_name<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Arc<str>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Arc<str>, E> {
            Ok(name(s))
        }
        fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Arc<str>, E> {
            std::str::from_utf8(b)
                .map(name)
                .map_err(|_| E::custom("invalid utf-8"))
        }
    }
    d.deserialize_str(V)
}

/// Serde helper for a list of names.
pub fn de_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arc<str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<Arc<str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(256));
            while let Some(s) = a.next_element::<Name>()? {
                v.push(s.0);
            }
            Ok(v)
        }
    }
    struct Name(Arc<str>);
    impl<'de> serde::Deserialize<'de> for Name {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            de_name(d).map(Name)
        }
    }
    d.deserialize_seq(V).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shared() {
        let a = name("n1");
        let b = name("n1");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
