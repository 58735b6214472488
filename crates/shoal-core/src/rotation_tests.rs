//! Tests of rotation that evicts, through live nodes on the test network: a removed key is
//! retired for good (refused on datagrams, in a change and in a peer's ring), and a peer's
//! ring is adopted one checked jump at a time (a key holder's `State` at generation
//! `u64::MAX` takes nothing over, and a legitimate catch-up still wins afterwards).
//! Must not reach into a node's fields: only what a driver or a peer can do.

use crate::drops::DropReason;
use crate::identity_tests::signed;
use crate::keyops::{KeyMsg, KeyOpKind, MAX_KEYRING_JUMP};
use crate::keyring::{Key, Keyring, KEY_LEN};
use crate::testnet::{addr, TestNet};
use crate::trust_tests::{from_member, Outsider};
use crate::wire::Kind;
use crate::ServedStatus;

fn key(b: u8) -> Key {
    Key::from_bytes([b; KEY_LEN])
}

fn ring(generation: u64, keys: &[u8]) -> Keyring {
    Keyring::from_keys(keys.iter().map(|b| key(*b)).collect())
        .unwrap()
        .with_generation(generation)
}

/// Node 0 receives `msg` from node 1 (key material sealed to node 0's member key by node
/// 1's), sealed under `sealed_with`.
fn send(net: &mut TestNet, sealed_with: u8, msg: &KeyMsg, seed: u64) {
    let msg = &from_member(net, 1, 0, msg, seed as u8);
    send_bare(net, sealed_with, msg, seed);
}

/// Node 0 receives `msg` as it is from node 1's address, sealed under `sealed_with` only:
/// what a holder of that ring key alone can send.
fn send_bare(net: &mut TestNet, sealed_with: u8, msg: &KeyMsg, seed: u64) {
    let now = net.now;
    let mut o = Outsider::new(Some(sealed_with), addr(1), seed);
    let d = o.datagram(now, addr(0), Kind::Keys, &msg.encode());
    net.nodes[0].handle_datagram(now, addr(1), &d);
}

/// Installs `new`, makes it primary and removes key 1 on every node (from node 0).
fn rotate(net: &mut TestNet, new: u8) {
    for (op, k) in [
        (KeyOpKind::Install, new),
        (KeyOpKind::Use, new),
        (KeyOpKind::Remove, 1),
    ] {
        let now = net.now;
        let id = net.nodes[0].keys_change(now, op, key(k)).unwrap();
        net.flush(0);
        net.run_for_ms(300);
        assert!(net.nodes[0].keys_rollout(id).unwrap().done(), "{op:?}");
    }
}

#[test]
fn a_state_at_the_largest_generation_takes_nothing_over() {
    let mut net = signed(2);
    let gen0 = net.nodes[0].keyring().unwrap().generation();
    let before = net.nodes[0].keyring().unwrap().clone();
    // A key holder's ring at u64::MAX with its own primary: refused, counted.
    send(&mut net, 1, &KeyMsg::state(&ring(u64::MAX, &[9, 1])), 601);
    assert_eq!(net.nodes[0].keyring().unwrap(), &before);
    // Our keys at u64::MAX: the generation moves by at most MAX_KEYRING_JUMP.
    send(&mut net, 1, &KeyMsg::state(&ring(u64::MAX, &[1])), 602);
    let g = net.nodes[0].keyring().unwrap().generation();
    assert!(g <= gen0 + MAX_KEYRING_JUMP, "{g}");
    // A whole new ring one generation ahead (two changes: install and use): refused.
    send(&mut net, 1, &KeyMsg::state(&ring(g + 1, &[9, 1])), 603);
    assert_eq!(net.nodes[0].keyring().unwrap().primary(), &key(1));
    // A ring without the key it came sealed with: refused.
    send(&mut net, 1, &KeyMsg::state(&ring(g + 2, &[9])), 604);
    assert_eq!(net.nodes[0].keyring().unwrap().primary(), &key(1));
    assert_eq!(net.nodes[0].trust_stats().keyring_refused, 3);
    assert_eq!(net.nodes[0].trust_stats().keyring_catch_ups, 1);
    // A legitimate catch-up (one install, one generation ahead) still wins afterwards.
    send(&mut net, 1, &KeyMsg::state(&ring(g + 1, &[1, 7])), 605);
    let r = net.nodes[0].keyring().unwrap();
    assert_eq!((r.generation(), r.keys().len()), (g + 1, 2));
    assert!(r.contains(&key(7)) && r.primary() == &key(1));
    // And the operator's next change goes everywhere, as ever.
    let now = net.now;
    net.nodes[1]
        .keys_change(now, KeyOpKind::Install, key(8))
        .unwrap();
    net.flush(1);
    net.run_for_ms(300);
    assert!(net.nodes[0].keyring().unwrap().contains(&key(8)));
}

#[test]
fn a_removed_key_is_refused_from_every_source() {
    let mut net = signed(3);
    rotate(&mut net, 2);
    for n in &net.nodes {
        let r = n.keyring().unwrap();
        assert_eq!(r.keys(), &[key(2)], "{}", n.name());
        assert!(r.is_retired(&key(1)), "{}", n.name());
    }
    let gen = net.nodes[0].keyring().unwrap().generation();
    // A datagram sealed with the removed key: dropped under its own name, and it opens
    // nothing (no answer, no ring).
    let dropped = net.nodes[0].stats().dropped_retired_key;
    while net.nodes[0].poll_transmit().is_some() {}
    send(&mut net, 1, &KeyMsg::Hello { generation: 0 }, 611);
    assert_eq!(net.nodes[0].stats().dropped_retired_key, dropped + 1);
    assert!(
        net.nodes[0].poll_transmit().is_none(),
        "answered a retired key"
    );
    assert!(net.nodes[0]
        .drops()
        .recent()
        .iter()
        .any(|d| d.from == addr(1) && d.reason == DropReason::RetiredKey));
    // A change putting it back, sealed with the current key: refused (and answered so).
    let op = KeyMsg::Op {
        id: 1,
        kind: KeyOpKind::Install,
        key: *key(1).bytes(),
    };
    send(&mut net, 2, &op, 612);
    assert!(!net.nodes[0].keyring().unwrap().contains(&key(1)));
    // A peer's ring holding it, one generation ahead: refused.
    send(&mut net, 2, &KeyMsg::state(&ring(gen + 1, &[2, 1])), 613);
    assert!(!net.nodes[0].keyring().unwrap().contains(&key(1)));
    assert_eq!(net.nodes[0].trust_stats().keyring_refused, 2);
    // Nor by the operator on this node.
    let now = net.now;
    assert!(net.nodes[0]
        .keys_change(now, KeyOpKind::Install, key(1))
        .is_err());
    // The retired key is persisted with the ring the driver saves.
    let saved = net.nodes[1].take_keyring_change().unwrap();
    assert!(Keyring::from_text(&saved.to_text())
        .unwrap()
        .is_retired(&key(1)));
    // Nobody was ever served anything but alive.
    for n in &net.nodes {
        assert!(n.members().iter().all(|m| m.status == ServedStatus::Alive));
    }
}

#[test]
fn a_change_cannot_remove_the_key_it_came_sealed_with() {
    let mut net = signed(2);
    let now = net.now;
    net.nodes[0]
        .keys_change(now, KeyOpKind::Install, key(3))
        .unwrap();
    net.flush(0);
    net.run_for_ms(300);
    // Key 3 is accepted on node 0; a remove of it sealed with it is refused.
    let op = KeyMsg::Op {
        id: 2,
        kind: KeyOpKind::Remove,
        key: *key(3).bytes(),
    };
    send(&mut net, 3, &op, 621);
    assert!(net.nodes[0].keyring().unwrap().contains(&key(3)));
    assert_eq!(net.nodes[0].trust_stats().keyring_refused, 1);
    // Sealed with another key of the ring, it goes through.
    send(&mut net, 1, &op, 622);
    assert!(!net.nodes[0].keyring().unwrap().contains(&key(3)));
}

/// The review's finding: a holder of a ring key alone (a former member who kept one, anyone
/// handed the cluster key) could send `Op` and `State` and change every agent's keyring.
/// Key material is now taken only sealed to the agent's member key by the member at the
/// datagram's address: anything else is refused, counted and answered so.
#[test]
fn a_bare_ring_key_holder_changes_no_keyring() {
    let mut net = signed(2);
    let before = net.nodes[0].keyring().unwrap().clone();
    let install = KeyMsg::Op {
        id: 7,
        kind: KeyOpKind::Install,
        key: *key(5).bytes(),
    };
    let state = KeyMsg::state(&ring(before.generation() + 1, &[1, 5]));
    while net.nodes[0].poll_transmit().is_some() {}
    send_bare(&mut net, 1, &install, 631);
    send_bare(&mut net, 1, &state, 632);
    // Sealed to node 0's member key, but by a key not bound to the sender's name.
    let to = net.nodes[0].member_key().unwrap().seal;
    let other = crate::identity_tests::member_keys(9);
    for (i, m) in [&install, &state].into_iter().enumerate() {
        let sealed = crate::member_key::seal_to(&other, &to, [i as u8; 24], &m.encode());
        send_bare(&mut net, 1, &KeyMsg::Sealed { sealed }, 633 + i as u64);
    }
    assert_eq!(net.nodes[0].keyring().unwrap(), &before);
    assert_eq!(net.nodes[0].trust_stats().key_material_refused, 4);
    // The `Op`s were answered with the refusal.
    let mut acks = 0;
    while let Some(t) = net.nodes[0].poll_transmit() {
        let mut o = Outsider::new(Some(1), addr(0), 1);
        if let Ok((Kind::Keys, body)) = o.open(net.now, addr(0), &t.data) {
            if let Ok(KeyMsg::Ack { id: 7, error }) = KeyMsg::decode(&body) {
                assert!(error.contains("refused"), "{error}");
                acks += 1;
            }
        }
    }
    assert_eq!(acks, 2);
    // From the member bound to node 1's name, the same change is applied.
    send(&mut net, 1, &install, 640);
    assert!(net.nodes[0].keyring().unwrap().contains(&key(5)));
}

/// #22's "rotation that evicts": a holder of the old key who records every datagram of a
/// rotation must not learn the new key. Key material went under the cluster ring to a member
/// without a bound member key (here node 3, which has none, like a v0.1.0 agent): now it
/// goes only sealed to each member's own key, and node 3 gets nothing (counted).
#[test]
fn a_holder_of_the_old_key_recording_everything_never_learns_the_new_one() {
    let mut net = TestNet::with_setup(
        4,
        |_, _| {},
        |i, node| {
            node.set_trust(crate::trust_tests::keyed(1).unwrap())
                .unwrap();
            if i < 3 {
                node.set_member_keys(crate::identity_tests::member_keys(i), Vec::new())
                    .unwrap();
            }
        },
    );
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes.iter().all(|x| {
            x.members()
                .iter()
                .filter(|m| m.status == ServedStatus::Alive)
                .count()
                == 4
        }) && (0..3).all(|j| net.nodes[0].bound_key(&format!("n{j}")).is_some())
    });
    assert!(ok, "did not form");
    net.tap = Some(Vec::new());
    for (op, k) in [
        (KeyOpKind::Install, 2),
        (KeyOpKind::Use, 2),
        (KeyOpKind::Remove, 1),
    ] {
        let now = net.now;
        let id = net.nodes[0].keys_change(now, op, key(k)).unwrap();
        net.flush(0);
        net.run_for_ms(300);
        net.call(0, |n, now| n.keys_resend(now, id));
        net.run_for_ms(2_000);
        let r = net.nodes[0].keys_rollout(id).unwrap();
        // Every bound member confirmed; node 3 was never sent the change.
        assert_eq!(r.pending().collect::<Vec<_>>(), vec![addr(3)], "{op:?}");
    }
    for i in 0..3 {
        assert_eq!(net.nodes[i].keyring().unwrap().keys(), &[key(2)]);
    }
    assert!(net.nodes[0].trust_stats().key_material_withheld >= 3);
    let new = key(2);
    let tap = net.tap.take().unwrap();
    let mut opened = 0;
    for (from, to, d) in &tap {
        assert!(
            !d.windows(KEY_LEN).any(|w| w == new.bytes()),
            "the new key in clear"
        );
        let mut old = Outsider::new(Some(1), addr(*to), 900 + *from as u64);
        let Ok((_, body)) = old.open(net.now, addr(*from), d) else {
            continue;
        };
        opened += 1;
        assert!(
            !body.windows(KEY_LEN).any(|w| w == new.bytes()),
            "n{from} -> n{to}: the old key opens the new one"
        );
    }
    assert!(opened > 10, "the old key opened {opened} datagrams");
}

/// The review's finding: a sealed keyring change carries no freshness, so a key holder who
/// recorded a bound member's `use` could replay the same sealed message in a new envelope
/// (spoofing that member's address) and undo a later `use`. A change applied once is
/// acknowledged again, never re-applied.
#[test]
fn a_recorded_change_replayed_is_acknowledged_not_applied_again() {
    let mut net = signed(2);
    let op = |id, kind, k: u8| KeyMsg::Op {
        id,
        kind,
        key: *key(k).bytes(),
    };
    let install = from_member(&net, 1, 0, &op(40, KeyOpKind::Install, 3), 1);
    let use3 = from_member(&net, 1, 0, &op(41, KeyOpKind::Use, 3), 2);
    let use1 = from_member(&net, 1, 0, &op(42, KeyOpKind::Use, 1), 3);
    send_bare(&mut net, 1, &install, 641);
    send_bare(&mut net, 1, &use3, 642);
    assert_eq!(net.nodes[0].keyring().unwrap().primary(), &key(3));
    send_bare(&mut net, 3, &use1, 643);
    assert_eq!(net.nodes[0].keyring().unwrap().primary(), &key(1));
    // The recorded `use 3`, replayed in a fresh envelope (not a wire replay: a new session).
    while net.nodes[0].poll_transmit().is_some() {}
    send_bare(&mut net, 1, &use3, 644);
    assert_eq!(
        net.nodes[0].keyring().unwrap().primary(),
        &key(1),
        "a replayed change undid a later one"
    );
    // It is acknowledged (the sender's resends of a change it made stop), not refused.
    let acked = std::iter::from_fn(|| net.nodes[0].poll_transmit()).count();
    assert!(acked >= 1);
}
