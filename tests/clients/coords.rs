//! Network coordinates with real agents: two racks on loopback, the second one 15 ms away
//! each way (the transport's test-only per-destination delay, `Faults::delay`). Each agent
//! estimates round trips from its own probes; the test checks what a user sees: `shoal rtt`
//! through the CLI, `/v1/coordinates` through the API, Consul's `/v1/coordinate/nodes` and
//! `?near=` ordering, and DNS answers nearest first.

use super::dns::query;
use super::*;
use common::cli_at;
use hickory_proto::rr::{RData, RecordType};
use shoal::cli::{coords::RttArgs, ClientCommand, Format};

/// One-way delay added between the racks {n0, n1} and {n2, n3}.
const CROSS: Duration = Duration::from_millis(15);

fn rack(i: usize) -> usize {
    i / 2
}

fn web(port: u16) -> Spec {
    Spec {
        tags: vec![],
        services: vec![("web", port, vec![])],
    }
}

/// `shoal rtt` through the CLI: the estimate in ms it prints.
async fn cli_rtt(c: &Cluster, a: &str, b: Option<&str>) -> (bool, String, f64) {
    let (ok, out) = cli_at(
        &c.api_socket(0),
        Format::Table,
        ClientCommand::Rtt(RttArgs {
            a: a.into(),
            b: b.map(str::to_string),
        }),
    )
    .await;
    let ms = out
        .split("rtt: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    (ok, out, ms)
}

fn nodes_of(v: &serde_json::Value, path: &[&str]) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            let mut x = e;
            for p in path {
                x = &x[*p];
            }
            x.as_str().expect("a node name").to_string()
        })
        .collect()
}

fn first_two_sorted(v: &[String]) -> Vec<String> {
    let mut f = v[..2].to_vec();
    f.sort();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_estimated_and_answers_nearest_first() {
    let specs: Vec<Spec> = (0..4).map(|i| web(8080 + i as u16)).collect();
    let mut c = start(&specs).await;
    for i in 0..4 {
        for j in 0..4 {
            if rack(i) != rack(j) {
                c.shared[i].faults.delay(c.addrs[j], CROSS);
            }
        }
    }
    c.converge(SETTLE).await;
    // Each agent's own probes (to its peers) and its coordinates (between two others): the
    // other rack ~30 ms away, a rack mate under a few ms.
    let settled = |c: &Cluster| {
        (0..4).all(|at| {
            let node = c.shared[at].lock();
            (0..4).all(|i| {
                (0..4).filter(|j| *j != i).all(|j| {
                    node.rtt_between(&name(i), &name(j)).is_some_and(|e| {
                        if rack(i) == rack(j) {
                            e.rtt_us < 5_000
                        } else {
                            (20_000..=45_000).contains(&e.rtt_us)
                        }
                    })
                })
            })
        })
    };
    wait_until(Duration::from_secs(120), "estimates settle", || settled(&c)).await;

    // The CLI: from this agent, and between two others.
    c.serve_api(0).await;
    let (ok, out, ms) = cli_rtt(&c, "n2", None).await;
    assert!(ok && (20.0..=45.0).contains(&ms), "{out}");
    assert!(out.contains("n0 <-> n2"), "{out}");
    let (ok, out, ms) = cli_rtt(&c, "n1", Some("n3")).await;
    assert!(ok && (20.0..=45.0).contains(&ms), "{out}");
    let (ok, out, ms) = cli_rtt(&c, "n2", Some("n3")).await;
    assert!(ok && ms < 5.0, "{out}");
    let (ok, out, _) = cli_rtt(&c, "nobody", None).await;
    assert!(!ok && out.contains("no coordinate"), "{out}");

    // The API: every coordinate, this agent's first.
    let coords = c.client(0).coordinates().await.expect("coordinates");
    assert_eq!(coords.node, "n0");
    let names: Vec<&str> = coords.coordinates.iter().map(|x| x.node.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(names[0], "n0");
    assert!(coords.coordinates.iter().all(|x| x.coord.vec.len() == 8));

    // Consul: /v1/coordinate/nodes in Consul's shape, and ?near= ordering.
    let consul = c.consul_addr(0);
    let a = get(consul, "/v1/coordinate/nodes").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(nodes_of(&v, &["Node"]), vec!["n0", "n1", "n2", "n3"]);
    for e in v.as_array().unwrap() {
        assert_eq!(e["Coord"]["Vec"].as_array().unwrap().len(), 8, "{e}");
        for k in ["Error", "Adjustment", "Height"] {
            assert!(e["Coord"][k].is_f64(), "{k} in {e}");
        }
    }
    let a = get(consul, "/v1/coordinate/node/n2").await;
    assert_eq!(nodes_of(&a.json(), &["Node"]), vec!["n2"]);
    assert_eq!(get(consul, "/v1/coordinate/node/nobody").await.status, 404);

    let health = |q: &'static str| async move {
        let a = get(consul, &format!("/v1/health/service/web{q}")).await;
        nodes_of(&a.json(), &["Node", "Node"])
    };
    // Without near: in name order, the far rack last only by chance of its names.
    assert_eq!(health("").await, vec!["n0", "n1", "n2", "n3"]);
    let near_far = health("?near=n3").await;
    assert_eq!(
        first_two_sorted(&near_far),
        vec!["n2", "n3"],
        "{near_far:?}"
    );
    let near_agent = health("?near=_agent").await;
    assert_eq!(first_two_sorted(&near_agent), vec!["n0", "n1"]);
    let a = get(consul, "/v1/catalog/service/web?near=n2").await;
    let catalog = nodes_of(&a.json(), &["Node"]);
    assert_eq!(first_two_sorted(&catalog), vec!["n2", "n3"], "{catalog:?}");
    // Asked of agent 3, `_agent` is n3.
    let a = get(c.consul_addr(3), "/v1/health/service/web?near=_agent").await;
    let from3 = nodes_of(&a.json(), &["Node", "Node"]);
    assert_eq!(first_two_sorted(&from3), vec!["n2", "n3"], "{from3:?}");

    // The local API's service lookup with ?near=.
    let a = c
        .client(0)
        .raw(hyper::Method::GET, "/v1/services/web?near=n2", None)
        .await
        .expect("service");
    let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    let local = nodes_of(&v["instances"], &["node"]);
    assert_eq!(first_two_sorted(&local), vec!["n2", "n3"], "{local:?}");

    // DNS, asked of agent 2: its rack first, whatever the rotation (several query ids).
    for _ in 0..6 {
        let r = query(
            c.dns_addr(2),
            "web.service.shoal.",
            RecordType::SRV,
            false,
            false,
        )
        .await;
        let order: Vec<String> = r
            .answers
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::SRV(s) => Some(s.target.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(order.len(), 4, "{order:?}");
        assert_eq!(
            first_two_sorted(&order),
            vec!["n2.node.shoal.", "n3.node.shoal."],
            "{order:?}"
        );
    }
    c.stop().await;
}
