//! Sharing of validated metadata records between the nodes of one thread: a thread-local
//! cache keyed by (name, generation, version) with their encoding. In the agent it only saves
//! a few allocations; in the simulator, where thousands of nodes decode the same records, it
//! keeps one copy per process instead of one per node. Entries nobody else holds are pruned
//! as the cache grows. Must not change any value: a cached record is only used when it is
//! equal to what was received.

use crate::hash::FixedHashMap;
use crate::intern::MIN_PRUNE_AT;
use crate::meta::{MetaError, MetaRecord};
use std::cell::RefCell;
use std::sync::Arc;

struct CachedRecord {
    rec: Arc<MetaRecord>,
    bytes: Box<[u8]>,
}

struct Records {
    by_name: FixedHashMap<Arc<str>, Vec<CachedRecord>>,
    len: usize,
    prune_at: usize,
}

thread_local! {
    static RECORDS: RefCell<Records> = RefCell::new(Records {
        by_name: FixedHashMap::default(),
        len: 0,
        prune_at: MIN_PRUNE_AT,
    });
}

/// Hashes this thread's record cache with `seed` from now on, rehashing what it holds
/// (called once per thread, by `intern::seed_thread_caches`).
pub(crate) fn reseed_cache(seed: crate::hash::HashSeed) {
    RECORDS.with(|r| {
        let mut r = r.borrow_mut();
        let old = std::mem::replace(&mut r.by_name, seed.map());
        r.by_name.extend(old);
    })
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
    rec.validate()?;
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
    fn records_are_shared_only_when_equal() {
        let r = MetaRecord {
            name: Arc::from("intern-test"),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
            version: 2,
            leaving: false,
            meta: NodeMeta::default(),
            ext: Default::default(),
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
