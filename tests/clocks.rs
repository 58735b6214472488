//! Real agents on loopback whose wall clocks are off: membership needs no clock agreement.
//! An agent started 2 minutes ahead and one 2 minutes behind join a cluster of agents with
//! the right time and are never declared down, over the whole watch stream; the skew is
//! counted and reported in the metrics. (Until 7 Dec 2026 every datagram of such an agent was
//! dropped as `stale` and it never joined.) The clock offset is the test-only
//! `Config::clock_offset_ms` (`agent::clock`).

mod common;

use common::{config, wait_until, Cluster, Events};
use shoal_core::ServedStatus;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_skewed_clocks_join_and_are_never_declared_down() {
    // n2 runs 2 minutes ahead, n3 2 minutes behind (4 minutes apart).
    let offset = |i: usize| match i {
        2 => 120_000,
        3 => -120_000,
        _ => 0,
    };
    let mut c = Cluster::start_with(
        2,
        Box::new(move |i, bind, seed, dir| {
            let mut cfg = config(i, bind, seed, dir);
            cfg.clock_offset_ms = offset(i);
            cfg
        }),
    )
    .await;
    c.converge(Duration::from_secs(20)).await;
    let mut events = Events::subscribe(&c, &[0, 1]);
    for _ in 2..4 {
        let i = c.add(0).await;
        events.add(i, &c.shared[i]);
    }
    wait_until(
        Duration::from_secs(30),
        "every agent serves all 4 alive",
        || (0..4).all(|o| c.alive_count(o) == 4),
    )
    .await;
    events.watch_for(Duration::from_secs(15)).await;
    for m in ["n0", "n1", "n2", "n3"] {
        let bad: Vec<_> = events
            .of(m)
            .into_iter()
            .filter(|(_, s)| matches!(s, ServedStatus::Down | ServedStatus::Left))
            .collect();
        assert!(bad.is_empty(), "{m} was served down or left: {bad:?}");
    }
    for m in ["n2", "n3"] {
        let seen: Vec<_> = events.of(m);
        assert!(
            [0, 1]
                .iter()
                .all(|o| seen.contains(&(*o, ServedStatus::Alive))),
            "{m} never joined on n0 and n1: {seen:?}"
        );
    }
    // The skew is measured, not ignored: n0 sees a peer about 2 minutes off, n2 one about
    // 4 minutes off.
    let stats = |i: usize| c.shared[i].lock().trust_stats();
    assert!(stats(0).skewed > 0 && stats(2).skewed > 0);
    let s0 = stats(0).max_skew_ms;
    assert!((115_000..=125_000).contains(&s0), "n0: {s0} ms");
    let s2 = stats(2).max_skew_ms;
    assert!((235_000..=245_000).contains(&s2), "n2: {s2} ms");
    assert_eq!(c.shared[0].lock().stats().dropped_stale, 0);
    c.stop().await;
}
