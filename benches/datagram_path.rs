//! Criterion micro-benchmarks of the datagram path and of what the API serves.
//!
//! - `decode`: the envelope check of a plaintext datagram (`open_datagram`) and the opening of
//!   a sealed one (`Trust::open`: envelope, XChaCha20-Poly1305, replay check);
//! - `encode`: sealing a datagram for a peer (`Trust::seal`);
//! - `receive/{plain,sealed}/{1000,10000}`: the core's whole receive of one datagram by a
//!   node holding 1,000 or 10,000 members (`Node::handle_datagram`, then draining what it
//!   produced: the answer, sealed in the sealed case, its timers and events). The datagrams
//!   are the ones a peer sent this node during 5 virtual seconds of a formed cluster, replayed
//!   in turn (re-sealed with fresh counters for the sealed case, so none is a replay);
//! - `view/{1000,10000}`: building the served view (`Node::members`), and the JSON of
//!   `GET /v1/members` and of the watch stream's first line (`serde_json`).
//!
//! Run with `cargo bench --bench datagram_path` (a filter narrows it: `-- receive`). CI only
//! compiles it (`cargo clippy --all-targets`). Nothing here asserts a timing.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use shoal::api::types::{MembersResponse, Snapshot, WatchLine};
use shoal_core::HashSeed;
use shoal_core::{open_datagram, MetaRecord, Node, NodeConfig, NodeId, NodeMeta, Profile, Time};
use shoal_core::{Key, Keyring, KEY_LEN};
use shoal_core::{Trust, TrustConfig};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// Wall clock at the core's time zero, shared by every node and sealer here.
const UNIX_MS_AT_ZERO: u64 = 1_800_000_000_000;
const SIZES: [usize; 2] = [1_000, 10_000];

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((
        [
            10,
            1 + (i / 65_000) as u8,
            (i / 250 % 250) as u8,
            (i % 250 + 1) as u8,
        ],
        7946,
    ))
}

fn name(i: usize) -> String {
    match i {
        0 => "a".into(),
        1 => "b".into(),
        2 => "c".into(),
        _ => format!("m{i}"),
    }
}

fn meta(i: usize) -> NodeMeta {
    // Built from JSON so that fields added later with a default keep this compiling.
    serde_json::from_value(serde_json::json!({
        "tags": {"zone": format!("z{}", i % 3), "role": "web"},
        "services": {"web": {"name": "web", "port": 8080, "tags": {"v": "1"}}},
    }))
    .expect("metadata")
}

fn key() -> Keyring {
    Keyring::new(Key::from_bytes([7; KEY_LEN]))
}

fn trust_config(keyed: bool) -> TrustConfig {
    TrustConfig {
        keyring: keyed.then(key),
        ..TrustConfig::default()
    }
}

fn node(i: usize, keyed: bool, seeds: Vec<SocketAddr>) -> Node {
    let cfg = NodeConfig {
        name: name(i),
        advertise: addr(i),
        cluster_label: String::new(),
        timings: Profile::Lan.timings(),
        seeds,
        guard: Default::default(),
        track_suspects: true,
        outlier: Default::default(),
        fleet: Default::default(),
    };
    let mut n = Node::new(cfg, 1, meta(i), i as u64 + 1, Time(0)).expect("node");
    n.set_wall_clock(Time(0), UNIX_MS_AT_ZERO);
    n.set_trust(trust_config(keyed)).expect("trust");
    n
}

/// Every member of a formed cluster of `m`, with its record (as a full state transfer gives).
fn members(m: usize) -> Vec<(NodeId, Arc<MetaRecord>)> {
    (0..m)
        .map(|i| {
            let n = name(i);
            let rec = MetaRecord {
                name: Arc::from(n.as_str()),
                addr: addr(i),
                generation: 1,
                version: 1,
                leaving: false,
                meta: meta(i),
                ext: Default::default(),
            };
            (NodeId::new(&n, addr(i), 1), Arc::new(rec))
        })
        .collect()
}

/// Node `a` holding `m` members, and the plaintext datagrams `b` sent it over 5 virtual
/// seconds. `b` and `c` know only the three of them, so that `b` talks to `a` often; the
/// other members exist only in `a`'s tables (their datagrams go nowhere).
fn captured(m: usize) -> (Node, Vec<Vec<u8>>) {
    let all = members(m);
    let mut nodes = vec![
        node(0, false, vec![]),
        node(1, false, vec![]),
        node(2, false, vec![]),
    ];
    nodes[0].adopt_members(Time(0), &all).expect("adopt");
    for n in nodes.iter_mut().skip(1) {
        n.adopt_members(Time(0), &all[..3]).expect("adopt");
    }
    for n in nodes.iter_mut() {
        n.start(Time(0));
    }
    // A tiny event loop: timers and 1 ms links between the three.
    let mut wire_q: VecDeque<(u64, usize, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut got = Vec::new();
    let mut now = 0u64;
    let end = 5_000;
    loop {
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Some(t) = n.poll_transmit() {
                if let Some(j) = (0..3).find(|&j| addr(j) == t.dst) {
                    if i == 1 && j == 0 {
                        got.push(t.data.clone());
                    }
                    wire_q.push_back((now + 1, j, addr(i), t.data));
                }
            }
            while n.poll_event().is_some() {}
        }
        let next_timer = nodes
            .iter_mut()
            .filter_map(|n| n.poll_timeout())
            .map(|t| t.as_millis())
            .min();
        let next_wire = wire_q.front().map(|w| w.0);
        let Some(at) = next_timer.into_iter().chain(next_wire).min() else {
            break;
        };
        if at > end {
            break;
        }
        now = at;
        if next_wire == Some(at) {
            if let Some((_, j, from, data)) = wire_q.pop_front() {
                nodes[j].handle_datagram(Time(now), from, &data);
            }
        } else {
            for n in nodes.iter_mut() {
                if n.poll_timeout().map(|t| t.as_millis()) == Some(at) {
                    n.handle_timeout(Time(now));
                }
            }
        }
    }
    assert!(!got.is_empty(), "b sent nothing in 5 s");
    let a = nodes.swap_remove(0);
    (a, got)
}

fn drain(n: &mut Node) -> usize {
    let mut k = 0;
    while let Some(t) = n.poll_transmit() {
        k += t.data.len();
    }
    while n.poll_event().is_some() {}
    k
}

fn sealer() -> Trust {
    sealer_seeded(99)
}

fn sealer_seeded(seed: u64) -> Trust {
    Trust::new(trust_config(true), seed, HashSeed::of_node(seed))
}

fn bench_codec(c: &mut Criterion) {
    let (_, plain) = captured(SIZES[0]);
    let mut g = c.benchmark_group("datagram");
    let sizes: Vec<usize> = plain.iter().map(|d| d.len()).collect();
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    println!("datagrams: {} captured, mean {mean} B", plain.len());
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode/plain", |bch| {
        let mut k = 0;
        bch.iter(|| {
            k = (k + 1) % plain.len();
            open_datagram(&plain[k], "").map(|(kind, body)| (kind, body.len()))
        })
    });
    let now = Time(5_000);
    let to = addr(0);
    let from = addr(1);
    let mut s = sealer();
    g.bench_function("encode/seal", |bch| {
        let mut k = 0;
        bch.iter_batched(
            || {
                k = (k + 1) % plain.len();
                plain[k].clone()
            },
            |d| s.seal(now, to, d, 0),
            BatchSize::SmallInput,
        )
    });
    let mut opener = sealer_seeded(5);
    g.bench_function("decode/sealed", |bch| {
        let mut k = 0;
        bch.iter_batched(
            || {
                k = (k + 1) % plain.len();
                s.seal(now, to, plain[k].clone(), 0)
            },
            |d| opener.open(now, from, &d, "").map(|(_, body)| body.len()),
            BatchSize::SmallInput,
        )
    });
    // The replay check with many senders known: 1,000 senders (their own addresses and
    // sessions), each datagram opened once, from the sender that sealed it.
    let senders: Vec<(SocketAddr, Trust)> = (0..1000u64)
        .map(|i| {
            let a = SocketAddr::from(([10, 1, (i / 256) as u8, (i % 256) as u8], 7946));
            (a, sealer_seeded(1000 + i))
        })
        .collect();
    let mut senders = senders;
    let mut many = sealer_seeded(6);
    for (a, t) in senders.iter_mut() {
        let d = t.seal(now, to, plain[0].clone(), 0);
        let _ = many.open(now, *a, &d, "");
    }
    g.bench_function("decode/sealed-1000-senders", |bch| {
        let mut k = 0;
        bch.iter_batched(
            || {
                k = (k + 1) % senders.len();
                let (a, t) = &mut senders[k];
                (*a, t.seal(now, to, plain[k % plain.len()].clone(), 0))
            },
            |(a, d)| many.open(now, a, &d, "").map(|(_, body)| body.len()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_receive(c: &mut Criterion) {
    let mut g = c.benchmark_group("receive");
    g.throughput(Throughput::Elements(1));
    let now = Time(5_000);
    let from = addr(1);
    for &m in &SIZES {
        let (mut a, plain) = captured(m);
        drain(&mut a);
        g.bench_with_input(BenchmarkId::new("plain", m), &m, |bch, _| {
            let mut k = 0;
            bch.iter(|| {
                k = (k + 1) % plain.len();
                a.handle_datagram(now, from, &plain[k]);
                drain(&mut a)
            })
        });
        // A keyed node with the same members; the same datagrams, each sealed afresh.
        let mut ak = node(0, true, vec![]);
        ak.adopt_members(Time(0), &members(m)).expect("adopt");
        ak.start(Time(0));
        drain(&mut ak);
        let mut s = sealer();
        g.bench_with_input(BenchmarkId::new("sealed", m), &m, |bch, _| {
            let mut k = 0;
            bch.iter_batched(
                || {
                    k = (k + 1) % plain.len();
                    s.seal(now, addr(0), plain[k].clone(), 0)
                },
                |d| {
                    ak.handle_datagram(now, from, &d);
                    drain(&mut ak)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_view(c: &mut Criterion) {
    let mut g = c.benchmark_group("view");
    g.sample_size(20);
    for &m in &SIZES {
        let mut a = node(0, true, vec![]);
        a.adopt_members(Time(0), &members(m)).expect("adopt");
        a.start(Time(0));
        drain(&mut a);
        g.throughput(Throughput::Elements(m as u64));
        g.bench_with_input(BenchmarkId::new("members", m), &m, |bch, _| {
            bch.iter(|| a.members())
        });
        let resp = MembersResponse {
            index: a.index(),
            guard: a.guard_report(),
            members: a.members(),
        };
        let json_len = serde_json::to_vec(&resp).map(|v| v.len()).unwrap_or(0);
        println!("GET /v1/members at {m} members: {json_len} B of JSON");
        g.bench_with_input(BenchmarkId::new("members_json", m), &m, |bch, _| {
            bch.iter(|| serde_json::to_vec(&resp).map(|v| v.len()))
        });
        g.bench_with_input(BenchmarkId::new("api_members", m), &m, |bch, _| {
            bch.iter(|| {
                let r = MembersResponse {
                    index: a.index(),
                    guard: a.guard_report(),
                    members: a.members(),
                };
                serde_json::to_vec(&r).map(|v| v.len())
            })
        });
        let snap = WatchLine::Snapshot(Snapshot {
            index: a.index(),
            guard: a.guard_report(),
            members: a.members(),
        });
        g.bench_with_input(BenchmarkId::new("watch_snapshot_line", m), &m, |bch, _| {
            bch.iter(|| snap.to_line().len())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_codec, bench_receive, bench_view);
criterion_main!(benches);
