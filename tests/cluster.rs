//! Cluster tests of the agent runtime: real UDP sockets on loopback, agents in-process.
//!
//! Each test starts its own five agents (profile `local`, port 0 on 127.0.0.1) and reads
//! their state through `AgentShared`, the way the local API does. Every wait polls every
//! 20 ms until the condition holds or a deadline of a few seconds passes.

use shoal::agent::{Agent, AgentShared};
use shoal::config::{AgentArgs, Config};
use shoal_core::{Profile, ServedStatus, Service};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 5;

fn config(name: &str, bind: SocketAddr, join: Option<SocketAddr>, dir: &std::path::Path) -> Config {
    let args = AgentArgs {
        name: Some(name.to_string()),
        bind: Some(bind.to_string()),
        join: join.map(|j| vec![j.to_string()]).unwrap_or_default(),
        profile: Some(Profile::Local),
        data_dir: Some(dir.join(name)),
        encrypt: Some(shoal::agent::datadir::process_key()),
        ..Default::default()
    };
    Config::load_with_env(&args, &|_| None).expect("valid test config")
}

struct Cluster {
    dir: tempfile::TempDir,
    agents: Vec<Option<Agent>>,
    shared: Vec<Arc<AgentShared>>,
    addrs: Vec<SocketAddr>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut c = Cluster {
            dir,
            agents: Vec::new(),
            shared: Vec::new(),
            addrs: Vec::new(),
        };
        for i in 0..n {
            let seed = c.addrs.first().copied();
            let cfg = config(&name(i), "127.0.0.1:0".parse().unwrap(), seed, c.dir.path());
            let a = Agent::start(&cfg).await.expect("agent starts");
            c.addrs.push(a.local_addr());
            c.shared.push(a.shared());
            c.agents.push(Some(a));
        }
        c
    }

    /// Agents still running.
    fn live(&self) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|i| self.agents[*i].is_some())
            .collect()
    }

    fn status(&self, observer: usize, member: &str) -> Option<ServedStatus> {
        self.shared[observer]
            .lock()
            .members()
            .into_iter()
            .find(|m| m.name == member)
            .map(|m| m.status)
    }

    fn alive_count(&self, observer: usize) -> usize {
        self.shared[observer]
            .lock()
            .members()
            .iter()
            .filter(|m| m.status == ServedStatus::Alive)
            .count()
    }

    /// Every running agent sees `member` with `status`.
    fn all_see(&self, member: &str, status: ServedStatus) -> bool {
        self.live()
            .into_iter()
            .filter(|i| name(*i) != member)
            .all(|i| self.status(i, member) == Some(status))
    }

    async fn converge(&self, timeout: Duration) {
        let n = self.agents.len();
        wait_until(timeout, "all agents see every member alive", || {
            (0..n).all(|i| self.alive_count(i) == n)
        })
        .await;
    }
}

fn name(i: usize) -> String {
    format!("n{i}")
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let leaver = c.agents[4].take().expect("running");
    leaver.leave_and_stop(Duration::from_secs(2)).await;
    // With the current core, a member that did not get the leaver's direct push first sees
    // `down` and only learns `left` from anti-entropy (sync interval, 5 s with `local`).
    let took = wait_until(Duration::from_secs(10), "every agent sees n4 left", || {
        c.all_see("n4", ServedStatus::Left)
    })
    .await;
    eprintln!("graceful leave seen by all {took:?} after leave_and_stop returned");
    // It stays `left` (never `down`): it was intent, not failure.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(c.all_see("n4", ServedStatus::Left));
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

    // Restart with the same name on the same address.
    let cfg = config("n3", c.addrs[3], Some(c.addrs[0]), c.dir.path());
    let again = Agent::start(&cfg)
        .await
        .expect("restarted agent binds its old address");
    c.shared[3] = again.shared();
    c.agents[3] = Some(again);
    let took = wait_until(
        Duration::from_secs(10),
        "every agent sees n3 alive again",
        || c.all_see("n3", ServedStatus::Alive),
    )
    .await;
    eprintln!("restarted agent seen alive by all in {took:?}");
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

#[tokio::test]
async fn sighup_reload_spreads_new_tags_and_services() {
    let mut c = Cluster::start(3).await;
    c.converge(Duration::from_secs(5)).await;
    // Replace n2 by an agent that reads its tags from a config file.
    c.agents[2].take().expect("running").stop().await;
    let file = c.dir.path().join("n2.toml");
    std::fs::write(&file, "tags = { role = \"db\" }\n").expect("write config");
    let args = AgentArgs {
        name: Some("n2".into()),
        bind: Some(c.addrs[2].to_string()),
        join: vec![c.addrs[0].to_string()],
        profile: Some(Profile::Local),
        data_dir: Some(c.dir.path().join("n2")),
        config: Some(file.clone()),
        encrypt: Some(shoal::agent::datadir::process_key()),
        ..Default::default()
    };
    let cfg = Config::load_with_env(&args, &|_| None).expect("valid config");
    let agent = Agent::start(&cfg).await.expect("starts");
    c.shared[2] = agent.shared();
    let role = |c: &Cluster, i: usize| {
        c.shared[i]
            .lock()
            .member("n2")
            .and_then(|m| m.tags.get("role").cloned())
    };
    wait_until(Duration::from_secs(5), "everyone sees role=db", || {
        (0..3).all(|i| role(&c, i).as_deref() == Some("db"))
    })
    .await;
    std::fs::write(
        &file,
        "tags = { role = \"cache\" }\n[[services]]\nname = \"redis\"\nport = 6379\n",
    )
    .expect("rewrite config");
    shoal::agent::runtime::reload(&agent, &args, None);
    wait_until(
        Duration::from_secs(5),
        "everyone sees the reloaded metadata",
        || {
            (0..3).all(|i| {
                role(&c, i).as_deref() == Some("cache")
                    && c.shared[i].lock().services().contains_key("redis")
            })
        },
    )
    .await;
    // A broken file is refused and changes nothing.
    std::fs::write(&file, "tags = 3\n").expect("rewrite config");
    shoal::agent::runtime::reload(&agent, &args, None);
    assert_eq!(role(&c, 2).as_deref(), Some("cache"));
    c.agents[2] = Some(agent);
}
