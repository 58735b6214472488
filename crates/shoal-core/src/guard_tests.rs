//! Tests of the guard: its state machine driven directly with a fake clock (`Rig`), and end
//! to end through the deterministic test network (`TestNet`) with crashes and partitions.

use crate::guard::{Guard, GuardCtx, ServiceGuard};
use crate::identity::NodeId;
use crate::meta::{MetaRecord, MetaStore};
use crate::reach::{CheckResult, ReachView};
use crate::testnet::{addr, config, TestNet};
use crate::truth::Truth;
use crate::{
    GuardConfig, GuardMode, GuardState, GuardTransition, Node, NodeConfig, NodeMeta, Restored,
    ServedStatus, Service, Time, TruthState,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

// ----- the state machine with a fake clock ------------------------------------------------

struct Rig {
    g: Guard,
    truth: Truth,
    meta: MetaStore,
    now: Time,
    /// Overrides the reachable peer count (default: active peers in the truth).
    reach: Option<usize>,
    idle: bool,
    /// The reach evidence handed to the guard.
    silent: Option<Duration>,
    check: Option<CheckResult>,
    refuted_at: Option<Time>,
    transitions: Vec<GuardTransition>,
}

fn peer(i: usize) -> String {
    format!("p{i}")
}

impl Rig {
    /// `n` alive peers plus ourselves ("me"), a while after they were seen.
    fn new(cfg: GuardConfig, n: usize) -> Rig {
        let mut r = Rig::young(cfg, n);
        let stable = r.g.config().stable_after;
        r.run(stable.as_millis() as u64 + 1_000);
        assert_eq!(r.g.report().baseline, n, "baseline lost");
        r
    }

    /// `n` alive peers plus ourselves, just seen (no time has passed).
    fn young(cfg: GuardConfig, n: usize) -> Rig {
        let mut r = Rig {
            g: Guard::new(cfg, Time(0), Default::default()),
            truth: Truth::default(),
            meta: MetaStore::default(),
            now: Time(0),
            reach: None,
            idle: false,
            silent: None,
            check: None,
            refuted_at: None,
            transitions: Vec::new(),
        };
        r.set("me", TruthState::Alive);
        for i in 0..n {
            r.set(&peer(i), TruthState::Alive);
        }
        r
    }

    fn id(name: &str) -> NodeId {
        NodeId::new(name, addr(name.len()), 1)
    }

    fn with_ctx(&mut self, f: impl FnOnce(&mut Guard, &GuardCtx<'_>, Time)) {
        let active = self
            .truth
            .iter()
            .filter(|(n, m)| m.state.is_active() && &***n != "me")
            .count();
        let ctx = GuardCtx {
            truth: &self.truth,
            meta: &self.meta,
            self_name: "me",
            active_peers: self.reach.unwrap_or(active),
            idle: self.idle,
            reach: ReachView {
                silent_for: self.silent,
                last: self.check.as_ref(),
                refuted_at: self.refuted_at,
            },
        };
        f(&mut self.g, &ctx, self.now);
        self.transitions.extend(self.g.take_transitions());
    }

    fn set(&mut self, name: &str, st: TruthState) {
        let id = Self::id(name);
        if self.meta.get(name).is_none() {
            // Every member publishes its record at start.
            self.meta.offer(MetaRecord {
                name: Arc::from(name),
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
                generation: 1,
                version: 1,
                leaving: false,
                meta: NodeMeta::default(),
            });
        }
        let (changed, prev) = self.truth.set(self.now, &id, st);
        if changed {
            let n: Arc<str> = Arc::from(name);
            self.with_ctx(|g, ctx, now| g.on_change(now, ctx, &n, prev, Some(st)));
        }
    }

    fn service(&mut self, name: &str, svc: &str) {
        let mut meta = self
            .meta
            .get(name)
            .map(|r| r.meta.clone())
            .unwrap_or_default();
        meta.services.insert(
            svc.into(),
            Service {
                name: svc.into(),
                port: 80,
                tags: BTreeMap::new(),
                health: None,
                health_output: None,
            },
        );
        let version = self.meta.get(name).map(|r| r.version + 1).unwrap_or(1);
        self.meta.offer(MetaRecord {
            name: Arc::from(name),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            generation: 1,
            version,
            leaving: false,
            meta,
        });
    }

    /// Advances the clock by `ms` in 50 ms ticks.
    fn run(&mut self, ms: u64) {
        let end = self.now.0 + ms;
        while self.now.0 < end {
            self.now = Time((self.now.0 + 50).min(end));
            self.with_ctx(|g, ctx, now| g.tick(now, ctx));
        }
    }

    fn served(&self, name: &str) -> ServedStatus {
        let m = self.truth.get(name).expect("known member");
        self.g.served(name, m.state)
    }

    /// A reach check of the 10 peers just finished: `unreached` did not answer, the others did.
    fn checked(&mut self, unreached: &[usize]) {
        self.check = Some(CheckResult {
            started: self.now,
            at: self.now,
            targets: 10,
            population: 10,
            unreached: unreached.iter().map(|i| Arc::from(peer(*i))).collect(),
            skipped: 0,
            reached: (0..10)
                .filter(|i| !unreached.contains(i))
                .map(|i| Arc::from(peer(i)))
                .collect(),
        });
    }

    fn with_wants(&mut self) -> bool {
        let mut out = false;
        self.with_ctx(|g, ctx, _| out = g.wants_reach_check(ctx));
        out
    }

    fn state(&self) -> GuardState {
        self.g.report().state
    }

    /// Fails peers `range` one second apart.
    fn fail(&mut self, range: std::ops::Range<usize>) {
        for i in range {
            self.set(&peer(i), TruthState::Down);
            self.run(1_000);
        }
    }
}

#[test]
fn single_failure_is_removed_at_once() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    r.set("p3", TruthState::Down);
    assert_eq!(r.served("p3"), ServedStatus::Down);
    assert_eq!(r.state(), GuardState::Normal);
    assert_eq!(r.g.report().held, 0);
    assert!(r.transitions.is_empty());
}

#[test]
fn mass_failure_trips_and_holds_every_failure_in_the_window() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    // Up to the limit (40% of 10 = 4) failures are removed: that can be a real event.
    r.fail(0..4);
    assert_eq!(r.state(), GuardState::Normal);
    assert_eq!(r.served("p0"), ServedStatus::Down);
    // The fifth exceeds it: frozen, and every failure of the window is held again.
    r.set("p4", TruthState::Down);
    let rep = r.g.report();
    assert_eq!(rep.state, GuardState::Frozen);
    assert_eq!(
        rep.reason,
        "5 of 10 baseline peers lost in 4 s (0 suspect, 0 unreachable, 5 failed), limit 40%"
    );
    assert_eq!(rep.held, 5);
    for i in 0..5 {
        assert_eq!(r.served(&peer(i)), ServedStatus::Held, "p{i}");
    }
    assert_eq!(r.transitions.len(), 1);
    assert_eq!(r.transitions[0].from, GuardState::Normal);
    assert_eq!(r.transitions[0].to, GuardState::Frozen);
    // Any later failure is held too.
    r.set("p9", TruthState::Down);
    assert_eq!(r.served("p9"), ServedStatus::Held);
}

#[test]
fn while_frozen_intent_applies_at_once_and_returns_are_alive() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    r.fail(0..5);
    assert_eq!(r.state(), GuardState::Frozen);
    // Graceful leave of a held member and of a live one: applied at once.
    r.set("p0", TruthState::Left);
    r.set("p6", TruthState::Left);
    assert_eq!(r.served("p0"), ServedStatus::Left);
    assert_eq!(r.served("p6"), ServedStatus::Left);
    // New members appear, held ones that come back are alive.
    r.set("q1", TruthState::Alive);
    assert_eq!(r.served("q1"), ServedStatus::Alive);
    r.set("p1", TruthState::Alive);
    assert_eq!(r.served("p1"), ServedStatus::Alive);
    // Suspicion alone removes nobody.
    r.set("p7", TruthState::Suspect);
    assert_eq!(r.served("p7"), ServedStatus::Suspect);
    assert!(r.served("p7").is_serving());
    assert_eq!(r.g.report().held, 3);
    assert_eq!(r.state(), GuardState::Frozen);
}

#[test]
fn thaw_needs_held_under_half_the_limit_for_stable_after_then_drains() {
    let cfg = GuardConfig::default(); // limit 4 for 10 peers: thaw under 2 held
    let stable = cfg.stable_after.as_millis() as u64;
    let mut r = Rig::new(cfg, 10);
    r.fail(0..5);
    for i in 0..3 {
        r.set(&peer(i), TruthState::Alive);
    }
    r.run(stable * 3);
    assert_eq!(
        r.state(),
        GuardState::Frozen,
        "2 held is not under half of 4"
    );
    r.set("p3", TruthState::Alive);
    r.run(stable - 1_000);
    assert_eq!(r.state(), GuardState::Frozen, "thawed before stable_after");
    assert_eq!(r.served("p4"), ServedStatus::Held);
    r.run(1_100);
    assert_eq!(r.state(), GuardState::Normal);
    assert!(r.g.report().reason.starts_with("thawed"));
    // The remaining held member drains (5 per second).
    r.run(1_000);
    assert_eq!(r.served("p4"), ServedStatus::Down);
    assert_eq!(r.g.report().held, 0);
    let t: Vec<_> = r.transitions.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        t,
        vec![
            (GuardState::Normal, GuardState::Frozen),
            (GuardState::Frozen, GuardState::Normal)
        ]
    );
}

#[test]
fn a_service_is_never_emptied_by_failure_but_is_by_intent() {
    let mut cfg = GuardConfig::default();
    cfg.services
        .insert("leader".into(), ServiceGuard { fail_closed: true });
    let mut r = Rig::new(cfg, 10);
    r.service("p1", "db");
    r.service("p2", "web");
    r.service("p3", "web");
    r.service("p4", "leader");
    // web still has p3: p2 is removed.
    r.set("p2", TruthState::Down);
    assert_eq!(r.served("p2"), ServedStatus::Down);
    // p1 was the last db: held, although the guard is normal.
    r.set("p1", TruthState::Down);
    assert_eq!(r.served("p1"), ServedStatus::Held);
    assert_eq!(r.state(), GuardState::Normal);
    // A fail-closed service is not protected.
    r.set("p4", TruthState::Down);
    assert_eq!(r.served("p4"), ServedStatus::Down);
    assert!(!r.g.serves_instance("leader", ServedStatus::Held));
    assert!(r.g.serves_instance("db", ServedStatus::Held));
    r.run(10_000);
    assert_eq!(
        r.served("p1"),
        ServedStatus::Held,
        "released while still the last db"
    );
    // Graceful leave empties it at once.
    r.set("p3", TruthState::Down);
    assert_eq!(r.served("p3"), ServedStatus::Held);
    r.set("p3", TruthState::Left);
    assert_eq!(r.served("p3"), ServedStatus::Left);
    // Another db instance appears: the held one is released.
    r.set("p8", TruthState::Alive);
    r.service("p8", "db");
    r.run(1_000);
    assert_eq!(r.served("p1"), ServedStatus::Down);
    // Operator removal works on a held member too.
    r.service("p9", "cache");
    r.set("p9", TruthState::Down);
    assert_eq!(r.served("p9"), ServedStatus::Held);
    assert!(r.g.release("p9"));
    assert_eq!(r.served("p9"), ServedStatus::Down);
}

#[test]
fn shadow_mode_serves_the_truth_and_reports_what_it_would_do() {
    let cfg = GuardConfig {
        mode: GuardMode::Shadow,
        ..Default::default()
    };
    let mut r = Rig::new(cfg, 10);
    r.fail(0..5);
    let rep = r.g.report();
    assert_eq!(rep.mode, GuardMode::Shadow);
    assert_eq!(rep.state, GuardState::Frozen);
    assert_eq!(rep.would_hold, 5);
    assert_eq!(rep.held, 0);
    for i in 0..5 {
        assert_eq!(r.served(&peer(i)), ServedStatus::Down);
    }
    assert_eq!(r.transitions.len(), 1);
}

#[test]
fn off_mode_does_nothing() {
    let cfg = GuardConfig {
        mode: GuardMode::Off,
        ..Default::default()
    };
    let mut r = Rig::new(cfg, 0);
    for i in 0..10 {
        r.set(&peer(i), TruthState::Alive);
    }
    r.run(40_000);
    r.fail(0..8);
    let rep = r.g.report();
    assert_eq!((rep.state, rep.would_hold), (GuardState::Normal, 0));
    assert_eq!(r.served("p0"), ServedStatus::Down);
}

#[test]
fn isolation_by_reachability_and_by_idle() {
    let stable = GuardConfig::default().stable_after.as_millis() as u64;
    let mut r = Rig::new(GuardConfig::default(), 10);
    // foca still lists everyone but we reach only 4 of 10: isolated.
    r.reach = Some(4);
    r.run(100);
    let rep = r.g.report();
    assert_eq!(rep.state, GuardState::Isolated);
    assert_eq!(
        rep.reason,
        "reaching 4 of 10 baseline peers, fewer than half"
    );
    // Now every failure is held (even the first one).
    r.set("p0", TruthState::Down);
    assert_eq!(r.served("p0"), ServedStatus::Held);
    // Reachable again: frozen until the held members are back.
    r.reach = None;
    r.run(100);
    assert_eq!(r.state(), GuardState::Frozen);
    r.set("p0", TruthState::Alive);
    r.run(stable + 100);
    assert_eq!(r.state(), GuardState::Normal);

    // Idle (foca lists nobody): isolated at once.
    r.idle = true;
    r.reach = Some(0);
    r.run(100);
    assert_eq!(r.state(), GuardState::Isolated);
    assert!(
        r.g.report().reason.contains("idle"),
        "{}",
        r.g.report().reason
    );
}

#[test]
fn correlated_suspicion_trips_before_anyone_is_declared_down() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    // Four suspects are within the limit (4 of 10, limit 4): nothing happens.
    for i in 0..4 {
        r.set(&peer(i), TruthState::Suspect);
    }
    assert_eq!(r.state(), GuardState::Normal);
    // The fifth trips it, although nobody is down yet.
    r.set("p4", TruthState::Suspect);
    let rep = r.g.report();
    assert_eq!(rep.state, GuardState::Frozen, "{}", rep.reason);
    assert!(rep.reason.contains("5 suspect"), "{}", rep.reason);
    assert_eq!(rep.held, 0);
    // Then SWIM declares them down: every one is held, none is ever served down.
    for i in 0..5 {
        r.set(&peer(i), TruthState::Down);
        assert_eq!(r.served(&peer(i)), ServedStatus::Held, "p{i}");
    }
    // They come back: alive at once, and the guard thaws after `stable_after` of calm.
    for i in 0..5 {
        r.set(&peer(i), TruthState::Alive);
        assert_eq!(r.served(&peer(i)), ServedStatus::Alive);
    }
    r.run(GuardConfig::default().stable_after.as_millis() as u64 + 500);
    assert_eq!(r.state(), GuardState::Normal);
}

#[test]
fn a_reach_check_counts_peers_swim_has_not_suspected_yet() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    r.set("p0", TruthState::Suspect);
    r.set("p1", TruthState::Suspect);
    assert!(
        r.with_wants(),
        "two suspects together ask for a reach check"
    );
    // The check finds three more unreachable: 5 > 4, frozen before SWIM knows.
    r.checked(&[0, 1, 2, 3, 4]);
    r.with_ctx(|g, ctx, now| g.on_reach(now, ctx));
    let rep = r.g.report();
    assert_eq!(rep.state, GuardState::Frozen);
    assert!(rep.reason.contains("3 unreachable"), "{}", rep.reason);
    // A check that reaches fewer than half means this node is the one cut off.
    r.checked(&[0, 1, 2, 3, 4, 5]);
    r.run(100);
    let rep = r.g.report();
    assert_eq!(rep.state, GuardState::Isolated);
    assert_eq!(
        rep.reason,
        "a reach check answered by 4 of 10 baseline peers, fewer than half"
    );
}

#[test]
fn a_single_unreachable_peer_or_suspect_changes_nothing() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    r.set("p0", TruthState::Suspect);
    assert!(r.with_wants(), "a suspicion asks for a reach check");
    r.checked(&[0]);
    r.with_ctx(|g, ctx, now| g.on_reach(now, ctx));
    assert_eq!(r.state(), GuardState::Normal);
    r.set("p0", TruthState::Down);
    assert_eq!(r.served("p0"), ServedStatus::Down);
    assert!(
        !r.with_wants(),
        "a lone failure, confirmed, needs no more checks"
    );
}

#[test]
fn a_member_that_answered_our_own_check_is_held_until_a_check_goes_unanswered() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    r.set("p0", TruthState::Suspect);
    // Our check reached p0 after SWIM began to suspect it (the suspicion came from someone
    // else's bad luck, or from our own while we could not hear).
    r.checked(&[]);
    r.set("p0", TruthState::Down);
    assert_eq!(r.served("p0"), ServedStatus::Held);
    assert_eq!(r.state(), GuardState::Normal);
    r.run(2_000);
    assert_eq!(r.served("p0"), ServedStatus::Held, "evidence still fresh");
    // The next check goes unanswered: it was a real failure after all.
    r.checked(&[0]);
    r.run(500);
    assert_eq!(r.served("p0"), ServedStatus::Down);
}

#[test]
fn silence_isolates_at_once() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    r.silent = Some(Duration::from_millis(3_000));
    r.run(50);
    let rep = r.g.report();
    assert_eq!(rep.state, GuardState::Isolated);
    assert!(
        rep.reason
            .starts_with("nothing received from any peer for 3.0 s"),
        "{}",
        rep.reason
    );
    // Everyone SWIM then declares down is held.
    for i in 0..10 {
        r.set(&peer(i), TruthState::Down);
        assert_eq!(r.served(&peer(i)), ServedStatus::Held);
    }
}

#[test]
fn the_baseline_starts_with_the_first_view_and_follows_churn() {
    // No stable period at all: members are protected from the moment they are seen.
    let mut r = Rig::young(GuardConfig::default(), 10);
    assert_eq!(r.g.report().baseline, 10, "baseline from the first view");
    // Churn: a join and a graceful leave every 2 s for a minute; the baseline follows.
    for k in 0..30 {
        r.set(&format!("j{k}"), TruthState::Alive);
        r.run(1_000);
        r.set(&format!("j{k}"), TruthState::Left);
        r.run(1_000);
    }
    assert_eq!(r.g.report().baseline, 10);
    assert_eq!(r.state(), GuardState::Normal);
    // A crash stays in the baseline for `stable_after`, then leaves it (guard normal).
    r.set("p9", TruthState::Down);
    assert_eq!(r.served("p9"), ServedStatus::Down);
    r.run(GuardConfig::default().stable_after.as_millis() as u64 + 300);
    assert_eq!(r.g.report().baseline, 9);
    // Correlated suspicion in the middle of churn still trips.
    for i in 0..4 {
        r.set(&peer(i), TruthState::Suspect);
    }
    assert_eq!(r.state(), GuardState::Frozen, "{}", r.g.report().reason);
}

#[test]
fn operator_freeze_thaw_and_escalation() {
    let cfg = GuardConfig {
        max_freeze: Duration::from_secs(60),
        ..Default::default()
    };
    let mut r = Rig::new(cfg, 10);
    r.g.freeze(r.now, "alice");
    r.transitions.extend(r.g.take_transitions());
    assert_eq!(r.state(), GuardState::Frozen);
    assert_eq!(r.g.report().reason, "frozen by operator alice");
    r.set("p0", TruthState::Down);
    assert_eq!(
        r.served("p0"),
        ServedStatus::Held,
        "single crash held while frozen"
    );
    r.set("p0", TruthState::Alive);
    r.run(59_000);
    assert_eq!(
        r.state(),
        GuardState::Frozen,
        "operator freeze thawed by itself"
    );
    assert!(!r.g.report().escalated);
    r.run(2_000);
    let rep = r.g.report();
    assert!(rep.escalated);
    let last = r.transitions.last().unwrap();
    assert_eq!(
        (last.from, last.to),
        (GuardState::Frozen, GuardState::Frozen)
    );
    assert!(last.report.escalated);
    // Still holding by default.
    r.set("p1", TruthState::Down);
    assert_eq!(r.served("p1"), ServedStatus::Held);
    r.g.thaw(r.now, "bob");
    r.transitions.extend(r.g.take_transitions());
    assert_eq!(r.state(), GuardState::Normal);
    assert_eq!(r.g.report().reason, "thawed by operator bob");
    assert!(!r.g.report().escalated);
    r.run(1_000);
    assert_eq!(r.served("p1"), ServedStatus::Down);
}

#[test]
fn release_after_max_freeze_drains_at_the_configured_rate() {
    let cfg = GuardConfig {
        max_freeze: Duration::from_secs(60),
        release_after_max_freeze: true,
        drain_per_sec: 2,
        ..Default::default()
    };
    let mut r = Rig::new(cfg, 20);
    r.fail(0..10);
    assert_eq!(r.state(), GuardState::Frozen);
    assert_eq!(r.g.report().held, 10);
    for _ in 0..1_000 {
        if r.g.report().escalated {
            break;
        }
        r.run(100);
    }
    assert!(r.g.report().escalated);
    assert!(r.g.report().held >= 9);
    r.run(1_000);
    let held = r.g.report().held;
    assert!(
        (7..=9).contains(&held),
        "drained {} in ~1 s at 2/s",
        10 - held
    );
    r.run(5_000);
    assert_eq!(r.g.report().held, 0);
    assert_eq!(
        r.state(),
        GuardState::Frozen,
        "releasing keeps reporting the state"
    );
}

// ----- end to end through the test network ----------------------------------------------

fn fast_guard(cfg: &mut NodeConfig) {
    cfg.guard.stable_after = Duration::from_secs(2);
    cfg.guard.window = Duration::from_secs(20);
    cfg.guard.warming_sync = Duration::from_secs(1);
    cfg.guard.warming_timeout = Duration::from_secs(10);
}

fn net(n: usize) -> TestNet {
    let mut net = TestNet::with_config(n, |_, c| fast_guard(c));
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes
            .iter()
            .all(|n| n.guard_report().baseline == net.nodes.len() - 1)
    });
    assert!(ok, "no stable baseline");
    net
}

fn status(net: &TestNet, viewer: usize, i: usize) -> Option<ServedStatus> {
    net.nodes[viewer].member(&format!("n{i}")).map(|m| m.status)
}

fn serves_everyone(node: &Node, n: usize) -> bool {
    let m = node.members();
    m.len() == n && m.iter().all(|m| m.status.is_serving())
}

/// Every node serves every member alive, and the guard is normal: the exact truth.
fn exact_truth(net: &TestNet) -> bool {
    let n = net.nodes.len();
    net.nodes.iter().all(|node| {
        let m = node.members();
        node.guard_report().state == GuardState::Normal
            && m.len() == n
            && m.iter()
                .all(|m| m.status == ServedStatus::Alive && m.truth.is_none())
    })
}

fn db() -> Service {
    Service {
        name: "db".into(),
        port: 5432,
        tags: BTreeMap::new(),
        health: None,
        health_output: None,
    }
}

#[test]
fn e2e_mass_crash_trips_survivors_and_leave_still_applies() {
    // 3 of 8 crash: 3 > 40% of the 7 peers each survivor had, and each still reaches 4 of 7
    // (half or more): frozen, not isolated.
    let mut net = net(8);
    for i in 5..8 {
        net.crashed.insert(i);
    }
    let ok = net.run_until_pred(15_000, |net| {
        (0..5).all(|v| {
            net.nodes[v].guard_report().state == GuardState::Frozen
                && (5..8).all(|i| status(net, v, i) == Some(ServedStatus::Held))
        })
    });
    assert!(ok, "survivors did not freeze holding the crashed nodes");
    let rep = net.nodes[0].guard_report();
    assert_eq!((rep.held, rep.baseline), (3, 7));
    assert!(
        rep.reason.contains("of 7 baseline peers lost"),
        "{}",
        rep.reason
    );
    // A graceful leave while frozen applies at once.
    net.call(3, |n, now| n.leave(now).unwrap());
    let ok = net.run_until_pred(3_000, |net| {
        [0, 1, 2, 4]
            .iter()
            .all(|&v| status(net, v, 3) == Some(ServedStatus::Left))
    });
    assert!(ok, "leave while frozen not applied");
    assert_eq!(net.nodes[0].guard_report().state, GuardState::Frozen);
}

#[test]
fn e2e_one_of_six_cut_off_then_heal_to_the_exact_truth() {
    let mut net = net(6);
    net.partition(&[5]);
    let ok = net.run_until_pred(15_000, |net| {
        (0..5).all(|v| status(net, v, 5) == Some(ServedStatus::Down))
            && net.nodes[5].guard_report().state == GuardState::Isolated
    });
    assert!(
        ok,
        "cut-off node not isolated or majority did not remove it"
    );
    // The majority removed the one node (within the rules) and stayed normal.
    for v in 0..5 {
        assert_eq!(net.nodes[v].guard_report().state, GuardState::Normal);
    }
    // The cut-off node keeps serving the full view.
    net.run_for_ms(5_000);
    assert!(serves_everyone(&net.nodes[5], 6));
    assert_eq!(net.nodes[5].guard_report().held, 5);
    assert!(
        net.nodes[5].stats().rejoin_attempts > 0,
        "not re-announcing while isolated"
    );
    net.heal();
    assert!(
        net.run_until_pred(30_000, exact_truth),
        "did not heal to the exact truth"
    );
}

#[test]
fn e2e_three_of_seven_cut_off_each_side_holds_the_other() {
    let mut net = net(7);
    net.partition(&[4, 5, 6]);
    let ok = net.run_until_pred(20_000, |net| {
        (0..4).all(|v| net.nodes[v].guard_report().state == GuardState::Frozen)
            && (4..7).all(|v| net.nodes[v].guard_report().state == GuardState::Isolated)
            && net.nodes.iter().all(|n| serves_everyone(n, 7))
            && net.nodes[0].guard_report().held == 3
            && net.nodes[6].guard_report().held == 4
    });
    assert!(
        ok,
        "sides did not freeze/isolate while serving the full view"
    );
    assert_eq!(net.nodes[0].guard_report().held, 3);
    assert_eq!(net.nodes[6].guard_report().held, 4);
    // The minority still sees its own side (not idle) yet re-announces, being isolated.
    let before = net.nodes[6].stats().rejoin_attempts;
    assert!(!net.nodes[6].is_idle());
    let services_before: Vec<_> = net.nodes.iter().map(|n| n.members().len()).collect();
    net.run_for_ms(5_000);
    assert!(
        net.nodes[6].stats().rejoin_attempts > before,
        "isolated node not re-announcing"
    );
    assert!(net.nodes.iter().all(|n| serves_everyone(n, 7)));
    assert_eq!(
        services_before,
        net.nodes
            .iter()
            .map(|n| n.members().len())
            .collect::<Vec<_>>()
    );
    net.heal();
    assert!(
        net.run_until_pred(30_000, exact_truth),
        "did not heal to the exact truth"
    );
}

#[test]
fn e2e_single_crash_is_removed_as_fast_as_without_the_guard() {
    let mut detect = Vec::new();
    for mode in [GuardMode::Enforce, GuardMode::Off] {
        let mut net = TestNet::with_config(6, |_, c| {
            fast_guard(c);
            c.guard.mode = mode;
        });
        net.run_for_ms(5_000);
        net.crashed.insert(3);
        let start = net.now.0;
        let ok = net.run_until_pred(10_000, |net| {
            [0, 1, 2, 4, 5]
                .iter()
                .all(|&v| status(net, v, 3) == Some(ServedStatus::Down))
        });
        assert!(ok, "crash not removed with guard {mode:?}");
        detect.push(net.now.0 - start);
        assert_eq!(net.nodes[0].guard_report().state, GuardState::Normal);
    }
    // Same seeds, same gossip: the guard changes nothing of what is gossiped or detected.
    assert_eq!(
        detect[0], detect[1],
        "enforce {} ms vs off {} ms",
        detect[0], detect[1]
    );
}

#[test]
fn e2e_last_instance_of_a_service_is_held_not_emptied() {
    let mut net = net(5);
    net.call(3, |n, now| n.register_service(now, db()).unwrap());
    net.run_for_ms(2_000);
    assert_eq!(net.nodes[0].services()["db"].len(), 1);
    net.crashed.insert(3);
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes[0].truth().get("n3").map(|m| m.state) == Some(TruthState::Down)
    });
    assert!(ok);
    net.run_for_ms(2_000);
    for v in [0, 1, 2, 4] {
        let n = &net.nodes[v];
        assert_eq!(n.guard_report().state, GuardState::Normal);
        assert_eq!(status(&net, v, 3), Some(ServedStatus::Held));
        let db = &n.services()["db"];
        assert_eq!(db.len(), 1);
        assert_eq!(db[0].status, ServedStatus::Held);
    }
}

#[test]
fn e2e_restart_from_snapshot_serves_warming_then_normal() {
    let mut net = net(5);
    net.call(2, |n, now| n.register_service(now, db()).unwrap());
    net.run_for_ms(3_000);
    let snap = net.nodes[4].snapshot(1_000_000);
    assert_eq!(snap.members.len(), 5);
    net.crashed.insert(4);
    net.run_for_ms(3_000);
    // Restart with no seeds: only the snapshot's known peers lead back.
    let mut cfg = config(4);
    fast_guard(&mut cfg);
    cfg.seeds.clear();
    let mut node = Node::new(cfg, 2, NodeMeta::default(), 99, net.now).unwrap();
    let out = node.restore(net.now, snap.clone(), 1_005_000).unwrap();
    assert!(
        matches!(out, Restored::Served { members: 4, .. }),
        "{out:?}"
    );
    assert_eq!(node.guard_report().state, GuardState::Warming);
    assert!(serves_everyone(&node, 5), "restored view not served");
    assert_eq!(node.services()["db"][0].status, ServedStatus::Held);
    net.nodes[4] = node;
    net.crashed.remove(&4);
    net.call(4, |n, now| n.start(now));
    let ok = net.run_until_pred(15_000, |net| {
        net.nodes[4].guard_report().state == GuardState::Normal
    });
    assert!(ok, "never left warming");
    assert!(
        net.run_until_pred(15_000, exact_truth),
        "restarted node not in sync"
    );
    assert_eq!(net.nodes[4].services()["db"][0].status, ServedStatus::Alive);

    // A stale snapshot is not served, but its peers still lead back.
    let mut cfg = config(4);
    fast_guard(&mut cfg);
    cfg.seeds.clear();
    let mut node = Node::new(cfg, 3, NodeMeta::default(), 98, net.now).unwrap();
    let out = node
        .restore(net.now, snap, 1_000_000 + 2 * 3600 * 1000)
        .unwrap();
    assert!(
        matches!(out, Restored::PeersOnly { peers: 4, .. }),
        "{out:?}"
    );
    assert_eq!(node.members().len(), 1);
    assert_eq!(node.guard_report().state, GuardState::Normal);
    // And a snapshot of another node is refused.
    let other = net.nodes[0].snapshot(1_000_000);
    let mut cfg = config(4);
    fast_guard(&mut cfg);
    let mut node = Node::new(cfg, 4, NodeMeta::default(), 97, net.now).unwrap();
    assert!(node.restore(net.now, other, 1_000_000).is_err());
}

/// Figures with the guard on and off, side by side (printed with `--nocapture`): 3 of 7 cut
/// off, the only `api` instances on the cut-off side.
#[test]
fn e2e_figures_guard_on_vs_off() {
    let mut rows = Vec::new();
    for mode in [GuardMode::Enforce, GuardMode::Off] {
        let mut net = TestNet::with_config(7, |_, c| {
            fast_guard(c);
            c.guard.mode = mode;
        });
        for i in 4..7 {
            net.call(i, |n, now| {
                let mut s = db();
                s.name = "api".into();
                n.register_service(now, s).unwrap();
            });
        }
        net.run_for_ms(6_000);
        assert!(net.nodes.iter().all(|n| n.services()["api"].len() == 3));
        net.partition(&[4, 5, 6]);
        let mut min_api = usize::MAX;
        let mut min_served = [usize::MAX; 7];
        net.run_until_pred(10_000, |net| {
            for (i, n) in net.nodes.iter().enumerate() {
                let served = n.members().iter().filter(|m| m.status.is_serving()).count();
                min_served[i] = min_served[i].min(served);
                if i < 4 {
                    let api = n.services().get("api").map(Vec::len).unwrap_or(0);
                    min_api = min_api.min(api);
                }
            }
            false
        });
        let end_served: Vec<usize> = net
            .nodes
            .iter()
            .map(|n| n.members().iter().filter(|m| m.status.is_serving()).count())
            .collect();
        let states: Vec<&str> = net
            .nodes
            .iter()
            .map(|n| n.guard_report().state.as_str())
            .collect();
        net.heal();
        let start = net.now.0;
        let healed = net.run_until_pred(30_000, |net| {
            net.nodes.iter().all(|n| {
                n.members().len() == 7
                    && n.members().iter().all(|m| m.status == ServedStatus::Alive)
            })
        });
        let heal = if healed {
            format!("{} ms", net.now.0 - start)
        } else {
            "not within 30 s".to_string()
        };
        if mode == GuardMode::Enforce {
            assert!(healed, "did not heal to the truth with the guard on");
            assert!(min_api >= 1, "api served empty with the guard on");
            assert!(end_served.iter().all(|&s| s == 7));
        } else {
            assert_eq!(min_api, 0);
        }
        rows.push(format!(
            "guard {:<7} | min api instances on majority {} | min served per node {:?} | \
             served after 10 s cut {:?} | states {:?} | heal to truth {}",
            format!("{mode:?}"),
            min_api,
            min_served,
            end_served,
            states,
            heal
        ));
    }
    for r in rows {
        println!("{r}");
    }
}

/// A fresh net (profile `local`, default guard settings but `stable_after`), run until every
/// node sees every other alive, then 1 s more: a cluster that formed a second ago.
fn young_net(n: usize) -> TestNet {
    let mut net = TestNet::with_config(n, |_, c| c.guard.stable_after = Duration::from_secs(2));
    let ok = net.run_until_pred(10_000, |net| {
        net.nodes.iter().all(|node| serves_everyone(node, n))
    });
    assert!(ok, "did not converge");
    net.run_for_ms(1_000);
    net
}

/// Members served `down` by `observers` while they were alive (nobody crashed in these
/// tests, so every `down` event is one), over the whole run.
fn live_served_down(net: &TestNet, observers: &[usize]) -> Vec<(Time, usize, String)> {
    net.down_log
        .iter()
        .filter(|(_, o, _)| observers.contains(o))
        .cloned()
        .collect()
}

#[test]
fn e2e_young_cluster_cut_one_off_it_never_serves_anyone_down() {
    let mut net = young_net(7);
    net.partition(&[6]);
    net.run_for_ms(8_000);
    assert_eq!(net.nodes[6].guard_report().state, GuardState::Isolated);
    assert!(serves_everyone(&net.nodes[6], 7));
    assert_eq!(
        live_served_down(&net, &[6]),
        vec![],
        "the cut-off node served down"
    );
    // The others see one node gone: removed like a crash.
    assert!((0..6).all(|v| status(&net, v, 6) == Some(ServedStatus::Down)));
    net.heal();
    assert!(
        net.run_until_pred(5_000, |net| (0..7).all(|v| (0..7).all(|i| status(
            net, v, i
        ) == Some(
            ServedStatus::Alive
        ))))
    );
}

#[test]
fn e2e_young_cluster_split_three_of_seven_neither_side_serves_down() {
    let mut net = young_net(7);
    net.partition(&[4, 5, 6]);
    net.run_for_ms(8_000);
    assert!(net.nodes.iter().all(|n| serves_everyone(n, 7)));
    assert_eq!(live_served_down(&net, &[0, 1, 2, 3, 4, 5, 6]), vec![]);
    assert!((0..4).all(|v| net.nodes[v].guard_report().state == GuardState::Frozen));
    assert!((4..7).all(|v| net.nodes[v].guard_report().state == GuardState::Isolated));
    net.heal();
    assert!(
        net.run_until_pred(5_000, |net| (0..7).all(|v| (0..7).all(|i| status(
            net, v, i
        ) == Some(
            ServedStatus::Alive
        ))))
    );
    assert_eq!(live_served_down(&net, &[0, 1, 2, 3, 4, 5, 6]), vec![]);
}

#[test]
fn e2e_one_way_cut_the_deaf_node_never_serves_anyone_down() {
    // Node 6 can send but receives nothing.
    let mut net = young_net(7);
    for j in 0..6 {
        net.blocked.insert((j, 6));
    }
    net.run_for_ms(8_000);
    let rep = net.nodes[6].guard_report();
    assert_eq!(rep.state, GuardState::Isolated, "{}", rep.reason);
    assert!(serves_everyone(&net.nodes[6], 7));
    assert_eq!(live_served_down(&net, &[6]), vec![]);
}

#[test]
fn e2e_mute_node_never_serves_anyone_down() {
    // Node 6 receives everything but nothing it sends gets out.
    let mut net = young_net(7);
    for j in 0..6 {
        net.blocked.insert((6, j));
    }
    net.run_for_ms(8_000);
    let rep = net.nodes[6].guard_report();
    assert_eq!(rep.state, GuardState::Isolated, "{}", rep.reason);
    assert!(serves_everyone(&net.nodes[6], 7));
    assert_eq!(live_served_down(&net, &[6]), vec![]);
}
