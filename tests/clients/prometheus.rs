//! A real Prometheus-compatible scraper with `consul_sd_configs` pointed at one agent's
//! Consul-compatible API discovers every registered instance as a target, scrapes them, and
//! keeps every one of them while that agent is cut off from the others. Prometheus itself
//! when it has Consul SD; Debian's build does not, so then VictoriaMetrics (Debian's
//! `victoria-metrics`, the same scrape config, its own Consul client).

use super::*;
use serde_json::Value;
use shoal::api::{ApiHandle, ApiOptions};
use std::collections::BTreeSet;
use std::process::Stdio;

/// How long Prometheus may take to start and discover the targets (its discovery manager
/// batches updates every 5 s).
const DISCOVER: Duration = Duration::from_secs(60);

struct Prometheus {
    child: tokio::process::Child,
    web: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().unwrap().port()
}

/// Which Prometheus-compatible scraper runs the `consul_sd_configs` job.
enum Scraper {
    Prometheus(std::path::PathBuf),
    /// Debian's `prometheus` 2.42 is built without Consul service discovery ("Disable
    /// Consul SD until its Debian package is back in shape"); VictoriaMetrics (Debian's
    /// `victoria-metrics`) reads the same `consul_sd_configs` with its own Consul client.
    VictoriaMetrics(std::path::PathBuf),
}

fn config_text(consul: SocketAddr) -> String {
    [
        "global:".to_string(),
        "  scrape_interval: 1s".to_string(),
        "  scrape_timeout: 1s".to_string(),
        "scrape_configs:".to_string(),
        "  - job_name: shoal".to_string(),
        "    consul_sd_configs:".to_string(),
        format!("      - server: '{consul}'"),
        "        refresh_interval: 1s".to_string(),
        String::new(),
    ]
    .join("\n")
}

/// Prometheus when it supports `consul_sd_configs` (checked with `promtool check config`),
/// otherwise VictoriaMetrics; `None` (with a visible message) when neither can run it.
fn pick_scraper(test: &str) -> Option<Scraper> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("check.yml");
    std::fs::write(&cfg, config_text("127.0.0.1:8500".parse().unwrap())).unwrap();
    if let (Some(bin), Some(promtool)) = (which("prometheus"), which("promtool")) {
        let ok = std::process::Command::new(promtool)
            .args(["check", "config"])
            .arg(&cfg)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(Scraper::Prometheus(bin));
        }
        eprintln!(
            "NOTE {test}: this prometheus has no consul_sd_configs (Debian builds it without \
             Consul SD); using VictoriaMetrics, which reads the same scrape config"
        );
    }
    find_tool("victoria-metrics", test).map(Scraper::VictoriaMetrics)
}

async fn start_prometheus(scraper: &Scraper, consul: SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, config_text(consul)).unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = match scraper {
        Scraper::Prometheus(bin) => {
            let mut c = tokio::process::Command::new(bin);
            c.arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={web}"))
                .arg("--log.level=warn");
            c
        }
        Scraper::VictoriaMetrics(bin) => {
            let mut c = tokio::process::Command::new(bin);
            c.arg(format!("-promscrape.config={}", cfg.display()))
                .arg(format!(
                    "-storageDataPath={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("-httpListenAddr={web}"))
                .arg("-promscrape.consulSDCheckInterval=1s")
                // Prometheus's `refresh_interval` is this flag here.
                .arg("-promscrape.config.strictParse=false")
                .arg("-loggerLevel=ERROR");
            c
        }
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the scraper starts");
    Prometheus {
        child,
        web,
        _dir: dir,
    }
}

/// The active targets of job `shoal`: (address, discovered labels, health), or `None` while
/// Prometheus is not answering yet.
async fn targets(p: &Prometheus) -> Option<Vec<(String, Value, String)>> {
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(p.web),
    )
    .await;
    if !matches!(conn, Ok(Ok(_))) {
        return None;
    }
    let r = http(
        p.web,
        "GET",
        "/api/v1/targets?state=active",
        Duration::from_secs(10),
    )
    .await;
    if r.status != 200 {
        return None;
    }
    let v = r.json();
    let mut out = Vec::new();
    for t in v["data"]["activeTargets"].as_array()? {
        if t["scrapePool"] != "shoal" {
            continue;
        }
        out.push((
            t["labels"]["instance"].as_str()?.to_string(),
            t["discoveredLabels"].clone(),
            t["health"].as_str().unwrap_or("").to_string(),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_through_consul_sd_and_keeps_targets_when_cut_off() {
    let test = "prometheus_discovers_through_consul_sd_and_keeps_targets_when_cut_off";
    let Some(scraper) = pick_scraper(test) else {
        return;
    };
    let specs: Vec<Spec> = (0..3)
        .map(|i| Spec {
            tags: vec![("zone", if i == 0 { "a" } else { "b" })],
            services: Vec::new(),
        })
        .collect();
    let c = start(&specs).await;
    // Each agent registers its own /metrics endpoint (its local API on its own address) as
    // the service `shoal-metrics`: real targets Prometheus can scrape.
    let mut apis: Vec<ApiHandle> = Vec::new();
    let mut expected = BTreeSet::new();
    for i in 0..3 {
        let h = shoal::api::spawn(
            c.shared[i].clone(),
            ApiOptions {
                unix: None,
                http: Some(format!("{}:0", ip(i)).parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .expect("API starts");
        let port = h.http_addr().unwrap().port();
        c.shared[i]
            .with_node(|n, now| {
                n.register_service(
                    now,
                    shoal_core::Service {
                        name: "shoal-metrics".into(),
                        port,
                        tags: [("scrape".to_string(), "true".to_string())].into(),
                        health: None,
                        health_output: None,
                    },
                )
            })
            .expect("register");
        expected.insert(format!("{}:{port}", ip(i)));
        apis.push(h);
    }
    c.converge_fully(SETTLE).await;

    let p = start_prometheus(&scraper, c.consul_addr(0)).await;
    let start = Instant::now();
    let mut last = None;
    for _ in 0..(DISCOVER.as_millis() / 250) {
        if start.elapsed() > DISCOVER {
            break;
        }
        if let Some(t) = targets(&p).await {
            let found: BTreeSet<String> = t.iter().map(|x| x.0.clone()).collect();
            if found == expected && t.iter().all(|x| x.2 == "up") {
                last = Some(t);
                break;
            }
            last = Some(t);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t = last.expect("Prometheus answered");
    let found: BTreeSet<String> = t.iter().map(|x| x.0.clone()).collect();
    assert_eq!(found, expected, "every instance discovered: {t:?}");
    assert!(t.iter().all(|x| x.2 == "up"), "every target scraped: {t:?}");
    eprintln!(
        "the scraper discovered and scraped {} targets {:.1} s after it started",
        t.len(),
        start.elapsed().as_secs_f64()
    );
    for (addr, labels, _) in &t {
        let i = expected.iter().position(|e| e == addr).unwrap();
        assert_eq!(labels["__meta_consul_service"], "shoal-metrics");
        assert_eq!(labels["__meta_consul_node"], name(i));
        assert_eq!(labels["__meta_consul_address"], ip(i));
        assert_eq!(labels["__meta_consul_dc"], "dc1");
        assert_eq!(labels["__meta_consul_health"], "passing");
        assert_eq!(labels["__meta_consul_tags"], ",scrape=true,");
        assert_eq!(labels["__meta_consul_service_metadata_scrape"], "true");
        assert!(labels["__meta_consul_metadata_zone"].is_string());
    }

    // Cut off the agent Prometheus asks. It is the one that is isolated: it keeps serving
    // the others, held, and Prometheus keeps every target, over the whole interval.
    c.isolate(0);
    let cut = Instant::now();
    let mut samples = 0;
    let mut held_since: Option<Instant> = None;
    for _ in 0..((REACT + Duration::from_secs(10)).as_millis() / 200) {
        let t = targets(&p).await.expect("Prometheus answers");
        let found: BTreeSet<String> = t.iter().map(|x| x.0.clone()).collect();
        assert_eq!(
            found,
            expected,
            "a target disappeared {:.1} s after the cut",
            cut.elapsed().as_secs_f64()
        );
        samples += 1;
        let held = c.status(0, &name(1)) == Some(ServedStatus::Held)
            && c.status(0, &name(2)) == Some(ServedStatus::Held);
        if held && held_since.is_none() {
            held_since = Some(Instant::now());
        }
        // Watch for 8 s after the view became held: Prometheus has re-read it by then.
        if held_since
            .map(|h| h.elapsed() > Duration::from_secs(8))
            .unwrap_or(false)
        {
            break;
        }
        assert!(
            cut.elapsed() < REACT + Duration::from_secs(10),
            "n0 never held its peers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(held_since.is_some(), "n0 holds n1 and n2");
    let t = targets(&p).await.expect("Prometheus answers");
    for (addr, labels, _) in &t {
        assert_eq!(
            labels["__meta_consul_health"], "passing",
            "{addr}: {labels}"
        );
    }
    eprintln!(
        "the scraper kept all {} targets over {samples} samples while n0 was cut off",
        t.len()
    );
    drop(p);
    for h in apis {
        h.shutdown().await;
    }
}
