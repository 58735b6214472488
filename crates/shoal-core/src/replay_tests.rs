//! Tests of replay protection and clocks through live nodes on the test network: a key
//! holder cannot silence another member through the replay table, a skewed or stepped clock
//! costs no membership, a previous session replayed after a restart is refused, and reach
//! answers replayed to another receiver are no evidence.

use crate::keyring::{Key, KEY_LEN};
use crate::sync::ShoalMsg;
use crate::testnet::{addr, TestNet};
use crate::trust_tests::{formed, keyed};
use crate::wire::{self, Kind, FLAG_SEALED};
use crate::{Node, NodeMeta, ServedStatus, Time};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

/// A datagram sealed under key `b` with a seal header of the caller's choosing: what a key
/// holder can send (it can write any session, counter and timestamp).
fn forge(b: u8, kind: Kind, body: &[u8], session: u64, counter: u64, ts: u32) -> Vec<u8> {
    let key = Key::from_bytes([b; KEY_LEN]);
    let mut out = Vec::new();
    wire::write_header(&mut out, "", kind);
    out[3] |= FLAG_SEALED;
    out.extend_from_slice(&key.id().0.to_be_bytes());
    out.extend_from_slice(&session.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    let ad_len = out.len();
    out.extend_from_slice(body);
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&session.to_be_bytes());
    n[8..16].copy_from_slice(&counter.to_be_bytes());
    let aead = XChaCha20Poly1305::new(key.bytes().into());
    let (ad, body) = out.split_at_mut(ad_len);
    let tag = aead
        .encrypt_in_place_detached(&XNonce::from(n), ad, body)
        .expect("seal");
    out.extend_from_slice(&tag);
    out
}

/// The session and counter in the seal header of a sealed datagram (in clear).
fn seal_of(d: &[u8]) -> (u64, u64) {
    let h = wire::header_len_of(d);
    let s = u64::from_be_bytes(d[h + 4..h + 12].try_into().unwrap());
    let c = u64::from_be_bytes(d[h + 12..h + 20].try_into().unwrap());
    (s, c)
}

/// Runs `ms` in steps of 100 ms and asserts after each that every node but `skip` serves
/// every member alive (the whole interval, not one sample), and that nobody was served down.
fn stays_whole(net: &mut TestNet, ms: u64, n: usize, what: &str) {
    let downs = net.down_log.len();
    for _ in 0..ms / 100 {
        net.run_for_ms(100);
        for v in 0..n {
            let alive = net.nodes[v]
                .members()
                .iter()
                .filter(|m| m.status == ServedStatus::Alive)
                .count();
            assert_eq!(
                alive,
                n,
                "{what}: n{v} at {:?}: {:?}",
                net.now,
                net.nodes[v].members()
            );
        }
    }
    assert_eq!(&net.down_log[downs..], &[], "{what}: members served down");
}

/// The finding: one sealed datagram per receiver carrying the victim's session and counter
/// 2^62 made every real datagram of the victim a replay. The replay state is now the
/// sender's (its source address): the forgery, from the attacker's own address, touches only
/// the attacker's.
#[test]
fn a_key_holder_cannot_silence_another_member() {
    let mut net = formed(3, |_| keyed(1));
    net.tap = Some(Vec::new());
    net.run_for_ms(1_000);
    let tap = net.tap.take().unwrap();
    let (victim, counter) = tap
        .iter()
        .rev()
        .find(|(from, _, _)| *from == 2)
        .map(|(_, _, d)| seal_of(d))
        .expect("n2 sends");
    let replays: Vec<u64> = (0..3)
        .map(|i| net.nodes[i].stats().dropped_replay)
        .collect();
    let attacker = std::net::SocketAddr::from(([127, 0, 0, 1], 29999));
    let ts = (net.now.as_millis() / 1000) as u32;
    let ping = ShoalMsg::Ping { nonce: 1 }.encode();
    for r in 0..2 {
        for c in [counter + 10, 1u64 << 62, u64::MAX - 1] {
            let d = forge(1, Kind::Shoal, &ping, victim, c, ts);
            let now = net.now;
            net.nodes[r].handle_datagram(now, attacker, &d);
        }
    }
    stays_whole(&mut net, 30_000, 3, "after the forgery");
    for (i, before) in replays.iter().enumerate().take(2) {
        assert_eq!(
            net.nodes[i].stats().dropped_replay,
            *before,
            "n{i} refused real datagrams as replays"
        );
    }
}

/// The finding: an agent whose wall clock is 2 minutes ahead never joined (every datagram
/// `stale`). Membership needs no clock agreement: it joins, stays, and the skew is counted.
#[test]
fn an_agent_with_a_skewed_clock_joins_and_stays() {
    let mut net = TestNet::with_setup(
        4,
        |_, _| {},
        |i, node| {
            node.set_trust(keyed(1).unwrap()).unwrap();
            // The test nodes' wall clock is their core clock; n3's is 2 minutes ahead.
            if i == 3 {
                node.set_wall_clock(Time::ZERO, 120_000);
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
        })
    });
    assert!(ok, "did not form: {:?}", net.nodes[0].members());
    stays_whole(&mut net, 30_000, 4, "skewed by 2 minutes");
    assert_eq!(net.nodes[0].stats().dropped_stale, 0);
}

/// The finding: a running agent whose clock steps by more than the window (a VM resumed, an
/// NTP step) was cut off and declared down. Both ways, by an hour: nothing changes.
#[test]
fn a_stepped_clock_costs_no_membership() {
    let mut net = formed(4, |_| keyed(1));
    net.call(3, |n, now| {
        n.set_wall_clock(now, now.as_millis() + 3_600_000)
    });
    stays_whole(&mut net, 20_000, 4, "n3 stepped an hour ahead");
    net.call(1, |n, now| n.set_wall_clock(now, 1));
    stays_whole(&mut net, 20_000, 4, "n1 stepped back to 1970");
    for i in 0..4 {
        assert_eq!(net.nodes[i].stats().dropped_stale, 0, "n{i}");
    }
}

/// Without clocks to tell old from new, a capture of a member's previous session (before it
/// restarted) is still refused: the receiver knows the sender's current session started
/// later. Checked long after the capture (minutes: what the timestamp used to rule out).
#[test]
fn a_previous_session_replayed_after_a_restart_is_refused() {
    let mut net = formed(3, |_| keyed(1));
    net.tap = Some(Vec::new());
    net.run_for_ms(3_000);
    let captured: Vec<(usize, usize, Vec<u8>)> = net
        .tap
        .take()
        .unwrap()
        .into_iter()
        .filter(|(from, to, _)| *from == 2 && *to == 0)
        .collect();
    assert!(!captured.is_empty());
    net.run_for_ms(120_000);
    // n2 runs on for two minutes (past `replay_window` since the capture), then restarts:
    // same name and address, a newer generation, a new session.
    net.crashed.insert(2);
    net.run_for_ms(500);
    let now = net.now;
    let mut node = Node::new(crate::testnet::config(2), 2, NodeMeta::default(), 77, now).unwrap();
    node.set_trust(keyed(1).unwrap()).unwrap();
    net.nodes[2] = node;
    net.crashed.remove(&2);
    net.call(2, |n, now| n.start(now));
    // Well past the old window and any idle timeout of the old session.
    net.run_for_ms(15 * 60_000);
    let before = net.nodes[0].members();
    let s = net.nodes[0].stats();
    let refused_before = s.dropped_replay + s.dropped_stale;
    let now = net.now;
    for (_, _, d) in &captured {
        net.nodes[0].handle_datagram(now, addr(2), d);
    }
    let s = net.nodes[0].stats();
    assert_eq!(
        s.dropped_replay + s.dropped_stale - refused_before,
        captured.len() as u64,
        "old-session datagrams accepted"
    );
    net.run_for_ms(2_000);
    let after = net.nodes[0].members();
    let key = |v: &[crate::MemberView]| {
        v.iter()
            .map(|m| (m.name.clone(), m.status, m.generation))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&before), key(&after));
}

/// The review's finding: a key holder that also spoofs the victim's source address (UDP
/// lets it) wrote into the replay state of the victim's address: with the victim's session
/// and a huge counter, every real datagram of the victim was then a replay. Between members
/// that know each other's keys, the victim's datagrams carry a pair tag the spoofer cannot
/// write, and only those move the victim's window.
#[test]
fn a_spoofed_source_address_cannot_silence_a_member() {
    let mut net = crate::identity_tests::signed(3);
    net.tap = Some(Vec::new());
    net.run_for_ms(1_000);
    let tap = net.tap.take().unwrap();
    let (victim, counter) = tap
        .iter()
        .rev()
        .find(|(from, _, _)| *from == 2)
        .map(|(_, _, d)| seal_of(d))
        .expect("n2 sends");
    let replays: Vec<u64> = (0..3)
        .map(|i| net.nodes[i].stats().dropped_replay)
        .collect();
    let ts = (net.now.as_millis() / 1000) as u32;
    let ping = ShoalMsg::Ping { nonce: 1 }.encode();
    for r in 0..2 {
        for (i, c) in [counter + 10, counter + 3_000, 1u64 << 62, u64::MAX - 1]
            .into_iter()
            .enumerate()
        {
            let d = forge(1, Kind::Shoal, &ping, victim, c, ts + i as u32 * 1000);
            let now = net.now;
            net.nodes[r].handle_datagram(now, addr(2), &d);
        }
    }
    stays_whole(&mut net, 30_000, 3, "after the spoofed forgery");
    for (i, before) in replays.iter().enumerate().take(2) {
        assert_eq!(
            net.nodes[i].stats().dropped_replay,
            *before,
            "n{i} refused real datagrams of n2 as replays"
        );
    }
}
