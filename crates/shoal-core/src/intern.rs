//! Sharing of decoded names between the nodes of one context (a leaf module).
//!
//! Owns the interner of node names (`Arc<str>`) that a `shared::Shared` context holds (the
//! cache of metadata records is `record_cache`, of identities `identity`). In the agent it
//! only saves a few allocations; in the simulator, where thousands of nodes decode the same
//! names and records, it keeps one copy per run instead of one per node. Entries nobody else
//! holds are pruned as the table grows, so it stays bounded by what is live. Must not change
//! any value, and must hold no state of its own: the context owns the table.
//!
//! The serde helpers below allocate: a message decoded outside a node (no context at hand)
//! holds names of its own, and the node takes the shared copy where it keeps one.

use crate::hash::{FixedHashSet, HashSeed};
use serde::de::{Deserializer, Error as _, Visitor};
use std::fmt;
use std::sync::Arc;

/// Caches prune entries nobody else holds when they grow past twice their last live size.
pub(crate) const MIN_PRUNE_AT: usize = 4096;

/// The interned names of one context.
pub(crate) struct Names {
    set: FixedHashSet<Arc<str>>,
    prune_at: usize,
}

impl Names {
    pub(crate) fn new(seed: HashSeed) -> Names {
        Names {
            set: seed.set(),
            prune_at: MIN_PRUNE_AT,
        }
    }

    /// The shared `Arc<str>` for `s` (allocated on first sight).
    pub(crate) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        if self.set.len() >= self.prune_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.prune_at = (self.set.len() * 2).max(MIN_PRUNE_AT);
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    pub(crate) fn peek(&self, s: &str) -> Option<Arc<str>> {
        self.set.get(s).cloned()
    }
}

fn name(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// Serde helper: deserializes a string into an `Arc<str>`.
pub(crate) fn de_name<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
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
pub(crate) fn de_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arc<str>>, D::Error> {
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
        let mut n = Names::new(HashSeed::of_node(1));
        let a = n.get("n1");
        let b = n.get("n1");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(n.len(), 1);
    }
}
