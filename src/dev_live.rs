//! The live part of `shoal dev`: faults from the keyboard (or a fixed story with
//! `--script`) while each agent's **served view** and guard state are shown beside **what
//! SWIM believes** on that agent and beside the truth of the test bed (who is really cut off,
//! split or killed), so that the difference the guard makes is visible.
//!
//! Owns the demo services and guard timings of the dev cluster, the fault commands (through
//! the transport's test-only drop filter `AgentShared::faults`, `Agent::stop`, a graceful
//! leave), the side-by-side table and the story. It only drives agents and displays what they
//! serve: it decides nothing about membership (that is the core's and the guard's).

use crate::dev_cluster::DevCluster;
use anyhow::bail;
use shoal_core::{ServedStatus, TruthState};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// What the test bed really does to each agent (the truth the table shows on its right).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fate {
    #[default]
    Running,
    /// Cut off from every other agent.
    CutOff,
    /// On side `0` or `1` of a split.
    Side(u8),
    Killed,
    Left,
}

impl Fate {
    fn word(&self) -> String {
        match self {
            Fate::Running => "running".into(),
            Fate::CutOff => "CUT OFF".into(),
            Fate::Side(s) => format!("side {}", if *s == 0 { "A" } else { "B" }),
            Fate::Killed => "KILLED".into(),
            Fate::Left => "left".into(),
        }
    }
}

/// The fault bookkeeping of a dev cluster.
pub struct Bed<'a> {
    pub cluster: &'a mut DevCluster,
    pub fates: Vec<Fate>,
}

/// One agent's row: its guard, its served view and what SWIM says, by status.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub name: String,
    pub fate: Fate,
    pub guard: String,
    /// Size of the guard's baseline (0 until the view was first stable).
    pub baseline: usize,
    pub served: BTreeMap<&'static str, usize>,
    pub swim: BTreeMap<&'static str, usize>,
    /// Served instances per service.
    pub instances: BTreeMap<String, usize>,
}

impl Row {
    /// Members this agent serves as reachable (alive, suspect or held).
    pub fn serving(&self) -> usize {
        ["alive", "suspect", "held"]
            .iter()
            .map(|k| self.served.get(k).copied().unwrap_or(0))
            .sum()
    }
}

fn counts(m: &BTreeMap<&'static str, usize>) -> String {
    let v: Vec<String> = m.iter().map(|(k, c)| format!("{c} {k}")).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

fn truth_word(t: TruthState) -> &'static str {
    match t {
        TruthState::Alive => "alive",
        TruthState::Suspect => "suspect",
        TruthState::Down => "down",
        TruthState::Left => "left",
    }
}

impl Bed<'_> {
    pub fn new(cluster: &mut DevCluster) -> Bed<'_> {
        let n = cluster.nodes.len();
        Bed {
            cluster,
            fates: vec![Fate::Running; n],
        }
    }

    fn n(&self) -> usize {
        self.cluster.nodes.len()
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.cluster.nodes.iter().map(|n| n.addr).collect()
    }

    /// Cuts agent `i` off from every other agent (both directions).
    pub fn cut(&mut self, i: usize) {
        let others: Vec<SocketAddr> = self
            .addrs()
            .into_iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a)
            .collect();
        self.cluster.nodes[i].shared.faults.block_all(others);
        if self.fates[i] == Fate::Running {
            self.fates[i] = Fate::CutOff;
        }
    }

    /// Splits the running agents 40 / 60: the first 40 % cannot reach the others.
    pub fn split(&mut self) {
        let n = self.n();
        let a = (n * 2).div_ceil(5).max(1);
        let addrs = self.addrs();
        for i in 0..a {
            let far: Vec<SocketAddr> = addrs[a..].to_vec();
            self.cluster.nodes[i].shared.faults.block_all(far);
        }
        for (i, f) in self.fates.iter_mut().enumerate() {
            if *f == Fate::Running || *f == Fate::CutOff {
                *f = Fate::Side(u8::from(i >= a));
            }
        }
    }

    /// Reconnects every agent (killed and left ones stay so).
    pub fn heal(&mut self) {
        for (node, f) in self.cluster.nodes.iter().zip(self.fates.iter_mut()) {
            node.shared.faults.clear();
            if matches!(f, Fate::CutOff | Fate::Side(_)) {
                *f = Fate::Running;
            }
        }
    }

    /// Stops agent `i` without leaving, as a crash.
    pub async fn kill(&mut self, i: usize) {
        if let Some(a) = self.cluster.nodes[i].agent.take() {
            a.stop().await;
        }
        self.fates[i] = Fate::Killed;
    }

    /// Agent `i` leaves gracefully (its process keeps running, out of the cluster).
    pub fn leave(&mut self, i: usize) -> anyhow::Result<()> {
        self.cluster.nodes[i]
            .shared
            .with_node(|n, now| n.leave(now))?;
        self.fates[i] = Fate::Left;
        Ok(())
    }

    /// Every agent's row (killed ones show their last state, marked).
    pub fn rows(&self) -> Vec<Row> {
        self.cluster
            .nodes
            .iter()
            .zip(&self.fates)
            .map(|(node, fate)| {
                let n = node.shared.lock();
                let mut row = Row {
                    name: node.config.name.clone(),
                    fate: fate.clone(),
                    guard: n.guard_report().state.as_str().to_string(),
                    baseline: n.guard_report().baseline,
                    ..Row::default()
                };
                for m in n.members() {
                    *row.served.entry(m.status.as_str()).or_default() += 1;
                    let t = m.truth.unwrap_or(match m.status {
                        ServedStatus::Alive | ServedStatus::Damped => TruthState::Alive,
                        ServedStatus::Suspect => TruthState::Suspect,
                        ServedStatus::Left => TruthState::Left,
                        ServedStatus::Down | ServedStatus::Held | ServedStatus::Restarting => {
                            TruthState::Down
                        }
                    });
                    *row.swim.entry(truth_word(t)).or_default() += 1;
                }
                for (svc, insts) in n.services() {
                    row.instances.insert(svc, insts.len());
                }
                row
            })
            .collect()
    }

    /// The side-by-side table, as lines.
    pub fn table(&self) -> Vec<String> {
        let rows = self.rows();
        let n = self.n();
        let mut lines = vec![format!(
            "  {:<5} {:<8} {:<9} {:<42} {:<30} {}",
            "node",
            "really",
            "guard",
            "served view (what apps get)",
            "SWIM says (truth here)",
            "services served"
        )];
        for r in &rows {
            let services: Vec<String> = r
                .instances
                .iter()
                .map(|(s, c)| format!("{s} {c}"))
                .collect();
            let served = format!("{}/{n} serving: {}", r.serving(), counts(&r.served));
            // A guard without a baseline yet (the first 2 s of calm) does not trip: say so.
            let guard = if r.baseline == 0 {
                format!("{}*", r.guard)
            } else {
                r.guard.clone()
            };
            lines.push(format!(
                "  {:<5} {:<8} {:<9} {:<42} {:<30} {}",
                r.name,
                r.fate.word(),
                guard,
                served,
                counts(&r.swim),
                if services.is_empty() {
                    "-".into()
                } else {
                    services.join(", ")
                }
            ));
        }
        lines
    }
}

const KEYS: &str = "keys (then Enter): c N cut node N off | s split 40/60 | k N kill N | \
                    l N N leaves | h heal | q quit   (guard* = no baseline yet)";

fn parse_node(arg: Option<&str>, n: usize, default: usize) -> Result<usize, String> {
    match arg {
        None => Ok(default),
        Some(a) => {
            let i: usize = a
                .trim_start_matches('n')
                .parse()
                .map_err(|_| format!("{a:?} is not a node (n0..n{})", n - 1))?;
            if i < n {
                Ok(i)
            } else {
                Err(format!("no node {a} (n0..n{})", n - 1))
            }
        }
    }
}

/// Applies one command line; returns what it did, or `None` to quit.
async fn command(bed: &mut Bed<'_>, line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let n = bed.n();
    let Some(key) = words.next() else {
        return Some(String::new());
    };
    let arg = words.next();
    let node = |d| parse_node(arg, n, d);
    let msg = match key {
        "q" | "quit" => return None,
        "c" | "cut" => match node(n - 1) {
            Ok(i) => {
                bed.cut(i);
                format!("n{i} is cut off from every other agent")
            }
            Err(e) => e,
        },
        "s" | "split" => {
            bed.split();
            "the cluster is split 40/60".into()
        }
        "h" | "heal" => {
            bed.heal();
            "the network is healed".into()
        }
        "k" | "kill" => match node(n - 1) {
            Ok(i) => {
                bed.kill(i).await;
                format!("n{i} is killed")
            }
            Err(e) => e,
        },
        "l" | "leave" => match node(n - 1) {
            Ok(i) => match bed.leave(i) {
                Ok(()) => format!("n{i} leaves gracefully"),
                Err(e) => format!("n{i} cannot leave: {e}"),
            },
            Err(e) => e,
        },
        other => format!("unknown key {other:?}; {KEYS}"),
    };
    Some(msg)
}

/// Runs the live part until `q`, Ctrl-C or the end of the story; returns why it ended.
pub async fn run(
    cluster: &mut DevCluster,
    script: bool,
    tty: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<&'static str> {
    let mut bed = Bed::new(cluster);
    if script {
        let report = run_story(&mut bed, out).await?;
        let _ = writeln!(out, "{}", report.summary());
        return Ok("story done");
    }
    let _ = writeln!(out, "{KEYS}");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut last_msg = String::new();
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok("interrupted"),
            l = lines.next_line() => match l {
                Ok(Some(l)) => match command(&mut bed, &l).await {
                    Some(m) => last_msg = m,
                    None => return Ok("quit"),
                },
                _ => return Ok("stdin closed"),
            },
            _ = tick.tick() => {
                let mut t = bed.table();
                t.push(format!("  {last_msg}"));
                t.push(format!("  {KEYS}"));
                let mut buf = String::new();
                if tty {
                    // Redraw the whole screen: agents' log lines and the typed command do
                    // not leave stale copies of the table behind.
                    buf.push_str("\x1b[H\x1b[2J");
                }
                for l in &t {
                    buf.push_str(l);
                    buf.push('\n');
                }
                let _ = out.write_all(buf.as_bytes());
                let _ = out.flush();
            }
        }
    }
}

/// What the story observed (for the summary and the test).
#[derive(Clone, Debug, Default)]
pub struct StoryReport {
    pub nodes: usize,
    /// Largest number of members the cut-off agent served as reachable during the cut.
    pub cut_off_kept: usize,
    /// The guard state of the cut-off agent at the end of the cut.
    pub cut_off_guard: String,
    /// Smallest number of `db` instances any agent served while the only provider was cut off.
    pub db_min_during_cut: usize,
    /// Largest number of members the smaller side of the split served as reachable.
    pub split_small_side_kept: usize,
    /// Whether the cluster healed (every agent serving every member alive) after each heal.
    pub healed: Vec<bool>,
}

impl StoryReport {
    pub fn summary(&self) -> String {
        format!(
            "story: the cut-off agent kept serving {} of {} members (guard {}); db served by \
             at least {} instance everywhere during the cut; the smaller side of the split kept \
             {} of {}; healed after each heal: {:?}",
            self.cut_off_kept,
            self.nodes,
            self.cut_off_guard,
            self.db_min_during_cut,
            self.split_small_side_kept,
            self.nodes,
            self.healed
        )
    }
}

/// Polls every 100 ms until `cond` holds on the rows, or `limit`; prints the table then.
async fn watch_until(
    bed: &Bed<'_>,
    out: &mut (dyn Write + Send),
    limit: Duration,
    mut each: impl FnMut(&[Row]),
    cond: impl Fn(&[Row]) -> bool,
) -> bool {
    let start = Instant::now();
    let mut ok = false;
    for _ in 0..(limit.as_millis() / 100 + 1) {
        let rows = bed.rows();
        each(&rows);
        if cond(&rows) {
            ok = true;
            break;
        }
        if start.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = writeln!(out, "  (+{:.1} s)", start.elapsed().as_secs_f64());
    for l in bed.table() {
        let _ = writeln!(out, "{l}");
    }
    ok
}

/// Every agent serves every member alive, or `damped`: a member served down and back within
/// a minute is damped until it has been back 30 s (flap damping, docs/gray-failures.md).
fn all_alive(rows: &[Row], n: usize) -> bool {
    rows.iter().all(|r| {
        let alive = r.served.get("alive").copied().unwrap_or(0);
        let damped = r.served.get("damped").copied().unwrap_or(0);
        alive + damped == n && r.guard == "normal"
    })
}

/// The fixed story: cut the last agent off, heal, split 40/60, heal, kill n1, n2 leaves.
pub async fn run_story(
    bed: &mut Bed<'_>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<StoryReport> {
    let n = bed.n();
    if n < 4 {
        bail!("--script needs at least 4 nodes (it splits, kills one and makes one leave)");
    }
    let last = n - 1;
    let mut rep = StoryReport {
        nodes: n,
        db_min_during_cut: usize::MAX,
        ..StoryReport::default()
    };
    let step = |out: &mut (dyn Write + Send), s: &str| {
        let _ = writeln!(out, "\n== {s}");
    };

    step(
        out,
        "the guard takes its baseline once the view is stable (2 s here, 30 s by default)",
    );
    watch_until(
        bed,
        out,
        Duration::from_secs(20),
        |_| {},
        |rows| {
            rows.iter()
                .all(|r| r.baseline + 1 >= n && r.guard == "normal")
        },
    )
    .await;

    step(
        out,
        &format!("n{last} is cut off from every other agent (it offers the only db)"),
    );
    bed.cut(last);
    let mut kept = 0;
    let mut db_min = usize::MAX;
    watch_until(
        bed,
        out,
        Duration::from_secs(20),
        |rows| {
            kept = kept.max(rows[last].serving());
            for r in rows {
                db_min = db_min.min(r.instances.get("db").copied().unwrap_or(0));
            }
        },
        |rows| {
            rows[last].guard != "normal"
                && rows[..last]
                    .iter()
                    .all(|r| r.served.get("alive").copied().unwrap_or(0) < n)
        },
    )
    .await;
    // Hold the cut a few seconds more: the guard keeps the view over time, not for a moment.
    watch_until(
        bed,
        out,
        Duration::from_secs(4),
        |rows| {
            kept = kept.min(rows[last].serving());
            for r in rows {
                db_min = db_min.min(r.instances.get("db").copied().unwrap_or(0));
            }
        },
        |_| false,
    )
    .await;
    rep.cut_off_kept = kept;
    rep.db_min_during_cut = db_min;
    rep.cut_off_guard = bed.rows()[last].guard.clone();
    let _ = writeln!(
        out,
        "   n{last} serves {kept}/{n} members (guard {}): it knows it is the one cut off. \
         Every agent still serves db ({db_min}+ instance): never empty by failure.",
        rep.cut_off_guard
    );

    step(
        out,
        "heal: the network is back (a member served down and back within a minute is damped \
         until it has been back 30 s: flap damping)",
    );
    bed.heal();
    let ok = watch_until(
        bed,
        out,
        Duration::from_secs(40),
        |_| {},
        |rows| all_alive(rows, n),
    )
    .await;
    rep.healed.push(ok);

    let a = (n * 2).div_ceil(5).max(1);
    step(
        out,
        &format!("split: n0..n{} cannot reach n{a}..n{last}", a - 1),
    );
    bed.split();
    let mut small = 0;
    watch_until(
        bed,
        out,
        Duration::from_secs(20),
        |rows| {
            for r in &rows[..a] {
                small = small.max(r.serving());
            }
        },
        |rows| rows[..a].iter().all(|r| r.guard != "normal"),
    )
    .await;
    rep.split_small_side_kept = small;

    step(out, "heal");
    bed.heal();
    let ok = watch_until(
        bed,
        out,
        Duration::from_secs(40),
        |_| {},
        |rows| all_alive(rows, n),
    )
    .await;
    rep.healed.push(ok);

    step(
        out,
        "n1 is killed (one crash: removed as fast as without a guard)",
    );
    bed.kill(1).await;
    watch_until(
        bed,
        out,
        Duration::from_secs(20),
        |_| {},
        |rows| {
            rows.iter()
                .enumerate()
                .filter(|(i, _)| *i != 1)
                .all(|(_, r)| {
                    r.served.get("alive").copied().unwrap_or(0) == n - 1
                        && !r.served.contains_key("suspect")
                })
        },
    )
    .await;

    step(
        out,
        "n2 leaves gracefully (intent: removed at once, everywhere)",
    );
    bed.leave(2)?;
    watch_until(
        bed,
        out,
        Duration::from_secs(20),
        |_| {},
        |rows| {
            rows.iter()
                .enumerate()
                .filter(|(i, _)| *i != 1 && *i != 2)
                .all(|(_, r)| r.served.get("left").copied().unwrap_or(0) >= 1)
        },
    )
    .await;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev_cluster::DevArgs;

    /// The scripted story, unattended: the cut-off agent keeps its whole view, db is never
    /// served empty, the cluster heals after each heal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_script_shows_the_guard_holding() {
        let args = DevArgs {
            nodes: 5,
            base_port: 0,
            ..DevArgs::default()
        };
        let mut cluster = DevCluster::start(&args).await.expect("starts");
        let start = Instant::now();
        while !cluster.converged() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "did not converge"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut out: Vec<u8> = Vec::new();
        let rep = {
            let mut bed = Bed::new(&mut cluster);
            run_story(&mut bed, &mut out).await.expect("the story runs")
        };
        let text = String::from_utf8_lossy(&out);
        eprintln!("{text}\n{}", rep.summary());
        assert_eq!(rep.cut_off_kept, 5, "the cut-off agent kept its whole view");
        assert_ne!(rep.cut_off_guard, "normal");
        assert!(rep.db_min_during_cut >= 1, "db was never served empty");
        assert_eq!(rep.healed, vec![true, true], "healed after each heal");
        for s in [
            "== n4 is cut off",
            "== split",
            "== n1 is killed",
            "== n2 leaves",
            "CUT OFF",
            "KILLED",
        ] {
            assert!(text.contains(s), "the story shows {s:?}");
        }
        cluster.leave_all(Duration::from_secs(2)).await;
    }
}
