//! The housekeeping tick: re-announcing with backoff while cut off (or isolated), the
//! bootstrap announces after connecting, the anti-entropy round, discovery announces,
//! metadata fetches, suspicion mirroring, reaping, rescaling foca with the cluster size, and
//! the reach check and guard tick.
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO.

use super::*;

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

    pub(super) fn tick(&mut self, now: Time) {
        if self.left {
            return;
        }
        let t = self.cfg.timings.clone();

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
        if detached || isolated {
            if let Some(at) = self.next_rejoin {
                if now >= at {
                    self.stats.rejoin_attempts += 1;
                    self.announce_to_seeds(now, true);
                    self.rejoin_backoff = (self.rejoin_backoff * 2).min(t.rejoin_max);
                    self.next_rejoin = Some(now.plus(self.rejoin_backoff));
                }
            }
        }

        // Right after connecting: announce to a few random members (1, 2, 4 x rejoin_min).
        if self.bootstrap_left > 0 && !detached && now >= self.next_bootstrap {
            self.bootstrap_left -= 1;
            self.bootstrap_gap *= 2;
            self.next_bootstrap = now.plus(self.bootstrap_gap);
            {
                if let Some(dst) = self.random_peer() {
                    self.announce(now, dst);
                }
            }
        }

        self.pull_members();
        self.gray_tick(now);

        // Metadata anti-entropy with one random active peer.
        if now >= self.next_sync {
            self.next_sync = now.plus(t.sync_interval);
            {
                if let Some(dst) = self.random_peer() {
                    self.stats.anti_entropy_rounds += 1;
                    let (fingerprint, count) = {
                        let s = self.store.lock();
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
        }

        // Announce to nodes we hold a record of but SWIM never told us about.
        for name in self.discover.take_due(now, FETCH_PER_TICK) {
            if let Some(addr) = self.missing_from_swim(&name) {
                self.stats.discovery_announces += 1;
                self.announce(now, addr);
            }
        }

        self.fetch_missing_meta(now);
        self.verify_relayed(now);

        // Suspicion is not notified by foca: read it back every probe period.
        if self.cfg.track_suspects && now >= self.next_suspect_refresh {
            self.next_suspect_refresh = now.plus(t.probe_period);
            self.refresh_suspects(now);
        }

        // Forget members that have been down or gone for long enough.
        if now >= self.next_reap {
            self.next_reap = now.plus(Duration::from_secs(10).min(t.reap_after));
            let old: Vec<Arc<str>> = self
                .truth
                .iter()
                .filter(|(_, m)| !m.state.is_active() && now.since(m.since) >= t.reap_after)
                .map(|(n, _)| n.clone())
                .collect();
            for name in old {
                self.reap(now, &name);
            }
        }

        // Rescale foca's timings when the cluster size crosses a power of ten.
        let n = self.foca.num_members() + 1;
        if t.suspicion_timeout(n) != t.suspicion_timeout(self.scaled_for)
            || t.max_transmissions(n) != t.max_transmissions(self.scaled_for)
        {
            let max_packet = MAX_DATAGRAM - wire::overhead(&self.cfg.cluster_label);
            if self.foca.set_config(t.foca_config(n, max_packet)).is_ok() {
                self.scaled_for = n;
            }
        }

        self.check_reach(now);
        self.with_guard(now, |g, ctx| g.tick(now, ctx));
        self.health.tick(now);
    }
}
