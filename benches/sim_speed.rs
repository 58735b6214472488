//! Simulator speed: virtual seconds per wall second and peak resident memory, for a cluster
//! that forms from nothing (every node joins within 5 s) and for one that starts formed
//! (`[cluster] formed`: steady state, the growth timeline's start), at 100 and 1,000 nodes
//! (and 10,000 with `SHOAL_BENCH_10K=1`). Run with `cargo bench --bench sim_speed` (`cargo test --benches` runs
//! a 50-node smoke pass only).
//!
//! Prints the figures; it asserts nothing about timing (that would make CI flaky). The peak
//! memory is the process's `VmHWM`, reset before each size where Linux allows it.
//! CPU seconds are printed beside wall seconds (a shared machine slows the wall clock only).

use shoal_core::GuardMode;
use shoal_sim::{self as sim, growth, Scenario};
use std::time::Instant;

fn scenario(nodes: usize, secs: u64, formed: bool) -> Scenario {
    let text = format!(
        r#"
name = "bench-{nodes}"
seed = 1
nodes = {nodes}
profile = "lan"
duration = "{secs}s"
[cluster]
seeds = 3
start_spread = "5s"
formed = {formed}
[[service]]
name = "api"
providers = 5
[measure]
from = "10s"
max_join_spreads = 20
series_nodes = 4
"#
    );
    match Scenario::parse(&text) {
        Ok(s) => s,
        Err(e) => panic!("bench scenario: {e}"),
    }
}

fn bench(nodes: usize, secs: u64, formed: bool) {
    let sc = scenario(nodes, secs, formed);
    let reset = growth::reset_peak_rss();
    let cpu0 = cpu_s();
    let t = Instant::now();
    let r = match sim::run(&sc, GuardMode::Enforce, &mut |_| {}) {
        Ok(r) => r,
        Err(e) => panic!("run: {e}"),
    };
    let wall = t.elapsed().as_secs_f64();
    // CPU time as well as wall time: on a machine others share, wall time says how loaded it
    // was, CPU time what the simulation cost.
    let cpu = match (cpu0, cpu_s()) {
        (Some(a), Some(b)) => format!("{:.1} CPU s", b - a),
        _ => "CPU time unknown".into(),
    };
    let rss = growth::peak_rss_mib()
        .map(|m| {
            format!(
                "{m:.0} MiB{} ({:.0} KiB per node)",
                if reset { "" } else { " (process peak)" },
                m * 1024.0 / nodes as f64
            )
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "sim_speed/{nodes} nodes {}: {secs} virtual s in {wall:.1} wall s ({cpu}) = {:.2} virtual s per wall s ({} events, {:.0} events/s); peak RSS {rss}; full view at 100%: {:?} s; per-node tx {:.0} B/s",
        if formed { "formed" } else { "forming" },
        secs as f64 / wall,
        r.perf.events,
        r.perf.events as f64 / wall,
        r.full_view.t100_s,
        r.traffic.tx_bytes_per_s.p50,
    );
}

/// User plus system CPU seconds of this process so far (Linux: /proc/self/stat).
fn cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) passes nothing,
    // and `--test` asks for the quick path explicitly: keep those fast.
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    if quick {
        bench(50, 10, false);
        bench(50, 10, true);
        return;
    }
    bench(100, 60, false);
    bench(100, 60, true);
    bench(1_000, 40, false);
    bench(1_000, 60, true);
    if std::env::var_os("SHOAL_BENCH_10K").is_some() {
        bench(10_000, 60, true);
    }
}
