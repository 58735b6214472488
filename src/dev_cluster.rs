//! The dev cluster itself: N agents on loopback in this process, node 0 as the seed of the
//! others, data dirs under one directory, graceful leave of all; with the demo services and
//! the short guard timings each node runs with.
//!
//! Owns `DevArgs`, `DevCluster` and `DevNode`. It starts and stops agents and nothing else:
//! it must not display anything (`dev.rs` does) nor inject faults (`dev_live.rs` does), and
//! decides nothing about membership. A leaf under both: it imports neither of them.

use crate::agent::{Agent, AgentShared};
use crate::config::{parse_duration, AgentArgs, Config};
use anyhow::{bail, Context};
use shoal_core::{Profile, ServedStatus};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest cluster `shoal dev` starts.
pub const MAX_DEV_NODES: usize = 250;

#[derive(Clone, Debug, clap::Args)]
pub struct DevArgs {
    /// Number of agents to start
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// UDP port of node 0; node i uses base-port + i (0: any free port)
    #[arg(long, default_value_t = 7946)]
    pub base_port: u16,
    /// Give node i its own address 127.0.0.(i+1), all on base-port (Linux loopback)
    #[arg(long)]
    pub distinct_ips: bool,
    /// Timing profile
    #[arg(long, value_parser = crate::core_args::profile(), default_value_t = Profile::Local)]
    pub profile: Profile,
    /// Leave and exit as soon as every agent sees every member alive
    #[arg(long)]
    pub exit_after_converge: bool,
    /// Leave and exit after this long (for example 30s)
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Report failure if the cluster has not converged within this long
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Directory for the agents' data (kept); default: a temporary one, removed at exit
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter for the agents' own log lines (stderr)
    #[arg(long, default_value = "warn")]
    pub log_level: String,
    /// After converging, run a fixed fault story unattended (cut an agent off, heal, split,
    /// heal, kill one, one leaves), showing each agent's served view beside the truth; exit
    #[arg(long)]
    pub script: bool,
}

impl Default for DevArgs {
    fn default() -> Self {
        DevArgs {
            nodes: 5,
            base_port: 7946,
            distinct_ips: false,
            profile: Profile::Local,
            exit_after_converge: false,
            duration: None,
            timeout: Duration::from_secs(30),
            data_dir: None,
            log_level: "warn".to_string(),
            script: false,
        }
    }
}

/// One agent of the dev cluster and the configuration it runs with.
pub struct DevNode {
    pub config: Config,
    /// `None` once the agent was killed (`shoal dev`'s `k` key).
    pub agent: Option<Agent>,
    pub shared: Arc<AgentShared>,
    pub addr: SocketAddr,
}

/// N agents running in this process.
pub struct DevCluster {
    pub nodes: Vec<DevNode>,
    /// Parent of every node's data directory.
    pub root: PathBuf,
    remove_root: bool,
    /// When the first agent was started.
    pub started: Instant,
}

/// Called once every agent runs, before the display starts: the place to start each agent's
/// local API (`cluster.shareds()` and each `node.config`, whose `api` is the socket path).
pub type DevHook = Box<dyn FnOnce(&DevCluster) -> anyhow::Result<()> + Send>;

impl DevCluster {
    /// Starts `args.nodes` agents on loopback; node 0 is the seed of the others.
    pub async fn start(args: &DevArgs) -> anyhow::Result<DevCluster> {
        if args.nodes == 0 || args.nodes > MAX_DEV_NODES {
            bail!(
                "--nodes must be between 1 and {MAX_DEV_NODES}, got {}",
                args.nodes
            );
        }
        if !args.distinct_ips
            && args.base_port != 0
            && usize::from(args.base_port) + args.nodes - 1 > usize::from(u16::MAX)
        {
            bail!(
                "--base-port {} leaves no room for {} ports",
                args.base_port,
                args.nodes
            );
        }
        let (root, remove_root) = match &args.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("cannot create the data directory {}", d.display()))?;
                (d.clone(), false)
            }
            None => (fresh_dev_root()?, true),
        };
        let mut cluster = DevCluster {
            nodes: Vec::new(),
            root,
            remove_root,
            started: Instant::now(),
        };
        for i in 0..args.nodes {
            let bind = if args.distinct_ips {
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, (i + 1) as u8)),
                    args.base_port,
                )
            } else {
                let port = if args.base_port == 0 {
                    0
                } else {
                    args.base_port + i as u16
                };
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            };
            let seed = cluster.nodes.first().map(|n| n.addr);
            let dir = cluster.root.join(format!("n{i}"));
            let a = AgentArgs {
                name: Some(format!("n{i}")),
                bind: Some(bind.to_string()),
                api: Some(format!("unix:{}", dir.join("shoal.sock").display())),
                join: seed.map(|s| vec![s.to_string()]).unwrap_or_default(),
                services: services_of(i, args.nodes),
                data_dir: Some(dir),
                profile: Some(args.profile),
                log_level: Some(args.log_level.clone()),
                // One key for the whole local cluster, new every run.
                encrypt: Some(crate::agent::datadir::process_key()),
                ..AgentArgs::default()
            };
            let mut config = Config::load_with_env(&a, &|_| None)
                .with_context(|| format!("configuration of n{i}"))?;
            demo_guard(&mut config);
            // The cut and split keys drop datagrams through `AgentShared::faults`.
            let agent = match Agent::start_with_faults(&config).await {
                Ok(agent) => agent,
                Err(e) => {
                    let hint = if args.distinct_ips {
                        "pick another --base-port, or drop --distinct-ips if 127.0.0.x addresses are not routed here"
                    } else {
                        "pick another --base-port (0 picks free ports)"
                    };
                    cluster.stop_all().await;
                    bail!("cannot start n{i}: {e}; {hint}");
                }
            };
            cluster.nodes.push(DevNode {
                config,
                shared: agent.shared(),
                addr: agent.advertise_addr(),
                agent: Some(agent),
            });
        }
        Ok(cluster)
    }

    /// The seam of every agent, in node order (for the local API).
    pub fn shareds(&self) -> Vec<Arc<AgentShared>> {
        self.nodes.iter().map(|n| n.shared.clone()).collect()
    }

    /// The API socket path of every agent, in node order.
    pub fn api_paths(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.config.api.clone()).collect()
    }

    /// Per node: how many members it sees alive.
    pub fn alive_counts(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| {
                n.shared
                    .lock()
                    .members()
                    .iter()
                    .filter(|m| m.status == ServedStatus::Alive)
                    .count()
            })
            .collect()
    }

    /// Every agent sees every member alive.
    pub fn converged(&self) -> bool {
        let n = self.nodes.len();
        self.alive_counts().iter().all(|c| *c == n)
    }

    /// Every agent leaves gracefully, all at once, within `max_wait`; then the data
    /// directory is removed if it was a temporary one.
    pub async fn leave_all(mut self, max_wait: Duration) {
        let nodes = std::mem::take(&mut self.nodes);
        let leaves = nodes
            .into_iter()
            .filter_map(|n| n.agent)
            .map(|a| a.leave_and_stop(max_wait));
        futures_util::future::join_all(leaves).await;
        self.cleanup();
    }

    async fn stop_all(&mut self) {
        for n in std::mem::take(&mut self.nodes) {
            if let Some(a) = n.agent {
                a.stop().await;
            }
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if self.remove_root {
            let _ = std::fs::remove_dir_all(&self.root);
            self.remove_root = false;
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The services of dev node `i` of `n`: `web` on the first three (ports 8080..), `db` on the
/// last one only (so that cutting it off shows a service kept instead of emptied).
pub fn services_of(i: usize, n: usize) -> Vec<String> {
    let mut v = Vec::new();
    if i < 3 {
        v.push(format!("web:{}", 8080 + i));
    }
    if n > 1 && i == n - 1 {
        v.push("db:5432".to_string());
    }
    v
}

/// Guard timings short enough to watch: the view is stable after 2 s and removals are
/// counted over 10 s (production defaults: 30 s and 60 s).
pub fn demo_guard(cfg: &mut crate::config::Config) {
    cfg.guard.stable_after = Duration::from_secs(2);
    cfg.guard.window = Duration::from_secs(10);
    cfg.guard.warming_sync = Duration::from_millis(500);
}

/// A new, empty directory under the system's temp directory for a dev cluster that was given
/// no `--data-dir`. Created with `create_dir` (which fails if the path exists), so two dev
/// clusters started in the same millisecond by one process (parallel tests) never share one.
fn fresh_dev_root() -> anyhow::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let base = std::env::temp_dir();
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = base.join(format!("shoal-dev-{}-{stamp}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create the data directory {}", dir.display()))
            }
        }
    }
    bail!(
        "cannot create a fresh data directory under {}",
        base.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_services() {
        assert_eq!(services_of(0, 5), vec!["web:8080"]);
        assert_eq!(services_of(3, 5), Vec::<String>::new());
        assert_eq!(services_of(4, 5), vec!["db:5432"]);
        assert_eq!(services_of(2, 3), vec!["web:8082", "db:5432"]);
    }
}
