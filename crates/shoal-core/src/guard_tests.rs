//! Tests of the guard's state machine, driven directly with a fake clock (`Rig`). The end to
//! end tests, through the deterministic test network, are `guard_e2e_tests`.

use crate::guard::{Guard, GuardCtx, ServiceGuard};
use crate::identity::NodeId;
use crate::meta::MetaRecord;
use crate::meta_store::MetaStore;
use crate::reach::{CheckResult, ReachView};
use crate::testnet::addr;
use crate::truth::Truth;
use crate::{
    GuardConfig, GuardMode, GuardState, GuardTransition, NodeMeta, ServedStatus, Service, Time,
    TruthState,
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
    /// When this node heard from each address (every peer of the rig shares one).
    causes: crate::cause::Causes,
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
            causes: crate::cause::Causes::with_seed(Default::default()),
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
            .filter(|(n, m)| m.state().is_active() && &***n != "me")
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
            gray: None,
            heard: Some(crate::guard::Heard {
                causes: &self.causes,
                within: Duration::from_millis(200),
                within_unconfirmed: Duration::from_millis(400),
            }),
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
                ext: Default::default(),
            });
        }
        let (changed, prev) = self.truth.set(self.now, &id, st);
        if changed {
            let n: Arc<str> = Arc::from(name);
            self.with_ctx(|g, ctx, now| g.on_change(now, ctx, &n, prev, Some(st)));
        }
    }

    /// Like `set`, for a member whose record has not arrived.
    fn set_unrecorded(&mut self, name: &str, st: TruthState) {
        let (changed, prev) = self.truth.set(self.now, &Self::id(name), st);
        if changed {
            let n: Arc<str> = Arc::from(name);
            self.with_ctx(|g, ctx, now| g.on_change(now, ctx, &n, prev, Some(st)));
        }
    }

    fn service(&mut self, name: &str, svc: &str) {
        self.instance(name, svc, svc);
    }

    /// `name` offers an instance `id` of `svc`.
    fn instance(&mut self, name: &str, id: &str, svc: &str) {
        let mut meta = self
            .meta
            .get(name)
            .map(|r| r.meta.clone())
            .unwrap_or_default();
        meta.services.insert(
            id.into(),
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
            ext: Default::default(),
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
        self.g.served(name, m.state())
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

/// The guard protects services by name, whatever their instances' ids: a member whose
/// instance `db-2` fails while another member offers `db` (as `db-1`) is removed; the last
/// one is held.
#[test]
fn services_are_protected_by_name_not_instance_id() {
    let mut r = Rig::new(GuardConfig::default(), 10);
    r.instance("p1", "db-1", "db");
    r.instance("p2", "db-2", "db");
    r.set("p2", TruthState::Down);
    assert_eq!(r.served("p2"), ServedStatus::Down, "p1 still offers db");
    r.set("p1", TruthState::Down);
    assert_eq!(r.served("p1"), ServedStatus::Held, "the last db");
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
fn a_member_heard_from_just_before_a_down_notice_is_held_until_a_check_misses_it() {
    // A lone accuser that cannot hear p0 declared it down; p0's datagrams still reach us.
    let mut r = Rig::new(GuardConfig::default(), 10);
    r.causes.heard(r.now, Rig::id("p0").addr());
    r.run(100);
    r.set("p0", TruthState::Down);
    assert_eq!(r.served("p0"), ServedStatus::Held);
    assert!(r.with_wants(), "a doubt asks for a reach check");
    r.run(100);
    r.checked(&[0]);
    r.run(500);
    assert_eq!(r.served("p0"), ServedStatus::Down, "the check missed it");
    // A crashed member was last heard longer ago than any detection takes: down at once
    // (with no check of ours that reached it).
    r.check = None;
    r.run(1_000);
    r.set("p1", TruthState::Down);
    assert_eq!(r.served("p1"), ServedStatus::Down);
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

/// The boundary itself: 3 of 10 (30 %) are removed, 4 of 10 (40 %: reaching the ratio) trip.
#[test]
fn removal_stops_when_it_reaches_the_ratio() {
    let mut r = Rig::new(GuardConfig::default(), 9);
    for i in 0..3 {
        r.set(&peer(i), TruthState::Down);
    }
    assert_eq!(r.state(), GuardState::Normal);
    assert_eq!(r.served(&peer(0)), ServedStatus::Down);
    r.set(&peer(3), TruthState::Suspect);
    assert_eq!(r.state(), GuardState::Frozen);
}

#[test]
fn a_young_split_trips_like_an_old_one_before_every_record_is_in() {
    // Ten members a second after forming: three of them seen alive, their records still on
    // their way (outside the baseline).
    let mut r = Rig::young(GuardConfig::default(), 6);
    for i in 6..9 {
        r.set_unrecorded(&peer(i), TruthState::Alive);
    }
    assert_eq!(r.g.report().baseline, 6);
    // The network splits 4/6: p5 (with its record) and the three without are lost.
    for i in [5, 6, 7] {
        r.set_unrecorded(&peer(i), TruthState::Down);
    }
    assert_eq!(r.state(), GuardState::Normal, "3 of 10 are removed");
    assert_eq!(r.served(&peer(6)), ServedStatus::Down);
    // The 4th reaches 40 % of the ten: the guard trips, as it does a minute later.
    r.set_unrecorded(&peer(8), TruthState::Suspect);
    assert_eq!(r.state(), GuardState::Frozen);
    // Their records arrive: they join the baseline, counted once.
    for i in 6..9 {
        r.set(&peer(i), TruthState::Alive);
    }
    assert_eq!(r.g.report().baseline, 9);
}
