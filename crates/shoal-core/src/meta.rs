//! Node metadata: tags and services, their limits, and the store of every node's record.
//!
//! Owns `NodeMeta` (what an operator or app sets on a node), `MetaRecord` (that metadata
//! versioned by its owner, the unit that is gossiped), the limits and their validation, the
//! `MetaStore` every node keeps (`meta_gossip` feeds it what foca receives). Only the owner
//! ever creates a new version of its own record. Must not decide membership: a record says
//! nothing about whether its node is alive.
//!
//! A record's encoding is v0.1.0's (postcard, frozen) followed by its extension fields
//! (`core::ext`, declared in `core::fields::record`), so that v0.1.0 and every later release
//! read it (docs/upgrades.md).

use crate::ext::Ext;
use crate::hash::fnv1a;
use crate::names::{NameTable, Named};
use crate::wire::{ProtocolRange, PROTOCOL_V1};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use thiserror::Error;

/// Limits on metadata, so that one record always fits in one datagram.
pub const MAX_KEY_LEN: usize = 64;
pub const MAX_VALUE_LEN: usize = 256;
pub const MAX_TAGS: usize = 32;
pub const MAX_SERVICES: usize = 32;
pub const MAX_SERVICE_TAGS: usize = 16;
/// Longest check output carried in a record (its first line, cut at a character boundary).
pub const MAX_OUTPUT_LEN: usize = 128;
/// Largest encoded record (the whole record must fit with a foca header in one datagram).
pub const MAX_RECORD_BYTES: usize = 1024;
/// Bytes of [`MAX_RECORD_BYTES`] this node keeps free in its own record for extension fields
/// (`core::fields::record`): its own metadata must fit in the rest. Received records are
/// only held to [`MAX_RECORD_BYTES`] as a whole (v0.1.0 kept no such room).
///
/// This release's own fields: its protocol range (6), a restart intent (7), its member key
/// (66) and its signature (66): 145 bytes at most.
pub const EXT_RESERVE: usize = 160;
/// Largest record version accepted from the wire (a version "far in the future" would let
/// its sender pin a node's record against every later update of the owner).
pub const MAX_VERSION: u64 = 1 << 32;

/// Whether a record stamp from the wire is acceptable: generation at most `max_generation`
/// (our clock plus a margin), version at most [`MAX_VERSION`].
pub fn stamp_acceptable(stamp: (u64, u64), max_generation: u64) -> bool {
    stamp.0 <= max_generation && stamp.1 <= MAX_VERSION
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Passing,
    Warning,
    Critical,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Health> {
        Some(match s {
            "passing" => Health::Passing,
            "warning" => Health::Warning,
            "critical" => Health::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a check's output, cut to at most [`MAX_OUTPUT_LEN`] bytes at a
/// character boundary, control characters replaced by spaces: what a record may carry.
pub fn output_line(text: &str) -> String {
    let line = text.trim_start().lines().next().unwrap_or("").trim_end();
    let mut out = String::with_capacity(line.len().min(MAX_OUTPUT_LEN));
    for c in line.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_OUTPUT_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// A service offered by a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub port: u16,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Health as reported by the owner: its checks' worst status (or what the app set).
    #[serde(default)]
    pub health: Option<Health>,
    /// The first line of the output of the check that decided `health` (at most
    /// [`MAX_OUTPUT_LEN`] bytes, no control characters).
    #[serde(default)]
    pub health_output: Option<String>,
}

/// What a node says about itself: tags and services.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Keyed by instance id (`core::instances`; the service's name unless the instance was
    /// given an id). A record's fixed part carries one instance per name, keyed by name
    /// (`instances::serialize_fixed`), the others travel in field `record.instances`.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
}

/// A node's metadata as gossiped: versioned by its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    #[serde(deserialize_with = "crate::intern::de_name")]
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

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MetaError {
    #[error("record refused: {0}")]
    Refused(&'static str),
    #[error(
        "tag key {0:?} is invalid: keys are 1 to 64 bytes of letters, digits, '.', '_', '-', '/'"
    )]
    BadKey(String),
    #[error("value for {key:?} is {len} bytes; the limit is {MAX_VALUE_LEN}")]
    ValueTooLong { key: String, len: usize },
    #[error("too many tags: {0}; the limit is {MAX_TAGS}")]
    TooManyTags(usize),
    #[error("too many services: {0}; the limit is {MAX_SERVICES}")]
    TooManyServices(usize),
    #[error("service {0:?} has too many tags; the limit is {MAX_SERVICE_TAGS}")]
    TooManyServiceTags(String),
    #[error("service name {0:?} is invalid: 1 to 64 bytes of letters, digits, '.', '_', '-'")]
    BadServiceName(String),
    #[error(
        "service instance id {0:?} is invalid: 1 to 64 bytes of letters, digits, '.', '_', ':', '-'"
    )]
    BadInstanceId(String),
    #[error("service instance id {0:?} is given twice")]
    DuplicateInstance(String),
    #[error("service {0:?} has port 0; give the port it listens on")]
    BadPort(String),
    #[error(
        "service {0:?} has a health output over {MAX_OUTPUT_LEN} bytes or with control characters"
    )]
    BadOutput(String),
    #[error(
        "metadata encodes to {0} bytes; the limit is {MAX_RECORD_BYTES}: remove tags or services"
    )]
    TooLarge(usize),
    #[error("undecodable metadata record: {0}")]
    Decode(String),
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_LEN
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

fn valid_service_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_LEN
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), MetaError> {
    for (k, v) in tags {
        if !valid_key(k) {
            return Err(MetaError::BadKey(k.clone()));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(MetaError::ValueTooLong {
                key: k.clone(),
                len: v.len(),
            });
        }
    }
    Ok(())
}

impl Service {
    pub fn validate(&self) -> Result<(), MetaError> {
        if !valid_service_name(&self.name) {
            return Err(MetaError::BadServiceName(self.name.clone()));
        }
        if self.port == 0 {
            return Err(MetaError::BadPort(self.name.clone()));
        }
        if self.tags.len() > MAX_SERVICE_TAGS {
            return Err(MetaError::TooManyServiceTags(self.name.clone()));
        }
        if let Some(o) = &self.health_output {
            if o.len() > MAX_OUTPUT_LEN || o.chars().any(char::is_control) {
                return Err(MetaError::BadOutput(self.name.clone()));
            }
        }
        validate_tags(&self.tags)
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

fn record_hash(name: &str, generation: u64, version: u64) -> u64 {
    fnv1a(&[
        name.as_bytes(),
        &generation.to_le_bytes(),
        &version.to_le_bytes(),
    ])
}

impl Named for MetaRecord {
    fn name(&self) -> &Arc<str> {
        &self.name
    }
}

/// Every node's latest known record, plus an order-independent fingerprint of the whole set
/// so that two nodes can tell cheaply whether they agree.
#[derive(Debug, Default)]
pub struct MetaStore {
    records: NameTable<Arc<MetaRecord>>,
    fingerprint: u64,
    /// Names whose record changed since the owner of the store last drained this list.
    changed: Vec<Arc<str>>,
    /// Which key speaks for which name (`core::bindings`): every record from the wire passes
    /// [`MetaStore::admit`] before [`MetaStore::offer`].
    pub bindings: crate::bindings::Bindings,
    /// Records [`MetaStore::admit`] refused since the node last took the counts, by reason
    /// (`Refused as usize`).
    refused: [u64; 4],
    /// Most records held (`max_members`, `Node::set_max_members`); `None`: unbounded.
    max_records: Option<usize>,
    /// Records of names not held refused because the store was full (cumulative).
    full_refused: u64,
}

impl MetaStore {
    /// Makes room for `additional` more records at once.
    pub fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
    }

    pub fn get(&self, name: &str) -> Option<&MetaRecord> {
        self.records.get(name).map(|r| &**r)
    }

    /// The shared record of `name` (cloning it is cheap).
    pub fn get_shared(&self, name: &str) -> Option<&Arc<MetaRecord>> {
        self.records.get(name)
    }

    /// Whether a record with this stamp would be stored (it is newer than what we hold).
    pub fn is_newer(&self, name: &str, stamp: (u64, u64)) -> bool {
        self.records
            .get(name)
            .map(|r| r.stamp() < stamp)
            .unwrap_or(true)
    }

    /// Whether a record with this stamp, with extension fields or not (`has_ext`), would be
    /// stored: it is newer than what we hold, or it is the same version with extension
    /// fields where ours has none. A v0.1.0 agent that relays a record in a `Push` writes it
    /// without its fields (it never adds any), so the copy with them is the owner's.
    pub fn wants(&self, name: &str, stamp: (u64, u64), has_ext: bool) -> bool {
        self.records
            .get(name)
            .map(|r| r.stamp() < stamp || (r.stamp() == stamp && has_ext && r.ext.is_empty()))
            .unwrap_or(true)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn iter(&self) -> impl Iterator<Item = &MetaRecord> {
        self.records.iter().map(|r| &**r)
    }

    /// Stores `rec` if [`MetaStore::wants`] it. Returns whether it was stored.
    pub fn offer(&mut self, rec: impl Into<Arc<MetaRecord>>) -> bool {
        let rec: Arc<MetaRecord> = rec.into();
        if !self.wants(&rec.name, rec.stamp(), !rec.ext.is_empty()) {
            return false;
        }
        if let Some(old) = self.records.get(&rec.name) {
            self.fingerprint ^= record_hash(&old.name, old.generation, old.version);
        } else if self
            .max_records
            .is_some_and(|max| self.records.len() >= max)
        {
            // A record of a name not held, the store full: records of names SWIM never
            // reported would otherwise grow it without bound.
            self.full_refused += 1;
            return false;
        }
        self.fingerprint ^= record_hash(&rec.name, rec.generation, rec.version);
        self.changed.push(rec.name.clone());
        self.records.insert(rec);
        true
    }

    /// Whether `rec`, a record from the wire that [`MetaStore::wants`], may be stored: its
    /// signature and the key bound to its name (`bindings::Bindings::admit`). A refusal is
    /// counted (`take_refused`).
    pub fn admit(&mut self, rec: &MetaRecord) -> bool {
        use crate::fields::record::{MEMBER_KEY, SIGNATURE};
        let signs = |r: &MetaRecord| {
            r.ext.raw(MEMBER_KEY.number).is_some() || r.ext.raw(SIGNATURE.number).is_some()
        };
        // An owner whose record we hold signed signs all its records: an unsigned one is a
        // forgery (or a copy a v0.1.0 agent relayed without its fields: the signed one comes
        // through any other agent), even where its name is bound to no key (a bound name
        // takes signed records only: `Bindings::admit`).
        if !signs(rec)
            && self.bindings.get(&rec.name).is_none()
            && self.records.get(&rec.name).is_some_and(|h| signs(h))
        {
            self.refused[crate::bindings::Refused::UnsignedFromSigner as usize] += 1;
            return false;
        }
        let records = &self.records;
        match self.bindings.admit(rec, |n| records.get(n).is_some()) {
            Ok(()) => true,
            Err(r) => {
                self.refused[r as usize] += 1;
                false
            }
        }
    }

    /// Bounds the records held (the node's `max_members`): past it a record of a name not
    /// held is refused and counted ([`MetaStore::full_refused`]).
    pub fn set_max_records(&mut self, max: usize) {
        self.max_records = Some(max);
    }

    /// Records of names not held refused because the store was full, since the start.
    pub fn full_refused(&self) -> u64 {
        self.full_refused
    }

    /// Records refused by [`MetaStore::admit`] since the last call: unsigned (for a bound
    /// name), signed by another key, the table of bindings full.
    pub fn take_refused(&mut self) -> [u64; 4] {
        std::mem::take(&mut self.refused)
    }

    /// Forgets a node's record (when the node is reaped).
    pub fn remove(&mut self, name: &str) -> Option<Arc<MetaRecord>> {
        let old = self.records.remove(name)?;
        self.fingerprint ^= record_hash(&old.name, old.generation, old.version);
        Some(old)
    }

    pub fn take_changed(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.changed)
    }
}

/// The store shared between the node and foca's broadcast handler (foca owns the handler
/// and offers no way back to it, so both hold this handle). The core is single-threaded; the
/// mutex is never contended and only makes the node `Send`.
#[derive(Clone, Debug, Default)]
pub struct SharedMetaStore(Arc<Mutex<MetaStore>>);

impl SharedMetaStore {
    /// An empty store whose table is hashed with `seed` (see `NameTable::with_seed`).
    pub fn with_seed(seed: u64) -> Self {
        SharedMetaStore(Arc::new(Mutex::new(MetaStore {
            records: NameTable::with_seed(seed),
            ..MetaStore::default()
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, MetaStore> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, generation: u64, version: u64) -> MetaRecord {
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

    /// Review of #22: records of names SWIM never reported grew the store without bound. Past
    /// `max_members` a record of a new name is refused and counted; held names still update.
    #[test]
    fn a_full_store_refuses_new_names_and_keeps_updating_held_ones() {
        let mut store = MetaStore::default();
        store.set_max_records(2);
        assert!(store.offer(rec("a", 1, 1)));
        assert!(store.offer(rec("b", 1, 1)));
        for i in 0..100 {
            assert!(!store.offer(rec(&format!("fake-{i}"), 1, 1)));
        }
        assert_eq!((store.len(), store.full_refused()), (2, 100));
        assert!(store.offer(rec("a", 1, 2)), "a held name still updates");
        assert_eq!(store.get("a").map(|r| r.version), Some(2));
    }

    #[test]
    fn store_keeps_newest_and_fingerprint_is_order_independent() {
        let mut a = MetaStore::default();
        let mut b = MetaStore::default();
        assert!(a.offer(rec("x", 1, 1)));
        assert!(a.offer(rec("y", 1, 3)));
        assert!(!a.offer(rec("y", 1, 2)));
        assert!(a.offer(rec("x", 2, 0)));
        assert!(b.offer(rec("y", 1, 3)));
        assert!(b.offer(rec("x", 2, 0)));
        assert_eq!(a.fingerprint(), b.fingerprint());
        a.remove("x");
        b.remove("x");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.get("y").unwrap().version, 3);
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
            tags: BTreeMap::new(),
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
