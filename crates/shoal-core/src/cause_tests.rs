//! Tests of the causes recorded with every served transition, end to end through the
//! deterministic test network (`TestNet`): a crash (suspected, confirmed, down), a refutation,
//! a guard hold and its release, a graceful leave and a force-leave. The sentence and the
//! bounds alone are tested in `cause`.

use crate::cause::{CauseKind, Transition};
use crate::testnet::TestNet;
use crate::{GuardState, NodeConfig, ServedStatus};
use std::time::Duration;

fn fast_guard(cfg: &mut NodeConfig) {
    cfg.guard.stable_after = Duration::from_secs(2);
    cfg.guard.window = Duration::from_secs(20);
}

fn formed(n: usize) -> TestNet {
    let mut net = TestNet::with_config(n, |_, c| fast_guard(c));
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes
            .iter()
            .all(|n| n.guard_report().baseline == net.nodes.len() - 1)
    });
    assert!(ok, "the cluster did not form");
    net
}

fn status(net: &TestNet, viewer: usize, i: usize) -> Option<ServedStatus> {
    net.nodes[viewer].member(&format!("n{i}")).map(|m| m.status)
}

/// The last transition of `n{i}` seen by `viewer`.
fn last(net: &TestNet, viewer: usize, i: usize) -> Transition {
    net.nodes[viewer]
        .history(&format!("n{i}"))
        .pop()
        .expect("no transition recorded")
}

#[test]
fn members_that_only_joined_cost_no_entry() {
    let net = formed(6);
    for (v, node) in net.nodes.iter().enumerate() {
        assert!(
            node.causes().is_empty(),
            "n{v} keeps {} entries",
            node.causes().len()
        );
        let m = node.member("n1").unwrap();
        assert_eq!(m.cause.map(|c| c.reason), Some(CauseKind::Joined));
        let h = node.history("n1");
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].from, h[0].to), (None, ServedStatus::Alive));
    }
}

#[test]
fn a_crash_is_explained_by_the_failed_probes_their_confirmations_and_the_last_ack() {
    let mut net = formed(6);
    let crash_at = net.now;
    net.crashed.insert(5);
    let ok = net.run_until_pred(30_000, |net| {
        (0..5).all(|v| status(net, v, 5) == Some(ServedStatus::Down))
    });
    assert!(ok, "the crash was not seen");
    let mut timed_out_here = 0;
    for v in 0..5 {
        let h = net.nodes[v].history("n5");
        let down = h.last().unwrap();
        assert_eq!(down.to, ServedStatus::Down);
        let c = &down.cause;
        assert!(
            matches!(
                c.reason,
                CauseKind::SuspicionTimeout | CauseKind::DownNotice
            ),
            "{c:?}"
        );
        if c.reason == CauseKind::SuspicionTimeout {
            timed_out_here += 1;
            assert!(
                h.iter().any(
                    |t| t.to == ServedStatus::Suspect && t.cause.reason == CauseKind::Suspected
                ),
                "a node that timed the suspicion out saw it suspect first: {h:?}"
            );
        }
        // Last heard before the crash, never after.
        let heard = c.last_heard_ms.expect("n5 was heard from");
        assert!(heard <= crash_at.as_millis() + 2, "{heard} > {crash_at:?}");
        assert!(!c.refuted);
        assert!(c.text.contains("no refutation"), "{}", c.text);
        assert!(
            c.guard
                .as_deref()
                .unwrap_or("")
                .contains("removed, under the limit"),
            "{c:?}"
        );
        // The member's cause in the served view is the same.
        assert_eq!(net.nodes[v].member("n5").unwrap().cause.as_ref(), Some(c));
    }
    assert!(timed_out_here >= 1, "no node declared the crash itself");
    // Someone's own probe failed, and the accusations of others confirmed it somewhere.
    let all: Vec<Transition> = (0..5).flat_map(|v| net.nodes[v].history("n5")).collect();
    assert!(all.iter().any(|t| t.cause.probe_failed), "{all:?}");
    let confirmed = all
        .iter()
        .filter(|t| t.cause.confirmations > 0)
        .collect::<Vec<_>>();
    assert!(!confirmed.is_empty(), "no confirmation recorded: {all:?}");
    for t in confirmed {
        assert_eq!(t.cause.accusers.len(), t.cause.confirmations as usize);
        for a in &t.cause.accusers {
            assert!(["n0", "n1", "n2", "n3", "n4"].contains(&a.as_str()), "{a}");
        }
        assert!(t.cause.text.contains("confirmation"), "{}", t.cause.text);
    }
}

#[test]
fn a_refuted_suspicion_says_so() {
    let mut net = formed(5);
    // n4 cannot send for a while: its peers suspect it; once it can, it refutes.
    for j in 0..4 {
        net.blocked.insert((4, j));
    }
    let ok = net.run_until_pred(10_000, |net| {
        (0..4).any(|v| status(net, v, 4) == Some(ServedStatus::Suspect))
    });
    assert!(ok, "n4 was never suspected");
    net.heal();
    let ok = net.run_until_pred(10_000, |net| {
        (0..4).any(|v| {
            let h = net.nodes[v].history("n4");
            h.iter().any(|t| t.cause.reason == CauseKind::Refuted)
        })
    });
    assert!(ok, "no refutation recorded");
    for v in 0..4 {
        let h = net.nodes[v].history("n4");
        if let Some(t) = h.iter().find(|t| t.cause.reason == CauseKind::Refuted) {
            assert_eq!(
                (t.from, t.to),
                (Some(ServedStatus::Suspect), ServedStatus::Alive)
            );
            assert!(t.cause.refuted);
            assert!(
                t.cause.text.starts_with("refuted the suspicion"),
                "{}",
                t.cause.text
            );
        }
    }
}

#[test]
fn a_guard_hold_names_the_episode_and_the_thaw_names_the_operator() {
    // 3 of 8 crash: over 40 % of the survivors' baselines, so they freeze holding them.
    let mut net = formed(8);
    for i in 5..8 {
        net.crashed.insert(i);
    }
    let ok = net.run_until_pred(20_000, |net| {
        net.nodes[0].guard_report().state == GuardState::Frozen
            && (5..8).all(|i| status(net, 0, i) == Some(ServedStatus::Held))
    });
    assert!(ok, "n0 did not freeze holding the crashed nodes");
    for i in 5..8 {
        let t = last(&net, 0, i);
        assert_eq!(t.cause.reason, CauseKind::Held);
        let g = t.cause.guard.as_deref().unwrap_or("");
        assert!(g.starts_with("held while frozen"), "{g}");
        assert!(
            t.cause.text.starts_with("down by failure"),
            "{}",
            t.cause.text
        );
        assert_eq!(
            net.nodes[0].member(&format!("n{i}")).unwrap().cause,
            Some(t.cause)
        );
    }
    net.call(0, |n, now| n.guard_thaw(now, "alice"));
    let ok = net.run_until_pred(10_000, |net| {
        (5..8).all(|i| status(net, 0, i) == Some(ServedStatus::Down))
    });
    assert!(ok, "the thaw did not release them");
    for i in 5..8 {
        let t = last(&net, 0, i);
        assert_eq!(
            (t.from, t.cause.reason),
            (Some(ServedStatus::Held), CauseKind::Released)
        );
        let g = t.cause.guard.as_deref().unwrap_or("");
        assert!(g.contains("thawed by operator alice"), "{g}");
    }
}

#[test]
fn a_node_cut_off_says_it_holds_everyone_because_it_is_isolated() {
    let mut net = formed(6);
    net.cut.insert(5);
    let ok = net.run_until_pred(20_000, |net| {
        net.nodes[5].guard_report().state == GuardState::Isolated
            && (0..5).all(|i| status(net, 5, i) == Some(ServedStatus::Held))
    });
    assert!(ok, "n5 did not isolate itself holding its peers");
    for i in 0..5 {
        let t = last(&net, 5, i);
        assert_eq!(t.cause.reason, CauseKind::Held);
        let g = t.cause.guard.unwrap_or_default();
        assert!(g.starts_with("held while isolated ("), "{g}");
    }
}

#[test]
fn a_graceful_leave_is_no_failure() {
    let mut net = formed(4);
    net.call(3, |n, now| n.leave(now).unwrap());
    let ok = net.run_until_pred(5_000, |net| {
        (0..3).all(|v| status(net, v, 3) == Some(ServedStatus::Left))
    });
    assert!(ok, "the leave was not seen");
    for v in 0..3 {
        let t = last(&net, v, 3);
        assert_eq!(t.cause.reason, CauseKind::Left);
        assert_eq!(t.cause.text, "left gracefully");
        assert_eq!(t.cause.confirmations, 0);
    }
}

#[test]
fn a_force_leave_names_the_operator_everywhere() {
    // A held member (frozen), removed by an operator of n0; the others hear it from n0.
    let mut net = formed(8);
    for i in 5..8 {
        net.crashed.insert(i);
    }
    let ok = net.run_until_pred(20_000, |net| {
        (0..5).all(|v| (5..8).all(|i| status(net, v, i) == Some(ServedStatus::Held)))
    });
    assert!(ok, "the crashed nodes were not held everywhere");
    net.call(0, |n, now| {
        n.force_leave(now, "n7").unwrap();
    });
    let ok = net.run_until_pred(2_000, |net| {
        (0..5).all(|v| status(net, v, 7) == Some(ServedStatus::Down))
    });
    assert!(ok, "the force-leave was not applied");
    let here = last(&net, 0, 7);
    assert_eq!(here.cause.reason, CauseKind::ForceLeft);
    assert_eq!(here.cause.by.as_deref(), Some("an operator on this agent"));
    for v in 1..5 {
        let t = last(&net, v, 7);
        assert_eq!(t.cause.reason, CauseKind::ForceLeft);
        assert!(
            t.cause
                .text
                .contains("through the agent at 127.0.0.1:20000"),
            "{}",
            t.cause.text
        );
    }
    // The others crashed at the same time are still held: the note was about n7 only.
    assert_eq!(status(&net, 1, 6), Some(ServedStatus::Held));
}
