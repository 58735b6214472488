//! The world's event queue: events ordered by (virtual time in µs, insertion sequence).
//!
//! Owns the ordering rule that makes a run replay byte for byte (earliest time first, ties
//! in insertion order) and the storage of the events. The heap holds only small fixed-size
//! keys (24 bytes); the events themselves (timers, datagrams with their payload) sit in a
//! slab whose slots are reused, so a pop moves keys, never payloads, and a steady run
//! allocates no queue memory. Must not know what an event means.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    at: u64,
    seq: u64,
    slot: u32,
}

impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Key {
    // Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) first. `seq` is
    // unique, so `slot` never decides.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A priority queue of `T` by (time, insertion order).
pub struct EventQueue<T> {
    heap: BinaryHeap<Key>,
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> EventQueue<T> {
    pub fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }

    /// Adds `ev` at time `at`; among events at the same time it comes after those already in.
    pub fn push(&mut self, at: u64, ev: T) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(ev);
                s
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Key {
            at,
            seq: self.seq,
            slot,
        });
    }

    /// Time of the earliest event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|k| k.at)
    }

    /// Removes the earliest event if it is due at or before `until`.
    pub fn pop_until(&mut self, until: u64) -> Option<(u64, T)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        let k = self.heap.pop()?;
        let ev = self.slab.get_mut(k.slot as usize)?.take()?;
        self.free.push(k.slot);
        Some((k.at, ev))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Slots allocated (the most events ever queued at once).
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_ties_in_insertion_order() {
        let mut q = EventQueue::new();
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        q.push(9, "e");
        assert_eq!(q.pop_until(4), Some((1, "a")));
        assert_eq!(q.pop_until(4), Some((1, "b")));
        assert_eq!(q.pop_until(4), None);
        q.push(5, "d2");
        assert_eq!(q.pop_until(10), Some((5, "c")));
        assert_eq!(q.pop_until(10), Some((5, "d")));
        assert_eq!(q.pop_until(10), Some((5, "d2")));
        assert_eq!(q.pop_until(10), Some((9, "e")));
        assert!(q.is_empty());
        // Slots were reused: at most five events were ever queued at once.
        assert_eq!(q.capacity(), 5);
    }
}
