//! The local API end to end: a started core `Node` behind `AgentShared`, served by
//! `api::spawn` on a temporary Unix socket (and loopback TCP), queried with the client, raw
//! HTTP and the CLI. A small test task stands in for the agent's event loop: when woken, it
//! discards the datagrams, publishes the node's events and signals `flushed`.
//!
//! This file holds the fixture and the request helpers; the tests are in `routes` (answers
//! and errors), `stream` (watch and blocking queries) and `transport` (sockets and the CLI).

mod routes;
mod stream;
mod transport;

use shoal::agent::shared::AgentShared;
use shoal::api::{self, ApiHandle, ApiOptions};
use shoal::client::Client;
use shoal_core::{Node, NodeConfig, NodeMeta, Profile, Time};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        outlier: Default::default(),
        fleet: Default::default(),
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
                let mut v = Vec::new();
                while let Some(e) = n.poll_event() {
                    v.push(e);
                }
                v
            };
            for e in events {
                let _ = shared.events.send(Arc::new(e));
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
            ..Default::default()
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

/// Asserts that `task` does not finish during the whole of `period` (checked every 10 ms).
async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>, period: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < period {
        assert!(
            !task.is_finished(),
            "{what} answered after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!task.is_finished(), "{what} answered");
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
