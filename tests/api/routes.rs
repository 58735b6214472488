//! The routes' answers and errors: documented shapes, tags and services, JSON errors that say
//! what is wrong, metrics families, member filters, the guard routes, join, leave, commands
//! while shutting down, and form-encoded bodies.

use super::*;
use shoal::api::types::*;
use shoal::client::MemberQuery;
use shoal_core::ServedStatus;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn socket_is_private_and_answers_have_the_documented_shapes() {
    let f = fixture().await;
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode is {mode:o}");

    let (s, v) = raw_json(&f.client, "GET", "/v1/members", None).await;
    assert_eq!(s, 200);
    assert!(v["index"].is_u64());
    assert_eq!(v["guard"]["state"], "normal");
    let m = &v["members"][0];
    for key in ["name", "addr", "status", "tags", "services", "generation"] {
        assert!(m.get(key).is_some(), "member lacks {key}: {m}");
    }
    assert_eq!(m["name"], "n0");
    assert_eq!(m["addr"], "127.0.0.1:17001");
    assert_eq!(m["status"], "alive");
    assert_eq!(m["tags"]["role"], "test");

    let me = f.client.local().await.unwrap();
    assert_eq!(me.member.name, "n0");
    assert_eq!(me.stats.members["alive"], 1);
    assert_eq!(me.stats.members["down"], 0);

    let (s, v) = raw_json(&f.client, "GET", "/v1/services", None).await;
    assert_eq!(s, 200);
    assert!(v["services"].is_object() && v["guard"].is_object());
    let (s, v) = raw_json(&f.client, "GET", "/v1/services/nothing", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["service"], "nothing");
    assert_eq!(v["instances"], serde_json::json!([]));

    let (s, v) = raw_json(&f.client, "GET", "/v1/stats", None).await;
    assert_eq!(s, 200);
    for key in [
        "index",
        "guard",
        "counters",
        "backlog",
        "active_peers",
        "idle",
        "members",
    ] {
        assert!(v.get(key).is_some(), "stats lacks {key}: {v}");
    }

    let (s, v) = raw_json(&f.client, "GET", "/v1/members/n0", None).await;
    assert_eq!((s, v["member"]["name"].as_str()), (200, Some("n0")));
    expect_error(&f.client, "GET", "/v1/members/ghost", None, 404, "ghost").await;

    // Plain HTTP/1.1 over the socket, as curl --unix-socket would send it.
    let mut s = tokio::net::UnixStream::connect(&f.path).await.unwrap();
    s.write_all(b"GET /v1/self HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(STEP, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text
        .to_lowercase()
        .contains("content-type: application/json"));
}

#[tokio::test]
async fn tag_and_service_changes_show_up_in_self_and_services() {
    let f = fixture().await;
    let c = &f.client;
    let mut set = BTreeMap::new();
    set.insert("zone".to_string(), "eu-1".to_string());
    let r = c.set_tags(set, vec!["role".into()]).await.unwrap();
    assert_eq!(r.member.tags.get("zone").map(String::as_str), Some("eu-1"));
    assert!(!r.member.tags.contains_key("role"));
    assert_eq!(c.local().await.unwrap().member.tags.len(), 1);

    let r = c.delete_tag("zone").await.unwrap();
    assert!(r.member.tags.is_empty());
    expect_error(c, "DELETE", "/v1/tags/zone", None, 404, "zone").await;

    let svc = ServiceRequest {
        id: None,
        name: "web".into(),
        port: 8080,
        tags: [("proto".to_string(), "http".to_string())]
            .into_iter()
            .collect(),
        health: None,
        checks: Vec::new(),
    };
    let r = c.register_service(&svc).await.unwrap();
    assert_eq!(r.member.services.len(), 1);
    let all = c.services().await.unwrap();
    let web = &all.services["web"];
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].node, "n0");
    assert_eq!(web[0].addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(web[0].status, ServedStatus::Alive);
    let one = c.service("web", &["alive".into()]).await.unwrap();
    assert_eq!(one.instances.len(), 1);
    let none = c.service("web", &["held".into()]).await.unwrap();
    assert!(none.instances.is_empty());

    // Replace, then deregister.
    let svc2 = ServiceRequest {
        port: 9090,
        ..svc.clone()
    };
    c.register_service(&svc2).await.unwrap();
    assert_eq!(c.service("web", &[]).await.unwrap().instances[0].port, 9090);
    let r = c.deregister_service("web").await.unwrap();
    assert!(r.member.services.is_empty());
    assert!(c.services().await.unwrap().services.is_empty());
    assert!(c.local().await.unwrap().member.services.is_empty());
}

#[tokio::test]
async fn bad_requests_get_json_errors_that_say_what_is_wrong() {
    let f = fixture().await;
    let c = &f.client;
    expect_error(
        c,
        "GET",
        "/v1/members?name=(",
        None,
        400,
        "invalid name regex",
    )
    .await;
    expect_error(
        c,
        "GET",
        "/v1/members?tag=role=[",
        None,
        400,
        "invalid tag regex",
    )
    .await;
    expect_error(c, "GET", "/v1/members?tag=role", None, 400, "tag=KEY=REGEX").await;
    expect_error(
        c,
        "GET",
        "/v1/members?status=zombie",
        None,
        400,
        "unknown status",
    )
    .await;
    expect_error(
        c,
        "GET",
        "/v1/members?statsu=alive",
        None,
        400,
        "unknown query parameter",
    )
    .await;
    expect_error(c, "GET", "/v1/members?index=x", None, 400, "bad index").await;
    expect_error(
        c,
        "GET",
        "/v1/members?index=1&wait=forever",
        None,
        400,
        "bad wait",
    )
    .await;
    expect_error(
        c,
        "PUT",
        "/v1/tags",
        Some("{\"set\": "),
        400,
        "malformed JSON",
    )
    .await;
    expect_error(
        c,
        "PUT",
        "/v1/tags",
        Some("{\"sett\": {}}"),
        400,
        "unknown field",
    )
    .await;
    expect_error(c, "PUT", "/v1/tags", None, 400, "missing JSON body").await;
    expect_error(
        c,
        "PUT",
        "/v1/services",
        Some("{\"name\": \"x\"}"),
        400,
        "port",
    )
    .await;
    expect_error(
        c,
        "POST",
        "/v1/join",
        Some("{\"addrs\": []}"),
        400,
        "no address",
    )
    .await;

    // Over the metadata limits: 422 with the limit in the message.
    let long = format!("{{\"set\": {{\"k\": \"{}\"}}}}", "v".repeat(300));
    expect_error(c, "PUT", "/v1/tags", Some(&long), 422, "limit").await;
    let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\": \"v\"")).collect();
    let many = format!("{{\"set\": {{{}}}}}", many.join(","));
    expect_error(c, "PUT", "/v1/tags", Some(&many), 422, "too many tags").await;
    expect_error(
        c,
        "PUT",
        "/v1/tags",
        Some("{\"set\": {\"bad key\": \"v\"}}"),
        422,
        "invalid",
    )
    .await;
    expect_error(
        c,
        "PUT",
        "/v1/services",
        Some("{\"name\": \"w\", \"port\": 0}"),
        422,
        "port 0",
    )
    .await;
    // Nothing of that was applied.
    assert_eq!(c.local().await.unwrap().member.tags.len(), 1);

    // Body over 64 KiB.
    let huge = format!("{{\"set\": {{\"k\": \"{}\"}}}}", "v".repeat(70 * 1024));
    expect_error(c, "PUT", "/v1/tags", Some(&huge), 413, "too large").await;

    expect_error(c, "GET", "/v1/nope", None, 404, "no route").await;
    expect_error(c, "DELETE", "/v1/services/ghost", None, 404, "ghost").await;
    expect_error(c, "DELETE", "/v1/members", None, 405, "not allowed").await;

    // The client turns them into typed errors.
    let e = c.deregister_service("ghost").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert!(e.to_string().contains("ghost"), "{e}");
}

#[tokio::test]
async fn metrics_expose_the_documented_families() {
    let f = fixture().await;
    let text = f.client.metrics().await.unwrap();
    for family in [
        "shoal_members",
        "shoal_datagrams_received_total",
        "shoal_datagrams_sent_total",
        "shoal_bytes_received_total",
        "shoal_bytes_sent_total",
        "shoal_datagrams_dropped_total",
        "shoal_guard_state",
        "shoal_guard_held_members",
        "shoal_active_peers",
        "shoal_event_index",
    ] {
        // OpenMetrics names a counter's family without its samples' `_total`.
        let family = family.strip_suffix("_total").unwrap_or(family);
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
    }
    assert!(text.contains("\nshoal_datagrams_received_total "), "{text}");
    assert!(
        text.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
    assert!(
        text.contains("shoal_members{status=\"alive\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("shoal_datagrams_dropped_total{reason=\"bad_magic\"} 0\n"));
    assert!(text.contains("shoal_guard_state{state=\"normal\"} 1\n"));
    assert!(text.contains("shoal_guard_state{state=\"frozen\"} 0\n"));
}

#[tokio::test]
async fn member_filters() {
    let f = fixture().await;
    let c = &f.client;
    let q = |status: &[&str], name: Option<&str>, tags: &[&str]| MemberQuery {
        status: status.iter().map(|s| s.to_string()).collect(),
        name: name.map(str::to_string),
        tags: tags.iter().map(|s| s.to_string()).collect(),
    };
    let n = |r: MembersResponse| r.members.len();
    assert_eq!(n(c.members(&q(&["alive"], None, &[])).await.unwrap()), 1);
    assert_eq!(
        n(c.members(&q(&["down,left"], None, &[])).await.unwrap()),
        0
    );
    assert_eq!(
        n(c.members(&q(&["held", "alive"], None, &[])).await.unwrap()),
        1
    );
    assert_eq!(n(c.members(&q(&[], Some("n.*"), &[])).await.unwrap()), 1);
    // Whole-name match, as in Serf.
    assert_eq!(n(c.members(&q(&[], Some("n"), &[])).await.unwrap()), 0);
    assert_eq!(
        n(c.members(&q(&[], None, &["role=te.*"])).await.unwrap()),
        1
    );
    assert_eq!(n(c.members(&q(&[], None, &["role=db"])).await.unwrap()), 0);
    assert_eq!(n(c.members(&q(&[], None, &["zone=.*"])).await.unwrap()), 0);
}

#[tokio::test]
async fn guard_routes_answer_with_a_report() {
    let f = fixture().await;
    let g = f.client.guard().await.unwrap();
    assert_eq!(g.guard.state, shoal_core::GuardState::Normal);
    let (s, v) = raw_json(&f.client, "POST", "/v1/guard/freeze", None).await;
    assert_eq!(s, 200);
    for key in [
        "mode",
        "state",
        "since_ms",
        "reason",
        "held",
        "baseline",
        "escalated",
    ] {
        assert!(
            v["guard"].get(key).is_some(),
            "guard report lacks {key}: {v}"
        );
    }
    let t = f.client.guard_thaw().await.unwrap();
    assert!(!t.guard.reason.is_empty());
    expect_error(
        &f.client,
        "GET",
        "/v1/guard/freeze",
        None,
        405,
        "not allowed",
    )
    .await;
}

#[tokio::test]
async fn join_resolves_and_reports_what_it_could_not() {
    let f = fixture().await;
    let r = f
        .client
        .join(vec![
            "127.0.0.1:17999".into(),
            "localhost:17998".into(),
            "noport".into(),
        ])
        .await
        .unwrap();
    assert!(
        r.announced.contains(&"127.0.0.1:17999".parse().unwrap()),
        "{r:?}"
    );
    assert!(r.announced.iter().any(|a| a.port() == 17998), "{r:?}");
    assert_eq!(r.unresolved.len(), 1);
    assert_eq!(r.unresolved[0].addr, "noport");
    assert!(r.unresolved[0].error.contains("port"));
}

#[tokio::test]
async fn leave_returns_once_flushed_then_commands_conflict() {
    let f = fixture().await;
    let r = tokio::time::timeout(STEP, f.client.leave())
        .await
        .unwrap()
        .unwrap();
    assert!(r.left);
    assert!(
        r.flushed,
        "the test loop signals flushed after each wake-up"
    );
    assert_eq!(
        f.client.local().await.unwrap().member.status,
        ServedStatus::Left
    );
    expect_error(
        &f.client,
        "PUT",
        "/v1/tags",
        Some("{\"set\": {\"a\": \"b\"}}"),
        409,
        "left",
    )
    .await;
    expect_error(
        &f.client,
        "POST",
        "/v1/join",
        Some("{\"addrs\": [\"127.0.0.1:1\"]}"),
        409,
        "left",
    )
    .await;
}

#[tokio::test]
async fn commands_are_refused_while_shutting_down() {
    let f = fixture().await;
    f.shared
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    expect_error(
        &f.client,
        "PUT",
        "/v1/tags",
        Some("{}"),
        503,
        "shutting down",
    )
    .await;
    // Reads still answer.
    assert!(f.client.local().await.is_ok());
}

#[tokio::test]
async fn curl_style_form_content_type_is_accepted_as_json() {
    let f = fixture().await;
    let body = r#"{"set": {"via": "curl"}}"#;
    let req = format!(
        "PUT /v1/tags HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::UnixStream::connect(&f.path).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(STEP, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let me = f.client.local().await.unwrap().member;
    assert_eq!(me.tags.get("via").map(String::as_str), Some("curl"));
}
