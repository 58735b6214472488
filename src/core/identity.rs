//! Node identity as it travels in every foca message header.
//!
//! Owns `NodeId` (name, advertised address, generation) and its foca `Identity` impl. The
//! cluster-wide key foca uses (`Identity::Addr`) is the advertised socket address, so a seed
//! can be announced to by address alone; the generation (start time in ms, bumped on renew)
//! makes a restarted node win the conflict with its old self. Must stay small: no metadata.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Longest node name accepted (bytes).
pub const MAX_NAME_LEN: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    #[serde(deserialize_with = "crate::core::intern::de_name")]
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub generation: u64,
}

impl NodeId {
    pub fn new(name: &str, addr: SocketAddr, generation: u64) -> Self {
        NodeId {
            name: crate::core::intern::name(name),
            addr,
            generation,
        }
    }

    /// A placeholder identity used to announce to an address whose node we do not know yet.
    /// foca accepts an `Announce` whose destination has the receiver's address.
    pub fn placeholder(addr: SocketAddr) -> Self {
        NodeId {
            name: Arc::from(""),
            addr,
            generation: 0,
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.generation)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
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
    type Addr = SocketAddr;

    /// Called by foca when the cluster declared us down: come back as a newer generation.
    fn renew(&self) -> Option<Self> {
        Some(NodeId {
            name: self.name.clone(),
            addr: self.addr,
            generation: self.generation.saturating_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Two identities claim one address: the newer generation wins (a restart); on a tie the
    /// name decides so that every node picks the same winner.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.name) > (adversary.generation, &adversary.name)
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
        assert_eq!(new.generation, 11);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("web-1.dc_a").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }
}
