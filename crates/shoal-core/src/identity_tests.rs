//! Tests of member keys through live nodes on the test network: a key holder speaks only for
//! itself (a forged leave or restart intent about another member is dropped and counted,
//! signed or not, and never served), bindings survive as the driver persists them, the
//! operator's forget lets a rebuilt host in, and key material travels sealed to each member.

use crate::keyops::{KeyMsg, KeyOpKind};
use crate::keyring::{Key, KEY_LEN};
use crate::member_key::{MemberKeys, SECRET_LEN};
use crate::meta::{MetaRecord, NodeMeta};
use crate::restart::{RestartIntent, MAX_GRACE};
use crate::sync::ShoalMsg;
use crate::testnet::{addr, TestNet};
use crate::trust_tests::{keyed, Outsider};
use crate::wire::Kind;
use crate::{ServedStatus, Time};
use std::sync::Arc;

pub(crate) fn member_keys(i: usize) -> MemberKeys {
    MemberKeys::from_secret(&[i as u8 + 1; SECRET_LEN])
}

/// `n` nodes sharing cluster key 1, each with its own member keys, formed.
pub(crate) fn signed(n: usize) -> TestNet {
    let mut net = TestNet::with_setup(
        n,
        |_, _| {},
        |i, node| {
            node.set_trust(keyed(1).unwrap()).unwrap();
            node.set_member_keys(member_keys(i), Vec::new()).unwrap();
        },
    );
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes.iter().all(|x| {
            x.members()
                .iter()
                .filter(|m| m.status == ServedStatus::Alive)
                .count()
                == n
                && (0..n).all(|j| x.bound_key(&format!("n{j}")).is_some())
        })
    });
    assert!(ok, "cluster did not form with every key bound");
    net
}

/// n1's record as a key holder (node 2's owner) rewrites it: leaving, or restarting for an
/// hour, with a generation 50 minutes ahead; unsigned, or signed with the forger's own key.
fn forgeries(net: &TestNet) -> Vec<MetaRecord> {
    let real = net.nodes[1].own_record().clone();
    let mut out = Vec::new();
    for restart in [false, true] {
        for sign in [false, true] {
            let mut r = real.clone();
            r.generation = net.now.0 + 50 * 60 * 1000;
            r.version = 1;
            r.ext.remove(crate::fields::record::SIGNATURE.number);
            r.ext.remove(crate::fields::record::MEMBER_KEY.number);
            if restart {
                r.set_restart(Some(RestartIntent::new(MAX_GRACE)));
            } else {
                r.leaving = true;
            }
            if sign {
                member_keys(2).sign_record(&mut r);
            }
            out.push(r);
        }
    }
    out
}

#[test]
fn a_key_holder_cannot_forge_another_members_leave_or_restart_intent() {
    let mut net = signed(3);
    let mut o = Outsider::new(Some(1), addr(2), 901);
    let forged = forgeries(&net);
    for r in &forged {
        // Pushed directly to n0, and gossiped through foca by n2 (a key holder) to everyone.
        let push = ShoalMsg::Push {
            records: vec![Arc::new(r.clone())],
        };
        let d = o.datagram(net.now, addr(0), Kind::Shoal, &push.encode());
        let now = net.now;
        net.nodes[0].handle_datagram(now, addr(2), &d);
        net.call(2, |n, _| n.gossip_record_for_test(&r.encode()));
    }
    net.run_for_ms(5_000);
    // n1 is alive and its own record is what everyone holds.
    for i in [0, 2] {
        let r = net.nodes[i].record_of("n1").unwrap();
        assert!(!r.leaving && r.restart().is_none(), "n{i} took a forgery");
    }
    // Then n1 crashes: a forged restart intent would have it served `restarting` for an
    // hour; it is a failure, served down within the usual detection time.
    net.crashed.insert(1);
    let ok = net.run_until_pred(20_000, |net| {
        [0, 2].iter().all(|&i| {
            net.nodes[i]
                .members()
                .iter()
                .any(|m| m.name == "n1" && m.status == ServedStatus::Down)
        })
    });
    assert!(ok, "n1 not served down after its crash");
    // Over the whole run: n1 was never served left nor restarting by anyone.
    let bad: Vec<_> = net
        .status_log
        .iter()
        .filter(|(_, _, name, st)| {
            name == "n1" && matches!(st, ServedStatus::Left | ServedStatus::Restarting)
        })
        .collect();
    assert!(bad.is_empty(), "n1 served {bad:?}");
    let s = net.nodes[0].stats();
    assert!(s.dropped_unsigned_record >= 2, "{s:?}");
    assert!(s.dropped_wrong_member_key >= 2, "{s:?}");
}

#[test]
fn the_owners_own_leave_and_restart_still_count() {
    let mut net = signed(3);
    net.call(1, |n, now| n.leave(now).unwrap());
    let ok = net.run_until_pred(5_000, |net| {
        net.nodes[0]
            .members()
            .iter()
            .any(|m| m.name == "n1" && m.status == ServedStatus::Left)
    });
    assert!(ok, "a signed leave by its owner is served left");
    let s = net.nodes[0].stats();
    assert_eq!(s.dropped_unsigned_record + s.dropped_wrong_member_key, 0);
}

#[test]
fn a_rebuilt_host_is_refused_until_the_operator_forgets_its_name() {
    let mut net = signed(3);
    let old = net.nodes[0].bound_key("n1").unwrap();
    // n1 rebuilt: a new key under the same name, a newer generation.
    let mut r = net.nodes[1].own_record().clone();
    r.generation += 10_000;
    r.version = 1;
    r.meta.tags.insert("rebuilt".into(), "yes".into());
    member_keys(7).sign_record(&mut r);
    let mut o = Outsider::new(Some(1), addr(1), 902);
    let push = |net: &mut TestNet, o: &mut Outsider| {
        let push = ShoalMsg::Push {
            records: vec![Arc::new(r.clone())],
        };
        let d = o.datagram(net.now, addr(0), Kind::Shoal, &push.encode());
        let now = net.now;
        net.nodes[0].handle_datagram(now, addr(1), &d);
    };
    push(&mut net, &mut o);
    assert!(!net.nodes[0]
        .record_of("n1")
        .unwrap()
        .meta
        .tags
        .contains_key("rebuilt"));
    assert_eq!(net.nodes[0].stats().dropped_wrong_member_key, 1);
    // The bindings were handed to the driver (n1's first signed record bound it).
    let persisted = net.nodes[0].take_bindings_change().unwrap();
    assert!(persisted.iter().any(|(n, k)| &**n == "n1" && *k == old));
    // The operator forgets n1 on n0: the next signed record binds the new key.
    assert_eq!(net.nodes[0].forget_member_key("n1"), Some(old));
    assert_eq!(net.nodes[0].forget_member_key("n0"), None, "own name");
    push(&mut net, &mut o);
    assert_eq!(
        net.nodes[0]
            .record_of("n1")
            .unwrap()
            .meta
            .tags
            .get("rebuilt"),
        Some(&"yes".to_string())
    );
    assert_eq!(net.nodes[0].bound_key("n1"), Some(member_keys(7).public()));
    // A restarted agent given the persisted table refuses the rebuilt key at once.
    let mut n = crate::Node::new(
        crate::testnet::config(5),
        1,
        NodeMeta::default(),
        5,
        Time(0),
    )
    .unwrap();
    n.set_member_keys(member_keys(5), persisted).unwrap();
    assert_eq!(n.bound_key("n1"), Some(old));
}

#[test]
fn key_material_travels_sealed_to_each_member() {
    let mut net = signed(3);
    net.tap = Some(Vec::new());
    let new = Key::from_bytes([42; KEY_LEN]);
    net.call(0, |n, now| {
        n.keys_change(now, KeyOpKind::Install, new.clone()).unwrap();
    });
    net.run_for_ms(2_000);
    for i in 1..3 {
        assert!(
            net.nodes[i].keyring().unwrap().keys().contains(&new),
            "n{i} did not install the new key"
        );
    }
    // Every keyring message that crossed the wire, opened with the shared key (what a
    // holder of the old key who recorded everything can do): none carries the new key.
    let mut seen = 0;
    for (k, (from, _to, d)) in net.tap.take().unwrap().into_iter().enumerate() {
        // A fresh party per datagram: the replay table of one would refuse reorderings.
        let mut o = Outsider::new(Some(1), addr(40), 903 + k as u64);
        let Ok((Kind::Keys, body)) = o.open(net.now, addr(from), &d) else {
            continue;
        };
        seen += 1;
        match KeyMsg::decode(&body).unwrap() {
            KeyMsg::Op { .. } | KeyMsg::State { .. } => panic!("key material in clear"),
            _ => {}
        }
        assert!(!body.windows(KEY_LEN).any(|w| w == [42; KEY_LEN]));
    }
    assert!(seen >= 2, "the rollout crossed the wire");
}
