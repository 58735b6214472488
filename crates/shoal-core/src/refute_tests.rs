//! Tests that a member refutes what is said about it, as memberlist and Serf do: a forged
//! leave that an agent without its key took (a fresh agent) is undone everywhere within about
//! a probe period by the owner's own signed record, and an unsigned record of an owner known
//! to sign is refused even where its name is bound to no key (after `forget`).

use crate::identity_tests::{member_keys, signed};
use crate::meta::MetaRecord;
use crate::sync::ShoalMsg;
use crate::testnet::{addr, TestNet};
use crate::trust_tests::{keyed, Outsider};
use crate::wire::Kind;
use crate::{ServedStatus, Time};
use std::sync::Arc;

/// n1's record as a key holder rewrites it: leaving, 50 minutes ahead, unsigned.
fn forged_leave(net: &TestNet) -> MetaRecord {
    let mut r = net.nodes[1].own_record().clone();
    r.generation = net.now.0 + 50 * 60 * 1000;
    r.version = 1;
    r.leaving = true;
    r.ext.remove(crate::fields::record::SIGNATURE.number);
    r.ext.remove(crate::fields::record::MEMBER_KEY.number);
    r
}

fn push(net: &mut TestNet, o: &mut Outsider, to: usize, r: &MetaRecord) {
    let msg = ShoalMsg::Push {
        records: vec![Arc::new(r.clone())],
    };
    let d = o.datagram(net.now, addr(to), Kind::Shoal, &msg.encode());
    let now = net.now;
    net.nodes[to].handle_datagram(now, addr(2), &d);
    net.flush(to);
}

/// The longest time each observer served `name` with `status` in one stretch (the watch
/// stream: `member_log`), up to `end` for a stretch still open.
fn longest(net: &TestNet, name: &str, status: ServedStatus, end: Time) -> Vec<(usize, u64)> {
    let mut open: std::collections::BTreeMap<usize, Time> = Default::default();
    let mut worst: std::collections::BTreeMap<usize, u64> = Default::default();
    for (t, obs, n, st, _, _) in &net.member_log {
        if n != name {
            continue;
        }
        if *st == status {
            open.entry(*obs).or_insert(*t);
        } else if let Some(since) = open.remove(obs) {
            let w = worst.entry(*obs).or_default();
            *w = (*w).max(t.0 - since.0);
        }
    }
    for (obs, since) in open {
        let w = worst.entry(obs).or_default();
        *w = (*w).max(end.0 - since.0);
    }
    worst.into_iter().collect()
}

#[test]
fn a_forged_leave_taken_by_a_fresh_agent_is_refuted_by_its_owner() {
    let mut net = signed(3);
    let real = net.nodes[1].own_record().clone();
    // A fresh agent (empty data directory: no key bound to n1 yet) starts; the forgery
    // reaches it before anything else does.
    let now = net.now;
    let mut n = crate::Node::new(
        crate::testnet::config(3),
        now.0,
        crate::NodeMeta::default(),
        33,
        now,
    )
    .unwrap();
    n.set_trust(keyed(1).unwrap()).unwrap();
    n.set_member_keys(member_keys(3), Vec::new()).unwrap();
    n.start(now);
    net.nodes.push(n);
    let mut o = Outsider::new(Some(1), addr(2), 905);
    let forged = forged_leave(&net);
    push(&mut net, &mut o, 3, &forged);
    assert!(net.nodes[3].record_of("n1").is_some_and(|r| r.leaving));
    // The bound agents refuse it (signed records only for n1 there).
    for i in [0, 2] {
        push(&mut net, &mut o, i, &forged);
    }
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes[3]
            .members()
            .iter()
            .any(|m| m.name == "n1" && m.status == ServedStatus::Alive)
            && net.nodes[3].record_of("n1").is_some_and(|r| !r.leaving)
    });
    assert!(ok, "the fresh agent still takes n1 as left");
    net.run_for_ms(2_000);
    // n1 refuted it with its own signed record, above the forgery, which everyone holds.
    assert!(net.nodes[1].stats().records_refuted >= 1);
    for i in [0, 2, 3] {
        let r = net.nodes[i].record_of("n1").unwrap();
        assert!(!r.leaving && r.stamp() > forged.stamp(), "n{i}: {r:?}");
        assert_eq!(
            crate::record_sig::record_signer(&r),
            crate::record_sig::Signer::Valid(member_keys(1).public())
        );
        assert_eq!(r.addr, real.addr);
    }
    assert_eq!(net.nodes[3].bound_key("n1"), Some(member_keys(1).public()));
    // Over the whole run (the watch streams): the healthy peers never served n1 left; the
    // fresh agent for about one probe period at most.
    let period = net.nodes[0].config().timings.probe_period.as_millis() as u64;
    let left = longest(&net, "n1", ServedStatus::Left, net.now);
    for (obs, ms) in left {
        assert!(obs == 3, "n{obs} served n1 left for {ms} ms");
        assert!(ms <= 2 * period, "n3 served n1 left for {ms} ms");
    }
}

#[test]
fn an_unsigned_record_of_an_owner_that_signs_is_refused_even_unbound() {
    let mut net = signed(3);
    // The operator forgot n1 on n0 (a rebuild expected): n0 holds n1's signed record still.
    assert!(net.nodes[0].forget_member_key("n1").is_some());
    let start = net.member_log.len();
    let mut o = Outsider::new(Some(1), addr(2), 906);
    let forged = forged_leave(&net);
    push(&mut net, &mut o, 0, &forged);
    net.run_for_ms(2_000);
    let r = net.nodes[0].record_of("n1").unwrap();
    assert!(!r.leaving, "n0 took the unsigned forgery");
    let s = net.nodes[0].stats();
    assert_eq!(s.dropped_unsigned_from_signer, 1, "{s:?}");
    let bad: Vec<_> = net.member_log[start..]
        .iter()
        .filter(|e| e.2 == "n1" && e.3 != ServedStatus::Alive)
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    // A v0.1.0 member (never signed) still updates its record unsigned.
    let mut v1 = MetaRecord {
        name: Arc::from("old-agent"),
        addr: addr(50),
        generation: 1,
        version: 1,
        leaving: false,
        meta: Default::default(),
        ext: Default::default(),
    };
    push(&mut net, &mut o, 0, &v1);
    v1.version = 2;
    push(&mut net, &mut o, 0, &v1);
    assert_eq!(net.nodes[0].record_of("old-agent").unwrap().version, 2);
}

#[test]
fn forged_records_about_us_cannot_push_our_generation_past_the_wall_clock_limit() {
    let mut net = signed(3);
    let mut o = Outsider::new(Some(1), addr(2), 907);
    let hour = crate::node::MAX_FUTURE.as_millis() as u64;
    // A chain of forgeries, each 59 minutes past the generation n1 holds: before, n1 outbid
    // each one (its limit grew with its own generation), an hour further per datagram, until
    // peers refused every record it published as far in the future.
    for _ in 0..4 {
        let mut f = forged_leave(&net);
        f.leaving = false;
        f.generation = net.nodes[1].own_record().generation + 59 * 60 * 1000;
        push(&mut net, &mut o, 1, &f);
        net.run_for_ms(500);
    }
    let g = net.nodes[1].own_record().generation;
    assert!(
        g <= net.now.0 + hour,
        "n1's generation was pushed {} min past its clock",
        (g - net.now.0) / 60_000
    );
    net.run_for_ms(2_000);
    // Its peers still take what it publishes.
    let own = net.nodes[1].own_record().stamp();
    for i in [0, 2] {
        let r = net.nodes[i].record_of("n1").unwrap();
        assert_eq!(r.stamp(), own, "n{i} holds an older record of n1");
    }
}

#[test]
fn a_flood_of_forgeries_about_us_is_refuted_once_per_probe_period() {
    let mut net = signed(3);
    let mut o = Outsider::new(Some(1), addr(2), 908);
    let before = net.nodes[1].stats().records_refuted;
    // 50 forged leaves, each newer than the last, within one probe period.
    for k in 0..50u64 {
        let mut f = forged_leave(&net);
        f.version = 1 + k;
        push(&mut net, &mut o, 1, &f);
    }
    let refuted = net.nodes[1].stats().records_refuted - before;
    assert!(
        refuted <= 1,
        "{refuted} refutations (signatures) for one burst"
    );
    // The newest forgery is still refuted, at the next period.
    let last = {
        let mut f = forged_leave(&net);
        f.version = 50;
        f
    };
    net.run_for_ms(2_000);
    for i in [0, 1, 2] {
        let r = net.nodes[i]
            .record_of("n1")
            .unwrap_or_else(|| Arc::new(net.nodes[1].own_record().clone()));
        assert!(!r.leaving && r.stamp() > last.stamp(), "n{i}: {r:?}");
    }
}
