//! The small things users trip on: wall-clock times beside the agent's clock, `force-leave`
//! reaching every agent, SIGHUP keeping what was set through the API (a real process, a real
//! signal), `shoal members --format json`.

use super::*;
use shoal::api::ApiOptions;
use shoal::cli::{ClientArgs, ClientCommand, Format};
use shoal::client::Client;
use std::process::ExitCode;

/// `2026-12-01T02:12:27.123Z`: RFC 3339, UTC, milliseconds.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars().filter(|c| c.is_ascii_digit()).count() == 17
}

fn year_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    shoal::api::wallclock::rfc3339(ms)[..4].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_times_beside_the_agent_clock_and_members_json() {
    let c = start(&[Spec::default(), Spec::default()]).await;
    c.converge_fully(SETTLE).await;
    let api = shoal::api::spawn(
        c.shared[0].clone(),
        ApiOptions {
            unix: None,
            http: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .expect("API starts");
    let a = api.http_addr().unwrap();
    let v = get(a, "/v1/members").await.json();
    let year = year_now();
    for m in v["members"].as_array().unwrap() {
        assert!(m["since_ms"].is_u64(), "since_ms stays: {m}");
        let since = m["since"].as_str().expect("since beside since_ms");
        assert!(is_rfc3339(since) && since.starts_with(&year), "{since}");
    }
    assert!(is_rfc3339(v["guard"]["since"].as_str().unwrap()));
    let v = get(a, "/v1/self").await.json();
    assert!(is_rfc3339(v["member"]["since"].as_str().unwrap()));

    // The watch stream: the snapshot line and every event line.
    let path = format!("/v1/watch?index={}", v["index"].as_u64().unwrap());
    let mut watch = Stream::open(a, &path, Duration::from_secs(20)).await;
    c.shared[0]
        .with_node(|n, now| n.set_tags(now, &[("role".to_string(), "db".to_string())].into(), &[]))
        .unwrap();
    let body = watch
        .lines_until(
            Duration::from_secs(20),
            "the watch carries the change",
            |l| !l.is_empty(),
        )
        .await;
    api.shutdown().await;
    let lines: Vec<serde_json::Value> = body
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty(), "the watch saw the change: {body:?}");
    for l in &lines {
        assert!(
            is_rfc3339(l["at"].as_str().expect("at beside at_ms")),
            "{l}"
        );
        assert!(l["at_ms"].is_u64());
    }

    // `shoal members --format json`: the API's member objects, `since` included.
    let api = shoal::api::spawn(
        c.shared[0].clone(),
        ApiOptions {
            unix: None,
            http: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let args = ClientArgs {
        api: format!("http://{}", api.http_addr().unwrap()),
        format: Format::Json,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = shoal::cli::run_with(
        args,
        ClientCommand::Members {
            status: vec![],
            name: None,
            tag: vec![],
            why: false,
        },
        &mut out,
        &mut err,
    )
    .await
    .unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let arr = v.as_array().expect("a JSON array of members");
    assert_eq!(arr.len(), 2);
    for m in arr {
        for k in [
            "name",
            "addr",
            "status",
            "generation",
            "since_ms",
            "since",
            "tags",
            "services",
            "meta_version",
        ] {
            assert!(m.get(k).is_some(), "members --format json lacks {k}: {m}");
        }
    }
    assert_eq!(arr[0]["tags"]["role"], "db");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_leave_releases_a_held_member_on_every_agent() {
    // n2 is the only provider of `db`: when it fails, the others hold it (never empty by
    // failure) until an operator says it is gone for good.
    let specs = vec![
        Spec::default(),
        Spec::default(),
        Spec {
            tags: vec![],
            services: vec![("db", 5432, vec![])],
        },
    ];
    let c = start(&specs).await;
    c.converge_fully(SETTLE).await;
    c.isolate(2);
    wait_until(REACT, "n0 and n1 hold n2", || {
        c.status(0, &name(2)) == Some(ServedStatus::Held)
            && c.status(1, &name(2)) == Some(ServedStatus::Held)
    })
    .await;
    // Commands go through the socket: a TCP listener takes them only with a token.
    let sock = c.dir.path().join("n0-force-leave.sock");
    let api = shoal::api::spawn(
        c.shared[0].clone(),
        ApiOptions {
            unix: Some(sock.clone()),
            http: None,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let client = Client::parse(&format!("unix:{}", sock.display())).unwrap();

    // Refused for a live member and for an unknown one, with a message.
    let post = |path: &'static str| {
        let client = client.clone();
        async move {
            let r = client.raw(hyper::Method::POST, path, None).await.unwrap();
            (
                r.status.as_u16(),
                String::from_utf8_lossy(&r.body).to_string(),
            )
        }
    };
    let (status, body) = post("/v1/force-leave/n1").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("alive"), "{body}");
    let (status, body) = post("/v1/force-leave/nobody").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        c.status(1, &name(2)),
        Some(ServedStatus::Held),
        "n1 still holds n2"
    );

    // The CLI, as an operator would run it against n0.
    let args = ClientArgs {
        api: format!("unix:{}", sock.display()),
        format: Format::Json,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = shoal::cli::run_with(
        args,
        ClientCommand::ForceLeave { node: "n2".into() },
        &mut out,
        &mut err,
    )
    .await
    .unwrap();
    assert_eq!(code, ExitCode::SUCCESS, "{}", String::from_utf8_lossy(&err));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["node"], "n2");
    assert_eq!(v["released"], true);
    assert_eq!(v["told"], 1, "n1 is the one active member n0 knows");
    assert_eq!(c.status(0, &name(2)), Some(ServedStatus::Down));
    // n1 was told: it releases n2 too, without anyone asking n1 directly.
    wait_until(REACT, "n1 releases n2", || {
        c.status(1, &name(2)) == Some(ServedStatus::Down)
    })
    .await;
    assert!(!c.shared[1].lock().services().contains_key("db"));
    api.shutdown().await;
}

/// A real agent process, a real SIGHUP: the file's changes apply, the API's survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_what_the_api_set() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("shoal.toml");
    let sock = dir.path().join("shoal.sock");
    let write = |text: &str| std::fs::write(&cfg, text).unwrap();
    write(
        "name = \"solo\"\nbind = \"127.0.0.1:0\"\nprofile = \"local\"\n\
         [tags]\nzone = \"a\"\nrack = \"1\"\n\
         [[services]]\nname = \"web\"\nport = 8080\n",
    );
    // The binary's own listeners too: the Consul API and DNS on free loopback ports.
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (consul, dns) = (free(), free());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("agent")
        .arg("--encrypt")
        .arg(shoal::agent::datadir::process_key())
        .arg(format!("--consul-api={consul}"))
        .arg(format!("--dns={dns}"))
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--api")
        .arg(format!("unix:{}", sock.display()))
        .arg("--log-level")
        .arg("warn")
        .kill_on_drop(true)
        .spawn()
        .expect("shoal agent starts");
    let client = Client::parse(&format!("unix:{}", sock.display())).unwrap();
    let start = Instant::now();
    loop {
        if client.local().await.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the agent's API never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = get(consul, "/v1/catalog/services").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"web": []}));
    let ips = super::dns::a_records(dns, "solo.node.shoal.").await;
    assert_eq!(ips, vec!["127.0.0.1"]);

    // Through the API: a tag, a changed tag, a service.
    client
        .set_tags(
            [
                ("role".to_string(), "db".to_string()),
                ("rack".to_string(), "7".to_string()),
            ]
            .into(),
            vec![],
        )
        .await
        .unwrap();
    client
        .register_service(&shoal::api::types::ServiceRequest {
            id: None,
            name: "pg".into(),
            port: 5432,
            tags: Default::default(),
            health: None,
            checks: Vec::new(),
        })
        .await
        .unwrap();
    // The file changes: zone changed, rack removed (but the API changed it: it stays),
    // a service added.
    write(
        "name = \"solo\"\nbind = \"127.0.0.1:0\"\nprofile = \"local\"\n\
         [tags]\nzone = \"b\"\n\
         [[services]]\nname = \"web\"\nport = 8080\n\
         [[services]]\nname = \"api\"\nport = 9000\n",
    );
    let pid = child.id().expect("a pid").to_string();
    let st = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let want_tags: BTreeMap<String, String> = [("zone", "b"), ("rack", "7"), ("role", "db")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let start = Instant::now();
    let me = loop {
        let me = client.local().await.unwrap().member;
        if me.tags == want_tags {
            break me;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGHUP did not give the merged tags: {:?}",
            me.tags
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut services: Vec<&str> = me.services.iter().map(|s| s.name.as_str()).collect();
    services.sort();
    assert_eq!(services, vec!["api", "pg", "web"]);
    // A second SIGHUP with the same file changes nothing: not one line on the watch stream
    // (opened at the current index, so no snapshot) for a whole second after it.
    let version = me.meta_version;
    let index = client.local().await.unwrap().index;
    let mut watch = client.watch(Some(index)).await.expect("a watch stream");
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    if let Ok(line) = tokio::time::timeout(Duration::from_secs(1), watch.next()).await {
        panic!("an unchanged file changes nothing, yet the watch carried {line:?}");
    }
    let again = client.local().await.unwrap().member;
    assert_eq!(
        again.meta_version, version,
        "an unchanged file changes nothing"
    );
    assert_eq!(again.tags, want_tags);
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}
