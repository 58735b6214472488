//! Fuzz targets, shared by the cargo-fuzz crate in `fuzz/` (long runs, nightly) and by the
//! bounded runs of the normal test suite (`tests/fuzz.rs`), so both exercise the same code.
//!
//! Owns turning arbitrary bytes into inputs: datagrams for a live, keyed node (raw, or sealed
//! with the cluster key so that the decoders behind authentication are reached too; the node
//! has member keys and has bound `peer`'s, so signed records and key material sealed to it
//! are reached as well) and HTTP requests for the local API's router. A target never panics on its own account: a panic
//! means a bug in what it drives. Must not be used by the agent.

use crate::agent::shared::AgentShared;
use shoal_core::{write_header, DatagramKind as Kind, MAX_DATAGRAM};
use shoal_core::{Key, Keyring, KEY_LEN};
use shoal_core::{Node, NodeConfig, NodeMeta, Profile, Time};
use shoal_core::{Trust, TrustConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn key() -> Key {
    Key::from_bytes([0x42; KEY_LEN])
}

/// The member keys of the fuzzed node (`me`) and of the peer it has bound (`peer`).
fn member_keys(who: u8) -> shoal_core::MemberKeys {
    shoal_core::MemberKeys::from_secret(&[who; shoal_core::SECRET_LEN])
}

fn trust() -> TrustConfig {
    TrustConfig {
        keyring: Some(Keyring::new(key())),
        ..TrustConfig::default()
    }
}

/// A key the fuzzed node retired (`keys remove`).
fn retired_key() -> Key {
    Key::from_bytes([0x24; KEY_LEN])
}

/// The fuzzed node's trust: the cluster key, and a retired one.
fn node_trust() -> TrustConfig {
    let mut ring = Keyring::new(key());
    if let Err(e) = ring
        .install(retired_key())
        .and_then(|()| ring.remove(&retired_key()))
    {
        panic!("fuzz keyring: {e}");
    }
    TrustConfig {
        keyring: Some(ring),
        ..TrustConfig::default()
    }
}

fn node(name: &str, port: u16) -> Node {
    let cfg = NodeConfig {
        name: name.into(),
        advertise: SocketAddr::from(([127, 0, 0, 1], port)),
        cluster_label: "fuzz".into(),
        timings: Profile::Local.timings(),
        seeds: vec![SocketAddr::from(([127, 0, 0, 1], port + 1))],
        guard: Default::default(),
        track_suspects: true,
        outlier: Default::default(),
        fleet: Default::default(),
    };
    let mut meta = NodeMeta::default();
    meta.tags.insert("role".into(), "fuzz".into());
    let mut n = match Node::new(cfg, 1, meta, 1, Time(0)) {
        Ok(n) => n,
        Err(e) => panic!("fuzz node: {e}"),
    };
    if let Err(e) = n.set_trust(node_trust()) {
        panic!("fuzz trust: {e}");
    }
    let peer = (Arc::from("peer"), member_keys(2).public());
    if let Err(e) = n.set_member_keys(member_keys(1), vec![peer]) {
        panic!("fuzz member keys: {e}");
    }
    n.start(Time(0));
    n
}

/// The datagram path: envelope, authentication, decryption, replay checks, decoding and the
/// node's handling, on a live node. The first byte picks how the rest is sent: 0 raw, 1 a
/// sealed SWIM body, 2 a sealed shoal message, 3 a sealed keyring message (the high bit set:
/// sealed with a key the node retired; bit 6 set: the bound peer joined first and the input
/// carries its pair tag, `wire::FLAG_PAIR`); a sealed input is then sent a second time (a
/// replay).
pub fn datagram(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut n = node("target", 30000);
    let from = SocketAddr::from(([127, 0, 0, 1], 30001));
    let kind = match mode % 4 {
        0 => {
            n.handle_datagram(Time(1), from, rest);
            drain(&mut n);
            return;
        }
        1 => Kind::Swim,
        2 => Kind::Shoal,
        _ => Kind::Keys,
    };
    let mut cfg = trust();
    if mode & 0x80 != 0 {
        cfg.keyring = Some(Keyring::new(retired_key()));
    }
    let mut sender = Trust::new(
        cfg,
        u64::from(mode),
        shoal_core::HashSeed::of_node(u64::from(mode)),
    );
    let mut plain = Vec::new();
    write_header(&mut plain, "fuzz", kind);
    plain.extend_from_slice(rest);
    let pair = if mode & 0x40 != 0 {
        // The bound peer joins from `from`, so the target checks its pair tag.
        let mut peer = node("peer", 30001);
        peer.join(Time(0), &[n.identity().addr()]).ok();
        while let Some(t) = peer.poll_transmit() {
            n.handle_datagram(Time(0), from, &t.data);
        }
        drain(&mut n);
        shoal_core::pair_keys(&member_keys(2), &member_keys(1).public().seal).map(|(ours, _)| ours)
    } else {
        None
    };
    let sealed = sender.seal_paired(Time(1), n.identity().addr(), plain, 0, pair.as_ref());
    for t in [1, 2] {
        n.handle_datagram(Time(t), from, &sealed);
        drain(&mut n);
    }
    n.handle_timeout(Time(1_000));
    drain(&mut n);
}

fn drain(n: &mut Node) {
    let mut out = 0;
    while let Some(t) = n.poll_transmit() {
        assert!(t.data.len() <= MAX_DATAGRAM, "oversized datagram sent");
        out += t.data.len();
    }
    let _ = out;
    let _ = n.poll_timeout();
    while n.poll_event().is_some() {}
}

thread_local! {
    static API: (tokio::runtime::Runtime, axum::Router, Arc<AgentShared>) = {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let shared = Arc::new(AgentShared::new(node("api", 31000), Instant::now()));
        let router = crate::api::router(shared.clone());
        (rt, router, shared)
    };
}

/// The local API's request handling: routing, query strings, filters and regexes, JSON
/// bodies, blocking queries (cut after 50 ms), on a live node. Input: a method byte, then the
/// path and query up to the first newline, then the body.
pub fn api_request(data: &[u8]) {
    use tower::ServiceExt;
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = match m % 5 {
        0 => "GET",
        1 => "POST",
        2 => "PUT",
        3 => "DELETE",
        _ => "PATCH",
    };
    let (target, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let uri = format!("/{}", target.trim_start_matches('/'));
    let Ok(req) = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
    else {
        return;
    };
    API.with(|(rt, router, shared)| {
        let router = router.clone();
        rt.block_on(async move {
            let call = async {
                let Ok(resp) = router.oneshot(req).await;
                {
                    let status = resp.status();
                    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await;
                    // Every error answer is JSON `{"error": ...}`.
                    if status.is_client_error() || status.is_server_error() {
                        if let Ok(b) = bytes {
                            let v: Result<serde_json::Value, _> = serde_json::from_slice(&b);
                            assert!(
                                v.map(|v| v.get("error").is_some()).unwrap_or(false),
                                "{status} without a JSON error"
                            );
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_millis(50), call).await;
        });
        // Stand in for the event loop: drop what the node produced.
        drain(&mut shared.lock());
    });
}

/// Valid inputs the fuzzers start from (and the bounded runs mutate).
pub fn datagram_seeds() -> Vec<Vec<u8>> {
    use shoal_core::{DigestEntry, ShoalMsg};
    let mut v = Vec::new();
    let want = ShoalMsg::Want {
        names: vec![Arc::from("target"), Arc::from("peer")],
    };
    let digest = ShoalMsg::Digest {
        fingerprint: 7,
        count: 1,
        entries: vec![DigestEntry {
            name: Arc::from("peer"),
            generation: 1,
            version: 1,
        }],
        replies: 1,
    };
    use shoal_core::{FleetMsg, Query, QueryFilter, UserEvent};
    let event = UserEvent {
        id: 5,
        ltime: 3,
        origin: "peer".into(),
        name: "deploy".into(),
        payload: b"v2".to_vec(),
        coalesce: true,
    };
    let fleet = [
        FleetMsg::Events {
            events: vec![event],
        },
        FleetMsg::Have {
            fingerprint: 1,
            count: 1,
            ids: Some(vec![5]),
            replies: 1,
        },
        FleetMsg::Offer { ids: vec![5, 7] },
        FleetMsg::Want { ids: vec![5] },
        FleetMsg::Query(Query {
            id: 6,
            ltime: 4,
            origin: "peer".into(),
            name: "uptime".into(),
            payload: vec![],
            filter: QueryFilter {
                nodes: vec!["target".into()],
                tags: vec![("role".into(), "web".into())],
                service: Some("web".into()),
            },
            timeout_ms: 1000,
        }),
        FleetMsg::Ack {
            id: 6,
            from: "peer".into(),
            answering: true,
        },
        FleetMsg::Answer {
            id: 6,
            from: "peer".into(),
            payload: b"up".to_vec(),
        },
    ]
    .map(ShoalMsg::Fleet);
    for m in [want, digest].into_iter().chain(fleet) {
        let mut d = vec![2u8];
        d.extend_from_slice(&m.encode());
        v.push(d);
    }
    // A real SWIM announce (its body), and a real datagram raw.
    let mut peer = node("peer", 30001);
    peer.join(Time(0), &[SocketAddr::from(([127, 0, 0, 1], 30000))])
        .ok();
    while let Some(t) = peer.poll_transmit() {
        let mut raw = vec![0u8];
        raw.extend_from_slice(&t.data);
        v.push(raw);
    }
    v.push(vec![1u8, 0, 0, 0]);
    // A ping from the bound peer with its pair tag.
    let mut d = vec![0x42u8];
    d.extend_from_slice(&ShoalMsg::Ping { nonce: 3 }.encode());
    v.push(d);
    v.push(vec![3u8, 0, 1, 2, 3]);
    // Keyrings a peer sends: a checked step, a jump to the last generation, a retired key put
    // back; and a hello sealed with the retired key.
    use shoal_core::KeyMsg;
    let other = Key::from_bytes([0x43; KEY_LEN]);
    for (generation, keys) in [
        (1, vec![key(), other.clone()]),
        (u64::MAX, vec![other, key()]),
        (1, vec![key(), retired_key()]),
    ] {
        let ring = Keyring::from_keys(keys).map(|r| r.with_generation(generation));
        if let Ok(r) = ring {
            let mut d = vec![3u8];
            d.extend_from_slice(&KeyMsg::state(&r).encode());
            v.push(d);
        }
    }
    let mut d = vec![0x83u8];
    d.extend_from_slice(&KeyMsg::Hello { generation: 0 }.encode());
    v.push(d);
    // A record signed by the bound peer's key, and key material sealed to the target.
    let mut rec = peer.own_record().clone();
    rec.version += 1;
    member_keys(2).sign_record(&mut rec);
    let push = ShoalMsg::Push {
        records: vec![Arc::new(rec)],
    };
    let mut d = vec![2u8];
    d.extend_from_slice(&push.encode());
    v.push(d);
    let state = shoal_core::KeyMsg::state(&Keyring::new(key()));
    let sealed = shoal_core::KeyMsg::Sealed {
        sealed: shoal_core::seal_to(
            &member_keys(2),
            &member_keys(1).public().seal,
            [9; 24],
            &state.encode(),
        ),
    };
    let mut d = vec![3u8];
    d.extend_from_slice(&sealed.encode());
    v.push(d);
    v
}

/// Valid API requests the fuzzers start from.
pub fn api_seeds() -> Vec<Vec<u8>> {
    [
        "\x00v1/members?status=alive&tag=role=fu.*&name=a.*\n",
        "\x00v1/members?index=1&wait=1s\n",
        "\x00v1/services/web?status=held\n",
        "\x02v1/tags\n{\"set\":{\"a\":\"b\"},\"delete\":[\"c\"]}",
        "\x02v1/services\n{\"name\":\"web\",\"port\":80,\"tags\":{\"x\":\"y\"}}",
        "\x02v1/services\n{\"name\":\"web\",\"id\":\"web-2\",\"port\":81}",
        "\x03v1/services/web-2\n",
        "\x01v1/join\n{\"addrs\":[\"127.0.0.1:1\"]}",
        "\x01v1/reports\n{\"reports\":[{\"service\":\"web\",\"node\":\"api\",\"success\":3,\"error\":30,\"timeout\":1}]}",
        "\x01v1/keys\n{\"op\":\"install\",\"key\":\"AAAA\"}",
        "\x00v1/keys/members\n",
        "\x01v1/keys/forget/peer\n",
        "\x00metrics\n",
        "\x00v1/stats\n",
        "\x02v1/event/deploy?coalesce=false\nv2",
        "\x00v1/events\n",
        "\x03v1/services/web\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
