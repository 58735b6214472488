//! Tests that what a key holder writes or asks cannot turn an agent into a reflector or an
//! amplifier: discovery announces toward an address many records name, and the answer to a
//! `Want` of many names, are bounded (`core::addr_budget`).

use crate::meta::{MetaRecord, NodeMeta};
use crate::sync::ShoalMsg;
use crate::testnet::{addr, TestNet};
use std::net::SocketAddr;
use std::sync::Arc;

fn formed(n: usize) -> TestNet {
    let mut net = TestNet::new(n);
    net.run_for_ms(3_000);
    net
}

/// An unsigned record of `name` at `at`, with some tags so that few fit a datagram.
fn record(name: &str, at: SocketAddr) -> Arc<MetaRecord> {
    let mut meta = NodeMeta::default();
    for t in 0..4 {
        meta.tags.insert(format!("tag{t}"), "v".repeat(40));
    }
    Arc::new(MetaRecord {
        name: Arc::from(name),
        addr: at,
        generation: 1,
        version: 1,
        leaving: false,
        meta,
        ext: Default::default(),
    })
}

/// `msg` from `from` to node `i`, plaintext (the test network runs without keys).
fn deliver(net: &mut TestNet, i: usize, from: SocketAddr, msg: &ShoalMsg) {
    let mut d = Vec::new();
    crate::wire::write_header(&mut d, "", crate::wire::Kind::Shoal);
    d.extend_from_slice(&msg.encode());
    let now = net.now;
    net.nodes[i].handle_datagram(now, from, &d);
    net.flush(i);
}

#[test]
fn records_naming_one_address_draw_few_discovery_announces_to_it() {
    let mut net = formed(3);
    // A key holder (n2) pushes 40 records of made-up names, all at the victim's address.
    let victim = addr(77);
    for chunk in 0..8 {
        let records = (0..5)
            .map(|k| record(&format!("ghost{chunk}-{k}"), victim))
            .collect();
        deliver(&mut net, 0, addr(2), &ShoalMsg::Push { records });
    }
    net.run_for_ms(15_000);
    let to_victim: Vec<_> = net.strays.iter().filter(|s| s.2 == victim).collect();
    // One announce per 10 s window: at most two in 15 s, not one per record.
    assert!(
        !to_victim.is_empty() && to_victim.len() <= 2 * net.nodes.len(),
        "{} datagrams to the victim: {to_victim:?}",
        to_victim.len()
    );
    let limited: u64 = net
        .nodes
        .iter()
        .map(|n| n.stats().discovery_announces_limited)
        .sum();
    assert!(limited >= 30, "limited {limited}");
}

#[test]
fn a_want_of_256_names_draws_at_most_one_datagram() {
    let mut net = formed(3);
    let names: Vec<String> = (0..256).map(|k| format!("h{k}")).collect();
    for chunk in names.chunks(4) {
        let records = chunk.iter().map(|n| record(n, addr(60))).collect();
        deliver(&mut net, 0, addr(2), &ShoalMsg::Push { records });
    }
    assert!(net.nodes[0].record_of("h255").is_some());
    while net.nodes[0].poll_transmit().is_some() {}
    let want = ShoalMsg::Want {
        names: names.iter().map(|n| Arc::from(n.as_str())).collect(),
    };
    let mut d = Vec::new();
    crate::wire::write_header(&mut d, "", crate::wire::Kind::Shoal);
    d.extend_from_slice(&want.encode());
    let from = addr(1);
    let mut answers = Vec::new();
    // Forty in a row within one second: the requester's budget answers some.
    for _ in 0..40 {
        let now = net.now;
        net.nodes[0].handle_datagram(now, from, &d);
        let mut this = 0;
        while let Some(t) = net.nodes[0].poll_transmit() {
            if t.dst == from {
                this += 1;
                assert!(t.data.len() <= crate::wire::MAX_DATAGRAM);
            }
        }
        answers.push(this);
    }
    assert_eq!(
        answers[0], 1,
        "one datagram of records, not all 256: {answers:?}"
    );
    assert!(answers.iter().all(|&a| a <= 1), "{answers:?}");
    let total: usize = answers.iter().sum();
    assert_eq!(
        total,
        crate::node::WANT_ANSWERS_PER_SEC as usize,
        "{answers:?}"
    );
    assert_eq!(
        net.nodes[0].stats().want_answers_limited,
        40 - u64::from(crate::node::WANT_ANSWERS_PER_SEC)
    );
}
