//! A compact table of values keyed by the member name they carry.
//!
//! Owns `NameTable`: a hash table that stores each value once, found by the name inside it
//! (no second copy of the name as a key). A node keeps a few of these with one entry per
//! member, so in a simulated cluster of 10,000 nodes each byte per entry costs 100 MB.
//! Iteration order is the table's: fixed by the seed, so the simulator replays exactly.
//! Must not interpret the values.

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A value that carries its member name.
pub(crate) trait Named {
    fn name(&self) -> &Arc<str>;
}

impl<T: Named> Named for Arc<T> {
    fn name(&self) -> &Arc<str> {
        (**self).name()
    }
}

/// Each value is stored alone, without its name's hash: the table's control bytes hold 7
/// bits of every hash, so a lookup compares a name (one pointer away) about once in 128
/// other entries, and only growing the table reads every name again (once per doubling; a
/// node that knows its size reserves at once). A stored hash cost 8 bytes per entry: with
/// 10,000 simulated nodes of 10,000 members, 1.3 GB per table. The hash and so every
/// entry's place (and the iteration order) is the same either way.
#[derive(Clone)]
pub(crate) struct NameTable<V> {
    table: HashTable<V>,
    hasher: FixedState,
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        Self::with_seed(0)
    }
}

impl<V: Named> std::fmt::Debug for NameTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.table.iter().map(|v| v.name()))
            .finish()
    }
}

impl<V> NameTable<V> {
    /// An empty table whose hashing (and so iteration order) follows `seed`; a random seed
    /// keeps peers from choosing names that collide.
    pub(crate) fn with_seed(seed: u64) -> Self {
        NameTable {
            table: HashTable::new(),
            hasher: FixedState::with_seed(seed),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &V> {
        self.table.iter()
    }
}

impl<V: Named> NameTable<V> {
    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// Makes room for `additional` more entries at once (one allocation, no rehash on the way).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let hasher = &self.hasher;
        self.table
            .reserve(additional, |v| hasher.hash_one(&**v.name()));
    }

    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        let h = self.hash(name);
        self.table.find(h, |v| **v.name() == *name)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        let h = self.hash(name);
        self.table.find_mut(h, |v| **v.name() == *name)
    }

    /// Stores `value` under its name; returns the value it replaced.
    pub(crate) fn insert(&mut self, value: V) -> Option<V> {
        let h = self.hash(value.name());
        let name = value.name();
        let hasher = &self.hasher;
        match self.table.entry(
            h,
            |v| Arc::ptr_eq(v.name(), name) || v.name() == name,
            |v| hasher.hash_one(&**v.name()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                Some(std::mem::replace(e.get_mut(), value))
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(value);
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<V> {
        let h = self.hash(name);
        match self.table.find_entry(h, |v| **v.name() == *name) {
            Ok(e) => Some(e.remove().0),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item(Arc<str>, u32);
    impl Named for Item {
        fn name(&self) -> &Arc<str> {
            &self.0
        }
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut t = NameTable::with_seed(7);
        for i in 0..1000u32 {
            assert!(t.insert(Item(Arc::from(format!("n{i}")), i)).is_none());
        }
        assert_eq!(t.len(), 1000);
        assert_eq!(t.get("n42").map(|v| v.1), Some(42));
        let old = t.insert(Item(Arc::from("n42"), 4242));
        assert_eq!(old.map(|v| v.1), Some(42));
        assert_eq!(t.len(), 1000);
        if let Some(v) = t.get_mut("n7") {
            v.1 = 77;
        }
        assert_eq!(t.get("n7").map(|v| v.1), Some(77));
        assert_eq!(t.remove("n7").map(|v| v.1), Some(77));
        assert!(t.get("n7").is_none());
        assert!(t.remove("n7").is_none());
        assert_eq!(t.iter().count(), 999);
    }

    /// Without a stored hash every entry sits where a table that stored it put it: the
    /// order (which the simulator's replay depends on) is that of the old layout.
    #[test]
    fn order_is_that_of_a_table_storing_the_hash() {
        let seed = 11;
        let mut t = NameTable::with_seed(seed);
        let hasher = FixedState::with_seed(seed);
        let mut old: HashTable<(u64, Item)> = HashTable::new();
        for i in 0..3000u32 {
            let name: Arc<str> = Arc::from(format!("node-{i}"));
            let h = hasher.hash_one(&*name);
            t.insert(Item(name.clone(), i));
            old.insert_unique(h, (h, Item(name, i)), |(h, _)| *h);
            if i % 7 == 3 {
                let gone: Arc<str> = Arc::from(format!("node-{}", i / 2));
                let h = hasher.hash_one(&*gone);
                let a = t.remove(&gone).map(|v| v.1);
                let b = old
                    .find_entry(h, |(_, v)| v.0 == gone)
                    .ok()
                    .map(|e| e.remove().0 .1 .1);
                assert_eq!(a, b);
            }
        }
        let new_order: Vec<u32> = t.iter().map(|v| v.1).collect();
        let old_order: Vec<u32> = old.iter().map(|(_, v)| v.1).collect();
        assert_eq!(new_order, old_order);
    }

    #[test]
    fn same_seed_same_order() {
        let fill = |seed| {
            let mut t = NameTable::with_seed(seed);
            for i in 0..200u32 {
                t.insert(Item(Arc::from(format!("n{i}")), i));
            }
            t.iter().map(|v| v.1).collect::<Vec<_>>()
        };
        assert_eq!(fill(3), fill(3));
    }
}
