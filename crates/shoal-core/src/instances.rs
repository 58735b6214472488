//! Several instances of a service on one node, on the wire: how a record whose services are
//! keyed by instance id is written so that v0.1.0 still reads it (docs/upgrades.md).
//!
//! Owns the instance id's rule ([`valid_id`]), the split of a node's instances into the
//! record's frozen fixed part (one instance per service, keyed by the service's name: the
//! lowest id of that name, which is all v0.1.0 reads and it refuses a key that is not the
//! name) and the extension field `record.instances` ([`Instances`]: the ids of those that
//! are not their name, and every other instance), and the reverse, validated once at decode.
//! Must not decide anything about serving: it only maps shapes.
//!
//! In memory (`NodeMeta::services`, the registrations file, the API) services are keyed by
//! instance id; an instance registered without an id has its service's name as id, so a node
//! with one instance per service writes exactly the bytes v0.1.0 wrote.

use crate::node_meta::{MetaError, NodeMeta, Service};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// Longest instance id (Consul's service ID rule, bounded as names are).
pub(crate) const MAX_ID_LEN: usize = 64;

/// Whether `id` is a valid instance id: 1 to 64 bytes of letters, digits, '.', '_', ':', '-'.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// The value of extension field `record.instances`: what the fixed part cannot say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instances {
    /// `(name, id)` of the fixed part's instances whose id is not their name, by name.
    pub ids: Vec<(String, String)>,
    /// `(id, service)` of every other instance, by id.
    pub more: Vec<(String, Service)>,
}

impl Instances {
    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.more.is_empty()
    }
}

/// The instance of each service the fixed part carries: the lowest id of each name, by name.
pub(crate) fn primaries(meta: &NodeMeta) -> BTreeMap<&str, (&str, &Service)> {
    let mut out: BTreeMap<&str, (&str, &Service)> = BTreeMap::new();
    for (id, svc) in &meta.services {
        out.entry(svc.name.as_str()).or_insert((id.as_str(), svc));
    }
    out
}

/// What extension field `record.instances` carries for `meta`; `None` when every service has
/// one instance whose id is its name (a record v0.1.0 reads whole).
pub(crate) fn split(meta: &NodeMeta) -> Option<Instances> {
    let first = primaries(meta);
    let mut inst = Instances::default();
    for (name, (id, _)) in &first {
        if name != id {
            inst.ids.push((name.to_string(), id.to_string()));
        }
    }
    for (id, svc) in &meta.services {
        if first.get(svc.name.as_str()).map(|(p, _)| *p) != Some(id.as_str()) {
            inst.more.push((id.clone(), svc.clone()));
        }
    }
    (!inst.is_empty()).then_some(inst)
}

/// Serializes `meta` as the fixed part of a record: its tags, then its services keyed by
/// name, one instance each ([`primaries`]); the layout of v0.1.0's `NodeMeta`.
pub(crate) fn serialize_fixed<S: Serializer>(meta: &NodeMeta, s: S) -> Result<S::Ok, S::Error> {
    struct Fixed<'a>(BTreeMap<&'a str, (&'a str, &'a Service)>);
    impl Serialize for Fixed<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (name, (_, svc)) in &self.0 {
                m.serialize_entry(name, svc)?;
            }
            m.end()
        }
    }
    #[derive(Serialize)]
    struct FixedMeta<'a> {
        tags: &'a BTreeMap<String, String>,
        services: Fixed<'a>,
    }
    FixedMeta {
        tags: &meta.tags,
        services: Fixed(primaries(meta)),
    }
    .serialize(s)
}

/// Rebuilds a received record's services keyed by instance id: `fixed` is its fixed part's
/// services (keyed by name, as v0.1.0 wrote them), `inst` its `record.instances` field.
/// Refuses a fixed part whose key is not its service's name (v0.1.0's rule), ids that are
/// invalid, unordered, not canonical (a fixed part's instance that is not the lowest id of its
/// name, an id written though it is the name) or given twice, and instances of a service the
/// fixed part does not have. The limits (`MAX_SERVICES` instances in all) are checked after.
pub(crate) fn join(
    fixed: BTreeMap<String, Service>,
    inst: Option<Instances>,
) -> Result<BTreeMap<String, Service>, MetaError> {
    for (name, svc) in &fixed {
        if name != &svc.name {
            return Err(MetaError::BadServiceName(name.clone()));
        }
    }
    let Some(inst) = inst else {
        return Ok(fixed);
    };
    let bad = |why: &'static str| Err(MetaError::Refused(why));
    if inst.ids.len() > fixed.len() || inst.more.len() > crate::node_meta::MAX_SERVICES {
        return bad("too many service instances");
    }
    let mut primary: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, (name, id)) in inst.ids.iter().enumerate() {
        if i > 0 && inst.ids[i - 1].0 >= *name {
            return bad("instance ids not ordered by service name");
        }
        if !fixed.contains_key(name) || !valid_id(id) || id == name {
            return Err(MetaError::BadInstanceId(id.clone()));
        }
        primary.insert(name, id);
    }
    let mut out = BTreeMap::new();
    for (name, svc) in &fixed {
        let id = primary.get(name.as_str()).copied().unwrap_or(name);
        if out.insert(id.to_string(), svc.clone()).is_some() {
            return Err(MetaError::DuplicateInstance(id.to_string()));
        }
    }
    for (i, (id, svc)) in inst.more.iter().enumerate() {
        if i > 0 && inst.more[i - 1].0 >= *id {
            return bad("instances not ordered by id");
        }
        if !valid_id(id) {
            return Err(MetaError::BadInstanceId(id.clone()));
        }
        // The fixed part holds the lowest id of each name: another instance sorts after it.
        let Some(first) = fixed.get(&svc.name).map(|s| {
            primary
                .get(s.name.as_str())
                .copied()
                .unwrap_or(s.name.as_str())
        }) else {
            return bad("an instance of a service the record does not carry");
        };
        if id.as_str() <= first {
            return bad("an instance sorts before its service's first instance");
        }
        if out.insert(id.clone(), svc.clone()).is_some() {
            return Err(MetaError::DuplicateInstance(id.clone()));
        }
    }
    Ok(out)
}
