//! The node's timers seen from a driver: `poll_timeout` is the earliest deadline, and an
//! idle cluster wakes only when something is due (no housekeeping tick).
//!
//! Test-only; drives nodes through the deterministic test network.

use crate::testnet::TestNet;
use crate::timers::TimerName;
use crate::{Profile, ServedStatus, Time};

/// Every node serves every node alive.
pub(crate) fn formed(net: &TestNet) -> bool {
    net.nodes.iter().all(|n| {
        n.members()
            .iter()
            .filter(|m| m.status == ServedStatus::Alive)
            .count()
            == net.nodes.len()
    })
}

/// Wake-ups of each node of an idle, formed 3-node cluster (LAN timings) over one virtual
/// minute.
fn idle_minute_wakes() -> Vec<u64> {
    let mut net = TestNet::with_config(3, |_, c| c.timings = Profile::Lan.timings());
    assert!(net.run_until_pred(30_000, formed), "3 nodes did not form");
    // Let the joins' announces, fetches and first rounds pass.
    net.run_for_ms(60_000);
    assert!(formed(&net));
    let before = net.wakes.clone();
    let start = net.now;
    // Throughout the minute, only the periodic jobs are armed, and the guard's evaluation
    // for when silence would begin (pushed back by every datagram heard): nothing waits on
    // a tick.
    let periodic = [TimerName::Sync, TimerName::Evaluate, TimerName::Snapshot];
    for _ in 0..1_200 {
        net.run_for_ms(50);
        for n in &net.nodes {
            let armed = n.armed_named();
            assert!(
                armed.iter().all(|t| periodic.contains(t)),
                "{armed:?} armed at {:?}",
                net.now
            );
        }
    }
    assert!(formed(&net), "the cluster stayed whole");
    // Of the named timers, only the anti-entropy round and the snapshot schedule fired.
    for n in &net.nodes {
        for t in TimerName::ALL {
            let fired = n.named_fired(t).is_some_and(|at| at > start);
            let periodic = matches!(t, TimerName::Sync | TimerName::Snapshot);
            assert_eq!(fired, periodic, "{t:?} fired: {fired}");
        }
    }
    net.wakes.iter().zip(&before).map(|(a, b)| a - b).collect()
}

#[test]
fn idle_cluster_wakes_only_for_what_is_due() {
    let wakes = idle_minute_wakes();
    println!("handle_timeout calls per node over an idle minute: {wakes:?}");
    for w in &wakes {
        // With the 250 ms housekeeping tick: 660 a minute. Now 426: foca's own timers
        // (gossip every 200 ms, a probe every second and its timeouts) and, of the node's,
        // the anti-entropy round and the snapshot schedule every 10 s each.
        assert!(*w <= 430, "an idle node woke {w} times in a minute");
    }
}

#[test]
fn poll_timeout_is_the_earliest_deadline_and_nothing_before_it_is_due() {
    let mut net = TestNet::with_config(3, |_, c| c.timings = Profile::Lan.timings());
    assert!(net.run_until_pred(30_000, formed));
    net.run_for_ms(60_000);
    // Step node 0 by hand from its deadline to the next for a virtual minute: calling
    // `handle_timeout` just before a deadline does nothing (no datagram, no new deadline).
    let mut checked = 0;
    for _ in 0..2_000 {
        let Some(at) = net.nodes[0].poll_timeout() else {
            panic!("a started node always has a deadline (anti-entropy)");
        };
        assert!(
            at >= net.now,
            "a deadline in the past: {at:?} < {:?}",
            net.now
        );
        if at.0 > net.now.0 {
            let early = Time(at.0 - 1);
            if early > net.now {
                net.run_until(early);
                let again = net.nodes[0].poll_timeout();
                net.nodes[0].handle_timeout(early);
                assert_eq!(net.nodes[0].poll_transmit().map(|t| t.dst), None);
                assert_eq!(net.nodes[0].poll_timeout(), again);
                checked += 1;
            }
        }
        net.run_until(at);
        if net.now.0 > 180_000 {
            break;
        }
    }
    assert!(checked > 30, "only {checked} deadlines checked");
}

/// The core says when a leave is finished: two gossip intervals after it, once its
/// datagrams are out, with an event; by then every peer serves the node `left`.
#[test]
fn leave_finishes_two_gossip_intervals_later_with_an_event() {
    let mut net = TestNet::new(4);
    assert!(net.run_until_pred(5_000, formed));
    net.run_for_ms(1_000);
    assert!(!net.nodes[3].leave_finished());
    assert_eq!(net.nodes[3].leave_finishes_at(), None);
    let left_at = net.now;
    net.call(3, |n, now| n.leave(now).unwrap());
    let gossip = Profile::Local.timings().gossip_interval.as_millis() as u64;
    let done_at = Time(left_at.0 + 2 * gossip);
    assert_eq!(net.nodes[3].leave_finishes_at(), Some(done_at));
    // Stepping 1 ms at a time: not finished one ms before, finished at the deadline.
    let finished = |net: &TestNet| {
        net.local_log
            .iter()
            .filter(|(_, i, e)| *i == 3 && *e == crate::LocalEvent::LeaveFinished)
            .map(|(t, _, _)| *t)
            .collect::<Vec<_>>()
    };
    while net.now < Time(done_at.0 - 1) {
        net.run_for_ms(1);
        assert!(
            !net.nodes[3].leave_finished(),
            "finished early at {:?}",
            net.now
        );
        assert!(finished(&net).is_empty());
    }
    net.run_until(done_at);
    assert!(net.nodes[3].leave_finished());
    assert_eq!(finished(&net), vec![done_at], "one event, at the deadline");
    assert_eq!(net.nodes[3].leave_finishes_at(), None);
    for i in 0..3 {
        assert_eq!(
            net.nodes[i].member("n3").map(|m| m.status),
            Some(ServedStatus::Left),
            "node {i} when the leave finished"
        );
    }
    // Nodes that did not leave never finish one.
    net.run_for_ms(2_000);
    assert!((0..3).all(|i| !net.nodes[i].leave_finished()));
    assert_eq!(finished(&net).len(), 1);
}

// The core's health publishing (damped, paced, fitted, stopped by a leave) is tested where it
// lives: `health_damper::tests`.
