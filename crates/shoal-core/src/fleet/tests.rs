//! Unit tests of `core::fleet` (a child module of `fleet`): Lamport ordering, coalescing,
//! bounds, rate limits and query timeouts.

use super::*;
use crate::fleet_wire::MAX_HAVE_IDS;

fn ev(id: u64, ltime: u64, name: &str, coalesce: bool) -> UserEvent {
    UserEvent {
        id,
        ltime,
        origin: "a".into(),
        name: name.into(),
        payload: b"x".to_vec(),
        coalesce,
    }
}

fn fleet() -> Fleet {
    Fleet::new(FleetConfig::default(), HashSeed::of_node(1))
}

#[test]
fn lamport_clock_moves_past_what_it_witnesses() {
    let mut f = fleet();
    assert_eq!(f.tick_clock(), 0);
    assert_eq!(f.tick_clock(), 1);
    f.receive_event(Time(1), &ev(9, 41, "deploy", false));
    assert_eq!(f.clock(), 42);
    f.witness(3);
    assert_eq!(
        f.tick_clock(),
        42,
        "an older time never moves the clock back"
    );
    assert_eq!(f.clock(), 43);
}

#[test]
fn delivered_once() {
    let mut f = fleet();
    let e = ev(7, 1, "deploy", false);
    assert_eq!(f.receive_event(Time(1), &e), Outcome::New);
    assert_eq!(f.receive_event(Time(2), &e), Outcome::Seen);
    assert_eq!(f.recent().count(), 1);
}

#[test]
fn coalescing_keeps_the_newest_of_a_name() {
    let mut f = fleet();
    assert_eq!(
        f.receive_event(Time(1), &ev(1, 5, "deploy", true)),
        Outcome::New
    );
    f.spread(Spread::Event(ev(1, 5, "deploy", true)), 3);
    assert_eq!(
        f.receive_event(Time(2), &ev(2, 7, "deploy", true)),
        Outcome::New
    );
    f.spread(Spread::Event(ev(2, 7, "deploy", true)), 3);
    // The older one, arriving late, is not delivered.
    assert_eq!(
        f.receive_event(Time(3), &ev(3, 6, "deploy", true)),
        Outcome::Superseded
    );
    let ids: Vec<u64> = f.recent().map(|r| r.event.id).collect();
    assert_eq!(ids, vec![2], "the superseded event left the list");
    let (events, _) = f.round();
    assert_eq!(events.len(), 1, "and stopped spreading");
    // Opted out: every one is delivered.
    assert_eq!(
        f.receive_event(Time(4), &ev(4, 8, "log", false)),
        Outcome::New
    );
    assert_eq!(
        f.receive_event(Time(5), &ev(5, 2, "log", false)),
        Outcome::New
    );
}

#[test]
fn tables_stay_bounded() {
    let mut f = fleet();
    for i in 0..(SEEN_IDS as u64 + 100) {
        f.receive_event(
            Time(i),
            &ev(1000 + i, i + 1, &format!("n{}", i % 3000), true),
        );
        f.spread(Spread::Event(ev(i, i, "x", false)), 5);
    }
    assert!(f.recent().count() <= RECENT_EVENTS);
    assert!(f.spreading.len() <= MAX_SPREADING);
    assert!(f.seen.len() <= SEEN_IDS);
    assert!(f.latest.len() <= MAX_COALESCE_NAMES);
    // A forgotten id is refused as too old rather than delivered twice.
    assert_eq!(
        f.receive_event(Time(1), &ev(1000, 1, "n0", false)),
        Outcome::Seen
    );
}

#[test]
fn payload_bound_has_a_clear_error() {
    let f = fleet();
    let err = f.check_event("deploy", &[0; 513]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload is 513 bytes; the limit is 512 (event_payload_max)"
    );
    assert!(f.check_event("deploy", &[0; 512]).is_ok());
    assert!(f.check_event("bad name", b"").is_err());
}

#[test]
fn query_rate_limit_and_completion() {
    let mut f = fleet();
    for _ in 0..QUERY_BURST {
        f.check_query(Time(0), "q", b"").unwrap();
    }
    assert!(matches!(
        f.check_query(Time(10), "q", b""),
        Err(FleetError::RateLimited(_))
    ));
    assert!(f.check_query(Time(1000), "q", b"").is_ok());
    let q = Query {
        id: 1,
        ltime: 0,
        origin: "a".into(),
        name: "q".into(),
        payload: vec![],
        filter: QueryFilter::default(),
        timeout_ms: 1000,
    };
    let expected: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    f.track_query(&q, Time(1000), expected, 1);
    f.on_ack(Time(1), 1, "a", true);
    f.on_ack(Time(1), 1, "b", false);
    let s = f.query_status(Time(2), 1).unwrap();
    assert_eq!((s.acks, s.pending, s.done, s.cut_off), (2, 1, false, 1));
    f.on_answer(Time(3), 1, "a", b"up".to_vec());
    assert!(
        !f.on_answer(Time(3), 1, "a", b"again".to_vec()),
        "one answer each"
    );
    let s = f.query_status(Time(4), 1).unwrap();
    assert!(s.done && !s.timed_out);
    assert_eq!(s.answers.len(), 1);
}

#[test]
fn timeouts_follow_the_cluster_size() {
    assert_eq!(log10_ceil(0), 1);
    assert_eq!(log10_ceil(9), 1);
    assert_eq!(log10_ceil(10), 2);
    assert_eq!(log10_ceil(99), 2);
    assert_eq!(log10_ceil(100), 3);
    assert_eq!(log10_ceil(1000), 4);
    let g = Duration::from_millis(200);
    assert_eq!(default_query_timeout(g, 100), Duration::from_millis(9600));
    assert_eq!(spread_rounds(1000), 6);
}

#[test]
fn validation_refuses_oversized_and_bad_names() {
    let big = FleetMsg::Events {
        events: vec![UserEvent {
            payload: vec![0; MAX_PAYLOAD + 1],
            ..ev(1, 1, "x", false)
        }],
    };
    assert!(big.validate().is_err());
    let many = FleetMsg::Have {
        fingerprint: 0,
        count: 0,
        ids: Some(vec![0; MAX_HAVE_IDS + 1]),
        replies: 0,
    };
    assert!(many.validate().is_err());
    assert!(FleetMsg::Ack {
        id: 1,
        from: "".into(),
        answering: false
    }
    .validate()
    .is_err());
}

#[test]
fn a_restored_memory_delivers_nothing_twice_and_stays_bounded() {
    let mut f = fleet();
    assert_eq!(f.memory(), None, "nothing happened: nothing to persist");
    f.receive_event(Time(1), &ev(7, 3, "deploy", true));
    f.receive_event(Time(2), &ev(8, 4, "rotate", false));
    let mem = f.memory().expect("something to persist");
    // Through JSON, as the snapshot file carries it.
    let mem: FleetMemory = serde_json::from_str(&serde_json::to_string(&mem).unwrap()).unwrap();
    let mut g = fleet();
    assert_eq!(g.restore(Time(0), mem), 2);
    assert_eq!(g.clock(), f.clock());
    assert_eq!(g.fingerprint(), f.fingerprint());
    assert_eq!(
        g.receive_event(Time(1), &ev(7, 3, "deploy", true)),
        Outcome::Seen
    );
    assert_eq!(
        g.receive_event(Time(1), &ev(9, 2, "deploy", true)),
        Outcome::Superseded,
        "an older same-name event stays superseded"
    );
    assert_eq!(
        g.receive_event(Time(1), &ev(10, 1, "other", false)),
        Outcome::New
    );
    // A file past the bounds is cut to them; an invalid event is skipped.
    let mut bad = ev(11, 5, "bad name", false);
    bad.payload = vec![0; MAX_PAYLOAD + 1];
    let big = FleetMemory {
        clock: 9,
        floor: 0,
        seen: (0..SEEN_IDS as u64 + 100).map(|i| (i + 100, 1)).collect(),
        latest: (0..MAX_COALESCE_NAMES + 5)
            .map(|i| (format!("n{i}"), 1))
            .collect(),
        recent: (0..RECENT_EVENTS as u64 + 3)
            .map(|i| ev(1000 + i, 2, "e", false))
            .chain([bad])
            .collect(),
    };
    let mut h = fleet();
    assert_eq!(h.restore(Time(0), big), RECENT_EVENTS - 1);
    let m = h.memory().unwrap();
    assert_eq!(m.seen.len(), SEEN_IDS);
    assert_eq!(m.latest.len(), MAX_COALESCE_NAMES);
}

#[test]
fn an_offer_draws_one_want_per_retry_period() {
    let mut f = fleet();
    f.receive_event(Time(1), &ev(7, 3, "deploy", false));
    let retry = Duration::from_millis(400);
    assert_eq!(f.want(Time(10), &[7, 8, 9], retry), vec![8, 9], "7 is seen");
    assert!(
        f.want(Time(100), &[8, 9], retry).is_empty(),
        "asked already"
    );
    assert_eq!(
        f.want(Time(500), &[8], retry),
        vec![8],
        "asked again after the retry"
    );
    assert_eq!(f.events_by_id(&[7, 8]).len(), 1);
}
