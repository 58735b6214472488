//! A restart is not a decommission, on real agents on loopback: apps register services and
//! tags through the local API of each of 5 agents, then every agent in turn stops as on SIGTERM
//! (`Agent::terminate`: it announces a restart, it does not leave) and starts again with the
//! same data directory. Every event of the watch stream of every running agent, from before the
//! first stop to the end, serves every service an app registered (not a sample); after the
//! restarts every record is back with its tags and services, registered by nobody again.
//! Also: `shoal leave` makes the agent process exit once the leave is sent.

mod common;

use common::{name, wait_until, Cluster, POLL};
use shoal::agent::AgentShared;
use shoal::api::types::ServiceRequest;
use shoal_core::{Event, EventKind, MemberChange, MemberView, ServedStatus};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

const N: usize = 5;

/// (node, service) pairs apps registered through the API.
fn registered() -> Vec<(String, String)> {
    (0..N)
        .flat_map(|i| [(name(i), "web".to_string()), (name(i), format!("app{i}"))])
        .collect()
}

/// An agent's event stream, the last index applied, and the view rebuilt from it.
type Watched = (
    broadcast::Receiver<Arc<Event>>,
    u64,
    BTreeMap<String, MemberView>,
);

/// The served view of each running agent, rebuilt from its watch stream (the snapshot at
/// subscription, then every member event), checked at every event.
#[derive(Default)]
struct Views {
    /// observer -> (its event stream, the last index applied, its view)
    by: BTreeMap<usize, Watched>,
    events: usize,
    /// (observer, member) pairs seen served `restarting`.
    restarting: Vec<(usize, String)>,
}

impl Views {
    /// Watches agent `i` from now on (its stream, then the view it serves now).
    fn watch(&mut self, i: usize, shared: &AgentShared) {
        let rx = shared.events.subscribe();
        let node = shared.lock();
        let view = node
            .members()
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        let index = node.index();
        drop(node);
        check(i, &view, "its view at subscription");
        self.by.insert(i, (rx, index, view));
    }

    fn unwatch(&mut self, i: usize) {
        self.by.remove(&i);
    }

    /// Applies every event published so far, checking the view after each.
    fn drain(&mut self) {
        for (o, (rx, seen, view)) in self.by.iter_mut() {
            loop {
                let ev = match rx.try_recv() {
                    Ok(ev) => ev,
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        panic!("the watch stream of n{o} lagged by {n} events")
                    }
                    Err(_) => break,
                };
                if ev.index <= *seen {
                    continue;
                }
                *seen = ev.index;
                if let EventKind::Member { change, member, .. } = &ev.kind {
                    if member.status == ServedStatus::Restarting {
                        self.restarting.push((*o, member.name.clone()));
                    }
                    if *change == MemberChange::Reaped {
                        view.remove(&member.name);
                    } else {
                        view.insert(member.name.clone(), member.clone());
                    }
                    self.events += 1;
                    check(*o, view, &format!("event {}", ev.index));
                }
            }
        }
    }

    /// Drains every 20 ms until `cond` holds (at most `timeout`).
    async fn until(&mut self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        for _ in 0..timeout.as_millis() / POLL.as_millis() + 2 {
            self.drain();
            if cond() {
                return;
            }
            assert!(start.elapsed() < timeout, "timed out waiting until {what}");
            tokio::time::sleep(POLL).await;
        }
        panic!("timed out waiting until {what}");
    }
}

/// Observer `o`'s view serves every registered service on its node.
fn check(o: usize, view: &BTreeMap<String, MemberView>, at: &str) {
    for (node, svc) in registered() {
        let m = view
            .get(&node)
            .unwrap_or_else(|| panic!("n{o} ({at}) does not serve {node} at all"));
        assert!(
            m.status.is_serving() && m.services.iter().any(|s| s.name == svc),
            "n{o} ({at}) serves {node} {} with services {:?}: {svc} missing",
            m.status,
            m.services.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
}

/// Every running agent serves `j` alive in generation `gen` or later with its registrations.
fn back(c: &Cluster, j: usize, after_gen: u64) -> bool {
    c.live().into_iter().all(|o| {
        c.shared[o].lock().member(&name(j)).is_some_and(|m| {
            m.status == ServedStatus::Alive
                && m.generation > after_gen
                && m.tags.get("role").map(String::as_str) == Some(&format!("r{j}"))
                && m.services.len() == 2
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_keeps_every_api_registration_served_at_every_event() {
    let mut c = Cluster::start(N).await;
    c.converge_fully(Duration::from_secs(15)).await;
    // Apps register through each agent's local API (nothing in any config).
    for i in 0..N {
        let client = c.serve_api(i).await;
        for (svc, port) in [
            ("web".to_string(), 8000 + i as u16),
            (format!("app{i}"), 9000),
        ] {
            client
                .register_service(&ServiceRequest {
                    id: None,
                    name: svc,
                    port,
                    tags: BTreeMap::new(),
                    health: None,
                    checks: Vec::new(),
                })
                .await
                .expect("register through the API");
        }
        client
            .set_tags([("role".to_string(), format!("r{i}"))].into(), Vec::new())
            .await
            .expect("tags through the API");
    }
    let mut views = Views::default();
    wait_until(
        Duration::from_secs(10),
        "every agent serves every registration",
        || {
            (0..N).all(|o| {
                let v = c.shared[o]
                    .lock()
                    .members()
                    .into_iter()
                    .map(|m| (m.name.clone(), m))
                    .collect::<BTreeMap<_, _>>();
                registered().iter().all(|(n, s)| {
                    v.get(n)
                        .is_some_and(|m| m.services.iter().any(|x| &x.name == s))
                }) && (0..N).all(|j| back(&c, j, 0))
            })
        },
    )
    .await;
    for i in 0..N {
        views.watch(i, &c.shared[i]);
    }

    for i in 0..N {
        let old_gen = c.shared[i].lock().identity().generation();
        // SIGTERM: announce the restart, stop without leaving.
        let a = c.agents[i].take().expect("running");
        a.terminate(Duration::from_secs(2)).await;
        views.drain();
        views.unwatch(i);
        // The gap: every peer's SWIM calls it down, and it is served `restarting`.
        views
            .until(
                Duration::from_secs(15),
                "every peer serves it restarting",
                || {
                    c.live().into_iter().all(|o| {
                        c.shared[o].lock().member(&name(i)).map(|m| m.status)
                            == Some(ServedStatus::Restarting)
                    })
                },
            )
            .await;
        // Same flags and data directory.
        c.restart(i).await;
        views.watch(i, &c.shared[i]);
        views
            .until(Duration::from_secs(15), "it is back everywhere", || {
                back(&c, i, old_gen)
                    && (0..N).all(|j| {
                        c.shared[i]
                            .lock()
                            .member(&name(j))
                            .is_some_and(|m| m.status == ServedStatus::Alive && m.meta_version > 0)
                    })
            })
            .await;
    }
    views.drain();
    // Every record is back with its tags and services on every agent; nobody registered again.
    for o in 0..N {
        for j in 0..N {
            let m = c.shared[o].lock().member(&name(j)).expect("member");
            assert_eq!(m.status, ServedStatus::Alive, "n{o} serves n{j}");
            assert_eq!(
                m.tags.get("role"),
                Some(&format!("r{j}")),
                "n{o} serves n{j}"
            );
            let mut svcs: Vec<&str> = m.services.iter().map(|s| s.name.as_str()).collect();
            svcs.sort();
            assert_eq!(
                svcs,
                vec![format!("app{j}").as_str(), "web"],
                "n{o} serves n{j}"
            );
        }
    }
    assert!(views.events > 0, "no event checked");
    for i in 0..N {
        assert!(
            views.restarting.iter().any(|(_, m)| *m == name(i)),
            "n{i} was never served restarting"
        );
    }
    eprintln!(
        "rolling restart of {N}: {} member events checked, {} served restarting",
        views.events,
        views.restarting.len()
    );
    c.stop().await;
}

/// Kills the process if the test ends early.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Agent n1 as a real process (the built binary), joining n0, its API at `<dir>/n1.sock`.
fn spawn_n1(c: &Cluster) -> Process {
    let api = c.dir.path().join("n1.sock");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("agent")
        .args([
            "--name",
            "n1",
            "--bind",
            "127.0.0.1:0",
            "--profile",
            "local",
        ])
        .args(["--join", &c.addrs[0].to_string()])
        .arg("--data-dir")
        .arg(c.dir.path().join("n1"))
        .arg("--api")
        .arg(format!("unix:{}", api.display()))
        .args(["--encrypt", &shoal::agent::datadir::process_key()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the shoal binary starts");
    Process(child)
}

/// Runs `shoal ARGS --api unix:<dir>/n1.sock`; returns its standard output.
async fn cli(c: &Cluster, args: &[&str]) -> String {
    let api = format!("unix:{}", c.dir.path().join("n1.sock").display());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .args(["--api", &api])
        .output()
        .await
        .expect("the CLI runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "shoal {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Sends `sig` to the process and waits (bounded) for it to exit; returns its status.
async fn signal_and_wait(p: &mut Process, sig: &str) -> std::process::ExitStatus {
    let pid = p.0.id().to_string();
    let sent = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "{sig} sent to {pid}");
    let mut status = None;
    wait_until(Duration::from_secs(10), "the agent process exits", || {
        status = p.0.try_wait().expect("try_wait");
        status.is_some()
    })
    .await;
    status.expect("exited")
}

/// What n0 serves for n1: (status, generation, role tag, services).
fn n1_seen(c: &Cluster) -> Option<(ServedStatus, u64, Option<String>, Vec<String>)> {
    c.shared[0].lock().member("n1").map(|m| {
        (
            m.status,
            m.generation,
            m.tags.get("role").cloned(),
            m.services.iter().map(|s| s.name.clone()).collect(),
        )
    })
}

/// The issue's own steps, on the real binary: `shoal register web:8080` and `shoal tags --set
/// role=db` on n1; SIGTERM; start again with the same flags and data directory: n0 serves n1
/// with role=db and web throughout (`restarting` in the gap), then alive in its new life with
/// them, its ttl check back too. Then SIGINT leaves: n0 serves n1 `left`.
#[tokio::test]
async fn sigterm_restarts_keeping_the_registrations_and_sigint_leaves() {
    let c = Cluster::start(1).await;
    let mut p = spawn_n1(&c);
    wait_until(Duration::from_secs(10), "n0 serves n1 alive", || {
        n1_seen(&c).is_some_and(|s| s.0 == ServedStatus::Alive)
    })
    .await;
    cli(&c, &["register", "web:8080", "--ttl", "1h"]).await;
    cli(&c, &["tags", "--set", "role=db"]).await;
    let registered = |s: &(ServedStatus, u64, Option<String>, Vec<String>)| {
        s.0.is_serving() && s.2.as_deref() == Some("db") && s.3 == ["web"]
    };
    wait_until(Duration::from_secs(10), "n0 serves n1 role=db web", || {
        n1_seen(&c).is_some_and(|s| registered(&s))
    })
    .await;
    let gen = n1_seen(&c).expect("n1").1;
    let mut events = common::Events::subscribe(&c, &[0]);
    let status = signal_and_wait(&mut p, "-TERM").await;
    assert!(status.success(), "SIGTERM exit status {status:?}");
    wait_until(Duration::from_secs(10), "n0 serves n1 restarting", || {
        n1_seen(&c).is_some_and(|s| s.0 == ServedStatus::Restarting && registered(&s))
    })
    .await;
    let mut p = spawn_n1(&c);
    wait_until(Duration::from_secs(10), "n0 serves n1's new life", || {
        n1_seen(&c).is_some_and(|s| s.0 == ServedStatus::Alive && s.1 > gen && registered(&s))
    })
    .await;
    events.drain();
    let n1_events = events.of("n1");
    assert!(!n1_events.is_empty());
    assert!(
        n1_events.iter().all(|(_, st)| st.is_serving()),
        "n0 stopped serving n1 during its restart: {n1_events:?}"
    );
    let checks = cli(&c, &["checks"]).await;
    assert!(checks.contains("web") && checks.contains("ttl"), "{checks}");
    // SIGINT: a decommission.
    let status = signal_and_wait(&mut p, "-INT").await;
    assert!(status.success(), "SIGINT exit status {status:?}");
    wait_until(Duration::from_secs(5), "n0 serves n1 left", || {
        n1_seen(&c).is_some_and(|s| s.0 == ServedStatus::Left)
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn shoal_leave_makes_the_agent_exit_once_the_leave_is_sent() {
    let c = Cluster::start(1).await;
    let api = c.dir.path().join("n1.sock");
    let mut child = spawn_n1(&c);
    wait_until(Duration::from_secs(10), "n0 serves n1 alive", || {
        c.status(0, "n1") == Some(ServedStatus::Alive)
    })
    .await;
    let text = cli(&c, &["leave"]).await;
    assert!(text.contains("left the cluster; the agent stops"), "{text}");
    // The leave was sent: n0 serves n1 left (not down, not alive).
    wait_until(Duration::from_secs(5), "n0 serves n1 left", || {
        c.status(0, "n1") == Some(ServedStatus::Left)
    })
    .await;
    // And the process exits, successfully, on its own.
    let mut status = None;
    wait_until(Duration::from_secs(10), "the agent process exits", || {
        status = child.0.try_wait().expect("try_wait");
        status.is_some()
    })
    .await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    assert!(!api.exists(), "the API socket is removed on exit");
    c.stop().await;
}

/// `leave_on_terminate = true`: SIGTERM is a decommission (peers serve `left` at once).
#[tokio::test]
async fn leave_on_terminate_makes_sigterm_leave() {
    let mut c = Cluster::start_with(
        2,
        Box::new(|i, bind, seed, dir| {
            let mut cfg = common::config(i, bind, seed, dir);
            cfg.leave_on_terminate = true;
            cfg
        }),
    )
    .await;
    c.converge(Duration::from_secs(10)).await;
    let a = c.agents[1].take().expect("running");
    assert!(a.leaves_on_terminate());
    a.terminate(Duration::from_secs(2)).await;
    wait_until(Duration::from_secs(5), "n0 serves n1 left", || {
        c.status(0, "n1") == Some(ServedStatus::Left)
    })
    .await;
    c.stop().await;
}

/// A restart with a changed config file behaves as a SIGHUP would: the file's changes since it
/// was last read win for their keys, what the API set stays. A corrupt registrations file stops
/// the start with a message naming it, and is left as it was.
#[tokio::test]
async fn a_restart_merges_a_changed_config_file_as_sighup_and_refuses_a_corrupt_file() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let edited = Arc::new(AtomicBool::new(false));
    let e = edited.clone();
    let mut c = Cluster::start_with(
        2,
        Box::new(move |i, bind, seed, dir| {
            let mut cfg = common::config(i, bind, seed, dir);
            let zone = if e.load(Ordering::SeqCst) { "b" } else { "a" };
            cfg.tags.insert("zone".into(), zone.into());
            cfg.tags.insert("env".into(), "prod".into());
            cfg
        }),
    )
    .await;
    c.converge(Duration::from_secs(10)).await;
    let client = c.serve_api(1).await;
    // Through the API: env changed, role set.
    client
        .set_tags(
            [
                ("env".to_string(), "staging".to_string()),
                ("role".to_string(), "db".to_string()),
            ]
            .into(),
            Vec::new(),
        )
        .await
        .expect("tags through the API");
    let a = c.agents[1].take().expect("running");
    a.terminate(Duration::from_secs(2)).await;
    // The file changes zone (a -> b) while the agent is down; env is unchanged in it.
    edited.store(true, Ordering::SeqCst);
    c.restart(1).await;
    let tags = c.shared[1].lock().own_meta().tags.clone();
    let want: BTreeMap<String, String> = [("zone", "b"), ("env", "staging"), ("role", "db")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(tags, want, "announced from the start");
    wait_until(
        Duration::from_secs(10),
        "n0 serves n1's merged tags",
        || {
            c.shared[0]
                .lock()
                .member("n1")
                .is_some_and(|m| m.status == ServedStatus::Alive && m.tags == want)
        },
    )
    .await;
    // A corrupt file: the start is refused, the file stays.
    let a = c.agents[1].take().expect("running");
    a.terminate(Duration::from_secs(2)).await;
    let file = c.dir.path().join("n1").join("registrations.json");
    std::fs::write(&file, b"{ not json").expect("write");
    let cfg = c.config_of(1, c.addrs[1], Some(c.addrs[0]));
    let err = match shoal::agent::Agent::start(&cfg).await {
        Ok(_) => panic!("started with a corrupt registrations file"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("registrations.json") && err.contains("move it away"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).expect("still there"), b"{ not json");
    c.stop().await;
}

/// A config file edited while the agent was down that no longer fits with what apps
/// registered (here: a check id the API already uses) does not keep the agent from starting,
/// as it would not keep it running on SIGHUP: it starts with the registrations as they were
/// and the file's change is left unapplied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_no_longer_fits_the_registrations_does_not_stop_a_restart() {
    use shoal::agent::checks::CheckSpec;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ttl = |id: &str| CheckSpec {
        id: Some(id.to_string()),
        ttl: Some("1h".into()),
        ..CheckSpec::default()
    };
    let edited = Arc::new(AtomicBool::new(false));
    let e = edited.clone();
    let mut c = Cluster::start_with(
        2,
        Box::new(move |i, bind, seed, dir| {
            let mut cfg = common::config(i, bind, seed, dir);
            if e.load(Ordering::SeqCst) {
                cfg.services.push(shoal::config::ServiceConfig {
                    id: None,
                    name: "web".into(),
                    port: 8080,
                    tags: BTreeMap::new(),
                    checks: vec![ttl("probe")],
                });
            }
            cfg
        }),
    )
    .await;
    c.converge(Duration::from_secs(10)).await;
    let client = c.serve_api(1).await;
    client
        .register_service(&ServiceRequest {
            id: None,
            name: "api".into(),
            port: 9000,
            tags: BTreeMap::new(),
            health: None,
            checks: vec![ttl("probe")],
        })
        .await
        .expect("register through the API");
    let a = c.agents[1].take().expect("running");
    a.terminate(Duration::from_secs(2)).await;
    // The file now adds `web` with a check id the API's `api` already uses.
    edited.store(true, Ordering::SeqCst);
    c.restart(1).await;
    let services: Vec<String> = c.shared[1]
        .lock()
        .own_meta()
        .services
        .keys()
        .cloned()
        .collect();
    assert_eq!(services, vec!["api".to_string()], "started as it was");
    wait_until(Duration::from_secs(10), "n0 serves n1's api", || {
        c.shared[0].lock().member("n1").is_some_and(|m| {
            m.status == ServedStatus::Alive && m.services.iter().any(|s| s.name == "api")
        })
    })
    .await;
    c.stop().await;
}

/// A change the agent applied but could not write to `registrations.json` is an error for
/// the app (500), not a silent 200: it would not survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_persisted_is_an_error() {
    let mut c = Cluster::start(1).await;
    let client = c.serve_api(0).await;
    let file = c.dir.path().join("n0").join("registrations.json");
    // A directory where the file goes: the atomic rename onto it fails (even as root).
    let _ = std::fs::remove_file(&file);
    std::fs::create_dir(&file).expect("a directory in the file's place");
    let err = client
        .set_tags([("role".to_string(), "db".to_string())].into(), Vec::new())
        .await
        .expect_err("not persisted");
    let msg = err.to_string();
    assert!(
        msg.contains("not persisted") && msg.contains("500"),
        "{msg}"
    );
    // Applied all the same (the node serves it), as the message says.
    assert_eq!(
        c.shared[0]
            .lock()
            .own_meta()
            .tags
            .get("role")
            .map(String::as_str),
        Some("db")
    );
    std::fs::remove_dir(&file).expect("cleanup");
    c.stop().await;
}
