//! Deadlines keyed by member name, taken in deadline order.
//!
//! Owns `DueSet`: at most one deadline per name, and the names whose deadline has passed,
//! oldest first, without scanning the names that are not due yet (a node joining a large
//! cluster may wait on thousands of them); and `DueQueue`, the lighter first-in first-out
//! form for deadlines that all lie the same delay ahead, whose entries are checked when due
//! rather than removed early. Must not decide what a deadline means: the node does.

use crate::hash::FixedHashMap;
use crate::time::Time;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct DueSet {
    at: FixedHashMap<Arc<str>, Time>,
    order: BTreeSet<(Time, Arc<str>)>,
}

impl DueSet {
    /// An empty set whose table is hashed with `seed` (names come off the wire).
    pub(crate) fn with_seed(seed: crate::hash::HashSeed) -> DueSet {
        DueSet {
            at: seed.map(),
            order: BTreeSet::new(),
        }
    }

    /// Sets `name`'s deadline to `at` (replacing an earlier one).
    pub(crate) fn insert(&mut self, name: Arc<str>, at: Time) {
        if let Some(old) = self.at.insert(name.clone(), at) {
            self.order.remove(&(old, name.clone()));
        }
        self.order.insert((at, name));
    }

    /// Sets `name`'s deadline to `at` unless it already has one.
    pub(crate) fn insert_if_absent(&mut self, name: Arc<str>, at: Time) {
        if !self.at.contains_key(&name) {
            self.insert(name, at);
        }
    }

    pub(crate) fn remove(&mut self, name: &str) -> bool {
        match self.at.remove_entry(name) {
            Some((name, at)) => {
                self.order.remove(&(at, name));
                true
            }
            None => false,
        }
    }

    /// Removes and returns up to `max` names whose deadline is at or before `now`, earliest
    /// deadline first.
    pub(crate) fn take_due(&mut self, now: Time, max: usize) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.order.first() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            if let Some((_, name)) = self.order.pop_first() {
                self.at.remove(&name);
                out.push(name);
            }
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }

    /// When the earliest entry is due.
    pub(crate) fn next_due(&self) -> Option<Time> {
        self.order.first().map(|(at, _)| *at)
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// Names to look at again once their deadline passes, for deadlines that are all `now` plus
/// one fixed delay (so insertion order is deadline order). An entry is not removed when it
/// stops mattering: whoever takes it checks whether it still does. Each entry carries how
/// many times it was taken before (the caller may escalate). 32 bytes an entry, where
/// `DueSet` needs about twice that: a node joining 10,000 others queues one per member.
#[derive(Debug, Default)]
pub(crate) struct DueQueue {
    queue: VecDeque<(Time, Arc<str>, u8)>,
}

impl DueQueue {
    /// Queues `name` for `at`, taken `tries` times before.
    pub(crate) fn push(&mut self, name: Arc<str>, at: Time, tries: u8) {
        self.queue.push_back((at, name, tries));
    }

    /// Queues an entry at the head: one just taken (for a later pass), or one due now
    /// (nothing queued is due earlier, so the order holds).
    pub(crate) fn unpop(&mut self, name: Arc<str>, at: Time, tries: u8) {
        self.queue.push_front((at, name, tries));
    }

    /// The oldest name whose deadline is at or before `now`, if any, with its deadline and
    /// its count of earlier tries.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<(Arc<str>, Time, u8)> {
        match self.queue.front() {
            Some((at, _, _)) if *at <= now => {}
            _ => return None,
        }
        let entry = self.queue.pop_front().map(|(at, n, t)| (n, at, t));
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            self.queue = VecDeque::new();
        }
        entry
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// When the entry at the front is due (`pop_due` takes them in queue order).
    pub(crate) fn next_due(&self) -> Option<Time> {
        self.queue.front().map(|(at, _, _)| *at)
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn takes_due_names_earliest_first_and_bounded() {
        let mut d = DueSet::default();
        d.insert(n("c"), Time(30));
        d.insert(n("a"), Time(10));
        d.insert(n("b"), Time(20));
        d.insert(n("late"), Time(100));
        assert_eq!(d.take_due(Time(25), 1), vec![n("a")]);
        assert_eq!(d.take_due(Time(25), 10), vec![n("b")]);
        assert_eq!(d.len(), 2);
        assert!(d.take_due(Time(29), 10).is_empty());
        assert_eq!(d.take_due(Time(1000), 10), vec![n("c"), n("late")]);
        assert!(d.is_empty());
    }

    #[test]
    fn queue_gives_due_names_in_order() {
        let mut q = DueQueue::default();
        q.push(n("a"), Time(10), 0);
        q.push(n("b"), Time(20), 1);
        q.push(n("a"), Time(30), 0);
        assert_eq!(q.pop_due(Time(5)), None);
        assert_eq!(q.pop_due(Time(25)), Some((n("a"), Time(10), 0)));
        let (name, at, tries) = q.pop_due(Time(25)).unwrap();
        assert_eq!((name.as_ref(), at, tries), ("b", Time(20), 1));
        // Put back: it comes first again, before the later entry.
        q.unpop(name, at, tries);
        assert_eq!(q.pop_due(Time(25)), Some((n("b"), Time(20), 1)));
        assert_eq!(q.pop_due(Time(25)), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(Time(30)), Some((n("a"), Time(30), 0)));
        assert!(q.is_empty());
    }

    #[test]
    fn replacing_and_removing_keep_one_deadline_per_name() {
        let mut d = DueSet::default();
        d.insert(n("a"), Time(10));
        d.insert(n("a"), Time(50));
        d.insert_if_absent(n("a"), Time(1));
        assert!(d.take_due(Time(49), 10).is_empty());
        assert_eq!(d.len(), 1);
        assert!(d.remove("a"));
        assert!(!d.remove("a"));
        assert!(d.take_due(Time(1000), 10).is_empty());
    }
}
