//! The clients people already run, against real agents on loopback: the Consul-compatible
//! API (field by field, and Prometheus's `consul_sd_configs`), the DNS interface (raw
//! queries and `dig`), fail-static carried through both.
//!
//! Each test starts its own agents in-process through the shared harness (`tests/common`:
//! profile `local`, each on its own 127.0.0.x address, port 0) with the Consul API and DNS on
//! loopback port 0, and cuts agents off with the transport's test-only drop filter
//! (`AgentShared::faults`). Every wait polls until its
//! condition holds or a deadline passes; every loop is bounded. External clients
//! (`prometheus`, `dig`) are skipped with a visible message when missing, unless
//! `SHOAL_REQUIRE_CLIENTS=1` (set by `.ci/run` once it installed them) makes that a failure.

#[path = "../common/mod.rs"]
mod common;
mod consul;
mod coords;
mod dns;
mod local_api;
mod prometheus;

pub use common::{holds_for, name, wait_until, Cluster};

use shoal::config::{Config, ServiceConfig};
use shoal_core::{GuardState, ServedStatus};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a cluster may take to converge (members and their metadata everywhere).
pub const SETTLE: Duration = Duration::from_secs(20);
/// How long agents may take to react to a fault.
pub const REACT: Duration = Duration::from_secs(15);

/// The loopback address agent `i` binds.
pub fn ip(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

/// Tags as (key, value) pairs.
pub type Tags = Vec<(&'static str, &'static str)>;

/// One agent of a test cluster: its node tags and services (name, port, tags).
#[derive(Clone, Default)]
pub struct Spec {
    pub tags: Tags,
    pub services: Vec<(&'static str, u16, Tags)>,
}

/// One agent per spec from the shared harness (`common::Cluster`), each on its own
/// 127.0.0.x address with short guard timings, its Consul API and its DNS on loopback port 0.
pub async fn start(specs: &[Spec]) -> Cluster {
    let specs = specs.to_vec();
    let n = specs.len();
    let mut c = Cluster::start_with(
        n,
        Box::new(move |i, bind, seed, dir| config(&specs[i], i, bind, seed, dir)),
    )
    .await;
    for i in 0..n {
        c.serve_consul(i).await;
        c.serve_dns(i).await;
    }
    c
}

/// Agent `i`'s config: the harness's, bound on `ip(i)` (port 0 at first, its old address
/// on a restart), with `spec`'s tags and services.
fn config(
    spec: &Spec,
    i: usize,
    bind: SocketAddr,
    seed: Option<SocketAddr>,
    dir: &std::path::Path,
) -> Config {
    let bind = if bind.port() == 0 {
        format!("{}:0", ip(i)).parse().expect("a loopback address")
    } else {
        bind
    };
    let mut cfg = common::config(i, bind, seed, dir);
    cfg.guard.stable_after = Duration::from_secs(1);
    cfg.guard.window = Duration::from_secs(5);
    cfg.guard.drain_per_sec = 50;
    cfg.tags = spec
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    cfg.services = spec
        .services
        .iter()
        .map(|(n, p, t)| ServiceConfig {
            id: None,
            name: n.to_string(),
            port: *p,
            tags: t
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            checks: Vec::new(),
        })
        .collect();
    cfg
}

/// An HTTP answer: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A plain HTTP/1.1 request over TCP (`Connection: close`), bounded by `limit`.
pub async fn http(addr: SocketAddr, method: &str, path: &str, limit: Duration) -> Answer {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read answer");
        raw
    };
    let raw = tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} on {addr} took longer than {limit:?}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .map(|v| v.contains("chunked"))
        .unwrap_or(false)
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// An open HTTP/1.1 stream (a watch) over TCP: when `open` returns, the request was sent and
/// the answer's head received, so the server has subscribed.
pub struct Stream {
    s: tokio::net::TcpStream,
    raw: Vec<u8>,
}

impl Stream {
    /// Sends `GET path` and waits for the answer's head, bounded by `limit`.
    pub async fn open(addr: SocketAddr, path: &str, limit: Duration) -> Stream {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut st = Stream { s, raw: Vec::new() };
        st.read_until(limit, "the answer's head", |raw| {
            raw.windows(4).any(|w| w == b"\r\n\r\n")
        })
        .await;
        st
    }

    /// The non-empty lines of the body received so far.
    pub fn lines(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.raw);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        dechunk(body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Reads until the body's lines satisfy `done`; panics with `what` after `limit`.
    pub async fn lines_until(
        &mut self,
        limit: Duration,
        what: &str,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let mut lines = self.lines();
        let start = Instant::now();
        while !done(&lines) {
            let left = limit.saturating_sub(start.elapsed());
            self.read_some(left, what).await;
            lines = self.lines();
        }
        lines
    }

    async fn read_until(&mut self, limit: Duration, what: &str, done: impl Fn(&[u8]) -> bool) {
        let start = Instant::now();
        while !done(&self.raw) {
            let left = limit.saturating_sub(start.elapsed());
            self.read_some(left, what).await;
        }
    }

    async fn read_some(&mut self, left: Duration, what: &str) {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(left, self.s.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("the stream ended before {what}"),
            Ok(Ok(n)) => self.raw.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("reading the stream: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    for _ in 0..100_000 {
        let Some((size, rest)) = s.split_once("\r\n") else {
            break;
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    http(addr, "GET", path, Duration::from_secs(10)).await
}

/// Whether an external client is required (CI installed it) rather than optional.
pub fn required() -> bool {
    std::env::var("SHOAL_REQUIRE_CLIENTS")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// The path of `tool` if it is installed; otherwise prints a visible skip (or panics when
/// clients are required).
pub fn find_tool(tool: &str, test: &str) -> Option<std::path::PathBuf> {
    let found = which(tool);
    if found.is_none() {
        assert!(
            !required(),
            "{tool} is required (SHOAL_REQUIRE_CLIENTS=1) but not installed"
        );
        eprintln!(
            "SKIPPED {test}: `{tool}` is not installed (apt-get install {})",
            match tool {
                "dig" => "dnsutils",
                t => t,
            }
        );
    }
    found
}

/// The path of `tool` in `PATH` (or /usr/bin, /usr/sbin), if installed.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            std::path::PathBuf::from("/usr/bin"),
            std::path::PathBuf::from("/usr/sbin"),
        ])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
