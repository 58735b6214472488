//! The shared real-agent harness of the integration tests (`mod common;` in each test file).
//!
//! Owns starting a cluster of in-process agents on loopback (profile `local`, port 0 on
//! 127.0.0.1 unless the test's `Configure` binds elsewhere, the process's test key), the
//! servers a test starts beside an agent (its local API on a Unix socket, the Consul API and
//! DNS on loopback port 0), cutting agents off (the transport's test-only drop filter),
//! stopping and restarting them, reading what each serves, and the two ways a test may wait: `wait_until` (an "eventually": bounded polls
//! every 20 ms until a deadline) and, for a "never", `holds_for` (the condition sampled every
//! 20 ms over the whole interval) or `Events` (every member event of the watch stream over
//! the whole interval, none lost: a lagging stream fails the test). Must not sleep and sample
//! once, and must not decide anything a test asserts.
#![allow(dead_code)]

use shoal::agent::{Agent, AgentShared};
use shoal::api::consul::ConsulHandle;
use shoal::api::{ApiHandle, ApiOptions};
use shoal::client::Client;
use shoal::config::{AgentArgs, Config};
use shoal::dns::DnsHandle;
use shoal_core::{Event, EventKind, GuardReport, GuardState, Profile, ServedStatus};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Runs one client command of the `shoal` binary against the local API on Unix socket
/// `sock`, as a user would; returns whether it succeeded and what it printed (stdout, then
/// stderr).
pub async fn cli_at(
    sock: &Path,
    format: shoal::cli::Format,
    cmd: shoal::cli::ClientCommand,
) -> (bool, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = shoal::cli::run_with(
        shoal::cli::ClientArgs {
            api: format!("unix:{}", sock.display()),
            format,
        },
        cmd,
        &mut out,
        &mut err,
    )
    .await
    .expect("cli runs");
    (
        code == std::process::ExitCode::SUCCESS,
        String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err),
    )
}

/// Polling period of every wait.
pub const POLL: Duration = Duration::from_millis(20);

pub fn name(i: usize) -> String {
    format!("n{i}")
}

/// The flags of test agent `i`: profile `local`, `bind`, joining `seed`, its data directory
/// under `dir`, the process's test key.
pub fn agent_args(i: usize, bind: SocketAddr, seed: Option<SocketAddr>, dir: &Path) -> AgentArgs {
    AgentArgs {
        name: Some(name(i)),
        bind: Some(bind.to_string()),
        join: seed.map(|s| vec![s.to_string()]).unwrap_or_default(),
        profile: Some(Profile::Local),
        data_dir: Some(dir.join(name(i))),
        encrypt: Some(shoal::agent::datadir::process_key()),
        ..Default::default()
    }
}

/// The config of test agent `i` (see [`agent_args`]).
pub fn config(i: usize, bind: SocketAddr, seed: Option<SocketAddr>, dir: &Path) -> Config {
    Config::load_with_env(&agent_args(i, bind, seed, dir), &|_| None).expect("valid test config")
}

/// Makes agent `i`'s config from its bind address, its seed and the cluster's directory.
pub type Configure =
    Box<dyn Fn(usize, SocketAddr, Option<SocketAddr>, &Path) -> Config + Send + Sync>;

/// In-process agents on loopback. `agents[i]` is `None` while agent `i` is stopped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub agents: Vec<Option<Agent>>,
    pub shared: Vec<Arc<AgentShared>>,
    pub addrs: Vec<SocketAddr>,
    configure: Configure,
    /// Servers started beside agents (`serve_api`, `serve_consul`, `serve_dns`), by agent.
    apis: BTreeMap<usize, ApiHandle>,
    consul: BTreeMap<usize, ConsulHandle>,
    dns: BTreeMap<usize, DnsHandle>,
    /// Held for the cluster's whole life by test files whose clusters must not share the
    /// 2 cores with another cluster of theirs (`Cluster::serialized`).
    serial: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Cluster {
    /// Runs the clusters that take `lock` one at a time: the guard's tests time suspicion
    /// and reach checks of 7 agents against each other, and two such clusters at once on a
    /// loaded 2-core machine starve each other's event loops (a starved agent is, rightly,
    /// suspected). The lock is released when the cluster is dropped, panics included.
    pub fn serialized(mut self, lock: tokio::sync::OwnedMutexGuard<()>) -> Cluster {
        self.serial = Some(lock);
        self
    }

    /// `n` agents with the default test config, each joining agent 0.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, Box::new(config)).await
    }

    /// `n` agents configured by `configure`, each joining agent 0.
    pub async fn start_with(n: usize, configure: Configure) -> Cluster {
        let mut c = Cluster {
            dir: tempfile::tempdir().expect("temp dir"),
            agents: Vec::new(),
            shared: Vec::new(),
            addrs: Vec::new(),
            configure,
            apis: BTreeMap::new(),
            consul: BTreeMap::new(),
            dns: BTreeMap::new(),
            serial: None,
        };
        for _ in 0..n {
            let seed = c.addrs.first().copied();
            c.push(seed).await;
        }
        c
    }

    async fn push(&mut self, seed: Option<SocketAddr>) -> usize {
        let i = self.n();
        let cfg = self.config_of(i, "127.0.0.1:0".parse().unwrap(), seed);
        let a = Agent::start(&cfg).await.expect("agent starts");
        self.addrs.push(a.local_addr());
        self.shared.push(a.shared());
        self.agents.push(Some(a));
        i
    }

    /// Agent `i`'s config as this cluster makes it.
    pub fn config_of(&self, i: usize, bind: SocketAddr, seed: Option<SocketAddr>) -> Config {
        (self.configure)(i, bind, seed, self.dir.path())
    }

    /// Starts one more agent joining through agent `seed`; returns its index.
    pub async fn add(&mut self, seed: usize) -> usize {
        let s = self.addrs[seed];
        self.push(Some(s)).await
    }

    /// Stops agent `i` without leaving (as if the process was killed).
    pub async fn kill(&mut self, i: usize) {
        if let Some(a) = self.agents[i].take() {
            a.stop().await;
        }
    }

    /// Starts agent `i` again on its old address (same name and data directory), joining
    /// agent 0 (or agent 1 when it is agent 0).
    pub async fn restart(&mut self, i: usize) {
        assert!(self.agents[i].is_none(), "n{i} is still running");
        let seed = self.addrs[if i == 0 { 1 } else { 0 }];
        let cfg = self.config_of(i, self.addrs[i], Some(seed));
        let a = Agent::start(&cfg)
            .await
            .expect("restarted agent binds its old address");
        self.shared[i] = a.shared();
        self.agents[i] = Some(a);
    }

    pub fn n(&self) -> usize {
        self.agents.len()
    }

    /// Agents running now.
    pub fn live(&self) -> Vec<usize> {
        (0..self.n())
            .filter(|i| self.agents[*i].is_some())
            .collect()
    }

    /// What `observer` serves for `member`.
    pub fn status(&self, observer: usize, member: &str) -> Option<ServedStatus> {
        self.shared[observer]
            .lock()
            .member(member)
            .map(|m| m.status)
    }

    pub fn alive_count(&self, observer: usize) -> usize {
        self.shared[observer]
            .lock()
            .members()
            .iter()
            .filter(|m| m.status == ServedStatus::Alive)
            .count()
    }

    /// Every running agent but `member` itself serves `member` with `status`.
    pub fn all_see(&self, member: &str, status: ServedStatus) -> bool {
        self.live()
            .into_iter()
            .filter(|i| name(*i) != member)
            .all(|i| self.status(i, member) == Some(status))
    }

    /// Waits until every agent serves every agent alive.
    pub async fn converge(&self, timeout: Duration) {
        let n = self.n();
        wait_until(timeout, "all agents see every member alive", || {
            (0..n).all(|i| self.alive_count(i) == n)
        })
        .await;
    }

    /// Waits until every agent serves every agent alive with its metadata, in a guard that
    /// is `normal` with every peer in its baseline (ready for a fault).
    pub async fn converge_fully(&self, timeout: Duration) {
        let n = self.n();
        wait_until(timeout, "the cluster converges fully", || {
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

    /// Agent `i`'s guard report.
    pub fn guard(&self, i: usize) -> GuardReport {
        self.shared[i].lock().guard_report()
    }

    /// Cuts agent `i` off from every other agent, both directions (the transport's test-only
    /// drop filter).
    pub fn isolate(&self, i: usize) {
        let others: Vec<SocketAddr> = (0..self.n())
            .filter(|j| *j != i)
            .map(|j| self.addrs[j])
            .collect();
        self.shared[i].faults.block_all(others);
    }

    // ----- servers beside the agents -----------------------------------------------------

    /// The Unix socket of agent `i`'s local API (see [`Cluster::serve_api`]).
    pub fn api_socket(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.sock", name(i)))
    }

    /// A client of agent `i`'s local API (served by [`Cluster::serve_api`]).
    pub fn client(&self, i: usize) -> Client {
        Client::parse(&format!("unix:{}", self.api_socket(i).display())).expect("api address")
    }

    /// Starts agent `i`'s local API on its Unix socket; the caller owns the server.
    pub async fn spawn_api(&self, i: usize) -> ApiHandle {
        shoal::api::spawn(
            self.shared[i].clone(),
            ApiOptions {
                unix: Some(self.api_socket(i)),
                http: None,
                ..Default::default()
            },
        )
        .await
        .expect("the local API starts")
    }

    /// Serves agent `i`'s local API on its Unix socket until `stop`; returns a client of it.
    pub async fn serve_api(&mut self, i: usize) -> Client {
        let h = self.spawn_api(i).await;
        self.apis.insert(i, h);
        self.client(i)
    }

    /// Serves the Consul-compatible API of agent `i` on loopback port 0; returns its address.
    pub async fn serve_consul(&mut self, i: usize) -> SocketAddr {
        let h = shoal::api::consul::spawn(self.shared[i].clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("the Consul API starts");
        let a = h.local_addr();
        self.consul.insert(i, h);
        a
    }

    /// Serves DNS for agent `i` on loopback port 0 (TTL 0); returns its address.
    pub async fn serve_dns(&mut self, i: usize) -> SocketAddr {
        let h = shoal::dns::spawn(
            self.shared[i].clone(),
            "127.0.0.1:0".parse().unwrap(),
            Duration::ZERO,
        )
        .await
        .expect("DNS starts");
        let a = h.local_addr();
        self.dns.insert(i, h);
        a
    }

    /// Where agent `i`'s Consul API listens (see [`Cluster::serve_consul`]).
    pub fn consul_addr(&self, i: usize) -> SocketAddr {
        self.consul[&i].local_addr()
    }

    /// Where agent `i`'s DNS listens (see [`Cluster::serve_dns`]).
    pub fn dns_addr(&self, i: usize) -> SocketAddr {
        self.dns[&i].local_addr()
    }

    /// Agent `i`'s DNS server (for its counters).
    pub fn dns(&self, i: usize) -> &DnsHandle {
        &self.dns[&i]
    }

    /// Stops every server beside the agents, then every running agent.
    pub async fn stop(mut self) {
        for (_, h) in std::mem::take(&mut self.apis) {
            h.shutdown().await;
        }
        for (_, h) in std::mem::take(&mut self.consul) {
            h.shutdown().await;
        }
        for (_, h) in std::mem::take(&mut self.dns) {
            h.shutdown().await;
        }
        for a in self.agents.iter_mut() {
            if let Some(a) = a.take() {
                a.stop().await;
            }
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`. Returns how
/// long it took.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let max_polls = timeout.as_millis() / POLL.as_millis() + 2;
    for _ in 0..max_polls {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

/// [`wait_until`] for a condition that must await (an HTTP request): polls every 20 ms until
/// it holds; panics with `what` after `timeout`.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let max_polls = timeout.as_millis() / POLL.as_millis() + 2;
    for _ in 0..max_polls {
        if cond().await {
            return start.elapsed();
        }
        if start.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

/// Checks `cond` every 20 ms for the whole of `period`; panics with `what` the first time it
/// does not hold.
pub async fn holds_for(period: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < period {
        assert!(cond(), "{what} stopped holding after {:?}", start.elapsed());
        tokio::time::sleep(POLL).await;
    }
    assert!(cond(), "{what} stopped holding at the end");
}

/// Every member event the watch streams of some agents carry, from subscription on.
pub struct Events {
    rxs: Vec<(usize, broadcast::Receiver<std::sync::Arc<Event>>)>,
    /// (observer, member, status) in the order each observer published them.
    pub seen: Vec<(usize, String, ServedStatus)>,
    /// (observer, member, advertised address) of the same events.
    pub addrs: Vec<(usize, String, std::net::SocketAddr)>,
}

impl Events {
    /// Subscribes to the event streams of `agents`.
    pub fn subscribe(c: &Cluster, agents: &[usize]) -> Events {
        Events {
            rxs: agents
                .iter()
                .map(|i| (*i, c.shared[*i].events.subscribe()))
                .collect(),
            seen: Vec::new(),
            addrs: Vec::new(),
        }
    }

    /// Also watches `shared` as observer `i` (an agent restarted after `subscribe`).
    pub fn add(&mut self, i: usize, shared: &AgentShared) {
        self.rxs.retain(|(o, _)| *o != i);
        self.rxs.push((i, shared.events.subscribe()));
    }

    /// Takes every event published so far. A stream that lagged fails the test: a "never"
    /// must not miss what it is about.
    pub fn drain(&mut self) {
        for (i, rx) in self.rxs.iter_mut() {
            loop {
                match rx.try_recv() {
                    Ok(ev) => {
                        if let EventKind::Member { member, .. } = &ev.kind {
                            self.seen.push((*i, member.name.clone(), member.status));
                            self.addrs.push((*i, member.name.clone(), member.addr));
                        }
                    }
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        panic!("the watch stream of n{i} lagged by {n} events")
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// Drains every 20 ms for the whole of `period`.
    pub async fn watch_for(&mut self, period: Duration) {
        let start = Instant::now();
        while start.elapsed() < period {
            self.drain();
            tokio::time::sleep(POLL).await;
        }
        self.drain();
    }

    /// Every event seen for `member` with a status other than alive.
    pub fn not_alive(&self, member: &str) -> Vec<(usize, ServedStatus)> {
        let mut v = self.of(member);
        v.retain(|(_, s)| *s != ServedStatus::Alive);
        v
    }

    /// Every event seen for `member`.
    pub fn of(&self, member: &str) -> Vec<(usize, ServedStatus)> {
        self.seen
            .iter()
            .filter(|(_, m, _)| m == member)
            .map(|(o, _, s)| (*o, *s))
            .collect()
    }
}
