//! The clients people already run, against real agents on loopback: the Consul-compatible
//! API (field by field, and Prometheus's `consul_sd_configs`), the DNS interface (raw
//! queries and `dig`), fail-static carried through both.
//!
//! Each test starts its own agents in-process (profile `local`, each on its own 127.0.0.x
//! address, port 0) with the Consul API and DNS on loopback port 0, and cuts agents off with
//! the transport's test-only drop filter (`AgentShared::faults`). Every wait polls until its
//! condition holds or a deadline passes; every loop is bounded. External clients
//! (`prometheus`, `dig`) are skipped with a visible message when missing, unless
//! `SHOAL_REQUIRE_CLIENTS=1` (set by `.ci/run` once it installed them) makes that a failure.

mod consul;
mod dns;
mod local_api;
mod prometheus;

use shoal::agent::{Agent, AgentShared};
use shoal::api::consul::ConsulHandle;
use shoal::config::{AgentArgs, Config, ServiceConfig};
use shoal::dns::DnsHandle;
use shoal_core::{GuardState, Profile, ServedStatus};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a cluster may take to converge (members and their metadata everywhere).
pub const SETTLE: Duration = Duration::from_secs(20);
/// How long agents may take to react to a fault.
pub const REACT: Duration = Duration::from_secs(15);

pub fn name(i: usize) -> String {
    format!("n{i}")
}

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

pub struct Cluster {
    _dir: tempfile::TempDir,
    pub agents: Vec<Option<Agent>>,
    pub shared: Vec<Arc<AgentShared>>,
    pub addrs: Vec<SocketAddr>,
    pub consul: Vec<ConsulHandle>,
    pub dns: Vec<DnsHandle>,
}

impl Cluster {
    pub async fn start(specs: &[Spec]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut c = Cluster {
            _dir: dir,
            agents: Vec::new(),
            shared: Vec::new(),
            addrs: Vec::new(),
            consul: Vec::new(),
            dns: Vec::new(),
        };
        for (i, spec) in specs.iter().enumerate() {
            let args = AgentArgs {
                name: Some(name(i)),
                bind: Some(format!("{}:0", ip(i))),
                join: c
                    .addrs
                    .first()
                    .map(|s| vec![s.to_string()])
                    .unwrap_or_default(),
                profile: Some(Profile::Local),
                data_dir: Some(c._dir.path().join(name(i))),
                encrypt: Some(shoal::agent::datadir::process_key()),
                ..Default::default()
            };
            let mut cfg = Config::load_with_env(&args, &|_| None).expect("valid test config");
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
                    name: n.to_string(),
                    port: *p,
                    tags: t
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                })
                .collect();
            let a = Agent::start(&cfg).await.expect("agent starts");
            c.addrs.push(a.local_addr());
            c.shared.push(a.shared());
            let consul = shoal::api::consul::spawn(a.shared(), "127.0.0.1:0".parse().unwrap())
                .await
                .expect("consul API starts");
            let dns = shoal::dns::spawn(a.shared(), "127.0.0.1:0".parse().unwrap(), Duration::ZERO)
                .await
                .expect("DNS starts");
            c.consul.push(consul);
            c.dns.push(dns);
            c.agents.push(Some(a));
        }
        c
    }

    /// Waits until every running agent serves every agent alive with its metadata.
    pub async fn converge(&self) {
        let n = self.agents.len();
        wait_until("the cluster converges", SETTLE, || {
            self.shared.iter().all(|s| {
                let node = s.lock();
                let ms = node.members();
                ms.len() == n
                    && ms
                        .iter()
                        .all(|m| m.status == ServedStatus::Alive && m.meta_version > 0)
                    && node.guard_report().state == GuardState::Normal
                    && node.guard_report().baseline + 1 >= n
            })
        })
        .await;
    }

    /// Cuts agent `i` off from every other agent (both directions).
    pub fn isolate(&self, i: usize) {
        let others: Vec<SocketAddr> = (0..self.addrs.len())
            .filter(|j| *j != i)
            .map(|j| self.addrs[j])
            .collect();
        self.shared[i].faults.block_all(others);
    }

    pub fn consul_addr(&self, i: usize) -> SocketAddr {
        self.consul[i].local_addr()
    }

    pub fn dns_addr(&self, i: usize) -> SocketAddr {
        self.dns[i].local_addr()
    }

    /// Stops agent `i` without leaving (as if killed).
    pub async fn kill(&mut self, i: usize) {
        if let Some(a) = self.agents[i].take() {
            a.stop().await;
        }
    }

    pub fn status(&self, observer: usize, member: usize) -> Option<ServedStatus> {
        self.shared[observer]
            .lock()
            .members()
            .into_iter()
            .find(|m| m.name == name(member))
            .map(|m| m.status)
    }

    pub fn guard(&self, i: usize) -> GuardState {
        self.shared[i].lock().guard_report().state
    }
}

/// Polls `cond` every 20 ms until it holds; panics after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    for _ in 0..(limit.as_millis() / 20 + 1) {
        if cond() {
            return;
        }
        if start.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {limit:?} waiting until {what}");
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
