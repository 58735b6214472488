//! Tests of the operator's cluster-wide commands through live nodes on the test network: the
//! cluster-wide thaw reaches every active agent sealed, leaves the same audit trail as a local
//! thaw (the guard's reason and its transition event), is taken at most once per interval
//! (repeats and replays change nothing more), and is refused in plaintext when the receiver
//! has a keyring.

use crate::operator::{OperatorMsg, THAW_MIN_INTERVAL};
use crate::testnet::{addr, config, TestNet};
use crate::trust::{Plaintext, TrustConfig};
use crate::trust_tests::{keyed, Outsider};
use crate::wire::Kind;
use crate::{GuardState, Node, NodeMeta, ServedStatus, Time, TruthState};
use std::time::Duration;

/// 8 keyed nodes with the guard's short timings; 3 crash and the 5 survivors freeze.
fn frozen_net() -> TestNet {
    let mut net = TestNet::with_config_and_trust(
        8,
        |_, c| {
            c.guard.stable_after = Duration::from_secs(2);
            c.guard.window = Duration::from_secs(20);
        },
        |_| keyed(1),
    );
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes.iter().all(|n| n.guard_report().baseline == 7)
    });
    assert!(ok, "no stable baseline");
    for i in 5..8 {
        net.crashed.insert(i);
    }
    // Frozen, holding the crashed nodes SWIM has declared down (a zone lost for good: what
    // an operator thaws).
    let ok = net.run_until_pred(30_000, |net| {
        (0..5).all(|v| {
            net.nodes[v].guard_report().state == GuardState::Frozen
                && (5..8).all(|i| {
                    net.nodes[v]
                        .member(&format!("n{i}"))
                        .is_some_and(|m| m.truth == Some(TruthState::Down))
                })
        })
    });
    assert!(ok, "the survivors did not freeze holding the crashed nodes");
    net
}

/// The guard transitions of node `i` logged from position `since` of the log on.
fn transitions(net: &TestNet, i: usize, since: usize) -> Vec<(GuardState, GuardState, String)> {
    net.guard_log[since..]
        .iter()
        .filter(|(_, n, _)| *n == i)
        .map(|(_, _, t)| (t.from, t.to, t.report.reason.clone()))
        .collect()
}

#[test]
fn a_cluster_wide_thaw_reaches_every_agent_with_the_local_audit_trail() {
    let mut net = frozen_net();
    let t0 = net.guard_log.len();
    let mut told = 0;
    net.call(0, |n, now| {
        told = n.guard_thaw_cluster(now, "api (uid 0 pid 7)")
    });
    assert_eq!(told, 4, "the four other survivors are told");
    let ok = net.run_until_pred(2_000, |net| {
        (0..5).all(|v| net.nodes[v].guard_report().state == GuardState::Normal)
    });
    assert!(ok, "not every survivor thawed");
    // The same audit trail as a local thaw: the guard's reason and one transition event
    // each, naming where the operator asked.
    let local = "thawed by operator api (uid 0 pid 7) (cluster-wide)";
    assert_eq!(net.nodes[0].guard_report().reason, local);
    assert_eq!(
        transitions(&net, 0, t0),
        vec![(GuardState::Frozen, GuardState::Normal, local.to_string())]
    );
    for v in 1..5 {
        let reason = thawed_from_n0();
        assert_eq!(net.nodes[v].guard_report().reason, reason, "n{v}");
        assert_eq!(
            transitions(&net, v, t0),
            vec![(GuardState::Frozen, GuardState::Normal, reason.to_string())],
            "n{v}"
        );
    }
    // The held members drain: the crashed nodes end down everywhere.
    let ok = net.run_until_pred(5_000, |net| {
        (0..5).all(|v| {
            (5..8).all(|i| {
                net.nodes[v].member(&format!("n{i}")).map(|m| m.status) == Some(ServedStatus::Down)
            })
        })
    });
    assert!(ok, "held members were not released after the thaw");
}

#[test]
fn a_repeated_or_replayed_thaw_changes_nothing_more_within_the_interval() {
    let mut net = frozen_net();
    net.tap = Some(Vec::new());
    net.call(0, |n, now| {
        n.guard_thaw_cluster(now, "api");
    });
    let sent_to_1: Vec<Vec<u8>> = net
        .tap
        .take()
        .unwrap()
        .into_iter()
        .filter(|(from, to, _)| (*from, *to) == (0, 1))
        .map(|(_, _, d)| d)
        .collect();
    assert!(!sent_to_1.is_empty());
    let ok = net.run_until_pred(2_000, |net| {
        net.nodes[1].guard_report().state == GuardState::Normal
    });
    assert!(ok, "n1 did not thaw");
    // The operator freezes n1 again by hand; neither a replay of the captured thaw nor a
    // second cluster-wide thaw within the interval undoes that.
    net.call(1, |n, now| n.guard_freeze(now, "api (by hand)"));
    assert_eq!(net.nodes[1].guard_report().state, GuardState::Frozen);
    let since = net.guard_log.len();
    let replays = net.nodes[1].stats().dropped_replay;
    for d in &sent_to_1 {
        let now = net.now;
        net.nodes[1].handle_datagram(now, addr(0), d);
        net.flush(1);
    }
    assert_eq!(
        net.nodes[1].stats().dropped_replay,
        replays + sent_to_1.len() as u64
    );
    net.call(0, |n, now| {
        n.guard_thaw_cluster(now, "api (again)");
    });
    net.run_for_ms(THAW_MIN_INTERVAL.as_millis() as u64 / 2);
    assert_eq!(net.nodes[1].stats().operator_thaws_ignored, 1);
    assert_eq!(
        transitions(&net, 1, since),
        vec![],
        "n1 changed state during the interval"
    );
    assert_eq!(net.nodes[1].guard_report().state, GuardState::Frozen);
    // After the interval, a thaw is taken again.
    net.run_for_ms(THAW_MIN_INTERVAL.as_millis() as u64 / 2);
    net.call(0, |n, now| {
        n.guard_thaw_cluster(now, "api (later)");
    });
    let ok = net.run_until_pred(2_000, |net| {
        net.nodes[1].guard_report().state == GuardState::Normal
    });
    assert!(ok, "a thaw after the interval was not taken");
    assert_eq!(net.nodes[1].guard_report().reason, thawed_from_n0());
}

/// A node with the cluster key that accepts plaintext (moving a cluster to encryption): a
/// plaintext thaw is refused and counted, one sealed under another key too; one sealed
/// under the cluster key is taken.
#[test]
fn a_thaw_is_taken_only_sealed_under_the_cluster_key() {
    let mut cfg = config(1);
    cfg.seeds.clear();
    let mut node = Node::new(cfg, 1, NodeMeta::default(), 3, Time(0)).unwrap();
    node.set_trust(TrustConfig {
        plaintext: Plaintext::Accept,
        ..keyed(1).unwrap()
    })
    .unwrap();
    node.start(Time(0));
    let now = Time(1_000);
    node.guard_freeze(now, "api");
    assert_eq!(node.guard_report().state, GuardState::Frozen);
    let thaw = OperatorMsg::Thaw { from: "n0".into() }.encode();
    let stats = node.stats().clone();
    let mut plain = Outsider::new(None, addr(0), 11);
    let d = plain.datagram(now, addr(1), Kind::Operator, &thaw);
    node.handle_datagram(now, addr(0), &d);
    let mut stranger = Outsider::new(Some(9), addr(0), 12);
    let d = stranger.datagram(now, addr(1), Kind::Operator, &thaw);
    node.handle_datagram(now, addr(0), &d);
    assert_eq!(node.guard_report().state, GuardState::Frozen);
    assert_eq!(node.stats().dropped_plaintext, stats.dropped_plaintext + 1);
    assert_eq!(node.stats().dropped_auth, stats.dropped_auth + 1);
    let mut holder = Outsider::new(Some(1), addr(0), 13);
    let d = holder.datagram(now, addr(1), Kind::Operator, &thaw);
    node.handle_datagram(now, addr(0), &d);
    assert_eq!(node.guard_report().state, GuardState::Normal);
    assert_eq!(node.guard_report().reason, thawed_from_n0());
}

/// The reason a cluster-wide thaw sent by n0 leaves: the node the message names and the
/// address it came from.
fn thawed_from_n0() -> String {
    format!(
        "thawed by operator at n0 (cluster-wide, sent from {})",
        crate::testnet::addr(0)
    )
}

/// The review's finding: operator commands were taken from any holder of a ring key. With
/// member keys, a command is taken only from the member bound to its source address (its
/// pair tag verified): a bare ring key holder, even writing from a member's address, thaws
/// nothing (counted); the member itself still does.
#[test]
fn a_bare_ring_key_holder_sends_no_operator_command() {
    let mut net = crate::identity_tests::signed(3);
    net.call(0, |n, now| n.guard_freeze(now, "api"));
    assert_eq!(net.nodes[0].guard_report().state, GuardState::Frozen);
    let now = net.now;
    let thaw = OperatorMsg::Thaw { from: "n1".into() }.encode();
    let leave = OperatorMsg::ForceLeave { name: "n2".into() }.encode();
    let mut holder = Outsider::new(Some(1), addr(1), 21);
    for body in [&thaw, &leave] {
        let d = holder.datagram(now, addr(0), Kind::Operator, body);
        net.nodes[0].handle_datagram(now, addr(1), &d);
    }
    assert_eq!(net.nodes[0].guard_report().state, GuardState::Frozen);
    assert_eq!(net.nodes[0].trust_stats().operator_refused, 2);
    net.call(1, |n, now| {
        n.guard_thaw_cluster(now, "api");
    });
    let ok = net.run_until_pred(2_000, |net| {
        net.nodes[0].guard_report().state != GuardState::Frozen
    });
    assert!(ok, "the member's own thaw was not taken");
    assert_eq!(net.nodes[0].trust_stats().operator_refused, 2);
}
