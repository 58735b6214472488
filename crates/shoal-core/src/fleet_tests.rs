//! User events and queries through the deterministic test network: delivered once to every
//! member, across a healed partition, coalesced, and queries answered with counts.

use crate::fleet::{FleetError, FleetMsg, QueryFilter};
use crate::sync::ShoalMsg;
use crate::testnet::TestNet;
use crate::NodeError;
use std::collections::BTreeMap;
use std::time::Duration;

/// How many times each node delivered event `id`.
fn deliveries(net: &TestNet, id: u64) -> Vec<usize> {
    (0..net.nodes.len())
        .map(|i| {
            net.user_log
                .iter()
                .filter(|(_, n, e)| *n == i && e.id == id)
                .count()
        })
        .collect()
}

fn formed(n: usize) -> TestNet {
    let mut net = TestNet::new(n);
    net.run_for_ms(3_000);
    net
}

#[test]
fn an_event_reaches_every_member_once() {
    let mut net = formed(8);
    let mut id = 0;
    net.call(3, |n, now| {
        id = n
            .user_event(now, "deploy", b"v2".to_vec(), true)
            .unwrap()
            .id;
    });
    let ok = net.run_until_pred(2_000, |net| deliveries(net, id).iter().all(|&c| c == 1));
    assert!(ok, "not delivered everywhere: {:?}", deliveries(&net, id));
    // Over a long interval (push rounds and anti-entropy rounds included), never twice.
    net.run_for_ms(30_000);
    assert_eq!(deliveries(&net, id), vec![1; 8]);
    let e = &net.user_log.iter().find(|(_, n, _)| *n == 5).unwrap().2;
    assert_eq!((e.name.as_str(), e.payload.as_str()), ("deploy", "v2"));
    assert_eq!(e.origin, "n3");
    // Listed everywhere, and every clock moved past the event's time.
    for n in &net.nodes {
        assert!(n.recent_events().iter().any(|r| r.event.id == id));
        assert!(n.event_clock() > e.ltime);
    }
}

#[test]
fn events_sent_during_a_split_reach_the_other_side_after_the_heal() {
    let mut net = formed(8);
    net.partition(&[0, 1, 2, 3]);
    net.run_for_ms(1_000);
    let mut id = 0;
    net.call(1, |n, now| {
        id = n.user_event(now, "during-split", vec![], false).unwrap().id;
    });
    net.run_for_ms(5_000);
    let d = deliveries(&net, id);
    assert_eq!(&d[..4], &[1, 1, 1, 1], "its own side has it");
    assert_eq!(&d[4..], &[0, 0, 0, 0], "the other side cannot have it yet");
    net.heal();
    // Anti-entropy of events every 3 x sync_interval (6 s in the test profile).
    let ok = net.run_until_pred(60_000, |net| deliveries(net, id).iter().all(|&c| c == 1));
    assert!(ok, "not across the heal: {:?}", deliveries(&net, id));
    net.run_for_ms(20_000);
    assert_eq!(deliveries(&net, id), vec![1; 8], "and once");
}

#[test]
fn a_newer_same_name_event_supersedes_an_older_one() {
    let mut net = formed(4);
    net.partition(&[0, 1]);
    net.run_for_ms(500);
    // The older one is stuck on one side while a newer one of the same name spreads.
    let mut old = 0;
    net.call(0, |n, now| {
        old = n
            .user_event(now, "deploy", b"v1".to_vec(), true)
            .unwrap()
            .id;
    });
    net.run_for_ms(2_000);
    // A Lamport time past the first one's: node 2 witnessed nothing, so move its clock.
    let mut new = 0;
    net.call(2, |n, now| {
        for _ in 0..5 {
            n.user_event(now, "warmup", vec![], false).unwrap();
        }
        new = n
            .user_event(now, "deploy", b"v2".to_vec(), true)
            .unwrap()
            .id;
    });
    net.run_for_ms(2_000);
    net.heal();
    net.run_for_ms(40_000);
    let d_new = deliveries(&net, new);
    assert_eq!(d_new, vec![1; 4]);
    // Nodes 2 and 3 never deliver the older deploy; every node lists only the newer one.
    let d_old = deliveries(&net, old);
    assert_eq!(&d_old[2..], &[0, 0], "{d_old:?}");
    for n in &net.nodes {
        let deploys: Vec<u64> = n
            .recent_events()
            .iter()
            .filter(|r| r.event.name == "deploy")
            .map(|r| r.event.id)
            .collect();
        assert_eq!(deploys, vec![new]);
    }
}

#[test]
fn the_payload_bound_is_a_clear_error() {
    let mut net = formed(2);
    let mut err = None;
    net.call(0, |n, now| {
        err = n.user_event(now, "big", vec![b'x'; 600], true).err();
    });
    assert!(
        matches!(
            err,
            Some(NodeError::Fleet(FleetError::PayloadTooLarge {
                size: 600,
                limit: 512
            }))
        ),
        "{err:?}"
    );
}

#[test]
fn a_query_collects_acks_and_answers_with_counts() {
    let mut net = TestNet::with_config(6, |i, c| {
        if i % 2 == 1 {
            c.fleet.query_handlers = vec!["uptime".into()];
        }
    });
    net.run_for_ms(3_000);
    let mut id = 0;
    net.call(0, |n, now| {
        let s = n
            .query(now, "uptime", b"?".to_vec(), QueryFilter::default(), None)
            .unwrap();
        assert_eq!((s.expected, s.cut_off), (6, 0));
        id = s.id;
    });
    // The members with a handler answer what their handler printed.
    let ok = net.run_until_pred(2_000, |net| {
        net.query_log.iter().filter(|(_, _, q)| q.id == id).count() == 6
    });
    assert!(ok, "not every member got the query");
    let mut answering: Vec<usize> = net
        .query_log
        .iter()
        .filter(|(_, _, q)| q.answering)
        .map(|(_, i, _)| *i)
        .collect();
    answering.sort();
    assert_eq!(
        answering,
        vec![1, 3, 5],
        "those with a handler say an answer follows"
    );
    for i in answering {
        net.call(i, |n, now| {
            n.query_answer(now, id, format!("up on n{i}").into_bytes())
                .unwrap()
        });
    }
    net.run_for_ms(200);
    let mut s = None;
    net.call(0, |n, now| s = n.query_status(now, id));
    let s = s.unwrap();
    assert!(s.done && !s.timed_out, "{s:?}");
    assert_eq!((s.acks, s.answers.len(), s.pending), (6, 3, 0));
    let mut from: Vec<&str> = s.answers.iter().map(|a| a.from.as_str()).collect();
    from.sort();
    assert_eq!(from, vec!["n1", "n3", "n5"]);
}

#[test]
fn a_query_filter_and_a_cut_off_member() {
    let mut net = TestNet::new(5);
    net.run_for_ms(3_000);
    for i in [1, 2] {
        net.call(i, |n, now| {
            let tags = BTreeMap::from([("role".to_string(), "web".to_string())]);
            n.set_tags(now, &tags, &[]).unwrap();
        });
    }
    net.run_for_ms(3_000);
    let filter = QueryFilter {
        tags: vec![("role".into(), "web".into())],
        ..Default::default()
    };
    let mut id = 0;
    net.call(0, |n, now| {
        let s = n
            .query(
                now,
                "ping",
                vec![],
                filter.clone(),
                Some(Duration::from_secs(2)),
            )
            .unwrap();
        assert_eq!(s.expected, 2);
        id = s.id;
    });
    net.run_for_ms(500);
    let mut s = None;
    net.call(0, |n, now| s = n.query_status(now, id));
    let s = s.unwrap();
    assert!(s.done && !s.timed_out);
    assert_eq!((s.acks, s.answers.len()), (2, 0));
    let mut got: Vec<usize> = net.query_log.iter().map(|(_, i, _)| *i).collect();
    got.sort();
    assert_eq!(
        got,
        vec![1, 2],
        "only the matching members get it delivered"
    );
}

#[test]
fn queries_are_rate_limited_at_their_origin() {
    let mut net = formed(3);
    let mut errs = 0;
    net.call(0, |n, now| {
        for _ in 0..20 {
            if let Err(NodeError::Fleet(FleetError::RateLimited(_))) =
                n.query(now, "q", vec![], QueryFilter::default(), None)
            {
                errs += 1;
            }
        }
    });
    assert_eq!(errs, 20 - crate::fleet::QUERY_BURST);
}

#[test]
fn fleet_messages_roundtrip_and_bad_ones_are_refused_at_decode() {
    let m = ShoalMsg::Fleet(FleetMsg::Answer {
        id: 9,
        from: "n2".into(),
        payload: b"ok".to_vec(),
    });
    assert_eq!(ShoalMsg::decode(&m.encode()).unwrap(), m);
    let bad = ShoalMsg::Fleet(FleetMsg::Answer {
        id: 9,
        from: "bad name!".into(),
        payload: vec![],
    });
    assert!(ShoalMsg::decode(&bad.encode()).is_err());
}

/// Review of #22/#25: a member's digest with an empty id list drew every recent event (up
/// to 64 of 1 KiB, about 70 KB) for a few bytes. It now draws one datagram; the rest follow at
/// the next anti-entropy rounds.
#[test]
fn a_digest_draws_at_most_one_datagram_of_events() {
    let mut net = formed(3);
    for i in 0..20 {
        net.call(0, |n, now| {
            n.user_event(now, &format!("e{i}"), vec![b'x'; 500], false)
                .unwrap();
        });
    }
    net.run_for_ms(2_000);
    while net.nodes[0].poll_transmit().is_some() {}
    let mut d = Vec::new();
    crate::wire::write_header(&mut d, "", crate::wire::Kind::Shoal);
    d.extend_from_slice(
        &ShoalMsg::Fleet(FleetMsg::Have {
            fingerprint: 1,
            count: 1,
            ids: Some(vec![]),
            replies: 0,
        })
        .encode(),
    );
    let now = net.now;
    let from = crate::testnet::addr(1);
    net.nodes[0].handle_datagram(now, from, &d);
    let mut answers = 0;
    while let Some(t) = net.nodes[0].poll_transmit() {
        if t.dst == from {
            answers += 1;
            assert!(t.data.len() <= crate::wire::MAX_DATAGRAM);
        }
    }
    assert_eq!(answers, 1, "one datagram of events, not the whole list");
}
