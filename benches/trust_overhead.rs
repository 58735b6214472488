//! The cost of encryption and of member keys: bytes per datagram and CPU per node, and the
//! time of each signature, verification and seal.
//!
//! Runs the same cluster three times on an in-process network with virtual time (10 nodes,
//! LAN profile, 600 virtual seconds after forming, a 1 ms link): insecure, with every node
//! holding the cluster key, and with the cluster key and member keys (signed records).
//! Prints datagrams and bytes sent per node per second, the mean datagram size, and the
//! process CPU time per node per virtual second of each run (the drivers are identical, so
//! the difference is sealing, opening, replay checks, signing and verifying). Then times with
//! criterion: signing a record, verifying one, the binding check of a record from the wire,
//! and sealing and opening a keyring message to one member. Run with `cargo bench --bench
//! trust_overhead`; `cargo test --benches` runs a short smoke pass. It asserts nothing about
//! timing.
//!
//! Last, the time of one key rollout (`Node::keys_change`: the change sealed to each
//! member's own key and queued for it) from a node holding 1,000 and 10,000 members, every
//! one bound to its member key: the per-destination lookup of the member at an address must
//! not grow with the cluster (it scanned every member, quadratic in all). `-- rollout` runs
//! only this part.

use criterion::Criterion;
use shoal_core::TrustConfig;
use shoal_core::{Key, Keyring, KEY_LEN};
use shoal_core::{MemberKeys, SECRET_LEN};
use shoal_core::{MetaRecord, Node, NodeConfig, NodeId, NodeMeta, Profile, Time};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
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

/// How the nodes of a run protect what they send.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plaintext,
    Encrypted,
    /// Encrypted, and every node signs its record with its member key.
    Signed,
}

fn run(n: usize, secs: u64, mode: Mode) -> Run {
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
            if mode == Mode::Signed {
                let keys = MemberKeys::from_secret(&[i as u8 + 1; SECRET_LEN]);
                node.set_member_keys(keys, Vec::new()).expect("member keys");
            }
            if mode != Mode::Plaintext {
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

/// The time of each member-key operation, with criterion.
fn member_key_benches(c: &mut Criterion) {
    use shoal_core::record_signer;
    use shoal_core::KeyMsg;
    use shoal_core::{open_sealed, seal_to};
    let keys = MemberKeys::from_secret(&[1; SECRET_LEN]);
    let other = MemberKeys::from_secret(&[2; SECRET_LEN]);
    // A typical record: a few tags, two services.
    let mut meta = NodeMeta::default();
    meta.tags.insert("zone".into(), "z1".into());
    meta.tags.insert("rack".into(), "r12".into());
    for (name, port) in [("web", 8080), ("db", 5432)] {
        meta.services.insert(
            name.into(),
            shoal_core::Service {
                name: name.into(),
                port,
                tags: Default::default(),
                health: Some(shoal_core::Health::Passing),
                health_output: None,
            },
        );
    }
    let mut rec = shoal_core::MetaRecord {
        name: "web-17".into(),
        addr: addr(17),
        generation: 1_765_000_000_000,
        version: 12,
        leaving: false,
        meta,
        ext: Default::default(),
    };
    let unsigned_len = rec.encode().len();
    keys.sign_record(&mut rec);
    println!(
        "record: {unsigned_len} B unsigned, {} B signed (key and signature)",
        rec.encode().len()
    );
    c.bench_function("member_key/sign_record", |b| {
        b.iter(|| {
            let mut r = rec.clone();
            keys.sign_record(&mut r);
            black_box(r)
        })
    });
    c.bench_function("member_key/verify_record", |b| {
        b.iter(|| black_box(record_signer(black_box(&rec))))
    });
    let mut bindings = shoal_core::Bindings::default();
    c.bench_function("member_key/admit_record", |b| {
        b.iter(|| black_box(bindings.admit(black_box(&rec), |_| true)))
    });
    let ring =
        Keyring::from_keys((1..=4).map(|b| Key::from_bytes([b; KEY_LEN])).collect()).expect("ring");
    let state = KeyMsg::state(&ring).encode();
    let sealed = seal_to(&keys, &other.public().seal, [3; 24], &state);
    println!(
        "keyring State of 4 keys: {} B, {} B sealed to one member",
        state.len(),
        KeyMsg::Sealed {
            sealed: sealed.clone()
        }
        .encode()
        .len()
    );
    c.bench_function("member_key/seal_keyring_state", |b| {
        b.iter(|| {
            black_box(seal_to(
                &keys,
                &other.public().seal,
                [3; 24],
                black_box(&state),
            ))
        })
    });
    c.bench_function("member_key/open_keyring_state", |b| {
        b.iter(|| black_box(open_sealed(&other, black_box(&sealed))))
    });
}

/// One rollout (`keys_change` then draining what it queued) from a node holding `m` bound
/// members, timed `runs` times; the median, in ms.
fn rollout_ms(m: usize, runs: usize) -> f64 {
    use std::sync::Arc;
    let name = |i: usize| format!("m{i}");
    let at = |i: usize| {
        SocketAddr::from((
            [
                10,
                1 + (i / 65_000) as u8,
                (i / 250 % 250) as u8,
                (i % 250 + 1) as u8,
            ],
            7946,
        ))
    };
    let mut secret = [0u8; SECRET_LEN];
    let bindings: Vec<(Arc<str>, _)> = (1..m)
        .map(|i| {
            secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (
                Arc::from(name(i)),
                MemberKeys::from_secret(&secret).public(),
            )
        })
        .collect();
    let members: Vec<(NodeId, Arc<MetaRecord>)> = (1..m)
        .map(|i| {
            let rec = MetaRecord {
                name: Arc::from(name(i)),
                addr: at(i),
                generation: 1,
                version: 1,
                leaving: false,
                meta: NodeMeta::default(),
                ext: Default::default(),
            };
            (NodeId::new(&name(i), at(i), 1), Arc::new(rec))
        })
        .collect();
    let cfg = NodeConfig {
        name: name(0),
        advertise: at(0),
        cluster_label: String::new(),
        timings: Profile::Lan.timings(),
        seeds: vec![],
        guard: Default::default(),
        track_suspects: true,
        outlier: Default::default(),
        fleet: Default::default(),
    };
    let mut node = Node::new(cfg, 1, NodeMeta::default(), 1, Time(0)).expect("node");
    node.set_max_members(m + 1);
    node.set_trust(TrustConfig {
        keyring: Some(Keyring::new(Key::from_bytes([7; KEY_LEN]))),
        ..TrustConfig::default()
    })
    .expect("trust");
    node.set_member_keys(MemberKeys::from_secret(&[200; SECRET_LEN]), bindings)
        .expect("member keys");
    node.adopt_members(Time(0), &members).expect("adopt");
    while node.poll_transmit().is_some() {}
    let mut times: Vec<f64> = (0..runs)
        .map(|r| {
            let t = std::time::Instant::now();
            let key = Key::from_bytes([50 + r as u8; KEY_LEN]);
            let id = node
                .keys_change(Time(1000), shoal_core::KeyOpKind::Install, key)
                .expect("install");
            let mut sent = 0;
            while node.poll_transmit().is_some() {
                sent += 1;
            }
            assert!(node.keys_rollout(id).is_some() && sent >= m - 1, "{sent}");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let smoke =
        std::env::args().any(|a| a == "--test") || std::env::var("SHOAL_BENCH_SMOKE").is_ok();
    // `-- rollout`: only the rollout timing.
    if std::env::args().skip(1).any(|a| a == "rollout") {
        for m in [1_000, 10_000] {
            let ms = rollout_ms(m, 3);
            println!("rollout to {m} members: {ms:.1} ms (median of 3)");
        }
        return;
    }
    let (n, secs) = if smoke { (5, 10) } else { (10, 600) };
    println!("{n} nodes, LAN profile, {secs} virtual s after forming");
    let mut rows = Vec::new();
    for mode in [Mode::Plaintext, Mode::Encrypted, Mode::Signed] {
        let r = run(n, secs, mode);
        let per_node_s = (n as u64 * secs) as f64;
        println!(
            "{:>9}: {:.2} datagrams/s and {:.0} B/s per node, {:.1} B per datagram, CPU {:.4} % of a core per node",
            match mode {
                Mode::Plaintext => "plaintext",
                Mode::Encrypted => "encrypted",
                Mode::Signed => "signed",
            },
            r.datagrams as f64 / per_node_s,
            r.bytes as f64 / per_node_s,
            r.bytes as f64 / r.datagrams.max(1) as f64,
            100.0 * r.cpu / per_node_s,
        );
        rows.push(r);
    }
    let overhead = |name: &str, p: &Run, e: &Run| {
        println!(
            "{name}: {:+.1} B per datagram, {:+.1} % bytes, CPU {:+.4} % of a core per node",
            e.bytes as f64 / e.datagrams.max(1) as f64 - p.bytes as f64 / p.datagrams.max(1) as f64,
            100.0 * (e.bytes as f64 / p.bytes.max(1) as f64 - 1.0),
            100.0 * (e.cpu - p.cpu) / (n as u64 * secs) as f64,
        );
    };
    overhead("encryption over plaintext", &rows[0], &rows[1]);
    overhead("member keys over encryption", &rows[1], &rows[2]);
    let mut c = Criterion::default().configure_from_args();
    if smoke {
        c = c
            .warm_up_time(std::time::Duration::from_millis(50))
            .measurement_time(std::time::Duration::from_millis(200))
            .sample_size(10);
    }
    member_key_benches(&mut c);
    c.final_summary();
    for m in if smoke {
        vec![100]
    } else {
        vec![1_000, 10_000]
    } {
        let ms = rollout_ms(m, 3);
        println!(
            "rollout to {m} members: {ms:.1} ms ({:.1} us per member, median of 3)",
            1000.0 * ms / m as f64
        );
    }
}
