//! Each kind of check against a real target: HTTP status codes, a TCP listener, exec'd
//! programs (exit codes, bounded output), hanging targets that time out, ttl updates through
//! the API (damping, expiry, errors), and checks declared in the config file.

use super::*;
use shoal::agent::checks::CheckSpec;
use shoal::agent::AgentShared;
use shoal::config::{AgentArgs, Config};
use shoal_core::Health;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

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
        || rig.health_everywhere("web", "n0", Health::Passing),
    )
    .await;
    println!("passing everywhere {} ms after registration", t.as_millis());
    let i = rig.instance(2, "web", "n0").unwrap();
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
        || rig.health_everywhere("web", "n0", Health::Critical),
    )
    .await;
    println!(
        "critical everywhere {} ms after the server stopped",
        t.as_millis()
    );
    assert!(t < Duration::from_secs(5), "took {t:?}");
    let i = rig.instance(1, "web", "n0").unwrap();
    assert!(
        i.health_output.contains("HTTP GET"),
        "{:?}",
        i.health_output
    );

    let target = HttpTarget::start(addr, 200, false).await;
    let t = wait_until(
        Duration::from_secs(10),
        "web passing again everywhere",
        || rig.health_everywhere("web", "n0", Health::Passing),
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
        rig.health_everywhere("web", "n0", Health::Warning)
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
        rig.health_everywhere("db", "n0", Health::Passing)
    })
    .await;
    drop(l);
    wait_until(Duration::from_secs(5), "db critical", || {
        rig.health_everywhere("db", "n0", Health::Critical)
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

/// An agent whose config file lets the API register exec checks (off by default).
fn with_api_exec(
    i: usize,
    bind: std::net::SocketAddr,
    seed: Option<std::net::SocketAddr>,
    dir: &std::path::Path,
) -> shoal::config::Config {
    let mut cfg = common::config(i, bind, seed, dir);
    cfg.enable_api_exec_checks = true;
    cfg
}

/// By default the local API never makes the agent run a command: an exec check through
/// `PUT /v1/services` is refused (403, saying where it may come from) and nothing runs.
#[tokio::test]
async fn exec_checks_through_the_api_are_refused_unless_the_config_allows_them() {
    let rig = Rig::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let body = serde_json::json!({
        "name": "job",
        "port": 9000,
        "checks": [{"exec": ["sh", "-c", format!("touch {}", ran.display())], "interval": "100ms"}],
    })
    .to_string();
    let a = rig.clients[0]
        .raw(hyper::Method::PUT, "/v1/services", Some(body.into_bytes()))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&a.body).to_string();
    assert_eq!(a.status.as_u16(), 403, "{text}");
    assert!(text.contains("enable_api_exec_checks"), "{text}");
    assert!(rig.instance(0, "job", "n0").is_none(), "not registered");
    assert!(rig.checks(0).await.checks.is_empty());
    assert!(!ran.exists(), "nothing ran");
    rig.stop().await;
}

#[tokio::test]
async fn exec_check_exit_codes_and_bounded_output() {
    let rig = Rig::start_with(1, Box::new(with_api_exec)).await;
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
                rig.instance(0, "job", "n0")
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
    let rig = Rig::start_with(1, Box::new(with_api_exec)).await;
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
            rig.instance(0, svc, "n0").is_some_and(|i| {
                i.health == Some(Health::Critical) && i.health_output.contains("timed out")
            })
        })
        .await;
    }
    // Runs keep coming (one at a time: each waits for the last to time out).
    let before = rig.checks(0).await;
    wait_until_async(Duration::from_secs(5), "more results", || async {
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
    let status = |rig: &Rig| rig.instance(0, "app", "n0").and_then(|i| i.health);
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
    // Never critical before the ttl (600 ms) has run out: watched over most of it.
    holds_for(
        Duration::from_millis(400),
        "not expired before the ttl",
        || status(&rig) != Some(Health::Critical),
    )
    .await;
    wait_until(Duration::from_secs(10), "ttl expired", || {
        rig.instance(0, "app", "n0").is_some_and(|i| {
            i.health == Some(Health::Critical) && i.health_output.contains("TTL expired")
        })
    })
    .await;
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
            r#"{"name":"x","port":1,"checks":[{"http":"http://a/","tls_skip_verify":true}]}"#,
            400,
            "https:// URL only",
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

/// Checks from the config file's `[[services.checks]]`.
#[tokio::test]
async fn config_file_checks_run() {
    let files = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let file = files.path().join("shoal.toml");
    std::fs::write(
        &file,
        format!(
            "[[services]]\nname = \"db\"\nport = {}\n\n[[services.checks]]\ntcp = \"{addr}\"\n\
             interval = \"100ms\"\nfailures_before_critical = 2\n",
            addr.port()
        ),
    )
    .unwrap();
    let args =
        move |i: usize, bind: SocketAddr, seed: Option<SocketAddr>, dir: &std::path::Path| {
            AgentArgs {
                config: Some(file.clone()),
                ..common::agent_args(i, bind, seed, dir)
            }
        };
    let c = Cluster::start_with(
        1,
        Box::new(move |i, bind, seed, dir| {
            let cfg =
                Config::load_with_env(&args(i, bind, seed, dir), &|_| None).expect("valid config");
            assert_eq!(cfg.services[0].checks.len(), 1);
            cfg
        }),
    )
    .await;
    let sh = c.shared[0].clone();
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
    let bad_args = AgentArgs {
        config: Some(files.path().join("shoal.toml")),
        ..common::agent_args(0, c.addrs[0], None, c.dir.path())
    };
    c.stop().await;

    // Bad checks in the file are refused with the field's name.
    std::fs::write(
        files.path().join("shoal.toml"),
        "[[services]]\nname = \"db\"\nport = 5432\n\n[[services.checks]]\nexec = []\n",
    )
    .unwrap();
    let e = Config::load_with_env(&bad_args, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("services.checks") && e.contains("argv"), "{e}");
}
