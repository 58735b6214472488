//! The node's named timers (`core::timers::TimerName`): what each job does when it fires
//! (re-announcing with backoff while cut off or isolated, the bootstrap announces after
//! connecting, the anti-entropy round, discovery announces, metadata fetches, suspicion
//! mirroring, reaping, the guard's evaluation, the bulk pull of the member list) and `rearm`, which sets every slot from the
//! node's state after each input, so that an idle node wakes only when something is due.
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO.

use super::{EventKind, LocalEvent, Node, FETCH_PER_TICK};
use crate::guard::GuardState;
use crate::sync::ShoalMsg;
use crate::time::Time;
use crate::timers::TimerName;
use crate::wire::{self, MAX_DATAGRAM};
use rand::RngExt;
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Announces to every seed, and with `known` also to a few random known peers.
    pub(super) fn announce_to_seeds(&mut self, now: Time, known: bool) {
        let mut targets = self.seeds.clone();
        if known {
            let peers = self.known_peers();
            for _ in 0..peers.len().min(8) {
                let p = peers[self.rng.random_range(0..peers.len())];
                if !targets.contains(&p) {
                    targets.push(p);
                }
            }
        }
        for a in targets {
            self.announce(now, a);
        }
    }

    /// One named timer fired (`handle_timeout`); `after_input` follows, which re-arms.
    pub(super) fn handle_named(&mut self, now: Time, name: TimerName) {
        let t = self.cfg.timings.clone();
        match name {
            TimerName::Rejoin => {
                let isolated = self.guard.state() == GuardState::Isolated;
                if self.idle || self.reconnecting || isolated {
                    self.stats.rejoin_attempts += 1;
                    self.announce_to_seeds(now, true);
                    self.rejoin_backoff = (self.rejoin_backoff * 2).min(t.rejoin_max);
                    self.next_rejoin = Some(now.plus(self.rejoin_backoff));
                }
            }
            TimerName::Bootstrap => {
                // Right after connecting: announce to a few random members (1, 2, 4 x
                // rejoin_min).
                if self.bootstrap_left > 0 && !(self.idle || self.reconnecting) {
                    self.bootstrap_left -= 1;
                    self.bootstrap_gap *= 2;
                    self.next_bootstrap = now.plus(self.bootstrap_gap);
                    if let Some(dst) = self.random_peer() {
                        self.announce(now, dst);
                    }
                }
            }
            TimerName::Sync => {
                // Metadata anti-entropy with one random active peer.
                self.next_sync = now.plus(t.sync_interval);
                if let Some(dst) = self.random_peer() {
                    self.stats.anti_entropy_rounds += 1;
                    let (fingerprint, count) = {
                        let s = self.store();
                        (s.fingerprint(), s.len() as u32)
                    };
                    let d = ShoalMsg::Digest {
                        fingerprint,
                        count,
                        entries: Vec::new(),
                        replies: 2,
                    };
                    self.send_shoal(dst, &d);
                    self.send_member_filter(dst);
                }
            }
            TimerName::Discover => {
                // Announce to nodes we hold a record of but SWIM never told us about.
                for name in self.discover.take_due(now, FETCH_PER_TICK) {
                    if let Some(addr) = self.missing_from_swim(&name) {
                        if !self.discover_budget.take(now, addr) {
                            self.stats.discovery_announces_limited += 1;
                            continue;
                        }
                        self.stats.discovery_announces += 1;
                        self.announce(now, addr);
                    }
                }
            }
            TimerName::Fetch => self.fetch_missing_meta(now),
            TimerName::Verify => self.verify_relayed(now),
            TimerName::Suspects => {
                // Suspicion is not notified by foca: read it back every probe period.
                self.next_suspect_refresh = now.plus(t.probe_period);
                self.refresh_suspects(now);
            }
            TimerName::Reap => {
                // Forget members that have been down or gone for long enough.
                self.next_reap = now.plus(Duration::from_secs(10).min(t.reap_after));
                let old: Vec<Arc<str>> = self
                    .truth
                    .iter()
                    .filter(|(_, m)| !m.state().is_active() && now.since(m.since()) >= t.reap_after)
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in old {
                    self.reap(now, &name);
                }
            }
            TimerName::Evaluate => {
                self.gray_tick(now);
                self.check_reach(now);
                self.with_guard(now, |g, ctx| g.tick(now, ctx));
                self.health.tick(now);
            }
            TimerName::Snapshot => self.snapshot_timer(now),
            TimerName::Outlier => self.outliers.handle_timeout(now),
            TimerName::Checks => self.expire_checks(now),
            TimerName::Health => self.publish_health(now),
            TimerName::Pull => self.pull_members(),
            TimerName::Leave => {
                self.leave_finished = true;
                let ev = match self.ending {
                    Some(super::Ending::Restart) => LocalEvent::RestartAnnounced,
                    _ => LocalEvent::LeaveFinished,
                };
                self.push_event(now, EventKind::Local(ev));
            }
        }
    }

    /// Rescales foca's timings when the cluster size crosses a power of ten.
    pub(super) fn rescale_foca(&mut self) {
        let t = &self.cfg.timings;
        let n = self.foca.num_members() + 1;
        if t.suspicion_timeout(n) != t.suspicion_timeout(self.scaled_for)
            || t.max_transmissions(n) != t.max_transmissions(self.scaled_for)
        {
            let max_packet = MAX_DATAGRAM - wire::overhead(&self.cfg.cluster_label);
            if self.foca.set_config(t.foca_config(n, max_packet)).is_ok() {
                self.scaled_for = n;
            }
        }
    }

    /// Whether the truth holds members that are not active (down, left) or suspects: the
    /// reaper and the guard's evaluation have work while it does.
    fn truth_unsettled(&self) -> bool {
        self.truth.len() != self.foca.num_members() + 1
            || self.foca.num_suspects() > 0
            || self.truth.suspects().next().is_some()
    }

    /// Sets every named timer from the node's state (after each input): a job is armed
    /// only while it has something to do, so that an idle node sleeps until something is
    /// due. The snapshot and outlier timers are armed where they are decided.
    pub(super) fn rearm(&mut self, now: Time) {
        use TimerName::*;
        if !self.started || self.left {
            for n in [
                Rejoin, Bootstrap, Sync, Discover, Fetch, Verify, Suspects, Reap, Evaluate, Checks,
                Health, Pull,
            ] {
                self.named.set(n, None);
            }
            return;
        }
        let t = &self.cfg.timings;
        let tick = t.tick;
        // Re-announce with backoff while we have no active peer, or while the guard says we
        // are cut off from most of the baseline (foca may still see a few peers).
        let isolated = self.guard.state() == GuardState::Isolated;
        let detached = self.idle || self.reconnecting;
        if isolated && !detached && self.next_rejoin.is_none() {
            self.next_rejoin = Some(now);
        } else if !isolated && !detached && self.next_rejoin.is_some() {
            self.next_rejoin = None;
            self.rejoin_backoff = t.rejoin_min;
        }
        let rejoin = if detached || isolated {
            self.next_rejoin
        } else {
            None
        };
        self.named.set(Rejoin, rejoin);
        let bootstrap = (self.bootstrap_left > 0 && !detached).then_some(self.next_bootstrap);
        self.named.set(Bootstrap, bootstrap);
        self.named.set(Sync, Some(self.next_sync));
        // A bounded share per run: the rest one tick later.
        self.named
            .set_paced(Discover, self.discover.next_due(), tick);
        self.named.set_paced(Fetch, self.fetch.next_due(), tick);
        self.named.set_paced(Verify, self.verify.next_due(), tick);
        let unsettled = self.truth_unsettled();
        let suspects = self.cfg.track_suspects
            && (self.foca.num_suspects() > 0 || self.truth.suspects().next().is_some());
        self.named
            .set(Suspects, suspects.then_some(self.next_suspect_refresh));
        self.named.set(Reap, unsettled.then_some(self.next_reap));
        // The guard's evaluation: every tick while anything is under way; otherwise only when
        // silence would begin (nothing heard for a few probe periods).
        let connected = !self.idle && !self.reconnecting;
        self.reach.set_connected(now, connected);
        let busy = unsettled
            || self.refuted
            || !self.guard.calm()
            || !self.gray.quiet()
            || self.health.busy()
            || !self.reach.quiet(now, crate::reach::SILENT_PERIODS);
        let evaluate = if busy {
            let last = self.named.fired(Evaluate);
            Some(last.map_or(now, |l| l.plus(tick)))
        } else {
            self.reach.silent_at(crate::reach::SILENT_PERIODS)
        };
        self.named.set(Evaluate, evaluate);
        self.named.set(Checks, self.checks.next_due());
        self.named.set(Health, self.health_rate.next_due());
        // The bulk pull of the member list after joining: a few requests every tick.
        let pull = (self.pull.active() && connected).then(|| {
            let last = self.named.fired(Pull);
            last.map_or(now, |l| l.plus(tick))
        });
        self.named.set(Pull, pull);
    }
}
