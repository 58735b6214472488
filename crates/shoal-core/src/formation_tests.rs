//! Formation through the node (#24): the bulk member transfer after joining and its paging,
//! the answer budget that keeps a seed from being overloaded, and the size of every datagram
//! and transfer at 100,000 members. Test-only; the state machines are in `core::formation`.

use crate::formation::ANSWER_MSGS_PER_SEC;
use crate::identity::MAX_NAME_LEN;
use crate::sync::{NameFilter, ShoalMsg};
use crate::wire::{self, Kind, MAX_DATAGRAM, MAX_LABEL_LEN};
use crate::{MetaRecord, Node, NodeConfig, NodeId, NodeMeta, Profile, Time};
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Generations are start times in ms: ours, and members started before it.
const GENERATION: u64 = 1_800_000_000_000;

fn v6(i: usize) -> SocketAddr {
    let ip = Ipv6Addr::new(
        0xfd00,
        0xffff,
        0xffff,
        0xffff,
        0xffff,
        0xffff,
        (i >> 16) as u16,
        i as u16,
    );
    SocketAddr::from((ip, 65535))
}

/// A name of the longest valid length, unique per `i`.
fn long_name(i: usize) -> String {
    let head = format!("host-{i:07}.");
    format!("{head}{}", "r".repeat(MAX_NAME_LEN - head.len()))
}

fn config(name: &str, addr: SocketAddr, seeds: Vec<SocketAddr>) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        advertise: addr,
        // The longest label: the most envelope overhead.
        cluster_label: "l".repeat(MAX_LABEL_LEN),
        timings: Profile::Lan.timings(),
        seeds,
        guard: Default::default(),
        track_suspects: true,
        outlier: Default::default(),
        fleet: Default::default(),
    }
}

/// `n` members with the longest names, IPv6 addresses and recent generations; the first `big`
/// carry a record near the size limit (tags), the others an empty one.
fn members(n: usize, big: usize) -> Vec<(NodeId, Arc<MetaRecord>)> {
    let mut fat = NodeMeta::default();
    for k in 0..3 {
        fat.tags.insert(format!("key-{k}"), "v".repeat(250));
    }
    (0..n)
        .map(|i| {
            let name = long_name(i);
            let generation = GENERATION - 1 - i as u64;
            let rec = MetaRecord {
                name: Arc::from(name.as_str()),
                addr: v6(i),
                generation,
                version: u64::from(u32::MAX),
                leaving: false,
                meta: if i < big {
                    fat.clone()
                } else {
                    NodeMeta::default()
                },
                ext: Default::default(),
            };
            (NodeId::new(&name, v6(i), generation), Arc::new(rec))
        })
        .collect()
}

fn shoal_datagram(label: &str, msg: &ShoalMsg) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::write_header(&mut buf, label, Kind::Shoal);
    buf.extend_from_slice(&msg.encode());
    assert!(
        buf.len() <= MAX_DATAGRAM,
        "a request of {} bytes",
        buf.len()
    );
    buf
}

/// Every datagram the node has queued: at most `MAX_DATAGRAM` bytes each. Returns them.
fn drain(node: &mut Node) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        assert!(
            t.data.len() <= MAX_DATAGRAM,
            "{} bytes to {}",
            t.data.len(),
            t.dst
        );
        out.push((t.dst, t.data));
    }
    out
}

fn intros(data: &[u8], label: &str) -> Option<usize> {
    let body = &data[wire::header_len(label)..];
    match ShoalMsg::decode(body) {
        Ok(ShoalMsg::Intro { members }) => Some(members.len()),
        _ => None,
    }
}

/// Item 5 of #24: no datagram over `MAX_DATAGRAM` (1,400 bytes, far under 64 KB) at 100,000
/// members, in the worst case we can build: the longest names and label, IPv6 addresses,
/// records near their size limit, a peer asking for everything at once.
#[test]
fn every_datagram_stays_bounded_at_100000_members() {
    let n = 100_000;
    let all = members(n, 2_000);
    let me = config("answerer", v6(n + 1), vec![v6(0)]);
    let label = me.cluster_label.clone();
    let mut node = Node::new(me, GENERATION, NodeMeta::default(), 7, Time(0)).unwrap();
    node.adopt_members(Time(0), &all).unwrap();
    node.start(Time(0));
    drain(&mut node);
    // A member that knows nothing asks for everything: one shard, an empty filter.
    let asker = v6(1);
    let everything = ShoalMsg::Members {
        part: 0,
        parts: 1,
        filter: NameFilter::for_names(1, 8),
    };
    node.handle_datagram(Time(10), asker, &shoal_datagram(&label, &everything));
    let answers = drain(&mut node);
    let sent: usize = answers.iter().filter_map(|(_, d)| intros(d, &label)).sum();
    assert!(
        (1..=3).contains(&answers.len()),
        "{} answers",
        answers.len()
    );
    assert!(sent >= 3 * 10, "{sent} members in the answers");
    // Records: a want of as many names as fit a datagram, all of them large records, draws
    // one datagram of them (not one per few records: no amplification).
    let names: Vec<Arc<str>> = all[..17].iter().map(|(id, _)| id.name().clone()).collect();
    let want = ShoalMsg::Want { names };
    node.handle_datagram(Time(20), asker, &shoal_datagram(&label, &want));
    let pushes = drain(&mut node);
    assert_eq!(pushes.len(), 1, "{} pushes", pushes.len());
    // The periodic exchange at this size (digest slice, sharded member filter: the first
    // round is 10 s in), foca's probes and gossip: 12 s of timers.
    let mut now = Time(20);
    let mut seen = 0;
    for _ in 0..2_000 {
        let Some(at) = node.poll_timeout() else { break };
        if at.0 > 12_000 {
            break;
        }
        now = at.max(now);
        node.handle_timeout(now);
        seen += drain(&mut node).len();
    }
    assert!(seen > 0, "the node sent nothing");
    assert!(
        node.stats().member_sync_rounds > 0,
        "a sharded member filter went out"
    );
    assert_eq!(
        node.stats().tx_oversized,
        0,
        "a message did not fit a datagram"
    );
}

/// A seed asked by a thousand joiners (members it knows) within a second answers at most
/// its budget.
#[test]
fn a_seed_answers_a_bounded_amount_per_second() {
    let all = members(3_000, 0);
    let me = config("seed", v6(9_000), vec![]);
    let label = me.cluster_label.clone();
    let mut node = Node::new(me, GENERATION, NodeMeta::default(), 3, Time(0)).unwrap();
    node.adopt_members(Time(0), &all).unwrap();
    node.start(Time(0));
    drain(&mut node);
    let ask = ShoalMsg::Members {
        part: 0,
        parts: 1,
        filter: NameFilter::for_names(1, 8),
    };
    let data = shoal_datagram(&label, &ask);
    let mut intro_msgs = 0;
    for j in 0..1_000u64 {
        node.handle_datagram(Time(1_000 + j), v6(j as usize), &data);
        intro_msgs += drain(&mut node)
            .iter()
            .filter(|(_, d)| intros(d, &label).is_some())
            .count();
    }
    assert_eq!(intro_msgs as u32, ANSWER_MSGS_PER_SEC);
    assert!(node.stats().member_pulls_unanswered > 900);
    // The next second, answers again.
    node.handle_datagram(Time(2_000), v6(2_500), &data);
    assert!(drain(&mut node)
        .iter()
        .any(|(_, d)| intros(d, &label).is_some()));
}

/// A node joining a 2,000-member cluster through one peer learns the whole member list in
/// bulk within seconds (paged: a few datagrams per request), not one gossip round at a time.
/// Without the bulk transfer (`Pull::start` a no-op) it knew 92 of 2,001 after 20 s (a feed
/// per announce and one filter every 10 s).
#[test]
fn a_joiner_learns_the_member_list_in_bulk_and_paged() {
    let n = 2_000;
    let all = members(n, 0);
    let a_addr = v6(50_000);
    let b_addr = v6(50_001);
    let cfg = config("peer-a", a_addr, vec![]);
    let label = cfg.cluster_label.clone();
    let mut a = Node::new(cfg, GENERATION, NodeMeta::default(), 1, Time(0)).unwrap();
    a.adopt_members(Time(0), &all).unwrap();
    a.start(Time(0));
    drain(&mut a);
    let mut b = Node::new(
        config("joiner", b_addr, vec![a_addr]),
        GENERATION,
        NodeMeta::default(),
        2,
        Time(0),
    )
    .unwrap();
    b.start(Time(0));
    // Everything the joiner sends reaches A (as if every member forwarded to it); A's answers
    // to the joiner reach it, 1 ms later; what A sends elsewhere is dropped.
    let mut now = Time(0);
    let mut intro_datagrams = 0;
    let mut learned_at = None;
    for _ in 0..100_000 {
        for (dst, d) in drain(&mut b) {
            let _ = dst;
            a.handle_datagram(now, b_addr, &d);
        }
        for (dst, d) in drain(&mut a) {
            if dst == b_addr {
                intro_datagrams += usize::from(intros(&d, &label).is_some());
                b.handle_datagram(now, a_addr, &d);
            }
        }
        if learned_at.is_none() && b.known_peers().len() > n {
            learned_at = Some(now);
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Time(now.0 + 1));
        now = Time(next.0.max(now.0 + 1));
        if now.0 > 20_000 {
            break;
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    let at = learned_at.unwrap_or_else(|| {
        panic!(
            "after 20 s the joiner knew {} of {} members",
            b.known_peers().len(),
            n + 1
        )
    });
    assert!(at.0 <= 10_000, "whole member list after {} ms", at.0);
    assert!(b.stats().member_pulls > 0);
    // Paged: each pull answered with at most 3 datagrams.
    assert!(intro_datagrams as u64 <= 3 * b.stats().member_pulls + 3 * 3);
    assert_eq!(a.stats().tx_oversized + b.stats().tx_oversized, 0);
}
