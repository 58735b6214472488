//! Tests of the guard end to end, through the deterministic test network (`TestNet`): crashes,
//! partitions, one-way cuts, restarts from a snapshot, and young clusters that must never serve
//! anyone down. The state machine alone is tested in `guard_tests`.

use crate::testnet::{config, TestNet};
use crate::{
    GuardMode, GuardState, Node, NodeConfig, NodeMeta, Restored, ServedStatus, Service, Time,
    TruthState,
};
use std::collections::BTreeMap;
use std::time::Duration;

fn fast_guard(cfg: &mut NodeConfig) {
    cfg.guard.stable_after = Duration::from_secs(2);
    cfg.guard.window = Duration::from_secs(20);
    cfg.guard.warming_sync = Duration::from_secs(1);
    cfg.guard.warming_timeout = Duration::from_secs(10);
}

fn net(n: usize) -> TestNet {
    let mut net = TestNet::with_config(n, |_, c| fast_guard(c));
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes
            .iter()
            .all(|n| n.guard_report().baseline == net.nodes.len() - 1)
    });
    assert!(ok, "no stable baseline");
    net
}

fn status(net: &TestNet, viewer: usize, i: usize) -> Option<ServedStatus> {
    net.nodes[viewer].member(&format!("n{i}")).map(|m| m.status)
}

fn serves_everyone(node: &Node, n: usize) -> bool {
    let m = node.members();
    m.len() == n && m.iter().all(|m| m.status.is_serving())
}

/// Every node serves every member alive, and the guard is normal: the exact truth.
fn exact_truth(net: &TestNet) -> bool {
    let n = net.nodes.len();
    net.nodes.iter().all(|node| {
        let m = node.members();
        node.guard_report().state == GuardState::Normal
            && m.len() == n
            && m.iter()
                .all(|m| m.status == ServedStatus::Alive && m.truth.is_none())
    })
}

fn db() -> Service {
    Service {
        name: "db".into(),
        port: 5432,
        tags: BTreeMap::new(),
        health: None,
        health_output: None,
    }
}

#[test]
fn e2e_mass_crash_trips_survivors_and_leave_still_applies() {
    // 3 of 8 crash: 3 > 40% of the 7 peers each survivor had, and each still reaches 4 of 7
    // (half or more): frozen, not isolated.
    let mut net = net(8);
    for i in 5..8 {
        net.crashed.insert(i);
    }
    let ok = net.run_until_pred(15_000, |net| {
        (0..5).all(|v| {
            net.nodes[v].guard_report().state == GuardState::Frozen
                && (5..8).all(|i| status(net, v, i) == Some(ServedStatus::Held))
        })
    });
    assert!(ok, "survivors did not freeze holding the crashed nodes");
    let rep = net.nodes[0].guard_report();
    assert_eq!((rep.held, rep.baseline), (3, 7));
    assert!(
        rep.reason.contains("of 7 baseline peers lost"),
        "{}",
        rep.reason
    );
    // A graceful leave while frozen applies at once.
    net.call(3, |n, now| n.leave(now).unwrap());
    let ok = net.run_until_pred(3_000, |net| {
        [0, 1, 2, 4]
            .iter()
            .all(|&v| status(net, v, 3) == Some(ServedStatus::Left))
    });
    assert!(ok, "leave while frozen not applied");
    assert_eq!(net.nodes[0].guard_report().state, GuardState::Frozen);
}

#[test]
fn e2e_one_of_six_cut_off_then_heal_to_the_exact_truth() {
    let mut net = net(6);
    net.partition(&[5]);
    let ok = net.run_until_pred(15_000, |net| {
        (0..5).all(|v| status(net, v, 5) == Some(ServedStatus::Down))
            && net.nodes[5].guard_report().state == GuardState::Isolated
    });
    assert!(
        ok,
        "cut-off node not isolated or majority did not remove it"
    );
    // The majority removed the one node (within the rules) and stayed normal.
    for v in 0..5 {
        assert_eq!(net.nodes[v].guard_report().state, GuardState::Normal);
    }
    // The cut-off node keeps serving the full view, holding every peer once its SWIM
    // declared them down (with Lifeguard a cut-off node is slow to: its probes stretch up to
    // 9x and, the sole accuser of each peer, it waits 6x the suspicion).
    let ok = net.run_until_pred(120_000, |net| {
        assert!(serves_everyone(&net.nodes[5], 6));
        net.nodes[5].guard_report().held == 5
    });
    assert!(ok, "the cut-off node never held all its peers");
    assert!(serves_everyone(&net.nodes[5], 6));
    assert!(
        net.nodes[5].stats().rejoin_attempts > 0,
        "not re-announcing while isolated"
    );
    net.heal();
    // (The majority saw n5 go down and come back before the cut was complete: one flap,
    // so it is damped until back 30 s with its penalty under the suppress limit, see
    // docs/gray-failures.md; then the exact truth.)
    let ok = net.run_until_pred(60_000, exact_truth);
    assert!(ok, "did not heal to the exact truth");
}

#[test]
fn e2e_three_of_seven_cut_off_each_side_holds_the_other() {
    let mut net = net(7);
    net.partition(&[4, 5, 6]);
    let ok = net.run_until_pred(20_000, |net| {
        (0..4).all(|v| net.nodes[v].guard_report().state == GuardState::Frozen)
            && (4..7).all(|v| net.nodes[v].guard_report().state == GuardState::Isolated)
            && net.nodes.iter().all(|n| serves_everyone(n, 7))
            && net.nodes[0].guard_report().held == 3
            && net.nodes[6].guard_report().held == 4
    });
    assert!(
        ok,
        "sides did not freeze/isolate while serving the full view"
    );
    assert_eq!(net.nodes[0].guard_report().held, 3);
    assert_eq!(net.nodes[6].guard_report().held, 4);
    // The minority still sees its own side (not idle) yet re-announces, being isolated.
    let before = net.nodes[6].stats().rejoin_attempts;
    assert!(!net.nodes[6].is_idle());
    let services_before: Vec<_> = net.nodes.iter().map(|n| n.members().len()).collect();
    net.run_for_ms(5_000);
    assert!(
        net.nodes[6].stats().rejoin_attempts > before,
        "isolated node not re-announcing"
    );
    assert!(net.nodes.iter().all(|n| serves_everyone(n, 7)));
    assert_eq!(
        services_before,
        net.nodes
            .iter()
            .map(|n| n.members().len())
            .collect::<Vec<_>>()
    );
    net.heal();
    assert!(
        net.run_until_pred(30_000, exact_truth),
        "did not heal to the exact truth"
    );
}

#[test]
fn e2e_single_crash_is_removed_as_fast_as_without_the_guard() {
    let mut detect = Vec::new();
    for mode in [GuardMode::Enforce, GuardMode::Off] {
        let mut net = TestNet::with_config(6, |_, c| {
            fast_guard(c);
            c.guard.mode = mode;
        });
        net.run_for_ms(5_000);
        net.crashed.insert(3);
        let start = net.now.0;
        let ok = net.run_until_pred(10_000, |net| {
            [0, 1, 2, 4, 5]
                .iter()
                .all(|&v| status(net, v, 3) == Some(ServedStatus::Down))
        });
        assert!(ok, "crash not removed with guard {mode:?}");
        detect.push(net.now.0 - start);
        assert_eq!(net.nodes[0].guard_report().state, GuardState::Normal);
    }
    // Same seeds, same gossip: the guard changes nothing of what is gossiped or detected.
    assert_eq!(
        detect[0], detect[1],
        "enforce {} ms vs off {} ms",
        detect[0], detect[1]
    );
}

#[test]
fn e2e_last_instance_of_a_service_is_held_not_emptied() {
    let mut net = net(5);
    net.call(3, |n, now| n.register_service(now, db()).unwrap());
    net.run_for_ms(2_000);
    assert_eq!(net.nodes[0].services()["db"].len(), 1);
    net.crashed.insert(3);
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes[0].truth().get("n3").map(|m| m.state()) == Some(TruthState::Down)
    });
    assert!(ok);
    net.run_for_ms(2_000);
    for v in [0, 1, 2, 4] {
        let n = &net.nodes[v];
        assert_eq!(n.guard_report().state, GuardState::Normal);
        assert_eq!(status(&net, v, 3), Some(ServedStatus::Held));
        let db = &n.services()["db"];
        assert_eq!(db.len(), 1);
        assert_eq!(db[0].status, ServedStatus::Held);
    }
}

#[test]
fn e2e_restart_from_snapshot_serves_warming_then_normal() {
    let mut net = net(5);
    net.call(2, |n, now| n.register_service(now, db()).unwrap());
    net.run_for_ms(3_000);
    // The wall clock, the core's one (`set_wall_clock`), stamps the snapshot and ages it.
    net.nodes[4].set_wall_clock(net.now, 1_000_000);
    let snap = net.nodes[4].snapshot(net.now);
    assert_eq!(snap.members.len(), 5);
    net.crashed.insert(4);
    net.run_for_ms(3_000);
    // Restart with no seeds: only the snapshot's known peers lead back.
    let mut cfg = config(4);
    fast_guard(&mut cfg);
    cfg.seeds.clear();
    // (A new life: its generation is its start time in ms, as the agent's is.)
    let generation = 1_000_000 + net.now.as_millis();
    let mut node = Node::new(cfg, generation, NodeMeta::default(), 99, net.now).unwrap();
    node.set_wall_clock(net.now, 1_005_000);
    let out = node.restore(net.now, snap.clone()).unwrap();
    assert!(
        matches!(out, Restored::Served { members: 4, .. }),
        "{out:?}"
    );
    assert_eq!(node.guard_report().state, GuardState::Warming);
    assert!(serves_everyone(&node, 5), "restored view not served");
    assert_eq!(node.services()["db"][0].status, ServedStatus::Held);
    net.nodes[4] = node;
    net.crashed.remove(&4);
    net.call(4, |n, now| n.start(now));
    let ok = net.run_until_pred(15_000, |net| {
        net.nodes[4].guard_report().state == GuardState::Normal
    });
    assert!(ok, "never left warming");
    // (One crash and a restart 3 s later costs half a flap's penalty, under the suppress
    // limit: the others do not serve n4 `damped`, docs/gray-failures.md.)
    assert!(
        (0..4).all(|v| status(&net, v, 4) != Some(ServedStatus::Damped)),
        "one crash and a quick return is not damped"
    );
    assert!(
        net.run_until_pred(60_000, exact_truth),
        "restarted node not in sync"
    );
    assert_eq!(net.nodes[4].services()["db"][0].status, ServedStatus::Alive);

    // A stale snapshot is not served, but its peers still lead back.
    let mut cfg = config(4);
    fast_guard(&mut cfg);
    cfg.seeds.clear();
    let mut node = Node::new(cfg, 3, NodeMeta::default(), 98, net.now).unwrap();
    node.set_wall_clock(net.now, 1_000_000 + 2 * 3600 * 1000);
    let out = node.restore(net.now, snap).unwrap();
    assert!(
        matches!(out, Restored::PeersOnly { peers: 4, .. }),
        "{out:?}"
    );
    assert_eq!(node.members().len(), 1);
    assert_eq!(node.guard_report().state, GuardState::Normal);
    // And a snapshot of another node is refused.
    let other = net.nodes[0].snapshot(net.now);
    let mut cfg = config(4);
    fast_guard(&mut cfg);
    let mut node = Node::new(cfg, 4, NodeMeta::default(), 97, net.now).unwrap();
    assert!(node.restore(net.now, other).is_err());
}

/// Figures with the guard on and off, side by side (printed with `--nocapture`): 3 of 7 cut
/// off, the only `api` instances on the cut-off side.
#[test]
fn e2e_figures_guard_on_vs_off() {
    let mut rows = Vec::new();
    for mode in [GuardMode::Enforce, GuardMode::Off] {
        let mut net = TestNet::with_config(7, |_, c| {
            fast_guard(c);
            c.guard.mode = mode;
        });
        for i in 4..7 {
            net.call(i, |n, now| {
                let mut s = db();
                s.name = "api".into();
                n.register_service(now, s).unwrap();
            });
        }
        net.run_for_ms(6_000);
        assert!(net.nodes.iter().all(|n| n.services()["api"].len() == 3));
        net.partition(&[4, 5, 6]);
        let mut min_api = usize::MAX;
        let mut min_served = [usize::MAX; 7];
        net.run_until_pred(10_000, |net| {
            for (i, n) in net.nodes.iter().enumerate() {
                let served = n.members().iter().filter(|m| m.status.is_serving()).count();
                min_served[i] = min_served[i].min(served);
                if i < 4 {
                    let api = n.services().get("api").map(Vec::len).unwrap_or(0);
                    min_api = min_api.min(api);
                }
            }
            false
        });
        let end_served: Vec<usize> = net
            .nodes
            .iter()
            .map(|n| n.members().iter().filter(|m| m.status.is_serving()).count())
            .collect();
        let states: Vec<&str> = net
            .nodes
            .iter()
            .map(|n| n.guard_report().state.as_str())
            .collect();
        net.heal();
        let start = net.now.0;
        let healed = net.run_until_pred(30_000, |net| {
            net.nodes.iter().all(|n| {
                n.members().len() == 7
                    && n.members().iter().all(|m| m.status == ServedStatus::Alive)
            })
        });
        let heal = if healed {
            format!("{} ms", net.now.0 - start)
        } else {
            "not within 30 s".to_string()
        };
        if mode == GuardMode::Enforce {
            assert!(healed, "did not heal to the truth with the guard on");
            assert!(min_api >= 1, "api served empty with the guard on");
            assert!(end_served.iter().all(|&s| s == 7));
        } else {
            assert_eq!(min_api, 0);
        }
        rows.push(format!(
            "guard {:<7} | min api instances on majority {} | min served per node {:?} | \
             served after 10 s cut {:?} | states {:?} | heal to truth {}",
            format!("{mode:?}"),
            min_api,
            min_served,
            end_served,
            states,
            heal
        ));
    }
    for r in rows {
        println!("{r}");
    }
}

/// A fresh net (profile `local`, default guard settings but `stable_after`), run until every
/// node sees every other alive, then 1 s more: a cluster that formed a second ago.
fn young_net(n: usize) -> TestNet {
    let mut net = TestNet::with_config(n, |_, c| {
        c.guard.stable_after = Duration::from_secs(2);
    });
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes.iter().all(|node| serves_everyone(node, n))
    });
    assert!(ok, "did not converge");
    net.run_for_ms(1_000);
    net
}

/// Members served `down` by `observers` while they were alive (nobody crashed in these
/// tests, so every `down` event is one), over the whole run.
fn live_served_down(net: &TestNet, observers: &[usize]) -> Vec<(Time, usize, String)> {
    net.down_log
        .iter()
        .filter(|(_, o, _)| observers.contains(o))
        .cloned()
        .collect()
}

#[test]
fn e2e_young_cluster_cut_one_off_it_never_serves_anyone_down() {
    let mut net = young_net(7);
    net.partition(&[6]);
    net.run_for_ms(8_000);
    assert_eq!(net.nodes[6].guard_report().state, GuardState::Isolated);
    assert!(serves_everyone(&net.nodes[6], 7));
    assert_eq!(
        live_served_down(&net, &[6]),
        vec![],
        "the cut-off node served down"
    );
    // The others see one node gone: removed like a crash.
    assert!((0..6).all(|v| status(&net, v, 6) == Some(ServedStatus::Down)));
    net.heal();
    // Back after 8 s: one flap, damped (not routed to) until back 30 s with its penalty
    // under the suppress limit (docs/gray-failures.md).
    assert!(net.run_until_pred(5_000, |net| (0..6)
        .all(|v| status(net, v, 6) == Some(ServedStatus::Damped))));
    assert!(
        net.run_until_pred(60_000, |net| (0..7).all(|v| (0..7).all(|i| status(
            net, v, i
        ) == Some(
            ServedStatus::Alive
        ))))
    );
}

#[test]
fn e2e_young_cluster_split_three_of_seven_neither_side_serves_down() {
    let mut net = young_net(7);
    net.partition(&[4, 5, 6]);
    net.run_for_ms(8_000);
    assert!(net.nodes.iter().all(|n| serves_everyone(n, 7)));
    assert_eq!(live_served_down(&net, &[0, 1, 2, 3, 4, 5, 6]), vec![]);
    assert!((0..4).all(|v| net.nodes[v].guard_report().state == GuardState::Frozen));
    assert!((4..7).all(|v| net.nodes[v].guard_report().state == GuardState::Isolated));
    net.heal();
    assert!(
        net.run_until_pred(5_000, |net| (0..7).all(|v| (0..7).all(|i| status(
            net, v, i
        ) == Some(
            ServedStatus::Alive
        ))))
    );
    assert_eq!(live_served_down(&net, &[0, 1, 2, 3, 4, 5, 6]), vec![]);
}

#[test]
fn e2e_one_way_cut_the_deaf_node_never_serves_anyone_down() {
    // Node 6 can send but receives nothing.
    let mut net = young_net(7);
    for j in 0..6 {
        net.blocked.insert((j, 6));
    }
    net.run_for_ms(8_000);
    let rep = net.nodes[6].guard_report();
    assert_eq!(rep.state, GuardState::Isolated, "{}", rep.reason);
    assert!(serves_everyone(&net.nodes[6], 7));
    assert_eq!(live_served_down(&net, &[6]), vec![]);
}

#[test]
fn e2e_mute_node_never_serves_anyone_down() {
    // Node 6 receives everything but nothing it sends gets out.
    let mut net = young_net(7);
    for j in 0..6 {
        net.blocked.insert((6, j));
    }
    net.run_for_ms(8_000);
    let rep = net.nodes[6].guard_report();
    assert_eq!(rep.state, GuardState::Isolated, "{}", rep.reason);
    assert!(serves_everyone(&net.nodes[6], 7));
    assert_eq!(live_served_down(&net, &[6]), vec![]);
}
