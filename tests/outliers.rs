//! Outlier ejection end to end: real agents on 127.0.0.1 (profile `local`), a local app's
//! reports through the API (`POST /v1/reports`) and through the CLI (`shoal report`) eject an
//! instance in the reporting agent's served view (shoal's API, Consul's, DNS), the ejection
//! ends after its back-off, and the cap holds when every instance fails. What happens is
//! asserted over the watch stream (`/v1/watch`), every line of the interval; every wait is
//! bounded in time.

#[path = "common/mod.rs"]
mod common;

use common::{wait_until, Cluster};
use shoal::api::reports::Report;
use shoal::api::types::WatchLine;
use shoal::client::{Client, Watch};
use shoal_core::{EventKind, OutlierAction, OutlierTransition};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Agents with short outlier timings: window 10 s, 20 calls, 50 %, back-off 2 s (max 8 s);
/// agent 0's alert hook appends what it is told to `alerts.log` in the cluster's directory.
fn configure(ratio: f64) -> common::Configure {
    Box::new(move |i, bind, seed, dir| {
        let mut c = common::config(i, bind, seed, dir);
        if i == 0 {
            c.alert_hook = Some(format!(
                "echo \"$SHOAL_ALERT $SHOAL_OUTLIER_ACTION $SHOAL_OUTLIER_NODE\" >> '{}'",
                dir.join("alerts.log").display()
            ));
        }
        c.outlier.window = Duration::from_secs(10);
        c.outlier.base_ejection_time = Duration::from_secs(2);
        c.outlier.max_ejection_time = Duration::from_secs(8);
        c.outlier.max_ejection_ratio = ratio;
        c
    })
}

/// `n` agents, each offering `web`, agent 0 serving its API; returns once agent 0 serves the
/// `n` instances.
async fn start(n: usize, ratio: f64) -> (Cluster, Client) {
    let mut c = Cluster::start_with(n, configure(ratio)).await;
    let client = c.serve_api(0).await;
    for i in 0..n {
        c.shared[i]
            .with_node(|node, now| {
                node.register_service(
                    now,
                    shoal_core::Service {
                        name: "web".into(),
                        port: 8000 + i as u16,
                        tags: BTreeMap::new(),
                        health: None,
                        health_output: None,
                    },
                )
            })
            .expect("register web");
    }
    wait_until(
        Duration::from_secs(10),
        "agent 0 serves n instances of web",
        || {
            c.shared[0]
                .lock()
                .services()
                .get("web")
                .is_some_and(|v| v.len() == n)
        },
    )
    .await;
    (c, client)
}

fn report(node: &str, success: u64, error: u64, timeout: u64) -> Report {
    Report {
        id: None,
        service: "web".into(),
        node: node.into(),
        success,
        error,
        timeout,
    }
}

/// The outlier events of a watch stream with their agent-clock time, read until `until` or
/// until `stop` says so (every line of the interval).
async fn outlier_events(
    w: &mut Watch,
    until: Instant,
    stop: impl Fn(&[OutlierTransition]) -> bool,
) -> Vec<(u64, OutlierTransition)> {
    let mut seen: Vec<(u64, OutlierTransition)> = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return seen;
        }
        match tokio::time::timeout(left, w.next()).await {
            Err(_) => return seen,
            Ok(None) => panic!("the watch stream ended"),
            Ok(Some(line)) => match line.expect("a watch line") {
                WatchLine::Snapshot(_) => panic!("the watch stream lagged: a line was missed"),
                WatchLine::Event(e) => {
                    if let EventKind::Outlier(t) = e.kind {
                        seen.push((e.at_ms, t));
                        let ts: Vec<OutlierTransition> =
                            seen.iter().map(|(_, t)| t.clone()).collect();
                        if stop(&ts) {
                            return seen;
                        }
                    }
                }
            },
        }
    }
}

async fn open_watch(client: &Client) -> Watch {
    let mut w = client.watch(None).await.expect("watch");
    match w.next().await {
        Some(Ok(WatchLine::Snapshot(_))) => w,
        other => panic!("the watch stream starts with a snapshot, got {other:?}"),
    }
}

fn dns_srv(c: &Cluster, qname: &str) -> Vec<String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii(qname).unwrap(),
        RecordType::SRV,
    ));
    let view = shoal::dns::view(&c.shared[0].lock());
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

async fn status_and_body(client: &Client, body: &str) -> (u16, String) {
    let a = client
        .raw(
            hyper::Method::POST,
            "/v1/reports",
            Some(body.as_bytes().to_vec()),
        )
        .await
        .expect("an answer");
    (
        a.status.as_u16(),
        String::from_utf8_lossy(&a.body).into_owned(),
    )
}

/// Through the API: bad reports are refused with a clear status; a few failed calls eject
/// nothing; enough of them eject the instance on this agent only (out of `?passing`,
/// Consul's passing view with a critical `shoal-outlier` check, and DNS; with the reason in
/// the instance); it is restored after its 2 s back-off; the next ejection lasts twice as
/// long. The stream of agent 0 carries exactly ejected, restored; the other agents' streams
/// carry no outlier event over the whole test.
#[tokio::test]
async fn reports_eject_an_instance_until_its_back_off_ends() {
    let (mut c, client) = start(3, 0.5).await;
    let consul = c.serve_consul(0).await;
    let consul = Client::parse(&format!("http://{consul}")).unwrap();
    let mut others: Vec<_> = (1..3).map(|i| c.shared[i].events.subscribe()).collect();
    let mut w = open_watch(&client).await;

    // Refused, with a status that says why; nothing counted.
    for (body, status, words) in [
        (r#"{"reports":[]}"#, 422, "no report"),
        (
            r#"{"reports":[{"service":"db","node":"n1","error":1}]}"#,
            404,
            "no service",
        ),
        (
            r#"{"reports":[{"service":"web","node":"n7","error":1}]}"#,
            404,
            "no instance",
        ),
        (
            r#"{"reports":[{"service":"web","node":"n1"}]}"#,
            422,
            "counts no call",
        ),
        (
            r#"{"reports":[{"service":"web","node":"n1","error":1000001}]}"#,
            422,
            "more than 1000000",
        ),
        (
            r#"{"reports":[{"service":"web","node":"n1","errors":1}]}"#,
            400,
            "unknown field",
        ),
        (
            r#"{"reports":[{"service":"web","node":"n1","error":-1}]}"#,
            400,
            "malformed",
        ),
    ] {
        let (got, text) = status_and_body(&client, body).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(words), "{body}: {text}");
    }
    let many: Vec<Report> = (0..257).map(|_| report("n1", 0, 1, 0)).collect();
    let err = client.report(many).await.unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    let big = format!(
        r#"{{"reports":[{{"service":"{}","node":"n1","error":1}}]}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(status_and_body(&client, &big).await.0, 413);

    // Three failed calls: nothing ejected, however bad the ratio.
    let r = client.report(vec![report("n1", 0, 2, 1)]).await.unwrap();
    assert!(r.instances[0].ejected.is_none());
    assert_eq!(r.instances[0].window.failures(), 3);

    // A proxy's batch: n1 fails 20 of 25 (with the 3 before), n2 is fine.
    let r = client
        .report(vec![report("n1", 5, 14, 3), report("n2", 100, 1, 0)])
        .await
        .unwrap();
    let e = r.instances[0].ejected.clone().expect("n1 ejected");
    assert!(r.instances[1].ejected.is_none());
    assert_eq!((e.count, e.until_ms - e.since_ms), (1, 2000));
    assert!(e.reason.contains("20 of 25 calls failed"), "{}", e.reason);
    assert_eq!(
        r.instances[0].window.total(),
        25,
        "the window that ejected it"
    );

    // The instance says so (with wall-clock times beside), the passing view leaves it out.
    let all = client
        .raw(hyper::Method::GET, "/v1/services/web", None)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&all.body).unwrap();
    let n1 = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["node"] == "n1")
        .expect("n1 still listed")
        .clone();
    for k in ["reason", "since_ms", "since", "until_ms", "until", "count"] {
        assert!(!n1["ejected"][k].is_null(), "ejected.{k} in {n1}");
    }
    let passing = client.service_passing("web", true).await.unwrap();
    let nodes: BTreeSet<&str> = passing.instances.iter().map(|i| i.node.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["n0", "n2"]));
    let a = consul
        .raw(hyper::Method::GET, "/v1/health/service/web?passing", None)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let nodes: BTreeSet<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["Node"]["Node"].as_str())
        .collect();
    assert_eq!(nodes, BTreeSet::from(["n0", "n2"]), "{v}");
    let a = consul
        .raw(hyper::Method::GET, "/v1/health/service/web", None)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let check = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["Node"]["Node"] == "n1")
        .flat_map(|e| e["Checks"].as_array().unwrap().clone())
        .find(|c| c["CheckID"] == "shoal-outlier")
        .expect("a shoal-outlier check on n1");
    assert_eq!(check["Status"], "critical");
    let srv = dns_srv(&c, "web.service.shoal.");
    assert_eq!(srv.len(), 2, "{srv:?}");
    assert!(!srv.iter().any(|t| t.starts_with("n1.")), "{srv:?}");
    let text = client.metrics().await.unwrap();
    assert!(text.contains("shoal_outlier_ejections_total 1\n"), "{text}");
    assert!(
        text.contains("shoal_outlier_ejected_instances{service=\"web\"} 1\n"),
        "{text}"
    );

    // Over the stream: ejected, then restored no sooner than the back-off, nothing else.
    let seen = outlier_events(&mut w, Instant::now() + Duration::from_secs(8), |ts| {
        ts.iter().any(|t| t.action == OutlierAction::Restored)
    })
    .await;
    let actions: Vec<(&str, OutlierAction)> = seen
        .iter()
        .map(|(_, t)| (t.node.as_str(), t.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("n1", OutlierAction::Ejected),
            ("n1", OutlierAction::Restored)
        ]
    );
    // On the agent's clock: restored at the end of the back-off, by its timer (not late).
    let late = seen[1]
        .0
        .checked_sub(e.until_ms)
        .expect("not before the back-off ends");
    assert!(late < 1500, "restored {late} ms after the back-off ended");
    let passing = client.service_passing("web", true).await.unwrap();
    assert_eq!(passing.instances.len(), 3);
    assert_eq!(dns_srv(&c, "web.service.shoal.").len(), 3);

    // Failing again: ejected for twice as long (4 s), then restored.
    let r = client.report(vec![report("n1", 0, 20, 0)]).await.unwrap();
    let e = r.instances[0].ejected.clone().expect("n1 ejected again");
    assert_eq!((e.count, e.until_ms - e.since_ms), (2, 4000));
    let seen = outlier_events(&mut w, Instant::now() + Duration::from_secs(10), |ts| {
        ts.iter().any(|t| t.action == OutlierAction::Restored)
    })
    .await;
    let actions: Vec<OutlierAction> = seen.iter().map(|(_, t)| t.action).collect();
    assert_eq!(
        actions,
        vec![OutlierAction::Ejected, OutlierAction::Restored]
    );
    let late = seen[1]
        .0
        .checked_sub(e.until_ms)
        .expect("not before the back-off ends");
    assert!(late < 1500, "restored {late} ms after the back-off ended");

    // The alert hook was run for each, in order.
    let log = c.dir.path().join("alerts.log");
    // (Only the outlier runs: a guard transition would run the hook too.)
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("outlier"))
            .map(str::to_string)
            .collect()
    };
    wait_until(Duration::from_secs(10), "four alert hook runs", || {
        lines().len() >= 4
    })
    .await;
    assert_eq!(
        lines(),
        [
            "outlier ejected n1",
            "outlier restored n1",
            "outlier ejected n1",
            "outlier restored n1"
        ]
    );

    // Local only: the other agents never ejected anything.
    for rx in &mut others {
        while let Ok(ev) = rx.try_recv() {
            assert!(
                !matches!(ev.kind, EventKind::Outlier(_)),
                "another agent ejected: {ev:?}"
            );
        }
    }

    // A report is a command: with an API token set, it needs the token.
    c.shared[0].api_token.set("s3cret".into()).unwrap();
    let (got, text) = status_and_body(
        &client,
        r#"{"reports":[{"service":"web","node":"n1","error":1}]}"#,
    )
    .await;
    assert_eq!(got, 401, "{text}");
    let body = r#"{"reports":[{"service":"web","node":"n1","error":1}]}"#;
    let req = format!(
        "POST /v1/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_unix(&c.api_socket(0), &req).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    c.stop().await;
}

async fn raw_unix(path: &std::path::Path, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(path)
        .await
        .expect("connect");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Every instance fails, reported again and again for 12 s: never more than the cap (2 of 4
/// at ratio 0.5) is ejected at any point of the watch stream; the cap is used and reported.
#[tokio::test]
async fn the_cap_holds_when_every_instance_fails() {
    let n = 4;
    let (c, client) = start(n, 0.5).await;
    let mut w = open_watch(&client).await;
    let reporter = {
        let client = c.client(0);
        tokio::spawn(async move {
            for _ in 0..60 {
                let batch = (0..4).map(|i| report(&format!("n{i}"), 0, 25, 0)).collect();
                client.report(batch).await.expect("report");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let seen = outlier_events(&mut w, Instant::now() + Duration::from_secs(12), |_| false).await;
    reporter.await.unwrap();
    let mut ejected: BTreeSet<String> = BTreeSet::new();
    let mut most = 0;
    let mut capped = 0;
    for (_, t) in &seen {
        match t.action {
            OutlierAction::Ejected => {
                assert!(ejected.insert(t.node.clone()), "{} ejected twice", t.node);
            }
            OutlierAction::Restored => {
                assert!(ejected.remove(&t.node), "{} restored, not ejected", t.node);
            }
            OutlierAction::Capped => capped += 1,
        }
        assert!(
            ejected.len() <= 2,
            "{ejected:?} ejected at once (cap 2 of {n})"
        );
        most = most.max(ejected.len());
    }
    assert_eq!(most, 2, "the cap is used: {seen:?}");
    assert!(
        capped >= 2,
        "the instances over the cap are reported: {seen:?}"
    );
    // And the passing view kept the other half the whole time (read at the end).
    let passing = client.service_passing("web", true).await.unwrap();
    assert!(passing.instances.len() >= 2);
    c.stop().await;
}

async fn cli(
    c: &Cluster,
    cmd: shoal::cli::ClientCommand,
    format: shoal::cli::Format,
) -> (bool, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = shoal::cli::run_with(
        shoal::cli::ClientArgs {
            api: format!("unix:{}", c.api_socket(0).display()),
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

/// Through the CLI, as a script would: `shoal report web n2 --error 20 --success 5` ejects
/// n2 (`shoal services web` says so), and the stream shows its restoration after 2 s.
#[tokio::test]
async fn the_cli_reports_eject_and_the_ejection_ends() {
    use shoal::cli::report::ReportArgs;
    use shoal::cli::{ClientCommand, Format};
    let (c, client) = start(3, 0.5).await;
    let mut w = open_watch(&client).await;
    let args = |node: &str, success, error, timeout| {
        ClientCommand::Report(ReportArgs {
            id: None,
            service: "web".into(),
            node: node.into(),
            success,
            error,
            timeout,
        })
    };
    let (ok, out) = cli(&c, args("n2", 0, 0, 0), Format::Table).await;
    assert!(!ok && out.contains("nothing to report"), "{out}");
    let (ok, out) = cli(&c, args("n9", 0, 1, 0), Format::Table).await;
    assert!(!ok && out.contains("no instance"), "{out}");
    let (ok, out) = cli(&c, args("n2", 1, 2, 0), Format::Table).await;
    assert!(
        ok && out.contains("EJECTED") && out.contains(" no"),
        "{out}"
    );
    let (ok, out) = cli(&c, args("n2", 5, 15, 3), Format::Json).await;
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["instances"][0]["ejected"]["count"], 1, "{v}");
    let (_, out) = cli(
        &c,
        ClientCommand::Services {
            name: Some("web".into()),
            passing: false,
        },
        Format::Table,
    )
    .await;
    assert!(
        out.contains("EJECTED n2 of web") && out.contains("(ejected)"),
        "{out}"
    );
    let seen = outlier_events(&mut w, Instant::now() + Duration::from_secs(8), |ts| {
        ts.iter().any(|t| t.action == OutlierAction::Restored)
    })
    .await;
    let actions: Vec<(&str, OutlierAction)> = seen
        .iter()
        .map(|(_, t)| (t.node.as_str(), t.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("n2", OutlierAction::Ejected),
            ("n2", OutlierAction::Restored)
        ]
    );
    let until = v["instances"][0]["ejected"]["until_ms"].as_u64().unwrap();
    let late = seen[1]
        .0
        .checked_sub(until)
        .expect("not before the back-off ends");
    assert!(late < 1500, "restored {late} ms after the back-off ended");
    c.stop().await;
}
