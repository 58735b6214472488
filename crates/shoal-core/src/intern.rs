//! Sharing of decoded names and metadata records between the nodes of one thread.
//!
//! Owns two thread-local caches: an interner of node names (`Arc<str>`) used when a name is
//! decoded from the wire, and a cache of validated metadata records keyed by (name,
//! generation, version) with their encoding. In the agent they only save a few allocations;
//! in the simulator, where thousands of nodes decode the same names and records, they keep one
//! copy per process instead of one per node. Entries nobody else holds are pruned as the
//! caches grow, so they stay bounded by what is live. Must not change any value: a cached
//! record is only used when it is equal to what was received.

use crate::meta::{MetaError, MetaRecord};
use serde::de::{Deserializer, Error as _, Visitor};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// Caches prune entries nobody else holds when they grow past twice their last live size.
const MIN_PRUNE_AT: usize = 4096;

struct Names {
    set: HashSet<Arc<str>>,
    prune_at: usize,
}

struct CachedRecord {
    rec: Arc<MetaRecord>,
    bytes: Box<[u8]>,
}

struct Records {
    by_name: HashMap<Arc<str>, Vec<CachedRecord>>,
    len: usize,
    prune_at: usize,
}

thread_local! {
    static NAMES: RefCell<Names> = RefCell::new(Names {
        set: HashSet::new(),
        prune_at: MIN_PRUNE_AT,
    });
    static RECORDS: RefCell<Records> = RefCell::new(Records {
        by_name: HashMap::new(),
        len: 0,
        prune_at: MIN_PRUNE_AT,
    });
}

/// The shared `Arc<str>` for `s` (allocated on first sight).
pub fn name(s: &str) -> Arc<str> {
    NAMES.with(|n| {
        let mut n = n.borrow_mut();
        if let Some(a) = n.set.get(s) {
            return a.clone();
        }
        if n.set.len() >= n.prune_at {
            n.set.retain(|a| Arc::strong_count(a) > 1);
            n.prune_at = (n.set.len() * 2).max(MIN_PRUNE_AT);
        }
        let a: Arc<str> = Arc::from(s);
        n.set.insert(a.clone());
        a
    })
}

/// Serde helper: deserializes a string into an interned `Arc<str>` (no allocation when the
/// name is known).
pub fn de_name<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
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
pub fn de_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arc<str>>, D::Error> {
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

fn prune_records(r: &mut Records) {
    if r.len < r.prune_at {
        return;
    }
    let mut len = 0;
    r.by_name.retain(|_, v| {
        v.retain(|c| Arc::strong_count(&c.rec) > 1);
        len += v.len();
        !v.is_empty()
    });
    r.len = len;
    r.prune_at = (len * 2).max(MIN_PRUNE_AT);
}

fn insert_record(rec: Arc<MetaRecord>, bytes: Box<[u8]>) {
    RECORDS.with(|r| {
        let mut r = r.borrow_mut();
        prune_records(&mut r);
        let v = r.by_name.entry(rec.name.clone()).or_default();
        // A different record under the same stamp (a broken peer) is not cached.
        if v.iter().any(|c| c.rec.stamp() == rec.stamp()) {
            return;
        }
        v.push(CachedRecord { rec, bytes });
        r.len += 1;
    })
}

/// The validated record encoded as `data`, whose head decoded to `name` and `stamp`: shared
/// from the cache when the same bytes were seen before, else decoded, validated and cached.
pub fn record_from_bytes(
    data: &[u8],
    name: &str,
    stamp: (u64, u64),
) -> Result<Arc<MetaRecord>, MetaError> {
    let hit = RECORDS.with(|r| {
        let r = r.borrow();
        r.by_name.get(name).and_then(|v| {
            v.iter()
                .find(|c| c.rec.stamp() == stamp && *c.bytes == *data)
                .map(|c| c.rec.clone())
        })
    });
    if let Some(rec) = hit {
        return Ok(rec);
    }
    let rec = Arc::new(MetaRecord::decode(data)?);
    insert_record(rec.clone(), data.into());
    Ok(rec)
}

/// `rec` (received inside a message) as a shared, validated record: the cached copy when an
/// equal one is known, else `rec` after validation.
pub fn record(rec: MetaRecord) -> Result<Arc<MetaRecord>, MetaError> {
    let stamp = rec.stamp();
    let hit = RECORDS.with(|r| {
        let r = r.borrow();
        r.by_name.get(&*rec.name).and_then(|v| {
            v.iter()
                .find(|c| c.rec.stamp() == stamp && *c.rec == rec)
                .map(|c| c.rec.clone())
        })
    });
    if let Some(rec) = hit {
        return Ok(rec);
    }
    rec.meta.validate()?;
    let bytes = rec.encode().into_boxed_slice();
    let rec = Arc::new(rec);
    insert_record(rec.clone(), bytes);
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NodeMeta;

    #[test]
    fn names_are_shared() {
        let a = name("n1");
        let b = name("n1");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn records_are_shared_only_when_equal() {
        let r = MetaRecord {
            name: Arc::from("intern-test"),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
            version: 2,
            leaving: false,
            meta: NodeMeta::default(),
        };
        let bytes = r.encode();
        let a = record_from_bytes(&bytes, "intern-test", (1, 2)).unwrap();
        let b = record_from_bytes(&bytes, "intern-test", (1, 2)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = record(r.clone()).unwrap();
        assert!(Arc::ptr_eq(&a, &c));
        let mut other = r;
        other.leaving = true;
        let d = record(other.clone()).unwrap();
        assert_eq!(*d, other);
        assert!(record_from_bytes(&[0xff; 4], "x", (0, 0)).is_err());
    }
}
