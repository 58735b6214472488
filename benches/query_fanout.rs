//! A query to 100 real agents (issue 25's target: "returns all answers, with the count,
//! within its default timeout"): starts 100 in-process agents on loopback, each on its own
//! address 127.0.0.(i+1), profile `lan` (the default) unless `SHOAL_BENCH_PROFILE` says
//! otherwise, each joining agent 0 through the integration tests' harness (tests/common);
//! waits (bounded) until every agent serves every agent alive; gives every other agent (the
//! even ones) a query handler (a shell script whose stdout is the answer; the odd ones ack
//! only); then asks one query of every agent from agent 0 with the default timeout, as
//! `POST /v1/query/{name}` does, and follows it on the agent's flush notifications.
//!
//! Prints expected, acks, answers, the time to the last ack and to the last answer, the
//! default timeout, and whether every expected agent answered before it. Run with
//! `cargo bench --bench query_fanout` (`SHOAL_BENCH_AGENTS=N` for another size);
//! `cargo test --benches` runs a 10-agent smoke pass. It asserts nothing about timing; it
//! exits non-zero when the agents do not form within their bound. It is not part of the
//! test suite (100 agents take minutes of CI's 2 cores).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{agent_args, Cluster};
use shoal::config::handlers::HandlerSpec;
use shoal::config::Config;
use shoal_core::Profile;
use shoal_core::QueryFilter;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const QUERY: &str = "uptime";

/// Agent `i` answers with a handler (the others ack only).
fn answers(i: usize) -> bool {
    i.is_multiple_of(2)
}

fn configure(profile: Profile) -> common::Configure {
    Box::new(
        move |i: usize, bind: SocketAddr, seed: Option<SocketAddr>, dir: &Path| -> Config {
            // Each agent on its own loopback address; keeps the port it was given (0 at start).
            let ip = Ipv4Addr::new(127, 0, 0, u8::try_from(i + 1).expect("at most 254 agents"));
            let bind = SocketAddr::new(IpAddr::V4(ip), bind.port());
            let mut args = agent_args(i, bind, seed, dir);
            args.profile = Some(profile);
            let mut cfg = Config::load_with_env(&args, &|_| None).expect("valid bench config");
            if answers(i) {
                let h = format!(r#"query:{QUERY}=read q; echo "up $SHOAL_SELF_NAME $q""#);
                cfg.event_handlers = vec![HandlerSpec::parse(&h).expect("valid handler")];
            }
            cfg
        },
    )
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run(n: usize, profile: Profile, form_bound: Duration) -> bool {
    println!(
        "query_fanout: {n} agents, profile {profile:?}, load {}",
        load()
    );
    let t0 = Instant::now();
    let c = Cluster::start_with(n, configure(profile)).await;
    let started = t0.elapsed();
    // Bounded polls (the harness's `wait_until` panics; here a failure to form is reported).
    let formed = {
        let start = Instant::now();
        let mut ok = false;
        while start.elapsed() < form_bound {
            if (0..n).all(|i| c.alive_count(i) == n) {
                ok = true;
                break;
            }
            tokio::time::sleep(common::POLL).await;
        }
        ok
    };
    if !formed {
        let min = (0..n).map(|i| c.alive_count(i)).min().unwrap_or(0);
        println!(
            "  not formed within {form_bound:?} (started in {started:.1?}): the agent seeing \
             fewest sees {min} of {n} alive"
        );
        c.stop().await;
        return false;
    }
    println!(
        "  started in {started:.1?}, one view (every agent sees {n} alive) after {:.1?}",
        t0.elapsed()
    );

    let shared = c.shared[0].clone();
    // Subscribe before asking, as the API does, so that no flush is missed.
    let flushed = shared.flushed.notified();
    tokio::pin!(flushed);
    flushed.as_mut().enable();
    let asked = Instant::now();
    let first = shared
        .with_node(|node, now| node.query(now, QUERY, b"?".to_vec(), QueryFilter::default(), None))
        .expect("the query starts");
    let timeout = Duration::from_millis(first.timeout_ms);
    // Follow it past its deadline by a margin (bounded); it ends by itself at the deadline.
    let end = tokio::time::Instant::now() + timeout + Duration::from_secs(2);
    let (mut acks, mut got) = (0, 0);
    let (mut last_ack, mut last_answer) = (Duration::ZERO, Duration::ZERO);
    let status = loop {
        let s = {
            let mut node = shared.lock();
            let now = shared.now();
            node.query_status(now, first.id)
                .expect("the query is tracked")
        };
        if s.acks > acks {
            acks = s.acks;
            last_ack = asked.elapsed();
        }
        if s.answers.len() > got {
            got = s.answers.len();
            last_answer = asked.elapsed();
        }
        if s.done {
            break s;
        }
        tokio::select! {
            _ = &mut flushed => {}
            _ = tokio::time::sleep_until(end) => {}
        }
        if tokio::time::Instant::now() >= end {
            let mut node = shared.lock();
            let now = shared.now();
            break node
                .query_status(now, first.id)
                .expect("the query is tracked");
        }
        flushed.set(shared.flushed.notified());
        flushed.as_mut().enable();
    };
    let ended = asked.elapsed();
    let handlers = (0..n).filter(|i| answers(*i)).count();
    let all = status.expected == n
        && status.acks == status.expected
        && status.answers.len() == handlers
        && status.pending == 0
        && !status.timed_out;
    println!(
        "  expected {} (cut off {}), acks {}, answers {} of {handlers} handlers, pending {}",
        status.expected,
        status.cut_off,
        status.acks,
        status.answers.len(),
        status.pending
    );
    println!(
        "  last ack {last_ack:.3?}, last answer {last_answer:.3?}, done {ended:.3?}, \
         default timeout {timeout:?}, timed out {}, all answered before the timeout: {all}",
        status.timed_out
    );
    println!("  load {}", load());
    c.stop().await;
    true
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: a small pass.
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    let n = if quick {
        10
    } else {
        std::env::var("SHOAL_BENCH_AGENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100)
    };
    let profile = match std::env::var("SHOAL_BENCH_PROFILE").as_deref() {
        Ok("local") => Profile::Local,
        Ok("wan") => Profile::Wan,
        _ => Profile::Lan,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = rt.block_on(run(n, profile, Duration::from_secs(120)));
    if !ok {
        std::process::exit(1);
    }
}
