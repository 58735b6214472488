//! Tests of `gray`: the agreement rule, light loss, the return, the bounds and validation.

use super::*;
use std::collections::BTreeMap as Map;

/// A cluster of `n` members `m0..` (all active, generation 1), `m0` being us.
struct Cluster(Map<String, (u64, bool)>);

impl Cluster {
    fn new(n: usize) -> Cluster {
        Cluster((0..n).map(|i| (format!("m{i}"), (1, true))).collect())
    }
}

impl Members for Cluster {
    fn population(&self) -> usize {
        self.0.values().filter(|(_, a)| *a).count()
    }
    fn member(&self, name: &str) -> Option<(u64, bool)> {
        self.0.get(name).copied()
    }
}

fn gray() -> Gray {
    Gray::new(&GuardConfig::default(), Arc::from("m0"))
}

fn report(subject: &str, observer: &str, attempts: u8, failures: u8) -> ReachReport {
    ReachReport {
        subject: subject.into(),
        generation: 1,
        observer: observer.into(),
        attempts,
        failures,
        latest_failed: failures > 0,
        age_ms: 0,
    }
}

#[test]
fn needed_observers_grow_with_the_cluster_and_are_capped() {
    let g = gray();
    assert_eq!(g.needed(3), None, "two others: no agreement possible");
    assert_eq!(g.needed(5), Some(3));
    assert_eq!(g.needed(10), Some(3));
    assert_eq!(g.needed(22), Some(7));
    assert_eq!(g.needed(1000), Some(MAX_OBSERVERS_NEEDED));
}

#[test]
fn enough_observers_agreeing_remove_a_member_once() {
    let c = Cluster::new(10);
    let mut g = gray();
    for o in ["m1", "m2"] {
        g.receive(Time(0), report("m9", o, 3, 3), &c).unwrap();
    }
    g.evaluate(Time(100), &c, true);
    assert!(!g.is_removed("m9"), "two of nine is not enough");
    g.receive(Time(200), report("m9", "m3", 2, 1), &c).unwrap();
    g.evaluate(Time(300), &c, true);
    let ch = g.take_changes();
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].name.as_ref(), "m9");
    assert_eq!(
        ch[0].removed.as_deref(),
        Some("gray: 3 of 3 observers cannot reach it")
    );
    g.evaluate(Time(400), &c, true);
    assert!(g.take_changes().is_empty(), "one decision");
}

#[test]
fn nobody_is_removed_while_the_guard_holds_the_view() {
    let c = Cluster::new(10);
    let mut g = gray();
    for o in ["m1", "m2", "m3", "m4"] {
        g.receive(Time(0), report("m9", o, 4, 4), &c).unwrap();
    }
    g.evaluate(Time(0), &c, false);
    assert!(!g.is_removed("m9"), "a correlated event is the guard's");
    g.evaluate(Time(10), &c, true);
    assert!(g.is_removed("m9"));
}

#[test]
fn observers_whose_latest_probe_was_answered_do_not_count() {
    let c = Cluster::new(10);
    let mut g = gray();
    for o in ["m1", "m2", "m3", "m4"] {
        let mut r = report("m9", o, 4, 3);
        r.latest_failed = false;
        g.receive(Time(0), r, &c).unwrap();
    }
    g.evaluate(Time(0), &c, true);
    assert!(!g.is_removed("m9"));
}

#[test]
fn light_loss_reports_do_not_count() {
    let c = Cluster::new(10);
    let mut g = gray();
    // Observers that failed one probe in three (a light-loss member's worst luck).
    for o in ["m1", "m2", "m3", "m4", "m5", "m6"] {
        g.receive(Time(0), report("m9", o, 3, 1), &c).unwrap();
    }
    g.evaluate(Time(100), &c, true);
    assert!(!g.is_removed("m9"));
    assert!(g.take_changes().is_empty());
}

#[test]
fn own_probes_publish_only_while_failing() {
    let mut g = gray();
    let s: Arc<str> = Arc::from("m5");
    g.on_probe(Time(0), &s, 1, true, true);
    assert!(
        g.outgoing(Time(0), 1300).is_empty(),
        "nothing to say about a healthy member"
    );
    g.on_probe(Time(1000), &s, 1, false, true);
    let out = g.outgoing(Time(1500), 1300);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].attempts, out[0].failures, out[0].age_ms),
        (2, 1, 500)
    );
    // Answered again: the superseding report says so (and it is spread too).
    g.on_probe(Time(2000), &s, 1, true, true);
    let out = g.outgoing(Time(2000), 1300);
    assert_eq!(
        (out[0].attempts, out[0].failures, out[0].latest_failed),
        (3, 1, false)
    );
}

#[test]
fn an_observer_failing_many_members_is_not_counted() {
    let c = Cluster::new(10);
    let mut g = gray();
    // m1 fails everyone: it is the lossy one, not its subjects.
    for s in ["m5", "m6", "m7", "m8", "m9"] {
        g.receive(Time(0), report(s, "m1", 3, 3), &c).unwrap();
    }
    for o in ["m2", "m3"] {
        g.receive(Time(0), report("m9", o, 3, 3), &c).unwrap();
    }
    g.evaluate(Time(0), &c, true);
    assert!(
        !g.is_removed("m9"),
        "two observers and a lossy one are not three"
    );
}

#[test]
fn an_unhealthy_observer_does_not_publish_failures() {
    let mut g = gray();
    let s: Arc<str> = Arc::from("m5");
    g.on_probe(Time(0), &s, 1, false, false);
    assert!(g.outgoing(Time(0), 1300).is_empty());
    g.on_probe(Time(1000), &s, 1, false, true);
    assert_eq!(g.outgoing(Time(1000), 1300).len(), 1);
}

#[test]
fn a_removed_member_returns_after_a_calm_period() {
    let c = Cluster::new(10);
    let mut g = gray();
    for o in ["m1", "m2", "m3", "m4"] {
        g.receive(Time(0), report("m9", o, 4, 4), &c).unwrap();
    }
    g.evaluate(Time(0), &c, true);
    assert!(g.is_removed("m9"));
    g.take_changes();
    // Failing reports count while fresh (15 s); calm from then; back 30 s later.
    g.evaluate(Time(14_000), &c, true);
    assert!(g.is_removed("m9"));
    g.evaluate(Time(15_000), &c, true);
    g.evaluate(Time(44_000), &c, true);
    assert!(g.is_removed("m9"), "not calm long enough yet");
    g.evaluate(Time(45_000), &c, true);
    assert!(!g.is_removed("m9"));
    assert_eq!(
        g.take_changes(),
        vec![GrayChange {
            name: Arc::from("m9"),
            removed: None
        }]
    );
}

#[test]
fn reports_are_validated_and_bounded() {
    let mut c = Cluster::new(10);
    let mut g = gray();
    assert_eq!(
        g.receive(Time(0), report("m9", "m9", 1, 1), &c),
        Err(ReportError::BadName)
    );
    assert_eq!(
        g.receive(Time(0), report("m9", "m1", 1, 2), &c),
        Err(ReportError::BadCounts)
    );
    assert_eq!(
        g.receive(Time(0), report("m9", "m1", 0, 0), &c),
        Err(ReportError::BadCounts)
    );
    assert_eq!(
        g.receive(Time(0), report("nobody", "m1", 1, 1), &c),
        Err(ReportError::Unknown)
    );
    let mut old = report("m9", "m1", 1, 1);
    old.age_ms = MAX_AGE_MS + 1;
    assert_eq!(g.receive(Time(0), old, &c), Err(ReportError::TooOld));
    // Many subjects: the table stops at MAX_SUBJECTS.
    for i in 0..MAX_SUBJECTS + 10 {
        c.0.insert(format!("s{i}"), (1, true));
    }
    let mut full = 0;
    for i in 0..MAX_SUBJECTS + 10 {
        if g.receive(Time(0), report(&format!("s{i}"), "m1", 1, 1), &c) == Err(ReportError::Full) {
            full += 1;
        }
    }
    assert_eq!(full, 10);
    assert_eq!(g.reports.len(), MAX_SUBJECTS);
}

#[test]
fn an_older_report_never_replaces_a_newer_one() {
    let c = Cluster::new(10);
    let mut g = gray();
    g.receive(Time(10_000), report("m9", "m1", 4, 4), &c)
        .unwrap();
    let mut older = report("m9", "m1", 4, 0);
    older.age_ms = 5_000;
    g.receive(Time(10_000), older, &c).unwrap();
    assert_eq!(g.reports["m9"]["m1"].report.failures, 4);
}

#[test]
fn a_relayed_report_counts_for_half_the_window_from_its_arrival() {
    let c = Cluster::new(10);
    let mut g = gray();
    // Reports of probes made 10 s ago reach us only now (a large cluster's relays).
    for o in ["m1", "m2", "m3"] {
        let mut r = report("m9", o, 1, 1);
        r.age_ms = 10_000;
        g.receive(Time(20_000), r, &c).unwrap();
    }
    // 14 s after they arrived (24 s after the probes): still fresh.
    g.evaluate(Time(34_000), &c, true);
    assert!(g.is_removed("m9"));
    // Reports that arrived 15 s ago no longer count towards a removal.
    let mut g = gray();
    for o in ["m1", "m2", "m3"] {
        g.receive(Time(0), report("m8", o, 1, 1), &c).unwrap();
    }
    g.evaluate(Time(15_000), &c, true);
    assert!(!g.is_removed("m8"));
}

#[test]
fn a_push_fills_its_budget_with_fresh_reports_only() {
    let mut c = Cluster::new(40);
    for i in 0..40 {
        c.0.insert(format!("s{i}"), (1, true));
    }
    let mut g = gray();
    // 30 reports by as many observers, and one 20 s old (no longer fresh: half the window).
    for i in 0..30 {
        let subject = format!("s{}", i % 10);
        g.receive(
            Time(20_000),
            report(&subject, &format!("m{}", i + 1), 1, 1),
            &c,
        )
        .unwrap();
    }
    g.receive(Time(0), report("s0", "m35", 1, 1), &c).unwrap();
    let one = ReachReport::max_encoded_len("s0", "m10");
    let out = g.outgoing(Time(20_000), 25 * one);
    assert_eq!(out.len(), 25, "as many as fit, more than the old 8");
    assert!(
        out.iter().all(|r| r.observer != "m35"),
        "a stale report was spread"
    );
    let encoded = crate::sync::ShoalMsg::Reach { reports: out }.encode();
    assert!(encoded.len() <= 25 * one + 4, "{} bytes", encoded.len());
    // The rest next time, then nothing fresh is left to send but repeats.
    assert_eq!(g.outgoing(Time(20_000), 25 * one).len(), 25);
}
