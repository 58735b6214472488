//! Metadata records through foca: the key that lets a newer record of a node replace an
//! older one in foca's broadcast queue, and the `BroadcastHandler` that validates received
//! records (name, stamp, not ours) and feeds them into the shared store.
//!
//! Must not decide membership. It owns the node's metadata store and Lifeguard's inbox of
//! received accusations (foca owns the handler; the node reaches both through
//! `Foca::broadcast_handler[_mut]`, foca patch 0020), and keeps no other state.
//!
//! What a broadcast item is (`Item`, typed once at decode), from its first byte: 0 a
//! Lifeguard accusation, 1 to `MAX_NAME_LEN` a record (its name's length), anything else an
//! item of a later release, ignored and counted, never an error (which would cost the rest
//! of the SWIM packet's items).
//! A later release adds an item kind with a first byte from `0x80..=0xff` (docs/upgrades.md).

use crate::meta::{stamp_acceptable, MetaError, MAX_RECORD_BYTES};
use crate::meta_store::MetaStore;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

/// The leading fields of an encoded record, decoded without allocating.
#[derive(Deserialize)]
pub(crate) struct RecordHead<'a> {
    #[serde(borrow)]
    pub name: &'a str,
    #[allow(dead_code)]
    addr: SocketAddr,
    pub generation: u64,
    pub version: u64,
}

/// Key of a record in foca's broadcast queue: a newer record of one node replaces an older one.
#[derive(Debug, Clone)]
pub(crate) struct MetaKey {
    name: Arc<str>,
    stamp: (u64, u64),
}

impl foca::Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name && self.stamp >= other.stamp
    }

    /// Records of one node share a key, so replacing one only looks at that node's records
    /// instead of the whole backlog (vendored foca, see vendor/README.md).
    fn invalidation_key(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.name.hash(&mut h);
        Some(h.finish())
    }
}

/// Feeds metadata broadcasts received through foca into the shared store.
pub(crate) struct MetaBroadcasts {
    /// The node's context: records received are shared through it.
    pub shared: Arc<crate::shared::Shared>,
    /// Records of a later generation are refused (set by the node before each datagram).
    pub max_generation: u64,
    /// Every node's latest record (the node reaches it through `Foca::broadcast_handler`).
    pub store: MetaStore,
    /// This node's name: nobody but this node writes its record.
    pub own: Arc<str>,
    /// Lifeguard's accusations travel with the records (`core::lifeguard`).
    pub accusations: crate::lifeguard::Inbox,
    /// Items of a kind a later release added, ignored (the node adds them to its stats).
    pub unknown: u64,
    /// The newest record about us received (its stamp and whether it says we leave): the
    /// node refutes it if it did not issue it (`Node::refute_record_about_us`).
    pub about_us: Option<((u64, u64), bool)>,
}

impl MetaKey {
    /// The broadcast key of an accusation: one per (subject, accuser), the newest
    /// incarnation replacing older ones. The name cannot collide with a node name (`!`).
    pub(crate) fn accusation(a: &crate::lifeguard::Accusation) -> MetaKey {
        MetaKey {
            name: Arc::from(format!("!{}!{}", a.subject, a.accuser)),
            stamp: (u64::from(a.incarnation), 0),
        }
    }
}

/// A broadcast item, typed once from its first byte (the bytes stay as v0.1.0 wrote them):
/// what the handler does is chosen by this type, never by a byte test further on.
pub(crate) enum Item<'a> {
    /// A Lifeguard accusation (first byte `lifeguard::TAG`).
    Accusation(crate::lifeguard::Accusation),
    /// A metadata record, of which only the head is decoded yet: most records received are
    /// not newer than what we hold, so the whole one is decoded only when it would be stored.
    Record {
        head: RecordHead<'a>,
        /// The whole encoding.
        data: &'a [u8],
    },
    /// An item kind a later release added: ignored and counted. v0.1.0 refused such items.
    Later,
}

impl<'a> Item<'a> {
    pub(crate) fn decode(data: &'a [u8]) -> Result<Item<'a>, MetaError> {
        if data.len() > MAX_RECORD_BYTES {
            return Err(MetaError::TooLarge(data.len()));
        }
        let first = data.first().copied().unwrap_or(0);
        if first == crate::lifeguard::TAG {
            return crate::lifeguard::Accusation::decode(data)
                .map(Item::Accusation)
                .map_err(|e| MetaError::Decode(e.to_string()));
        }
        if !(1..=crate::identity::MAX_NAME_LEN).contains(&usize::from(first)) {
            return Ok(Item::Later);
        }
        let head = postcard::from_bytes(data).map_err(|e| MetaError::Decode(e.to_string()))?;
        Ok(Item::Record { head, data })
    }
}

impl MetaBroadcasts {
    /// An accusation, ours (`received == false`) or received.
    fn accusation(&mut self, a: crate::lifeguard::Accusation, received: bool) -> Option<MetaKey> {
        let key = MetaKey::accusation(&a);
        if !received {
            return self.accusations.own(&a).then_some(key);
        }
        self.accusations.offer(a).then_some(key)
    }

    /// A record, ours (`received == false`: the node adds its own, already stored: spread
    /// it) or received.
    fn record(
        &mut self,
        head: RecordHead<'_>,
        data: &[u8],
        received: bool,
    ) -> Result<Option<MetaKey>, MetaError> {
        let stamp = (head.generation, head.version);
        if !received {
            let rec = self.shared.record_from_bytes(data, head.name, stamp)?;
            return Ok(Some(MetaKey {
                name: rec.name.clone(),
                stamp,
            }));
        }
        // Validated here as on the direct path (a Push): a valid name, not about us, not
        // from the future.
        if *head.name == *self.own {
            // Our old records circulate after a restart: not an error, never taken; but
            // one we did not issue (newer than ours, or a leave) is refuted by the node.
            if let Ok(rec) = crate::meta::MetaRecord::decode(data) {
                let seen = (stamp, rec.leaving);
                if self.about_us.is_none_or(|a| a < seen) {
                    self.about_us = Some(seen);
                }
            }
            return Ok(None);
        }
        if crate::identity::validate_name(head.name).is_err() {
            return Err(MetaError::Refused("invalid node name"));
        }
        if !stamp_acceptable(stamp, self.max_generation) {
            return Err(MetaError::Refused(
                "generation or version far in the future",
            ));
        }
        let store = &mut self.store;
        // Whether it has extension fields is only known once decoded (`MetaStore::wants`).
        if !store.wants(head.name, stamp, true) {
            return Ok(None);
        }
        let rec = self.shared.record_from_bytes(data, head.name, stamp)?;
        let key = MetaKey {
            name: rec.name.clone(),
            stamp,
        };
        // Signed by the key bound to its name (or unsigned while none is): else dropped and
        // counted, not relayed, and not an error (which would cost the packet's other items).
        if !store.admit(&rec) {
            return Ok(None);
        }
        Ok(store.offer(rec).then_some(key))
    }
}

impl<T> foca::BroadcastHandler<T> for MetaBroadcasts {
    type Key = MetaKey;
    type Error = MetaError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&T>,
    ) -> Result<Option<MetaKey>, MetaError> {
        match Item::decode(data)? {
            Item::Accusation(a) => Ok(self.accusation(a, sender.is_some())),
            Item::Record { head, data } => self.record(head, data, sender.is_some()),
            Item::Later => {
                self.unknown += 1;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_of_one_node_share_an_invalidation_key() {
        use foca::Invalidates;
        let key = |name: &str, stamp| MetaKey {
            name: Arc::from(name),
            stamp,
        };
        let newer = key("web-1", (2, 1));
        let older = key("web-1", (1, 9));
        assert!(newer.invalidates(&older));
        assert_eq!(newer.invalidation_key(), older.invalidation_key());
        assert!(newer.invalidation_key().is_some());
        assert_ne!(
            newer.invalidation_key(),
            key("web-2", (2, 1)).invalidation_key()
        );
    }
}
