//! The agent's one ordered timer queue.
//!
//! Owns `TimerQueue`: every timer the node asked for, keyed by (deadline, arrival sequence),
//! so that due timers come out in deadline order and ties in the order they were armed (foca
//! relies on that). The event loop sleeps until `next_deadline()`; there is never one
//! sleeping task per timer. It must not read a clock: the caller passes `now`.

use shoal_core::{NodeTimer, Time};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Entry {
    at: Time,
    seq: u64,
    timer: NodeTimer,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that the max-heap pops the earliest deadline, then the lowest sequence.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Timers ordered by deadline, then by the order they were pushed.
#[derive(Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl TimerQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `timer` for `at`.
    pub fn push(&mut self, at: Time, timer: NodeTimer) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            timer,
        });
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<Time> {
        self.heap.peek().map(|e| e.at)
    }

    /// The next timer whose deadline is at or before `now`, in order.
    pub fn pop_due(&mut self, now: Time) -> Option<(Time, NodeTimer)> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|e| (e.at, e.timer))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::identity::NodeId;

    fn swim(n: u64) -> NodeTimer {
        // Distinct timers, told apart by the probe number they carry.
        NodeTimer::Swim(foca::Timer::SendIndirectProbe {
            probed_id: NodeId::new("x", "127.0.0.1:1".parse().unwrap(), n),
            token: 0,
        })
    }

    #[test]
    fn empty_queue_has_no_deadline() {
        let mut q = TimerQueue::new();
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
        assert_eq!(q.pop_due(Time(u64::MAX)), None);
    }

    #[test]
    fn due_timers_come_out_in_deadline_order() {
        let mut q = TimerQueue::new();
        q.push(Time(30), swim(3));
        q.push(Time(10), swim(1));
        q.push(Time(20), swim(2));
        q.push(Time(40), NodeTimer::Tick);
        assert_eq!(q.len(), 4);
        assert_eq!(q.next_deadline(), Some(Time(10)));
        // Nothing is due before the first deadline.
        assert_eq!(q.pop_due(Time(9)), None);
        let due: Vec<(Time, NodeTimer)> = std::iter::from_fn(|| q.pop_due(Time(30))).collect();
        assert_eq!(
            due,
            vec![
                (Time(10), swim(1)),
                (Time(20), swim(2)),
                (Time(30), swim(3))
            ]
        );
        assert_eq!(q.next_deadline(), Some(Time(40)));
        assert_eq!(q.pop_due(Time(100)), Some((Time(40), NodeTimer::Tick)));
        assert!(q.is_empty());
    }

    #[test]
    fn ties_come_out_in_arrival_order() {
        let mut q = TimerQueue::new();
        for n in 0..50 {
            q.push(Time(5), swim(n));
        }
        q.push(Time(4), NodeTimer::Tick);
        assert_eq!(q.pop_due(Time(5)), Some((Time(4), NodeTimer::Tick)));
        for n in 0..50 {
            assert_eq!(q.pop_due(Time(5)), Some((Time(5), swim(n))));
        }
        assert_eq!(q.pop_due(Time(5)), None);
    }

    #[test]
    fn timers_pushed_while_draining_are_ordered_too() {
        let mut q = TimerQueue::new();
        q.push(Time(10), swim(1));
        let (_, _) = q.pop_due(Time(10)).unwrap();
        // A handler arms a timer already due and one later.
        q.push(Time(12), swim(3));
        q.push(Time(10), swim(2));
        assert_eq!(q.pop_due(Time(10)), Some((Time(10), swim(2))));
        assert_eq!(q.pop_due(Time(10)), None);
        assert_eq!(q.pop_due(Time(12)), Some((Time(12), swim(3))));
    }
}
