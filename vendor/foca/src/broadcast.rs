/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
use alloc::{collections::BinaryHeap, vec::Vec};
use core::{
    cmp::Ordering,
    hash::{Hash, Hasher},
};

use hashbrown::HashMap;

use bytes::BufMut;

/// A type capable of decoding a (associated) broadcast from a buffer
/// and deciding whether to keep disseminating it for other members
/// of the cluster (when it's new information) or to discard it (when
/// its outdated/stale).
pub trait BroadcastHandler<T> {
    /// A unique identifier for the broadcasts this handler manages
    ///
    /// It should be able to compare itself against an arbitrary number
    /// of other [`Self::Key`] instances and decide wether it
    /// replaces it or not so conflicting/stale information isn't
    /// disseminated.
    type Key: Invalidates;

    /// The error type that `receive_item` may emit. Will be wrapped
    /// by [`crate::Error::CustomBroadcast`].
    type Error: core::error::Error + Send + Sync + 'static;

    /// Decodes a [`Self::Key`] from a buffer and either discards
    /// it or tells Foca to persist and disseminate it.
    ///
    /// `Sender` is `None` when you're adding broadcast data directly,
    /// via [`crate::Foca::add_broadcast`], otherwise it will be the
    /// address of the member that sent the data. Notice that Foca
    /// doesn't track the origin of packets- if you need it you
    /// have to add it to the data you're broadcasting.
    ///
    /// When you receive a broadcast you have to decide whether it's
    /// new information that needs to be disseminated (`Ok(Some(...))`)
    /// or not (`Ok(None)`).
    ///
    /// Always yielding `Some(...)` is wrong because Foca will never
    /// know when to stop sending this information to other members.
    ///
    /// Example: Assume your custom broadcast is a simple Set-Key-Value
    /// operation. When you receive it you should check if your map
    /// contains the Key-Value pair; If it didn't, you yield
    /// `Some`, otherwise the operation is stale, so you yield `None`.
    ///
    /// The `data` parameter is the exact data provided to
    /// [`crate::Foca::add_broadcast`]. When Foca receives N custom
    /// broadcasts at once, this gets called N times.
    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&T>,
    ) -> Result<Option<Self::Key>, Self::Error>;

    /// Decides whether Foca should add broadcast data to the message
    /// it's about to send to active member `T`.
    ///
    /// Normally when Foca sends a message it always tries to include
    /// custom broadcasts alongside the information it actually
    /// cares about; This allows implementations to override this
    /// logic with something else.
    ///
    /// Example: You are running a heterogeneous cluster and some nodes
    /// are always very busy and you'd rather they never have to deal
    /// with the extra cpu/bandwidth cost of receiving/sending
    /// your custom broadcasts.
    ///
    /// Returning `true` tells Foca to proceed as it would normally,
    /// including broadcasts in the messages it sends when it can.
    ///
    /// Returning `false` tells Foca to not include such broadcasts
    /// in the message. It does *not* prevent the message from being
    /// sent, just keeps Foca from attaching extra data to them.
    fn should_add_broadcast_data(&self, _member: &T) -> bool {
        true
    }
}

/// A type that's able to look at another and decide wether it's
/// newer/fresher (i.e. invalidates) than it.
///
/// As you send/receive broadcasts, Foca will hold them for a while
/// as it disseminates the data to other cluster members. This trait
/// helps with replacing data that hasn't been fully disseminated
/// yet but you already know it's stale.
///
/// Example: Assume a versioned broadcast like `{key,version,...}`;
/// After you receive `{K, 0, ...}` and keep it, Foca will be
/// disseminating it. Soon after you receive `{K, 1, ...}` which
/// is a newer version for this broadcast. This trait enables
/// Foca to immediately stop disseminating the previous version,
/// even if it hasn't sent it to everyone it can yet.
pub trait Invalidates {
    /// When `item.invalidates(&other)` it means that Foca will
    /// keep `item` and discard `other` from its dissemination
    /// backlog.
    fn invalidates(&self, other: &Self) -> bool;

    /// (shoal fork) An optional hint that makes replacing items in a
    /// large backlog cheap.
    ///
    /// When it yields `Some(key)`, Foca assumes that `self` can only
    /// invalidate items whose `invalidation_key()` is `Some(key)` too,
    /// and only calls [`Invalidates::invalidates`] on those instead of
    /// on the whole backlog. Distinct items may share a key (a hash
    /// is fine): they are still told apart by `invalidates`.
    ///
    /// It must always yield the same value for a given item.
    ///
    /// The default, `None`, makes Foca check every item in the backlog.
    fn invalidation_key(&self) -> Option<u64> {
        None
    }
}

impl Invalidates for &[u8] {
    fn invalidates(&self, other: &Self) -> bool {
        self.eq(other)
    }
}

/// A deterministic 64-bit FNV-1a hash, for [`Invalidates::invalidation_key`].
pub(crate) fn hash_key<H: Hash + ?Sized>(value: &H) -> u64 {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    value.hash(&mut hasher);
    hasher.finish()
}

/// No slot (end of a bucket list).
const NIL: usize = usize::MAX;

/// `fill` gives up after this many items in a row did not fit in the
/// buffer: the rest of a large backlog is not worth popping through
/// for the few bytes left. A backlog at most this long is always
/// searched in full.
pub(crate) const MAX_CONSECUTIVE_MISSES: usize = 16;

/// Below this many stale heap references, compaction is not worth it.
const COMPACT_MIN_STALE: usize = 64;

// (shoal fork) The backlog is a slab of entries plus a max-heap of
// references to them: exactly one reference per occupied slot. A
// replaced entry is dropped at once but its slot is only reused once
// its (now stale) reference is popped; the heap is compacted when
// stale references outnumber live ones. Entries with an invalidation
// key are chained per key, so replacing one only looks at the entries
// sharing its key.
pub(crate) struct Broadcasts<V> {
    slots: Vec<Slot<V>>,
    free: Vec<usize>,
    heap: BinaryHeap<Ref>,
    // References taken out of the heap during a fill
    flop: Vec<Ref>,
    // key -> first slot of the chain of entries with that key
    buckets: HashMap<u64, usize>,
    live: usize,
    // (shoal fork) Sum of the data lengths of the live entries.
    live_bytes: usize,
    stale: usize,
    // (shoal fork) Most live entries kept; see `set_max_len`.
    max_len: usize,
}

struct Slot<V> {
    // None: free, or replaced and waiting for its reference to go
    entry: Option<Entry<V>>,
    // Next slot with the same key, or NIL
    next: usize,
}

struct Entry<T> {
    // XXX could be Bytes, or keep a pool in parent
    data: Vec<u8>,
    item: T,
}

/// A heap reference to a slot. Ordered like foca's original entries:
/// most remaining transmissions first, then largest data first (ties
/// are unordered).
#[derive(Debug, Clone, Copy)]
struct Ref {
    remaining_tx: u32,
    len: u32,
    slot: usize,
}

impl PartialEq for Ref {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ref {}

impl PartialOrd for Ref {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ref {
    fn cmp(&self, other: &Self) -> Ordering {
        self.remaining_tx
            .cmp(&other.remaining_tx)
            .then_with(|| self.len.cmp(&other.len))
    }
}

impl<T> Broadcasts<T>
where
    T: Invalidates,
{
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            flop: Vec::new(),
            buckets: HashMap::new(),
            live: 0,
            live_bytes: 0,
            stale: 0,
            max_len: usize::MAX,
        }
    }

    /// (shoal fork) Bounds the backlog to `max_len` live entries.
    ///
    /// When an add goes over the bound, the entries with the fewest
    /// remaining transmissions (those that spread the most already) are
    /// evicted until a quarter of the bound is free again, so the cost is
    /// O(B log B) once every B/4 adds. Without a bound, a backlog grows
    /// with the number of changes in flight: a node joining a cluster of
    /// 10,000 queues 10,000 updates it cannot send before they go stale.
    pub(crate) fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len.max(1);
        if self.live > self.max_len {
            self.evict_to(self.max_len);
        }
    }

    // Keeps the `keep` highest-priority live entries, drops the rest.
    fn evict_to(&mut self, keep: usize) {
        let mut refs: Vec<Ref> = core::mem::take(&mut self.heap).into_vec();
        // Stale references (replaced entries) free their slots now.
        refs.retain(|r| {
            let current = self.slots[r.slot].entry.is_some();
            if !current {
                self.free.push(r.slot);
            }
            current
        });
        self.stale = 0;
        if refs.len() > keep {
            // Highest priority first; ties broken by slot for determinism.
            // Only the split matters: a selection, not a sort.
            refs.select_nth_unstable_by(keep, |a, b| b.cmp(a).then_with(|| a.slot.cmp(&b.slot)));
            for r in refs.drain(keep..) {
                self.drop_entry(r.slot);
                self.free.push(r.slot);
            }
        }
        self.heap = BinaryHeap::from(refs);
        if self.live == 0 {
            self.reset();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// (shoal fork) Bytes of data the live entries hold (without length prefixes).
    pub(crate) fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    pub(crate) fn add_or_replace(&mut self, item: T, data: Vec<u8>, max_tx: usize) {
        debug_assert!(max_tx > 0);
        let key = item.invalidation_key();
        match key {
            Some(key) => {
                let mut cur = self.buckets.get(&key).copied().unwrap_or(NIL);
                while cur != NIL {
                    let next = self.slots[cur].next;
                    if self.slots[cur]
                        .entry
                        .as_ref()
                        .is_some_and(|entry| item.invalidates(&entry.item))
                    {
                        self.drop_entry(cur);
                        self.stale += 1;
                    }
                    cur = next;
                }
            }
            None => {
                for pos in 0..self.slots.len() {
                    if self.slots[pos]
                        .entry
                        .as_ref()
                        .is_some_and(|entry| item.invalidates(&entry.item))
                    {
                        self.drop_entry(pos);
                        self.stale += 1;
                    }
                }
            }
        }
        if self.live == 0 {
            self.reset();
        } else if self.stale >= COMPACT_MIN_STALE && self.stale > self.live {
            let Self {
                heap, slots, free, ..
            } = self;
            heap.retain(|r| {
                let current = slots[r.slot].entry.is_some();
                if !current {
                    free.push(r.slot);
                }
                current
            });
            self.stale = 0;
        }

        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.live_bytes += data.len();
        let slot = Slot {
            entry: Some(Entry { data, item }),
            next: NIL,
        };
        let pos = match self.free.pop() {
            Some(pos) => {
                self.slots[pos] = slot;
                pos
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        if let Some(key) = key {
            self.slots[pos].next = self.buckets.insert(key, pos).unwrap_or(NIL);
        }
        self.heap.push(Ref {
            remaining_tx: u32::try_from(max_tx).unwrap_or(u32::MAX),
            len,
            slot: pos,
        });
        self.live += 1;
        if self.live > self.max_len {
            let keep = self.max_len - self.max_len / 4;
            self.evict_to(keep.max(1));
        }
    }

    // Drops a live entry and unlinks it from its key chain. The slot
    // stays occupied until its heap reference goes.
    fn drop_entry(&mut self, pos: usize) {
        let slot = &mut self.slots[pos];
        let Some(entry) = slot.entry.take() else {
            debug_assert!(false, "dropping an empty slot");
            return;
        };
        let next = core::mem::replace(&mut slot.next, NIL);
        self.live_bytes -= entry.data.len();
        if let Some(key) = entry.item.invalidation_key() {
            match self.buckets.get(&key).copied() {
                Some(head) if head == pos => {
                    if next == NIL {
                        self.buckets.remove(&key);
                    } else {
                        self.buckets.insert(key, next);
                    }
                }
                Some(head) => {
                    let mut cur = head;
                    while cur != NIL && self.slots[cur].next != pos {
                        cur = self.slots[cur].next;
                    }
                    debug_assert_ne!(cur, NIL, "slot missing from its key chain");
                    if cur != NIL {
                        self.slots[cur].next = next;
                    }
                }
                None => debug_assert!(false, "key chain missing"),
            }
        }
        self.live -= 1;
    }

    // Forgets everything (only called when no entry is live)
    fn reset(&mut self) {
        debug_assert_eq!(0, self.live);
        debug_assert!(self.flop.is_empty());
        self.slots.clear();
        self.free.clear();
        self.heap.clear();
        self.buckets.clear();
        self.stale = 0;
        self.live_bytes = 0;
    }

    pub(crate) fn fill(&mut self, buffer: impl BufMut, max_items: usize) -> usize {
        self.fill_impl(buffer, max_items, false)
    }

    pub(crate) fn fill_with_len_prefix(&mut self, buffer: impl BufMut, max_items: usize) -> usize {
        self.fill_impl(buffer, max_items, true)
    }

    // Writes the highest priority items that fit, in priority order,
    // popping at most `max_items` items that fit plus
    // MAX_CONSECUTIVE_MISSES in a row that don't (and stale refs).
    fn fill_impl(&mut self, mut buffer: impl BufMut, max_items: usize, len_prefix: bool) -> usize {
        if self.live == 0 {
            return 0;
        }
        debug_assert!(self.flop.is_empty());

        let overhead = if len_prefix { 2 } else { 0 };
        let mut num_taken = 0;
        let mut remaining = max_items;
        let mut misses = 0;

        while buffer.has_remaining_mut() && remaining > 0 && misses < MAX_CONSECUTIVE_MISSES {
            let Some(mut r) = self.heap.pop() else {
                break;
            };
            let Some(entry) = self.slots[r.slot].entry.as_ref() else {
                // Replaced since it was queued
                self.free.push(r.slot);
                self.stale = self.stale.saturating_sub(1);
                continue;
            };
            debug_assert!(r.remaining_tx > 0);

            if buffer.remaining_mut() >= entry.data.len() + overhead {
                num_taken += 1;
                remaining -= 1;
                misses = 0;

                if len_prefix {
                    debug_assert!(u16::try_from(entry.data.len()).is_ok());
                    buffer.put_u16(entry.data.len() as u16);
                }
                buffer.put_slice(&entry.data);
                r.remaining_tx -= 1;
            } else {
                misses += 1;
            }

            if r.remaining_tx > 0 {
                self.flop.push(r);
            } else {
                self.drop_entry(r.slot);
                self.free.push(r.slot);
            }
        }

        self.heap.extend(self.flop.drain(..));
        if self.live == 0 {
            self.reset();
        }

        num_taken
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    struct Key(&'static str);

    impl Invalidates for Key {
        fn invalidates(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    #[test]
    fn piggyback_behaviour() {
        let max_tx = 5;
        let mut piggyback = Broadcasts::new();

        assert!(piggyback.is_empty(), "Piggyback starts empty");

        piggyback.add_or_replace(Key("AA"), b"AAabc".to_vec(), max_tx);

        assert_eq!(1, piggyback.len());

        piggyback.add_or_replace(Key("AA"), b"AAcba".to_vec(), max_tx);

        assert_eq!(
            1,
            piggyback.len(),
            "add_or_replace with same key should replace"
        );

        let mut buf = Vec::new();

        for _i in 0..max_tx {
            buf.clear();
            let num_items = piggyback.fill(&mut buf, usize::MAX);
            assert_eq!(1, num_items);
            assert_eq!(
                b"AAcba",
                &buf[..],
                "Should transmit an item at most max_tx times"
            );
        }

        assert!(
            piggyback.is_empty(),
            "Should remove item after being used max_tx times"
        );
    }

    // (shoal fork) bounded backlog
    #[test]
    fn bounded_backlog_drops_the_most_transmitted_first() {
        let names: Vec<&'static str> = vec!["a", "b", "c", "d", "e", "f", "g", "h"];
        let mut piggyback = Broadcasts::new();
        piggyback.set_max_len(4);
        // Four items, each sent once: remaining 2 of 3.
        for n in &names[..4] {
            piggyback.add_or_replace(Key(n), n.as_bytes().to_vec(), 3);
        }
        let mut buf = Vec::new();
        assert_eq!(4, piggyback.fill(&mut buf, usize::MAX));
        // A fifth, fresh item goes over the bound: the fresh one stays and
        // the backlog shrinks to three quarters of the bound.
        piggyback.add_or_replace(Key("e"), b"e".to_vec(), 3);
        assert_eq!(3, piggyback.len());
        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b'e', buf[0], "the fresh item is sent first");
        // Never more than the bound, whatever is added.
        for n in &names {
            piggyback.add_or_replace(Key(n), n.as_bytes().to_vec(), 3);
            assert!(piggyback.len() <= 4);
        }
        // Lowering the bound evicts at once; items keep flowing.
        piggyback.set_max_len(2);
        assert_eq!(2, piggyback.len());
        for _ in 0..10 {
            buf.clear();
            piggyback.fill(&mut buf, usize::MAX);
        }
        assert!(piggyback.is_empty());
    }

    #[test]
    fn fill_does_nothing_if_buffer_full() {
        let mut piggyback = Broadcasts::new();
        piggyback.add_or_replace(Key("a "), b"a super long value".to_vec(), 1);

        let buf = bytes::BytesMut::new();
        let mut limited = buf.limit(5);

        let num_items = piggyback.fill(&mut limited, usize::MAX);

        assert_eq!(0, num_items);
        assert_eq!(5, limited.remaining_mut());
        assert_eq!(1, piggyback.len());
    }

    #[test]
    fn piggyback_consumes_largest_first() {
        let max_tx = 10;
        let mut piggyback = Broadcasts::new();

        piggyback.add_or_replace(Key("00"), b"00hi".to_vec(), max_tx);
        piggyback.add_or_replace(Key("01"), b"01hello".to_vec(), max_tx);
        piggyback.add_or_replace(Key("02"), b"02hey".to_vec(), max_tx);

        let mut buf = Vec::new();
        let num_items = piggyback.fill(&mut buf, usize::MAX);

        assert_eq!(3, num_items);
        assert_eq!(b"01hello02hey00hi", &buf[..]);
    }

    #[test]
    fn highest_max_tx_is_consumed_first() {
        let mut piggyback = Broadcasts::new();

        // 3 items, same byte size, distinct max_tx
        piggyback.add_or_replace(Key("10"), b"100".to_vec(), 1);
        piggyback.add_or_replace(Key("20"), b"200".to_vec(), 2);
        piggyback.add_or_replace(Key("30"), b"300".to_vec(), 3);

        let mut buf = Vec::new();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300200100", &buf[..]);

        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300200", &buf[..]);

        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300", &buf[..]);

        assert_eq!(0, piggyback.len());
    }

    #[test]
    fn piggyback_respects_limit() {
        let max_tx = 10;
        let mut piggyback = Broadcasts::new();

        piggyback.add_or_replace(Key("fo"), b"foo".to_vec(), max_tx);
        piggyback.add_or_replace(Key("ba"), b"bar".to_vec(), max_tx);
        piggyback.add_or_replace(Key("ba"), b"baz".to_vec(), max_tx);

        let mut buf = Vec::new();
        let num_items = piggyback.fill(&mut buf, 0);

        assert_eq!(0, num_items);
        assert!(buf.is_empty());

        let num_items = piggyback.fill(&mut buf, 2);
        assert_eq!(2, num_items);
    }

    #[test]
    fn fill_with_len_prefix() {
        let mut bcs = Broadcasts::new();

        bcs.add_or_replace(Key("fo"), b"foo".to_vec(), 10);
        bcs.add_or_replace(Key("ba"), b"barr".to_vec(), 10);
        bcs.add_or_replace(Key("ba"), b"bazz".to_vec(), 10);

        let mut buf = Vec::new();
        let num_items = bcs.fill_with_len_prefix(&mut buf, 0);

        assert_eq!(0, num_items);
        assert!(buf.is_empty());

        let num_items = bcs.fill_with_len_prefix(&mut buf, 2);
        assert_eq!(2, num_items);

        use bytes::Buf;
        let mut buf = &buf[..];
        assert_eq!(4, buf.get_u16());
        assert_eq!(&b"bazz"[..], &buf[..4]);
        buf.advance(4);
        assert_eq!(3, buf.get_u16());
        assert_eq!(&b"foo"[..], &buf[..3]);
        buf.advance(3);
        assert!(buf.is_empty());
    }

    // (shoal fork) tests for keyed invalidation and bounded fills

    use alloc::vec;

    #[derive(Debug)]
    struct Keyed(u32, u32); // (key, version)

    impl Invalidates for Keyed {
        fn invalidates(&self, other: &Self) -> bool {
            self.0 == other.0 && self.1 >= other.1
        }

        fn invalidation_key(&self) -> Option<u64> {
            // Deliberate collisions: keys 0..8 share a bucket
            Some(u64::from(self.0 / 8))
        }
    }

    impl<T> Broadcasts<T> {
        fn heap_len(&self) -> usize {
            self.heap.len()
        }
    }

    fn drain_all<T: Invalidates>(bcs: &mut Broadcasts<T>) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        let mut buf = Vec::new();
        for _ in 0..10_000 {
            if bcs.is_empty() {
                break;
            }
            buf.clear();
            let n = bcs.fill_with_len_prefix(&mut buf, usize::MAX);
            assert!(n > 0, "an unbounded buffer takes something");
            let mut rest = &buf[..];
            use bytes::Buf;
            while rest.has_remaining() {
                let len = usize::from(rest.get_u16());
                sent.push(rest[..len].to_vec());
                rest.advance(len);
            }
        }
        assert!(bcs.is_empty());
        sent
    }

    #[test]
    fn keyed_replacement_only_drops_invalidated() {
        let mut bcs = Broadcasts::new();
        for key in 0..100u32 {
            bcs.add_or_replace(Keyed(key, 1), alloc::format!("{key}:1").into_bytes(), 2);
        }
        assert_eq!(100, bcs.len());

        // Newer versions replace, older ones don't
        for key in (0..100u32).step_by(2) {
            bcs.add_or_replace(Keyed(key, 2), alloc::format!("{key}:2").into_bytes(), 2);
        }
        bcs.add_or_replace(Keyed(1, 0), b"1:0".to_vec(), 2);
        assert_eq!(101, bcs.len());

        let mut sent = drain_all(&mut bcs);
        sent.sort_unstable();
        let mut expected = Vec::new();
        for key in 0..100u32 {
            let version = if key % 2 == 0 { 2 } else { 1 };
            let data = alloc::format!("{key}:{version}").into_bytes();
            expected.push(data.clone());
            expected.push(data);
        }
        expected.push(b"1:0".to_vec());
        expected.push(b"1:0".to_vec());
        expected.sort_unstable();
        assert_eq!(expected, sent, "every live item sent max_tx times");
    }

    #[test]
    fn unkeyed_items_still_scan_everything() {
        let mut bcs = Broadcasts::new();
        bcs.add_or_replace(Key("aa"), b"aa1".to_vec(), 3);
        bcs.add_or_replace(Key("bb"), b"bb1".to_vec(), 3);
        bcs.add_or_replace(Key("aa"), b"aa2".to_vec(), 3);
        assert_eq!(2, bcs.len());
        let mut sent = drain_all(&mut bcs);
        sent.sort_unstable();
        assert_eq!(
            vec![b"aa2".to_vec(), b"aa2".to_vec(), b"aa2".to_vec()],
            sent[..3].to_vec()
        );
        assert!(sent[3..].iter().all(|d| d == b"bb1"));
    }

    #[test]
    fn stale_references_are_compacted() {
        let mut bcs = Broadcasts::new();
        bcs.add_or_replace(Keyed(9999, 0), b"other".to_vec(), 5);
        for version in 1..=10_000u32 {
            bcs.add_or_replace(Keyed(3, version), b"x".to_vec(), 5);
            assert_eq!(2, bcs.len());
            assert!(
                bcs.heap_len() <= 2 + COMPACT_MIN_STALE + 1,
                "{}",
                bcs.heap_len()
            );
        }
        let sent = drain_all(&mut bcs);
        assert_eq!(10, sent.len());
    }

    // The original algorithm: every item, in priority order, is taken
    // if it fits what's left
    fn reference_fill(items: &mut Vec<(usize, Vec<u8>)>, room: usize) -> Vec<u8> {
        items.sort_by(|a, b| (b.0, b.1.len()).cmp(&(a.0, a.1.len())));
        let mut out = Vec::new();
        for (tx, data) in items.iter_mut() {
            if room - out.len() >= data.len() {
                out.extend_from_slice(data);
                *tx -= 1;
            }
        }
        items.retain(|(tx, _)| *tx > 0);
        out
    }

    #[test]
    fn small_backlog_fill_matches_original_algorithm() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(0xB0);
        for _case in 0..300 {
            let num = usize::try_from(rng.next_u32() % 17).unwrap();
            let mut bcs = Broadcasts::new();
            let mut model = Vec::new();
            for i in 0..num {
                // distinct (tx, len) pairs: the order is total
                let len = i + 1;
                let tx = usize::try_from(rng.next_u32() % 4 + 1).unwrap();
                let data = vec![u8::try_from(i).unwrap(); len];
                bcs.add_or_replace(Keyed(u32::try_from(i).unwrap(), 0), data.clone(), tx);
                model.push((tx, data));
            }
            for _round in 0..6 {
                let room = usize::try_from(rng.next_u32() % 80).unwrap();
                let mut buf = bytes::BytesMut::new().limit(room);
                bcs.fill(&mut buf, usize::MAX);
                let expected = reference_fill(&mut model, room);
                assert_eq!(expected, &buf.get_ref()[..], "room {room}");
                assert_eq!(model.len(), bcs.len());
            }
        }
    }

    #[test]
    fn large_backlog_fill_keeps_priority_and_bounds_work() {
        let mut bcs = Broadcasts::new();
        // 1000 items of 100 bytes, plus one tiny item with the
        // lowest priority
        for key in 0..1000u32 {
            bcs.add_or_replace(Keyed(key, 0), vec![1; 100], 3);
        }
        bcs.add_or_replace(Keyed(5000, 0), vec![2; 1], 1);

        let mut buf = bytes::BytesMut::new().limit(1050);
        assert_eq!(10, bcs.fill(&mut buf, usize::MAX));
        assert_eq!(vec![1; 1000], &buf.get_ref()[..], "highest priority first");
        assert_eq!(1001, bcs.len());

        // The tiny item is behind far more than MAX_CONSECUTIVE_MISSES
        // items that don't fit: not worth finding
        let mut buf = bytes::BytesMut::new().limit(50);
        assert_eq!(0, bcs.fill(&mut buf, usize::MAX));

        // Items that were sent less often go first
        let mut buf = bytes::BytesMut::new().limit(100);
        assert_eq!(1, bcs.fill(&mut buf, usize::MAX));
        let mut buf = bytes::BytesMut::new().limit(200_000);
        assert_eq!(1001, bcs.fill(&mut buf, usize::MAX));
        // 989 untouched (3 left) items and 11 sent ones (2 left)
        // before the tiny one (1 left), which comes last
        let sent = buf.get_ref();
        assert_eq!(100_001, sent.len());
        assert!(sent[..100_000].iter().all(|b| *b == 1));
        assert_eq!(2, sent[100_000]);
        assert_eq!(1000, bcs.len(), "the tiny item was sent for the last time");
    }
}
