//! The Consul-compatible API, field by field, with its filters, headers, errors and blocking
//! queries; and fail-static carried through it.

use super::*;
use serde_json::Value;

pub fn specs() -> Vec<Spec> {
    vec![
        Spec {
            tags: vec![("zone", "a")],
            services: vec![
                ("web", 8080, vec![("version", "2"), ("primary", "")]),
                ("db", 5432, vec![("role", "primary")]),
            ],
        },
        Spec {
            tags: vec![("zone", "b")],
            services: vec![("web", 8081, vec![("version", "1")])],
        },
        Spec {
            tags: vec![("zone", "b")],
            services: vec![("web", 8082, vec![])],
        },
    ]
}

fn index_of(a: &Answer) -> u64 {
    a.header("x-consul-index")
        .expect("X-Consul-Index")
        .parse()
        .expect("a numeric X-Consul-Index")
}

fn check_headers(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(index_of(a) > 0, "X-Consul-Index is never 0");
    assert_eq!(a.header("x-consul-knownleader"), Some("true"));
    assert_eq!(a.header("x-consul-lastcontact"), Some("0"));
    assert_eq!(a.header("content-type"), Some("application/json"));
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} is not a string in {v}"))
}

/// The Node object as Consul's clients read it.
fn check_node(n: &Value, name: &str) {
    let i: usize = name[1..].parse().unwrap();
    assert_eq!(str_of(n, "Node"), name);
    assert_eq!(str_of(n, "Address"), ip(i));
    assert_eq!(str_of(n, "Datacenter"), "dc1");
    assert_eq!(str_of(n, "ID").len(), 36, "a UUID-shaped ID");
    assert_eq!(str_of(&n["TaggedAddresses"], "lan"), ip(i));
    assert_eq!(str_of(&n["TaggedAddresses"], "wan"), ip(i));
    let zone = if i == 0 { "a" } else { "b" };
    assert_eq!(n["Meta"], serde_json::json!({ "zone": zone }));
    assert!(n["CreateIndex"].as_u64().is_some() && n["ModifyIndex"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_answers_field_by_field() {
    let c = start(&specs()).await;
    c.converge_fully(SETTLE).await;
    let a = c.consul_addr(0);

    // /v1/agent/self: what Prometheus reads first (Config.Datacenter).
    let r = get(a, "/v1/agent/self").await;
    check_headers(&r);
    let v = r.json();
    assert_eq!(str_of(&v["Config"], "Datacenter"), "dc1");
    assert_eq!(str_of(&v["Config"], "NodeName"), "n0");
    assert_eq!(str_of(&v["Member"], "Name"), "n0");
    assert_eq!(str_of(&v["Member"], "Addr"), "127.0.0.1");
    assert_eq!(v["Member"]["Status"], 1);
    for (k, x) in v.as_object().unwrap() {
        assert!(
            x.is_object(),
            "agent/self.{k} must be an object (Go clients decode a map of maps)"
        );
    }

    // /v1/catalog/services: name -> union of tags.
    let r = get(a, "/v1/catalog/services").await;
    check_headers(&r);
    assert_eq!(
        r.json(),
        serde_json::json!({
            "db": ["role=primary"],
            "web": ["primary", "version=1", "version=2"],
        })
    );
    let r = get(a, "/v1/catalog/services?node-meta=zone:b").await;
    assert_eq!(r.json(), serde_json::json!({ "web": ["version=1"] }));

    // /v1/catalog/service/web: Consul's flat CatalogService.
    let r = get(a, "/v1/catalog/service/web").await;
    check_headers(&r);
    let v = r.json();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3);
    for (i, it) in items.iter().enumerate() {
        assert_eq!(str_of(it, "Node"), name(i));
        assert_eq!(str_of(it, "Address"), ip(i));
        assert_eq!(str_of(it, "Datacenter"), "dc1");
        assert_eq!(str_of(it, "ServiceID"), "web");
        assert_eq!(str_of(it, "ServiceName"), "web");
        assert_eq!(str_of(it, "ServiceAddress"), ip(i));
        assert_eq!(it["ServicePort"], 8080 + i as u64);
        assert_eq!(str_of(&it["TaggedAddresses"], "lan"), ip(i));
        assert!(it["NodeMeta"]["zone"].is_string());
    }
    assert_eq!(
        items[0]["ServiceTags"],
        serde_json::json!(["primary", "version=2"])
    );
    assert_eq!(
        items[0]["ServiceMeta"],
        serde_json::json!({"primary": "", "version": "2"})
    );
    let r = get(a, "/v1/catalog/service/web?tag=version%3D1").await;
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(str_of(&v[0], "Node"), "n1");
    let r = get(a, "/v1/catalog/service/nothing").await;
    check_headers(&r);
    assert_eq!(r.json(), serde_json::json!([]));

    // /v1/catalog/nodes and /v1/catalog/node/{node}.
    let r = get(a, "/v1/catalog/nodes").await;
    check_headers(&r);
    let v = r.json();
    let nodes = v.as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for (i, n) in nodes.iter().enumerate() {
        check_node(n, &name(i));
    }
    let r = get(a, "/v1/catalog/nodes?node-meta=zone:a").await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = get(a, "/v1/catalog/node/n0").await;
    check_headers(&r);
    let v = r.json();
    check_node(&v["Node"], "n0");
    assert_eq!(str_of(&v["Services"]["web"], "Service"), "web");
    assert_eq!(v["Services"]["web"]["Port"], 8080);
    assert_eq!(
        v["Services"]["db"]["Tags"],
        serde_json::json!(["role=primary"])
    );
    assert_eq!(get(a, "/v1/catalog/node/nobody").await.json(), Value::Null);

    // /v1/health/service/web: [{Node, Service, Checks}].
    let r = get(a, "/v1/health/service/web").await;
    check_headers(&r);
    let v = r.json();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for (i, e) in entries.iter().enumerate() {
        check_node(&e["Node"], &name(i));
        let s = &e["Service"];
        assert_eq!(str_of(s, "ID"), "web");
        assert_eq!(str_of(s, "Service"), "web");
        assert_eq!(str_of(s, "Address"), ip(i));
        assert_eq!(s["Port"], 8080 + i as u64);
        assert!(s["Tags"].is_array() && s["Meta"].is_object());
        let checks = e["Checks"].as_array().unwrap();
        assert_eq!(checks.len(), 1);
        assert_eq!(str_of(&checks[0], "CheckID"), "serfHealth");
        assert_eq!(str_of(&checks[0], "Status"), "passing");
        assert_eq!(str_of(&checks[0], "ServiceID"), "");
        assert_eq!(str_of(&checks[0], "Node"), name(i));
        assert!(checks[0]["Output"].is_string());
    }
    assert_eq!(
        entries[1]["Service"]["Tags"],
        serde_json::json!(["version=1"])
    );
    assert_eq!(
        entries[1]["Service"]["Meta"],
        serde_json::json!({"version": "1"})
    );
    // Filters: tag (repeatable, all must match), node-meta, passing.
    let count = |r: Answer| r.json().as_array().unwrap().len();
    assert_eq!(
        count(get(a, "/v1/health/service/web?tag=primary&tag=version%3D2").await),
        1
    );
    assert_eq!(
        count(get(a, "/v1/health/service/web?tag=primary&tag=version%3D1").await),
        0
    );
    assert_eq!(
        count(get(a, "/v1/health/service/web?node-meta=zone:b").await),
        2
    );
    assert_eq!(count(get(a, "/v1/health/service/web?passing").await), 3);
    assert_eq!(
        count(get(a, "/v1/health/service/web?passing=1&dc=dc1").await),
        3
    );
    assert_eq!(
        get(a, "/v1/health/service/web?dc=elsewhere").await.status,
        500
    );

    // Errors: 404 JSON for unknown routes, 405 JSON pointing at shoal's API for writes.
    let r = get(a, "/v1/kv/some/key").await;
    assert_eq!(r.status, 404);
    assert!(str_of(&r.json(), "error").contains("/v1/health/service"));
    for (m, p) in [
        ("PUT", "/v1/agent/service/register"),
        ("PUT", "/v1/catalog/register"),
        ("PUT", "/v1/catalog/services"),
        ("DELETE", "/v1/health/service/web"),
    ] {
        let r = http(a, m, p, Duration::from_secs(5)).await;
        assert_eq!(r.status, 405, "{m} {p}");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            msg.contains("read-only") && msg.contains("PUT /v1/services"),
            "{msg}"
        );
    }

    // Blocking query: waits while nothing changes (at least most of `wait`), answers with a
    // higher index as soon as the answer changes.
    let before = get(a, "/v1/health/service/web").await;
    let idx = index_of(&before);
    let t0 = Instant::now();
    let r = http(
        a,
        "GET",
        &format!("/v1/health/service/web?index={idx}&wait=300ms"),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "a blocking query waits"
    );
    assert_eq!(index_of(&r), idx, "nothing changed: same index");

    let path = format!("/v1/health/service/web?index={idx}&wait=2m");
    let pending = tokio::spawn(async move { http(a, "GET", &path, Duration::from_secs(30)).await });
    holds_for(
        Duration::from_millis(100),
        "the blocking query waits for a change",
        || !pending.is_finished(),
    )
    .await;
    let shared1 = c.shared[1].clone();
    shared1
        .with_node(|n, now| {
            n.register_service(
                now,
                shoal_core::Service {
                    name: "web".into(),
                    port: 9091,
                    tags: [("version".to_string(), "3".to_string())].into(),
                    health: None,
                    health_output: None,
                },
            )
        })
        .expect("register");
    // n0 learns n1's new record: the blocked answer comes back with it. (Other changes may
    // wake it first: Consul clients loop until the data they want is there, so do we.)
    let mut r = pending.await.expect("query task");
    for _ in 0..20 {
        let i = index_of(&r);
        assert!(i > idx, "a changed answer has a higher index ({i} > {idx})");
        if r.json()[1]["Service"]["Port"] == 9091 {
            break;
        }
        r = http(
            a,
            "GET",
            &format!("/v1/health/service/web?index={i}&wait=5s"),
            Duration::from_secs(10),
        )
        .await;
    }
    assert_eq!(r.json()[1]["Service"]["Port"], 9091);
    assert_eq!(
        r.json()[1]["Service"]["Tags"],
        serde_json::json!(["version=3"])
    );
}

/// What a Consul client sees on an agent that is cut off, and for a crashed member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_and_dns_carry_fail_static() {
    let mut c = start(&specs()).await;
    c.converge_fully(SETTLE).await;
    let a = c.consul_addr(0);

    // One crash in a healthy cluster: removed as without a guard -> critical in Consul,
    // filtered out by `passing`, absent from DNS.
    c.kill(2).await;
    wait_until(REACT, "n0 serves n2 down", || {
        c.status(0, &name(2)) == Some(ServedStatus::Down)
    })
    .await;
    let v = get(a, "/v1/health/service/web").await.json();
    let e2 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Node"]["Node"] == "n2")
        .expect("a crashed node stays in the catalog, critical");
    assert_eq!(e2["Checks"][0]["CheckID"], "serfHealth");
    assert_eq!(e2["Checks"][0]["Status"], "critical");
    let passing = get(a, "/v1/health/service/web?passing").await.json();
    let names: Vec<&str> = passing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["n0", "n1"]);
    let ips = super::dns::a_records(c.dns_addr(0), "web.service.shoal.").await;
    assert_eq!(ips, vec!["127.0.0.1", "127.0.0.2"]);

    // n0 is cut off from n1: it is the isolated one, so it keeps serving n1, held, and a
    // Consul client still gets n1's instance as passing, with a check that says why.
    c.isolate(0);
    wait_until(REACT, "n0 holds n1", || {
        c.status(0, &name(1)) == Some(ServedStatus::Held)
    })
    .await;
    assert_ne!(c.guard(0).state, GuardState::Normal);
    let v = get(a, "/v1/health/service/web?passing").await.json();
    let e1 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Node"]["Node"] == "n1")
        .expect("the held instance is still served, passing");
    let check = &e1["Checks"][0];
    assert_eq!(check["CheckID"], "shoal-guard");
    assert_eq!(check["Status"], "passing");
    assert!(
        check["Output"].as_str().unwrap().contains("held"),
        "{check}"
    );
    assert_eq!(
        get(a, "/v1/agent/self").await.header("x-shoal-guard"),
        Some(c.guard(0).state.as_str())
    );
    // DNS answers from the same served view: the held instance is in it. (Whether the
    // crashed n2 is held again now is the guard's call; DNS must simply agree with it.)
    let ips = super::dns::a_records(c.dns_addr(0), "web.service.shoal.").await;
    assert!(
        ips.contains(&"127.0.0.2".to_string()),
        "DNS serves the held instance too: {ips:?}"
    );
    let served: Vec<String> = {
        let mut v: Vec<String> = c.shared[0].lock().services()["web"]
            .iter()
            .map(|i| i.addr.ip().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ips, served, "DNS answers what the served view serves");
}

/// Consul's Python client (Debian's `python3-consul`) reads the catalog, the health of a
/// service with its filters, and makes a blocking query, against shoal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_consul_client_reads_shoal() {
    let test = "python_consul_client_reads_shoal";
    let py = std::path::Path::new("/usr/bin/python3");
    let has_lib = py.is_file()
        && std::process::Command::new(py)
            .args(["-c", "import consul"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !has_lib {
        assert!(
            !required(),
            "python3-consul is required (SHOAL_REQUIRE_CLIENTS=1) but missing"
        );
        eprintln!("SKIPPED {test}: Debian's python3-consul is not installed");
        return;
    }
    let c = start(&specs()).await;
    c.converge_fully(SETTLE).await;
    let port = c.consul_addr(0).port().to_string();
    let script = r#"
import consul, json, sys, time
c = consul.Consul(host="127.0.0.1", port=int(sys.argv[1]))
dc = c.agent.self()["Config"]["Datacenter"]
idx, services = c.catalog.services()
hidx, nodes = c.health.service("web", passing=True)
_, tagged = c.health.service("web", tag="primary")
t0 = time.time()
bidx, _ = c.health.service("web", index=hidx, wait="1s")
waited = time.time() - t0
print(json.dumps({
    "dc": dc,
    "index": int(idx),
    "services": services,
    "web": sorted([(n["Node"]["Node"], n["Node"]["Address"], n["Service"]["Port"],
                    [ch["Status"] for ch in n["Checks"]]) for n in nodes]),
    "tagged": [n["Node"]["Node"] for n in tagged],
    "blocked_same_index": int(bidx) == int(hidx),
    "waited": waited,
}))
"#;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("/usr/bin/python3")
            .args(["-c", script, &port])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python-consul failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    assert_eq!(v["dc"], "dc1");
    assert!(v["index"].as_u64().unwrap() > 0);
    assert_eq!(
        v["services"],
        serde_json::json!({"db": ["role=primary"], "web": ["primary", "version=1", "version=2"]})
    );
    assert_eq!(
        v["web"],
        serde_json::json!([
            ["n0", "127.0.0.1", 8080, ["passing"]],
            ["n1", "127.0.0.2", 8081, ["passing"]],
            ["n2", "127.0.0.3", 8082, ["passing"]],
        ])
    );
    assert_eq!(v["tagged"], serde_json::json!(["n0"]));
    assert_eq!(v["blocked_same_index"], true);
    assert!(
        v["waited"].as_f64().unwrap() >= 0.8,
        "the blocking query waited: {v}"
    );
}
