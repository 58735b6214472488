//! Behaviour of the node driven through the deterministic test network (fake clock).

use crate::testnet::{addr, TestNet};
use crate::{NodeMeta, ServedStatus, Service};
use std::collections::BTreeMap;

fn status_of(net: &TestNet, viewer: usize, name: &str) -> Option<ServedStatus> {
    net.nodes[viewer].member(name).map(|m| m.status)
}

fn all_see(net: &TestNet, name: &str, st: ServedStatus, skip: &[usize]) -> bool {
    (0..net.nodes.len())
        .filter(|i| !skip.contains(i))
        .all(|i| status_of(net, i, name) == Some(st))
}

#[test]
fn five_nodes_converge() {
    let mut net = TestNet::new(5);
    let ok = net.run_until_pred(5_000, |net| {
        net.nodes.iter().all(|n| {
            n.members()
                .iter()
                .filter(|m| m.status == ServedStatus::Alive)
                .count()
                == 5
        })
    });
    assert!(ok, "5 nodes did not converge in 5 s of virtual time");
}

#[test]
fn metadata_reaches_everyone() {
    let mut net = TestNet::new(4);
    net.run_for_ms(2_000);
    net.call(2, |n, now| {
        let mut set = BTreeMap::new();
        set.insert("role".to_string(), "db".to_string());
        n.set_tags(now, &set, &[]).unwrap();
        n.register_service(
            now,
            Service {
                name: "pg".into(),
                port: 5432,
                tags: BTreeMap::new(),
                health: None,
                health_output: None,
            },
        )
        .unwrap();
    });
    let ok = net.run_until_pred(3_000, |net| {
        net.nodes.iter().all(|n| {
            n.member("n2")
                .map(|m| {
                    m.tags.get("role").map(String::as_str) == Some("db") && m.services.len() == 1
                })
                .unwrap_or(false)
        })
    });
    assert!(ok, "tag and service did not reach every node");
    let pg = net.nodes[0].services();
    assert_eq!(pg["pg"].len(), 1);
    assert_eq!(pg["pg"][0].addr, "127.0.0.1:5432".parse().unwrap());
}

#[test]
fn graceful_leave_is_left_not_down() {
    let mut net = TestNet::new(5);
    net.run_for_ms(2_000);
    net.call(3, |n, now| n.leave(now).unwrap());
    let ok = net.run_until_pred(3_000, |net| all_see(net, "n3", ServedStatus::Left, &[3]));
    assert!(ok, "leave not seen as left by all");
    // And it stays left (is not later reclassified as a failure).
    net.run_for_ms(3_000);
    assert!(all_see(&net, "n3", ServedStatus::Left, &[3]));
}

#[test]
fn crash_is_detected_as_down() {
    let mut net = TestNet::new(5);
    net.run_for_ms(2_000);
    net.crashed.insert(4);
    let ok = net.run_until_pred(5_000, |net| all_see(net, "n4", ServedStatus::Down, &[4]));
    assert!(ok, "crash not detected as down by all");
}

#[test]
fn late_joiner_gets_everyones_metadata() {
    let mut net = TestNet::new(4);
    for i in 0..3 {
        net.call(i, |n, now| {
            let mut meta = NodeMeta::default();
            meta.tags.insert("idx".into(), i.to_string());
            n.set_meta(now, meta).unwrap();
        });
    }
    // Node 3 is cut off while the others change their metadata, then comes back.
    net.cut.insert(3);
    net.run_for_ms(3_000);
    net.cut.clear();
    let ok = net.run_until_pred(10_000, |net| {
        (0..3).all(|i| {
            net.nodes[3]
                .member(&format!("n{i}"))
                .map(|m| {
                    m.tags.get("idx") == Some(&i.to_string()) && m.status == ServedStatus::Alive
                })
                .unwrap_or(false)
        })
    });
    assert!(ok, "node back from isolation lacks metadata");
}

#[test]
fn malformed_datagrams_are_counted_and_change_nothing() {
    let mut net = TestNet::new(3);
    net.run_for_ms(2_000);
    let before = net.nodes[0].members();
    let now = net.now;
    let n = &mut net.nodes[0];
    n.handle_datagram(now, addr(9), b"");
    n.handle_datagram(now, addr(9), b"garbage!");
    n.handle_datagram(now, addr(9), &[0u8; 2000]);
    n.handle_datagram(now, addr(9), b"SH\x01\x00\x00\x00\xff\xff\xff");
    // A shoal message of a kind a later release added: ignored and counted, not a drop.
    n.handle_datagram(now, addr(9), b"SH\x01\x00\x00\x01\x0a\x07");
    // A known kind that does not decode (a digest cut short).
    n.handle_datagram(now, addr(9), b"SH\x01\x00\x00\x01\x00\x01");
    n.handle_datagram(now, addr(9), b"SH\x01\x00\x04prod\x00");
    let s = n.stats().clone();
    assert_eq!(s.dropped_truncated, 1);
    assert_eq!(s.dropped_bad_magic, 1);
    assert_eq!(s.dropped_oversized, 1);
    assert_eq!(s.dropped_wrong_label, 1);
    assert_eq!(s.dropped_decode, 2);
    assert_eq!(s.unknown_kinds, 1);
    assert_eq!(net.nodes[0].members(), before);
}

#[test]
fn restarted_node_comes_back_alive() {
    let mut net = TestNet::new(4);
    net.run_for_ms(2_000);
    net.crashed.insert(2);
    assert!(net.run_until_pred(5_000, |net| all_see(net, "n2", ServedStatus::Down, &[2])));
    // Restart: same name and address, a new life (its generation is its start time in ms,
    // as the agent's and the simulator's are).
    let now = net.now;
    let generation = 1_000_000 + now.as_millis();
    let node = crate::Node::new(
        crate::testnet::config(2),
        generation,
        NodeMeta::default(),
        77,
        now,
    )
    .unwrap();
    net.nodes[2] = node;
    net.crashed.remove(&2);
    net.call(2, |n, now| n.start(now));
    // One crash and reboot costs half a failure's penalty, under the suppress limit: served
    // alive as soon as it is back, and never damped (docs/gray-failures.md).
    let mut damped = false;
    let mut watch = |net: &TestNet| {
        damped |= (0..4).any(|v| status_of(net, v, "n2") == Some(ServedStatus::Damped));
    };
    let ok = net.run_until_pred(5_000, |net| {
        watch(net);
        all_see(net, "n2", ServedStatus::Alive, &[2])
    });
    assert!(ok, "restarted node not alive everywhere");
    let d = net.nodes[0]
        .member("n2")
        .unwrap()
        .damping
        .expect("a penalty");
    assert!(d.penalty > 0 && d.penalty < 600 && d.suppressed_since.is_none());
    assert!(!net.run_until_pred(40_000, |net| {
        watch(net);
        !all_see(net, "n2", ServedStatus::Alive, &[2])
    }));
    assert!(!damped, "a crash and a reboot was served damped");
    assert_eq!(net.nodes[0].member("n2").unwrap().generation, generation);

    // A second crash and reboot soon after is a crash loop: damped.
    net.crashed.insert(2);
    assert!(net.run_until_pred(10_000, |net| all_see(net, "n2", ServedStatus::Down, &[2])));
    let now = net.now;
    let node = crate::Node::new(
        crate::testnet::config(2),
        2_000_000 + now.as_millis(),
        NodeMeta::default(),
        78,
        now,
    )
    .unwrap();
    net.nodes[2] = node;
    net.crashed.remove(&2);
    net.call(2, |n, now| n.start(now));
    let ok = net.run_until_pred(5_000, |net| all_see(net, "n2", ServedStatus::Damped, &[2]));
    assert!(ok, "a crash loop is not damped");
}

#[test]
fn partition_heals_without_the_guard() {
    use crate::GuardMode;
    let mut net = TestNet::with_config(7, |_, c| c.guard.mode = GuardMode::Off);
    net.run_for_ms(2_000);
    net.partition(&[4, 5, 6]);
    // Long enough for each side to declare the other down.
    net.run_for_ms(10_000);
    assert_eq!(status_of(&net, 0, "n5"), Some(ServedStatus::Down));
    net.heal();
    let start = net.now;
    let ok = net.run_until_pred(30_000, |net| {
        (0..7).all(|i| {
            net.nodes[i]
                .members()
                .iter()
                .filter(|m| m.status == ServedStatus::Alive)
                .count()
                == 7
        })
    });
    eprintln!("healed in {} ms: {ok}", net.now.0 - start.0);
    // Every node renewed its identity (each side had declared the other down) and got back.
    assert!(net
        .local_log
        .iter()
        .any(|e| matches!(e.2, crate::LocalEvent::Rejoined { .. })));
    assert!(
        ok,
        "split did not heal within 30 s after the cut was lifted"
    );
}

#[test]
fn steady_cluster_keeps_probing() {
    let mut net = TestNet::new(5);
    net.run_for_ms(2_000);
    let before: Vec<u64> = net.nodes.iter().map(|n| n.stats().tx_datagrams).collect();
    net.run_for_ms(10_000);
    for (i, n) in net.nodes.iter().enumerate() {
        let sent = n.stats().tx_datagrams - before[i];
        // Local profile probes every 200 ms: at least 50 pings in 10 s, plus acks to others.
        assert!(sent >= 50, "n{i} sent only {sent} datagrams in 10 s");
    }
}

#[test]
fn missed_joins_are_learned_through_membership_anti_entropy() {
    // n0..n3 form a cluster; n1 never announces on its own (no periodic announce, whose
    // answer would carry a feed of members) and so relies on gossip for news of joins.
    const FIRST: usize = 4;
    const N: usize = 12;
    let mut net = TestNet::with_config(N, |i, c| {
        if i >= FIRST {
            c.seeds.clear();
        }
        if i == 1 {
            c.timings.announce_interval = std::time::Duration::from_secs(600);
        }
    });
    net.run_for_ms(3_000);
    assert!(all_see(
        &net,
        "n1",
        ServedStatus::Alive,
        &(FIRST..N).collect::<Vec<_>>()
    ));

    // A burst of joins while n1 is cut off: it misses all of their gossip. Afterwards it
    // is never talked to by a joiner (links blocked both ways), so only the cluster's
    // original members can tell it about them.
    net.cut.insert(1);
    for j in FIRST..N {
        net.blocked.insert((1, j));
        net.blocked.insert((j, 1));
        net.call(j, |n, now| n.join(now, &[addr(0)]).unwrap());
    }
    net.run_for_ms(500);
    net.cut.remove(&1);
    net.run_for_ms(300);
    let knows = |net: &TestNet, j: usize| net.nodes[1].truth().get(&format!("n{j}")).is_some();
    let missed = (FIRST..N).filter(|&j| !knows(&net, j)).count();
    assert!(
        missed > 0,
        "n1 did not miss any join; the test proves nothing"
    );
    assert!(
        net.nodes[0].stats().member_sync_rounds > 0,
        "no membership round opened yet"
    );

    let ok = net.run_until_pred(10_000, |net| (FIRST..N).all(|j| knows(net, j)));
    let learned: Vec<usize> = (FIRST..N).filter(|&j| knows(&net, j)).collect();
    assert!(ok, "n1 knows only {learned:?} of the joiners");
    assert!(net.nodes[1].stats().member_intros_applied >= missed as u64);
    assert_eq!(net.nodes[1].stats().dropped_total(), 0);
}

#[test]
fn snapshots_come_at_start_then_every_10_s_while_the_view_changes() {
    let mut net = TestNet::new(3);
    let first = net.nodes[0]
        .poll_snapshot(crate::Time(0))
        .expect("the first is due at start");
    assert_eq!(first.taken_at_unix_ms, 0);
    assert!(
        net.nodes[0].poll_snapshot(crate::Time(0)).is_none(),
        "handed out once"
    );
    // The view changes as the others join, but the next one is due only at 10 s.
    net.run_until(crate::Time(9_000));
    assert!(net.nodes[0].poll_snapshot(crate::Time(9_000)).is_none());
    net.run_until(crate::Time(10_000));
    let s = net.nodes[0]
        .poll_snapshot(crate::Time(10_000))
        .expect("due at 10 s: the view changed");
    assert_eq!(
        s.members.iter().filter(|m| m.status.is_serving()).count(),
        3
    );
    // A calm view gives none at 20 s.
    net.run_until(crate::Time(20_000));
    assert!(net.nodes[0].poll_snapshot(crate::Time(20_000)).is_none());
    // A change does, at the next 10 s mark (30 s).
    net.call(1, |n, now| {
        let set = BTreeMap::from([("role".to_string(), "db".to_string())]);
        n.set_tags(now, &set, &[]).unwrap();
    });
    net.run_until(crate::Time(29_000));
    assert!(net.nodes[0].poll_snapshot(crate::Time(29_000)).is_none());
    net.run_until(crate::Time(30_000));
    let s = net.nodes[0]
        .poll_snapshot(crate::Time(30_000))
        .expect("due at 30 s");
    let n1 = s.members.iter().find(|m| m.name == "n1").unwrap();
    assert_eq!(n1.tags.get("role").map(String::as_str), Some("db"));
}

/// Two nodes on one thread, each with a context of its own (`Node::new`), share nothing:
/// each decodes the third node's name into its own context, hashed with its own seed. (When
/// the caches were thread-locals seeded by the first node built on the thread, both nodes
/// held the one allocation, hashed with node 0's seed.) Nodes given one context share it.
#[test]
fn nodes_with_different_contexts_are_independent() {
    let mut net = TestNet::new(3);
    let ok = net.run_until_pred(5_000, |net| {
        (0..2).all(|i| status_of(net, i, "n2") == Some(ServedStatus::Alive))
    });
    assert!(ok, "nodes 0 and 1 did not see n2 within 5 s");
    let (a, b) = (net.nodes[0].shared(), net.nodes[1].shared());
    assert!(!std::sync::Arc::ptr_eq(a, b));
    assert_eq!(a.seed(), crate::hash::HashSeed::of_node(0));
    assert_eq!(b.seed(), crate::hash::HashSeed::of_node(1));
    let (na, nb) = (a.known_name("n2"), b.known_name("n2"));
    let (Some(na), Some(nb)) = (na, nb) else {
        panic!("both contexts hold n2: {a:?} {b:?}");
    };
    assert!(
        !std::sync::Arc::ptr_eq(&na, &nb),
        "one allocation in two contexts"
    );
    assert!(a.known_name("n1").is_some() && b.known_name("n0").is_some());
    // Node 0's context holds nothing only node 1 decoded or made: its own name stays its.
    assert!(!std::sync::Arc::ptr_eq(
        &a.known_name("n1").unwrap(),
        &b.known_name("n1").unwrap()
    ));

    // One context given to two nodes: one copy of each name.
    let shared = crate::Shared::new(9);
    let cfg = |i| crate::testnet::config(i);
    let x = crate::Node::with_shared(
        cfg(5),
        1,
        NodeMeta::default(),
        5,
        crate::Time(0),
        shared.clone(),
    )
    .unwrap();
    let y = crate::Node::with_shared(
        cfg(6),
        1,
        NodeMeta::default(),
        6,
        crate::Time(0),
        shared.clone(),
    )
    .unwrap();
    assert!(std::sync::Arc::ptr_eq(x.shared(), y.shared()));
    assert!(shared.known_name("n5").is_some() && shared.known_name("n6").is_some());
    assert!(a.known_name("n5").is_none() && b.known_name("n6").is_none());
}
