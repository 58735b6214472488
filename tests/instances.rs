//! Several instances of a service on one node, on real agents on loopback: `web` on n1 twice
//! (ids `web-1` on 8080 through the API, `web-2` on 8081 through the CLI); the other agents
//! serve both, in their served view, their Consul API and their DNS SRV answers; deregistering
//! one by id leaves the other (a name with two instances is refused: ambiguous); and what is
//! left survives a restart of n1 (registrations.json).

mod common;

use common::{cli_at, wait_until, Cluster};
use shoal::api::types::ServiceRequest;
use shoal::cli::health::RegisterArgs;
use shoal::cli::{ClientCommand, Format};
use shoal::client::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// (id, port) of n1's instances of `web` in agent `i`'s served view.
fn served(c: &Cluster, i: usize) -> BTreeSet<(String, u16)> {
    c.shared[i]
        .lock()
        .services()
        .remove("web")
        .unwrap_or_default()
        .into_iter()
        .filter(|inst| inst.node == "n1")
        .map(|inst| (inst.id, inst.port))
        .collect()
}

fn set(v: &[(&str, u16)]) -> BTreeSet<(String, u16)> {
    v.iter().map(|(id, p)| (id.to_string(), *p)).collect()
}

/// Ports of `web`'s SRV answer from agent `i`'s DNS view.
fn srv_ports(c: &Cluster, i: usize) -> Vec<u16> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii("web.service.shoal.").unwrap(),
        RecordType::SRV,
    ));
    let r = shoal::dns::view(&c.shared[i].lock()).answer(&m, 0);
    let mut v: Vec<u16> = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// `ServiceID` -> `ServicePort` of `GET /v1/catalog/service/web` on a Consul API.
async fn consul_catalog(consul: &Client) -> BTreeMap<String, u64> {
    let a = consul
        .raw(hyper::Method::GET, "/v1/catalog/service/web", None)
        .await
        .expect("an answer");
    let v: serde_json::Value = serde_json::from_slice(&a.body).expect("JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            (
                e["ServiceID"].as_str().unwrap_or("").to_string(),
                e["ServicePort"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn register_args(service: &str, id: &str) -> RegisterArgs {
    RegisterArgs {
        service: service.into(),
        id: Some(id.into()),
        tags: vec![],
        checks: vec![],
        http: None,
        tcp: None,
        ttl: None,
        interval: None,
        timeout: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_a_service_on_one_node() {
    let mut c = Cluster::start(3).await;
    c.converge(WAIT).await;
    let api = c.serve_api(1).await;
    let consul = c.serve_consul(0).await;
    let consul = Client::parse(&format!("http://{consul}")).unwrap();

    // web-1 through the API, web-2 through the CLI.
    api.register_service(&ServiceRequest {
        id: Some("web-1".into()),
        name: "web".into(),
        port: 8080,
        tags: BTreeMap::new(),
        health: None,
        checks: vec![],
    })
    .await
    .expect("web-1 registered");
    let (ok, out) = cli_at(
        &c.api_socket(1),
        Format::Table,
        ClientCommand::Register(register_args("web:8081", "web-2")),
    )
    .await;
    assert!(ok, "shoal register web:8081 --id web-2: {out}");
    // An id outside Consul's rule is refused.
    let (ok, out) = cli_at(
        &c.api_socket(1),
        Format::Table,
        ClientCommand::Register(register_args("web:8081", "web 2")),
    )
    .await;
    assert!(
        !ok && out.contains("instance id"),
        "a bad id is refused: {out}"
    );

    let both = set(&[("web-1", 8080), ("web-2", 8081)]);
    for i in [0, 2] {
        wait_until(WAIT, "the other agents serve both instances", || {
            served(&c, i) == both
        })
        .await;
    }
    assert_eq!(
        srv_ports(&c, 0),
        vec![8080, 8081],
        "one SRV record per instance"
    );
    assert_eq!(
        consul_catalog(&consul).await,
        BTreeMap::from([("web-1".to_string(), 8080), ("web-2".to_string(), 8081)]),
        "Consul's ServiceID is the instance id"
    );
    let a = consul
        .raw(hyper::Method::GET, "/v1/catalog/node/n1", None)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["Services"]["web-2"]["ID"], "web-2", "{v}");
    assert_eq!(v["Services"]["web-2"]["Service"], "web", "{v}");
    // The local API lists each instance with its id.
    let r = c.client(1).service("web", &[]).await.unwrap();
    let ids: BTreeSet<&str> = r.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["web-1", "web-2"]));

    // By name, ambiguous: refused, nothing changes.
    let a = api
        .raw(hyper::Method::DELETE, "/v1/services/web", None)
        .await
        .unwrap();
    assert_eq!(
        a.status.as_u16(),
        409,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(String::from_utf8_lossy(&a.body).contains("web-1, web-2"));
    // By id: the other instance stays.
    let (ok, out) = cli_at(
        &c.api_socket(1),
        Format::Table,
        ClientCommand::Deregister {
            name: "web-1".into(),
        },
    )
    .await;
    assert!(ok, "shoal deregister web-1: {out}");
    let left = set(&[("web-2", 8081)]);
    for i in [0, 2] {
        wait_until(WAIT, "web-2 alone is served", || served(&c, i) == left).await;
    }
    assert_eq!(srv_ports(&c, 0), vec![8081]);

    // A restart of n1 (same data directory): web-2 is still registered, and served.
    let generation = c.shared[0]
        .lock()
        .member("n1")
        .map(|m| m.generation)
        .unwrap();
    c.kill(1).await;
    c.restart(1).await;
    assert_eq!(
        c.shared[1]
            .lock()
            .own_meta()
            .services
            .keys()
            .collect::<Vec<_>>(),
        vec!["web-2"],
        "n1 restores its registrations before its first gossip"
    );
    wait_until(WAIT, "n0 serves n1's new life with web-2", || {
        let node = c.shared[0].lock();
        node.member("n1").is_some_and(|m| m.generation > generation) && {
            drop(node);
            served(&c, 0) == left
        }
    })
    .await;
    c.stop().await;
}
