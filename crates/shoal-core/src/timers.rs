//! The node's timers (drivers see only `Node::poll_timeout`): a table of named timers, one
//! slot each, and an ordered queue of the keyed ones.
//!
//! Owns `TimerTable`: one deadline (or none) per `TimerName`, every job of the node that is
//! due at a time of its own (rejoin, anti-entropy, reaping, the guard's evaluation ...), in
//! the manner of quinn-proto's `TimerTable`. And `TimerQueue`: the timers armed many at a
//! time (foca's, one restart grace per member), keyed by (deadline, arrival sequence), so that
//! due timers come out in deadline order and ties in the order they were armed (foca relies
//! on that). It must not read a clock: the caller passes `now`; it decides no deadline.

use crate::time::Time;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Entry<T> {
    at: Time,
    seq: u64,
    timer: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed, so that the max-heap pops the earliest deadline, then the lowest sequence.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The node's named timers: one slot each. Ties fire in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerName {
    /// Re-announce to seeds and known peers, with backoff, while cut off (`rejoin_min` ..
    /// `rejoin_max`).
    Rejoin,
    /// Announces to a few random members right after connecting (1, 2, 4 x `rejoin_min`).
    Bootstrap,
    /// The anti-entropy round with one random peer (`sync_interval`).
    Sync,
    /// Announces to members we hold a record of but SWIM does not know (due per member,
    /// paced one `tick` apart).
    Discover,
    /// Metadata fetches of members whose record we lack (due per member, paced).
    Fetch,
    /// Asking owners for their own copy of records a v0.1.0 peer relayed (paced).
    Verify,
    /// Mirroring foca's suspects (every probe period while anyone is suspected).
    Suspects,
    /// Forgetting members down or gone for `reap_after` (every 10 s while there are any).
    Reap,
    /// The guard's evaluation (gray evidence, reach checks, the guard and the health guard):
    /// every `tick` while any of them has something under way, and when silence would start.
    Evaluate,
    /// The snapshot schedule (`Node::poll_snapshot`).
    Snapshot,
    /// Outlier ejection: restorations and sweeps (`core::outlier`).
    Outlier,
    /// A graceful leave or a restart announcement is finished (`Node::leave_finished`): two
    /// gossip intervals after it.
    Leave,
    /// A ttl check of our services runs out (`core::health_damper`).
    Checks,
    /// The next service health status the pacing lets out (`core::health_rate`).
    Health,
    /// Pulling the member list in bulk after joining (`core::formation`): every `tick`
    /// while a pull is under way.
    Pull,
}

impl TimerName {
    pub(crate) const ALL: [TimerName; 15] = [
        TimerName::Rejoin,
        TimerName::Bootstrap,
        TimerName::Sync,
        TimerName::Discover,
        TimerName::Fetch,
        TimerName::Verify,
        TimerName::Suspects,
        TimerName::Reap,
        TimerName::Evaluate,
        TimerName::Snapshot,
        TimerName::Outlier,
        TimerName::Leave,
        TimerName::Checks,
        TimerName::Health,
        TimerName::Pull,
    ];
}

/// One deadline per named timer, and when each last fired (for the paced ones).
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    at: [Option<Time>; TimerName::ALL.len()],
    fired: [Option<Time>; TimerName::ALL.len()],
}

impl TimerTable {
    /// Arms `name` for `at`, or stops it (`None`).
    pub(crate) fn set(&mut self, name: TimerName, at: Option<Time>) {
        self.at[name as usize] = at;
    }

    pub(crate) fn get(&self, name: TimerName) -> Option<Time> {
        self.at[name as usize]
    }

    /// Arms `name` for `at` unless it is armed earlier already.
    pub(crate) fn set_earliest(&mut self, name: TimerName, at: Time) {
        let slot = &mut self.at[name as usize];
        *slot = Some(slot.map_or(at, |old| old.min(at)));
    }

    /// Arms `name` for `due`, but not sooner than `gap` after it last fired: a job that does
    /// a bounded share of its work per run comes back one `gap` later for the rest.
    pub(crate) fn set_paced(
        &mut self,
        name: TimerName,
        due: Option<Time>,
        gap: std::time::Duration,
    ) {
        let at = due.map(|d| match self.fired[name as usize] {
            Some(f) => d.max(f.plus(gap)),
            None => d,
        });
        self.set(name, at);
    }

    /// When `name` last fired.
    pub(crate) fn fired(&self, name: TimerName) -> Option<Time> {
        self.fired[name as usize]
    }

    /// The earliest armed timer (ties in `TimerName` order).
    pub(crate) fn next(&self) -> Option<(Time, TimerName)> {
        TimerName::ALL
            .iter()
            .filter_map(|n| self.at[*n as usize].map(|t| (t, *n)))
            .min()
    }

    /// The earliest timer due at `now`, disarmed and noted as fired at `now`.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<TimerName> {
        let (at, name) = self.next()?;
        if at > now {
            return None;
        }
        self.at[name as usize] = None;
        self.fired[name as usize] = Some(now);
        Some(name)
    }
}

/// Timers ordered by deadline, then by the order they were pushed.
pub(crate) struct TimerQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> TimerQueue<T> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Arms `timer` for `at`.
    pub(crate) fn push(&mut self, at: Time, timer: T) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            timer,
        });
    }

    /// The earliest deadline, if any timer is armed.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.heap.peek().map(|e| e.at)
    }

    /// The next timer whose deadline is at or before `now`, in order.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<(Time, T)> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|e| (e.at, e.timer))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;
    use crate::node::NodeTimer;
    use std::time::Duration;

    fn grace() -> NodeTimer {
        NodeTimer::RestartGrace("g".into())
    }

    fn swim(n: u64) -> NodeTimer {
        // Distinct timers, told apart by the probe number they carry.
        NodeTimer::Swim(foca::Timer::SendIndirectProbe {
            probed_id: NodeId::new("x", "127.0.0.1:1".parse().unwrap(), n),
            token: 0,
        })
    }

    #[test]
    fn table_gives_the_earliest_slot_and_ties_in_name_order() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        assert_eq!(t.pop_due(Time(u64::MAX)), None);
        t.set(TimerName::Sync, Some(Time(30)));
        t.set(TimerName::Reap, Some(Time(10)));
        t.set(TimerName::Evaluate, Some(Time(10)));
        t.set(TimerName::Rejoin, Some(Time(20)));
        assert_eq!(t.next(), Some((Time(10), TimerName::Reap)));
        assert_eq!(t.pop_due(Time(9)), None);
        // One slot each: arming again moves the deadline, it adds no second timer.
        t.set(TimerName::Rejoin, Some(Time(5)));
        let due: Vec<TimerName> = std::iter::from_fn(|| t.pop_due(Time(30))).collect();
        assert_eq!(
            due,
            vec![
                TimerName::Rejoin,
                TimerName::Reap,
                TimerName::Evaluate,
                TimerName::Sync
            ]
        );
        assert_eq!(t.next(), None);
        assert_eq!(t.fired(TimerName::Reap), Some(Time(30)));
        // Stopping a slot removes its deadline.
        t.set(TimerName::Sync, Some(Time(50)));
        t.set(TimerName::Sync, None);
        assert_eq!(t.get(TimerName::Sync), None);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn paced_and_earliest_slots() {
        let mut t = TimerTable::default();
        // Never fired: due as asked.
        t.set_paced(TimerName::Fetch, Some(Time(3)), Duration::from_millis(250));
        assert_eq!(t.pop_due(Time(3)), Some(TimerName::Fetch));
        // Fired at 3: work due at once waits for the gap.
        t.set_paced(TimerName::Fetch, Some(Time(0)), Duration::from_millis(250));
        assert_eq!(t.get(TimerName::Fetch), Some(Time(253)));
        t.set_paced(
            TimerName::Fetch,
            Some(Time(900)),
            Duration::from_millis(250),
        );
        assert_eq!(t.get(TimerName::Fetch), Some(Time(900)));
        t.set_paced(TimerName::Fetch, None, Duration::from_millis(250));
        assert_eq!(t.get(TimerName::Fetch), None);
        t.set_earliest(TimerName::Outlier, Time(80));
        t.set_earliest(TimerName::Outlier, Time(90));
        assert_eq!(t.get(TimerName::Outlier), Some(Time(80)));
        t.set_earliest(TimerName::Outlier, Time(70));
        assert_eq!(t.get(TimerName::Outlier), Some(Time(70)));
    }

    #[test]
    fn empty_queue_has_no_deadline() {
        let mut q: TimerQueue<NodeTimer> = TimerQueue::new();
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
        q.push(Time(40), grace());
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
        assert_eq!(q.pop_due(Time(100)), Some((Time(40), grace())));
        assert!(q.is_empty());
    }

    #[test]
    fn ties_come_out_in_arrival_order() {
        let mut q = TimerQueue::new();
        for n in 0..50 {
            q.push(Time(5), swim(n));
        }
        q.push(Time(4), grace());
        assert_eq!(q.pop_due(Time(5)), Some((Time(4), grace())));
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
