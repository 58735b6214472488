//! Service health checks end to end: real agents on 127.0.0.1 (profile `local`), each with
//! its local API on a Unix socket; checks against real targets the tests start (an HTTP
//! server, a TCP listener, exec'd programs, ttl updates through the API). Every wait is a
//! bounded poll (every 20 ms, a deadline of a few seconds); no sleep decides an outcome.
//!
//! The agents come from the shared harness (`tests/common`), each serving its local API; this
//! file holds that rig and the check targets, the tests are in `kinds` (each kind of check),
//! `shared_fault` (the health guard across agents) and `cli`.

mod cli;
#[path = "../common/mod.rs"]
mod common;
mod kinds;
mod shared_fault;

use shoal::agent::checks::CheckSpec;

use common::{holds_for, name, wait_until, wait_until_async, Cluster};
use shoal::agent::AgentShared;
use shoal::api::health::ChecksResponse;
use shoal::api::types::ServiceRequest;
use shoal::client::Client;
use shoal_core::{Health, Instance};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A cluster of the shared harness (`common`) whose agents each serve their local API.
struct Rig {
    c: Cluster,
    clients: Vec<Client>,
}

impl std::ops::Deref for Rig {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.c
    }
}

impl Rig {
    async fn start(n: usize) -> Rig {
        Rig::start_with(n, Box::new(common::config)).await
    }

    /// `n` agents configured by `configure` (see `common::Cluster::start_with`).
    async fn start_with(n: usize, configure: common::Configure) -> Rig {
        let mut c = Cluster::start_with(n, configure).await;
        let mut clients = Vec::new();
        for i in 0..n {
            clients.push(c.serve_api(i).await);
        }
        wait_until(
            Duration::from_secs(10),
            "every agent sees every member",
            || {
                c.shared.iter().all(|s| {
                    s.lock()
                        .members()
                        .iter()
                        .filter(|m| m.status.is_serving())
                        .count()
                        == n
                })
            },
        )
        .await;
        Rig { c, clients }
    }

    async fn stop(self) {
        self.c.stop().await;
    }

    /// `node`'s instance of `service` as agent `observer` serves it.
    fn instance(&self, observer: usize, service: &str, node: &str) -> Option<Instance> {
        self.shared[observer]
            .lock()
            .services()
            .remove(service)?
            .into_iter()
            .find(|i| i.node == node)
    }

    fn health_everywhere(&self, service: &str, node: &str, h: Health) -> bool {
        (0..self.shared.len()).all(|o| {
            self.instance(o, service, node)
                .is_some_and(|i| i.health == Some(h))
        })
    }

    async fn register(&self, agent: usize, name: &str, port: u16, checks: Vec<CheckSpec>) {
        self.clients[agent]
            .register_service(&ServiceRequest {
                id: None,
                name: name.into(),
                port,
                tags: BTreeMap::new(),
                health: None,
                checks,
            })
            .await
            .expect("register");
    }

    async fn checks(&self, agent: usize) -> ChecksResponse {
        self.clients[agent].checks().await.expect("checks")
    }

    async fn ttl(&self, agent: usize, id: &str, action: &str) -> (u16, serde_json::Value) {
        let a = self.clients[agent]
            .raw(
                hyper::Method::PUT,
                &format!("/v1/checks/{id}/{action}"),
                Some(b"note from the app".to_vec()),
            )
            .await
            .expect("answer");
        (
            a.status.as_u16(),
            serde_json::from_slice(&a.body).unwrap_or_default(),
        )
    }
}

fn spec(json: &str) -> CheckSpec {
    serde_json::from_str(json).expect("a check spec")
}

/// A tiny HTTP server: answers every request with `status` (or never answers: `hang`).
struct HttpTarget {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpTarget {
    async fn start(addr: SocketAddr, status: u16, hang: bool) -> HttpTarget {
        let l = TcpListener::bind(addr).await.expect("bind the HTTP target");
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..100_000 {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                if hang {
                    held.push(s);
                    continue;
                }
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 65536 {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = format!("status {status}\nsecond line");
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        HttpTarget { addr, task }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn dns_srv(shared: &AgentShared, qname: &str) -> Vec<String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii(qname).unwrap(),
        RecordType::SRV,
    ));
    let view = shoal::dns::view(&shared.lock());
    let r = view.answer(&m, 0);
    let mut v: Vec<String> = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::SRV(s) => Some(s.target.to_ascii()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}
