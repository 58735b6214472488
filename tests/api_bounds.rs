//! The HTTP listeners within bounds, against a real agent: many idle connections do not
//! starve the API, connections and watch streams past their bound get a 503 with a JSON
//! error (counted in /metrics), idle and slow connections are closed after their timeout
//! while a watch stream is not, the Unix socket's mode and group come from the config, and
//! every command needs the token when one is set. Every wait is a bounded poll.

mod common;

use common::wait_until_async;
use shoal::agent::datadir::process_key;
use shoal::agent::Agent;
use shoal::api::limits::{ApiLimits, SocketAccess};
use shoal::api::{self, ApiHandle, ApiOptions};
use shoal::client::Client;
use shoal::config::{AgentArgs, Config};
use shoal_core::Profile;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(dir: &Path) -> Config {
    let args = AgentArgs {
        name: Some("n0".into()),
        bind: Some("127.0.0.1:0".into()),
        profile: Some(Profile::Local),
        data_dir: Some(dir.join("n0")),
        encrypt: Some(process_key()),
        ..Default::default()
    };
    Config::load_with_env(&args, &|_| None).expect("valid test config")
}

struct Fixture {
    _dir: tempfile::TempDir,
    agent: Agent,
    api: ApiHandle,
    unix: Client,
    http: SocketAddr,
}

async fn fixture(limits: ApiLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(dir.path())).await.unwrap();
    let sock = dir.path().join("api.sock");
    let api = api::spawn(
        agent.shared(),
        ApiOptions {
            unix: Some(sock.clone()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            limits,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let http = api.http_addr().unwrap();
    Fixture {
        _dir: dir,
        agent,
        api,
        unix: Client::parse(&format!("unix:{}", sock.display())).unwrap(),
        http,
    }
}

impl Fixture {
    async fn stop(self) {
        self.api.shutdown().await;
        self.agent.stop().await;
    }
}

/// One request on a fresh TCP connection: (status, body). Bounded by 5 s.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("answer within 5 s")
        .expect("request");
    parse_answer(&out)
}

fn parse_answer(out: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// True when the peer has closed `s` (read gives end of file or an error) within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    while start.elapsed() < limit {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
    false
}

fn metric(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
}

#[tokio::test]
async fn two_hundred_idle_connections_do_not_starve_the_api() {
    let f = fixture(ApiLimits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..250 {
        idle.push(TcpStream::connect(f.http).await.unwrap());
    }
    // The agent holds them all (well under the default bound) and still answers at once,
    // on the socket and on TCP.
    let m = f.unix.local().await.unwrap();
    assert_eq!(m.member.name, "n0");
    let (status, body) = get(f.http, "/v1/self").await;
    assert_eq!(status, 200, "{body}");
    let metrics = f.unix.metrics().await.unwrap();
    assert!(
        metric(&metrics, "shoal_api_connections ") >= 250,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "shoal_api_rejected_total{bound=\"connections\"} "),
        0
    );
    drop(idle);
    f.stop().await;
}

#[tokio::test]
async fn past_the_connection_bound_a_503_then_idle_ones_time_out_and_the_api_answers() {
    let f = fixture(ApiLimits {
        max_connections: 40,
        max_watches: 4,
        idle_timeout: Duration::from_millis(800),
        header_timeout: Duration::from_millis(800),
    })
    .await;
    // 40 idle TCP connections fill the bound (the Unix socket has its own).
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(f.http).await.unwrap());
    }
    wait_until_async(
        Duration::from_secs(5),
        "40 connections are open",
        || async {
            let m = f.unix.metrics().await.unwrap();
            metric(&m, "shoal_api_connections ") >= 40
        },
    )
    .await;
    // The 41st gets a clear 503 with a JSON error.
    let (status, body) = get(f.http, "/v1/self").await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("api_max_connections"), "{msg}");
    let metrics = f.unix.metrics().await.unwrap();
    assert!(
        metric(&metrics, "shoal_api_rejected_total{bound=\"connections\"} ") >= 1,
        "{metrics}"
    );
    // The idle ones are closed after the idle timeout; then TCP answers again.
    for s in idle.iter_mut() {
        assert!(closed_within(s, Duration::from_secs(10)).await);
    }
    wait_until_async(Duration::from_secs(10), "TCP answers 200 again", || async {
        get(f.http, "/v1/self").await.0 == 200
    })
    .await;
    let metrics = f.unix.metrics().await.unwrap();
    assert!(
        metric(&metrics, "shoal_api_timed_out_total ") >= 40,
        "{metrics}"
    );
    f.stop().await;
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_but_a_watch_stream_is_not() {
    let limits = ApiLimits {
        idle_timeout: Duration::from_millis(600),
        header_timeout: Duration::from_millis(400),
        ..Default::default()
    };
    let f = fixture(limits).await;
    let mut watch = f.unix.watch(None).await.unwrap();
    assert!(watch.next().await.unwrap().is_ok(), "snapshot line");

    // A connection that never sends anything.
    let mut silent = TcpStream::connect(f.http).await.unwrap();
    // A connection that starts a head and never ends it (slowloris).
    let mut slow = TcpStream::connect(f.http).await.unwrap();
    slow.write_all(b"GET /v1/self HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    // A keep-alive connection after one answered request.
    let mut kept = TcpStream::connect(f.http).await.unwrap();
    kept.write_all(b"GET /v1/self HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse_answer(&buf[..n]).0, 200);

    let start = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await);
    assert!(closed_within(&mut slow, Duration::from_secs(10)).await);
    assert!(closed_within(&mut kept, Duration::from_secs(10)).await);
    // Not before their timeouts (the earliest is the 400 ms header timeout).
    assert!(start.elapsed() >= Duration::from_millis(300));

    // The watch stream has been quiet for longer than the idle timeout, yet is open: a
    // change made now arrives on it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    f.unix
        .set_tags(
            [("after".to_string(), "idle".to_string())]
                .into_iter()
                .collect(),
            vec![],
        )
        .await
        .unwrap();
    let mut got = false;
    for _ in 0..20 {
        let line = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("a line within 5 s")
            .expect("stream still open")
            .unwrap();
        if format!("{line:?}").contains("after") {
            got = true;
            break;
        }
    }
    assert!(got, "the tag change reached the watch stream");
    drop(watch);
    f.stop().await;
}

/// Opens `GET /v1/watch` on a raw connection and returns it (the stream stays open) with the
/// answer's status.
async fn open_watch(addr: SocketAddr) -> (TcpStream, u16) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/watch HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 256 {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&head).to_string();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"));
    (s, status)
}

#[tokio::test]
async fn past_the_watch_bound_a_503_and_a_freed_slot_is_reused() {
    let f = fixture(ApiLimits {
        max_watches: 2,
        ..Default::default()
    })
    .await;
    let mut w1 = f.unix.watch(None).await.unwrap();
    let mut w2 = f.unix.watch(None).await.unwrap();
    assert!(w1.next().await.unwrap().is_ok());
    assert!(w2.next().await.unwrap().is_ok());
    let err = match f.unix.watch(None).await {
        Ok(_) => panic!("a third watch stream was accepted past the bound of 2"),
        Err(e) => e,
    };
    assert_eq!(err.status(), Some(503), "{err}");
    assert!(err.to_string().contains("api_max_watches"), "{err}");
    // The TCP listener has watch streams of its own: whoever reaches it cannot take the
    // socket's, nor the other way round. Two open there, the third refused.
    let mut tcp_watches = Vec::new();
    for _ in 0..2 {
        let (s, status) = open_watch(f.http).await;
        assert_eq!(status, 200, "the socket's full bound does not refuse TCP");
        tcp_watches.push(s);
    }
    let (status, body) = get(f.http, "/v1/watch").await;
    assert_eq!(status, 503);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
    let metrics = f.unix.metrics().await.unwrap();
    assert_eq!(metric(&metrics, "shoal_api_watches "), 4, "{metrics}");
    assert_eq!(
        metric(&metrics, "shoal_api_rejected_total{bound=\"watches\"} "),
        2
    );
    drop(tcp_watches);
    // Other routes still answer.
    assert_eq!(get(f.http, "/v1/members").await.0, 200);
    drop(w1);
    let mut w3 = None;
    let start = Instant::now();
    while w3.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a freed watch slot was not reused within 5 s"
        );
        match f.unix.watch(None).await {
            Ok(w) => w3 = Some(w),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    drop((w2, w3));
    f.stop().await;
}

#[tokio::test]
async fn consul_listener_has_the_same_bound() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(dir.path())).await.unwrap();
    let limits = ApiLimits {
        max_connections: 5,
        max_watches: 1,
        ..Default::default()
    };
    let consul = api::consul::spawn_with(agent.shared(), "127.0.0.1:0".parse().unwrap(), limits)
        .await
        .unwrap();
    let addr = consul.local_addr();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let shared = agent.shared();
    wait_until_async(
        Duration::from_secs(5),
        "5 Consul connections are open",
        || {
            let v = shared.api_load.view();
            async move { v.connections >= 5 }
        },
    )
    .await;
    let (status, body) = get(addr, "/v1/agent/self").await;
    assert_eq!(status, 503, "{body}");
    drop(held);
    wait_until_async(
        Duration::from_secs(5),
        "the Consul API answers again",
        || async { get(addr, "/v1/agent/self").await.0 == 200 },
    )
    .await;
    // Writes are refused whatever the bound (the Consul API is read-only).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"PUT /v1/agent/service/register HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse_answer(&out).0, 405);
    consul.shutdown().await;
    agent.stop().await;
}

#[tokio::test]
async fn socket_mode_and_group_come_from_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(dir.path())).await.unwrap();
    // Our own primary group: the one group a test may always give a file it owns.
    let gid = std::fs::metadata(dir.path()).unwrap().gid();
    let sock = dir.path().join("group.sock");
    let api = api::spawn(
        agent.shared(),
        ApiOptions {
            unix: Some(sock.clone()),
            socket: SocketAccess::parse(None, Some(&gid.to_string())).unwrap(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let m = std::fs::metadata(&sock).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!(m.gid(), gid);
    api.shutdown().await;

    // The default stays 0600.
    let sock = dir.path().join("private.sock");
    let api = api::spawn(
        agent.shared(),
        ApiOptions {
            unix: Some(sock.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let m = std::fs::metadata(&sock).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    api.shutdown().await;
    agent.stop().await;

    // The config file's [api_server] table, validated.
    let load = |table: &str| {
        let file = dir.path().join("shoal.toml");
        std::fs::write(&file, format!("[api_server]\n{table}\n")).unwrap();
        let args = AgentArgs {
            config: Some(file),
            insecure: true,
            data_dir: Some(dir.path().join("cfg")),
            ..Default::default()
        };
        Config::load_with_env(&args, &|_| None)
    };
    let c = load("socket_mode = \"0640\"\nmax_connections = 20\nmax_watches = 3\nidle_timeout = \"5s\"\nheader_timeout = \"2s\"").unwrap();
    assert_eq!(c.api_server.socket.mode, 0o640);
    assert_eq!(c.api_server.limits.max_connections, 20);
    assert_eq!(c.api_server.limits.max_watches, 3);
    assert_eq!(c.api_server.limits.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.api_server.limits.header_timeout, Duration::from_secs(2));
    for bad in [
        "socket_mode = \"0666\"",
        "socket_mode = \"0400\"",
        "socket_group = \"no-such-group-on-this-host\"",
        "max_connections = 0",
        "max_watches = 100000",
        "idle_timeout = \"0s\"",
        "header_timeout = \"soon\"",
        "sockt_mode = \"0660\"",
    ] {
        assert!(load(bad).is_err(), "{bad} was accepted");
    }
    let d = Config::load_with_env(
        &AgentArgs {
            insecure: true,
            ..Default::default()
        },
        &|_| None,
    )
    .unwrap();
    assert_eq!(d.api_server.socket.mode, 0o600);
    assert_eq!(d.api_server.limits, ApiLimits::default());
}

#[tokio::test]
async fn dns_tcp_past_its_bound_closes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(dir.path())).await.unwrap();
    let dns = shoal::dns::spawn(
        agent.shared(),
        "127.0.0.1:0".parse().unwrap(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let addr = dns.local_addr();
    let mut held = Vec::new();
    for _ in 0..shoal::dns::MAX_TCP_CONNS {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    // Closed well before the idle timeout of the held ones.
    assert!(closed_within(&mut extra, shoal::dns::TCP_IDLE / 2).await);
    assert!(
        dns.stats()
            .tcp_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    drop(held);
    dns.shutdown().await;
    agent.stop().await;
}

/// Sends `request` as it is to `addr` and returns the answer's status.
async fn raw_status(addr: SocketAddr, request: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answer within 5 s")
        .unwrap();
    parse_answer(&out).0
}

/// A web page cannot drive the loopback API: a command carrying `Origin` (what every browser
/// sends with a POST or PUT) is refused, and a request naming a non-loopback `Host` (a page
/// that reached 127.0.0.1 through DNS rebinding) is refused even for reads; curl, the CLI and
/// Prometheus (loopback names, no Origin) are served.
#[tokio::test]
async fn web_pages_cannot_drive_the_loopback_api() {
    let f = fixture(ApiLimits::default()).await;
    let put = |host: &str, origin: Option<&str>| {
        let body = r#"{"set":{"role":"db"}}"#;
        format!(
            "PUT /v1/tags HTTP/1.1\r\nhost: {host}\r\n{}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            origin.map(|o| format!("origin: {o}\r\n")).unwrap_or_default(),
            body.len()
        )
    };
    let read =
        |host: &str| format!("GET /v1/self HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    assert_eq!(
        raw_status(f.http, &put("localhost", Some("http://evil.example"))).await,
        403
    );
    assert_eq!(raw_status(f.http, &put("evil.example", None)).await, 421);
    assert_eq!(raw_status(f.http, &read("evil.example:7947")).await, 421);
    assert_eq!(f.unix.local().await.unwrap().member.tags.get("role"), None);
    // Loopback names and addresses are served.
    for host in ["localhost", "127.0.0.1:7947", "[::1]:7947"] {
        assert_eq!(raw_status(f.http, &read(host)).await, 200, "{host}");
    }
    assert_eq!(raw_status(f.http, &put("127.0.0.1", None)).await, 200);
    assert_eq!(
        f.unix
            .local()
            .await
            .unwrap()
            .member
            .tags
            .get("role")
            .map(String::as_str),
        Some("db")
    );
    f.stop().await;
}
