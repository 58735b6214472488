//! `shoal dev`: a local cluster of N agents in this process, on loopback, with a live view of
//! it converging.
//!
//! Owns `DevArgs`, `DevCluster` (start N agents, node 0 as the seed, data dirs under one
//! directory, graceful leave of all) and the progress display (a redrawn table on a TTY,
//! plain lines otherwise). It is a CLI edge (errors are `anyhow`) and must not decide
//! anything about membership: it only starts agents and reads their served views.
//! The hook passed to `run_dev_with` is where the local API of each agent is started.

use crate::agent::{init_logging, Agent, AgentShared};
use crate::config::{parse_duration, AgentArgs, Config, LogFormat};
use anyhow::{bail, Context};
use shoal_core::{Event, EventKind, MemberChange, Profile, ServedStatus};
use std::io::{IsTerminal, Write};
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
                services: crate::dev_live::services_of(i, args.nodes),
                data_dir: Some(dir),
                profile: Some(args.profile),
                log_level: Some(args.log_level.clone()),
                // One key for the whole local cluster, new every run.
                encrypt: Some(crate::agent::datadir::process_key()),
                ..AgentArgs::default()
            };
            let mut config = Config::load_with_env(&a, &|_| None)
                .with_context(|| format!("configuration of n{i}"))?;
            crate::dev_live::demo_guard(&mut config);
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

/// `shoal dev`: starts the cluster, shows it converging, runs until Ctrl-C (or
/// `--exit-after-converge` / `--duration`), then makes every agent leave gracefully.
pub async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    run_dev_with(args, None).await
}

/// Like [`run_dev`], calling `hook` once every agent runs (to start their local APIs).
pub async fn run_dev_with(args: DevArgs, hook: Option<DevHook>) -> anyhow::Result<()> {
    // The caller may already have installed a subscriber; then its filter applies.
    let _ = init_logging(&args.log_level, LogFormat::Text);
    let tty = std::io::stdout().is_terminal();
    let mut cluster = DevCluster::start(&args).await?;
    let n = cluster.nodes.len();
    let mut out = std::io::stdout();
    let first = cluster.nodes[0].addr;
    let last = cluster.nodes[n - 1].addr;
    let _ = writeln!(
        out,
        "shoal dev: {n} agents on {first} .. {last}, profile {}, seed n0 ({first})",
        args.profile
    );
    let _ = writeln!(out, "data: {}", cluster.root.display());
    for node in &cluster.nodes {
        let _ = writeln!(
            out,
            "  {:<4} {:<21} api unix:{}",
            node.config.name,
            node.addr.to_string(),
            node.config.api.display()
        );
    }
    if let Some(hook) = hook {
        if let Err(e) = hook(&cluster) {
            cluster.leave_all(Duration::from_secs(2)).await;
            return Err(e);
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if args.exit_after_converge {
            "watching the view converge..."
        } else {
            "watching the view converge (Ctrl-C: every agent leaves gracefully and dev exits)"
        }
    );

    let mut events = cluster.nodes[0].shared.events.subscribe();
    let mut display = Display::new(tty, n);
    let mut converged_at: Option<Duration> = None;
    let mut timed_out = false;
    // Convergence is checked every 20 ms (so that the figure is precise), the display is
    // redrawn every 200 ms.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut ticks: u64 = 0;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = args.duration.map(|d| tokio::time::Instant::now() + d);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = loop {
        let until_end = async {
            match end {
                Some(e) => tokio::time::sleep_until(e).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = &mut ctrl_c => break "interrupted",
            _ = until_end => break "duration elapsed",
            ev = events.recv() => match ev {
                Ok(ev) => display.change(&ev),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                    display.note(format!("({k} changes not shown)"))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
            _ = tick.tick() => {
                ticks += 1;
                let checking = converged_at.is_none();
                if !checking && !ticks.is_multiple_of(10) {
                    continue;
                }
                let counts = cluster.alive_counts();
                let elapsed = cluster.started.elapsed();
                if checking && counts.iter().all(|c| *c == n) {
                    converged_at = Some(elapsed);
                }
                if ticks % 10 == 1 || converged_at.is_some() {
                    display.draw(&mut out, &cluster, &counts, elapsed, converged_at);
                }
                if let Some(t) = converged_at {
                    if !display.announced {
                        display.announced = true;
                        display.clear(&mut out);
                        let _ = writeln!(
                            out,
                            "converged: all {n} agents see {n} alive members in {} ms",
                            t.as_millis()
                        );
                        display.reset();
                        if args.exit_after_converge {
                            break "converged";
                        }
                        // The live part: faults from the keyboard (or the scripted story),
                        // each agent's served view beside the truth.
                        let interactive = std::io::stdin().is_terminal() && args.duration.is_none();
                        if args.script || interactive {
                            match crate::dev_live::run(&mut cluster, args.script, tty, &mut out).await {
                                Ok(o) => break o,
                                Err(e) => {
                                    cluster.leave_all(Duration::from_secs(2)).await;
                                    return Err(e);
                                }
                            }
                        }
                    }
                } else if !timed_out && elapsed > args.timeout {
                    timed_out = true;
                    let _ = writeln!(
                        out,
                        "not converged after {:?}: alive seen per node {:?}",
                        args.timeout, counts
                    );
                    display.reset();
                    if args.exit_after_converge {
                        break "timed out";
                    }
                }
            }
        }
    };
    if tty {
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{outcome}: every agent leaves the cluster...");
    let t0 = Instant::now();
    cluster.leave_all(Duration::from_secs(3)).await;
    let _ = writeln!(
        out,
        "all {n} agents left in {} ms",
        t0.elapsed().as_millis()
    );
    if converged_at.is_none() {
        bail!("the cluster did not converge: not every agent saw every member alive");
    }
    Ok(())
}

/// The progress display: a table redrawn in place on a TTY, plain lines otherwise.
struct Display {
    tty: bool,
    n: usize,
    /// Lines drawn last time (to move the cursor back over them).
    drawn: usize,
    last_counts: Vec<usize>,
    recent: std::collections::VecDeque<String>,
    announced: bool,
}

const BAR: usize = 24;
const RECENT: usize = 5;

impl Display {
    fn new(tty: bool, n: usize) -> Self {
        Display {
            tty,
            n,
            drawn: 0,
            last_counts: Vec::new(),
            recent: Default::default(),
            announced: false,
        }
    }

    /// Starts a new table below whatever was printed since (no redraw over it).
    fn reset(&mut self) {
        self.drawn = 0;
    }

    /// On a terminal, erases the live table so that a message printed next stands above the
    /// table redrawn after it (instead of leaving a stale copy of the table behind).
    fn clear(&mut self, out: &mut impl Write) {
        if self.tty && self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A\r\x1b[J", self.drawn);
        }
        self.drawn = 0;
    }

    fn note(&mut self, line: String) {
        if self.tty {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(line);
        } else if self.announced {
            println!("{line}");
        }
    }

    /// A change of n0's view.
    fn change(&mut self, ev: &Event) {
        let line = match &ev.kind {
            EventKind::Member {
                change,
                previous,
                member,
            } => match change {
                MemberChange::Joined => format!("n0 sees {} join ({})", member.name, member.status),
                MemberChange::Status => format!(
                    "n0 sees {} {} -> {}",
                    member.name,
                    previous.map(|p| p.as_str()).unwrap_or("?"),
                    member.status
                ),
                // The first metadata of each member arrives right after it joins: noise.
                MemberChange::Meta if !self.announced => return,
                MemberChange::Meta => format!("n0 sees new metadata of {}", member.name),
                MemberChange::Reaped => format!("n0 forgot {}", member.name),
            },
            EventKind::Guard(t) => format!(
                "n0 guard {} -> {}: {}",
                t.from.as_str(),
                t.to.as_str(),
                t.report.reason
            ),
            EventKind::Local(l) => format!("n0: {l:?}"),
            EventKind::UserEvent(e) => format!("n0 got user event {} from {}", e.name, e.origin),
            EventKind::Query(q) => format!("n0 got query {} from {}", q.name, q.origin),
            EventKind::Outlier(t) => format!(
                "n0 instance {} of {} {}: {}",
                t.node,
                t.service,
                t.action.as_str(),
                t.reason
            ),
            EventKind::Health(t) => format!(
                "n0 health guard of {} {} -> {}: {}",
                t.service,
                t.from.as_str(),
                t.to.as_str(),
                t.report.reason
            ),
        };
        self.note(format!("+{:>6} ms  {line}", ev.at_ms));
    }

    fn draw(
        &mut self,
        out: &mut impl Write,
        cluster: &DevCluster,
        counts: &[usize],
        elapsed: Duration,
        converged: Option<Duration>,
    ) {
        let n = self.n;
        if !self.tty {
            // Plain lines: only when something changed.
            if counts != self.last_counts.as_slice() {
                let per: Vec<String> = counts
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("n{i} {c}/{n}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "+{:>6} ms  alive seen: {}",
                    elapsed.as_millis(),
                    per.join("  ")
                );
                self.last_counts = counts.to_vec();
            }
            return;
        }
        let mut lines = Vec::with_capacity(n + RECENT + 3);
        lines.push(format!(
            "  {:<5} {:<21} {:>7}  view",
            "node", "address", "alive"
        ));
        for (i, node) in cluster.nodes.iter().enumerate() {
            let c = counts.get(i).copied().unwrap_or(0);
            let fill = (c * BAR).checked_div(n).unwrap_or(0);
            let colour = if c == n { "\x1b[32m" } else { "\x1b[33m" };
            lines.push(format!(
                "  {:<5} {:<21} {:>7}  {colour}{}\x1b[0m{}",
                node.config.name,
                node.addr.to_string(),
                format!("{c}/{n}"),
                "█".repeat(fill),
                "░".repeat(BAR - fill)
            ));
        }
        lines.push(match converged {
            Some(t) => format!(
                "  converged in {} ms; running for {:.1} s",
                t.as_millis(),
                elapsed.as_secs_f64()
            ),
            None => format!("  converging... {} ms", elapsed.as_millis()),
        });
        for r in &self.recent {
            lines.push(format!("  {r}"));
        }
        let mut buf = String::new();
        if self.drawn > 0 {
            buf.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for l in &lines {
            buf.push_str("\r\x1b[2K");
            buf.push_str(l);
            buf.push('\n');
        }
        let _ = out.write_all(buf.as_bytes());
        let _ = out.flush();
        self.drawn = lines.len();
    }
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

    #[tokio::test]
    async fn dev_cluster_converges_and_leaves() {
        let args = DevArgs {
            nodes: 3,
            base_port: 0,
            ..DevArgs::default()
        };
        let cluster = DevCluster::start(&args).await.expect("starts");
        assert_eq!(cluster.shareds().len(), 3);
        let paths = cluster.api_paths();
        assert!(paths[1].ends_with("n1/shoal.sock"), "{paths:?}");
        let root = cluster.root.clone();
        assert!(root.join("n2").is_dir());
        let start = Instant::now();
        while !cluster.converged() {
            assert!(start.elapsed() < Duration::from_secs(5), "did not converge");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster.leave_all(Duration::from_secs(1)).await;
        assert!(!root.exists(), "the temporary data directory is removed");
    }

    #[tokio::test]
    async fn run_dev_exits_after_converging() {
        let args = DevArgs {
            nodes: 3,
            base_port: 0,
            exit_after_converge: true,
            timeout: Duration::from_secs(10),
            ..DevArgs::default()
        };
        run_dev(args).await.expect("converges and exits");
    }

    #[tokio::test]
    async fn too_many_nodes_is_refused() {
        let args = DevArgs {
            nodes: 0,
            ..DevArgs::default()
        };
        let e = DevCluster::start(&args).await.err().expect("refused");
        assert!(e.to_string().contains("--nodes"), "{e}");
    }
}
