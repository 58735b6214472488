//! The cost of encryption: bytes per datagram and CPU per node, sealed against plaintext.
//!
//! Runs the same cluster twice on an in-process network with virtual time (10 nodes, LAN
//! profile, 120 virtual seconds after forming, a 1 ms link): once with every node holding the
//! cluster key, once insecure. Prints datagrams and bytes sent per node per second, the mean
//! datagram size, and the process CPU time per node per virtual second of each run (the
//! drivers are identical, so the difference is sealing, opening and replay checks). Run with
//! `cargo bench --bench trust_overhead`; `cargo test --benches` runs a short smoke pass. It
//! asserts nothing about timing.

use shoal_core::keyring::{Key, Keyring, KEY_LEN};
use shoal_core::trust::TrustConfig;
use shoal_core::{Node, NodeConfig, NodeMeta, Profile, Time};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

enum Ev {
    /// Node `i` asked to be woken (`Node::poll_timeout`).
    Wake(usize),
    Deliver(usize, SocketAddr, Vec<u8>),
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 21000 + i as u16))
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

struct Run {
    datagrams: u64,
    bytes: u64,
    cpu: f64,
}

fn run(n: usize, secs: u64, keyed: bool) -> Run {
    let mut nodes: Vec<Node> = (0..n)
        .map(|i| {
            let cfg = NodeConfig {
                name: format!("n{i}"),
                advertise: addr(i),
                cluster_label: String::new(),
                timings: Profile::Lan.timings(),
                seeds: if i == 0 { vec![] } else { vec![addr(0)] },
                guard: Default::default(),
                track_suspects: true,
                outlier: Default::default(),
                fleet: Default::default(),
            };
            let mut meta = NodeMeta::default();
            meta.tags.insert("zone".into(), format!("z{}", i % 3));
            let mut node = Node::new(cfg, 1, meta, i as u64 + 1, Time(0)).expect("node");
            if keyed {
                node.set_trust(TrustConfig {
                    keyring: Some(Keyring::new(Key::from_bytes([7; KEY_LEN]))),
                    ..TrustConfig::default()
                })
                .expect("trust");
            }
            node
        })
        .collect();
    let mut queue: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut evs: Vec<Option<Ev>> = Vec::new();
    // The earliest wake-up queued for each node.
    let mut wake: Vec<Option<u64>> = vec![None; n];
    let mut seq = 0;
    let mut push = |queue: &mut BinaryHeap<_>, evs: &mut Vec<Option<Ev>>, at: u64, ev: Ev| {
        seq += 1;
        evs.push(Some(ev));
        queue.push(Reverse((at, seq, evs.len() - 1)));
    };
    let formed_at = 20_000;
    let end = formed_at + secs * 1000;
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    let mut cpu_start = None;
    for node in nodes.iter_mut() {
        node.start(Time(0));
    }
    let mut now;
    let mut flush = |i: usize,
                     now: u64,
                     nodes: &mut Vec<Node>,
                     queue: &mut BinaryHeap<_>,
                     evs: &mut Vec<Option<Ev>>,
                     wake: &mut Vec<Option<u64>>,
                     count: bool,
                     datagrams: &mut u64,
                     bytes: &mut u64| {
        if let Some(at) = nodes[i].poll_timeout() {
            if wake[i].is_none_or(|w| at.as_millis() < w) {
                wake[i] = Some(at.as_millis());
                push(queue, evs, at.as_millis(), Ev::Wake(i));
            }
        }
        while let Some(t) = nodes[i].poll_transmit() {
            if count {
                *datagrams += 1;
                *bytes += t.data.len() as u64;
            }
            let j = usize::from(t.dst.port() - 21000);
            push(queue, evs, now + 1, Ev::Deliver(j, addr(i), t.data));
        }
        while nodes[i].poll_event().is_some() {}
    };
    for i in 0..n {
        flush(
            i,
            0,
            &mut nodes,
            &mut queue,
            &mut evs,
            &mut wake,
            false,
            &mut datagrams,
            &mut bytes,
        );
    }
    while let Some(Reverse((at, _, slot))) = queue.pop() {
        if at > end {
            break;
        }
        now = at;
        let counting = now >= formed_at;
        if counting && cpu_start.is_none() {
            cpu_start = Some(cpu_seconds());
        }
        let Some(ev) = evs[slot].take() else { continue };
        let i = match ev {
            Ev::Wake(i) => {
                if wake[i] == Some(now) {
                    wake[i] = None;
                }
                nodes[i].handle_timeout(Time(now));
                i
            }
            Ev::Deliver(i, from, d) => {
                nodes[i].handle_datagram(Time(now), from, &d);
                i
            }
        };
        flush(
            i,
            now,
            &mut nodes,
            &mut queue,
            &mut evs,
            &mut wake,
            counting,
            &mut datagrams,
            &mut bytes,
        );
    }
    let alive = nodes[0].members().len();
    assert_eq!(alive, n, "the cluster did not form");
    Run {
        datagrams,
        bytes,
        cpu: cpu_seconds() - cpu_start.unwrap_or(0.0),
    }
}

fn main() {
    let smoke =
        std::env::args().any(|a| a == "--test") || std::env::var("SHOAL_BENCH_SMOKE").is_ok();
    let (n, secs) = if smoke { (5, 10) } else { (10, 600) };
    println!("{n} nodes, LAN profile, {secs} virtual s after forming");
    let mut rows = Vec::new();
    for keyed in [false, true] {
        let r = run(n, secs, keyed);
        let per_node_s = (n as u64 * secs) as f64;
        println!(
            "{:>9}: {:.2} datagrams/s and {:.0} B/s per node, {:.1} B per datagram, CPU {:.4} % of a core per node",
            if keyed { "encrypted" } else { "plaintext" },
            r.datagrams as f64 / per_node_s,
            r.bytes as f64 / per_node_s,
            r.bytes as f64 / r.datagrams.max(1) as f64,
            100.0 * r.cpu / per_node_s,
        );
        rows.push(r);
    }
    let (p, e) = (&rows[0], &rows[1]);
    println!(
        "overhead: {:+.1} B per datagram, {:+.1} % bytes, CPU {:+.4} % of a core per node",
        e.bytes as f64 / e.datagrams.max(1) as f64 - p.bytes as f64 / p.datagrams.max(1) as f64,
        100.0 * (e.bytes as f64 / p.bytes.max(1) as f64 - 1.0),
        100.0 * (e.cpu - p.cpu) / (n as u64 * secs) as f64,
    );
}
