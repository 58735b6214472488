//! Service health checks end to end: real agents on 127.0.0.1 (profile `local`), each with
//! its local API on a Unix socket; checks against real targets the tests start (an HTTP
//! server, a TCP listener, exec'd programs, ttl updates through the API). Every wait is a
//! bounded poll (every 20 ms, a deadline of a few seconds); no sleep decides an outcome.

use shoal::agent::checks::CheckSpec;
use shoal::agent::{Agent, AgentShared};
use shoal::api::health::ChecksResponse;
use shoal::api::types::ServiceRequest;
use shoal::api::{self, ApiHandle, ApiOptions};
use shoal::client::Client;
use shoal::config::{AgentArgs, Config};
use shoal_core::{Health, Instance, Profile};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

struct Rig {
    dir: tempfile::TempDir,
    agents: Vec<Agent>,
    shared: Vec<Arc<AgentShared>>,
    apis: Vec<ApiHandle>,
    clients: Vec<Client>,
}

fn name(i: usize) -> String {
    format!("h{i}")
}

impl Rig {
    async fn start(n: usize) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut r = Rig {
            dir,
            agents: Vec::new(),
            shared: Vec::new(),
            apis: Vec::new(),
            clients: Vec::new(),
        };
        let mut seed: Option<SocketAddr> = None;
        for i in 0..n {
            let args = AgentArgs {
                name: Some(name(i)),
                bind: Some("127.0.0.1:0".into()),
                join: seed.map(|s| vec![s.to_string()]).unwrap_or_default(),
                profile: Some(Profile::Local),
                data_dir: Some(r.dir.path().join(name(i))),
                encrypt: Some(shoal::agent::datadir::process_key()),
                ..Default::default()
            };
            let cfg = Config::load_with_env(&args, &|_| None).expect("valid test config");
            let a = Agent::start(&cfg).await.expect("agent starts");
            seed.get_or_insert(a.local_addr());
            let sock = r.dir.path().join(format!("{}.sock", name(i)));
            let h = api::spawn(
                a.shared(),
                ApiOptions {
                    unix: Some(sock.clone()),
                    http: None,
                    ..Default::default()
                },
            )
            .await
            .expect("api");
            r.clients
                .push(Client::parse(&format!("unix:{}", sock.display())).unwrap());
            r.shared.push(a.shared());
            r.apis.push(h);
            r.agents.push(a);
        }
        let n = r.agents.len();
        wait_until(
            Duration::from_secs(10),
            "every agent sees every member",
            || {
                r.shared.iter().all(|s| {
                    s.lock()
                        .members()
                        .iter()
                        .filter(|m| m.status.is_serving())
                        .count()
                        == n
                })
            },
        )
        .await;
        r
    }

    async fn stop(self) {
        for h in self.apis {
            h.shutdown().await;
        }
        for a in self.agents {
            a.stop().await;
        }
        drop(self.dir);
    }

    /// `node`'s instance of `service` as agent `observer` serves it.
    fn instance(&self, observer: usize, service: &str, node: &str) -> Option<Instance> {
        self.shared[observer]
            .lock()
            .services()
            .remove(service)?
            .into_iter()
            .find(|i| i.node == node)
    }

    fn health_everywhere(&self, service: &str, node: &str, h: Health) -> bool {
        (0..self.shared.len()).all(|o| {
            self.instance(o, service, node)
                .is_some_and(|i| i.health == Some(h))
        })
    }

    async fn register(&self, agent: usize, name: &str, port: u16, checks: Vec<CheckSpec>) {
        self.clients[agent]
            .register_service(&ServiceRequest {
                name: name.into(),
                port,
                tags: BTreeMap::new(),
                health: None,
                checks,
            })
            .await
            .expect("register");
    }

    async fn checks(&self, agent: usize) -> ChecksResponse {
        self.clients[agent].checks().await.expect("checks")
    }

    async fn ttl(&self, agent: usize, id: &str, action: &str) -> (u16, serde_json::Value) {
        let a = self.clients[agent]
            .raw(
                hyper::Method::PUT,
                &format!("/v1/checks/{id}/{action}"),
                Some(b"note from the app".to_vec()),
            )
            .await
            .expect("answer");
        (
            a.status.as_u16(),
            serde_json::from_slice(&a.body).unwrap_or_default(),
        )
    }
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

/// The async twin of `wait_until`, for conditions read through the API.
async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spec(json: &str) -> CheckSpec {
    serde_json::from_str(json).expect("a check spec")
}

/// A tiny HTTP server: answers every request with `status` (or never answers: `hang`).
struct HttpTarget {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpTarget {
    async fn start(addr: SocketAddr, status: u16, hang: bool) -> HttpTarget {
        let l = TcpListener::bind(addr).await.expect("bind the HTTP target");
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..100_000 {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                if hang {
                    held.push(s);
                    continue;
                }
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 65536 {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = format!("status {status}\nsecond line");
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        HttpTarget { addr, task }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Done-when: an HTTP-checked service turns critical on every agent within a few seconds of
/// its server stopping, and passing again when it comes back.
#[tokio::test]
async fn http_check_status_reaches_every_agent() {
    let rig = Rig::start(3).await;
    let target = HttpTarget::start("127.0.0.1:0".parse().unwrap(), 200, false).await;
    let url = format!("http://{}/health", target.addr);
    rig.register(
        0,
        "web",
        target.addr.port(),
        vec![spec(&format!(
            r#"{{"http":"{url}","interval":"200ms","timeout":"1s"}}"#
        ))],
    )
    .await;
    let t = wait_until(
        Duration::from_secs(10),
        "web passing on every agent",
        || rig.health_everywhere("web", "h0", Health::Passing),
    )
    .await;
    println!("passing everywhere {} ms after registration", t.as_millis());
    let i = rig.instance(2, "web", "h0").unwrap();
    assert!(
        i.health_output.contains("200") && i.health_output.contains("status 200"),
        "first line of the output travels: {:?}",
        i.health_output
    );
    assert!(!i.health_output.contains("second line"));

    let addr = target.addr;
    target.stop().await;
    let t = wait_until(
        Duration::from_secs(10),
        "web critical on every agent",
        || rig.health_everywhere("web", "h0", Health::Critical),
    )
    .await;
    println!(
        "critical everywhere {} ms after the server stopped",
        t.as_millis()
    );
    assert!(t < Duration::from_secs(5), "took {t:?}");
    let i = rig.instance(1, "web", "h0").unwrap();
    assert!(
        i.health_output.contains("HTTP GET"),
        "{:?}",
        i.health_output
    );

    let target = HttpTarget::start(addr, 200, false).await;
    let t = wait_until(
        Duration::from_secs(10),
        "web passing again everywhere",
        || rig.health_everywhere("web", "h0", Health::Passing),
    )
    .await;
    println!(
        "passing everywhere {} ms after the server returned",
        t.as_millis()
    );
    assert!(t < Duration::from_secs(5), "took {t:?}");

    // 429 is a warning: in the served view, not in `?passing`.
    target.stop().await;
    let target = HttpTarget::start(addr, 429, false).await;
    wait_until(Duration::from_secs(10), "web warning everywhere", || {
        rig.health_everywhere("web", "h0", Health::Warning)
    })
    .await;
    let r = rig.clients[1].service_passing("web", true).await.unwrap();
    assert!(r.instances.is_empty(), "a warning is not passing");
    let r = rig.clients[1].service_passing("web", false).await.unwrap();
    assert_eq!(r.instances.len(), 1);
    target.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn tcp_check_follows_the_listener() {
    let rig = Rig::start(1).await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    rig.register(
        0,
        "db",
        addr.port(),
        vec![spec(&format!(r#"{{"tcp":"{addr}","interval":"100ms"}}"#))],
    )
    .await;
    wait_until(Duration::from_secs(5), "db passing", || {
        rig.health_everywhere("db", "h0", Health::Passing)
    })
    .await;
    drop(l);
    wait_until(Duration::from_secs(5), "db critical", || {
        rig.health_everywhere("db", "h0", Health::Critical)
    })
    .await;
    let c = rig.checks(0).await;
    assert_eq!(c.checks[0].id, "service:db");
    assert_eq!(c.checks[0].kind, "tcp");
    assert!(
        c.checks[0].output.contains("TCP connect"),
        "{:?}",
        c.checks[0]
    );
    rig.stop().await;
}

#[tokio::test]
async fn exec_check_exit_codes_and_bounded_output() {
    let rig = Rig::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::write(&code, "0").unwrap();
    let script = format!(
        "echo \"exit $(cat {c})\"; head -c 100000 /dev/zero | tr '\\0' x; exit $(cat {c})",
        c = code.display()
    );
    rig.register(
        0,
        "job",
        9000,
        vec![CheckSpec {
            exec: Some(vec!["sh".into(), "-c".into(), script]),
            interval: Some("100ms".into()),
            ..CheckSpec::default()
        }],
    )
    .await;
    for (c, h) in [
        ("0", Health::Passing),
        ("1", Health::Warning),
        ("2", Health::Critical),
        ("0", Health::Passing),
    ] {
        std::fs::write(&code, c).unwrap();
        wait_until(
            Duration::from_secs(5),
            &format!("exit {c} gives {h}"),
            || {
                rig.instance(0, "job", "h0")
                    .is_some_and(|i| i.health == Some(h) && i.health_output == format!("exit {c}"))
            },
        )
        .await;
    }
    let c = rig.checks(0).await;
    assert!(c.checks[0].output.len() <= 4096, "output is bounded");
    assert!(c.checks[0].output.starts_with("exit 0\nxxxx"));
    rig.stop().await;
}

#[tokio::test]
async fn hanging_targets_time_out() {
    let rig = Rig::start(1).await;
    let hang = HttpTarget::start("127.0.0.1:0".parse().unwrap(), 200, true).await;
    rig.register(
        0,
        "slow-http",
        hang.addr.port(),
        vec![spec(&format!(
            r#"{{"http":"http://{}/","interval":"200ms","timeout":"300ms","initial_status":"passing"}}"#,
            hang.addr
        ))],
    )
    .await;
    rig.register(
        0,
        "slow-exec",
        9001,
        vec![spec(
            r#"{"exec":["sleep","30"],"interval":"200ms","timeout":"300ms","initial_status":"passing"}"#,
        )],
    )
    .await;
    for svc in ["slow-http", "slow-exec"] {
        wait_until(Duration::from_secs(5), &format!("{svc} times out"), || {
            rig.instance(0, svc, "h0").is_some_and(|i| {
                i.health == Some(Health::Critical) && i.health_output.contains("timed out")
            })
        })
        .await;
    }
    // Runs keep coming (one at a time: each waits for the last to time out).
    let before = rig.checks(0).await;
    wait_for(Duration::from_secs(5), "more results", || async {
        let now = rig.checks(0).await;
        now.checks
            .iter()
            .zip(&before.checks)
            .all(|(a, b)| a.results >= b.results + 2)
    })
    .await;
    hang.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn ttl_damping_expiry_and_errors() {
    let rig = Rig::start(1).await;
    rig.register(
        0,
        "app",
        9000,
        vec![spec(
            r#"{"id":"app-ttl","ttl":"600ms","initial_status":"passing","failures_before_critical":2,"success_before_passing":2}"#,
        )],
    )
    .await;
    let status = |rig: &Rig| rig.instance(0, "app", "h0").and_then(|i| i.health);
    assert_eq!(status(&rig), Some(Health::Passing));
    // Damping: one failure is not enough, two in a row are.
    let (code, v) = rig.ttl(0, "app-ttl", "fail").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["check"]["status"], "passing");
    let (_, v) = rig.ttl(0, "app-ttl", "fail").await;
    assert_eq!(v["check"]["status"], "critical");
    assert_eq!(v["check"]["output"], "note from the app");
    let (_, v) = rig.ttl(0, "app-ttl", "pass").await;
    assert_eq!(v["check"]["status"], "critical", "one pass is not enough");
    let (_, v) = rig.ttl(0, "app-ttl", "pass").await;
    assert_eq!(v["check"]["status"], "passing");
    wait_until(Duration::from_secs(5), "passing published", || {
        status(&rig) == Some(Health::Passing)
    })
    .await;
    // No update within the ttl: critical at once (there is no result to damp), in the record.
    let (_, v) = rig.ttl(0, "app-ttl", "warn").await;
    assert_eq!(v["check"]["status"], "warning");
    let t = wait_until(Duration::from_secs(10), "ttl expired", || {
        rig.instance(0, "app", "h0").is_some_and(|i| {
            i.health == Some(Health::Critical) && i.health_output.contains("TTL expired")
        })
    })
    .await;
    assert!(t >= Duration::from_millis(500), "expired too early: {t:?}");
    // Errors.
    rig.register(
        0,
        "web",
        9001,
        vec![spec(r#"{"tcp":"127.0.0.1:9","interval":"1s"}"#)],
    )
    .await;
    assert_eq!(rig.ttl(0, "service:web", "pass").await.0, 409);
    assert_eq!(rig.ttl(0, "nope", "pass").await.0, 404);
    assert_eq!(rig.ttl(0, "app-ttl", "maybe").await.0, 404);
    for (body, code, word) in [
        (
            r#"{"name":"x","port":1,"checks":[{"http":"https://a/"}]}"#,
            400,
            "https",
        ),
        (
            r#"{"name":"x","port":1,"checks":[{"ttl":"1s","tcp":"1.2.3.4:5"}]}"#,
            400,
            "exactly one",
        ),
        (
            r#"{"name":"x","port":1,"checks":[{"id":"app-ttl","ttl":"1s"}]}"#,
            409,
            "used twice",
        ),
        (
            r#"{"name":"x","port":1,"health":"passing","checks":[{"ttl":"1s"}]}"#,
            400,
            "not both",
        ),
        (
            r#"{"name":"x","port":1,"checks":[{"exec":"sh -c true"}]}"#,
            400,
            "checks",
        ),
    ] {
        let a = rig.clients[0]
            .raw(
                hyper::Method::PUT,
                "/v1/services",
                Some(body.as_bytes().to_vec()),
            )
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&a.body).to_string();
        assert_eq!(a.status.as_u16(), code, "{body}: {text}");
        assert!(text.contains(word), "{body}: {text}");
    }
    // Deregistering stops the checks.
    rig.clients[0].deregister_service("app").await.unwrap();
    let c = rig.checks(0).await;
    assert!(c.checks.iter().all(|c| c.service != "app"));
    rig.stop().await;
}

/// A few instances failing are removed from the passing view at once; many failing together
/// are held there (marked, with the reason), on every agent, in shoal's API, Consul's and DNS.
#[tokio::test]
async fn mass_failure_held_small_failure_removed() {
    let n = 5;
    let rig = Rig::start(n).await;
    let consul = shoal::api::consul::spawn(rig.shared[0].clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let consul_client = Client::parse(&format!("http://{}", consul.local_addr())).unwrap();
    for i in 0..n {
        rig.register(
            i,
            "api",
            9000 + i as u16,
            vec![spec(r#"{"ttl":"1h","initial_status":"passing"}"#)],
        )
        .await;
    }
    let passing = |rig: &Rig, o: usize| -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = rig.shared[o]
            .lock()
            .services()
            .remove("api")
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.in_passing_view(false))
            .map(|i| (i.node.clone(), i.health_held.is_some()))
            .collect();
        v.sort();
        v
    };
    wait_until(
        Duration::from_secs(10),
        "5 passing instances everywhere",
        || (0..n).all(|o| passing(&rig, o).len() == n),
    )
    .await;

    // One fails: removed from the passing view on every agent, not held.
    rig.ttl(1, "service:api", "fail").await;
    wait_until(
        Duration::from_secs(5),
        "h1 out of the passing view everywhere",
        || {
            (0..n).all(|o| {
                let p = passing(&rig, o);
                p.len() == n - 1 && p.iter().all(|(node, held)| node != "h1" && !held)
            })
        },
    )
    .await;
    let v = rig.clients[0].service_passing("api", true).await.unwrap();
    assert_eq!(v.instances.len(), n - 1);
    assert!(v.health_guard.is_none());

    // Two more fail within the window: 3 of 5 > max(2, 40% of 5): held, on every agent.
    rig.ttl(2, "service:api", "fail").await;
    rig.ttl(3, "service:api", "fail").await;
    wait_until(Duration::from_secs(5), "h1..h3 critical everywhere", || {
        (1..4).all(|k| rig.health_everywhere("api", &name(k), Health::Critical))
    })
    .await;
    wait_until(
        Duration::from_secs(5),
        "the passing view holds them",
        || {
            (0..n).all(|o| {
                let p = passing(&rig, o);
                p.len() == n && p.iter().filter(|(_, held)| *held).count() == 3
            })
        },
    )
    .await;
    let v = rig.clients[4].service_passing("api", true).await.unwrap();
    assert_eq!(v.instances.len(), n);
    let g = v.health_guard.expect("the health guard reports");
    assert_eq!(g.held, 3);
    assert!(g.reason.contains("3 of 5 instances of api"), "{}", g.reason);
    let held = v.instances.iter().find(|i| i.node == "h2").unwrap();
    assert_eq!(held.health, Some(Health::Critical));
    assert!(held
        .health_held
        .as_deref()
        .unwrap()
        .contains("shared fault"));
    // The metric and the event.
    let text = rig.clients[4].metrics().await.unwrap();
    assert!(
        text.contains("shoal_health_guard_frozen{service=\"api\"} 1"),
        "{text}"
    );
    assert!(text.contains("shoal_health_guard_held_instances{service=\"api\"} 3"));

    // Consul: held instances pass with an output that says why; `?passing` keeps them.
    let a = consul_client
        .raw(hyper::Method::GET, "/v1/health/service/api?passing", None)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), n, "{v}");
    let h2 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Node"]["Node"] == "h2")
        .unwrap();
    let svc_check = h2["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "service:api")
        .unwrap();
    assert_eq!(svc_check["Status"], "passing");
    assert!(svc_check["Output"]
        .as_str()
        .unwrap()
        .contains("held by the shoal health guard"));

    // DNS answers them too.
    let srv = dns_srv(&rig.shared[0], "api.service.shoal.");
    assert_eq!(srv.len(), n, "{srv:?}");

    // They pass again: no longer held; after `stable_after` the guard thaws (not waited).
    for k in 1..4 {
        rig.ttl(k, "service:api", "pass").await;
    }
    wait_until(Duration::from_secs(5), "all passing, none held", || {
        (0..n).all(|o| {
            let p = passing(&rig, o);
            p.len() == n && p.iter().all(|(_, held)| !held)
        })
    })
    .await;
    consul.shutdown().await;
    rig.stop().await;
}

/// A critical instance that is not held is not in DNS answers (as Consul's DNS).
#[tokio::test]
async fn dns_leaves_out_critical_instances() {
    let rig = Rig::start(3).await;
    for i in 0..3 {
        rig.register(
            i,
            "q",
            7000 + i as u16,
            vec![spec(r#"{"ttl":"1h","initial_status":"passing"}"#)],
        )
        .await;
    }
    wait_until(Duration::from_secs(10), "3 instances in DNS", || {
        dns_srv(&rig.shared[2], "q.service.shoal.").len() == 3
    })
    .await;
    rig.ttl(0, "service:q", "fail").await;
    wait_until(Duration::from_secs(5), "h0 out of DNS", || {
        let v = dns_srv(&rig.shared[2], "q.service.shoal.");
        v.len() == 2 && !v.iter().any(|t| t.starts_with("h0."))
    })
    .await;
    rig.stop().await;
}

fn dns_srv(shared: &AgentShared, qname: &str) -> Vec<String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii(qname).unwrap(),
        RecordType::SRV,
    ));
    let view = shoal::dns::view(&shared.lock());
    let r = view.answer(&m, 0);
    let mut v: Vec<String> = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::SRV(s) => Some(s.target.to_ascii()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Checks from the config file's `[[services.checks]]`.
#[tokio::test]
async fn config_file_checks_run() {
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let file = dir.path().join("shoal.toml");
    std::fs::write(
        &file,
        format!(
            "[[services]]\nname = \"db\"\nport = {}\n\n[[services.checks]]\ntcp = \"{addr}\"\n\
             interval = \"100ms\"\nfailures_before_critical = 2\n",
            addr.port()
        ),
    )
    .unwrap();
    let args = AgentArgs {
        name: Some("c0".into()),
        bind: Some("127.0.0.1:0".into()),
        profile: Some(Profile::Local),
        data_dir: Some(dir.path().join("data")),
        config: Some(file.clone()),
        encrypt: Some(shoal::agent::datadir::process_key()),
        ..Default::default()
    };
    let cfg = Config::load_with_env(&args, &|_| None).expect("valid config");
    assert_eq!(cfg.services[0].checks.len(), 1);
    let a = Agent::start(&cfg).await.unwrap();
    let sh = a.shared();
    let health = |sh: &AgentShared| {
        sh.lock()
            .services()
            .remove("db")
            .and_then(|v| v.into_iter().next())
            .and_then(|i| i.health)
    };
    wait_until(Duration::from_secs(5), "db passing", || {
        health(&sh) == Some(Health::Passing)
    })
    .await;
    drop(l);
    wait_until(Duration::from_secs(5), "db critical", || {
        health(&sh) == Some(Health::Critical)
    })
    .await;
    a.stop().await;

    // Bad checks in the file are refused with the field's name.
    std::fs::write(
        &file,
        "[[services]]\nname = \"db\"\nport = 5432\n\n[[services.checks]]\nexec = []\n",
    )
    .unwrap();
    let e = Config::load_with_env(&args, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("services.checks") && e.contains("argv"), "{e}");
}

async fn cli(
    rig: &Rig,
    format: shoal::cli::Format,
    cmd: shoal::cli::ClientCommand,
) -> (bool, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let sock = rig.dir.path().join(format!("{}.sock", name(0)));
    let code = shoal::cli::run_with(
        shoal::cli::ClientArgs {
            api: format!("unix:{}", sock.display()),
            format,
        },
        cmd,
        &mut out,
        &mut err,
    )
    .await
    .expect("cli runs");
    (
        code == std::process::ExitCode::SUCCESS,
        String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err),
    )
}

/// `shoal register` with a check, `shoal services --passing` shows health and output,
/// `shoal checks`, `shoal check ID pass`.
#[tokio::test]
async fn cli_registers_checks_and_shows_health() {
    use shoal::cli::health::{RegisterArgs, TtlAction};
    use shoal::cli::{ClientCommand, Format};
    let rig = Rig::start(1).await;
    let target = HttpTarget::start("127.0.0.1:0".parse().unwrap(), 200, false).await;
    let (ok, out) = cli(
        &rig,
        Format::Table,
        ClientCommand::Register(RegisterArgs {
            service: format!("web:{}", target.addr.port()),
            tags: vec!["v=1".into()],
            checks: vec![r#"{"id":"app","ttl":"1h","initial_status":"warning"}"#.into()],
            http: Some(format!("http://{}/", target.addr)),
            tcp: None,
            ttl: None,
            interval: Some("200ms".into()),
            timeout: None,
        }),
    )
    .await;
    assert!(ok && out.contains("with 2 check(s)"), "{out}");
    // The ttl check starts as warning: the service is warning (its worst check).
    wait_until(Duration::from_secs(5), "web warning", || {
        rig.health_everywhere("web", "h0", Health::Warning)
    })
    .await;
    let (ok, out) = cli(
        &rig,
        Format::Table,
        ClientCommand::Check {
            id: "app".into(),
            action: TtlAction::Pass,
            note: Some("ready".into()),
        },
    )
    .await;
    assert!(ok && out.contains("app: passing"), "{out}");
    wait_until(Duration::from_secs(5), "web passing", || {
        rig.health_everywhere("web", "h0", Health::Passing)
    })
    .await;
    let services = |passing| ClientCommand::Services {
        name: Some("web".into()),
        passing,
    };
    let (_, out) = cli(&rig, Format::Table, services(true)).await;
    assert!(out.contains("HEALTH") && out.contains("passing"), "{out}");
    // The output of the first check with the worst status (all pass: the ttl's note).
    assert!(out.contains("ready"), "the output column: {out}");
    let (_, out) = cli(&rig, Format::Table, ClientCommand::Checks).await;
    assert!(
        out.contains("service:web") && out.contains("app") && out.contains("ttl"),
        "{out}"
    );
    // The server stops: the only instance is critical, held so that web is never empty.
    target.stop().await;
    wait_until(Duration::from_secs(5), "web critical", || {
        rig.health_everywhere("web", "h0", Health::Critical)
    })
    .await;
    let (_, out) = cli(&rig, Format::Table, services(true)).await;
    assert!(
        out.contains("critical (held)") && out.contains("HEALTH GUARD:"),
        "{out}"
    );
    let (_, out) = cli(&rig, Format::Json, services(true)).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["web"][0]["health"], "critical");
    assert!(v["web"][0]["health_held"]
        .as_str()
        .unwrap()
        .contains("never empty"));
    // Bad input is refused before anything is sent.
    let (ok, out) = cli(
        &rig,
        Format::Table,
        ClientCommand::Register(RegisterArgs {
            service: "web".into(),
            tags: vec![],
            checks: vec![],
            http: None,
            tcp: None,
            ttl: None,
            interval: None,
            timeout: None,
        }),
    )
    .await;
    assert!(!ok && out.contains("NAME:PORT"), "{out}");
    rig.stop().await;
}
