//! The metadata record: `MetaRecord` (a node's metadata versioned by its owner, the unit
//! that is gossiped), its encoding, and the checks of `NodeMeta` that depend on it (the
//! encoded size a record carrying it takes). `NodeMeta` itself, its parts and their limits are
//! `core::node_meta`, below this module (re-exported here). The
//! store of every node's record is `core::meta_store`, above this module. Only the owner
//! ever creates a new version of its own record. Must not decide membership: a record says
//! nothing about whether its node is alive.
//!
//! A record's encoding is v0.1.0's (postcard, frozen) followed by its extension fields
//! (`core::ext`, declared in `core::fields::record`), so that v0.1.0 and every later release
//! read it (docs/upgrades.md).

use crate::ext::Ext;
use crate::names::Named;
use crate::node_meta::validate_tags;
pub(crate) use crate::node_meta::{
    output_line, Health, MetaError, NodeMeta, Service, MAX_RECORD_BYTES, MAX_SERVICES, MAX_TAGS,
};
use crate::wire::{ProtocolRange, PROTOCOL_V1};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// Bytes of [`MAX_RECORD_BYTES`] this node keeps free in its own record for extension fields
/// (`core::fields::record`): its own metadata must fit in the rest. Received records are
/// only held to [`MAX_RECORD_BYTES`] as a whole (v0.1.0 kept no such room).
///
/// This release's own fields: its protocol range (6), a restart intent (7), its member key
/// (66) and its signature (66): 145 bytes at most.
pub(crate) const EXT_RESERVE: usize = 160;
/// Largest record version accepted from the wire (a version "far in the future" would let
/// its sender pin a node's record against every later update of the owner).
pub(crate) const MAX_VERSION: u64 = 1 << 32;

/// Whether a record stamp from the wire is acceptable: generation at most `max_generation`
/// (our clock plus a margin), version at most [`MAX_VERSION`].
pub(crate) fn stamp_acceptable(stamp: (u64, u64), max_generation: u64) -> bool {
    stamp.0 <= max_generation && stamp.1 <= MAX_VERSION
}

/// A node's metadata as gossiped: versioned by its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    #[serde(deserialize_with = "crate::intern::de_name")]
    /// The owner's name.
    pub name: Arc<str>,
    /// The owner's advertised address: lets a node that missed the owner's join find it.
    pub addr: SocketAddr,
    /// Generation of the owner's identity when it wrote this version.
    pub generation: u64,
    /// Increases with every change the owner makes.
    pub version: u64,
    /// Set when the owner is leaving gracefully: its disappearance is intent, not failure.
    pub leaving: bool,
    /// Written as v0.1.0's fixed part (one instance per service, keyed by name); the other
    /// instances are joined in from field `record.instances` at decode.
    #[serde(serialize_with = "crate::instances::serialize_fixed")]
    pub meta: NodeMeta,
    /// Extension fields after the fixed part above (`core::fields::record`), known and
    /// unknown alike: written back as received, so a relayed record loses none.
    #[serde(skip)]
    pub ext: Ext,
}

impl MetaRecord {
    /// The ordering key: a newer generation always wins, then the newer version.
    pub fn stamp(&self) -> (u64, u64) {
        (self.generation, self.version)
    }

    /// The record as a broadcast item: its fixed part, then its extension fields.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing owned, bounded data into a Vec cannot fail.
        let mut out = postcard::to_allocvec(self).unwrap_or_default();
        self.ext.encode_into(&mut out);
        out
    }

    /// Bytes [`MetaRecord::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self).saturating_add(self.ext.encoded_len())
    }

    /// Decodes and validates a record (its fixed part, then its extension fields).
    pub fn decode(data: &[u8]) -> Result<Self, MetaError> {
        if data.len() > MAX_RECORD_BYTES {
            return Err(MetaError::TooLarge(data.len()));
        }
        let (mut rec, rest): (MetaRecord, &[u8]) =
            postcard::take_from_bytes(data).map_err(|e| MetaError::Decode(e.to_string()))?;
        rec.ext = Ext::decode(rest).map_err(|e| MetaError::Decode(e.to_string()))?;
        rec.join_instances()?;
        rec.validate()?;
        Ok(rec)
    }

    /// Re-keys the services of a record just decoded (its fixed part keyed by name) by
    /// instance id, with the instances of field `record.instances` (`instances::join`).
    /// A fixed part whose key is not its service's name is refused (v0.1.0's rule); a field
    /// that does not decode or that `instances::join` refuses (bad, unordered or repeated
    /// ids, more than `MAX_SERVICES` instances in all) reads as absent, as every known field
    /// out of range does (`validate`): the record is read as v0.1.0 reads it, one instance
    /// per service, and relayed with its field intact.
    pub fn join_instances(&mut self) -> Result<(), MetaError> {
        let fixed = crate::instances::join(std::mem::take(&mut self.meta.services), None)?;
        let inst = crate::fields::record::INSTANCES
            .get(&self.ext)
            .ok()
            .flatten();
        self.meta.services = match inst.map(|i| crate::instances::join(fixed.clone(), Some(i))) {
            Some(Ok(all)) if all.len() <= MAX_SERVICES => all,
            _ => fixed,
        };
        Ok(())
    }

    /// Sets the owner's metadata, and field `record.instances` to match: the owner's own
    /// record only (every change of `meta` on it goes through here).
    pub fn set_meta(&mut self, meta: NodeMeta) {
        match crate::instances::split(&meta) {
            Some(i) => crate::fields::record::INSTANCES.set(&mut self.ext, &i),
            None => self.ext.remove(crate::fields::record::INSTANCES.number),
        }
        self.meta = meta;
    }

    /// Checks a received record: its metadata's limits and its whole size. The content of
    /// a known extension field is never a reason to refuse the record (a later release may
    /// widen what a field allows, and a refused broadcast item costs the rest of its packet's
    /// items): the typed accessors below treat a value out of range as absent or clamp it.
    pub fn validate(&self) -> Result<(), MetaError> {
        self.meta.validate_with_reserve(0)?;
        let len = self.encoded_len();
        if len > MAX_RECORD_BYTES {
            return Err(MetaError::TooLarge(len));
        }
        Ok(())
    }

    /// The restart its owner announced (`core::restart`), if any, its grace clamped to
    /// `restart::MIN_GRACE..=MAX_GRACE` (a forged "back in a year" holds an hour at most).
    pub fn restart(&self) -> Option<crate::restart::RestartIntent> {
        crate::fields::record::RESTART
            .get(&self.ext)
            .ok()
            .flatten()
            .map(|grace_ms| {
                crate::restart::RestartIntent::new(std::time::Duration::from_millis(u64::from(
                    grace_ms,
                )))
            })
    }

    /// Sets (or clears) the restart intent: the owner's own record only.
    pub fn set_restart(&mut self, intent: Option<crate::restart::RestartIntent>) {
        match intent {
            Some(i) => crate::fields::record::RESTART.set(&mut self.ext, &i.grace_ms),
            None => self.ext.remove(crate::fields::record::RESTART.number),
        }
    }

    /// The protocol range its owner announced; v0.1.0 announced none: `wire::PROTOCOL_V1`
    /// (also what an invalid range reads as).
    pub fn protocol(&self) -> ProtocolRange {
        crate::fields::record::PROTOCOL
            .get(&self.ext)
            .ok()
            .flatten()
            .filter(ProtocolRange::is_valid)
            .unwrap_or(PROTOCOL_V1)
    }
}

impl NodeMeta {
    /// Bytes this metadata takes in a record: the fixed part and field `record.instances`.
    pub fn wire_len(&self) -> usize {
        struct Fixed<'a>(&'a NodeMeta);
        impl Serialize for Fixed<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::instances::serialize_fixed(self.0, s)
            }
        }
        let mut ext = Ext::default();
        if let Some(i) = crate::instances::split(self) {
            crate::fields::record::INSTANCES.set(&mut ext, &i);
        }
        encoded_len(&Fixed(self)).saturating_add(ext.encoded_len())
    }

    /// Checks every limit, including the encoded size of a record carrying this metadata
    /// and [`EXT_RESERVE`] bytes of extension fields: for this node's own metadata.
    pub fn validate(&self) -> Result<(), MetaError> {
        self.validate_with_reserve(EXT_RESERVE)
    }

    fn validate_with_reserve(&self, reserve: usize) -> Result<(), MetaError> {
        if self.tags.len() > MAX_TAGS {
            return Err(MetaError::TooManyTags(self.tags.len()));
        }
        validate_tags(&self.tags)?;
        if self.services.len() > MAX_SERVICES {
            return Err(MetaError::TooManyServices(self.services.len()));
        }
        for (id, svc) in &self.services {
            if !crate::instances::valid_id(id) {
                return Err(MetaError::BadInstanceId(id.clone()));
            }
            svc.validate()?;
        }
        // The worst-case header (a 64-byte name, an IPv6 address, two 10-byte varints) plus
        // the encoding of this metadata (postcard encodes a struct as its fields in a row):
        // its fixed part and its field `record.instances`, framing included.
        let len = record_header_max()
            .saturating_add(self.wire_len())
            .saturating_add(reserve);
        if len > MAX_RECORD_BYTES {
            return Err(MetaError::TooLarge(len));
        }
        Ok(())
    }
}

fn encoded_len<T: Serialize>(v: &T) -> usize {
    postcard::serialize_with_flavor(v, postcard::ser_flavors::Size::default()).unwrap_or(usize::MAX)
}

/// Encoded size of the largest possible record header (everything but the metadata).
fn record_header_max() -> usize {
    static HEADER: OnceLock<usize> = OnceLock::new();
    *HEADER.get_or_init(|| {
        let probe = MetaRecord {
            name: Arc::from("x".repeat(crate::identity::MAX_NAME_LEN)),
            addr: SocketAddr::from(([0xffff; 8], u16::MAX)),
            generation: u64::MAX,
            version: u64::MAX,
            leaving: false,
            meta: NodeMeta::default(),
            ext: Ext::default(),
        };
        encoded_len(&probe).saturating_sub(encoded_len(&NodeMeta::default()))
    })
}

impl Named for MetaRecord {
    fn name(&self) -> &Arc<str> {
        &self.name
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::node_meta::{MAX_OUTPUT_LEN, MAX_VALUE_LEN};

    /// A record of `name` with empty metadata (also for `core::meta_store`'s tests).
    pub(crate) fn rec(name: &str, generation: u64, version: u64) -> MetaRecord {
        MetaRecord {
            name: Arc::from(name),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            generation,
            version,
            leaving: false,
            meta: NodeMeta::default(),
            ext: Ext::default(),
        }
    }

    #[test]
    fn limits_are_enforced() {
        let mut m = NodeMeta::default();
        m.tags.insert("ok".into(), "v".into());
        assert!(m.validate().is_ok());
        m.tags.insert("bad key".into(), "v".into());
        assert!(matches!(m.validate(), Err(MetaError::BadKey(_))));
        m.tags.remove("bad key");
        m.tags.insert("big".into(), "v".repeat(MAX_VALUE_LEN + 1));
        assert!(matches!(m.validate(), Err(MetaError::ValueTooLong { .. })));
        m.tags.clear();
        for i in 0..20 {
            m.tags.insert(format!("k{i}"), "v".repeat(200));
        }
        assert!(matches!(m.validate(), Err(MetaError::TooLarge(_))));
    }

    #[test]
    fn health_output_is_bounded_and_checked_at_decode() {
        let svc = |o: &str| Service {
            name: "web".into(),
            port: 80,
            tags: std::collections::BTreeMap::new(),
            health: Some(Health::Critical),
            health_output: Some(o.into()),
        };
        let mut r = rec("n", 1, 1);
        r.meta
            .services
            .insert("web".into(), svc("connection refused"));
        assert_eq!(MetaRecord::decode(&r.encode()).unwrap(), r);
        for bad in ["x".repeat(MAX_OUTPUT_LEN + 1), "two\nlines".to_string()] {
            r.meta.services.insert("web".into(), svc(&bad));
            assert!(matches!(
                MetaRecord::decode(&r.encode()),
                Err(MetaError::BadOutput(_))
            ));
        }
        assert_eq!(output_line("  first\nsecond"), "first");
        assert_eq!(output_line(&"é".repeat(100)).len(), 128);
        assert_eq!(output_line("a\tb"), "a b");
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(MetaRecord::decode(&[0xff; 10]).is_err());
        let r = rec("n", 1, 1);
        assert_eq!(MetaRecord::decode(&r.encode()).unwrap(), r);
    }
}
