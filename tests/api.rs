//! The local API end to end: a started core `Node` behind `AgentShared`, served by
//! `api::spawn` on a temporary Unix socket (and loopback TCP), queried with the client, raw
//! HTTP and the CLI. A small test task stands in for the agent's event loop: when woken, it
//! discards the datagrams, publishes the node's events and signals `flushed`.

use shoal::agent::shared::AgentShared;
use shoal::api::types::*;
use shoal::api::{self, ApiError, ApiHandle, ApiOptions};
use shoal::cli::{self, ClientArgs, ClientCommand, Format};
use shoal::client::{Client, ClientError, MemberQuery};
use shoal_core::{Node, NodeConfig, NodeMeta, Profile, ServedStatus, Time};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(10);

fn node(name: &str, port: u16) -> Node {
    let cfg = NodeConfig {
        name: name.to_string(),
        advertise: format!("127.0.0.1:{port}").parse().unwrap(),
        cluster_label: String::new(),
        timings: Profile::Local.timings(),
        seeds: vec![],
        guard: Default::default(),
        track_suspects: true,
    };
    let mut meta = NodeMeta::default();
    meta.tags.insert("role".into(), "test".into());
    let mut n = Node::new(cfg, 1, meta, 7, Time(0)).unwrap();
    n.start(Time(0));
    n
}

/// Stands in for the agent's event loop: on each wake-up (or every 50 ms), drops the
/// datagrams, publishes events in order, and notifies `flushed`.
fn spawn_loop(shared: Arc<AgentShared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..100_000 {
            let _ = tokio::time::timeout(Duration::from_millis(50), shared.wake.notified()).await;
            let events = {
                let mut n = shared.lock();
                while n.poll_transmit().is_some() {}
                while n.poll_timer().is_some() {}
                let mut v = Vec::new();
                while let Some(e) = n.poll_event() {
                    v.push(e);
                }
                v
            };
            for e in events {
                let _ = shared.events.send(e);
            }
            shared.flushed.notify_waiters();
        }
    })
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    shared: Arc<AgentShared>,
    handle: Option<ApiHandle>,
    client: Client,
    _loop: tokio::task::JoinHandle<()>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoal.sock");
    let shared = Arc::new(AgentShared::new(node("n0", 17001), Instant::now()));
    let handle = api::spawn(
        shared.clone(),
        ApiOptions {
            unix: Some(path.clone()),
            http: None,
        },
    )
    .await
    .unwrap();
    let client = Client::parse(&format!("unix:{}", path.display())).unwrap();
    let lp = spawn_loop(shared.clone());
    Fixture {
        _dir: dir,
        path,
        shared,
        handle: Some(handle),
        client,
        _loop: lp,
    }
}

/// Sends a request with the client's raw call and returns (status, JSON body).
async fn raw_json(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let m: hyper::Method = method.parse().unwrap();
    let a = c
        .raw(m, path, body.map(|b| b.as_bytes().to_vec()))
        .await
        .unwrap();
    let v = serde_json::from_slice(&a.body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&a.body)
        )
    });
    (a.status.as_u16(), v)
}

/// Asserts an error answer: the status and a JSON `error` containing `needle`.
async fn expect_error(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
    needle: &str,
) {
    let (s, v) = raw_json(c, method, path, body).await;
    assert_eq!(s, status, "{method} {path}: {v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {v}"));
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "{method} {path}: {msg:?} does not mention {needle:?}"
    );
}

#[tokio::test]
async fn socket_is_private_and_answers_have_the_documented_shapes() {
    let f = fixture().await;
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode is {mode:o}");

    let (s, v) = raw_json(&f.client, "GET", "/v1/members", None).await;
    assert_eq!(s, 200);
    assert!(v["index"].is_u64());
    assert_eq!(v["guard"]["state"], "normal");
    let m = &v["members"][0];
    for key in ["name", "addr", "status", "tags", "services", "generation"] {
        assert!(m.get(key).is_some(), "member lacks {key}: {m}");
    }
    assert_eq!(m["name"], "n0");
    assert_eq!(m["addr"], "127.0.0.1:17001");
    assert_eq!(m["status"], "alive");
    assert_eq!(m["tags"]["role"], "test");

    let me = f.client.local().await.unwrap();
    assert_eq!(me.member.name, "n0");
    assert_eq!(me.stats.members["alive"], 1);
    assert_eq!(me.stats.members["down"], 0);

    let (s, v) = raw_json(&f.client, "GET", "/v1/services", None).await;
    assert_eq!(s, 200);
    assert!(v["services"].is_object() && v["guard"].is_object());
    let (s, v) = raw_json(&f.client, "GET", "/v1/services/nothing", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["service"], "nothing");
    assert_eq!(v["instances"], serde_json::json!([]));

    let (s, v) = raw_json(&f.client, "GET", "/v1/stats", None).await;
    assert_eq!(s, 200);
    for key in [
        "index",
        "guard",
        "counters",
        "backlog",
        "active_peers",
        "idle",
        "members",
    ] {
        assert!(v.get(key).is_some(), "stats lacks {key}: {v}");
    }

    let (s, v) = raw_json(&f.client, "GET", "/v1/members/n0", None).await;
    assert_eq!((s, v["member"]["name"].as_str()), (200, Some("n0")));
    expect_error(&f.client, "GET", "/v1/members/ghost", None, 404, "ghost").await;

    // Plain HTTP/1.1 over the socket, as curl --unix-socket would send it.
    let mut s = tokio::net::UnixStream::connect(&f.path).await.unwrap();
    s.write_all(b"GET /v1/self HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(STEP, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text
        .to_lowercase()
        .contains("content-type: application/json"));
}

#[tokio::test]
async fn tag_and_service_changes_show_up_in_self_and_services() {
    let f = fixture().await;
    let c = &f.client;
    let mut set = BTreeMap::new();
    set.insert("zone".to_string(), "eu-1".to_string());
    let r = c.set_tags(set, vec!["role".into()]).await.unwrap();
    assert_eq!(r.member.tags.get("zone").map(String::as_str), Some("eu-1"));
    assert!(!r.member.tags.contains_key("role"));
    assert_eq!(c.local().await.unwrap().member.tags.len(), 1);

    let r = c.delete_tag("zone").await.unwrap();
    assert!(r.member.tags.is_empty());
    expect_error(c, "DELETE", "/v1/tags/zone", None, 404, "zone").await;

    let svc = ServiceRequest {
        name: "web".into(),
        port: 8080,
        tags: [("proto".to_string(), "http".to_string())]
            .into_iter()
            .collect(),
        health: None,
    };
    let r = c.register_service(&svc).await.unwrap();
    assert_eq!(r.member.services.len(), 1);
    let all = c.services().await.unwrap();
    let web = &all.services["web"];
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].node, "n0");
    assert_eq!(web[0].addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(web[0].status, ServedStatus::Alive);
    let one = c.service("web", &["alive".into()]).await.unwrap();
    assert_eq!(one.instances.len(), 1);
    let none = c.service("web", &["held".into()]).await.unwrap();
    assert!(none.instances.is_empty());

    // Replace, then deregister.
    let svc2 = ServiceRequest {
        port: 9090,
        ..svc.clone()
    };
    c.register_service(&svc2).await.unwrap();
    assert_eq!(c.service("web", &[]).await.unwrap().instances[0].port, 9090);
    let r = c.deregister_service("web").await.unwrap();
    assert!(r.member.services.is_empty());
    assert!(c.services().await.unwrap().services.is_empty());
    assert!(c.local().await.unwrap().member.services.is_empty());
}

#[tokio::test]
async fn bad_requests_get_json_errors_that_say_what_is_wrong() {
    let f = fixture().await;
    let c = &f.client;
    expect_error(
        c,
        "GET",
        "/v1/members?name=(",
        None,
        400,
        "invalid name regex",
    )
    .await;
    expect_error(
        c,
        "GET",
        "/v1/members?tag=role=[",
        None,
        400,
        "invalid tag regex",
    )
    .await;
    expect_error(c, "GET", "/v1/members?tag=role", None, 400, "tag=KEY=REGEX").await;
    expect_error(
        c,
        "GET",
        "/v1/members?status=zombie",
        None,
        400,
        "unknown status",
    )
    .await;
    expect_error(
        c,
        "GET",
        "/v1/members?statsu=alive",
        None,
        400,
        "unknown query parameter",
    )
    .await;
    expect_error(c, "GET", "/v1/members?index=x", None, 400, "bad index").await;
    expect_error(
        c,
        "GET",
        "/v1/members?index=1&wait=forever",
        None,
        400,
        "bad wait",
    )
    .await;
    expect_error(
        c,
        "PUT",
        "/v1/tags",
        Some("{\"set\": "),
        400,
        "malformed JSON",
    )
    .await;
    expect_error(
        c,
        "PUT",
        "/v1/tags",
        Some("{\"sett\": {}}"),
        400,
        "unknown field",
    )
    .await;
    expect_error(c, "PUT", "/v1/tags", None, 400, "missing JSON body").await;
    expect_error(
        c,
        "PUT",
        "/v1/services",
        Some("{\"name\": \"x\"}"),
        400,
        "port",
    )
    .await;
    expect_error(
        c,
        "POST",
        "/v1/join",
        Some("{\"addrs\": []}"),
        400,
        "no address",
    )
    .await;

    // Over the metadata limits: 422 with the limit in the message.
    let long = format!("{{\"set\": {{\"k\": \"{}\"}}}}", "v".repeat(300));
    expect_error(c, "PUT", "/v1/tags", Some(&long), 422, "limit").await;
    let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\": \"v\"")).collect();
    let many = format!("{{\"set\": {{{}}}}}", many.join(","));
    expect_error(c, "PUT", "/v1/tags", Some(&many), 422, "too many tags").await;
    expect_error(
        c,
        "PUT",
        "/v1/tags",
        Some("{\"set\": {\"bad key\": \"v\"}}"),
        422,
        "invalid",
    )
    .await;
    expect_error(
        c,
        "PUT",
        "/v1/services",
        Some("{\"name\": \"w\", \"port\": 0}"),
        422,
        "port 0",
    )
    .await;
    // Nothing of that was applied.
    assert_eq!(c.local().await.unwrap().member.tags.len(), 1);

    // Body over 64 KiB.
    let huge = format!("{{\"set\": {{\"k\": \"{}\"}}}}", "v".repeat(70 * 1024));
    expect_error(c, "PUT", "/v1/tags", Some(&huge), 413, "too large").await;

    expect_error(c, "GET", "/v1/nope", None, 404, "no route").await;
    expect_error(c, "DELETE", "/v1/services/ghost", None, 404, "ghost").await;
    expect_error(c, "DELETE", "/v1/members", None, 405, "not allowed").await;

    // The client turns them into typed errors.
    let e = c.deregister_service("ghost").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert!(e.to_string().contains("ghost"), "{e}");
}

#[tokio::test]
async fn metrics_expose_the_documented_families() {
    let f = fixture().await;
    let text = f.client.metrics().await.unwrap();
    for family in [
        "shoal_members",
        "shoal_datagrams_received_total",
        "shoal_datagrams_sent_total",
        "shoal_bytes_received_total",
        "shoal_bytes_sent_total",
        "shoal_datagrams_dropped_total",
        "shoal_guard_state",
        "shoal_guard_held_members",
        "shoal_active_peers",
        "shoal_event_index",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
    }
    assert!(
        text.contains("shoal_members{status=\"alive\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("shoal_datagrams_dropped_total{reason=\"bad_magic\"} 0\n"));
    assert!(text.contains("shoal_guard_state{state=\"normal\"} 1\n"));
    assert!(text.contains("shoal_guard_state{state=\"frozen\"} 0\n"));
}

#[tokio::test]
async fn watch_sends_a_snapshot_then_each_change() {
    let f = fixture().await;
    let mut w = f.client.watch(None).await.unwrap();
    let first = tokio::time::timeout(STEP, w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let snap = match first {
        WatchLine::Snapshot(s) => s,
        other => panic!("first line is not a snapshot: {other:?}"),
    };
    assert_eq!(snap.members.len(), 1);
    let mut set = BTreeMap::new();
    set.insert("color".to_string(), "blue".to_string());
    f.client.set_tags(set, vec![]).await.unwrap();
    let deadline = Instant::now() + STEP;
    let ev = loop {
        assert!(Instant::now() < deadline, "no event for the tag change");
        let line = tokio::time::timeout(STEP, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let WatchLine::Event(e) = line {
            if let shoal_core::EventKind::Member { member, .. } = &e.kind {
                if member.tags.get("color").map(String::as_str) == Some("blue") {
                    break e;
                }
            }
        }
    };
    assert!(ev.index > snap.index);

    // Raw lines: the snapshot carries "type":"snapshot"; events carry index, at_ms, type.
    let path = f.path.clone();
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /v1/watch HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut text = String::new();
    let deadline = Instant::now() + STEP;
    while !text.contains("\"type\":\"snapshot\"") {
        assert!(Instant::now() < deadline, "no snapshot line: {text}");
        let n = tokio::time::timeout(STEP, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text
        .to_lowercase()
        .contains("content-type: application/x-ndjson"));

    // With ?index=N of the current state, no snapshot is repeated: the next line is an event.
    let idx = f.client.local().await.unwrap().index;
    let mut w2 = f.client.watch(Some(idx)).await.unwrap();
    f.client.delete_tag("color").await.unwrap();
    let line = tokio::time::timeout(STEP, w2.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(line, WatchLine::Event(ref e) if e.index > idx),
        "{line:?}"
    );
}

#[tokio::test]
async fn blocking_query_waits_for_a_change_or_the_deadline() {
    let f = fixture().await;
    let c = f.client.clone();
    let idx = c.members(&MemberQuery::default()).await.unwrap().index;

    // Nothing changes: answers after the wait with the same index.
    let t0 = Instant::now();
    let r = c
        .members_after(&MemberQuery::default(), idx, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(r.index, idx);
    assert!(t0.elapsed() >= Duration::from_millis(250));

    // A change during the wait wakes it up.
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.members_after(&MemberQuery::default(), idx, Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut set = BTreeMap::new();
    set.insert("x".to_string(), "1".to_string());
    c.set_tags(set, vec![]).await.unwrap();
    let r = tokio::time::timeout(STEP, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(r.index > idx);
    assert_eq!(r.members[0].tags.get("x").map(String::as_str), Some("1"));

    // An index from another life of the agent answers at once.
    let r = tokio::time::timeout(
        STEP,
        c.members_after(
            &MemberQuery::default(),
            r.index + 1000,
            Duration::from_secs(60),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(r.index < 1000);
}

#[tokio::test]
async fn member_filters() {
    let f = fixture().await;
    let c = &f.client;
    let q = |status: &[&str], name: Option<&str>, tags: &[&str]| MemberQuery {
        status: status.iter().map(|s| s.to_string()).collect(),
        name: name.map(str::to_string),
        tags: tags.iter().map(|s| s.to_string()).collect(),
    };
    let n = |r: MembersResponse| r.members.len();
    assert_eq!(n(c.members(&q(&["alive"], None, &[])).await.unwrap()), 1);
    assert_eq!(
        n(c.members(&q(&["down,left"], None, &[])).await.unwrap()),
        0
    );
    assert_eq!(
        n(c.members(&q(&["held", "alive"], None, &[])).await.unwrap()),
        1
    );
    assert_eq!(n(c.members(&q(&[], Some("n.*"), &[])).await.unwrap()), 1);
    // Whole-name match, as in Serf.
    assert_eq!(n(c.members(&q(&[], Some("n"), &[])).await.unwrap()), 0);
    assert_eq!(
        n(c.members(&q(&[], None, &["role=te.*"])).await.unwrap()),
        1
    );
    assert_eq!(n(c.members(&q(&[], None, &["role=db"])).await.unwrap()), 0);
    assert_eq!(n(c.members(&q(&[], None, &["zone=.*"])).await.unwrap()), 0);
}

#[tokio::test]
async fn guard_routes_answer_with_a_report() {
    let f = fixture().await;
    let g = f.client.guard().await.unwrap();
    assert_eq!(g.guard.state, shoal_core::GuardState::Normal);
    let (s, v) = raw_json(&f.client, "POST", "/v1/guard/freeze", None).await;
    assert_eq!(s, 200);
    for key in [
        "mode",
        "state",
        "since_ms",
        "reason",
        "held",
        "baseline",
        "escalated",
    ] {
        assert!(
            v["guard"].get(key).is_some(),
            "guard report lacks {key}: {v}"
        );
    }
    let t = f.client.guard_thaw().await.unwrap();
    assert!(!t.guard.reason.is_empty());
    expect_error(
        &f.client,
        "GET",
        "/v1/guard/freeze",
        None,
        405,
        "not allowed",
    )
    .await;
}

#[tokio::test]
async fn join_resolves_and_reports_what_it_could_not() {
    let f = fixture().await;
    let r = f
        .client
        .join(vec![
            "127.0.0.1:17999".into(),
            "localhost:17998".into(),
            "noport".into(),
        ])
        .await
        .unwrap();
    assert!(
        r.announced.contains(&"127.0.0.1:17999".parse().unwrap()),
        "{r:?}"
    );
    assert!(r.announced.iter().any(|a| a.port() == 17998), "{r:?}");
    assert_eq!(r.unresolved.len(), 1);
    assert_eq!(r.unresolved[0].addr, "noport");
    assert!(r.unresolved[0].error.contains("port"));
}

#[tokio::test]
async fn leave_returns_once_flushed_then_commands_conflict() {
    let f = fixture().await;
    let r = tokio::time::timeout(STEP, f.client.leave())
        .await
        .unwrap()
        .unwrap();
    assert!(r.left);
    assert!(
        r.flushed,
        "the test loop signals flushed after each wake-up"
    );
    assert_eq!(
        f.client.local().await.unwrap().member.status,
        ServedStatus::Left
    );
    expect_error(
        &f.client,
        "PUT",
        "/v1/tags",
        Some("{\"set\": {\"a\": \"b\"}}"),
        409,
        "left",
    )
    .await;
    expect_error(
        &f.client,
        "POST",
        "/v1/join",
        Some("{\"addrs\": [\"127.0.0.1:1\"]}"),
        409,
        "left",
    )
    .await;
}

#[tokio::test]
async fn commands_are_refused_while_shutting_down() {
    let f = fixture().await;
    f.shared
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    expect_error(
        &f.client,
        "PUT",
        "/v1/tags",
        Some("{}"),
        503,
        "shutting down",
    )
    .await;
    // Reads still answer.
    assert!(f.client.local().await.is_ok());
}

#[tokio::test]
async fn socket_lifecycle_stale_live_and_removal() {
    let mut f = fixture().await;
    // A live socket is refused.
    let shared2 = Arc::new(AgentShared::new(node("n1", 17002), Instant::now()));
    let opts = ApiOptions {
        unix: Some(f.path.clone()),
        http: None,
    };
    match api::spawn(shared2.clone(), opts.clone()).await {
        Err(ApiError::SocketInUse(p)) => assert_eq!(p, f.path),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second agent bound a live socket"),
    }
    // Shutdown removes the file.
    f.handle.take().unwrap().shutdown().await;
    assert!(!f.path.exists());
    // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&f.path).unwrap());
    assert!(f.path.exists());
    let h = api::spawn(shared2, opts).await.unwrap();
    assert_eq!(f.client.local().await.unwrap().member.name, "n1");
    h.shutdown().await;
    // A regular file is not ours to remove.
    std::fs::write(&f.path, b"x").unwrap();
    let r = api::spawn(
        f.shared.clone(),
        ApiOptions {
            unix: Some(f.path.clone()),
            http: None,
        },
    )
    .await;
    assert!(matches!(r, Err(ApiError::NotASocket(_))));
}

#[tokio::test]
async fn loopback_tcp_only() {
    let shared = Arc::new(AgentShared::new(node("n2", 17003), Instant::now()));
    let r = api::spawn(
        shared.clone(),
        ApiOptions {
            unix: None,
            http: Some("0.0.0.0:0".parse().unwrap()),
        },
    )
    .await;
    assert!(matches!(r, Err(ApiError::NotLoopback(_))));
    let h = api::spawn(
        shared,
        ApiOptions {
            unix: None,
            http: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .unwrap();
    let addr = h.http_addr().unwrap();
    let c = Client::parse(&format!("http://{addr}")).unwrap();
    assert_eq!(c.local().await.unwrap().member.name, "n2");
    h.shutdown().await;
}

#[tokio::test]
async fn client_explains_a_missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::parse(&format!("unix:{}/none.sock", dir.path().display())).unwrap();
    let e = c.local().await.unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("is the agent running?") && msg.contains("SHOAL_API"),
        "{msg}"
    );
}

async fn run_cli(api: &str, format: Format, cmd: ClientCommand) -> (ExitCode, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::run_with(
        ClientArgs {
            api: api.to_string(),
            format,
        },
        cmd,
        &mut out,
        &mut err,
    )
    .await
    .unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn cli_members_json_is_an_array_and_errors_exit_non_zero() {
    let f = fixture().await;
    let api = format!("unix:{}", f.path.display());
    let members = || ClientCommand::Members {
        status: vec![],
        name: None,
        tag: vec![],
    };
    let (code, out, _) = run_cli(&api, Format::Json, members()).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = v.as_array().expect("members --format json prints an array");
    for key in ["name", "addr", "status", "tags", "services"] {
        assert!(arr[0].get(key).is_some(), "lacks {key}");
    }
    let (code, out, _) = run_cli(&api, Format::Table, members()).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let header = out.lines().next().unwrap();
    for col in ["NAME", "ADDR", "STATUS", "TAGS", "SERVICES"] {
        assert!(header.contains(col), "{out}");
    }
    assert!(out.contains("n0") && out.contains("role=test"), "{out}");

    let (code, out, _) = run_cli(
        &api,
        Format::Table,
        ClientCommand::Tags {
            set: vec!["a=1".into()],
            delete: vec!["role".into()],
        },
    )
    .await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out.trim(), "a=1");

    let (code, _, err) = run_cli(
        &api,
        Format::Table,
        ClientCommand::Members {
            status: vec!["zombie".into()],
            name: None,
            tag: vec![],
        },
    )
    .await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        err.contains("unknown status") && err.contains("HTTP 400"),
        "{err}"
    );

    let (code, _, err) = run_cli(
        &api,
        Format::Table,
        ClientCommand::Tags {
            set: vec!["novalue".into()],
            delete: vec![],
        },
    )
    .await;
    assert_ne!(code, ExitCode::SUCCESS);
    assert!(err.contains("KEY=VALUE"), "{err}");

    let (code, out, _) = run_cli(&api, Format::Table, ClientCommand::Info).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.contains("guard:") && out.contains("normal"), "{out}");

    let (code, out, _) = run_cli(&api, Format::Json, ClientCommand::Guard { action: None }).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["guard"]["state"], "normal");

    let (code, out, _) = run_cli(&api, Format::Table, ClientCommand::Leave).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.contains("left the cluster"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}/none.sock", dir.path().display());
    let (code, _, err) = run_cli(&missing, Format::Table, members()).await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(err.contains("is the agent running?"), "{err}");
}

#[tokio::test]
async fn shutdown_ends_open_watches_and_blocking_queries() {
    let mut f = fixture().await;
    let mut w = f.client.watch(None).await.unwrap();
    let first = tokio::time::timeout(STEP, w.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(WatchLine::Snapshot(_)))));
    let idx = f.client.local().await.unwrap().index;
    let blocked = {
        let c = f.client.clone();
        tokio::spawn(async move {
            c.members_after(&MemberQuery::default(), idx, Duration::from_secs(240))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(STEP, f.handle.take().unwrap().shutdown())
        .await
        .expect("shutdown is bounded");
    let end = tokio::time::timeout(STEP, w.next()).await.unwrap();
    assert!(end.is_none() || matches!(end, Some(Err(_))), "{end:?}");
    let r = tokio::time::timeout(STEP, blocked).await.unwrap().unwrap();
    // Either it answered as the server stopped, or the connection was cut.
    if let Ok(r) = r {
        assert_eq!(r.index, idx);
    }
    assert!(!f.path.exists());
}

#[tokio::test]
async fn curl_style_form_content_type_is_accepted_as_json() {
    let f = fixture().await;
    let body = r#"{"set": {"via": "curl"}}"#;
    let req = format!(
        "PUT /v1/tags HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::UnixStream::connect(&f.path).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(STEP, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let me = f.client.local().await.unwrap().member;
    assert_eq!(me.tags.get("via").map(String::as_str), Some("curl"));
}
