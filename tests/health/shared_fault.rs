//! The health guard across agents: a few failing instances leave the passing view at once,
//! many failing together are held there (marked, with the reason) in shoal's API, Consul's and
//! DNS; a critical instance that is not held leaves DNS answers.

use super::*;
use shoal::client::Client;
use shoal_core::Health;
use std::time::Duration;

/// A few instances failing are removed from the passing view at once; many failing together
/// are held there (marked, with the reason), on every agent, in shoal's API, Consul's and DNS.
#[tokio::test]
async fn mass_failure_held_small_failure_removed() {
    let n = 5;
    let mut rig = Rig::start(n).await;
    let consul = rig.c.serve_consul(0).await;
    let consul_client = Client::parse(&format!("http://{consul}")).unwrap();
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
        "n1 out of the passing view everywhere",
        || {
            (0..n).all(|o| {
                let p = passing(&rig, o);
                p.len() == n - 1 && p.iter().all(|(node, held)| node != "n1" && !held)
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
    wait_until(Duration::from_secs(5), "n1..n3 critical everywhere", || {
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
    let held = v.instances.iter().find(|i| i.node == "n2").unwrap();
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
        .find(|e| e["Node"]["Node"] == "n2")
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
    wait_until(Duration::from_secs(5), "n0 out of DNS", || {
        let v = dns_srv(&rig.shared[2], "q.service.shoal.");
        v.len() == 2 && !v.iter().any(|t| t.starts_with("n0."))
    })
    .await;
    rig.stop().await;
}
