//! Queries in the simulator (issue 25, item 5), checked as a user of `shoal query` would:
//! every node that can answer does, and the origin's counts say so. (Without loss: an ack
//! and an answer are one datagram each, not resent, so under loss some go missing; see
//! docs/results/2026-12-09-events.md.)

use shoal_core::GuardMode;
use shoal_sim::{self as sim, Scenario};

const BASE: &str = r#"
seed = 25
nodes = 100
profile = "lan"
[cluster]
seeds = 3
formed = true
[[service]]
name = "api"
providers = 10
[[fault]]
at = "10s"
kind = "query"
node = 7
[[fault]]
at = "20s"
kind = "query"
node = 50
service = "api"
"#;

fn run(extra: &str, name: &str, duration: &str) -> sim::measure_queries::QueryFigures {
    let text = format!("name = \"{name}\"\nduration = \"{duration}\"\n{BASE}{extra}");
    let sc = Scenario::parse(&text).expect("scenario");
    let r = sim::run(&sc, GuardMode::Enforce, &mut |_| {}).expect("run");
    r.queries.expect("query figures")
}

#[test]
fn a_query_to_100_nodes_gets_every_answer_within_its_timeout() {
    let q = run("", "queries-100", "40s");
    assert_eq!(q.queries.len(), 2);
    let expect = [100, 10];
    for (x, n) in q.queries.iter().zip(expect) {
        assert_eq!(x.reachable, n, "{x:?}");
        assert_eq!((x.expected, x.cut_off), (n, 0), "{x:?}");
        assert_eq!((x.acks, x.answers, x.pending), (n, n, 0), "{x:?}");
        assert!(!x.timed_out, "{x:?}");
        let done = x.done_ms.expect("done before the timeout");
        assert!(done < x.timeout_ms as f64, "{x:?}");
        assert!(x.answer_latency_ms.max <= done, "{x:?}");
    }
}
