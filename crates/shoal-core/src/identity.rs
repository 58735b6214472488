//! Node identity as it travels in every foca message header.
//!
//! Owns `NodeId` (name, advertised address, generation) and its foca `Identity` impl. The
//! cluster-wide key foca uses (`Identity::Addr`) is the advertised socket address, so a seed
//! can be announced to by address alone; the generation (start time in ms, bumped on renew)
//! makes a restarted node win the conflict with its old self. Must stay small: no metadata.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{SocketAddr, SocketAddrV6};
use std::sync::Arc;

/// Longest node name accepted (bytes).
pub const MAX_NAME_LEN: usize = 64;

/// A member's identity: its name, advertised address and generation.
///
/// Kept to 16 bytes because foca stores one per member and scans its member list linearly
/// by address: a compact address key beside one shared pointer to the rest. Identities
/// decoded from the wire are interned in the node's context (`shared::Shared`), so equal
/// identities share one allocation.
#[derive(Clone)]
pub struct NodeId {
    key: AddrKey,
    inner: Arc<IdParts>,
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
struct IdParts {
    name: Arc<str>,
    addr: SocketAddr,
    generation: u64,
    /// `sync::shard_hash(name)`, computed once: membership sync scans members by shard.
    #[serde(skip)]
    shard: u64,
    /// `hash::bloom_hashes(name)`, computed once: the membership filter hashes every member.
    #[serde(skip)]
    bloom: (u64, u64),
}

/// foca's key for an identity: equal exactly when the advertised socket addresses are equal
/// (IPv4 addresses are packed into it; IPv6 ones are hashed to 62 bits: a collision needs
/// about 2^31 addresses, and only key holders can make a node decode identities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrKey(u64);

impl AddrKey {
    pub(crate) fn of(addr: SocketAddr) -> AddrKey {
        match addr {
            SocketAddr::V4(a) => {
                AddrKey((1u64 << 62) | (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()))
            }
            SocketAddr::V6(a) => AddrKey((2u64 << 62) | v6_number(a)),
        }
    }
}

/// A 62-bit hash of an IPv6 socket address (fixed seed: the same in every process, so that
/// the simulator replays exactly). There is no table to grow: the issue of a process-wide
/// table that every decoded IPv6 identity stayed in for good is gone.
fn v6_number(a: SocketAddrV6) -> u64 {
    use std::hash::BuildHasher;
    let h = foldhash::quality::FixedState::with_seed(0x5B0A_1D6E_u64).hash_one((
        a.ip().octets(),
        a.port(),
        a.scope_id(),
    ));
    h >> 2
}

/// Interned identities. Each entry keeps beside the shared parts everything a lookup
/// compares (hash, address key, generation and, for names of up to `INLINE_NAME` bytes, the
/// name itself), so that finding the identity a datagram names follows no pointer but the
/// one it returns: in a simulated cluster of thousands, every pointer followed is a cache
/// miss, and every update received decodes an identity.
pub(crate) struct IdCache {
    table: hashbrown::HashTable<IdEntry>,
    hasher: foldhash::fast::FixedState,
    prune_at: usize,
}

const INLINE_NAME: usize = 22;

struct IdEntry {
    hash: u64,
    key: AddrKey,
    generation: u64,
    /// Name length, and its bytes when it is at most `INLINE_NAME` long.
    name_len: u16,
    name: [u8; INLINE_NAME],
    parts: Arc<IdParts>,
}

impl IdEntry {
    fn is(&self, hash: u64, name: &str, addr: SocketAddr, key: AddrKey, generation: u64) -> bool {
        if self.hash != hash
            || self.key != key
            || self.generation != generation
            || usize::from(self.name_len) != name.len()
        {
            return false;
        }
        let same_name = if name.len() <= INLINE_NAME {
            self.name[..name.len()] == *name.as_bytes()
        } else {
            *self.parts.name == *name
        };
        // The key packs IPv4 addresses exactly; IPv6 ones are numbered, so compare those.
        same_name && (matches!(addr, SocketAddr::V4(_)) || self.parts.addr == addr)
    }
}

impl IdCache {
    pub(crate) fn new(seed: crate::hash::HashSeed) -> IdCache {
        IdCache {
            table: hashbrown::HashTable::new(),
            hasher: seed.state(),
            prune_at: crate::intern::MIN_PRUNE_AT,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The shared parts for (name, addr, generation), allocated on first sight (the name
    /// from `names`).
    pub(crate) fn intern(
        &mut self,
        names: &mut crate::intern::Names,
        name: &str,
        addr: SocketAddr,
        generation: u64,
    ) -> NodeId {
        use std::hash::BuildHasher;
        let key = AddrKey::of(addr);
        let hash = self.hasher.hash_one((name, key, generation));
        if let Some(e) = self
            .table
            .find(hash, |e| e.is(hash, name, addr, key, generation))
        {
            return NodeId {
                key,
                inner: e.parts.clone(),
            };
        }
        if self.table.len() >= self.prune_at {
            self.table.retain(|e| Arc::strong_count(&e.parts) > 1);
            self.prune_at = (self.table.len() * 2).max(crate::intern::MIN_PRUNE_AT);
        }
        let parts = Arc::new(IdParts {
            name: names.get(name),
            addr,
            generation,
            shard: crate::hash::shard_hash(name),
            bloom: crate::hash::bloom_hashes(name),
        });
        let mut inline = [0u8; INLINE_NAME];
        if name.len() <= INLINE_NAME {
            inline[..name.len()].copy_from_slice(name.as_bytes());
        }
        let entry = IdEntry {
            hash,
            key,
            generation,
            name_len: u16::try_from(name.len()).unwrap_or(u16::MAX),
            name: inline,
            parts: parts.clone(),
        };
        self.table.insert_unique(hash, entry, |e| e.hash);
        NodeId { key, inner: parts }
    }
}

/// The wire shape of an identity, borrowing the name from the datagram (`codec` turns it
/// into a `NodeId`, validated and interned).
#[derive(Deserialize)]
pub(crate) struct WireId<'a> {
    #[serde(borrow)]
    name: &'a str,
    addr: SocketAddr,
    generation: u64,
}

impl WireId<'_> {
    /// Its name, address and generation, once checked: a valid name (the empty name is an
    /// announce placeholder) and a generation of at most `max_generation`. The node's context
    /// turns them into the shared identity (`shared::Shared::resolve`).
    pub(crate) fn checked(&self, max_generation: u64) -> Result<(&str, SocketAddr, u64), String> {
        if !self.name.is_empty() {
            validate_name(self.name)?;
        }
        if self.generation > max_generation {
            return Err("generation too far in the future".into());
        }
        Ok((self.name, self.addr, self.generation))
    }
}

impl NodeId {
    /// An identity of its own (not shared with anyone: `Shared::id` gives the shared one).
    pub fn new(name: &str, addr: SocketAddr, generation: u64) -> Self {
        NodeId {
            key: AddrKey::of(addr),
            inner: Arc::new(IdParts {
                name: Arc::from(name),
                addr,
                generation,
                shard: crate::hash::shard_hash(name),
                bloom: crate::hash::bloom_hashes(name),
            }),
        }
    }

    /// Whether both are the one allocation a context shares.
    #[cfg(test)]
    pub(crate) fn same_allocation(&self, o: &NodeId) -> bool {
        Arc::ptr_eq(&self.inner, &o.inner)
    }

    /// A placeholder identity used to announce to an address whose node we do not know yet.
    /// foca accepts an `Announce` whose destination has the receiver's address.
    pub fn placeholder(addr: SocketAddr) -> Self {
        Self::new("", addr, 0)
    }

    /// The node's name.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The advertised socket address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The node's generation (start time): a restarted node has a larger one.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The membership-sync shard (of `parts`) of this name: `sync::shard_of(name, parts)`
    /// without hashing the name again.
    pub fn shard(&self, parts: u32) -> u32 {
        crate::hash::shard_in(self.inner.shard, parts)
    }

    /// `hash::bloom_hashes(name)` without hashing the name again.
    pub fn bloom(&self) -> (u64, u64) {
        self.inner.bloom
    }
}

impl PartialEq for NodeId {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && (Arc::ptr_eq(&self.inner, &o.inner) || *self.inner == *o.inner)
    }
}

impl Eq for NodeId {}

impl Hash for NodeId {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.inner.hash(h)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name(), self.addr(), self.generation())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.addr())
    }
}

/// Checks a node name: 1..=64 bytes of `[A-Za-z0-9._-]`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "node name must be 1 to {MAX_NAME_LEN} bytes long, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "node name {name:?} contains {c:?}; use letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

impl foca::Identity for NodeId {
    type Addr = AddrKey;

    /// Called by foca when the cluster declared us down: come back as a newer generation.
    fn renew(&self) -> Option<Self> {
        Some(NodeId::new(
            self.name(),
            self.addr(),
            self.generation().saturating_add(1),
        ))
    }

    fn addr(&self) -> AddrKey {
        self.key
    }

    /// Two identities claim one address: the newer generation wins (a restart); on a tie the
    /// name decides so that every node picks the same winner.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation(), self.name()) > (adversary.generation(), adversary.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn newer_generation_wins() {
        let a: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        let old = NodeId::new("n1", a, 10);
        let new = old.renew().unwrap();
        assert_eq!(new.generation(), 11);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn shard_is_the_names_shard() {
        let a: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        for name in ["n1", "web-7", "a-much-longer-host-name.example.internal"] {
            let id = NodeId::new(name, a, 1);
            for parts in [1, 2, 7, 13, 1000] {
                assert_eq!(id.shard(parts), crate::hash::shard_of(name, parts));
            }
        }
    }

    #[test]
    fn compact_and_wire_compatible() {
        assert_eq!(std::mem::size_of::<NodeId>(), 16);
        let v4 = NodeId::new("a", "10.0.0.1:7946".parse().unwrap(), 3);
        let v6 = NodeId::new("a", "[::1]:7946".parse().unwrap(), 3);
        assert_ne!(foca::Identity::addr(&v4), foca::Identity::addr(&v6));
        let other = NodeId::new("a", "[::2]:7946".parse().unwrap(), 3);
        assert_ne!(foca::Identity::addr(&v6), foca::Identity::addr(&other));
        #[derive(Serialize)]
        struct Plain<'a> {
            name: &'a str,
            addr: SocketAddr,
            generation: u64,
        }
        let plain = Plain {
            name: "a",
            addr: v6.addr(),
            generation: 3,
        };
        let bytes = postcard::to_allocvec(&v6).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&plain).unwrap());
        assert_eq!(decode(&crate::shared::Shared::new(1), &bytes).unwrap(), v6);
        let json = serde_json::json!({"name": "a", "addr": "10.0.0.1:7946", "generation": 3});
        assert_eq!(serde_json::to_value(&v4).unwrap(), json);
    }

    fn decode(shared: &crate::shared::Shared, bytes: &[u8]) -> Result<NodeId, String> {
        let w: WireId<'_> = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        shared.resolve(&w, u64::MAX)
    }

    #[test]
    fn decoded_identities_are_shared_and_distinct_by_name() {
        let a: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        let shared = crate::shared::Shared::new(3);
        let x = shared.id("x", a, 5);
        let bytes = postcard::to_allocvec(&x).unwrap();
        let back = decode(&shared, &bytes).unwrap();
        assert!(Arc::ptr_eq(&x.inner, &back.inner));
        // An identity made outside the context is equal, not shared.
        assert!(!Arc::ptr_eq(&NodeId::new("x", a, 5).inner, &back.inner));
        assert_eq!(NodeId::new("x", a, 5), back);
        // Same address and generation, another name: another identity.
        let y = NodeId::new("y", a, 5);
        assert_ne!(x, y);
        assert_eq!(&**y.name(), "y");
        // Long names (not kept inline) are shared and told apart just as well.
        let long_a = "a-rather-long-host-name.rack-17.dc-west-1";
        let long_b = "a-rather-long-host-name.rack-17.dc-west-2";
        let la = NodeId::new(long_a, a, 5);
        let lb = shared.id(long_b, a, 5);
        assert_ne!(la, lb);
        assert_ne!(shared.id(long_a, a, 5), lb);
        let back = decode(&shared, &postcard::to_allocvec(&lb).unwrap()).unwrap();
        assert!(Arc::ptr_eq(&lb.inner, &back.inner));
        assert_eq!(&**back.name(), long_b);
    }

    #[test]
    fn decode_refuses_bad_names_and_future_generations() {
        #[derive(Serialize)]
        struct Plain<'a> {
            name: &'a str,
            addr: SocketAddr,
            generation: u64,
        }
        let enc = |name: &str, generation| {
            postcard::to_allocvec(&Plain {
                name,
                addr: "10.0.0.1:1".parse().unwrap(),
                generation,
            })
            .unwrap()
        };
        let shared = crate::shared::Shared::new(1);
        let dec = |bytes: &[u8], limit| {
            let w: WireId<'_> = postcard::from_bytes(bytes).unwrap();
            shared.resolve(&w, limit)
        };
        assert!(dec(&enc("a b", 1), u64::MAX).is_err());
        assert!(dec(&enc("", 0), u64::MAX).is_ok());
        assert!(dec(&enc("ok", 500), u64::MAX).is_ok());
        assert!(dec(&enc("ok", 500), 100).is_err());
        assert!(dec(&enc("ok", 100), 100).is_ok());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("web-1.dc_a").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }
}
