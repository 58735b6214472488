//! The pair tags of datagrams between two members (`wire::FLAG_PAIR`): which key tags what
//! this node sends to an address, and which checks what arrives from one.
//!
//! Owns the cache of pair keys (`member_key::pair_keys`, one X25519 per peer key, kept so
//! that a datagram costs a hash lookup and a Poly1305 tag, not a Diffie-Hellman). The peer at
//! an address is the member the truth has there (`Truth::at_addr`), its key the one bound to
//! its name. A child module of `core::node`; must not seal or open anything itself
//! (`core::trust` does) and must stay sans-IO.

use super::Node;
use crate::hash::FixedHashMap;
use chacha20poly1305::XChaCha20Poly1305;
use std::net::SocketAddr;

/// Most peer keys whose pair keys are cached (past it the cache starts over: each key costs
/// one X25519 to derive again).
pub(super) const MAX_PAIRS: usize = 4096;

/// Pair keys by the peer's X25519 public key: (ours to it, its to us).
#[derive(Default)]
pub(crate) struct PairCache {
    keys: FixedHashMap<[u8; 32], (XChaCha20Poly1305, XChaCha20Poly1305)>,
}

impl Node {
    /// The pair key of datagrams to `dst` (`tx`) or from it: `None` when this node has no
    /// member keys, or no key is bound to the name of the member at that address.
    pub(super) fn pair_key(&mut self, addr: SocketAddr, tx: bool) -> Option<XChaCha20Poly1305> {
        let keys = self.member_keys.as_ref()?;
        let m = self.truth.at_addr(addr)?;
        let peer = self.store().bindings.get(m.id.name())?.seal;
        if peer == keys.public().seal {
            return None;
        }
        let cache = &mut self.pairs.keys;
        if !cache.contains_key(&peer) {
            let pair = crate::member_key::pair_keys(keys, &peer)?;
            if cache.len() >= MAX_PAIRS {
                cache.clear();
            }
            cache.insert(peer, pair);
        }
        let (ours, theirs) = cache.get(&peer)?;
        Some(if tx { ours.clone() } else { theirs.clone() })
    }
}
