//! User events, queries and event handlers with real agents on loopback: an event fired
//! through the CLI reaches every agent's watch stream exactly once, a query to every agent
//! returns every answer with its counts, Consul's event routes, and handlers that are real
//! shell scripts (stdin and environment written to files the test reads, a burst coalesced
//! into one run, a hanging handler killed and counted).

mod common;

use common::{cli_at, wait_until, Cluster};
use shoal::api::types::WatchLine;
use shoal::cli::{events::EventArgs, events::QueryCmdArgs, ClientCommand, Format};
use shoal::config::handlers::HandlerSpec;
use shoal::config::Config;
use shoal_core::EventKind;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn event_cmd(name: &str, payload: Option<&str>) -> ClientCommand {
    ClientCommand::Event(EventArgs {
        name: name.into(),
        payload: payload.map(str::to_string),
        no_coalesce: false,
    })
}

/// `shoal query NAME [PAYLOAD] [--node N]... --timeout T`.
fn query_cmd(name: &str, payload: Option<&str>, nodes: &[&str], timeout: &str) -> ClientCommand {
    ClientCommand::Query(QueryCmdArgs {
        name: name.into(),
        payload: payload.map(str::to_string),
        node: nodes.iter().map(|n| n.to_string()).collect(),
        tag: vec![],
        service: None,
        timeout: Some(timeout.into()),
    })
}

/// Reads a watch stream for `period` (bounded), returning the user events it carried.
async fn user_events_for(
    w: &mut shoal::client::Watch,
    period: Duration,
) -> Vec<shoal_core::UserEventView> {
    let end = Instant::now() + period;
    let mut got = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        match tokio::time::timeout(left, w.next()).await {
            Err(_) => return got,
            Ok(None) => panic!("the watch stream ended"),
            Ok(Some(line)) => {
                if let WatchLine::Event(e) = line.expect("a valid watch line") {
                    if let EventKind::UserEvent(u) = e.kind {
                        got.push(u);
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_fired_through_the_cli_reaches_every_watch_stream_once() {
    let mut c = Cluster::start(4).await;
    c.converge(Duration::from_secs(10)).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(c.serve_api(i).await);
    }
    let mut watches = Vec::new();
    for cl in &clients {
        watches.push(cl.watch(None).await.expect("watch opens"));
    }
    let (ok, out) = cli_at(
        &c.api_socket(1),
        Format::Table,
        event_cmd("deploy", Some("v2")),
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("event deploy fired"), "{out}");
    // Every stream, over 4 s (push rounds and an anti-entropy round included): exactly once.
    for (i, w) in watches.iter_mut().enumerate() {
        let got = user_events_for(w, Duration::from_secs(4)).await;
        assert_eq!(got.len(), 1, "agent n{i} delivered {got:?}");
        assert_eq!(
            (got[0].name.as_str(), got[0].payload.as_str()),
            ("deploy", "v2")
        );
        assert_eq!(got[0].origin, "n1");
    }
    // Listed by `shoal events` and the API.
    let (ok, out) = cli_at(&c.api_socket(3), Format::Table, ClientCommand::Events).await;
    assert!(
        ok && out.contains("deploy") && out.contains("n1") && out.contains("v2"),
        "{out}"
    );
    let r = clients[2].events().await.unwrap();
    assert_eq!(r.events.len(), 1);
    assert!(r.clock > r.events[0].event.ltime);
    // The payload bound: a clear error, nothing sent.
    let big = "x".repeat(600);
    let (ok, out) = cli_at(
        &c.api_socket(0),
        Format::Table,
        event_cmd("big", Some(&big)),
    )
    .await;
    assert!(!ok);
    assert!(
        out.contains("payload is 600 bytes; the limit is 512 (event_payload_max)"),
        "{out}"
    );
    let (ok, out) = cli_at(&c.api_socket(0), Format::Table, event_cmd("bad name", None)).await;
    assert!(!ok && out.contains("invalid"), "{out}");
    c.stop().await;
}

fn with_handlers(
    handlers: Vec<String>,
    on: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> common::Configure {
    Box::new(
        move |i: usize, bind: SocketAddr, seed: Option<SocketAddr>, dir: &Path| -> Config {
            let mut cfg = common::config(i, bind, seed, dir);
            if on(i) {
                cfg.event_handlers = handlers
                    .iter()
                    .map(|h| HandlerSpec::parse(h).expect("valid handler"))
                    .collect();
                cfg.handler_timeout = Duration::from_millis(800);
                cfg.handler_coalesce = Duration::from_millis(300);
            }
            cfg
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_to_every_agent_returns_all_answers_with_counts() {
    let handler = r#"query:uptime=read q; echo "up $SHOAL_SELF_NAME $q""#.to_string();
    let mut c = Cluster::start_with(5, with_handlers(vec![handler], |i| i != 4)).await;
    c.converge(Duration::from_secs(10)).await;
    c.shared[2]
        .with_node(|n, now| {
            let tags: std::collections::BTreeMap<String, String> =
                [("role".to_string(), "web".to_string())].into();
            n.set_tags(now, &tags, &[])
        })
        .unwrap();
    let client = c.serve_api(0).await;
    // Through the CLI, JSON: every agent acks, the four with a handler answer.
    let (ok, out) = cli_at(
        &c.api_socket(0),
        Format::Json,
        query_cmd("uptime", Some("?"), &[], "5s"),
    )
    .await;
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let q = &v["query"];
    assert_eq!(q["expected"], 5, "{q}");
    assert_eq!(q["acks"], 5, "{q}");
    assert_eq!(q["answers"].as_array().unwrap().len(), 4, "{q}");
    assert_eq!(q["done"], true);
    assert_eq!(
        q["timed_out"], false,
        "every expected agent answered before the timeout"
    );
    let mut answers: Vec<String> = q["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["payload"].as_str().unwrap().trim().to_string())
        .collect();
    answers.sort();
    assert_eq!(answers, vec!["up n0 ?", "up n1 ?", "up n2 ?", "up n3 ?"]);
    // Through the API, filtered by tag once the tag has spread.
    wait_until(Duration::from_secs(10), "the tag spreads", || {
        c.shared[0]
            .lock()
            .member("n2")
            .is_some_and(|m| m.tags.get("role").is_some_and(|r| r == "web"))
    })
    .await;
    let args = shoal::client::QueryArgs {
        tags: vec!["role=web".into()],
        timeout: Some("5s".into()),
        ..Default::default()
    };
    let r = client.query("uptime", b"!".to_vec(), &args).await.unwrap();
    assert_eq!((r.query.expected, r.query.acks), (1, 1), "{:?}", r.query);
    assert_eq!(r.query.answers.len(), 1);
    assert_eq!(r.query.answers[0].payload.trim(), "up n2 !");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_get_stdin_and_env_bursts_coalesce_and_a_hanging_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let stdin_file = dir.path().join("stdin.jsonl");
    let env_file = dir.path().join("env.txt");
    let runs_file = dir.path().join("runs.txt");
    let pid_file = dir.path().join("sleep.pid");
    let handlers = vec![
        format!(
            "user:deploy=cat >> {}; echo \"$SHOAL_EVENT $SHOAL_USER_EVENT $SHOAL_SELF_NAME \
             $SHOAL_EVENT_COUNT\" >> {}",
            stdin_file.display(),
            env_file.display()
        ),
        format!(
            "user:burst=echo \"$SHOAL_EVENT_COUNT\" >> {}",
            runs_file.display()
        ),
        format!(
            "user:hang=sleep 30 & echo $! > {}; wait",
            pid_file.display()
        ),
    ];
    let c = Cluster::start_with(3, with_handlers(handlers, |i| i == 2)).await;
    c.converge(Duration::from_secs(10)).await;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    // A user event fired on n0 runs n2's script with the event on stdin and in env.
    c.shared[0]
        .with_node(|n, now| n.user_event(now, "deploy", b"v7".to_vec(), true))
        .unwrap();
    wait_until(Duration::from_secs(10), "the deploy handler ran", || {
        read(&env_file).lines().count() == 1
    })
    .await;
    assert_eq!(read(&env_file).trim(), "user deploy n2 1");
    let line: serde_json::Value = serde_json::from_str(read(&stdin_file).trim()).unwrap();
    assert_eq!(line["type"], "user_event");
    assert_eq!(line["payload"], "v7");
    assert_eq!(line["origin"], "n0");

    // A burst of ten events (not coalescing, so all are kept): one run with all ten.
    c.shared[1].with_node(|n, now| {
        for k in 0..10 {
            n.user_event(now, "burst", format!("{k}").into_bytes(), false)
                .unwrap();
        }
    });
    wait_until(Duration::from_secs(10), "the burst handler ran", || {
        !read(&runs_file).is_empty()
    })
    .await;
    // Over two more coalescing periods and then some, no second run.
    common::holds_for(Duration::from_secs(2), "one run per burst", || {
        read(&runs_file).lines().count() == 1
    })
    .await;
    assert_eq!(read(&runs_file).trim(), "10");

    // A handler that hangs is killed after handler_timeout and counted.
    let stats = &c.shared[2].handlers;
    assert_eq!(stats.timeouts.load(Ordering::Relaxed), 0);
    c.shared[0]
        .with_node(|n, now| n.user_event(now, "hang", vec![], true))
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the hanging handler is killed",
        || c.shared[2].handlers.timeouts.load(Ordering::Relaxed) == 1,
    )
    .await;
    // The agent never waited: it still answers and gossips.
    c.converge(Duration::from_secs(5)).await;
    // What the handler started went with it (its process group was killed).
    let pid = read(&pid_file).trim().to_string();
    assert!(!pid.is_empty(), "the handler wrote its child's pid");
    wait_until(
        Duration::from_secs(5),
        "the handler's child is gone",
        || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for its reaper.
            stat.is_empty()
                || stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_event_fire_and_list() {
    use tower::ServiceExt;
    let c = Cluster::start(2).await;
    c.converge(Duration::from_secs(10)).await;
    let consul = shoal::api::consul::router(c.shared[0].clone());
    let req = |method: &str, path: &str, token: Option<&str>| {
        let mut b = axum::http::Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("x-consul-token", t);
        }
        b.body(axum::body::Body::from("v3")).unwrap()
    };
    // No API token configured: this TCP API refuses commands.
    let r = consul
        .clone()
        .oneshot(req("PUT", "/v1/event/fire/deploy", None))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    c.shared[0].api_token.set("s3cret".into()).unwrap();
    let r = consul
        .clone()
        .oneshot(req("PUT", "/v1/event/fire/deploy", Some("wrong")))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = consul
        .clone()
        .oneshot(req("PUT", "/v1/event/fire/deploy", Some("s3cret")))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let fired: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(fired["Name"], "deploy");
    assert_eq!(fired["Payload"], "djM="); // base64 of "v3", as Consul
                                          // It reaches the other agent; its Consul API lists it.
    wait_until(Duration::from_secs(10), "n1 has the event", || {
        !c.shared[1].lock().recent_events().is_empty()
    })
    .await;
    let other = shoal::api::consul::router(c.shared[1].clone());
    let r = other
        .oneshot(req("GET", "/v1/event/list?name=deploy", None))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().contains_key("x-consul-index"));
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["ID"], fired["ID"]);
    assert_eq!(list[0]["LTime"], fired["LTime"]);
    c.stop().await;
}

/// Lines of a handler's stdin log that carry the user event `name`.
fn lines_of(log: &Path, name: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "user_event" && v["name"] == name)
        .count()
}

/// Serf's snapshot keeps its Lamport clock so that a restart does not deliver old events
/// again; shoal keeps the clock, the ids seen and the recent events in its snapshot. n2
/// (with a handler logging every user event) delivers `deploy`, stops, misses `rotate`
/// fired while it is down, and starts again on its data directory: it must run its handler
/// for `rotate` (caught up from a peer) and never again for `deploy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_catches_up_and_delivers_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("user.jsonl");
    let handlers = vec![format!("user=cat >> {}", log.display())];
    let mut c = Cluster::start_with(3, with_handlers(handlers, |i| i == 2)).await;
    c.converge(Duration::from_secs(10)).await;
    let _ = c.serve_api(0).await;
    let (ok, out) = cli_at(
        &c.api_socket(0),
        Format::Table,
        event_cmd("deploy", Some("v1")),
    )
    .await;
    assert!(ok, "{out}");
    wait_until(
        Duration::from_secs(10),
        "n2's handler ran for deploy",
        || lines_of(&log, "deploy") == 1,
    )
    .await;
    let clock_before = c.shared[2].lock().event_clock();
    c.kill(2).await;

    // Fired through the API while n2 is down; n0 and n1 deliver it.
    let n1 = c.serve_api(1).await;
    n1.fire_event("rotate", b"logs".to_vec(), true)
        .await
        .expect("fired");
    wait_until(Duration::from_secs(10), "n0 delivered rotate", || {
        c.shared[0]
            .lock()
            .recent_events()
            .iter()
            .any(|e| e.event.name == "rotate")
    })
    .await;

    c.restart(2).await;
    assert!(
        c.shared[2].lock().event_clock() >= clock_before,
        "the Lamport clock survives the restart"
    );
    wait_until(
        Duration::from_secs(15),
        "the restarted n2 ran rotate",
        || lines_of(&log, "rotate") == 1,
    )
    .await;
    // Both sides hold the same recent events, so the exchange that brought `rotate` is over;
    // over two more seconds the log keeps one line per event, the old one never again.
    let ids = |i: usize| -> Vec<u64> {
        let mut v: Vec<u64> = c.shared[i]
            .lock()
            .recent_events()
            .iter()
            .map(|e| e.event.id)
            .collect();
        v.sort();
        v
    };
    wait_until(
        Duration::from_secs(10),
        "n2 holds n0's recent events",
        || ids(2) == ids(0),
    )
    .await;
    common::holds_for(Duration::from_secs(2), "each event ran once on n2", || {
        lines_of(&log, "deploy") == 1 && lines_of(&log, "rotate") == 1
    })
    .await;
    // Listed by the restarted agent, the one from its previous life too.
    let client = c.serve_api(2).await;
    let names: Vec<String> = client
        .events()
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.event.name.clone())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"deploy".into()) && names.contains(&"rotate".into()));
    let (ok, out) = cli_at(&c.api_socket(2), Format::Table, ClientCommand::Events).await;
    assert!(
        ok && out.contains("deploy") && out.contains("rotate"),
        "{out}"
    );
    c.stop().await;
}

/// The value of an unlabelled sample (or one with `labels`) in a `/metrics` text.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name).then(|| v.parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{text}")) as u64
}

/// `/metrics` counts events fired, delivered and refused, queries sent, answered and timed
/// out, and handler runs by result, on the agents where they happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_query_and_handler_metrics_count_what_happened() {
    let handlers = vec![
        "user:deploy=exit 3".to_string(),
        "query:uptime=echo up".to_string(),
        "query:slow=sleep 5".to_string(),
    ];
    let mut c = Cluster::start_with(3, with_handlers(handlers, |i| i == 1)).await;
    c.converge(Duration::from_secs(10)).await;
    let n0 = c.serve_api(0).await;
    let n1 = c.serve_api(1).await;
    let (ok, out) = cli_at(&c.api_socket(0), Format::Table, event_cmd("deploy", None)).await;
    assert!(ok, "{out}");
    let big = "x".repeat(600);
    let (ok, _) = cli_at(
        &c.api_socket(0),
        Format::Table,
        event_cmd("big", Some(&big)),
    )
    .await;
    assert!(!ok, "past event_payload_max is refused");
    wait_until(
        Duration::from_secs(10),
        "n1's deploy handler failed",
        || c.shared[1].handlers.failures.load(Ordering::Relaxed) == 1,
    )
    .await;
    // Answered by n1's handler; acked only by n0 and n2.
    let args = shoal::client::QueryArgs {
        timeout: Some("5s".into()),
        ..Default::default()
    };
    let r = n0.query("uptime", vec![], &args).await.unwrap();
    assert_eq!(
        (r.query.acks, r.query.answers.len()),
        (3, 1),
        "{:?}",
        r.query
    );
    // n1's handler hangs and is killed at 800 ms: the query ends at its 1 s timeout.
    let (ok, out) = cli_at(
        &c.api_socket(0),
        Format::Json,
        query_cmd("slow", None, &["n1"], "1s"),
    )
    .await;
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["query"]["timed_out"], true, "{out}");
    wait_until(
        Duration::from_secs(10),
        "n1's slow handler is killed",
        || c.shared[1].handlers.timeouts.load(Ordering::Relaxed) == 1,
    )
    .await;

    let m0 = n0.metrics().await.unwrap();
    assert_eq!(sample(&m0, "shoal_events_fired_total"), 1);
    assert_eq!(sample(&m0, "shoal_events_delivered_total"), 1);
    assert_eq!(sample(&m0, "shoal_events_dropped_too_big_total"), 1);
    assert_eq!(sample(&m0, "shoal_events_received_total"), 0);
    assert_eq!(sample(&m0, "shoal_queries_sent_total"), 2);
    assert_eq!(sample(&m0, "shoal_query_answers_received_total"), 1);
    assert_eq!(sample(&m0, "shoal_queries_timed_out_total"), 1);
    let m1 = n1.metrics().await.unwrap();
    assert_eq!(sample(&m1, "shoal_events_received_total"), 1);
    assert_eq!(sample(&m1, "shoal_events_delivered_total"), 1);
    assert_eq!(sample(&m1, "shoal_events_fired_total"), 0);
    assert_eq!(sample(&m1, "shoal_queries_received_total"), 2);
    assert_eq!(sample(&m1, "shoal_queries_answered_total"), 1);
    assert_eq!(
        sample(&m1, "shoal_handler_runs_total{result=\"failed\"}"),
        1
    );
    assert_eq!(
        sample(&m1, "shoal_handler_runs_total{result=\"timeout\"}"),
        1
    );
    assert_eq!(sample(&m1, "shoal_handler_runs_total{result=\"ok\"}"), 1);
    c.stop().await;
}

/// A query from an agent cut off from the rest says how many it could not reach, through
/// the CLI and the API: the guard serves the others `held`, they count as cut off, not as
/// expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_from_a_cut_off_agent_counts_the_members_it_cannot_reach() {
    let mut c = Cluster::start(4).await;
    c.converge(Duration::from_secs(10)).await;
    let client = c.serve_api(0).await;
    c.isolate(0);
    wait_until(Duration::from_secs(30), "n0 holds the three others", || {
        (1..4).all(|i| {
            matches!(
                c.status(0, &common::name(i)),
                Some(shoal_core::ServedStatus::Held | shoal_core::ServedStatus::Restarting)
            )
        })
    })
    .await;
    let (ok, out) = cli_at(
        &c.api_socket(0),
        Format::Table,
        query_cmd("uptime", None, &[], "2s"),
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("query uptime: 1 expected, 1 acks, 0 answers, 3 cut off (not reached)"),
        "{out}"
    );
    let args = shoal::client::QueryArgs {
        timeout: Some("2s".into()),
        ..Default::default()
    };
    let r = client.query("uptime", vec![], &args).await.unwrap();
    assert_eq!(
        (
            r.query.expected,
            r.query.acks,
            r.query.cut_off,
            r.query.timed_out
        ),
        (1, 1, 3, false),
        "{:?}",
        r.query
    );
    c.stop().await;
}
