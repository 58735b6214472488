//! Tests of the trust layer through live nodes on the test network: who can join, what a
//! party without the key can change (nothing), replays, the checks made at decode with a key,
//! key rotation, and the amplification bound of every message kind.

use crate::keyops::{Confirm, KeyOpKind};
use crate::keyring::{Key, Keyring, KEY_LEN};
use crate::meta::{MetaRecord, NodeMeta};
use crate::node::AMPLIFICATION;
use crate::sync::{DigestEntry, IntroEntry, NameFilter, ShoalMsg};
use crate::testnet::{addr, config, TestNet};
use crate::trust::{Trust, TrustConfig};
use crate::wire::{self, Kind};
use crate::{MemberView, Node, ServedStatus, Time};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

fn key(b: u8) -> Key {
    Key::from_bytes([b; KEY_LEN])
}

pub(crate) fn keyed(b: u8) -> Option<TrustConfig> {
    Some(TrustConfig {
        keyring: Some(Keyring::new(key(b))),
        ..TrustConfig::default()
    })
}

pub(crate) fn plain(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    wire::write_header(&mut v, "", kind);
    v.extend_from_slice(body);
    v
}

/// What a party outside the node sends: plaintext (`None`) or sealed under `key`.
pub(crate) struct Outsider {
    trust: Trust,
    addr: SocketAddr,
}

impl Outsider {
    pub(crate) fn new(key: Option<u8>, addr: SocketAddr, seed: u64) -> Self {
        let cfg = match key {
            Some(b) => keyed(b).unwrap_or_default(),
            None => TrustConfig::default(),
        };
        Outsider {
            trust: Trust::new(cfg, seed, crate::hash::HashSeed::of_node(seed)),
            addr,
        }
    }

    pub(crate) fn datagram(
        &mut self,
        now: Time,
        to: SocketAddr,
        kind: Kind,
        body: &[u8],
    ) -> Vec<u8> {
        self.trust.seal(now, to, plain(kind, body), 0)
    }

    /// Opens a datagram sealed by `from` under a key this party holds.
    pub(crate) fn open(
        &mut self,
        now: Time,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(Kind, Vec<u8>), crate::trust::TrustDrop> {
        self.trust
            .open(now, from, data, "")
            .map(|(k, b)| (k, b.into_owned()))
    }
}

/// `msg` as member `from` (its member keys) sends key material to node `to`: sealed to `to`'s
/// member key (`KeyMsg::Sealed`). Other messages are returned as they are.
pub(crate) fn from_member(
    net: &TestNet,
    from: usize,
    to: usize,
    msg: &crate::keyops::KeyMsg,
    nonce: u8,
) -> crate::keyops::KeyMsg {
    use crate::keyops::KeyMsg;
    if !matches!(msg, KeyMsg::Op { .. } | KeyMsg::State { .. }) {
        return msg.clone();
    }
    let to_key = net.nodes[to].member_key().expect("member keys").seal;
    let keys = crate::identity_tests::member_keys(from);
    KeyMsg::Sealed {
        sealed: crate::member_key::seal_to(&keys, &to_key, [nonce; 24], &msg.encode()),
    }
}

fn views(n: &Node) -> Vec<(String, ServedStatus, u64, BTreeMap<String, String>)> {
    n.members()
        .into_iter()
        .map(|m: MemberView| (m.name, m.status, m.meta_version, m.tags))
        .collect()
}

fn record(name: &str, i: usize, generation: u64, version: u64, leaving: bool) -> Arc<MetaRecord> {
    let mut meta = NodeMeta::default();
    meta.tags.insert("owner".into(), "attacker".into());
    Arc::new(MetaRecord {
        name: Arc::from(name),
        addr: addr(i),
        generation,
        version,
        leaving,
        meta,
        ext: Default::default(),
    })
}

pub(crate) fn formed(n: usize, trust: impl Fn(usize) -> Option<TrustConfig>) -> TestNet {
    let mut net = TestNet::with_trust(n, trust);
    // Formed: every node serves every node alive, with its current record.
    let ok = net.run_until_pred(10_000, |net| {
        let own: Vec<u64> = net.nodes.iter().map(|x| x.own_record().version).collect();
        net.nodes.iter().all(|x| {
            let members = x.members();
            members.len() == n
                && members.iter().all(|m| {
                    m.status == ServedStatus::Alive
                        && name_index(&m.name).is_some_and(|i| own.get(i) == Some(&m.meta_version))
                })
        })
    });
    assert!(ok, "cluster did not form");
    net
}

fn name_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

#[test]
fn encrypted_cluster_forms_and_every_datagram_is_sealed() {
    let mut net = TestNet::with_trust(4, |_| keyed(1));
    net.tap = Some(Vec::new());
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes.iter().all(|x| {
            x.members()
                .iter()
                .filter(|m| m.status == ServedStatus::Alive)
                .count()
                == 4
        })
    });
    assert!(ok);
    let tap = net.tap.take().unwrap();
    assert!(!tap.is_empty());
    for (_, _, d) in &tap {
        assert_ne!(d[3] & wire::FLAG_SEALED, 0, "a plaintext datagram was sent");
        assert!(d.len() <= wire::MAX_DATAGRAM);
    }
    let s = net.nodes[0].stats();
    assert_eq!(s.dropped_auth + s.dropped_replay + s.dropped_plaintext, 0);
}

#[test]
fn wrong_key_wrong_label_or_no_key_never_joins() {
    // 0..3 hold key 1; 3 holds key 2; 4 is insecure; 5 holds key 1 under another label.
    let mut net = TestNet::with_config_and_trust(
        6,
        |i, c| {
            if i == 5 {
                c.cluster_label = "other".into();
            }
        },
        |i| match i {
            3 => keyed(2),
            4 => None,
            _ => keyed(1),
        },
    );
    let insiders = ["n0", "n1", "n2", "n5"];
    // Over the whole interval: nobody outside ever appears in an insider's view, and no
    // insider in an outsider's.
    for _ in 0..500 {
        net.run_for_ms(10);
        for i in 0..3 {
            for m in net.nodes[i].members() {
                assert!(
                    ["n0", "n1", "n2"].contains(&m.name.as_str()),
                    "{} in n{i}",
                    m.name
                );
            }
        }
        for i in 3..6 {
            for m in net.nodes[i].members() {
                assert_eq!(m.name, format!("n{i}"), "n{i} sees {}", m.name);
            }
        }
    }
    assert!(insiders[..3]
        .iter()
        .all(|n| net.nodes[0].served_status(n) == Some(ServedStatus::Alive)));
    let s = net.nodes[0].stats();
    assert!(s.dropped_auth > 0, "{s:?}");
    assert!(s.dropped_plaintext > 0, "{s:?}");
    assert!(s.dropped_wrong_label > 0, "{s:?}");
    // Each outsider is named with its reason (what the agent logs and `/v1/stats` lists).
    use crate::drops::DropReason;
    let drops = net.nodes[0].drops().recent();
    let find = |i: usize, r: DropReason| {
        drops
            .iter()
            .find(|d| d.from == addr(i) && d.reason == r)
            .unwrap_or_else(|| panic!("no {r} from n{i} in {drops:?}"))
    };
    let k = key(2).id();
    assert_eq!(
        find(3, DropReason::WrongKey).detail,
        format!("sealed with key {k}, not in our keyring")
    );
    assert!(find(4, DropReason::Plaintext).count > 0);
    assert_eq!(
        find(5, DropReason::WrongLabel).detail,
        "their label \"other\""
    );
    assert!(drops
        .iter()
        .all(|d| [3, 4, 5].contains(&(d.from.port() - 20000))));
}

/// A member whose clock jumps an hour ahead: its datagrams are still accepted (membership
/// needs no clock agreement), and both sides of the misconfiguration name the other with the
/// difference, for the log and the metrics.
#[test]
fn a_skewed_clock_is_named_on_both_sides() {
    use crate::drops::DropReason;
    let mut net = formed(4, |_| keyed(1));
    // The test nodes' wall clock is their core clock (no `set_wall_clock`).
    net.call(3, |n, now| {
        n.set_wall_clock(now, now.as_millis() + 3_600_000)
    });
    net.run_for_ms(3_000);
    let hour = |k: i64| (3_599_000..=3_601_000).contains(&k.abs());
    for v in 0..3 {
        let skews = net.nodes[v].clock_skews();
        assert!(
            skews
                .iter()
                .any(|(a, k)| *a == addr(3) && *k > 0 && hour(*k)),
            "n{v}: {skews:?}"
        );
        assert!(net.nodes[v].trust_stats().skewed > 0);
        assert!(hour(net.nodes[v].trust_stats().max_skew_ms as i64));
    }
    let skews = net.nodes[3].clock_skews();
    assert!(
        skews.iter().any(|(_, k)| *k < 0 && hour(*k)),
        "n3: {skews:?}"
    );
    for v in 0..4 {
        assert!(
            !net.nodes[v]
                .drops()
                .recent()
                .iter()
                .any(|d| d.reason == DropReason::ClockSkew),
            "n{v} dropped datagrams for the clock"
        );
    }
}

#[test]
fn forgeries_without_the_key_change_nothing_and_are_counted() {
    let mut net = formed(3, |_| keyed(1));
    let target = addr(0);
    let before = views(&net.nodes[0]);
    let n1 = net.nodes[1].own_record().clone();
    let now = net.now;
    let mut sent = 0u64;
    for outsider_key in [None, Some(9)] {
        let mut o = Outsider::new(outsider_key, addr(40), 77);
        let mut forged: Vec<Vec<u8>> = Vec::new();
        // A leave for a live node, and newer metadata for it.
        for leaving in [true, false] {
            let push = ShoalMsg::Push {
                records: vec![record("n1", 1, n1.generation, n1.version + 5, leaving)],
            };
            forged.push(o.datagram(now, target, Kind::Shoal, &push.encode()));
        }
        // Introductions of many fake members.
        let members: Vec<IntroEntry> = (0..40)
            .map(|k| IntroEntry {
                name: Arc::from(format!("fake-{k}")),
                addr: SocketAddr::from(([10, 9, 0, k as u8], 7946)),
                generation: 1,
            })
            .collect();
        forged.push(o.datagram(
            now,
            target,
            Kind::Shoal,
            &ShoalMsg::Intro { members }.encode(),
        ));
        // A keyring change.
        let op = crate::keyops::KeyMsg::Op {
            id: 1,
            kind: KeyOpKind::Install,
            key: [5; KEY_LEN],
        };
        forged.push(o.datagram(now, target, Kind::Keys, &op.encode()));
        // SWIM: a node claiming n1's address with a huge generation, and a fake member
        // announcing itself, both built by a real node without the key.
        for (name, i, generation) in [("evil", 1, 1u64 << 40), ("fake", 41, 1)] {
            let mut cfg = config(i);
            cfg.name = name.into();
            cfg.seeds = vec![target];
            let mut evil = Node::new(cfg, generation, NodeMeta::default(), 5, now).unwrap();
            if let Some(k) = outsider_key {
                evil.set_trust(keyed(k).unwrap()).unwrap();
            }
            evil.start(now);
            while let Some(t) = evil.poll_transmit() {
                forged.push(t.data);
            }
        }
        for d in &forged {
            net.nodes[0].handle_datagram(now, o.addr, d);
        }
        sent += forged.len() as u64;
    }
    net.run_for_ms(3_000);
    assert_eq!(views(&net.nodes[0]), before);
    for i in 1..3 {
        assert_eq!(
            net.nodes[i].members().len(),
            3,
            "n{i} learned a fake member"
        );
    }
    let s = net.nodes[0].stats();
    assert_eq!(s.dropped_plaintext + s.dropped_auth, sent, "{s:?}");
    assert_eq!(net.nodes[0].keyring().unwrap().keys().len(), 1);
}

#[test]
fn with_the_key_records_about_the_receiver_and_from_the_future_are_refused() {
    let mut net = formed(3, |_| keyed(1));
    let now = net.now;
    let own = net.nodes[0].own_record().clone();
    let n1 = net.nodes[1].own_record().clone();
    let mut o = Outsider::new(Some(1), addr(1), 4242);
    let far = 1u64 << 50;
    let msgs = [
        // A record about the receiver itself.
        ShoalMsg::Push {
            records: vec![record("n0", 0, own.generation, own.version + 9, true)],
        },
        // A generation far in the future, and a version far in the future.
        ShoalMsg::Push {
            records: vec![record("n1", 1, far, 1, false)],
        },
        ShoalMsg::Push {
            records: vec![record("n1", 1, n1.generation, 1 << 40, false)],
        },
        ShoalMsg::Intro {
            members: vec![IntroEntry {
                name: Arc::from("n9"),
                addr: addr(9),
                generation: far,
            }],
        },
    ];
    let before = views(&net.nodes[0]);
    for m in &msgs {
        let d = o.datagram(now, addr(0), Kind::Shoal, &m.encode());
        net.nodes[0].handle_datagram(now, addr(1), &d);
    }
    // SWIM: an identity claiming n1's address with a far-future generation.
    let mut cfg = config(1);
    cfg.name = "evil".into();
    cfg.seeds = vec![addr(0)];
    let mut evil = Node::new(cfg, far, NodeMeta::default(), 3, now).unwrap();
    evil.set_trust(keyed(1).unwrap()).unwrap();
    evil.start(now);
    let decode_before = net.nodes[0].stats().dropped_decode;
    while let Some(t) = evil.poll_transmit() {
        net.nodes[0].handle_datagram(now, addr(1), &t.data);
    }
    net.run_for_ms(2_000);
    // Nothing changed but n0's own version (the refutation below).
    let mut after = views(&net.nodes[0]);
    for (v, b) in after.iter_mut().zip(&before) {
        if v.0 == "n0" {
            v.2 = b.2;
        }
    }
    assert_eq!(after, before);
    // The record about n0 is refuted: n0's own, unchanged but for a stamp above it.
    let mine = net.nodes[0].own_record();
    assert!(!mine.leaving && mine.meta == own.meta, "{mine:?}");
    assert!(mine.stamp() > (own.generation, own.version + 9));
    let s = net.nodes[0].stats();
    assert_eq!(s.records_refuted, 1, "{s:?}");
    assert_eq!(s.dropped_refused, 4, "{s:?}");
    assert!(s.dropped_decode > decode_before, "{s:?}");
}

#[test]
fn replayed_captures_change_nothing() {
    let mut net = formed(3, |_| keyed(1));
    net.tap = Some(Vec::new());
    // Everything n2 says while alive with its first metadata...
    net.run_for_ms(2_000);
    // ...then it changes its metadata and leaves.
    net.call(2, |n, now| {
        n.set_tags(now, &[("v".to_string(), "2".to_string())].into(), &[])
            .unwrap()
    });
    net.run_for_ms(1_000);
    net.call(2, |n, now| n.leave(now).unwrap());
    net.run_for_ms(2_000);
    let captured = net.tap.take().unwrap();
    net.crashed.insert(2);
    net.run_for_ms(1_000);
    let before: Vec<_> = (0..2).map(|i| views(&net.nodes[i])).collect();
    assert_eq!(net.nodes[0].served_status("n2"), Some(ServedStatus::Left));
    let replays_before: u64 = (0..2).map(|i| net.nodes[i].stats().dropped_replay).sum();
    // Replay everything to its receiver, in order.
    let now = net.now;
    for (from, to, d) in &captured {
        if *to < 2 {
            net.nodes[*to].handle_datagram(now, addr(*from), d);
        }
    }
    net.run_for_ms(3_000);
    for (i, b) in before.iter().enumerate() {
        assert_eq!(&views(&net.nodes[i]), b, "n{i} changed");
    }
    let replays: u64 = (0..2).map(|i| net.nodes[i].stats().dropped_replay).sum();
    let to_them = captured.iter().filter(|(_, to, _)| *to < 2).count() as u64;
    assert_eq!(replays - replays_before, to_them);
    // Minutes later, the same captures are still replays (no clock needed to tell).
    net.run_for_ms(125_000);
    let now = net.now;
    let before = net.nodes[0].stats().dropped_replay;
    for (from, to, d) in captured
        .iter()
        .filter(|(from, to, _)| *to == 0 && *from == 1)
        .take(10)
    {
        net.nodes[*to].handle_datagram(now, addr(*from), d);
    }
    assert_eq!(net.nodes[0].stats().dropped_replay - before, 10);
}

#[test]
fn every_message_kind_answers_a_stranger_within_the_amplification_bound() {
    let mut net = formed(6, |_| keyed(1));
    // Give every node sizeable metadata, so that records are worth asking for.
    for i in 0..6 {
        net.call(i, |n, now| {
            let tags: BTreeMap<String, String> = (0..20)
                .map(|k| (format!("tag-{k}"), "x".repeat(30)))
                .collect();
            n.set_tags(now, &tags, &[]).unwrap()
        });
    }
    net.run_for_ms(5_000);
    let stranger = addr(50);
    let names: Vec<Arc<str>> = (0..6).map(|i| Arc::from(format!("n{i}"))).collect();
    let mut o = Outsider::new(Some(1), stranger, 999);
    let mut cases: Vec<(&str, Kind, Vec<u8>)> = vec![
        (
            "digest",
            Kind::Shoal,
            ShoalMsg::Digest {
                fingerprint: 1,
                count: 1,
                entries: names
                    .iter()
                    .map(|n| DigestEntry {
                        name: n.clone(),
                        generation: 0,
                        version: 0,
                    })
                    .collect(),
                replies: 2,
            }
            .encode(),
        ),
        (
            "want",
            Kind::Shoal,
            ShoalMsg::Want {
                names: names.clone(),
            }
            .encode(),
        ),
        (
            "members",
            Kind::Shoal,
            ShoalMsg::Members {
                part: 0,
                parts: 1,
                filter: NameFilter::for_names(1, 64),
            }
            .encode(),
        ),
        (
            "intro",
            Kind::Shoal,
            ShoalMsg::Intro {
                members: vec![IntroEntry {
                    name: Arc::from("x1"),
                    addr: addr(60),
                    generation: 1,
                }],
            }
            .encode(),
        ),
        (
            "push",
            Kind::Shoal,
            ShoalMsg::Push {
                records: vec![record("x2", 61, 1, 1, false)],
            }
            .encode(),
        ),
        (
            "reach ping",
            Kind::Shoal,
            ShoalMsg::Ping { nonce: u64::MAX }.encode(),
        ),
        (
            "fleet have",
            Kind::Shoal,
            ShoalMsg::Fleet(crate::fleet::FleetMsg::Have {
                fingerprint: 1,
                count: 1,
                ids: Some(vec![]),
                replies: 2,
            })
            .encode(),
        ),
        (
            "fleet query",
            Kind::Shoal,
            ShoalMsg::Fleet(crate::fleet::FleetMsg::Query(crate::fleet::Query {
                id: 77,
                ltime: 0,
                origin: "x3".into(),
                name: "q".into(),
                payload: vec![],
                filter: Default::default(),
                timeout_ms: 1000,
            }))
            .encode(),
        ),
        (
            "operator",
            Kind::Operator,
            crate::operator::OperatorMsg::ForceLeave { name: "n5".into() }.encode(),
        ),
        (
            "keys",
            Kind::Keys,
            crate::keyops::KeyMsg::Op {
                id: 3,
                kind: KeyOpKind::Install,
                key: [8; KEY_LEN],
            }
            .encode(),
        ),
    ];
    // SWIM: a key holder's announce (padded, as every datagram to a stranger is).
    let mut cfg = config(50);
    cfg.seeds = vec![addr(0)];
    cfg.name = "joiner".into();
    let now = net.now;
    let mut joiner = Node::new(cfg, 1, NodeMeta::default(), 8, now).unwrap();
    joiner.set_trust(keyed(1).unwrap()).unwrap();
    joiner.start(now);
    let announce = joiner.poll_transmit().unwrap().data;
    let mut sealed: Vec<(&str, Vec<u8>)> = cases
        .drain(..)
        .map(|(name, kind, body)| (name, o.datagram(now, addr(0), kind, &body)))
        .collect();
    sealed.push(("swim announce", announce));
    for (name, d) in sealed {
        // Drain what is queued, then measure this datagram's answer alone.
        while net.nodes[0].poll_transmit().is_some() {}
        net.nodes[0].handle_datagram(now, stranger, &d);
        let mut out = 0;
        while let Some(t) = net.nodes[0].poll_transmit() {
            if t.dst == stranger {
                out += t.data.len();
            }
        }
        assert!(
            out <= AMPLIFICATION * d.len(),
            "{name}: {out} bytes out for {} in",
            d.len()
        );
        // A reach check's pong is the size of its ping: a node that forgot the pinger (a
        // healing partition) still answers it.
        if name == "swim announce" || name == "reach ping" {
            assert!(out > 0, "{name}: still gets its answer");
        }
    }
    assert!(net.nodes[0].stats().answers_capped > 0);
    // A member asking the same gets its answer in full.
    let mut member = Outsider::new(Some(1), addr(1), 1001);
    let want = ShoalMsg::Want { names };
    let d = member.datagram(now, addr(0), Kind::Shoal, &want.encode());
    while net.nodes[0].poll_transmit().is_some() {}
    net.nodes[0].handle_datagram(now, addr(1), &d);
    let mut out = 0;
    while let Some(t) = net.nodes[0].poll_transmit() {
        if t.dst == addr(1) {
            out += t.data.len();
        }
    }
    assert!(
        out > AMPLIFICATION * d.len(),
        "member answered with {out} bytes"
    );
}

#[test]
fn key_rotation_spreads_and_an_old_key_node_still_gets_in() {
    let mut net = crate::identity_tests::signed(4);
    let k2 = key(2);
    let watch = |net: &mut TestNet, ms: u64| {
        // Nobody is ever served anything but alive during a rotation.
        for _ in 0..ms / 10 {
            net.run_for_ms(10);
            for n in &net.nodes {
                for m in n.members() {
                    assert_eq!(m.status, ServedStatus::Alive, "{} in {}", m.name, n.name());
                }
            }
        }
    };
    let id = {
        let now = net.now;
        let id = net.nodes[0]
            .keys_change(now, KeyOpKind::Install, k2.clone())
            .unwrap();
        net.flush(0);
        id
    };
    watch(&mut net, 500);
    let r = net.nodes[0].keys_rollout(id).unwrap();
    assert!(r.done(), "{:?}", r.report());
    assert!(r.report().iter().all(|(_, c)| *c == Confirm::Confirmed));
    for n in &net.nodes {
        assert!(n.keyring().unwrap().contains(&k2));
    }
    let now = net.now;
    let id = net.nodes[1]
        .keys_change(now, KeyOpKind::Use, k2.clone())
        .unwrap();
    net.flush(1);
    watch(&mut net, 500);
    assert!(net.nodes[1].keys_rollout(id).unwrap().done());
    for n in &net.nodes {
        assert_eq!(n.keyring().unwrap().primary(), &k2);
    }
    // The primary cannot be removed.
    let now = net.now;
    assert!(net.nodes[2]
        .keys_change(now, KeyOpKind::Remove, k2.clone())
        .is_err());
    // A node that only has the old key joins during the transition.
    let mut cfg = config(4);
    cfg.seeds = vec![addr(0)];
    let mut late = Node::new(cfg, 1, NodeMeta::default(), 44, now).unwrap();
    late.set_trust(keyed(1).unwrap()).unwrap();
    late.set_member_keys(crate::identity_tests::member_keys(4), Vec::new())
        .unwrap();
    net.nodes.push(late);
    net.call(4, |n, now| n.start(now));
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes.iter().all(|x| {
            x.members()
                .iter()
                .filter(|m| m.status == ServedStatus::Alive)
                .count()
                == 5
        })
    });
    assert!(ok, "the node with only the old key did not get in");
    // Each change was persisted once per node (the driver reads it).
    assert!(net.nodes[3].take_keyring_change().is_some());
    assert!(net.nodes[3].take_keyring_change().is_none());
}

#[test]
fn reach_pings_are_answered_sealed_or_plaintext() {
    // Without a key the seal is not counted against a stranger's budget: a plaintext ping
    // (smaller than a seal) from an address the node forgot still gets its pong.
    for (trust, key) in [(None, None), (keyed(1), Some(1))] {
        let mut net = formed(3, |_| trust.clone());
        let now = net.now;
        let stranger = addr(40);
        let mut o = Outsider::new(key, stranger, 77);
        for (from, nonce) in [(stranger, 7u64), (addr(1), 8)] {
            o.addr = from;
            let d = o.datagram(
                now,
                addr(0),
                Kind::Shoal,
                &ShoalMsg::Ping { nonce }.encode(),
            );
            while net.nodes[0].poll_transmit().is_some() {}
            net.nodes[0].handle_datagram(now, o.addr, &d);
            let mut pongs = 0;
            while let Some(t) = net.nodes[0].poll_transmit() {
                if t.dst != from {
                    continue;
                }
                let (kind, body) = o.trust.open(now, addr(0), &t.data, "").expect("opens");
                if kind == Kind::Keys {
                    // The keyring catch-up's hello to a key holder first heard from.
                    assert!(matches!(
                        crate::keyops::KeyMsg::decode(&body),
                        Ok(crate::keyops::KeyMsg::Hello { .. })
                    ));
                    continue;
                }
                assert_eq!(kind, Kind::Shoal);
                assert_eq!(ShoalMsg::decode(&body), Ok(ShoalMsg::Pong { nonce }));
                pongs += 1;
            }
            assert_eq!(pongs, 1, "key {key:?}, from {from}: one pong");
        }
    }
}

#[test]
fn a_keyring_is_adopted_only_newer_and_only_from_a_key_holder() {
    use crate::keyops::KeyMsg;
    let mut net = crate::identity_tests::signed(2);
    let now = net.now;
    let from = addr(1);
    let send = |net: &mut TestNet, key: u8, msg: &KeyMsg, seed: u64| {
        let msg = from_member(net, 1, 0, msg, seed as u8);
        let mut o = Outsider::new(Some(key), from, seed);
        let d = o.datagram(net.now, addr(0), Kind::Keys, &msg.encode());
        net.nodes[0].handle_datagram(now, from, &d);
    };
    let ring = |gen: u64, keys: &[u8]| {
        Keyring::from_keys(keys.iter().map(|b| key(*b)).collect())
            .unwrap()
            .with_generation(gen)
    };
    let gen0 = net.nodes[0].keyring().unwrap().generation();
    // Sealed under a key we do not hold: dropped, whatever it claims.
    send(&mut net, 9, &KeyMsg::state(&ring(gen0 + 10, &[9])), 501);
    assert_eq!(net.nodes[0].keyring().unwrap().primary(), &key(1));
    // Not newer: ignored.
    send(&mut net, 1, &KeyMsg::state(&ring(gen0, &[9, 1])), 502);
    assert_eq!(net.nodes[0].keyring().unwrap().primary(), &key(1));
    // Newer, from a key holder: adopted with its generation, and persisted by the driver.
    send(&mut net, 1, &KeyMsg::state(&ring(gen0 + 2, &[9, 1])), 503);
    let r = net.nodes[0].keyring().unwrap().clone();
    assert_eq!(r.primary(), &key(9));
    assert_eq!(r.generation(), gen0 + 2);
    assert!(net.nodes[0].take_keyring_change().is_some());
    // An older ring afterwards changes nothing.
    send(&mut net, 1, &KeyMsg::state(&ring(gen0 + 1, &[1])), 504);
    assert_eq!(net.nodes[0].keyring().unwrap(), &r);
    assert_eq!(net.nodes[0].trust_stats().keyring_catch_ups, 1);
}

/// Item 6 of #22: `Intro` added up to 256 members a datagram with no total bound. A key
/// holder introducing thousands of made-up members fills the table up to `max_members` and
/// no further; the rest are refused and counted, and real members stay served.
#[test]
fn introductions_past_the_member_bound_are_refused_and_counted() {
    let mut net = formed(3, |_| keyed(1));
    net.call(0, |n, _| n.set_max_members(50));
    let mut evil = Outsider::new(Some(1), SocketAddr::from(([127, 0, 0, 1], 29998)), 7);
    let budget = wire::MAX_DATAGRAM - wire::overhead("") - 8;
    let fake: Vec<IntroEntry> = (0..2000u32)
        .map(|i| IntroEntry {
            name: Arc::from(format!("fake-{i}")),
            addr: SocketAddr::from(([10, 9, (i / 256) as u8, (i % 256) as u8], 7946)),
            generation: 1,
        })
        .collect();
    let msgs = crate::sync::pack_intro(fake, budget, 1000);
    assert!(msgs.len() > 20);
    for m in &msgs {
        let now = net.now;
        let d = evil.datagram(now, addr(0), Kind::Shoal, &m.encode());
        net.nodes[0].handle_datagram(now, evil.addr, &d);
        net.flush(0);
    }
    net.run_for_ms(5_000);
    let held = net.nodes[0].members().len();
    // Itself and at most 50 others.
    assert!(held <= 51, "{held} members held");
    assert!(net.nodes[0].stats().members_refused >= 1900);
    for m in ["n1", "n2"] {
        assert_eq!(
            net.nodes[0].served_status(m),
            Some(ServedStatus::Alive),
            "{m}"
        );
    }
}

/// A leftover of #22's review: an insecure agent took a cluster-wide thaw from anyone. It
/// cannot be sealed without a key; it is now taken only from an active member's address.
#[test]
fn an_insecure_node_takes_operator_commands_only_from_members() {
    use crate::operator::OperatorMsg;
    let mut net = formed(3, |_| None);
    let thaw = OperatorMsg::Thaw {
        from: "ops-1".into(),
    }
    .encode();
    let d = plain(Kind::Operator, &thaw);
    let stranger = SocketAddr::from(([127, 0, 0, 1], 29997));
    let ignored = |net: &TestNet| net.nodes[0].stats().operator_thaws_ignored;
    let before = ignored(&net);
    let now = net.now;
    net.nodes[0].handle_datagram(now, stranger, &d);
    assert_eq!(ignored(&net), before + 1, "a stranger's thaw was taken");
    net.nodes[0].handle_datagram(now, addr(1), &d);
    assert_eq!(ignored(&net), before + 1, "a member's thaw was not taken");
}
