//! A restart is not a decommission, end to end through the deterministic test network: a node
//! that announces a restart and stops is served `restarting` (its services routable) at every
//! step of the gap; back within the grace, its next life's record replaces the old one; not
//! back, it is a failure when the grace runs out (its timer), counted like any other.

use crate::testnet::{config, TestNet};
use crate::{GuardState, Node, NodeMeta, ServedStatus, Service, Time};
use std::collections::BTreeMap;
use std::time::Duration;

const GRACE: Duration = Duration::from_secs(8);

fn db() -> Service {
    Service {
        name: "db".into(),
        port: 5432,
        tags: BTreeMap::new(),
        health: None,
        health_output: None,
    }
}

/// Five nodes; n2 and n3 both offer `db` (so n2's instance alone is not protected by the
/// push-empty rule: only the intent keeps it).
fn net() -> TestNet {
    let mut net = TestNet::with_config(5, |_, c| {
        c.guard.stable_after = Duration::from_secs(2);
        c.guard.window = Duration::from_secs(20);
    });
    for i in [2, 3] {
        net.call(i, |n, now| n.register_service(now, db()).unwrap());
    }
    let ok = net.run_until_pred(15_000, |net| {
        net.nodes.iter().all(|n| {
            n.guard_report().baseline == 4
                && n.services().get("db").map(Vec::len) == Some(2)
                && n.guard_report().state == GuardState::Normal
        })
    });
    assert!(ok, "no converged cluster");
    net
}

/// Whether observer `o` serves n2's `db` instance.
fn serves_n2_db(net: &TestNet, o: usize) -> bool {
    net.nodes[o]
        .services()
        .get("db")
        .is_some_and(|v| v.iter().any(|i| i.node == "n2" && i.status.is_serving()))
}

/// Announces n2's restart and stops it; checks every 10 ms for `ms` that every other node
/// serves n2's `db`; returns whether each observer saw n2 `restarting` at some point.
fn stop_n2_and_watch(net: &mut TestNet, ms: u64) -> bool {
    net.call(2, |n, now| n.announce_restart(now, GRACE).unwrap());
    net.run_for_ms(5);
    net.crashed.insert(2);
    let mut seen_restarting = [false; 5];
    for _ in 0..ms / 10 {
        net.run_for_ms(10);
        for o in [0, 1, 3, 4] {
            assert!(
                serves_n2_db(net, o),
                "n{o} stopped serving n2's db at {:?}",
                net.now
            );
            let st = net.nodes[o].member("n2").map(|m| m.status);
            seen_restarting[o] |= st == Some(ServedStatus::Restarting);
        }
    }
    assert!(net.down_log.iter().all(|(_, _, m)| m != "n2"));
    [0, 1, 3, 4].iter().all(|o| seen_restarting[*o])
}

#[test]
fn a_restarting_node_is_served_through_the_gap_and_replaced_by_its_next_life() {
    let mut net = net();
    assert!(
        stop_n2_and_watch(&mut net, 6_000),
        "n2 was never served restarting"
    );
    let before = net.nodes[0].member("n2").unwrap();
    assert_eq!(before.truth, Some(crate::TruthState::Down));
    // Back within the grace, with another record (a tag the app set before the restart).
    let mut meta = NodeMeta::default();
    meta.services.insert("db".into(), db());
    meta.tags.insert("role".into(), "primary".into());
    let mut node = Node::new(config(2), before.generation + 1, meta, 77, net.now).unwrap();
    node.start(net.now);
    net.nodes[2] = node;
    net.crashed.remove(&2);
    net.flush(2);
    for _ in 0..500 {
        net.run_for_ms(10);
        for o in [0, 1, 3, 4] {
            assert!(serves_n2_db(&net, o), "n{o} dropped n2's db on its return");
        }
    }
    for o in [0, 1, 3, 4] {
        let m = net.nodes[o].member("n2").unwrap();
        assert_eq!(m.status, ServedStatus::Alive, "n{o}");
        assert_eq!(m.generation, before.generation + 1);
        assert_eq!(m.tags.get("role").map(String::as_str), Some("primary"));
    }
    // The grace timers of the old life fire and change nothing.
    net.run_for_ms(GRACE.as_millis() as u64);
    assert!([0, 1, 3, 4]
        .iter()
        .all(|o| net.nodes[*o].member("n2").unwrap().status == ServedStatus::Alive));
    assert!(net.down_log.iter().all(|(_, _, m)| m != "n2"));
}

#[test]
fn a_restart_not_back_within_its_grace_is_a_failure() {
    let mut net = net();
    assert!(stop_n2_and_watch(&mut net, 4_000));
    let ok = net.run_until_pred(GRACE.as_millis() as u64 + 2_000, |net| {
        [0, 1, 3, 4]
            .iter()
            .all(|o| net.nodes[*o].member("n2").unwrap().status == ServedStatus::Down)
    });
    assert!(ok, "n2 still served after its grace");
    // Down by failure: its other instance serves db, n2's is gone.
    for o in [0, 1, 3, 4] {
        assert!(!serves_n2_db(&net, o));
        assert_eq!(net.nodes[o].services()["db"].len(), 1);
    }
}

#[test]
fn a_stop_without_intent_is_a_failure_at_once() {
    // The control: the same stop without the announcement serves n2 down before any grace.
    let mut net = net();
    net.crashed.insert(2);
    let ok = net.run_until_pred(GRACE.as_millis() as u64 / 2, |net| {
        net.nodes[0].member("n2").unwrap().status == ServedStatus::Down
    });
    assert!(ok, "a crash was not served down");
    let _ = Time(0);
}

#[test]
fn restarts_count_against_the_guard_only_once_their_grace_is_over() {
    // Seven nodes: three announce a restart together and never come back. Within their grace
    // they trip nothing (an announced restart is not a loss); when it runs out they are three
    // failures at once, over the limit max(2, 0.4 x 6): the guard freezes and holds them.
    // Each grace starts when the observer declares its member down, and SWIM declares three
    // simultaneous crashes up to Lifeguard's unconfirmed suspicion apart (6 x 0.8 s here: the
    // survivors' failed probes of the first ones make their accusations of the last count
    // for nothing), so the graces end up to 4.8 s apart. `stable_after` must exceed that, or
    // the first expired failures age out of the baseline before the last one is counted.
    let mut net = TestNet::with_config(7, |_, c| {
        c.guard.stable_after = Duration::from_secs(6);
        c.guard.window = Duration::from_secs(60);
    });
    let ok = net.run_until_pred(15_000, |net| {
        net.nodes.iter().all(|n| n.guard_report().baseline == 6)
    });
    assert!(ok, "no stable baseline");
    for i in [4, 5, 6] {
        net.call(i, |n, now| n.announce_restart(now, GRACE).unwrap());
    }
    net.run_for_ms(5);
    for i in [4, 5, 6] {
        net.crashed.insert(i);
    }
    let mut all_restarting = false;
    for _ in 0..600 {
        net.run_for_ms(10);
        for o in 0..4 {
            assert_eq!(
                net.nodes[o].guard_report().state,
                GuardState::Normal,
                "n{o} at {:?}",
                net.now
            );
        }
        all_restarting |= (0..4).all(|o| {
            [4, 5, 6].iter().all(|x| {
                net.nodes[o].member(&format!("n{x}")).map(|m| m.status)
                    == Some(ServedStatus::Restarting)
            })
        });
    }
    assert!(all_restarting, "never served restarting everywhere");
    let ok = net.run_until_pred(GRACE.as_millis() as u64 + 2_000, |net| {
        (0..4).all(|o| net.nodes[o].guard_report().state == GuardState::Frozen)
    });
    assert!(ok, "the expired restarts did not count against the guard");
    for o in 0..4 {
        for x in [4, 5, 6] {
            assert_eq!(
                net.nodes[o].member(&format!("n{x}")).unwrap().status,
                ServedStatus::Held
            );
        }
    }
}

/// A snapshot taken while a member is served `restarting` writes it as v0.1.0's `held`, so
/// that a rollback to v0.1.0 still restores the snapshot (it refuses a status it lacks).
#[test]
fn a_snapshot_writes_restarting_as_held_for_the_previous_release() {
    /// v0.1.0's statuses.
    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum V1Status {
        Alive,
        Suspect,
        Held,
        Left,
        Down,
    }
    let mut net = net();
    net.call(2, |n, now| n.announce_restart(now, GRACE).unwrap());
    net.run_for_ms(5);
    net.crashed.insert(2);
    let ok = net.run_until_pred(6_000, |net| {
        net.nodes[0].member("n2").map(|m| m.status) == Some(ServedStatus::Restarting)
    });
    assert!(ok, "n2 never served restarting");
    let snap = net.nodes[0].snapshot(net.now);
    let n2 = snap.members.iter().find(|m| m.name == "n2").unwrap();
    assert_eq!(n2.status, ServedStatus::Held);
    let json = serde_json::to_value(&snap.members).unwrap();
    for m in json.as_array().unwrap() {
        let _: V1Status = serde_json::from_value(m["status"].clone()).unwrap();
    }
}

/// The core says when a restart announcement is finished, as for a leave: two gossip
/// intervals after it, with an event, and only once the gossip it promised has gone out. Its
/// direct pushes are lost here, so that only gossip carries the record: when the node reports
/// finished, every peer holds it. The drivers stop the node then and not before.
#[test]
fn a_restart_announcement_finishes_once_its_gossip_is_out() {
    use crate::LocalEvent;
    let mut net = net();
    assert!(!net.nodes[2].leave_finished());
    assert_eq!(net.nodes[2].leave_finishes_at(), None);
    let peers = [0, 1, 3, 4];
    let t0 = net.now;
    for j in peers {
        net.blocked.insert((2, j));
    }
    net.call(2, |n, now| n.announce_restart(now, GRACE).unwrap());
    net.blocked.clear();
    let version = net.nodes[2].own_record().version;
    assert!(peers
        .iter()
        .all(|o| net.nodes[*o].member("n2").unwrap().meta_version < version));
    let gossip = net.nodes[2].config().timings.gossip_interval.as_millis() as u64;
    let done_at = Time(t0.0 + 2 * gossip);
    assert_eq!(net.nodes[2].leave_finishes_at(), Some(done_at));
    let announced = |net: &TestNet| {
        net.local_log
            .iter()
            .filter(|(_, i, e)| *i == 2 && *e == LocalEvent::RestartAnnounced)
            .map(|(t, _, _)| *t)
            .collect::<Vec<_>>()
    };
    // Stepping 1 ms at a time: not finished one ms before the deadline.
    while net.now < Time(done_at.0 - 1) {
        net.run_for_ms(1);
        assert!(
            !net.nodes[2].leave_finished(),
            "finished early at {:?}",
            net.now
        );
        assert!(announced(&net).is_empty());
    }
    net.run_until(done_at);
    assert!(net.nodes[2].leave_finished());
    assert_eq!(announced(&net), vec![done_at], "one event, at the deadline");
    assert_eq!(net.nodes[2].leave_finishes_at(), None);
    // What it promised has gone out: every peer holds the announcing record, by gossip alone.
    for o in peers {
        let m = net.nodes[o].member("n2").unwrap();
        assert_eq!(
            m.meta_version, version,
            "n{o} when the announcement finished"
        );
        assert_eq!(m.status, ServedStatus::Alive, "n{o}");
    }
    // A restart is not a leave: still a member, no `LeaveFinished`.
    assert!(!net.nodes[2].has_left());
    assert!(net
        .local_log
        .iter()
        .all(|(_, _, e)| *e != LocalEvent::LeaveFinished));
}
