//! `shoal dev`: a local cluster of N agents in this process, on loopback, with a live view of
//! it converging.
//!
//! Owns the command's run (`run_dev_with`: start the cluster of `dev_cluster.rs`, hand it to
//! the live part of `dev_live.rs`) and the progress display (a redrawn table on a TTY, plain
//! lines otherwise). It is a CLI edge (errors are `anyhow`) and must not decide
//! anything about membership: it only starts agents and reads their served views.
//! The hook passed to `run_dev_with` is where the local API of each agent is started.

use crate::agent::init_logging;
use crate::config::LogFormat;
use anyhow::bail;
use shoal_core::{Event, EventKind, MemberChange};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub use crate::dev_cluster::{DevArgs, DevCluster, DevHook, DevNode, MAX_DEV_NODES};

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
