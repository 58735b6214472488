//! The SWIM adapter: foca's runtime (`Rt`: datagrams and timers out, notifications in), the
//! one place foca is called (`swim`), its errors counted, and what its notifications do to
//! the truth (members up and down, renames, idle/active, our own renewed identity).
//!
//! A child module of `node` (it reaches the node's fields). Must not send anything but
//! foca's own datagrams and announces, and must stay sans-IO.

use super::{EventKind, LocalEvent, Node, NodeTimer, Stats, Transmit, BOOTSTRAP_ANNOUNCES};
use crate::identity::NodeId;
use crate::meta_gossip::MetaBroadcasts;
use crate::meta_store::MetaStore;
use crate::time::Time;
use crate::truth::TruthState;
use crate::wire::{self, Kind, WireError};
use foca::{Foca, OwnedNotification, Runtime, Timer};
use rand::rngs::SmallRng;
use rand::RngExt;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(super) type Swim = Foca<NodeId, crate::codec::SwimCodec, SmallRng, MetaBroadcasts>;

impl Node {
    /// Every node's latest record: a field of foca's broadcast handler, which stores the
    /// records foca receives (foca patch 0020 gives the access; no lock, no shared handle).
    pub(super) fn store(&self) -> &MetaStore {
        &self.foca.broadcast_handler().store
    }

    /// The store, to change it (see `store`).
    pub(super) fn store_mut(&mut self) -> &mut MetaStore {
        &mut self.foca.broadcast_handler_mut().store
    }
}

/// Outputs collected while handling one input.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) transmits: VecDeque<Transmit>,
    /// Timers armed during this input, in arming order; moved into the node's queue when
    /// the input is done (`arm_timers`).
    pub(super) timers: Vec<(Time, NodeTimer)>,
    pub(super) notes: Vec<OwnedNotification<NodeId>>,
    pub(super) buf: Vec<u8>,
}

/// foca's view of the outside world during one call.
pub(super) struct Rt<'a> {
    now: Time,
    label: &'a str,
    out: &'a mut Outbox,
    stats: &'a mut Stats,
}

impl Runtime<NodeId> for Rt<'_> {
    fn notify(&mut self, notification: foca::Notification<'_, NodeId>) {
        self.out.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        wire::write_header(&mut self.out.buf, self.label, Kind::Swim);
        self.out.buf.extend_from_slice(data);
        self.stats.tx_datagrams += 1;
        self.stats.tx_bytes += self.out.buf.len() as u64;
        self.out.transmits.push_back(Transmit {
            dst: to.addr(),
            data: self.out.buf.clone(),
        });
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.out
            .timers
            .push((self.now.plus(after), NodeTimer::Swim(event)));
    }
}

impl Node {
    /// The address of one active member, chosen at random.
    pub(super) fn random_peer(&mut self) -> Option<SocketAddr> {
        let mut one = Vec::with_capacity(1);
        self.foca.random_members(1, &mut one, &mut self.rng);
        one.first().map(|m| m.id().addr())
    }

    /// Runs a foca call with this node's runtime and counts its error, if any.
    pub(super) fn swim(
        &mut self,
        now: Time,
        f: impl FnOnce(&mut Swim, &mut Rt<'_>) -> Result<(), foca::Error>,
    ) {
        self.foca.set_now(Duration::from_millis(now.0));
        let res = {
            let mut rt = Rt {
                now,
                label: &self.cfg.cluster_label,
                out: &mut self.out,
                stats: &mut self.stats,
            };
            f(&mut self.foca, &mut rt)
        };
        if let Err(e) = res {
            self.count_foca_error(&e);
        }
        self.stats.members_refused = self.foca.members_refused();
    }

    pub(super) fn count_wire_error(&mut self, e: WireError) {
        let s = &mut self.stats;
        match e {
            WireError::Oversized => s.dropped_oversized += 1,
            WireError::Truncated => s.dropped_truncated += 1,
            WireError::BadMagic => s.dropped_bad_magic += 1,
            WireError::BadVersion(_) => s.dropped_bad_version += 1,
            WireError::BadFlags => s.dropped_bad_flags += 1,
            WireError::WrongLabel => s.dropped_wrong_label += 1,
            WireError::BadKind => s.dropped_bad_kind += 1,
        }
    }

    pub(super) fn count_foca_error(&mut self, e: &foca::Error) {
        let s = &mut self.stats;
        match e {
            foca::Error::Decode(_) | foca::Error::MalformedPacket => s.dropped_decode += 1,
            foca::Error::CustomBroadcast(_) => s.dropped_bad_metadata += 1,
            foca::Error::DataFromOurselves => s.dropped_from_self += 1,
            foca::Error::DataTooBig => s.dropped_oversized += 1,
            // Not a bad packet: foca refusing to act while we are not connected.
            foca::Error::NotConnected => {}
            _ => s.dropped_other += 1,
        }
    }

    pub(super) fn announce(&mut self, now: Time, addr: SocketAddr) {
        if addr == self.foca.identity().addr() {
            return;
        }
        self.swim(now, |foca, rt| foca.announce(NodeId::placeholder(addr), rt));
    }

    pub(super) fn refresh_suspects(&mut self, now: Time) {
        self.suspects_seen = self.foca.num_suspects();
        // Nobody suspected, by foca or by us: nothing to compare (most periods; walking
        // every member each period was a visible share of a large simulation).
        if self.foca.num_suspects() == 0 && self.truth.suspects().next().is_none() {
            return;
        }
        let mut suspect_now: Vec<foca::Member<NodeId>> = Vec::new();
        for m in self.foca.iter_members() {
            if m.state() == foca::State::Suspect {
                suspect_now.push(m.clone());
            }
        }
        let was: Vec<Arc<str>> = self.truth.suspects().cloned().collect();
        for name in was {
            if !suspect_now.iter().any(|m| *m.id().name() == name) {
                if let Some(m) = self.truth.get(&name) {
                    if m.state() == TruthState::Suspect {
                        let id = m.id.clone();
                        self.set_truth(now, &id, TruthState::Alive);
                    }
                }
            }
        }
        for m in suspect_now {
            let cur = self
                .truth
                .get(m.id().name())
                .map(|t| (t.state(), t.id.generation()));
            if let Some((TruthState::Alive, g)) = cur {
                if g <= m.id().generation() {
                    self.set_truth(now, m.id(), TruthState::Suspect);
                }
            }
        }
    }

    pub(super) fn apply_notification(&mut self, now: Time, n: OwnedNotification<NodeId>) {
        match n {
            OwnedNotification::MemberUp(id) => {
                if let Some(cur) = self.truth.get(id.name()) {
                    if cur.id.generation() > id.generation() && cur.state().is_active() {
                        return; // stale news about an older life
                    }
                }
                let leaving = self.record_says_leaving(&id);
                self.set_truth(
                    now,
                    &id,
                    if leaving {
                        TruthState::Left
                    } else {
                        TruthState::Alive
                    },
                );
                if self.needs_meta(&id) {
                    self.queue_fetch(now, id.name());
                }
                if !leaving && self.fleet.is_spreading() {
                    self.fleet_member_up(id.addr());
                }
            }
            OwnedNotification::MemberDown(id) => {
                if let Some(cur) = self.truth.get(id.name()) {
                    if cur.id.generation() > id.generation() {
                        return; // an older life of a member that is back
                    }
                }
                let state = if self.record_says_leaving(&id) {
                    TruthState::Left
                } else {
                    TruthState::Down
                };
                let was_active = self
                    .truth
                    .get(id.name())
                    .map(|m| m.state().is_active())
                    .unwrap_or(false);
                self.set_truth(now, &id, state);
                // First news of a failure: pass it on now rather than at the next gossip tick,
                // so the whole cluster hears it within a few network hops.
                if was_active && state == TruthState::Down {
                    self.gossip_now = true;
                }
            }
            OwnedNotification::Rename(old, new) => {
                if old.name() != new.name() {
                    // Another node took over this address.
                    if self
                        .truth
                        .get(old.name())
                        .map(|m| m.id == old)
                        .unwrap_or(false)
                    {
                        self.causes.replaced(old.name());
                        self.set_truth(now, &old, TruthState::Down);
                    }
                }
                if let Some(cur) = self.truth.get(new.name()) {
                    // (A member removed on gray evidence is recorded down; SWIM's own state
                    // is what carries over to its new identity.)
                    let st = self
                        .gray_swim
                        .get(new.name())
                        .copied()
                        .unwrap_or(cur.state());
                    if st.is_active() && cur.id.generation() <= new.generation() {
                        self.set_truth(now, &new, st);
                    }
                }
                if self.needs_meta(&new) {
                    self.queue_fetch(now, new.name());
                }
            }
            OwnedNotification::Active => {
                // foca just armed its probe timer one period from now. Shift it by a random
                // fraction of a period (memberlist staggers its probe ticker the same way) so
                // that nodes which connected together do not all probe on the same beat: a
                // failure then meets a probe within ~1/N of a period instead of up to a whole
                // one.
                let period = self.cfg.timings.probe_period.as_millis() as u64;
                if period > 1 {
                    let jitter = self.rng.random_range(0..period);
                    for (at, t) in self.out.timers.iter_mut() {
                        if matches!(t, NodeTimer::Swim(Timer::ProbeRandomMember(_))) {
                            *at = Time(at.0 + jitter);
                        }
                    }
                }
                self.idle = false;
                self.reconnecting = false;
                // A freshly joined node knows only what one Feed carried: ask a few random
                // members for more, quickly, instead of waiting for the periodic announce.
                self.bootstrap_left = BOOTSTRAP_ANNOUNCES;
                self.pull.start();
                self.bootstrap_gap = self.cfg.timings.rejoin_min;
                self.next_bootstrap = now.plus(self.bootstrap_gap);
                self.next_rejoin = None;
                self.rejoin_backoff = self.cfg.timings.rejoin_min;
                self.push_event(now, EventKind::Local(LocalEvent::Active));
            }
            OwnedNotification::Idle | OwnedNotification::Defunct => {
                if !self.idle {
                    self.idle = true;
                    self.push_event(now, EventKind::Local(LocalEvent::Idle));
                }
                if !self.left {
                    self.rejoin_backoff = self.cfg.timings.rejoin_min;
                    self.next_rejoin = Some(now);
                }
            }
            OwnedNotification::Rejoin(new) => {
                // foca is disconnected now, and peers still address our old identity: announce
                // (accepted by address) to seeds and known peers until one answers.
                if !self.left {
                    self.reconnecting = true;
                    self.rejoin_backoff = self.cfg.timings.rejoin_min;
                    self.next_rejoin = Some(now);
                }
                // The cluster declared us down; foca renewed our identity.
                // (Never lower: a refutation may have raised it past our identity's.)
                self.own.generation = self.own.generation.max(new.generation());
                self.own.version += 1;
                self.own.leaving = false;
                self.publish_own();
                self.set_truth(now, &new, TruthState::Alive);
                self.push_event(
                    now,
                    EventKind::Local(LocalEvent::Rejoined {
                        generation: new.generation(),
                    }),
                );
            }
        }
    }
}
