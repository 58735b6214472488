//! Stable hashes and the seeds of hash tables.
//!
//! Owns FNV-1a (the same in every build of shoal, on every platform), the name-space shards
//! of the membership filter, and `HashSeed`: the seed of a node's hash tables, derived from
//! the seed given at `Node::new`, so that a peer cannot precompute names that collide in
//! them (HashDoS) while the same seed in still gives the same behaviour. A leaf module: no
//! state, no random hasher. Must not be used for anything that reaches an output in table
//! order: sort there.

/// 64-bit FNV-1a: a stable hash that every build of shoal computes the same way.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Finalizer of MurmurHash3: spreads FNV-1a's bits (its low bits are weak on short names).
pub(crate) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The two hashes of `name` a `sync::NameFilter` derives its bit positions from (computed once
/// per identity: `NodeId::bloom`).
pub(crate) fn bloom_hashes(name: &str) -> (u64, u64) {
    (
        mix(fnv1a(&[b"shoal-bloom-1", name.as_bytes()])),
        mix(fnv1a(&[b"shoal-bloom-2", name.as_bytes()])) | 1,
    )
}

#[cfg(test)]
/// The shard (of `parts`) a member name belongs to; stable across builds and platforms.
pub(crate) fn shard_of(name: &str, parts: u32) -> u32 {
    shard_in(shard_hash(name), parts)
}

/// The hash `shard_of` reduces: computed once per identity (see `NodeId::shard`), so that
/// scanning thousands of members for one shard reads no name.
pub(crate) fn shard_hash(name: &str) -> u64 {
    mix(fnv1a(&[b"shoal-shard", name.as_bytes()]))
}

/// The shard (of `parts`) of a name whose `shard_hash` is `hash`.
pub(crate) fn shard_in(hash: u64, parts: u32) -> u32 {
    (hash % u64::from(parts.max(1))) as u32
}

/// A `HashMap` whose hasher has an explicit seed: the same behaviour in every run with the
/// same seed (the core must not use randomly seeded hashers; see clippy.toml). A table that
/// a datagram can grow takes its seed from the node (`HashSeed::map`); `default()` (seed 0)
/// is for tables only local input fills. Iteration order is not meaningful: sort where an
/// order reaches an output.
pub(crate) type FixedHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// A `HashSet` whose hasher has an explicit seed (see `FixedHashMap`).
pub(crate) type FixedHashSet<T> = std::collections::HashSet<T, foldhash::fast::FixedState>;

/// The seed of one node's hash tables: derived from the node's seed (`Node::new`), private
/// to the node (never sent), handed to every table a datagram can grow. Two nodes given
/// different seeds hash differently; one node given the same seed twice behaves the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashSeed(u64);

impl HashSeed {
    /// The table seed of a node whose seed (the one its random choices come from) is `seed`.
    pub fn of_node(seed: u64) -> HashSeed {
        HashSeed(mix(seed ^ 0x7AB1_E5EE_D5A1_7C0D))
    }

    /// The hasher of one table.
    pub fn state(self) -> foldhash::fast::FixedState {
        foldhash::fast::FixedState::with_seed(self.0)
    }

    /// An empty map hashed with this seed.
    pub fn map<K, V>(self) -> FixedHashMap<K, V> {
        FixedHashMap::with_hasher(self.state())
    }

    /// An empty set hashed with this seed.
    pub fn set<T>(self) -> FixedHashSet<T> {
        FixedHashSet::with_hasher(self.state())
    }

    /// The raw seed (for tables with their own hasher type, e.g. `NameTable::with_seed`).
    pub fn get(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn table_seeds_follow_the_node_seed() {
        let h = |seed: u64| HashSeed::of_node(seed).state().hash_one("member-1");
        assert_eq!(h(7), h(7), "same node seed, same hashes");
        assert_ne!(h(7), h(8), "another node seed, other hashes");
        assert_ne!(HashSeed::of_node(0), HashSeed::default());
    }
}
