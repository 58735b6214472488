//! The mixed-version cluster and the rolling upgrade (docs/upgrades.md), with real binaries:
//! the previous release's (`SHOAL_PREV_BIN`, built by `.ci/prev-release.sh`) and this one's.
//!
//! Two agents of the previous release and two of this one (alternating, each joining through
//! the one started before it) form a cluster on loopback with one cluster key; every agent
//! must serve the same view (members, tags, services). Then each old agent is upgraded in
//! turn (SIGTERM, start this release's binary with the same flags and data directory), and
//! every agent's watch stream is checked over the whole run:
//! no member other than the one being upgraded ever stops being alive with its tags and
//! services, and the upgraded one comes back with all of them.
//!
//! Without `SHOAL_PREV_BIN` the test prints SKIPPED and passes, unless `SHOAL_REQUIRE_PREV=1`
//! (CI sets both). Owns nothing but this test; must not use anything but loopback.

use shoal::api::types::WatchLine;
use shoal::client::Client;
use shoal_core::{EventKind, MemberView, ServedStatus};
use shoal_core::{ProtocolRange, PROTOCOL, PROTOCOL_V1};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AGENTS: usize = 4;
/// Agents started from the previous release's binary: the even ones (the others run this
/// one's), each joining through the agent before it, so that an agent of each release joins
/// through one of the other.
const OLD: usize = 2;

fn starts_old(i: usize) -> bool {
    i.is_multiple_of(2)
}
/// Longest wait for any one condition (the cluster converges in a few seconds on loopback).
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

fn prev_bin() -> Option<PathBuf> {
    let required = std::env::var("SHOAL_REQUIRE_PREV").is_ok_and(|v| v == "1");
    match std::env::var_os("SHOAL_PREV_BIN").filter(|v| !v.is_empty()) {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        Some(p) => panic!("SHOAL_PREV_BIN={} is not a file", Path::new(&p).display()),
        None if required => panic!(
            "SHOAL_REQUIRE_PREV=1 but SHOAL_PREV_BIN is not set: build the previous release with \
             `bash .ci/prev-release.sh` and set SHOAL_PREV_BIN to the path it prints"
        ),
        None => {
            println!(
                "SKIPPED: mixed-version test: SHOAL_PREV_BIN is not set \
                 (SHOAL_PREV_BIN=\"$(bash .ci/prev-release.sh | tail -1)\" cargo test --test upgrade)"
            );
            None
        }
    }
}

/// What agent `i` is started with, whichever binary runs it.
fn tags(i: usize) -> BTreeMap<String, String> {
    BTreeMap::from([("role".to_string(), format!("r{i}"))])
}

/// Services of agent `i`: one shared by all (`web`), one of its own.
fn services(i: usize) -> Vec<(String, u16)> {
    let mut s = vec![
        ("web".to_string(), 8000 + i as u16),
        (format!("svc{i}"), 9000 + i as u16),
    ];
    s.sort();
    s
}

fn name(i: usize) -> String {
    format!("u{i}")
}

/// One agent process; killed when dropped.
struct Agent {
    child: Option<std::process::Child>,
    dir: PathBuf,
    bind: String,
    join: Option<SocketAddr>,
    key: String,
    old: bool,
}

impl Agent {
    fn api(&self) -> Client {
        Client::parse(&format!("unix:{}", self.dir.join("api.sock").display())).expect("api")
    }

    fn start(&mut self, bin: &Path) {
        let i: usize = self.dir.file_name().unwrap().to_str().unwrap()[1..]
            .parse()
            .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("log file");
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("agent")
            .args([
                "--name",
                &name(i),
                "--bind",
                &self.bind,
                "--profile",
                "local",
            ])
            .args(["--encrypt", &self.key, "--log-level", "warn"])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--api")
            .arg(format!("unix:{}", self.dir.join("api.sock").display()));
        for (k, v) in tags(i) {
            cmd.args(["--tag", &format!("{k}={v}")]);
        }
        for (s, p) in services(i) {
            cmd.args(["--service", &format!("{s}:{p}")]);
        }
        if let Some(j) = self.join {
            cmd.args(["--join", &j.to_string()]);
        }
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the shoal binary starts");
        self.child = Some(child);
    }

    /// SIGTERM (what `systemctl stop` sends), then waits for the process to exit.
    async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let start = Instant::now();
        loop {
            if child.try_wait().expect("wait").is_some() {
                return;
            }
            if start.elapsed() > WAIT {
                let _ = child.kill();
                panic!("agent in {} did not exit on SIGTERM", self.dir.display());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a user compares between agents: every member's name, address, status, generation,
/// tags and services (and not the local clocks: `since`).
type View = BTreeMap<String, (SocketAddr, ServedStatus, u64, String, Vec<(String, u16)>)>;

fn view_of(members: &[MemberView]) -> View {
    members
        .iter()
        .map(|m| {
            let mut svcs: Vec<(String, u16)> = m
                .services
                .iter()
                .map(|s| (s.name.clone(), s.port))
                .collect();
            svcs.sort();
            let tags = format!("{:?}", m.tags);
            (m.name.clone(), (m.addr, m.status, m.generation, tags, svcs))
        })
        .collect()
}

/// Whether `m` is what agent `i` announces: alive, its tags and its services.
fn whole(m: &MemberView) -> bool {
    let Some(i) = m
        .name
        .strip_prefix('u')
        .and_then(|s| s.parse::<usize>().ok())
    else {
        return false;
    };
    let mut svcs: Vec<(String, u16)> = m
        .services
        .iter()
        .map(|s| (s.name.clone(), s.port))
        .collect();
    svcs.sort();
    m.status == ServedStatus::Alive && m.tags == tags(i) && svcs == services(i)
}

/// The lines of one agent's watch streams (one per process lifetime), in order.
#[derive(Default)]
struct Stream {
    lines: Vec<(Instant, WatchLine)>,
}

fn watch(agent: &Agent, into: Arc<Mutex<Stream>>) -> tokio::task::JoinHandle<()> {
    let client = agent.api();
    tokio::spawn(async move {
        let Ok(mut w) = client.watch(None).await else {
            return;
        };
        // Ends when the agent's process ends (the stream closes) or the test aborts it.
        while let Some(Ok(line)) = w.next().await {
            into.lock().unwrap().lines.push((Instant::now(), line));
        }
    })
}

async fn wait_api(agent: &Agent) {
    let c = agent.api();
    let start = Instant::now();
    while c.local().await.is_err() {
        assert!(
            start.elapsed() < WAIT,
            "the API of {} never came up",
            agent.dir.display()
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn members(agent: &Agent) -> Vec<MemberView> {
    agent
        .api()
        .members(&Default::default())
        .await
        .map(|r| r.members)
        .unwrap_or_default()
}

/// Waits until every agent serves every member whole and all serve the same view; returns it.
async fn converged(agents: &[Agent], what: &str) -> View {
    let start = Instant::now();
    loop {
        let mut views = Vec::new();
        for a in agents {
            views.push(members(a).await);
        }
        let all_whole = views
            .iter()
            .all(|v| v.len() == AGENTS && v.iter().all(whole));
        let first = view_of(&views[0]);
        if all_whole && views.iter().all(|v| view_of(v) == first) {
            return first;
        }
        assert!(
            start.elapsed() < WAIT,
            "{what}: the agents never served the same whole view: {:#?}",
            views.iter().map(|v| view_of(v)).collect::<Vec<_>>()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every agent of this release serves each member's protocol as `expect(i)`.
async fn protocols_seen(agents: &[Agent], expect: impl Fn(usize) -> ProtocolRange) {
    let start = Instant::now();
    loop {
        let mut ok = true;
        for a in agents.iter().filter(|a| !a.old) {
            for m in members(a).await {
                let i: usize = m.name[1..].parse().unwrap();
                ok &= m.protocol == Some(expect(i));
            }
        }
        if ok {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "the agents of this release never served every member's protocol"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The `protocol:` line of `shoal info` (this release's CLI) on `agent`.
fn info_protocol(bin: &Path, agent: &Agent) -> String {
    let out = std::process::Command::new(bin)
        .arg("info")
        .arg("--api")
        .arg(format!("unix:{}", agent.dir.join("api.sock").display()))
        .output()
        .expect("shoal info runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("protocol:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no protocol line in {text}"))
}

/// Services as `/v1/services` serves them: name -> sorted (node, port, status).
async fn services_of(agent: &Agent) -> BTreeMap<String, Vec<(String, u16, ServedStatus)>> {
    let r = agent.api().services().await.expect("services");
    r.services
        .into_iter()
        .map(|(name, inst)| {
            let mut v: Vec<_> = inst
                .into_iter()
                .map(|i| (i.node, i.port, i.status))
                .collect();
            v.sort();
            (name, v)
        })
        .collect()
}

/// `(name, port)` of `member`'s services as agent `a` serves them, and its record's version.
async fn served_services(a: &Agent, member: &str) -> Option<(Vec<(String, u16)>, u64)> {
    let m = members(a).await.into_iter().find(|m| m.name == member)?;
    if m.status != ServedStatus::Alive {
        return None;
    }
    let mut v: Vec<(String, u16)> = m
        .services
        .iter()
        .map(|s| (s.name.clone(), s.port))
        .collect();
    v.sort();
    Some((v, m.meta_version))
}

/// A second instance of `web` on an agent of this release (id `web-b`, through its API):
/// the agents of this release serve both instances; those of the previous release serve the
/// first one and accept the record (they reach its new version: none refuses it). Then it is
/// deregistered and every agent serves the mixed cluster's view again.
async fn second_instance(agents: &[Agent]) {
    let i = (0..AGENTS)
        .find(|i| !starts_old(*i))
        .expect("an agent of this release");
    let owner = &agents[i];
    let r = owner
        .api()
        .register_service(&shoal::api::types::ServiceRequest {
            id: Some("web-b".into()),
            name: "web".into(),
            port: 8100 + i as u16,
            tags: BTreeMap::new(),
            health: None,
            checks: vec![],
        })
        .await
        .expect("a second instance registered");
    let version = r.member.meta_version;
    let mut all = services(i);
    all.push(("web".to_string(), 8100 + i as u16));
    all.sort();
    let start = Instant::now();
    for (o, a) in agents.iter().enumerate() {
        let want = if starts_old(o) {
            services(i)
        } else {
            all.clone()
        };
        loop {
            if served_services(a, &name(i)).await == Some((want.clone(), version)) {
                break;
            }
            assert!(
                start.elapsed() < WAIT,
                "agent {o} (old: {}) never served {} version {version} as {want:?}: {:?}",
                starts_old(o),
                name(i),
                served_services(a, &name(i)).await
            );
            tokio::time::sleep(POLL).await;
        }
    }
    println!(
        "a second instance of web on {}: served by the agents of this release, the first one \
         by those of the previous release",
        name(i)
    );
    owner
        .api()
        .deregister_service("web-b")
        .await
        .expect("deregistered");
    converged(agents, "after the second instance left").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_versions_serve_one_view_and_a_rolling_upgrade_loses_nothing() {
    let Some(prev) = prev_bin() else {
        return;
    };
    let new = PathBuf::from(env!("CARGO_BIN_EXE_shoal"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = shoal::agent::datadir::process_key();

    // Agent 0 (old) first, on a port of its choosing; each other joins the one before it.
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..AGENTS {
        let dir = tmp.path().join(format!("a{i}"));
        std::fs::create_dir_all(&dir).expect("data dir");
        let mut a = Agent {
            child: None,
            dir,
            bind: "127.0.0.1:0".into(),
            join: agents
                .last()
                .map(|prev: &Agent| prev.bind.parse().expect("addr")),
            key: key.clone(),
            old: starts_old(i),
        };
        a.start(if a.old { &prev } else { &new });
        wait_api(&a).await;
        // Restarts reuse the address it bound (same flags as a restart by an operator).
        let addr = a.api().local().await.expect("self").member.addr;
        a.bind = addr.to_string();
        agents.push(a);
    }
    let before = converged(&agents, "mixed cluster").await;
    // Every agent of this release knows which members speak what.
    protocols_seen(
        &agents,
        |i| {
            if starts_old(i) {
                PROTOCOL_V1
            } else {
                PROTOCOL
            }
        },
    )
    .await;
    assert_eq!(
        info_protocol(&new, &agents[AGENTS - 1]),
        "1..2 (members: 1 x2, 1..2 x2)"
    );
    let svcs = services_of(&agents[0]).await;
    assert_eq!(svcs["web"].len(), AGENTS, "{svcs:?}");
    for a in &agents[1..] {
        assert_eq!(services_of(a).await, svcs, "services differ between agents");
    }
    // A user event from an agent of this release (a `ShoalMsg` kind v0.1.0 does not know):
    // the agents of this release list it, the v0.1.0 agents ignore it and keep one view.
    let newest = (0..AGENTS)
        .find(|i| !starts_old(*i))
        .expect("an agent of this release");
    agents[newest]
        .api()
        .fire_event("upgrade-check", b"x".to_vec(), true)
        .await
        .expect("an event fires in a mixed cluster");
    for (i, a) in agents.iter().enumerate().filter(|(i, _)| !starts_old(*i)) {
        let start = Instant::now();
        loop {
            let r = a.api().events().await.expect("events");
            if r.events.iter().any(|e| e.event.name == "upgrade-check") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "agent {i} did not get the event"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    converged(&agents, "mixed cluster after a user event").await;
    println!(
        "mixed cluster ({OLD} agents of {}, {} of this release): one view of {} members",
        prev.display(),
        AGENTS - OLD,
        before.len()
    );

    second_instance(&agents).await;

    // The rolling upgrade, watched by every agent over the whole run.
    let streams: Vec<Arc<Mutex<Stream>>> = (0..AGENTS).map(|_| Default::default()).collect();
    let mut tasks: Vec<_> = (0..AGENTS)
        .map(|i| watch(&agents[i], streams[i].clone()))
        .collect();
    // When each upgraded agent was stopped, and the generation it had.
    let mut stopped: BTreeMap<String, (Instant, u64)> = BTreeMap::new();
    for i in (0..AGENTS).filter(|i| starts_old(*i)) {
        let gen = before[&name(i)].2;
        stopped.insert(name(i), (Instant::now(), gen));
        agents[i].stop().await;
        tasks[i].abort();
        agents[i].old = false;
        let bin = new.clone();
        agents[i].start(&bin);
        wait_api(&agents[i]).await;
        tasks[i] = watch(&agents[i], streams[i].clone());
        let after = converged(&agents, &format!("after upgrading {}", name(i))).await;
        assert!(
            after[&name(i)].2 > gen,
            "{} came back with a new generation",
            name(i)
        );
    }
    protocols_seen(&agents, |_| PROTOCOL).await;
    let after = converged(&agents, "after the upgrade").await;
    for a in &agents {
        assert_eq!(info_protocol(&new, a), "1..2 (members: 1..2 x4)");
    }
    for a in &agents {
        assert_eq!(services_of(a).await, svcs, "services after the upgrade");
    }
    for t in &tasks {
        t.abort();
    }

    // Over the whole run, on every agent's stream: a member not being upgraded is always
    // whole; one being upgraded may be seen stopping (its old generation) and coming back,
    // and once back whole it stays whole.
    for (o, s) in streams.iter().enumerate() {
        let s = s.lock().unwrap();
        assert!(!s.lines.is_empty(), "agent {o}'s stream is empty");
        let mut back: BTreeMap<String, bool> = BTreeMap::new();
        let mut check = |at: Instant, m: &MemberView, line: usize| {
            if whole(m) {
                if stopped
                    .get(&m.name)
                    .is_some_and(|(_, gen)| m.generation > *gen)
                {
                    back.insert(m.name.clone(), true);
                }
                return;
            }
            let in_its_upgrade = stopped.get(&m.name).is_some_and(|(t, _)| at >= *t)
                && !back.get(&m.name).copied().unwrap_or(false);
            assert!(
                in_its_upgrade,
                "agent {o}, line {line}: {} served as {:?} (tags {:?}, {} services) \
                 outside its own upgrade",
                m.name,
                m.status,
                m.tags,
                m.services.len()
            );
        };
        let mut events = 0;
        for (n, (at, line)) in s.lines.iter().enumerate() {
            match line {
                WatchLine::Snapshot(snap) => {
                    assert_eq!(snap.members.len(), AGENTS, "agent {o}: {snap:?}");
                    for m in &snap.members {
                        check(*at, m, n);
                    }
                }
                WatchLine::Event(e) => {
                    if let EventKind::Member { member, .. } = &e.kind {
                        events += 1;
                        check(*at, member, n);
                    }
                }
            }
        }
        // The stream saw every upgraded agent come back whole (it covered the upgrade).
        let back: Vec<&String> = back.iter().filter(|(_, b)| **b).map(|(n, _)| n).collect();
        assert_eq!(
            back.len(),
            OLD,
            "agent {o}'s stream saw only {back:?} come back"
        );
        println!("agent {o}: {} lines, {events} member events", s.lines.len());
    }
    assert_eq!(after.len(), AGENTS);
    println!(
        "rolling upgrade of {OLD} agents: no member, record or service lost on {} streams",
        streams.len()
    );
}
