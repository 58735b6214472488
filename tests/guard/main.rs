//! End-to-end tests of the guard with real agents on loopback.
//!
//! Each test starts its own agents in-process (profile `local`, port 0 on 127.0.0.1, short
//! guard timings: `stable_after` 1 s, `window` 5 s), injects network faults with the
//! test-only drop filter of the transport (`AgentShared::faults`), and checks what a user
//! would check: the served view, the services, the guard state, and where it is visible (the
//! local API over a Unix socket, the CLI, the metrics, the watch stream, the alert hook).
//! Every wait polls every 20 ms until the condition holds or a deadline passes. Nothing here
//! asserts performance; the crash test prints its figures with the guard on and off.
//!
//! This file holds the setup (agents, watchers, the alert hook, the CLI); the tests are in
//! `reactions` (faults, operator, restarts, visibility) and `never_down` (every event of
//! every watch stream).

#[path = "../common/mod.rs"]
mod common;
mod gray;
mod never_down;
mod reactions;

use common::{name, Cluster};
use shoal::api::types::WatchLine;
use shoal::api::ApiHandle;
use shoal::cli::{self, ClientArgs, ClientCommand, Format};
use shoal::client::{Client, MemberQuery};
use shoal::config::{AgentArgs, Config};
use shoal_core::{EventKind, GuardMode, GuardState, GuardTransition, ServedStatus};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long a cluster may take to converge and take its first baseline.
const SETTLE: Duration = Duration::from_secs(15);
/// How long the agents may take to react to a cut (suspicion is ~0.8 s with `local`). The
/// cut-off side is the slow one: with Lifeguard its local health stretches its probes up to
/// 9x (1.8 s) and, the sole accuser of each peer, it waits 6x the suspicion (4.8 s) before
/// declaring one down: holding all six peers of a 7-node cluster takes it up to ~16 s.
const REACT: Duration = Duration::from_secs(30);
/// How long the agents may take to heal after a cut is lifted (re-announce backoff is capped
/// at 5 s with `local`, then the guard needs `stable_after` of calm).
const HEAL: Duration = Duration::from_secs(25);

/// What differs between the agents of a test.
#[derive(Clone, Default)]
struct Setup {
    mode: GuardMode,
    /// Agents offering the service `api` (port 8080).
    api_on: Vec<usize>,
    /// Alert hook of agent 0.
    hook: Option<String>,
    /// Flap damping (off unless a test turns it on).
    damping: bool,
}

fn config(
    i: usize,
    bind: SocketAddr,
    seed: Option<SocketAddr>,
    dir: &Path,
    setup: &Setup,
) -> Config {
    let args = AgentArgs {
        guard_mode: Some(setup.mode),
        services: if setup.api_on.contains(&i) {
            vec!["api:8080".to_string()]
        } else {
            Vec::new()
        },
        ..common::agent_args(i, bind, seed, dir)
    };
    let mut cfg = Config::load_with_env(&args, &|_| None).expect("valid test config");
    cfg.guard.stable_after = Duration::from_secs(1);
    cfg.guard.window = Duration::from_secs(5);
    cfg.guard.drain_per_sec = 50;
    cfg.guard.warming_sync = Duration::from_millis(500);
    cfg.guard.warming_timeout = Duration::from_secs(20);
    // These tests hold the guard to its bounds (a healed host back in every view within
    // 2 s); flap damping delays the return of a member served down by design, and has its
    // own tests (`gray`), with damping on.
    cfg.guard.damping = setup.damping;
    if i == 0 {
        cfg.alert_hook = setup.hook.clone();
    }
    cfg
}

/// The shared harness's cluster (`tests/common`), each agent configured by `config` with
/// the test's `Setup`.
async fn start(n: usize, setup: Setup) -> Cluster {
    Cluster::start_with(
        n,
        Box::new(move |i, bind, seed, dir| config(i, bind, seed, dir, &setup)),
    )
    .await
}

impl Cluster {
    /// The served view of `i`: (name, status) of every member, itself included.
    fn view(&self, i: usize) -> Vec<(String, ServedStatus)> {
        self.shared[i]
            .lock()
            .members()
            .into_iter()
            .map(|m| (m.name, m.status))
            .collect()
    }

    /// `i` serves exactly the members in `alive` as alive, those in `held` as held and those
    /// in `down` as down, and nothing else.
    fn serves(&self, i: usize, alive: &[usize], held: &[usize], down: &[usize]) -> bool {
        let view = self.view(i);
        let total = alive.len() + held.len() + down.len();
        let check = |set: &[usize], st: ServedStatus| {
            set.iter()
                .all(|m| view.iter().any(|(n, s)| *n == name(*m) && *s == st))
        };
        view.len() == total
            && check(alive, ServedStatus::Alive)
            && check(held, ServedStatus::Held)
            && check(down, ServedStatus::Down)
    }

    /// Every running agent serves every agent alive, with its guard normal and nothing held.
    fn exact_truth(&self) -> bool {
        let all: Vec<usize> = (0..self.n()).collect();
        self.live().into_iter().all(|i| {
            let g = self.guard(i);
            g.state == GuardState::Normal && g.held == 0 && self.serves(i, &all, &[], &[])
        })
    }

    /// Converged (everyone alive everywhere) and every guard took a full baseline.
    async fn settle(&self) {
        let n = self.n();
        let off = self.guard(0).mode == GuardMode::Off;
        self.wait(SETTLE, "converged with a full baseline everywhere", || {
            self.exact_truth() && (off || (0..n).all(|i| self.guard(i).baseline == n - 1))
        })
        .await;
    }

    /// Every running agent's guard and served view, for failure messages.
    fn dump(&self) -> String {
        let mut s = String::new();
        for i in self.live() {
            let g = self.guard(i);
            let view: Vec<String> = self
                .view(i)
                .into_iter()
                .map(|(n, st)| format!("{n}:{}", st.as_str()))
                .collect();
            s.push_str(&format!(
                "\n  n{i}: {} held={} baseline={} active={} ({}) [{}]",
                g.state.as_str(),
                g.held,
                g.baseline,
                self.shared[i].lock().active_peers(),
                g.reason,
                view.join(" ")
            ));
        }
        s
    }

    /// `wait_until` that shows every agent's state when it times out.
    async fn wait(
        &self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if cond() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting until {what}:{}",
                self.dump()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cuts the agents in `group` off from all the others (both directions, on both sides).
    fn cut(&self, group: &[usize]) {
        for i in 0..self.n() {
            let others = (0..self.n())
                .filter(|j| group.contains(&i) != group.contains(j))
                .map(|j| self.addrs[j]);
            self.shared[i].faults.block_all(others);
        }
    }

    /// Lifts every cut.
    fn heal(&self) {
        for s in &self.shared {
            s.faults.clear();
        }
    }

    /// Agent `i`'s local API on its Unix socket (the caller stops it) and a client of it.
    async fn api(&self, i: usize) -> (ApiHandle, Client) {
        (self.spawn_api(i).await, self.client(i))
    }
}

/// Collects the lines of a watch stream in the background.
struct Watcher {
    lines: Arc<Mutex<Vec<WatchLine>>>,
    task: JoinHandle<()>,
}

impl Watcher {
    async fn start(client: &Client) -> Watcher {
        let mut w = client.watch(None).await.expect("watch opens");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(l)) = w.next().await {
                sink.lock().unwrap().push(l);
            }
        });
        Watcher { lines, task }
    }

    /// Guard transitions seen so far.
    fn transitions(&self) -> Vec<GuardTransition> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| match l {
                WatchLine::Event(e) => match &e.kind {
                    EventKind::Guard(t) => Some(t.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn saw(&self, to: GuardState) -> bool {
        self.transitions().iter().any(|t| t.to == to)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An alert hook writing `$SHOAL_GUARD_STATE` then its stdin to one file per run in `dir`.
fn hook_command(dir: &Path) -> String {
    format!(
        "f=\"{}/hook.$$\"; printf '%s\\n' \"$SHOAL_GUARD_STATE\" > \"$f.tmp\"; \
         cat >> \"$f.tmp\"; mv \"$f.tmp\" \"$f\"",
        dir.display()
    )
}

/// What the alert hook wrote: (state from the environment, transition from stdin).
fn hook_runs(dir: &Path) -> Vec<(String, GuardTransition)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let fname = p.file_name().unwrap().to_string_lossy().into_owned();
        if !fname.starts_with("hook.") || fname.ends_with(".tmp") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("hook output readable");
        let (state, json) = text.split_once('\n').expect("state line then JSON");
        let t: GuardTransition = serde_json::from_str(json).expect("JSON transition on stdin");
        out.push((state.to_string(), t));
    }
    out
}

async fn run_cli(api: &Path, cmd: ClientCommand) -> serde_json::Value {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::run_with(
        ClientArgs {
            api: format!("unix:{}", api.display()),
            format: Format::Json,
        },
        cmd,
        &mut out,
        &mut err,
    )
    .await
    .expect("CLI runs");
    assert_eq!(code, ExitCode::SUCCESS, "{}", String::from_utf8_lossy(&err));
    serde_json::from_slice(&out).expect("CLI prints JSON")
}

/// Checks that agent `i`'s guard shows `state` and `held` through the API, the members
/// answer, the metrics and the CLI. Returns the reason the API gives.
async fn check_visible(
    c: &Cluster,
    i: usize,
    client: &Client,
    state: GuardState,
    held: usize,
) -> String {
    let g = client.guard().await.expect("GET /v1/guard").guard;
    assert_eq!((g.state, g.held), (state, held), "GET /v1/guard: {g:?}");
    assert!(!g.reason.is_empty());

    let m = client
        .members(&MemberQuery::default())
        .await
        .expect("GET /v1/members");
    assert_eq!(
        (m.guard.state, m.guard.held),
        (state, held),
        "/v1/members guard field"
    );
    let held_listed = m
        .members
        .iter()
        .filter(|m| m.status == ServedStatus::Held)
        .count();
    assert_eq!(held_listed, held, "/v1/members lists the held members");

    let metrics = client.metrics().await.expect("GET /metrics");
    for st in [
        GuardState::Normal,
        GuardState::Frozen,
        GuardState::Isolated,
        GuardState::Warming,
    ] {
        let line = format!(
            "shoal_guard_state{{state=\"{}\"}} {}\n",
            st.as_str(),
            u8::from(st == state)
        );
        assert!(metrics.contains(&line), "metrics lack {line:?}:\n{metrics}");
    }
    let held_line = format!("shoal_guard_held_members {held}\n");
    assert!(metrics.contains(&held_line), "metrics lack {held_line:?}");

    let v = run_cli(
        &c.api_socket(i),
        ClientCommand::Guard {
            action: None,
            all: false,
        },
    )
    .await;
    assert_eq!(v["guard"]["state"], state.as_str(), "shoal guard: {v}");
    assert_eq!(v["guard"]["held"], held as u64, "shoal guard: {v}");
    assert_eq!(v["guard"]["reason"], g.reason.as_str(), "shoal guard: {v}");
    g.reason
}
