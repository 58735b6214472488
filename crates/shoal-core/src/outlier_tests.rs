//! Outlier ejection (`core::outlier`): the rules alone on a fake clock, then through a node
//! of the test network (reports in, the served view, events and `poll_timeout` out).

use crate::outlier::{Census, Outcomes, OutlierAction, OutlierConfig, Outliers};
use crate::testnet::TestNet;
use crate::time::Time;
use crate::{EventKind, Service};
use std::collections::BTreeMap;
use std::time::Duration;

const S: u64 = 1000;

fn census(n: usize) -> Vec<Census> {
    (0..n)
        .map(|i| Census {
            node: format!("n{i}"),
            id: "web".into(),
            passing: true,
        })
        .collect()
}

fn calls(success: u64, error: u64, timeout: u64) -> Outcomes {
    Outcomes {
        success,
        error,
        timeout,
    }
}

fn actions(o: &mut Outliers) -> Vec<(String, OutlierAction)> {
    o.take_transitions()
        .into_iter()
        .map(|t| (t.node, t.action))
        .collect()
}

#[test]
fn a_few_calls_eject_nothing_however_bad() {
    let mut o = Outliers::new(OutlierConfig::default());
    let c = census(3);
    // Three failed calls out of three: 100 %, but under the 20-call minimum.
    o.report(Time(0), "web", ("n1", "web"), &calls(0, 2, 1), &c);
    assert!(o.ejected("web", "n1", "web").is_none());
    // 19 calls, all failed: still under the minimum.
    o.report(Time(S), "web", ("n1", "web"), &calls(0, 16, 0), &c);
    assert!(o.ejected("web", "n1", "web").is_none());
    assert!(actions(&mut o).is_empty());
    // The 20th: ejected.
    o.report(Time(2 * S), "web", ("n1", "web"), &calls(0, 1, 0), &c);
    let e = o.ejected("web", "n1", "web").expect("ejected at 20 calls");
    assert_eq!(e.count, 1);
    assert!(e.reason.contains("20 of 20 calls failed"), "{}", e.reason);
    assert_eq!(actions(&mut o), vec![("n1".into(), OutlierAction::Ejected)]);
}

#[test]
fn the_threshold_counts_errors_and_timeouts_over_all_calls() {
    let mut o = Outliers::new(OutlierConfig::default());
    let c = census(3);
    // 49 % failed: under the 50 % threshold.
    o.report(Time(0), "web", ("n1", "web"), &calls(51, 40, 9), &c);
    assert!(o.ejected("web", "n1", "web").is_none());
    // Two more timeouts: 51 of 102 failed (50 %), ejected.
    o.report(Time(S), "web", ("n1", "web"), &calls(0, 0, 2), &c);
    assert!(o.ejected("web", "n1", "web").is_some());
    // Successes only: never ejected however many.
    o.report(Time(S), "web", ("n2", "web"), &calls(1_000_000, 0, 0), &c);
    assert!(o.ejected("web", "n2", "web").is_none());
}

#[test]
fn failures_older_than_the_window_do_not_count() {
    let mut o = Outliers::new(OutlierConfig::default());
    let c = census(3);
    o.report(Time(0), "web", ("n1", "web"), &calls(0, 15, 0), &c);
    // 31 s later (window 30 s): the first 15 left the window, 15 + 10 never meet.
    o.report(Time(31 * S), "web", ("n1", "web"), &calls(0, 10, 0), &c);
    assert!(o.ejected("web", "n1", "web").is_none());
    assert_eq!(
        o.status(Time(31 * S), "web", "n1", "web").window,
        calls(0, 10, 0)
    );
    // Within the window they add up.
    o.report(Time(40 * S), "web", ("n1", "web"), &calls(0, 10, 0), &c);
    assert!(o.ejected("web", "n1", "web").is_some());
}

#[test]
fn never_more_than_the_ratio_when_every_instance_fails() {
    for (n, ratio, cap) in [
        (4, 0.5, 2),
        (10, 0.3, 3),
        (5, 0.5, 2),
        (2, 0.5, 1),
        (1, 1.0, 0),
    ] {
        let cfg = OutlierConfig {
            max_ejection_ratio: ratio,
            ..OutlierConfig::default()
        };
        let mut o = Outliers::new(cfg);
        let c = census(n);
        // Every instance fails, over and over, for ten minutes of reports.
        let mut most = 0;
        for t in 0..600u64 {
            for i in 0..n {
                o.report(
                    Time(t * S),
                    "web",
                    (&format!("n{i}"), "web"),
                    &calls(0, 30, 0),
                    &c,
                );
            }
            o.handle_timeout(Time(t * S));
            let now = o.ejected_counts().get("web").copied().unwrap_or(0);
            assert!(now <= cap, "{now} of {n} ejected at {t} s, cap {cap}");
            most = most.max(now);
        }
        // The cap is used (the failing instances take turns), never passed.
        assert_eq!(most, cap, "{n} instances, ratio {ratio}");
        let capped = o
            .take_transitions()
            .iter()
            .filter(|t| t.action == OutlierAction::Capped)
            .count();
        assert!(capped > 0 || cap == n, "the cap is reported");
    }
}

#[test]
fn the_last_instance_of_the_passing_view_is_never_ejected() {
    let cfg = OutlierConfig {
        max_ejection_ratio: 1.0,
        ..OutlierConfig::default()
    };
    let mut o = Outliers::new(cfg);
    // n2 is critical (out of the passing view already): n0 and n1 pass.
    let mut c = census(3);
    c[2].passing = false;
    o.report(Time(0), "web", ("n0", "web"), &calls(0, 30, 0), &c);
    o.report(Time(0), "web", ("n1", "web"), &calls(0, 30, 0), &c);
    assert!(o.ejected("web", "n0", "web").is_some());
    let t = o.take_transitions();
    let last = t.iter().find(|t| t.node == "n1").unwrap();
    assert_eq!(last.action, OutlierAction::Capped);
    assert!(last.reason.contains("last instance"), "{}", last.reason);
    assert!(o.ejected("web", "n1", "web").is_none());
}

#[test]
fn the_back_off_grows_with_each_ejection_up_to_the_cap_and_decays() {
    let cfg = OutlierConfig::default(); // base 30 s, max 300 s
    let mut o = Outliers::new(cfg);
    let c = census(3);
    let mut now = Time(0);
    let mut lengths = Vec::new();
    for _ in 0..12 {
        o.report(now, "web", ("n1", "web"), &calls(0, 20, 0), &c);
        let e = o.ejected("web", "n1", "web").expect("ejected").clone();
        lengths.push((e.until_ms - e.since_ms) / S);
        // Still ejected a millisecond before the end, restored at it.
        o.handle_timeout(Time(e.until_ms - 1));
        assert!(o.ejected("web", "n1", "web").is_some());
        o.handle_timeout(Time(e.until_ms));
        assert!(o.ejected("web", "n1", "web").is_none());
        now = Time(e.until_ms + 5 * S);
    }
    assert_eq!(
        lengths,
        vec![30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]
    );
    let t = o.take_transitions();
    let restored = t
        .iter()
        .filter(|t| t.action == OutlierAction::Restored)
        .count();
    assert_eq!(restored, 12);
    // Calm for a long time: the count decays one step per base_ejection_time.
    let later = now.plus(Duration::from_secs(30 * 11));
    o.report(later, "web", ("n1", "web"), &calls(0, 20, 0), &c);
    let e = o.ejected("web", "n1", "web").expect("ejected");
    assert_eq!(e.count, 1, "{e:?}");
    assert_eq!(e.until_ms - e.since_ms, 30 * S);
}

#[test]
fn a_restored_instance_starts_with_an_empty_window() {
    let mut o = Outliers::new(OutlierConfig::default());
    let c = census(3);
    o.report(Time(0), "web", ("n1", "web"), &calls(0, 20, 0), &c);
    // Reports during the ejection (a proxy still calling it) are counted...
    o.report(Time(S), "web", ("n1", "web"), &calls(0, 50, 0), &c);
    assert_eq!(
        o.status(Time(S), "web", "n1", "web").window,
        calls(0, 70, 0)
    );
    // ... and forgotten at the restoration: no instant re-ejection.
    o.handle_timeout(Time(30 * S));
    assert!(o.ejected("web", "n1", "web").is_none());
    o.report(Time(31 * S), "web", ("n1", "web"), &calls(5, 5, 0), &c);
    assert!(o.ejected("web", "n1", "web").is_none());
}

#[test]
fn entries_are_dropped_once_nothing_is_left_to_remember() {
    let mut o = Outliers::new(OutlierConfig::default());
    let c = census(3);
    o.report(Time(0), "web", ("n2", "web"), &calls(10, 0, 0), &c);
    assert_eq!(o.take_deadline(), None, "nothing to restore");
    o.report(Time(0), "web", ("n1", "web"), &calls(0, 20, 0), &c);
    assert_eq!(o.take_deadline(), Some(Time(30 * S)));
    o.handle_timeout(Time(30 * S));
    // A sweep one window on keeps the ejection history, drops the quiet n2.
    let next = o.take_deadline().expect("a sweep");
    o.handle_timeout(next);
    assert_eq!(
        o.status(next, "web", "n2", "web").window,
        Outcomes::default()
    );
    // After the count decays, nothing is kept and no timer is wanted.
    o.handle_timeout(Time(200 * S));
    o.handle_timeout(Time(400 * S));
    assert!(o.ejected_counts().is_empty());
    o.take_deadline();
    o.handle_timeout(Time(800 * S));
    assert_eq!(o.take_deadline(), None);
}

fn web(port: u16) -> Service {
    Service {
        name: "web".into(),
        port,
        tags: BTreeMap::new(),
        health: None,
        health_output: None,
    }
}

/// Through a node: reports eject an instance in the served view (out of the passing view,
/// with the reason), an event says so, `poll_timeout` brings the restoration.
#[test]
fn a_node_ejects_from_reports_and_restores_on_its_timer() {
    let mut net = TestNet::new(3);
    for i in 0..3 {
        net.call(i, |n, now| {
            n.register_service(now, web(8000 + i as u16)).unwrap()
        });
    }
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes[0]
            .services()
            .get("web")
            .is_some_and(|v| v.len() == 3)
    });
    assert!(ok, "web did not reach n0");
    // Unknown names are refused, nothing counted.
    let mut refused = Vec::new();
    net.call(0, |n, now| {
        refused.push(n.report_outcomes(now, &[("db".into(), "n1".into(), calls(0, 1, 0))]));
        refused.push(n.report_outcomes(now, &[("web".into(), "n9".into(), calls(0, 1, 0))]));
        refused.push(n.report_outcomes(now, &[("web".into(), "n1".into(), calls(0, 0, 0))]));
    });
    assert!(refused.iter().all(|r| r.is_err()), "{refused:?}");
    let before = net.nodes[0].index();
    let mut status = Vec::new();
    net.call(0, |n, now| {
        status = n
            .report_outcomes(now, &[("web".into(), "n1".into(), calls(5, 20, 5))])
            .unwrap();
    });
    let at = net.now;
    assert!(status[0].ejected.is_some());
    let inst = |net: &TestNet| {
        net.nodes[0].services()["web"]
            .iter()
            .find(|i| i.node == "n1")
            .cloned()
            .unwrap()
    };
    let i = inst(&net);
    let e = i.ejected.clone().expect("served as ejected");
    assert!(!i.in_passing_view(true));
    assert_eq!(e.until_ms, at.plus(Duration::from_secs(30)).0);
    assert!(net.nodes[0].index() > before, "the event moved the index");
    // Other agents' views are their own apps' business: n1 is not ejected there.
    assert!(net.nodes[1].outlier_ejected("web", "n1", "web").is_none());
    // The restoration comes from the node's own timer.
    net.run_until(Time(e.until_ms - 1));
    assert!(inst(&net).ejected.is_some());
    net.run_until(Time(e.until_ms + 1));
    let i = inst(&net);
    assert!(i.ejected.is_none() && i.in_passing_view(false));
    let c = net.nodes[0].outlier_counters();
    assert_eq!((c.ejections, c.restorations), (1, 1));
}

/// The events a node emits for an ejection and a restoration, in order.
#[test]
fn a_node_emits_one_event_per_ejection_and_restoration() {
    let cfg = |_: usize, c: &mut crate::NodeConfig| {
        c.outlier.base_ejection_time = Duration::from_secs(2);
    };
    let mut net = TestNet::with_config(2, cfg);
    for i in 0..2 {
        net.call(i, |n, now| {
            n.register_service(now, web(8000 + i as u16)).unwrap()
        });
    }
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes[0]
            .services()
            .get("web")
            .is_some_and(|v| v.len() == 2)
    });
    assert!(ok);
    // Drive node 0 alone, draining its events ourselves.
    let node = &mut net.nodes[0];
    let mut now = net.now;
    while node.poll_event().is_some() {}
    node.report_outcomes(now, &[("web".into(), "n1".into(), calls(0, 20, 0))])
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..1000 {
        while let Some(ev) = node.poll_event() {
            if let EventKind::Outlier(t) = ev.kind {
                seen.push((t.node, t.action));
            }
        }
        let Some(next) = node.poll_timeout() else {
            break;
        };
        now = next.max(now);
        node.handle_timeout(now);
        if seen.len() >= 2 {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            ("n1".to_string(), OutlierAction::Ejected),
            ("n1".to_string(), OutlierAction::Restored)
        ]
    );
}

/// A batch is checked whole (nothing counted on an error), and an ejected instance whose
/// owner deregisters the service is still restored on time, then forgotten.
#[test]
fn a_node_checks_batches_whole_and_forgets_gone_instances() {
    use crate::node::ReportError;
    let mut net = TestNet::new(3);
    for i in 0..3 {
        net.call(i, |n, now| {
            n.register_service(now, web(8000 + i as u16)).unwrap()
        });
    }
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes[0]
            .services()
            .get("web")
            .is_some_and(|v| v.len() == 3)
    });
    assert!(ok);
    let r = |node: &str, o: Outcomes| ("web".to_string(), node.to_string(), o);
    let mut got = Vec::new();
    net.call(0, |n, now| {
        got.push(n.report_outcomes(now, &[]).unwrap_err());
        let many: Vec<_> = (0..257).map(|_| r("n1", calls(0, 1, 0))).collect();
        got.push(n.report_outcomes(now, &many).unwrap_err());
        // A bad report after good ones: the good ones are not counted either.
        got.push(
            n.report_outcomes(
                now,
                &[r("n1", calls(0, 20, 0)), r("n2", calls(0, 1_000_001, 0))],
            )
            .unwrap_err(),
        );
    });
    assert_eq!(
        got,
        vec![
            ReportError::Empty,
            ReportError::TooMany(257),
            ReportError::TooLarge { index: 1 }
        ]
    );
    assert!(net.nodes[0].outlier_ejected("web", "n1", "web").is_none());
    assert_eq!(net.nodes[0].outlier_counters().reports, 0);
    net.call(0, |n, now| {
        n.report_outcomes(now, &[r("n1", calls(0, 20, 0))]).unwrap();
    });
    let until = net.nodes[0]
        .outlier_ejected("web", "n1", "web")
        .unwrap()
        .until_ms;
    // n1 deregisters web while ejected: the restoration still comes, nothing is left.
    net.call(1, |n, now| {
        n.deregister_service(now, "web").unwrap();
    });
    let ok = net.run_until_pred(5_000, |net| {
        net.nodes[0].services()["web"]
            .iter()
            .all(|i| i.node != "n1")
    });
    assert!(ok, "the deregistration reached n0");
    net.run_until(Time(until + 1));
    assert!(net.nodes[0].outlier_ejected("web", "n1", "web").is_none());
    assert_eq!(net.nodes[0].outlier_counters().restorations, 1);
    assert!(net.nodes[0].outlier_ejected_counts().is_empty());
}

/// Two instances of a service on one node are two instances: reports about one eject that
/// one only, in the node's served view; a report that does not say which is refused.
#[test]
fn instances_on_one_node_are_ejected_apart() {
    let mut o = Outliers::new(OutlierConfig::default());
    let mut c = census(3);
    c[1].id = "web-1".into();
    c.push(Census {
        node: "n1".into(),
        id: "web-2".into(),
        passing: true,
    });
    o.report(Time(0), "web", ("n1", "web-1"), &calls(0, 20, 0), &c);
    assert!(o.ejected("web", "n1", "web-1").is_some());
    assert!(o.ejected("web", "n1", "web-2").is_none());
    o.report(Time(0), "web", ("n1", "web-2"), &calls(20, 0, 0), &c);
    assert!(o.ejected("web", "n1", "web-2").is_none());
    let t = o.take_transitions();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].node.as_str(), t[0].id.as_str()), ("n1", "web-1"));

    let mut net = TestNet::new(3);
    for i in 0..3 {
        net.call(i, |n, now| {
            n.register_instance(now, "web-1", web(8000)).unwrap();
            n.register_instance(now, "web-2", web(8001)).unwrap();
        });
    }
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes[0]
            .services()
            .get("web")
            .is_some_and(|v| v.len() == 6)
    });
    assert!(ok, "six instances of web did not reach n0");
    let mut got = Vec::new();
    net.call(0, |n, now| {
        got.push(n.report_outcomes(now, &[("web".into(), "n1".into(), calls(0, 20, 0))]));
        got.push(n.report_instance_outcomes(
            now,
            &[(
                "web".into(),
                "n1".into(),
                Some("web-2".into()),
                calls(0, 20, 0),
            )],
        ));
    });
    assert!(
        matches!(
            &got[0],
            Err(crate::node::ReportError::AmbiguousInstance { .. })
        ),
        "{got:?}"
    );
    assert!(got[1].as_ref().is_ok_and(|s| s[0].ejected.is_some()));
    let ejected: Vec<(String, String)> = net.nodes[0].services()["web"]
        .iter()
        .filter(|i| i.ejected.is_some())
        .map(|i| (i.node.clone(), i.id.clone()))
        .collect();
    assert_eq!(ejected, vec![("n1".to_string(), "web-2".to_string())]);
}
