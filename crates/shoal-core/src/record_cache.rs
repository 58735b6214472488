//! Sharing of validated metadata records between the nodes of one context: the cache a
//! `shared::Shared` holds, keyed by (name, generation, version), with their encoding. In the
//! agent it only saves a few allocations; in the simulator, where thousands of nodes decode
//! the same records, it keeps one copy per run instead of one per node. Entries nobody else
//! holds are pruned as the cache grows. Must not change any value: a cached record is only
//! used when it is equal to what was received; must hold no state of its own.

use crate::hash::{FixedHashMap, HashSeed};
use crate::intern::MIN_PRUNE_AT;
use crate::meta::MetaRecord;
use std::sync::Arc;

struct CachedRecord {
    rec: Arc<MetaRecord>,
    bytes: Box<[u8]>,
}

/// The cached records of one context.
pub(crate) struct Records {
    by_name: FixedHashMap<Arc<str>, Vec<CachedRecord>>,
    len: usize,
    prune_at: usize,
}

impl Records {
    pub(crate) fn new(seed: HashSeed) -> Records {
        Records {
            by_name: seed.map(),
            len: 0,
            prune_at: MIN_PRUNE_AT,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn prune(&mut self) {
        if self.len < self.prune_at {
            return;
        }
        let mut len = 0;
        self.by_name.retain(|_, v| {
            v.retain(|c| Arc::strong_count(&c.rec) > 1);
            len += v.len();
            !v.is_empty()
        });
        self.len = len;
        self.prune_at = (len * 2).max(MIN_PRUNE_AT);
    }

    /// Caches `rec` (validated, encoded as `bytes`) and gives it back.
    pub(crate) fn insert(&mut self, rec: Arc<MetaRecord>, bytes: Box<[u8]>) -> Arc<MetaRecord> {
        self.prune();
        let v = self.by_name.entry(rec.name.clone()).or_default();
        // A different record under the same stamp (a broken peer) is not cached.
        if v.iter().any(|c| c.rec.stamp() == rec.stamp()) {
            return rec;
        }
        v.push(CachedRecord {
            rec: rec.clone(),
            bytes,
        });
        self.len += 1;
        rec
    }

    /// The cached record encoded as `data` (whose head decoded to `name` and `stamp`).
    pub(crate) fn find_bytes(
        &self,
        data: &[u8],
        name: &str,
        stamp: (u64, u64),
    ) -> Option<Arc<MetaRecord>> {
        self.by_name.get(name).and_then(|v| {
            v.iter()
                .find(|c| c.rec.stamp() == stamp && *c.bytes == *data)
                .map(|c| c.rec.clone())
        })
    }

    /// The cached record equal to `rec`.
    pub(crate) fn find_equal(&self, rec: &MetaRecord) -> Option<Arc<MetaRecord>> {
        let stamp = rec.stamp();
        self.by_name.get(&*rec.name).and_then(|v| {
            v.iter()
                .find(|c| c.rec.stamp() == stamp && *c.rec == *rec)
                .map(|c| c.rec.clone())
        })
    }
}
