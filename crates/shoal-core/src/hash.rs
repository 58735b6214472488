//! Stable hashes: FNV-1a (the same in every build of shoal, on every platform) and the
//! name-space shards of the membership filter. A leaf module: pure functions, no state, no
//! seeded or random hasher.

/// 64-bit FNV-1a: a stable hash that every build of shoal computes the same way.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
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
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The shard (of `parts`) a member name belongs to; stable across builds and platforms.
pub fn shard_of(name: &str, parts: u32) -> u32 {
    shard_in(shard_hash(name), parts)
}

/// The hash `shard_of` reduces: computed once per identity (see `NodeId::shard`), so that
/// scanning thousands of members for one shard reads no name.
pub fn shard_hash(name: &str) -> u64 {
    mix(fnv1a(&[b"shoal-shard", name.as_bytes()]))
}

/// The shard (of `parts`) of a name whose `shard_hash` is `hash`.
pub fn shard_in(hash: u64, parts: u32) -> u32 {
    (hash % u64::from(parts.max(1))) as u32
}

/// A `HashMap` whose hasher has a fixed seed: the same behaviour in every run (the core
/// must not use randomly seeded hashers; see clippy.toml). Iteration order is still not
/// meaningful: sort where an order reaches an output.
pub type FixedHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// A `HashSet` whose hasher has a fixed seed (see `FixedHashMap`).
pub type FixedHashSet<T> = std::collections::HashSet<T, foldhash::fast::FixedState>;
