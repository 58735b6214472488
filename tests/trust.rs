//! Trust, end to end with real agents on loopback: no key no start, one agent per data
//! directory, an agent with the wrong key never joins, key rotation across five live agents
//! through the API with no member ever marked down, and a flood of random datagrams that
//! changes nothing.

mod common;

use common::wait_until;
use shoal::agent::datadir::{generate_key, process_key};
use shoal::agent::{Agent, AgentShared};
use shoal::api::{self, ApiOptions};
use shoal::client::Client;
use shoal::config::{AgentArgs, Config};
use shoal_core::KeyOpKind;
use shoal_core::{Event, EventKind, Profile, ServedStatus};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

fn config(name: &str, join: Option<SocketAddr>, dir: &Path, key: Option<String>) -> Config {
    let args = AgentArgs {
        name: Some(name.to_string()),
        bind: Some("127.0.0.1:0".into()),
        join: join.map(|j| vec![j.to_string()]).unwrap_or_default(),
        profile: Some(Profile::Local),
        data_dir: Some(dir.join(name)),
        encrypt: key,
        ..Default::default()
    };
    Config::load_with_env(&args, &|_| None).expect("valid test config")
}

fn alive(s: &AgentShared) -> usize {
    s.lock()
        .members()
        .iter()
        .filter(|m| m.status == ServedStatus::Alive)
        .count()
}

/// Every member event received so far, with its status.
fn drain(rx: &mut broadcast::Receiver<Arc<Event>>, seen: &mut Vec<(String, ServedStatus)>) {
    loop {
        match rx.try_recv() {
            Ok(ev) => {
                if let EventKind::Member { member, .. } = &ev.kind {
                    seen.push((member.name.clone(), member.status));
                }
            }
            Err(broadcast::error::TryRecvError::Lagged(n)) => panic!("watch stream lagged by {n}"),
            Err(_) => return,
        }
    }
}

#[tokio::test]
async fn no_key_no_start_and_one_agent_per_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let err = match Agent::start(&config("n0", None, dir.path(), None)).await {
        Ok(_) => panic!("an agent without a key started"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("--encrypt") && err.contains("--insecure"),
        "{err}"
    );
    let mut insecure = config("n0", None, dir.path(), None);
    insecure.trust.insecure = true;
    let a = Agent::start(&insecure).await.expect("--insecure starts");
    assert!(a.shared().lock().is_insecure());
    let err = match Agent::start(&insecure).await {
        Ok(_) => panic!("two agents shared a data directory"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("in use by another agent"), "{err}");
    a.stop().await;
}

#[tokio::test]
async fn an_agent_with_the_wrong_key_never_joins() {
    let dir = tempfile::tempdir().unwrap();
    let key = Some(process_key());
    let a0 = Agent::start(&config("n0", None, dir.path(), key.clone()))
        .await
        .unwrap();
    let seed = a0.local_addr();
    let a1 = Agent::start(&config("n1", Some(seed), dir.path(), key))
        .await
        .unwrap();
    let (s0, s1) = (a0.shared(), a1.shared());
    wait_until(Duration::from_secs(5), "n0 and n1 converge", || {
        alive(&s0) == 2 && alive(&s1) == 2
    })
    .await;
    let mut rx0 = s0.events.subscribe();
    let other = Some(generate_key().unwrap().to_base64());
    let bad = Agent::start(&config("intruder", Some(seed), dir.path(), other))
        .await
        .unwrap();
    let sb = bad.shared();
    // Three seconds of announces and rejoin attempts (the local profile retries every 200 ms
    // or so): nobody ever sees the intruder, and it sees nobody.
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        drain(&mut rx0, &mut seen);
        assert_eq!(sb.lock().members().len(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drain(&mut rx0, &mut seen);
    assert!(seen.iter().all(|(n, _)| n != "intruder"), "{seen:?}");
    assert_eq!(s0.lock().members().len(), 2);
    assert!(s0.lock().stats().dropped_auth > 0);
    bad.stop().await;
    a1.stop().await;
    a0.stop().await;
}

/// `n` agents with the key `key`, each joining the first.
async fn start_cluster(n: usize, dir: &Path, key: &shoal_core::Key) -> Vec<Agent> {
    let mut agents = Vec::new();
    for i in 0..n {
        let seed = agents.first().map(|a: &Agent| a.local_addr());
        let cfg = config(&format!("n{i}"), seed, dir, Some(key.to_base64()));
        agents.push(Agent::start(&cfg).await.unwrap());
    }
    agents
}

#[tokio::test]
async fn key_rotation_across_five_live_agents_marks_nobody_down() {
    const N: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let old = generate_key().unwrap();
    let agents = start_cluster(N, dir.path(), &old).await;
    let shared: Vec<Arc<AgentShared>> = agents.iter().map(|a| a.shared()).collect();
    wait_until(Duration::from_secs(10), "five agents converge", || {
        shared.iter().all(|s| alive(s) == N)
    })
    .await;
    let mut rxs: Vec<_> = shared.iter().map(|s| s.events.subscribe()).collect();
    let sock = dir.path().join("api.sock");
    let api = api::spawn(
        shared[2].clone(),
        ApiOptions {
            unix: Some(sock.clone()),
            http: None,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let client = Client::parse(&format!("unix:{}", sock.display())).unwrap();
    let new = generate_key().unwrap();
    let mut seen = Vec::new();
    for (op, key) in [
        (KeyOpKind::Install, &new),
        (KeyOpKind::Use, &new),
        (KeyOpKind::Remove, &old),
    ] {
        let r = client.keys_change(op, &key.to_base64()).await.unwrap();
        assert_eq!(r.asked, N - 1, "{r:?}");
        assert_eq!(r.confirmed.len(), N - 1, "{op:?}: {r:?}");
        assert!(r.missing.is_empty() && r.refused.is_empty(), "{r:?}");
        // Let the cluster gossip a while under the new ring, watching every stream.
        let end = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < end {
            for rx in rxs.iter_mut() {
                drain(rx, &mut seen);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for rx in rxs.iter_mut() {
        drain(rx, &mut seen);
    }
    let bad: Vec<_> = seen
        .iter()
        .filter(|(_, s)| !matches!(s, ServedStatus::Alive))
        .collect();
    assert!(
        bad.is_empty(),
        "members changed status during rotation: {bad:?}"
    );
    // The primary cannot be removed.
    let err = client
        .keys_change(KeyOpKind::Remove, &new.to_base64())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    for (i, s) in shared.iter().enumerate() {
        let n = s.lock();
        let ring = n.keyring().unwrap();
        assert_eq!(ring.keys().len(), 1, "n{i}");
        assert_eq!(ring.primary(), &new, "n{i}");
    }
    // Persisted: every agent's keyring file comes to hold only the new key.
    wait_until(
        Duration::from_secs(5),
        "every keyring file holds only the new key",
        || {
            (0..N).all(|i| {
                let text =
                    std::fs::read_to_string(dir.path().join(format!("n{i}")).join("keyring"))
                        .unwrap_or_default();
                text.contains(&new.to_base64()) && !text.contains(&old.to_base64())
            })
        },
    )
    .await;
    api.shutdown().await;
    for a in agents {
        a.stop().await;
    }
}

#[tokio::test]
async fn a_flood_of_random_datagrams_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = Some(process_key());
    let a0 = Agent::start(&config("n0", None, dir.path(), key.clone()))
        .await
        .unwrap();
    let a1 = Agent::start(&config("n1", Some(a0.local_addr()), dir.path(), key))
        .await
        .unwrap();
    let (s0, s1) = (a0.shared(), a1.shared());
    wait_until(Duration::from_secs(5), "converge", || {
        alive(&s0) == 2 && alive(&s1) == 2
    })
    .await;
    let before = s0.lock().members();
    let mut rx = s0.events.subscribe();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // 20,000 datagrams: random bytes, and random bodies behind valid envelopes (plaintext
    // and with the sealed flag), deterministic from a fixed seed.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000u32 {
        let len = (next() % 1500) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && d.len() > 8 {
            d[..6].copy_from_slice(&[b'S', b'H', 1, ((i / 2) % 4) as u8, 0, (i % 3) as u8]);
        }
        let _ = sock.send_to(&d, a0.local_addr());
        if i % 100 == 0 {
            // Paced, so that the kernel delivers most of them rather than the socket buffer
            // overflowing (a datagram it drops proves nothing).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = Vec::new();
    drain(&mut rx, &mut seen);
    // (n1's metadata may still arrive: only its record changes then, never a status.)
    assert!(
        seen.iter()
            .all(|(m, s)| m == "n1" && *s == ServedStatus::Alive),
        "the view changed: {seen:?}"
    );
    let names = |v: Vec<shoal_core::MemberView>| -> Vec<(String, ServedStatus)> {
        v.into_iter().map(|m| (m.name, m.status)).collect()
    };
    let (members, st, trust) = {
        let n = s0.lock();
        (n.members(), n.stats().clone(), n.trust_stats())
    };
    assert_eq!(names(members), names(before));
    assert!(st.dropped_total() > 5_000, "{st:?}");
    assert!(st.dropped_auth > 0 && st.dropped_plaintext > 0, "{st:?}");
    // Nothing a stranger sends grows a table: the replay table holds the real peer only
    // (its datagrams from before this agent bound its member key, and the pair-tagged ones
    // since: two entries, docs/security.md).
    assert!(trust.replay_sessions <= 2, "{trust:?}");
    a1.stop().await;
    a0.stop().await;
}

#[tokio::test]
async fn api_commands_need_the_token_when_one_is_set() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let mut cfg = config("n0", None, dir.path(), Some(process_key()));
    cfg.trust.api_token_file = Some(token_file);
    let a = Agent::start(&cfg).await.unwrap();
    let router = api::router(a.shared());
    let req = |method: &str, path: &str, auth: Option<&str>| {
        let mut b = axum::http::Request::builder().method(method).uri(path);
        if let Some(t) = auth {
            b = b.header("authorization", t);
        }
        b.header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"set":{"a":"b"}}"#))
            .unwrap()
    };
    let status = |r: axum::response::Response| r.status().as_u16();
    let r = router
        .clone()
        .oneshot(req("GET", "/v1/members", None))
        .await
        .unwrap();
    assert_eq!(status(r), 200);
    // Every route that changes something: tags, services, join, leave, force-leave, the
    // guard's overrides and the keyring.
    let commands = [
        ("PUT", "/v1/tags"),
        ("DELETE", "/v1/tags/a"),
        ("PUT", "/v1/services"),
        ("DELETE", "/v1/services/web"),
        ("POST", "/v1/join"),
        ("POST", "/v1/leave"),
        ("POST", "/v1/force-leave/n1"),
        ("POST", "/v1/guard/freeze"),
        ("POST", "/v1/guard/thaw"),
        ("POST", "/v1/keys"),
        ("PUT", "/v1/event/deploy"),
        ("POST", "/v1/query/uptime"),
    ];
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Bearer s3cre"),
    ] {
        for (method, path) in commands {
            let r = router
                .clone()
                .oneshot(req(method, path, auth))
                .await
                .unwrap();
            assert_eq!(status(r), 401, "{method} {path} with {auth:?}");
        }
    }
    assert!(!a.shared().lock().has_left());
    assert_eq!(
        a.shared().lock().guard_report().state,
        shoal_core::GuardState::Normal
    );
    let r = router
        .clone()
        .oneshot(req("PUT", "/v1/tags", Some("Bearer s3cret")))
        .await
        .unwrap();
    assert_eq!(status(r), 200);
    a.stop().await;
}

/// One HTTP/1.1 request over TCP (connection closed after it): the status code and body.
async fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"set":{"a":"b"}}"#;
    let auth = auth
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"));
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// `listen_remote`: the local API for other hosts is refused without a token; with one, reads
/// (`/metrics` for a central Prometheus, members) are open and every command needs the token.
/// The listener is on 127.0.0.2 (tests stay on loopback): `Reach::Remote` is what is under
/// test, and it applies whatever the address.
#[tokio::test]
async fn an_api_for_other_hosts_opens_reads_and_needs_the_token_for_commands() {
    use shoal::api::limits::Reach;
    let dir = tempfile::tempdir().unwrap();
    let remote = |http: &str| ApiOptions {
        unix: None,
        http: Some(http.parse().unwrap()),
        reach: Reach::Remote,
        ..Default::default()
    };
    // No token: refused, nothing bound.
    let cfg = config("n0", None, dir.path(), Some(process_key()));
    let a = Agent::start(&cfg).await.unwrap();
    match api::spawn(a.shared(), remote("127.0.0.2:0")).await {
        Err(api::ApiError::RemoteWithoutToken(addr)) => {
            assert_eq!(addr.ip().to_string(), "127.0.0.2")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("the API was served to other hosts without a token"),
    }
    // Without listen_remote, a non-loopback address is refused even with a token.
    let local = ApiOptions {
        reach: Reach::Local,
        ..remote("0.0.0.0:0")
    };
    assert!(matches!(
        api::spawn(a.shared(), local).await,
        Err(api::ApiError::NotLoopback(_))
    ));
    a.stop().await;

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let mut cfg = config("n1", None, dir.path(), Some(process_key()));
    cfg.trust.api_token_file = Some(token_file);
    let a = Agent::start(&cfg).await.unwrap();
    let h = api::spawn(a.shared(), remote("127.0.0.2:0")).await.unwrap();
    let addr = h.http_addr().unwrap();
    let (code, body) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("shoal_"), "{body}");
    assert_eq!(http(addr, "GET", "/v1/members", None).await.0, 200);
    for auth in [None, Some("wrong")] {
        let (code, body) = http(addr, "PUT", "/v1/tags", auth).await;
        assert_eq!(code, 401, "{body}");
        assert_eq!(http(addr, "POST", "/v1/guard/thaw", auth).await.0, 401);
    }
    assert!(!a.shared().lock().own_meta().tags.contains_key("a"));
    assert_eq!(http(addr, "PUT", "/v1/tags", Some("s3cret")).await.0, 200);
    assert_eq!(
        a.shared()
            .lock()
            .own_meta()
            .tags
            .get("a")
            .map(String::as_str),
        Some("b")
    );
    // The Consul-compatible API (reads only) for other hosts needs no token.
    let c = api::consul::spawn_reach(
        a.shared(),
        "127.0.0.2:0".parse().unwrap(),
        Default::default(),
        Reach::Remote,
    )
    .await
    .unwrap();
    assert_eq!(
        http(c.local_addr(), "GET", "/v1/catalog/services", None)
            .await
            .0,
        200
    );
    c.shutdown().await;
    h.shutdown().await;
    a.stop().await;
}

/// An agent down during `keys install` and `keys use` comes back with only the old key, gets
/// in (the others still accept the old key), is sent the new ring and ends with the new
/// primary; one down during `keys remove` comes back with the old ring and is brought up to
/// date too. The three agents that stayed up never see any member other than the two
/// restarted ones leave `alive`, and the restarted agents never mark anybody down.
#[tokio::test]
async fn an_agent_down_during_a_rotation_catches_up_when_it_returns() {
    const N: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let old = generate_key().unwrap();
    let mut agents: Vec<Option<Agent>> = Vec::new();
    for i in 0..N {
        let seed = agents
            .first()
            .and_then(|a| a.as_ref().map(|a: &Agent| a.local_addr()));
        let cfg = config(&format!("n{i}"), seed, dir.path(), Some(old.to_base64()));
        agents.push(Some(Agent::start(&cfg).await.unwrap()));
    }
    let seed = agents[0].as_ref().unwrap().local_addr();
    let shared: Vec<Arc<AgentShared>> = agents
        .iter()
        .map(|a| a.as_ref().unwrap().shared())
        .collect();
    wait_until(Duration::from_secs(10), "five agents converge", || {
        shared.iter().all(|s| alive(s) == N)
    })
    .await;
    let mut rxs: Vec<_> = shared[..3].iter().map(|s| s.events.subscribe()).collect();
    let mut seen = Vec::new();
    let sock = dir.path().join("api.sock");
    let api = api::spawn(
        shared[2].clone(),
        ApiOptions {
            unix: Some(sock.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let client = Client::parse(&format!("unix:{}", sock.display())).unwrap();
    let new = generate_key().unwrap();
    // Drains every stream of the agents that stay up, for `d`.
    async fn watch_for(
        d: Duration,
        rxs: &mut [broadcast::Receiver<Arc<Event>>],
        seen: &mut Vec<(String, ServedStatus)>,
    ) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            for rx in rxs.iter_mut() {
                drain(rx, seen);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // n4 is down for `install` and `use`.
    agents[4].take().unwrap().stop().await;
    for op in [KeyOpKind::Install, KeyOpKind::Use] {
        let r = client.keys_change(op, &new.to_base64()).await.unwrap();
        assert!(r.refused.is_empty(), "{r:?}");
        watch_for(Duration::from_millis(300), &mut rxs, &mut seen).await;
    }
    let ring4 = std::fs::read_to_string(dir.path().join("n4").join("keyring")).unwrap();
    assert!(!ring4.contains(&new.to_base64()), "n4 has only the old key");
    let a4 = Agent::start(&config("n4", Some(seed), dir.path(), None))
        .await
        .unwrap();
    let s4 = a4.shared();
    let mut rx4 = s4.events.subscribe();
    let mut seen4 = Vec::new();
    agents[4] = Some(a4);
    wait_until(Duration::from_secs(10), "n4 takes the new primary", || {
        s4.lock().keyring().map(|r| r.primary() == &new) == Some(true)
    })
    .await;
    assert!(s4.lock().trust_stats().keyring_catch_ups >= 1);
    // Back in every view: alive, or `damped` when its stop was seen as a failure (down and
    // back within seconds is one flap: it is served again once back 30 s, flap damping,
    // docs/gray-failures.md). What matters here is that it speaks the new key.
    let up = |s: &AgentShared, name: &str| {
        s.lock().members().iter().any(|m| {
            m.name == name && matches!(m.status, ServedStatus::Alive | ServedStatus::Damped)
        })
    };
    wait_until(Duration::from_secs(10), "n4 is alive everywhere", || {
        shared[..4].iter().all(|s| up(s, "n4")) && alive(&s4) == N
    })
    .await;

    // n3 is down for `remove`.
    agents[3].take().unwrap().stop().await;
    let r = client
        .keys_change(KeyOpKind::Remove, &old.to_base64())
        .await
        .unwrap();
    assert!(r.refused.is_empty(), "{r:?}");
    assert!(r.confirmed.iter().any(|n| n == "n4"), "{r:?}");
    watch_for(Duration::from_millis(300), &mut rxs, &mut seen).await;
    let a3 = Agent::start(&config("n3", Some(seed), dir.path(), None))
        .await
        .unwrap();
    let s3 = a3.shared();
    let mut rx3 = s3.events.subscribe();
    let mut seen3 = Vec::new();
    agents[3] = Some(a3);
    wait_until(Duration::from_secs(10), "n3 drops the removed key", || {
        s3.lock()
            .keyring()
            .map(|r| r.keys().len() == 1 && r.primary() == &new)
            == Some(true)
    })
    .await;
    wait_until(Duration::from_secs(10), "n3 is alive everywhere", || {
        shared[..3].iter().chain([&s4]).all(|s| up(s, "n3")) && alive(&s3) == N
    })
    .await;
    // A while longer, every stream watched.
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        for rx in rxs.iter_mut() {
            drain(rx, &mut seen);
        }
        drain(&mut rx4, &mut seen4);
        drain(&mut rx3, &mut seen3);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for rx in rxs.iter_mut() {
        drain(rx, &mut seen);
    }
    drain(&mut rx4, &mut seen4);
    drain(&mut rx3, &mut seen3);
    let bad: Vec<_> = seen
        .iter()
        .filter(|(n, s)| n != "n3" && n != "n4" && *s != ServedStatus::Alive)
        .collect();
    assert!(bad.is_empty(), "members left alive: {bad:?}");
    // A restarted agent serves its snapshot as `held` while it warms up (the guard), and n4
    // saw n3 stop; but neither ever serves anybody `down` or `left`.
    let bad: Vec<_> = seen4
        .iter()
        .filter(|(n, _)| n != "n3")
        .chain(&seen3)
        .filter(|(_, s)| matches!(s, ServedStatus::Down | ServedStatus::Left))
        .collect();
    assert!(
        bad.is_empty(),
        "restarted agents marked members down: {bad:?}"
    );
    for (i, a) in agents.iter().enumerate() {
        let s = a.as_ref().unwrap().shared();
        let n = s.lock();
        let ring = n.keyring().unwrap();
        assert_eq!(ring.keys().len(), 1, "n{i}");
        assert_eq!(ring.primary(), &new, "n{i}");
        assert_eq!(ring.generation(), 3, "n{i}");
    }
    api.shutdown().await;
    for a in agents.into_iter().flatten() {
        a.stop().await;
    }
}

/// Runs `shoal keys ARGS` against the API socket `sock`, with `stdin` piped in: its exit
/// code and output.
async fn shoal_keys(sock: &Path, args: &[&str], stdin: &str) -> (i32, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["keys", "--api", &format!("unix:{}", sock.display())])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("shoal keys ends within 20 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// One `Hello` sealed with `key` to `to`, as a holder of that key sends it: the datagrams
/// that come back within a second.
async fn hello_sealed_with(key: &shoal_core::Key, to: SocketAddr) -> Vec<Vec<u8>> {
    use shoal_core::KeyMsg;
    use shoal_core::Keyring;
    use shoal_core::{write_header, DatagramKind as Kind};
    use shoal_core::{Trust, TrustConfig};
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut t = Trust::new(
        TrustConfig {
            keyring: Some(Keyring::new(key.clone())),
            ..TrustConfig::default()
        },
        0x0123_4567_89AB_CDEF,
        shoal_core::HashSeed::of_node(0x0123_4567_89AB_CDEF),
    );
    t.set_wall_clock(shoal_core::Time::ZERO, unix_ms);
    let mut plain = Vec::new();
    write_header(&mut plain, "", Kind::Keys);
    plain.extend_from_slice(&KeyMsg::Hello { generation: 0 }.encode());
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let d = t.seal(shoal_core::Time::ZERO, to, plain, 0);
    sock.send_to(&d, to).await.unwrap();
    let mut back = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 2048];
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await {
        back.push(buf[..n].to_vec());
    }
    back
}

/// After `keys install NEW`, `keys use NEW`, `keys remove OLD` (all confirmed, keys given
/// from a file and from stdin, never as arguments), an agent restarted with the same
/// `--encrypt OLD` keeps the ring of its keyring file: OLD is not listed again, a `Hello`
/// sealed with OLD gets no answer (dropped as `retired_key`), and the agent is back in the
/// cluster under NEW.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_key_does_not_come_back_when_an_agent_restarts_with_it() {
    const N: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let old = generate_key().unwrap();
    let mut agents = start_cluster(N, dir.path(), &old).await;
    let seed = agents[0].local_addr();
    let shared: Vec<Arc<AgentShared>> = agents.iter().map(|a| a.shared()).collect();
    wait_until(Duration::from_secs(10), "three agents converge", || {
        shared.iter().all(|s| alive(s) == N)
    })
    .await;
    let sock = dir.path().join("api.sock");
    let opts = ApiOptions {
        unix: Some(sock.clone()),
        ..Default::default()
    };
    let api = api::spawn(shared[0].clone(), opts).await.unwrap();
    // The operator's way: `shoal keygen > new.key`, keys from files and stdin.
    let keygen = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("keygen")
        .output()
        .await
        .unwrap();
    let new_text = String::from_utf8(keygen.stdout).unwrap();
    let new = shoal_core::Key::parse(&new_text).unwrap();
    let new_file = dir.path().join("new.key");
    let old_file = dir.path().join("old.key");
    std::fs::write(&new_file, &new_text).unwrap();
    std::fs::write(&old_file, format!("{}\n", old.to_base64())).unwrap();
    let (nf, of) = (new_file.to_str().unwrap(), old_file.to_str().unwrap());
    for (args, stdin) in [
        (vec!["install", "--from-file", nf], ""),
        (vec!["use", "--from-file", "-"], new_text.as_str()),
        (vec!["remove", "--from-file", of], ""),
    ] {
        let (code, out) = shoal_keys(&sock, &args, stdin).await;
        assert_eq!(code, 0, "{args:?}: {out}");
        assert!(
            out.contains(&format!("{} of {} agents confirmed", N - 1, N - 1)),
            "{out}"
        );
    }
    let (code, out) = shoal_keys(&sock, &["list"], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("retired (never accepted again): {}", old.id())),
        "{out}"
    );
    for (i, s) in shared.iter().enumerate() {
        assert_eq!(
            s.lock().keyring().unwrap().keys(),
            std::slice::from_ref(&new),
            "n{i}"
        );
    }
    // n2 restarts with the same --encrypt OLD (as a unit or DaemonSet that still has it).
    agents.pop().unwrap().stop().await;
    let a2 = Agent::start(&config("n2", Some(seed), dir.path(), Some(old.to_base64())))
        .await
        .unwrap();
    let s2 = a2.shared();
    agents.push(a2);
    let ring2 = s2.lock().keyring().unwrap().clone();
    assert_eq!(
        ring2.keys(),
        std::slice::from_ref(&new),
        "OLD is listed again"
    );
    assert!(ring2.is_retired(&old));
    let up = |s: &AgentShared| {
        s.lock().members().iter().any(|m| {
            m.name == "n2" && matches!(m.status, ServedStatus::Alive | ServedStatus::Damped)
        })
    };
    wait_until(Duration::from_secs(10), "n2 is back under NEW", || {
        shared[..2].iter().all(|s| up(s)) && alive(&s2) == N
    })
    .await;
    // A holder of OLD says hello to the restarted agent and to one that stayed up: nothing
    // comes back (on v0.1.0's rules the restarted agent answered with the whole ring).
    for (s, to) in [(&s2, agents[2].local_addr()), (&shared[0], seed)] {
        let dropped = s.lock().stats().dropped_retired_key;
        let back = hello_sealed_with(&old, to).await;
        assert!(back.is_empty(), "{} datagrams came back", back.len());
        assert_eq!(s.lock().stats().dropped_retired_key, dropped + 1);
    }
    assert_eq!(
        s2.lock().keyring().unwrap().keys(),
        std::slice::from_ref(&new)
    );
    api.shutdown().await;
    for a in agents {
        a.stop().await;
    }
}
