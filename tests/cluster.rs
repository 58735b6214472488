//! Cluster tests of the agent runtime: real UDP sockets on loopback, agents in-process.
//!
//! Each test starts its own five agents with the shared harness (`tests/common`: profile
//! `local`, port 0 on 127.0.0.1) and reads their state through `AgentShared`, the way the
//! local API does. Every "eventually" polls every 20 ms until a deadline; every "never" is
//! asserted over the watch stream for the whole interval. The SIGHUP test runs the built
//! binary as a real process and sends it a real signal.

mod common;

use common::{wait_until, Cluster, Events};
use shoal::agent::Agent;
use shoal::config::Config;
use shoal_core::{ServedStatus, Service};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const N: usize = 5;

/// A lone agent's config, named `name`.
fn config(name: &str, bind: SocketAddr, join: Option<SocketAddr>, dir: &std::path::Path) -> Config {
    let mut args = common::agent_args(0, bind, join, dir);
    args.name = Some(name.to_string());
    args.data_dir = Some(dir.join(name));
    Config::load_with_env(&args, &|_| None).expect("valid test config")
}

#[tokio::test]
async fn five_agents_converge() {
    let c = Cluster::start(N).await;
    c.converge(Duration::from_secs(5)).await;
    for i in 0..N {
        let members = c.shared[i].lock().members();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["n0", "n1", "n2", "n3", "n4"]);
        for (j, m) in members.iter().enumerate() {
            assert_eq!(m.addr, c.addrs[j], "n{i} sees n{j} at its bound address");
        }
        let stats = c.shared[i].lock().stats().clone();
        assert!(stats.rx_datagrams > 0 && stats.tx_datagrams > 0);
        assert_eq!(stats.dropped_total(), 0, "n{i} dropped nothing: {stats:?}");
    }
}

#[tokio::test]
async fn tag_and_service_changes_reach_every_agent() {
    let c = Cluster::start(N).await;
    c.converge(Duration::from_secs(5)).await;
    let set: BTreeMap<String, String> = [("zone".to_string(), "b".to_string())].into();
    c.shared[2]
        .with_node(|n, now| n.set_tags(now, &set, &[]))
        .expect("tags accepted");
    c.shared[2]
        .with_node(|n, now| {
            n.register_service(
                now,
                Service {
                    name: "web".into(),
                    port: 8080,
                    tags: BTreeMap::new(),
                    health: None,
                    health_output: None,
                },
            )
        })
        .expect("service accepted");
    wait_until(
        Duration::from_secs(5),
        "every agent sees n2's tag and service",
        || {
            (0..N).all(|i| {
                let node = c.shared[i].lock();
                let tag_ok = node
                    .member("n2")
                    .map(|m| m.tags.get("zone").map(String::as_str) == Some("b"))
                    .unwrap_or(false);
                let svc_ok = node
                    .services()
                    .get("web")
                    .map(|v| v.len() == 1 && v[0].node == "n2" && v[0].port == 8080)
                    .unwrap_or(false);
                tag_ok && svc_ok
            })
        },
    )
    .await;
    // Deleting the tag spreads too.
    c.shared[2]
        .with_node(|n, now| n.set_tags(now, &BTreeMap::new(), &["zone".to_string()]))
        .expect("tag deleted");
    wait_until(
        Duration::from_secs(5),
        "every agent sees n2 without the tag",
        || {
            (0..N).all(|i| {
                c.shared[i]
                    .lock()
                    .member("n2")
                    .map(|m| !m.tags.contains_key("zone"))
                    .unwrap_or(false)
            })
        },
    )
    .await;
}

#[tokio::test]
async fn graceful_leave_is_seen_as_left_by_all() {
    let mut c = Cluster::start(N).await;
    c.converge(Duration::from_secs(5)).await;
    let mut events = Events::subscribe(&c, &[0, 1, 2, 3]);
    let leaver = c.agents[4].take().expect("running");
    leaver.leave_and_stop(Duration::from_secs(2)).await;
    // With the current core, a member that did not get the leaver's direct push first sees
    // `down` and only learns `left` from anti-entropy (sync interval, 5 s with `local`).
    let took = wait_until(Duration::from_secs(10), "every agent sees n4 left", || {
        c.all_see("n4", ServedStatus::Left)
    })
    .await;
    eprintln!("graceful leave seen by all {took:?} after leave_and_stop returned");
    // Once `left`, it stays `left` (never `down` again: it was intent, not failure): every
    // event about n4 on every stream for 1.5 s more.
    events.watch_for(Duration::from_millis(1500)).await;
    for o in 0..4 {
        let after_left: Vec<ServedStatus> = events
            .of("n4")
            .into_iter()
            .filter(|(obs, _)| *obs == o)
            .map(|(_, s)| s)
            .skip_while(|s| *s != ServedStatus::Left)
            .collect();
        assert!(
            after_left.iter().all(|s| *s == ServedStatus::Left),
            "n{o} served n4 {after_left:?} after left"
        );
    }
    assert!(c.all_see("n4", ServedStatus::Left));
    // Nobody else ever left `alive`.
    let others: Vec<_> = events
        .seen
        .iter()
        .filter(|(_, m, s)| m != "n4" && *s != ServedStatus::Alive)
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

#[tokio::test]
async fn killed_agent_is_down_everywhere_then_restarted_agent_is_alive() {
    let mut c = Cluster::start(N).await;
    c.converge(Duration::from_secs(5)).await;
    let old_gen = c.shared[0].lock().member("n3").expect("known").generation;
    let killed = c.agents[3].take().expect("running");
    killed.stop().await;
    let took = wait_until(Duration::from_secs(10), "every agent sees n3 down", || {
        c.all_see("n3", ServedStatus::Down)
    })
    .await;
    eprintln!("killed agent seen down by all in {took:?}");

    // Restart with the same name on the same address: a new life (its generation is its start
    // time), so one crash and reboot costs half a flap's damping penalty, under the suppress
    // limit: every agent serves it alive again as soon as it is back, never `damped`
    // (docs/gray-failures.md), on every event stream.
    let observers: Vec<usize> = c.live().into_iter().filter(|i| *i != 3).collect();
    let mut events = Events::subscribe(&c, &observers);
    c.restart(3).await;
    let took = wait_until(
        Duration::from_secs(10),
        "every agent sees n3 alive again",
        || c.all_see("n3", ServedStatus::Alive),
    )
    .await;
    eprintln!("restarted agent seen alive by all in {took:?}");
    events.watch_for(Duration::from_secs(3)).await;
    let damped: Vec<_> = events
        .of("n3")
        .into_iter()
        .filter(|(_, s)| *s == ServedStatus::Damped)
        .collect();
    assert!(
        damped.is_empty(),
        "one crash and reboot was damped: {damped:?}"
    );
    for &i in &observers {
        let d = c.shared[i].lock().member("n3").and_then(|m| m.damping);
        assert!(
            d.as_ref()
                .is_some_and(|d| d.penalty < 600 && d.suppressed_since.is_none()),
            "n{i}: {d:?}"
        );
    }
    for i in c.live() {
        let m = c.shared[i].lock().member("n3").expect("known");
        assert!(m.generation > old_gen, "n{i} sees the new generation of n3");
    }
    c.converge(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn malformed_and_oversized_datagrams_are_dropped_and_counted() {
    let c = Cluster::start(N).await;
    c.converge(Duration::from_secs(5)).await;
    let target = c.addrs[1];
    let before_members = c.shared[1].lock().members();
    let before = c.shared[1].lock().stats().clone();

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut wrong_label = b"SH\x01\x00\x05other\x00".to_vec();
    wrong_label.extend_from_slice(&[0u8; 20]);
    let datagrams: Vec<Vec<u8>> = vec![
        b"hello, shoal".to_vec(),                               // bad magic
        b"S".to_vec(),                                          // truncated
        b"SH\x63\x00\x00\x00".to_vec(),                         // unknown version
        b"SH\x01\x80\x00\x00".to_vec(),                         // unknown flags
        wrong_label,                                            // another cluster
        b"SH\x01\x00\x00\x07junk".to_vec(),                     // unknown kind
        b"SH\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff".to_vec(), // undecodable SWIM body
        b"SH\x01\x00\x00\x01\xff\xff\xff\xff\xff\xff".to_vec(), // undecodable shoal body
        vec![0x53; 1401],                                       // oversized
        vec![0xAB; 4000], // oversized, larger than the receive buffer
    ];
    for d in &datagrams {
        sock.send_to(d, target).expect("send");
    }
    let sent = datagrams.len() as u64;
    wait_until(
        Duration::from_secs(5),
        "every bad datagram is counted",
        || c.shared[1].lock().stats().dropped_total() >= before.dropped_total() + sent,
    )
    .await;
    let after = c.shared[1].lock().stats().clone();
    assert_eq!(
        after.dropped_total(),
        before.dropped_total() + sent,
        "{after:?}"
    );
    assert_eq!(after.dropped_oversized, before.dropped_oversized + 2);
    assert_eq!(after.dropped_bad_magic, before.dropped_bad_magic + 1);
    assert_eq!(after.dropped_truncated, before.dropped_truncated + 1);
    assert_eq!(after.dropped_bad_version, before.dropped_bad_version + 1);
    assert_eq!(after.dropped_bad_flags, before.dropped_bad_flags + 1);
    assert_eq!(after.dropped_wrong_label, before.dropped_wrong_label + 1);
    assert_eq!(after.dropped_bad_kind, before.dropped_bad_kind + 1);
    // The agents hold a key: plaintext bodies are refused before anything decodes them.
    assert_eq!(after.dropped_plaintext, before.dropped_plaintext + 2);

    // Nothing changed: same members, all still alive, and the agent keeps working.
    let names = |v: &[shoal_core::MemberView]| -> Vec<(String, ServedStatus)> {
        v.iter().map(|m| (m.name.clone(), m.status)).collect()
    };
    assert_eq!(names(&c.shared[1].lock().members()), names(&before_members));
    c.converge(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn port_in_use_is_a_clear_error_and_bad_seeds_are_not_fatal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Agent::start(&config(
        "a",
        "127.0.0.1:0".parse().unwrap(),
        None,
        dir.path(),
    ))
    .await
    .expect("first agent starts");
    let taken = first.local_addr();
    let err = match Agent::start(&config("b", taken, None, dir.path())).await {
        Ok(_) => panic!("a second agent on {taken} must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&taken.to_string()), "{err}");
    assert!(err.contains("already in use"), "{err}");

    // A seed that does not resolve is retried in the background; the agent runs.
    let mut cfg = config("c", "127.0.0.1:0".parse().unwrap(), None, dir.path());
    cfg.join = vec!["no-such-seed.invalid:7946".to_string()];
    let c = Agent::start(&cfg)
        .await
        .expect("an unresolvable seed is not fatal");
    assert_eq!(c.shared().lock().members().len(), 1);
    c.stop().await;
    first.stop().await;
}

/// Polls the agent process's API (`shoal self --format json`) until `check` accepts what it
/// answers, bounded.
async fn self_until(
    api: &std::path::Path,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let client = shoal::client::Client::parse(&format!("unix:{}", api.display())).expect("client");
    let start = Instant::now();
    loop {
        if let Ok(a) = client.raw(hyper::Method::GET, "/v1/self", None).await {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&a.body) {
                if check(&v) {
                    return v;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(common::POLL).await;
    }
}

/// Kills the agent process when the test ends, however it ends.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sighup_reload_spreads_new_tags_and_services() {
    let c = Cluster::start(2).await;
    c.converge(Duration::from_secs(5)).await;
    // A third agent as a real process (the built binary), reading tags from its config file.
    let file = c.dir.path().join("n2.toml");
    std::fs::write(&file, "tags = { role = \"db\" }\n").expect("write config");
    let api = c.dir.path().join("n2.sock");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("agent")
        .args([
            "--name",
            "n2",
            "--bind",
            "127.0.0.1:0",
            "--profile",
            "local",
        ])
        .args(["--join", &c.addrs[0].to_string()])
        .arg("--data-dir")
        .arg(c.dir.path().join("n2"))
        .arg("--config")
        .arg(&file)
        .arg("--api")
        .arg(format!("unix:{}", api.display()))
        .args(["--encrypt", &shoal::agent::datadir::process_key()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the shoal binary starts");
    let child = Process(child);
    let role = |c: &Cluster, i: usize| {
        c.shared[i]
            .lock()
            .member("n2")
            .and_then(|m| m.tags.get("role").cloned())
    };
    self_until(&api, "the process serves role=db", |v| {
        v["member"]["tags"]["role"] == "db"
    })
    .await;
    wait_until(Duration::from_secs(10), "everyone sees role=db", || {
        (0..2).all(|i| role(&c, i).as_deref() == Some("db"))
    })
    .await;
    std::fs::write(
        &file,
        "tags = { role = \"cache\" }\n[[services]]\nname = \"redis\"\nport = 6379\n",
    )
    .expect("rewrite config");
    let pid = child.0.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIGHUP sent to {pid}");
    self_until(&api, "the process serves the reloaded metadata", |v| {
        v["member"]["tags"]["role"] == "cache"
            && v["member"]["services"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x["name"] == "redis"))
    })
    .await;
    wait_until(
        Duration::from_secs(10),
        "everyone sees the reloaded metadata",
        || {
            (0..2).all(|i| {
                role(&c, i).as_deref() == Some("cache")
                    && c.shared[i].lock().services().contains_key("redis")
            })
        },
    )
    .await;
    // A broken file is refused, changes nothing, and the process keeps running.
    std::fs::write(&file, "tags = 3\n").expect("rewrite config");
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let mut child = child;
    common::holds_for(
        Duration::from_millis(1000),
        "the process runs and keeps role=cache",
        || {
            child.0.try_wait().ok().flatten().is_none()
                && (0..2).all(|i| role(&c, i).as_deref() == Some("cache"))
        },
    )
    .await;
    self_until(&api, "the process still serves role=cache", |v| {
        v["member"]["tags"]["role"] == "cache"
    })
    .await;
    drop(child);
    c.stop().await;
}
