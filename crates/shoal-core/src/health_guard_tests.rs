//! Unit tests of the health guard's rules (deterministic: times are given).

use super::*;
use crate::guard_config::ServiceGuard;

fn name(i: usize) -> Arc<str> {
    Arc::from(format!("n{i}"))
}

fn guard(mode: GuardMode) -> HealthGuard {
    HealthGuard::new(GuardConfig {
        mode,
        ..GuardConfig::default()
    })
}

fn set(g: &mut HealthGuard, now: Time, i: usize, h: Health) {
    g.observe(now, &name(i), [("web", "web", Some(h))], true);
}

/// `n` passing instances of `web`.
fn cluster(n: usize) -> HealthGuard {
    let mut g = guard(GuardMode::Enforce);
    for i in 0..n {
        set(&mut g, Time(0), i, Health::Passing);
    }
    g
}

fn held(g: &HealthGuard, n: usize) -> Vec<usize> {
    (0..n)
        .filter(|i| g.held("web", &name(*i), "web").is_some())
        .collect()
}

#[test]
fn a_few_failures_are_removed_at_once() {
    let mut g = cluster(10);
    // Limit: max(2, 0.4 x 10) = 4; four failures are not more than the limit.
    for i in 0..4 {
        set(&mut g, Time(1000 + i as u64), i, Health::Critical);
    }
    assert!(held(&g, 10).is_empty());
    assert!(g.take_transitions().is_empty());
    assert!(g.reports().is_empty());
}

#[test]
fn mass_failure_is_held_then_thaws_with_hysteresis() {
    let mut g = cluster(10);
    for i in 0..5 {
        set(&mut g, Time(1000), i, Health::Critical);
    }
    assert_eq!(held(&g, 10), vec![0, 1, 2, 3, 4]);
    let t = g.take_transitions();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, GuardState::Frozen);
    assert!(t[0].report.reason.contains("5 of 10 instances of web"));
    assert!(g.held("web", "n0", "web").unwrap().contains("shared fault"));
    // While frozen, one more failure is held at once.
    set(&mut g, Time(2000), 7, Health::Critical);
    assert_eq!(held(&g, 10), vec![0, 1, 2, 3, 4, 7]);
    // Instances pass again: no longer held.
    for i in [0, 1, 2, 3, 4] {
        set(&mut g, Time(3000), i, Health::Passing);
    }
    assert_eq!(held(&g, 10), vec![7]);
    // One held (under half the limit of 4) since 3 s: the thaw waits `stable_after` (30 s).
    g.tick(Time(4000));
    g.tick(Time(32_999));
    assert_eq!(held(&g, 10), vec![7]);
    assert!(g.take_transitions().is_empty());
    g.tick(Time(33_000));
    assert!(held(&g, 10).is_empty(), "released on thaw");
    let t = g.take_transitions();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, GuardState::Normal);
    assert!(g.take_dirty().contains(&name(7)));
}

#[test]
fn no_thaw_while_many_are_still_held() {
    let mut g = cluster(10);
    for i in 0..6 {
        set(&mut g, Time(0), i, Health::Critical);
    }
    for s in 1..200u64 {
        g.tick(Time(s * 1000));
    }
    assert_eq!(held(&g, 10).len(), 6);
    assert_eq!(g.reports()["web"].held, 6);
}

#[test]
fn failures_spread_over_more_than_the_window_are_not_a_mass_failure() {
    let mut g = cluster(10);
    for i in 0..6 {
        let t = Time(i as u64 * 61_000);
        g.tick(t);
        set(&mut g, t, i, Health::Critical);
    }
    assert!(held(&g, 10).is_empty());
}

#[test]
fn every_instance_critical_is_held_never_empty() {
    let mut g = cluster(1);
    set(&mut g, Time(10), 0, Health::Critical);
    assert_eq!(held(&g, 1), vec![0]);
    assert!(g.held("web", "n0", "web").unwrap().contains("never empty"));
    // Back to passing, then stays calm: thaws.
    set(&mut g, Time(20), 0, Health::Passing);
    assert!(held(&g, 1).is_empty());
    g.tick(Time(100));
    g.tick(Time(40_000));
    assert!(g.reports().is_empty());
}

#[test]
fn warning_is_not_a_failure() {
    let mut g = cluster(3);
    for i in 0..3 {
        set(&mut g, Time(10), i, Health::Warning);
    }
    assert!(held(&g, 3).is_empty());
    assert!(g.take_transitions().is_empty());
}

#[test]
fn fail_closed_and_off_never_hold_shadow_reports() {
    let mut cfg = GuardConfig::default();
    cfg.services
        .insert("web".into(), ServiceGuard { fail_closed: true });
    let mut g = HealthGuard::new(cfg);
    for i in 0..5 {
        set(&mut g, Time(0), i, Health::Passing);
    }
    for i in 0..5 {
        set(&mut g, Time(10), i, Health::Critical);
    }
    assert!(held(&g, 5).is_empty());
    assert!(g.take_transitions().is_empty());

    let mut g = guard(GuardMode::Off);
    for i in 0..5 {
        set(&mut g, Time(0), i, Health::Passing);
        set(&mut g, Time(10), i, Health::Critical);
    }
    assert!(held(&g, 5).is_empty());

    let mut g = guard(GuardMode::Shadow);
    for i in 0..5 {
        set(&mut g, Time(0), i, Health::Passing);
    }
    for i in 0..5 {
        set(&mut g, Time(10), i, Health::Critical);
    }
    assert!(held(&g, 5).is_empty(), "shadow serves the truth");
    let r = &g.reports()["web"];
    assert_eq!((r.held, r.would_hold), (0, 5));
}

#[test]
fn deregistration_and_down_members_are_not_held() {
    let mut g = cluster(4);
    for i in 0..4 {
        set(&mut g, Time(10), i, Health::Critical);
    }
    assert_eq!(held(&g, 4).len(), 4);
    // n0 deregisters web: intent, gone at once.
    g.observe(Time(20), &name(0), std::iter::empty(), true);
    assert_eq!(held(&g, 4), vec![1, 2, 3]);
    // n1's member is no longer served (SWIM down, not held by the membership guard).
    set_serving(&mut g, Time(30), 1, Health::Critical, false);
    assert_eq!(held(&g, 4), vec![2, 3]);
    g.forget(Time(40), &name(2));
    assert_eq!(held(&g, 4), vec![3]);
    g.forget(Time(40), &name(3));
    g.forget(Time(40), &name(1));
    let t = g.take_transitions();
    assert_eq!(t.last().map(|t| t.to), Some(GuardState::Normal));
    assert!(g.reports().is_empty());
}

fn set_serving(g: &mut HealthGuard, now: Time, i: usize, h: Health, serving: bool) {
    g.observe(now, &name(i), [("web", "web", Some(h))], serving);
}

#[test]
fn an_instance_that_appears_critical_is_not_a_failure() {
    let mut g = cluster(10);
    for i in 10..20 {
        set(&mut g, Time(5), i, Health::Critical);
    }
    // Ten new instances critical from the start (registered before their first check):
    // nothing turned critical, nothing held.
    assert!(held(&g, 20).is_empty());
    // A new service whose only instance starts critical is not held either.
    g.observe(
        Time(6),
        &name(30),
        [("api", "api", Some(Health::Critical))],
        true,
    );
    assert!(g.held("api", "n30", "api").is_none());
    assert!(g.take_transitions().is_empty());
}

/// Two instances of `web` on each node count as two: their failures, holds and recoveries
/// are each instance's own, and deregistering one forgets only it.
#[test]
fn instances_on_one_node_are_counted_and_held_apart() {
    let mut g = guard(GuardMode::Enforce);
    let both = |h1: Health, h2: Health| [("web-1", "web", Some(h1)), ("web-2", "web", Some(h2))];
    for i in 0..5 {
        g.observe(
            Time(0),
            &name(i),
            both(Health::Passing, Health::Passing),
            true,
        );
    }
    // Limit: max(2, 0.4 x 10 instances) = 4; five failures (on three nodes) trip it.
    g.observe(
        Time(1000),
        &name(0),
        both(Health::Critical, Health::Critical),
        true,
    );
    g.observe(
        Time(1000),
        &name(1),
        both(Health::Critical, Health::Critical),
        true,
    );
    assert!(
        g.take_transitions().is_empty(),
        "four failures are within the limit"
    );
    g.observe(
        Time(1000),
        &name(2),
        both(Health::Critical, Health::Passing),
        true,
    );
    let t = g.take_transitions();
    assert_eq!(t.len(), 1);
    assert!(
        t[0].report.reason.contains("5 of 10 instances of web"),
        "{t:?}"
    );
    assert!(g.held("web", "n2", "web-1").is_some());
    assert!(
        g.held("web", "n2", "web-2").is_none(),
        "a passing instance is not held"
    );
    // One instance of n0 passes again: only it leaves the held set.
    g.observe(
        Time(2000),
        &name(0),
        both(Health::Critical, Health::Passing),
        true,
    );
    assert!(g.held("web", "n0", "web-1").is_some());
    assert!(g.held("web", "n0", "web-2").is_none());
    // n1 deregisters web-2 (intent): it is forgotten, web-1 stays held.
    g.observe(
        Time(3000),
        &name(1),
        [("web-1", "web", Some(Health::Critical))],
        true,
    );
    assert!(g.held("web", "n1", "web-1").is_some());
    assert!(g.held("web", "n1", "web-2").is_none());
    assert_eq!(g.reports()["web"].baseline, 9);
}
