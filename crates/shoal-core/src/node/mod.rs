//! The node: one member's whole state machine, sans-IO and deterministic.
//!
//! Owns foca, the truth, the metadata store, the guard and every decision the agent makes:
//! joining and re-announcing, metadata dissemination and anti-entropy, membership
//! anti-entropy (a sharded Bloom filter of known members each sync round), graceful leave, the
//! served view and its change events. Inputs are `(now, datagram | timeout | command)`;
//! outputs are polled: datagrams to send, events, and the next deadline (`poll_timeout`: the
//! earliest of its named timers and of foca's). It must never read a clock, draw OS
//! randomness or touch a socket.
//!
//! This file holds `Node`, its inputs, outputs and `after_input`; its parts are child
//! modules in this folder, one concern each, with explicit imports: `build` (construction),
//! `types` (config, errors, events, stats), `commands` (join, leave, metadata and services, the
//! guard's freeze and thaw), `queries` (every read of the served view, members,
//! health, leave progress and counters), `swim` (the foca adapter), `sync` (anti-entropy),
//! `served` (the served view's changes, the guard and reach checks), `tick` (the named
//! timers' jobs), `restart` (snapshot, restore, adopt, force-leave), `trust` (keyring and
//! trust), `identity` (member keys), `health` (own services' health, the mass-failure
//! hold), `gray` (reach reports), `lifeguard` (accusations), `outlier` (apps' reports and
//! outlier ejection, `core::outlier`) and `fleet` (user events and queries).

use crate::due::{DueQueue, DueSet};
use crate::guard::{Guard, GuardState};
use crate::hash::{FixedHashMap, HashSeed};
use crate::identity::NodeId;
use crate::meta::MetaRecord;
use crate::reach::Reach;
use crate::snapshot::SNAPSHOT_EVERY;
use crate::sync::ShoalMsg;
use crate::time::Time;
use crate::timers::{TimerName, TimerQueue, TimerTable};
use crate::trust::{Trust, TrustDrop};
use crate::truth::{ServedStatus, Truth, TruthState};
use crate::wire::{self, Kind};
use foca::Timer;
use rand::rngs::SmallRng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the `Leave` timer ends (`leave` or `announce_restart`): both finish the same way,
/// two gossip intervals later, told apart only by the event that says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Leave,
    Restart,
}

/// One member's whole state machine, sans-IO: the driver brings time, datagrams and
/// commands in and takes datagrams, events and the next deadline out.
///
/// Methods come in four kinds. Inputs, each taking `now`: `start` (once), `handle_datagram`,
/// `handle_timeout`, and commands (`join`, `leave`, `set_meta` and friends, `guard_*`,
/// `force_leave`, `report_outcomes`, the keyring ones); `restore` and `adopt_members` come
/// before `start`.
/// Outputs, to drain after every input: `poll_transmit` (datagrams to send), `poll_event`
/// (changes of the served view), `poll_snapshot` (a snapshot to persist, every 10 s while the
/// view changes) and `poll_timeout` (when to call `handle_timeout` next: the earliest of the
/// node's named timers and foca's). Queries (`members`, `services`,
/// `guard_report`, `stats`, `snapshot` ...) read the state and change nothing. So a driver
/// loops: wait for a datagram, a command or the deadline of `poll_timeout`; call the
/// matching input with the current time; drain the outputs; repeat.
pub struct Node {
    cfg: NodeConfig,
    foca: Swim,
    rng: SmallRng,
    /// The seed of the node's hash tables (derived from its seed; see `hash::HashSeed`).
    hashes: HashSeed,
    /// The caches this node shares with the nodes its driver built with the same context.
    shared: Arc<crate::shared::Shared>,
    /// Why each member is in its state, and its last transitions (`core::cause`).
    causes: crate::cause::Causes,
    /// Who sent datagrams we refused, and why (`core::drops`).
    drops: crate::drops::DropTable,
    truth: Truth,
    guard: Guard,
    /// Holds instances in the passing view on mass health failure (`node/health.rs`).
    health: crate::health_guard::HealthGuard,
    /// Paces the publication of this node's own services' health (`node/health.rs`).
    health_rate: crate::health_rate::HealthRate,
    /// Our services' checks and their damping (`core::health_damper`).
    checks: crate::health_damper::HealthChecks,
    /// Ejects instances apps report failing (`node/outlier.rs`).
    outliers: crate::outlier::Outliers,
    /// What we last served for members the truth does not know (restored ghosts); for the
    /// others it is kept in their truth entry.
    served_ghosts: FixedHashMap<Arc<str>, ServedStatus>,
    own: MetaRecord,
    /// This member's own keys: they sign its record (`node/identity.rs`); `None` without them
    /// (the simulator, the core's tests): the record goes unsigned.
    member_keys: Option<crate::member_key::MemberKeys>,
    /// Pair keys of the datagram tags with each peer (`pair`).
    pairs: pair::PairCache,
    out: Outbox,
    /// foca's timers and the restart graces, by (deadline, arming order).
    timers: TimerQueue<NodeTimer>,
    /// The node's own jobs, one slot each (`node/tick.rs`).
    named: TimerTable,
    events: VecDeque<Event>,
    index: u64,
    stats: Stats,
    now: Time,
    started: bool,
    /// Inside `adopt_members`: served statuses are recorded without events.
    adopting: bool,
    left: bool,
    /// What the `Leave` timer ends: a leave or a restart announcement.
    ending: Option<Ending>,
    /// The leave or restart announcement is finished (`leave_finished`).
    leave_finished: bool,
    idle: bool,
    /// Seeds given at start plus every address joined since.
    seeds: Vec<SocketAddr>,
    next_rejoin: Option<Time>,
    /// foca renewed our identity (the cluster declared us down): it is disconnected until a
    /// peer talks to the new identity, so we re-announce like an idle node (without telling the
    /// guard we are cut off).
    reconnecting: bool,
    /// Set when news worth spreading at once arrived (a failure): gossip after this input.
    gossip_now: bool,
    /// The newest record about us still to refute (its stamp, and whether any said we
    /// leave), and when the next refutation may go: one per probe period (`node::identity`).
    refute_pending: Option<((u64, u64), bool)>,
    /// Peers owed our ring (`State`) that had no key bound yet when it was due: served by
    /// their first datagram once bound (`node::trust`). Bounded by `MAX_WITHHELD`.
    catch_up_withheld: std::collections::BTreeSet<SocketAddr>,
    /// Ids of the keyring changes applied here, newest last (`node::trust`): one seen again
    /// is acknowledged, not applied again. Bounded by `MAX_OPS_APPLIED`.
    ops_applied: VecDeque<u64>,
    refute_after: Time,
    /// Announces left to send to random members right after connecting (fast discovery).
    bootstrap_left: u8,
    next_bootstrap: Time,
    bootstrap_gap: Duration,
    rejoin_backoff: Duration,
    next_sync: Time,
    /// Where the next digest's slice of names starts (a position in the truth's order).
    sync_cursor: usize,
    /// Rotates the name-space shard of the membership filter sent each sync round.
    member_part: u32,
    /// The bulk transfer of the member list after connecting (`core::formation`).
    pull: crate::formation::Pull,
    /// Bulk answers (`Intro`) sent this second, bounded for every asker together.
    answers: crate::formation::AnswerBudget,
    next_suspect_refresh: Time,
    next_reap: Time,
    /// Nodes we hold a record of but SWIM does not know (we missed their join): announce to
    /// their address at the given time if still unknown.
    discover: DueSet,
    /// Discovery announces per destination, and `Want` answers per requester
    /// (`core::addr_budget`): what records name cannot turn us into a reflector or amplifier.
    discover_budget: crate::addr_budget::AddrBudget,
    /// SWIM identities of bound names that no signed record proves yet (`node::identity`):
    /// taken into the truth once their owner's record does.
    unproven: std::collections::BTreeMap<Arc<str>, NodeId>,
    want_budget: crate::addr_budget::AddrBudget,
    /// Members whose metadata we lack, with when to ask for it (a peer first, then the member).
    fetch: DueQueue,
    /// Records without extension fields a peer pushed us, with when to ask their owner for
    /// its own copy: a v0.1.0 peer relays records without their fields (`verify_relayed`).
    verify: DueSet,
    /// Cluster size the foca config was last scaled for.
    scaled_for: usize,
    /// Sealing, opening and the keyring (see `core::trust`).
    trust: Trust,
    /// Keyring changes being spread (see `core::keyops`).
    rollouts: crate::keyops::Rollouts,
    /// The node's own evidence of whom it reaches (silence, reach checks), for the guard.
    reach: Reach,
    /// Several observers' evidence of members they cannot reach (`core::gray`).
    gray: crate::gray::Gray,
    /// SWIM's own state of the members `gray` removed (the truth records them `down`).
    gray_swim: BTreeMap<Arc<str>, TruthState>,
    /// When reach reports are next pushed (`node/gray.rs`).
    next_gray_push: Time,
    /// Members foca takes only what they say of themselves (removed on gray evidence or
    /// damped; `node/gray.rs`, `sync_distrusted`).
    distrusted: std::collections::BTreeSet<Arc<str>>,
    /// foca's incarnation of ourselves when last looked at (it grows when we refute).
    incarnation: u16,
    /// We refuted a suspicion of ourselves since the last reach check started.
    refuted: bool,
    /// foca's count of suspects when we last mirrored them.
    suspects_seen: usize,
    /// The guard state reach checks were last paced for, and the next heal pings.
    reach_state: GuardState,
    next_heal: Time,
    /// A snapshot is due for the driver to persist (`poll_snapshot`).
    snapshot_due: bool,
    /// The served view's index when the last snapshot was handed out.
    snapshot_index: Option<u64>,
    /// Cluster-wide thaws taken, at most one per `operator::THAW_MIN_INTERVAL`.
    thaws: crate::operator::ThawBound,
    /// User events and queries (`core::fleet`, `node/fleet.rs`).
    fleet: crate::fleet::Fleet,
    /// When `NodeTimer::Fleet` is armed for, and the next event anti-entropy.
    fleet_armed: Option<Time>,
    next_event_sync: Time,
    /// Network coordinates (`coords`), and the driver's clock in µs during an input
    /// given one (`handle_datagram_us`).
    coords: coords::CoordState,
    now_us: Option<u64>,
}

// The node's parts, one concern each (child modules: they reach the node's fields).
/// Building a node: `new` and `with_shared`.
mod build;
/// The commands: join, leave, metadata and services, the guard's freeze and thaw.
mod commands;
/// Network coordinates: probes timed, coordinates sent and taken, estimated RTTs.
mod coords;
/// User events and queries: commands, push rounds, event anti-entropy.
mod fleet;
/// Gray failures: probe outcomes in, reach reports out, removals applied.
mod gray;
/// Own services' health: the published statuses and the mass-failure hold.
mod health;
/// Member keys: the signed own record, bindings, key material sealed to one member.
mod identity;
/// Lifeguard's accusations between foca and the cluster.
mod lifeguard;
/// Apps' reports on instances and outlier ejection.
mod outlier;
/// Pair keys of the datagram tags with each peer.
mod pair;
/// The queries: what the node serves and knows, read without changing it.
mod queries;
/// Snapshot, restore, adopt, force-leave.
mod restart;
/// The served view, the guard and reach checks.
mod served;
/// The foca adapter.
mod swim;
/// Anti-entropy: digests, fetches, membership filters.
mod sync;
/// The named timers' jobs.
mod tick;
/// Trust-related parts of the node (keyring, rotation, answer budgets).
mod trust;
/// Config, errors, events, stats.
mod types;
pub use coords::RttEstimate;
pub use fleet::{QueryView, RecentEvent, UserEventView};
pub use outlier::{InstanceReport, ReportError};
use swim::{Outbox, Swim};
#[cfg(test)]
pub(crate) use trust::AMPLIFICATION;
pub(crate) use trust::MAX_FUTURE;
pub use trust::{KeysError, DEFAULT_MAX_MEMBERS};
pub(crate) use types::NodeTimer;
pub use types::{
    Event, EventKind, LocalEvent, MemberChange, NodeConfig, NodeError, Stats, Transmit,
};

/// Announces to random members right after connecting.
const BOOTSTRAP_ANNOUNCES: u8 = 3;

/// Max metadata fetches sent per tick (keeps a joiner of a large cluster from bursting).
const FETCH_PER_TICK: usize = 16;
/// Discovery announces to one address per `DISCOVERY_WINDOW`, whatever number of records
/// name it (a key holder writing a victim's address into many records must not make every
/// agent announce to it, 700 padded bytes each, many times a second).
pub(crate) const DISCOVERY_PER_ADDR: u32 = 1;
pub(crate) const DISCOVERY_WINDOW: Duration = Duration::from_secs(10);
/// `Want` answers (one datagram each) per requester per second: enough for a joiner to
/// fetch the records of a few hundred members a second.
pub(crate) const WANT_ANSWERS_PER_SEC: u32 = 32;
/// Names a `Want` of ours carries: about as many records as one datagram holds (it is
/// answered with one), so that a fetch of many records asks in several `Want`s.
pub(crate) const WANT_MAX_NAMES: usize = 8;

/// Batched metadata requests to random peers per tick. A node joining a formed cluster
/// lacks every record; one request names as many members as fit in a datagram, and the
/// peer answers with the records it holds, packed. Whatever the peer lacked is asked of
/// the member itself on the next pass.
const FETCH_BATCHES_PER_TICK: usize = 2;

/// Batched requests (to different random peers) for a missing record before asking the
/// member itself.
const PEER_FETCH_TRIES: u8 = 2;

/// Most member updates, and most metadata records, queued for piggybacking at once (each).
/// A burst of more changes than this (thousands of nodes joining together) would otherwise
/// queue them all on every node, far more than its datagrams can carry before they go stale;
/// the entries that were sent the most are dropped first, and anti-entropy (digests, member
/// filters, direct fetches) delivers whatever piggybacking missed. Serf bounds its intent
/// queue the same way (`max_queue_depth`, 4096).
pub(crate) const MAX_BACKLOG: usize = 1024;

/// Percent of each gossip datagram kept for metadata records while any are queued. A
/// member is of little use to service discovery without its record; with no share, the
/// member updates of a large join fill every datagram and the records wait (each node then
/// fetches every record by hand).
const RECORD_SHARE: u8 = 50;

/// Most `Intro` datagrams sent in answer to one membership filter.
const INTRO_MSGS_PER_ROUND: usize = 3;

impl Node {
    /// The context this node shares caches through (see `with_shared`).
    pub fn shared(&self) -> &Arc<crate::shared::Shared> {
        &self.shared
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Starts the node: publishes its metadata, announces to the seeds, arms the tick.
    pub fn start(&mut self, now: Time) {
        if self.started {
            return;
        }
        self.started = true;
        self.now = now;
        self.publish_own();
        self.drain_meta_changes(now);
        self.announce_to_seeds(now, false);
        self.next_rejoin = Some(now.plus(self.rejoin_backoff));
        self.next_sync = now.plus(self.cfg.timings.sync_interval);
        // The first snapshot is due at once, then every `SNAPSHOT_EVERY` if the view changed.
        self.snapshot_due = true;
        self.named
            .set(TimerName::Snapshot, Some(now.plus(SNAPSHOT_EVERY)));
        self.rearm(now);
        self.fleet_start(now);
        self.arm_timers();
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, data: &[u8]) {
        self.now = now;
        self.stats.rx_datagrams += 1;
        self.stats.rx_bytes += data.len() as u64;
        let pair = match data.get(3) {
            Some(f) if f & wire::FLAG_PAIR != 0 => self.pair_key(from, false),
            _ => None,
        };
        let opened =
            self.trust
                .open_paired(now, from, data, &self.cfg.cluster_label, pair.as_ref());
        let (kind, body) = match opened {
            Ok(x) => x,
            Err(e) => {
                self.record_drop(now, from, crate::drops::DropReason::of_trust(&e), data);
                match e {
                    TrustDrop::Wire(e) => self.count_wire_error(e),
                    e => self.count_trust_drop(e),
                }
                return;
            }
        };
        let decode_drops = self.stats.dropped_decode;
        self.reach.heard(now);
        let limit = self.generation_limit(now);
        // A stranger (maybe a spoofed source) gets at most a small multiple of what it sent.
        let answer = self.answer_start(from, data.len());
        if answer.is_none() {
            // A member's address: when it was last heard goes into the causes.
            self.causes.heard(now, from);
        }
        match kind {
            Kind::Swim => {
                self.foca.codec_mut().max_generation = limit;
                self.foca.broadcast_handler_mut().max_generation = limit;
                self.swim(now, |foca, rt| foca.handle_data(&body, rt));
            }
            Kind::Shoal => match ShoalMsg::decode(&body) {
                Ok(msg) => self.handle_shoal(now, from, msg),
                Err(crate::sync::MsgError::Later(_)) => self.stats.unknown_kinds += 1,
                Err(_) => self.stats.dropped_decode += 1,
            },
            Kind::Keys => self.handle_keys(now, from, &body),
            Kind::Operator => match crate::operator::OperatorMsg::decode(&body) {
                Ok(Some(msg)) => {
                    // `open` accepted the envelope: its flags say whether it came sealed.
                    let sealed = wire::parse(data, &self.cfg.cluster_label).is_ok_and(|e| e.sealed);
                    self.handle_operator(now, from, msg, sealed)
                }
                Ok(None) => self.stats.unknown_kinds += 1,
                Err(_) => self.stats.dropped_decode += 1,
            },
        }
        if self.stats.dropped_decode != decode_drops {
            self.record_drop(now, from, crate::drops::DropReason::Decode, data);
        }
        self.keys_catch_up(now);
        self.answer_cap(answer);
        self.after_input(now);
    }

    /// Notes a refused datagram in the table of recent drops (the counters are apart).
    fn record_drop(
        &mut self,
        now: Time,
        from: SocketAddr,
        reason: crate::drops::DropReason,
        data: &[u8],
    ) {
        let ring = self.trust.keyring();
        self.drops.record(now, from, reason, || {
            crate::drops::detail(reason, data, ring)
        });
    }

    /// Fires every timer due at `now` (deadline order; at one deadline foca's in arming
    /// order, then the named ones in `TimerName` order), one at a time, so that timers a
    /// handler arms are ordered with the rest. Call it when `poll_timeout` says so (earlier
    /// or later is harmless).
    pub fn handle_timeout(&mut self, now: Time) {
        self.arm_timers();
        loop {
            let queued = self.timers.next_deadline().filter(|t| *t <= now);
            let named = self.named.next().filter(|(t, _)| *t <= now);
            match (queued, named) {
                (None, None) => break,
                (Some(q), Some((n, _))) if n < q => self.fire_named(now),
                (Some(_), _) => {
                    if let Some((_, t)) = self.timers.pop_due(now) {
                        self.handle_timer(now, t);
                    }
                }
                (None, Some(_)) => self.fire_named(now),
            }
            self.arm_timers();
        }
    }

    /// The named timers armed now (tests: which jobs an idle node still has).
    #[cfg(test)]
    pub(crate) fn armed_named(&self) -> Vec<TimerName> {
        TimerName::ALL
            .into_iter()
            .filter(|n| self.named.get(*n).is_some())
            .collect()
    }

    /// When the named timer `name` last fired (tests).
    #[cfg(test)]
    pub(crate) fn named_fired(&self, name: TimerName) -> Option<Time> {
        self.named.fired(name)
    }

    /// Fires the earliest named timer due at `now`.
    fn fire_named(&mut self, now: Time) {
        let Some(name) = self.named.pop_due(now) else {
            return;
        };
        self.now = now;
        self.handle_named(now, name);
        if name == TimerName::Snapshot {
            // Not an input: nothing else runs, so that the schedule changes nothing else.
            return;
        }
        self.after_input(now);
    }

    /// One timer fired.
    fn handle_timer(&mut self, now: Time, timer: NodeTimer) {
        self.now = now;
        match timer {
            NodeTimer::Swim(t) => {
                if let Timer::ChangeSuspectToDown { member_id, .. } = &t {
                    // A down notice this input brings is this node's own verdict.
                    if self.truth.get(member_id.name()).is_some() {
                        self.causes.timed_out_here(member_id.name());
                    }
                }
                self.swim(now, |foca, rt| foca.handle_timer(t, rt));
            }
            NodeTimer::Fleet => self.fleet_timer(now),
            NodeTimer::RestartGrace(name) => {
                // Served `down` (or held) from now on if it is not back: `after_input` emits it.
                self.with_guard(now, |g, ctx| g.restart_expired(now, ctx, &name));
            }
        }
        self.after_input(now);
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next datagram to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.out.transmits.pop_front();
        if t.is_none() && self.out.transmits.capacity() > 64 {
            self.out.transmits = VecDeque::new();
        }
        // Every send path queues a plaintext envelope; it is sealed here, on its way out.
        t.map(|mut t| {
            let plain = t.data.len();
            let pad = self.pad_for(t.dst, &t.data);
            let pair = self.pair_key(t.dst, true);
            t.data = self
                .trust
                .seal_paired(self.now, t.dst, t.data, pad, pair.as_ref());
            self.stats.tx_bytes += (t.data.len() - plain) as u64;
            t
        })
    }

    /// The earliest deadline of the node's timers: call `handle_timeout` then. Never
    /// earlier than the last input's time (a job due already is due now).
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Time> {
        self.arm_timers();
        let named = self.named.next().map(|(t, _)| t);
        let at = match (self.timers.next_deadline(), named) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        at.map(|t| t.max(self.now))
    }

    /// Publishes our current record (the one place it is published): into the store and out
    /// as a broadcast. Returns it, for a direct push.
    fn publish_own(&mut self) -> MetaRecord {
        if let Some(k) = &self.member_keys {
            k.sign_record(&mut self.own);
        }
        let own = self.own.clone();
        self.store_mut().offer(own.clone());
        let _ = self.foca.add_broadcast(&own.encode());
        own
    }

    /// Moves the timers armed by the last input into the queue, in arming order.
    fn arm_timers(&mut self) {
        for (at, t) in self.out.timers.drain(..) {
            self.timers.push(at, t);
        }
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 64 {
            // A burst (a join of thousands) grew the queue: give the memory back.
            self.events = VecDeque::new();
        }
        e
    }

    // ----- internals ----------------------------------------------------------------------

    /// Applies what one input produced: foca notifications, metadata changes, guard changes.
    fn after_input(&mut self, now: Time) {
        self.stats.unknown_kinds += std::mem::take(&mut self.foca.broadcast_handler_mut().unknown);
        self.count_refused_records();
        if let Some((stamp, leaving)) = self.foca.broadcast_handler_mut().about_us.take() {
            self.refute_record_about_us(now, stamp, leaving);
        }
        self.flush_refute(now);
        self.lifeguard_exchange(now);
        self.gray_probes(now);
        self.coord_marks(now);
        let notes = std::mem::take(&mut self.out.notes);
        for n in notes {
            self.apply_notification(now, n);
        }
        // Suspicion is not notified by foca: when its count differs from ours, mirror it now
        // (the guard trips on correlated suspicion, so it must see it as it happens).
        if self.cfg.track_suspects && self.foca.num_suspects() != self.suspects_seen {
            self.refresh_suspects(now);
        }
        let inc = self.foca.incarnation();
        if inc != self.incarnation {
            if inc > self.incarnation {
                // We refuted a suspicion of ourselves: peers cannot hear us well.
                self.stats.refutes += 1;
                self.refuted = true;
                self.reach.refuted(now);
            }
            // (Lower: foca renewed our identity, which starts a new incarnation count.)
            self.incarnation = inc;
        }
        if std::mem::take(&mut self.gossip_now) && !self.left {
            self.swim(now, |foca, rt| foca.gossip(rt));
            // Gossiping cannot change membership, but keep the contract: no notes left behind.
            let notes = std::mem::take(&mut self.out.notes);
            for n in notes {
                self.apply_notification(now, n);
            }
        }
        self.drain_meta_changes(now);
        for name in self.guard.take_dirty() {
            self.emit_served(now, &name, false, false);
        }
        for view in self.guard.take_dropped_ghosts() {
            let name: Arc<str> = Arc::from(view.name.as_str());
            if self.truth.get(&name).is_some() {
                continue;
            }
            let prev = self.served_ghosts.remove(&name);
            self.push_reaped(now, prev, view);
        }
        let transitions = self.guard.take_transitions();
        if !transitions.is_empty() {
            for t in transitions {
                self.push_event(now, EventKind::Guard(t));
            }
            // A guard transition can change what is served for many members at once.
            let names: Vec<Arc<str>> = self.truth.iter().map(|(n, _)| n.clone()).collect();
            for n in names {
                self.emit_served(now, &n, false, false);
            }
        }
        self.health_flush(now);
        self.outlier_flush(now);
        for (at, name) in self.guard.take_restart_timers() {
            self.out.timers.push((at, NodeTimer::RestartGrace(name)));
        }
        self.causes.end_input();
        self.rescale_foca();
        self.rearm(now);
        self.arm_timers();
    }
}

/// Mixes the seed so that foca's and the node's random streams differ.
const SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;
