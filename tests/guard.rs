//! End-to-end tests of the guard with real agents on loopback.
//!
//! Each test starts its own agents in-process (profile `local`, port 0 on 127.0.0.1, short
//! guard timings: `stable_after` 1 s, `window` 5 s), injects network faults with the
//! test-only drop filter of the transport (`AgentShared::faults`), and checks what a user
//! would check: the served view, the services, the guard state, and where it is visible (the
//! local API over a Unix socket, the CLI, the metrics, the watch stream, the alert hook).
//! Every wait polls every 20 ms until the condition holds or a deadline passes. Nothing here
//! asserts performance; the crash test prints its figures with the guard on and off.

mod common;

use common::{holds_for, name, wait_until, Cluster};
use shoal::agent::Agent;
use shoal::api::types::WatchLine;
use shoal::api::{self, ApiHandle, ApiOptions};
use shoal::cli::{self, ClientArgs, ClientCommand, Format, GuardAction};
use shoal::client::{Client, MemberQuery};
use shoal::config::{AgentArgs, Config};
use shoal_core::{EventKind, GuardMode, GuardReport, GuardState, GuardTransition, ServedStatus};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long a cluster may take to converge and take its first baseline.
const SETTLE: Duration = Duration::from_secs(15);
/// How long the agents may take to react to a cut (suspicion is ~0.8 s with `local`).
const REACT: Duration = Duration::from_secs(10);
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
    fn guard(&self, i: usize) -> GuardReport {
        self.shared[i].lock().guard_report()
    }

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

    fn api_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.sock", name(i)))
    }

    async fn api(&self, i: usize) -> (ApiHandle, Client) {
        let path = self.api_path(i);
        let h = api::spawn(
            self.shared[i].clone(),
            ApiOptions {
                unix: Some(path.clone()),
                http: None,
                ..Default::default()
            },
        )
        .await
        .expect("API binds");
        let c = Client::parse(&format!("unix:{}", path.display())).expect("client");
        (h, c)
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

    let v = run_cli(&c.api_path(i), ClientCommand::Guard { action: None }).await;
    assert_eq!(v["guard"]["state"], state.as_str(), "shoal guard: {v}");
    assert_eq!(v["guard"]["held"], held as u64, "shoal guard: {v}");
    assert_eq!(v["guard"]["reason"], g.reason.as_str(), "shoal guard: {v}");
    g.reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_six_cut_off_is_isolated_and_the_rest_remove_only_it() {
    let c = start(6, Setup::default()).await;
    c.settle().await;
    let rest = [0, 1, 2, 3, 4];
    c.cut(&[5]);
    let took = c
        .wait(REACT, "n5 isolated, the others remove only n5", || {
            // The five never trip: one failure is under the limit.
            for i in rest {
                let st = c.guard(i).state;
                assert_eq!(
                    st,
                    GuardState::Normal,
                    "n{i} must stay normal: {:?}",
                    c.guard(i)
                );
            }
            let g5 = c.guard(5);
            g5.state == GuardState::Isolated
                && g5.held == 5
                && c.serves(5, &[5], &rest, &[])
                && rest.iter().all(|i| c.serves(*i, &rest, &[], &[5]))
        })
        .await;
    eprintln!("1 of 6 cut: reacted in {took:?}; n5: {:?}", c.guard(5));
    holds_for(Duration::from_secs(1), "the cut view", || {
        c.guard(5).state == GuardState::Isolated
            && c.serves(5, &[5], &rest, &[])
            && rest.iter().all(|i| c.guard(*i).state == GuardState::Normal)
    })
    .await;
    c.heal();
    let took = c
        .wait(HEAL, "all six back to the exact truth", || c.exact_truth())
        .await;
    eprintln!("1 of 6 cut: healed to the exact truth in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_three_split_freezes_the_four_isolates_the_three_and_never_empties_a_service() {
    let hooks = tempfile::tempdir().expect("temp dir");
    let setup = Setup {
        api_on: vec![4, 5, 6],
        hook: Some(hook_command(hooks.path())),
        ..Default::default()
    };
    let c = start(7, setup).await;
    c.settle().await;
    let (api_handle, client) = c.api(0).await;
    check_visible(&c, 0, &client, GuardState::Normal, 0).await;
    let watcher = Watcher::start(&client).await;
    let four = [0, 1, 2, 3];
    let three = [4, 5, 6];
    // The four must always serve `api`, which only the three offer.
    let api_served = |c: &Cluster| {
        for i in four {
            let n = c.shared[i]
                .lock()
                .services()
                .get("api")
                .map(Vec::len)
                .unwrap_or(0);
            assert!(n > 0, "n{i} serves `api` empty: {:?}", c.view(i));
        }
    };
    api_served(&c);

    c.cut(&three);
    let took = c
        .wait(REACT, "four frozen holding three, three isolated", || {
            api_served(&c);
            four.iter().all(|i| {
                let g = c.guard(*i);
                g.state == GuardState::Frozen && g.held == 3 && c.serves(*i, &four, &three, &[])
            }) && three.iter().all(|i| {
                let g = c.guard(*i);
                g.state == GuardState::Isolated && g.held == 4 && c.serves(*i, &three, &four, &[])
            })
        })
        .await;
    eprintln!("4/3 split: reacted in {took:?}; n0: {:?}", c.guard(0));
    let api_instances = c.shared[0].lock().services()["api"].clone();
    assert_eq!(api_instances.len(), 3, "{api_instances:?}");
    assert!(api_instances.iter().all(|x| x.status == ServedStatus::Held));

    // Visible everywhere on n0: API, members, metrics, CLI, watch, alert hook.
    let reason = check_visible(&c, 0, &client, GuardState::Frozen, 3).await;
    assert!(reason.contains("3 of 6 baseline peers lost"), "{reason}");
    assert!(reason.contains("limit 40%"), "{reason}");
    let mut table = Vec::new();
    let code = cli::run_with(
        ClientArgs {
            api: format!("unix:{}", c.api_path(0).display()),
            format: Format::Table,
        },
        ClientCommand::Guard { action: None },
        &mut table,
        &mut Vec::new(),
    )
    .await
    .expect("CLI runs");
    assert_eq!(code, ExitCode::SUCCESS);
    let table = String::from_utf8(table).expect("UTF-8");
    assert!(
        table.contains("frozen") && table.contains(&reason),
        "{table}"
    );
    assert!(table.contains("held members: n4, n5, n6"), "{table}");
    let strict = client
        .members(&MemberQuery {
            status: vec!["alive".into()],
            ..Default::default()
        })
        .await
        .expect("?status=alive");
    assert_eq!(strict.members.len(), 4, "the strict view has only the four");
    wait_until(REACT, "a guard event on the watch stream", || {
        watcher.saw(GuardState::Frozen)
    })
    .await;
    let t = watcher
        .transitions()
        .into_iter()
        .find(|t| t.to == GuardState::Frozen)
        .expect("frozen transition");
    assert_eq!(t.from, GuardState::Normal);
    // It froze on suspicion, before SWIM declared the three down (held then, not before).
    assert!(t.report.held <= 3, "{t:?}");
    wait_until(REACT, "the alert hook ran on entry to frozen", || {
        hook_runs(hooks.path())
            .iter()
            .any(|(s, t)| s == "frozen" && t.to == GuardState::Frozen)
    })
    .await;

    holds_for(Duration::from_secs(1), "the split view", || {
        api_served(&c);
        four.iter()
            .all(|i| c.guard(*i).state == GuardState::Frozen && c.serves(*i, &four, &three, &[]))
    })
    .await;

    c.heal();
    let took = c
        .wait(HEAL, "all seven back to the exact truth", || {
            api_served(&c);
            c.exact_truth()
        })
        .await;
    eprintln!("4/3 split: healed to the exact truth in {took:?}");
    check_visible(&c, 0, &client, GuardState::Normal, 0).await;
    wait_until(
        REACT,
        "the thaw on the watch stream and in the hook",
        || {
            watcher.saw(GuardState::Normal)
                && hook_runs(hooks.path()).iter().any(|(s, _)| s == "normal")
        },
    )
    .await;
    // One watch event on entry, one on exit (a transient pass through `isolated` would add
    // more; the first and the last are what a watcher acts on).
    let ts: Vec<(GuardState, GuardState)> = watcher
        .transitions()
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    eprintln!("4/3 split: n0 guard events on the watch stream: {ts:?}");
    assert_eq!(ts.first(), Some(&(GuardState::Normal, GuardState::Frozen)));
    assert_eq!(ts.last().map(|t| t.1), Some(GuardState::Normal));
    drop(watcher);
    api_handle.shutdown().await;
}

/// Stops agent 4 of a settled cluster and returns how long until everyone served it `down`.
async fn crash_removal(mode: GuardMode) -> Duration {
    let mut c = start(
        5,
        Setup {
            mode,
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    c.agents[4].take().expect("running").stop().await;
    let took = c
        .wait(REACT, "every agent serves n4 down", || {
            (0..4).all(|i| c.status(i, &name(4)) == Some(ServedStatus::Down))
        })
        .await;
    for i in 0..4 {
        assert_eq!(c.guard(i).state, GuardState::Normal, "{mode:?}");
        assert!(c.serves(i, &[0, 1, 2, 3], &[], &[4]), "{:?}", c.view(i));
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_crash_is_removed_as_fast_with_the_guard_as_without() {
    let (on, off) = tokio::join!(
        crash_removal(GuardMode::Enforce),
        crash_removal(GuardMode::Off)
    );
    eprintln!("single crash removed everywhere: guard enforce {on:?}, guard off {off:?}");
    // Loose: both within a few suspicion timeouts (0.8 s with `local`, 5 members).
    let bound = Duration::from_secs(5);
    assert!(on < bound && off < bound, "on {on:?}, off {off:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_while_frozen_applies_at_once() {
    let mut c = start(
        5,
        Setup {
            api_on: vec![1],
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    for i in 0..4 {
        c.shared[i].with_node(|n, now| n.guard_freeze(now, "test"));
        assert_eq!(c.guard(i).state, GuardState::Frozen);
    }
    c.agents[4]
        .take()
        .expect("running")
        .leave_and_stop(Duration::from_secs(2))
        .await;
    let took = c
        .wait(REACT, "every agent serves n4 left", || {
            (0..4).all(|i| c.status(i, &name(4)) == Some(ServedStatus::Left))
        })
        .await;
    eprintln!("leave while frozen: left everywhere {took:?} after leave_and_stop returned");

    // A deregistration empties the service at once, frozen or not.
    c.shared[1]
        .with_node(|n, now| n.deregister_service(now, "api"))
        .expect("deregistered");
    c.wait(REACT, "nobody serves `api` any more", || {
        (0..4).all(|i| !c.shared[i].lock().services().contains_key("api"))
    })
    .await;

    // A new member appears while frozen.
    c.add(0).await;
    c.wait(REACT, "the frozen agents serve the newcomer alive", || {
        (0..4).all(|i| c.status(i, &name(5)) == Some(ServedStatus::Alive))
    })
    .await;

    for i in 0..4 {
        let g = c.guard(i);
        assert_eq!((g.state, g.held), (GuardState::Frozen, 0), "n{i}: {g:?}");
        let view = c.view(i);
        assert_eq!(view.len(), 6, "{view:?}");
        for (n, st) in &view {
            let want = if n == "n4" {
                ServedStatus::Left
            } else {
                ServedStatus::Alive
            };
            assert_eq!(*st, want, "n{i} serves {n}: {view:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_freeze_and_thaw_are_visible_everywhere() {
    let hooks = tempfile::tempdir().expect("temp dir");
    let c = start(
        3,
        Setup {
            hook: Some(hook_command(hooks.path())),
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    let (api_handle, client) = c.api(0).await;
    let watcher = Watcher::start(&client).await;

    let v = run_cli(
        &c.api_path(0),
        ClientCommand::Guard {
            action: Some(GuardAction::Freeze),
        },
    )
    .await;
    assert_eq!(v["guard"]["state"], "frozen", "{v}");
    let reason = check_visible(&c, 0, &client, GuardState::Frozen, 0).await;
    assert!(reason.contains("frozen by operator"), "{reason}");
    wait_until(REACT, "freeze on the watch stream and in the hook", || {
        watcher.saw(GuardState::Frozen)
            && hook_runs(hooks.path()).iter().any(|(s, _)| s == "frozen")
    })
    .await;
    // An operator freeze does not thaw by itself.
    holds_for(Duration::from_millis(1500), "the operator freeze", || {
        c.guard(0).state == GuardState::Frozen
    })
    .await;

    let r = client.guard_thaw().await.expect("POST /v1/guard/thaw");
    assert_eq!(r.guard.state, GuardState::Normal);
    let reason = check_visible(&c, 0, &client, GuardState::Normal, 0).await;
    assert!(reason.contains("thawed by operator"), "{reason}");
    wait_until(REACT, "thaw on the watch stream and in the hook", || {
        watcher.saw(GuardState::Normal)
            && hook_runs(hooks.path()).iter().any(|(s, _)| s == "normal")
    })
    .await;
    // The other agents were never affected: the override is local.
    for i in 1..3 {
        assert_eq!(c.guard(i).state, GuardState::Normal);
    }
    drop(watcher);
    api_handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_snapshot_as_warming_until_reconnected() {
    let mut c = start(4, Setup::default()).await;
    c.settle().await;
    c.agents[3].take().expect("running").stop().await;
    assert!(
        c.dir.path().join("n3").join("snapshot.json").exists(),
        "stopping saves the snapshot"
    );
    // The peers drop everything from n3's address: the restarted n3 is cut off.
    for i in 0..3 {
        c.shared[i].faults.block(c.addrs[3]);
    }
    let cfg = c.config_of(3, c.addrs[3], Some(c.addrs[0]));
    let again = Agent::start(&cfg)
        .await
        .expect("restarts on its old address");
    c.shared[3] = again.shared();
    c.agents[3] = Some(again);
    let g = c.guard(3);
    assert_eq!(g.state, GuardState::Warming, "{g:?}");
    assert!(c.serves(3, &[3], &[0, 1, 2], &[]), "{:?}", c.view(3));
    holds_for(
        Duration::from_secs(1),
        "warming with the restored view",
        || c.guard(3).state == GuardState::Warming && c.serves(3, &[3], &[0, 1, 2], &[]),
    )
    .await;
    for i in 0..3 {
        c.shared[i].faults.clear();
    }
    let took = wait_until(
        HEAL,
        "the restarted agent synced and everyone alive",
        || c.exact_truth(),
    )
    .await;
    eprintln!("restart from snapshot: normal and exact {took:?} after reconnecting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_hook_sees_transitions_in_order() {
    let hooks = tempfile::tempdir().expect("temp dir");
    let log = hooks.path().join("states");
    let c = start(
        2,
        Setup {
            hook: Some(format!(
                "echo \"$SHOAL_GUARD_STATE\" >> \"{}\"",
                log.display()
            )),
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    // Quick operator overrides: the alerting system must end with the last state.
    const ROUNDS: usize = 8;
    for _ in 0..ROUNDS {
        c.shared[0].with_node(|n, now| n.guard_freeze(now, "test"));
        c.shared[0].with_node(|n, now| n.guard_thaw(now, "test"));
    }
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    wait_until(REACT, "the hook ran for every transition", || {
        lines().len() == 2 * ROUNDS
    })
    .await;
    let expected: Vec<String> = (0..2 * ROUNDS)
        .map(|k| if k % 2 == 0 { "frozen" } else { "normal" }.to_string())
        .collect();
    assert_eq!(lines(), expected, "hook runs out of transition order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_reports_what_it_would_hold_and_serves_the_truth() {
    let c = start(
        4,
        Setup {
            mode: GuardMode::Shadow,
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    c.cut(&[3]);
    c.wait(REACT, "n3 isolated in shadow, serving the truth", || {
        let g = c.guard(3);
        g.state == GuardState::Isolated
            && g.held == 0
            && g.would_hold == 3
            && c.serves(3, &[3], &[], &[0, 1, 2])
            && (0..3).all(|i| c.serves(i, &[0, 1, 2], &[], &[3]))
    })
    .await;
    c.heal();
    c.wait(HEAL, "all four back to the exact truth", || c.exact_truth())
        .await;
}

/// The reason of an `isolated` guard follows what the node reaches now, not what it saw
/// when it crossed the line (an operator reading `shoal guard` must be told the current
/// number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isolated_reason_tells_the_current_reach() {
    let c = start(4, Setup::default()).await;
    c.settle().await;
    c.cut(&[3]);
    c.wait(REACT, "n3 isolated, reaching nobody", || {
        let g = c.guard(3);
        g.state == GuardState::Isolated && g.held == 3 && c.shared[3].lock().active_peers() == 0
    })
    .await;
    let reason = c.guard(3).reason;
    assert!(
        reason.contains("0 of 3")
            || reason.contains("no active peer")
            || reason.contains("nothing received"),
        "stale reason: {reason:?}"
    );
}

// ----- acting before the damage (every event of every watch stream) ----------------------

/// How long after a cut is lifted every agent must serve the exact truth (issue #9's bound).
const EXACT_AFTER_HEAL: Duration = Duration::from_secs(2);

/// One watch stream per agent, from before the fault to the end of the test.
struct Watchers {
    _apis: Vec<ApiHandle>,
    /// (agent, its watch stream)
    watchers: Vec<(usize, Watcher)>,
}

impl Watchers {
    async fn start(c: &Cluster, agents: &[usize]) -> Watchers {
        let mut apis = Vec::new();
        let mut watchers = Vec::new();
        for &i in agents {
            let (h, client) = c.api(i).await;
            watchers.push((i, Watcher::start(&client).await));
            apis.push(h);
        }
        Watchers {
            _apis: apis,
            watchers,
        }
    }

    /// Every (observer, member) pair the watch streams of `agents` showed served `down`, in
    /// the snapshot or in any event since.
    fn served_down(&self, agents: &[usize]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, w) in self.watchers.iter().filter(|(i, _)| agents.contains(i)) {
            let i = *i;
            for line in w.lines.lock().unwrap().iter() {
                match line {
                    WatchLine::Snapshot(s) => out.extend(
                        s.members
                            .iter()
                            .filter(|m| m.status == ServedStatus::Down)
                            .map(|m| (i, m.name.clone())),
                    ),
                    WatchLine::Event(e) => {
                        if let EventKind::Member { member, .. } = &e.kind {
                            if member.status == ServedStatus::Down {
                                out.push((i, member.name.clone()));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn events(&self) -> usize {
        self.watchers
            .iter()
            .map(|(_, w)| w.lines.lock().unwrap().len())
            .sum()
    }
}

impl Cluster {
    /// Every running agent serves every running agent `alive`, and nothing else but
    /// members that left (the guard may still be frozen for its hysteresis; what apps get
    /// is exact).
    fn exact_view(&self) -> bool {
        let live: Vec<String> = self.live().into_iter().map(name).collect();
        self.live().into_iter().all(|i| {
            let view = self.view(i);
            live.iter().all(|n| {
                view.iter()
                    .any(|(m, st)| m == n && *st == ServedStatus::Alive)
            }) && view
                .iter()
                .all(|(m, st)| *st == ServedStatus::Left || live.contains(m))
        })
    }

    /// Lifts every cut and waits for the exact view; returns how long it took.
    async fn heal_to_exact(&self) -> Duration {
        self.heal();
        self.wait(
            EXACT_AFTER_HEAL,
            "every agent serves the exact truth after the heal",
            || self.exact_view(),
        )
        .await
    }
}

/// The guard state and served view every agent shows when the cut has taken effect.
async fn wait_cut_effect(c: &Cluster, frozen: &[usize], isolated: &[usize]) -> Duration {
    let n = c.n();
    c.wait(
        REACT,
        "the cut-off side isolated, the rest frozen or normal",
        || {
            isolated.iter().all(|&i| {
                let g = c.guard(i);
                g.state == GuardState::Isolated && g.held == n - isolated.len()
            }) && frozen.iter().all(|&i| {
                let g = c.guard(i);
                g.state == GuardState::Frozen && g.held == isolated.len()
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_one_second_after_the_cluster_formed_never_serves_anyone_down() {
    let c = start(7, Setup::default()).await;
    let all: Vec<usize> = (0..7).collect();
    let w = Watchers::start(&c, &all).await;
    c.wait(SETTLE, "converged", || c.exact_view()).await;
    // One second after the cluster formed (the fault's timing, not a wait for an outcome).
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.cut(&[6]);
    let took = wait_cut_effect(&c, &[], &[6]).await;
    // The six removed the one node they lost, as after a crash.
    c.wait(REACT, "the others serve n6 down", || {
        (0..6).all(|i| c.status(i, &name(6)) == Some(ServedStatus::Down))
    })
    .await;
    let healed = c.heal_to_exact().await;
    eprintln!("1 of 7 cut 1 s after forming: isolated and holding in {took:?}, exact {healed:?} after the heal");
    assert_eq!(
        w.served_down(&[6]),
        vec![],
        "the cut-off host served a live member down"
    );
    assert!(w.events() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_after_a_stable_period_never_serves_anyone_down_on_either_side() {
    let c = start(7, Setup::default()).await;
    c.settle().await;
    let all: Vec<usize> = (0..7).collect();
    let w = Watchers::start(&c, &all).await;
    // A stable period well past `stable_after` (1 s here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.cut(&[4, 5, 6]);
    let took = wait_cut_effect(&c, &[0, 1, 2, 3], &[4, 5, 6]).await;
    let healed = c.heal_to_exact().await;
    eprintln!("3/4 split: frozen and isolated in {took:?}, exact {healed:?} after the heal");
    assert_eq!(w.served_down(&all), vec![], "a live member was served down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_receiving_never_serves_anyone_down() {
    let c = start(7, Setup::default()).await;
    let w = Watchers::start(&c, &[6]).await;
    c.wait(SETTLE, "converged", || c.exact_view()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One-way: n6's datagrams still go out, nothing comes in.
    c.shared[6].faults.set_deaf(true);
    let took = c
        .wait(REACT, "n6 isolated holding everyone", || {
            let g = c.guard(6);
            g.state == GuardState::Isolated && c.serves(6, &[6], &[0, 1, 2, 3, 4, 5], &[])
        })
        .await;
    let reason = c.guard(6).reason;
    let healed = c.heal_to_exact().await;
    eprintln!("one-way cut: isolated in {took:?} ({reason}), exact {healed:?} after the heal");
    assert_eq!(
        w.served_down(&[6]),
        vec![],
        "the deaf host served a live member down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_in_the_middle_of_churn_never_serves_anyone_down() {
    let mut c = start(7, Setup::default()).await;
    let all: Vec<usize> = (0..7).collect();
    let w = Watchers::start(&c, &all).await;
    c.wait(SETTLE, "converged", || c.exact_view()).await;
    // Churn: a node joins, then leaves gracefully, one change every 400 ms (the `local`
    // profile is five times faster than `lan`: every 2 s on a LAN), never a quiet period.
    let mut churned = Vec::new();
    for k in 0..6 {
        churned.push(c.add(k % 4).await);
        // A join is done when every agent serves the joiner (on a loaded machine that can
        // take longer than 400 ms; a node that leaves before the others know it is a
        // different story: they never see its leave).
        c.wait(SETTLE, "every agent serves the joiner", || c.exact_view())
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        if k % 2 == 1 {
            let j = churned.remove(0);
            if let Some(a) = c.agents[j].take() {
                a.leave_and_stop(Duration::from_secs(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    // Split n0..n3 from n4..n6 and the churned agents still running (4 of 10 vs 6 of 10).
    let mut six = vec![4, 5, 6];
    six.extend(churned.iter().copied());
    for i in c.live() {
        let others = c
            .live()
            .into_iter()
            .filter(|j| six.contains(&i) != six.contains(j))
            .map(|j| c.addrs[j]);
        c.shared[i].faults.block_all(others);
    }
    c.wait(REACT, "the four isolated, the six frozen", || {
        (0..4).all(|i| c.guard(i).state == GuardState::Isolated)
            && [4, 5, 6]
                .iter()
                .all(|&i| c.guard(i).state == GuardState::Frozen)
    })
    .await;
    // Let SWIM declare the other side down, then heal.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let healed = c.heal_to_exact().await;
    eprintln!("split under churn: exact {healed:?} after the heal");
    let down: Vec<(usize, String)> = w
        .served_down(&all)
        .into_iter()
        .filter(|(_, m)| (0..7).any(|i| *m == name(i)))
        .collect();
    assert_eq!(down, vec![], "a live member was served down");
}
