//! The node: one member's whole state machine, sans-IO and deterministic.
//!
//! Owns foca, the truth, the metadata store, the guard and every decision the agent makes:
//! joining and re-announcing, metadata dissemination and anti-entropy, membership
//! anti-entropy (a sharded Bloom filter of known members each sync round), graceful leave, the
//! served view and its change events. Inputs are `(now, datagram | timer | command)`; outputs
//! are polled: datagrams to send, timers to arm (absolute deadlines, to be delivered in
//! deadline order), events. It must never read a clock, draw OS randomness or touch a socket.

use crate::due::{DueQueue, DueSet};
use crate::guard::{Guard, GuardConfig, GuardCtx, GuardReport, GuardState, GuardTransition};
use crate::identity::{validate_name, NodeId};
use crate::meta::{MetaBroadcasts, MetaError, MetaRecord, NodeMeta, Service, SharedMetaStore};
use crate::profile::Timings;
use crate::reach::Reach;
use crate::snapshot::{Restored, Snapshot, SnapshotError, SNAPSHOT_VERSION};
use crate::sync::{
    pack_intro, pack_push, DigestEntry, IntroEntry, NameFilter, ShoalMsg, SHARD_TARGET,
};
use crate::time::Time;
use crate::trust::{Trust, TrustConfig, TrustDrop};
use crate::truth::{Instance, MemberView, ServedStatus, Truth, TruthState};
use crate::wire::{self, Kind, WireError, MAX_DATAGRAM, MAX_LABEL_LEN};
use foca::{Foca, OwnedNotification, PostcardCodec, Runtime, Timer};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Static configuration of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    /// The address other members send to (the agent's `--advertise`, or its bind address).
    pub advertise: SocketAddr,
    /// Datagrams with another label are dropped: keeps clusters on one network apart.
    pub cluster_label: String,
    pub timings: Timings,
    /// Addresses to announce to at start and whenever the node has no active peer.
    pub seeds: Vec<SocketAddr>,
    pub guard: GuardConfig,
    /// Refresh `suspect` statuses from foca every probe period (O(members)).
    pub track_suspects: bool,
}

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("invalid node name: {0}")]
    BadName(String),
    #[error("cluster label is {0} bytes; the limit is {MAX_LABEL_LEN}")]
    BadLabel(usize),
    #[error("invalid timings: {0}")]
    BadTimings(String),
    #[error("invalid guard settings: {0}")]
    BadGuard(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("this node has left the cluster; restart it to join again")]
    Left,
    #[error("no service named {0:?} is registered on this node")]
    NoSuchService(String),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("the node has started; members can only be adopted before")]
    AlreadyStarted,
    #[error("force-leave refused: {0}")]
    ForceLeave(String),
}

/// A timer the driver must deliver back at its deadline (in deadline order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeTimer {
    Swim(Timer<NodeId>),
    Tick,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub data: Vec<u8>,
}

/// How a member changed in the served view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    Joined,
    Status,
    Meta,
    Reaped,
}

/// Something that happened to this node itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "what")]
pub enum LocalEvent {
    /// Has active peers again.
    Active,
    /// Has no active peer: re-announcing to seeds and known peers.
    Idle,
    /// The cluster declared us down; we came back as a newer generation.
    Rejoined { generation: u64 },
    /// We left the cluster.
    Left,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    Member {
        change: MemberChange,
        previous: Option<ServedStatus>,
        member: MemberView,
    },
    Guard(GuardTransition),
    Local(LocalEvent),
}

/// A change of the served view (or of the node), numbered by a monotonic index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Counters of everything the node received, sent and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub dropped_oversized: u64,
    pub dropped_truncated: u64,
    pub dropped_bad_magic: u64,
    pub dropped_bad_version: u64,
    pub dropped_bad_flags: u64,
    pub dropped_wrong_label: u64,
    pub dropped_bad_kind: u64,
    /// A body that failed to decode (foca packet or shoal message).
    pub dropped_decode: u64,
    /// Metadata that broke a limit.
    pub dropped_bad_metadata: u64,
    /// Datagrams that claimed to come from ourselves.
    pub dropped_from_self: u64,
    /// Any other protocol error reported by foca.
    pub dropped_other: u64,
    /// Sealed datagrams that failed authentication (no key of ours, forged or altered).
    #[serde(default)]
    pub dropped_auth: u64,
    /// Plaintext datagrams refused (this node requires sealed ones).
    #[serde(default)]
    pub dropped_plaintext: u64,
    /// Authentic datagrams seen before.
    #[serde(default)]
    pub dropped_replay: u64,
    /// Authentic datagrams stamped further from our clock than the replay window.
    #[serde(default)]
    pub dropped_stale: u64,
    /// Records or members refused at decode: a bad name, a record about this node, a
    /// generation or version far in the future.
    #[serde(default)]
    pub dropped_refused: u64,
    /// Answers to a stranger cut to a small multiple of its request's size.
    #[serde(default)]
    pub answers_capped: u64,
    pub meta_records_received: u64,
    pub anti_entropy_rounds: u64,
    pub rejoin_attempts: u64,
    /// Announces to nodes known from their metadata but missed by SWIM.
    pub discovery_announces: u64,
    /// Membership anti-entropy rounds this node opened (filter of known members sent).
    pub member_sync_rounds: u64,
    /// Members a peer's filter lacked, sent back to it.
    pub member_intros_sent: u64,
    /// Members learned through membership anti-entropy and handed to SWIM.
    pub member_intros_applied: u64,
    /// Batched requests for missing metadata records sent to random peers.
    #[serde(default)]
    pub meta_batch_requests: u64,
    /// Requests for a missing metadata record sent to the member itself.
    #[serde(default)]
    pub meta_direct_requests: u64,
    /// Reach checks this node ran for its guard (pings to the baseline).
    #[serde(default)]
    pub reach_checks: u64,
    /// Reach pings sent (every round of every check).
    #[serde(default)]
    pub reach_pings: u64,
    /// Times this node refuted a suspicion of itself.
    #[serde(default)]
    pub refutes: u64,
}

impl Stats {
    pub fn dropped_total(&self) -> u64 {
        self.drops().iter().map(|(_, n)| n).sum()
    }

    /// Every drop counter with its reason label.
    pub fn drops(&self) -> [(&'static str, u64); 16] {
        [
            ("oversized", self.dropped_oversized),
            ("truncated", self.dropped_truncated),
            ("bad_magic", self.dropped_bad_magic),
            ("bad_version", self.dropped_bad_version),
            ("bad_flags", self.dropped_bad_flags),
            ("wrong_label", self.dropped_wrong_label),
            ("bad_kind", self.dropped_bad_kind),
            ("decode", self.dropped_decode),
            ("bad_metadata", self.dropped_bad_metadata),
            ("from_self", self.dropped_from_self),
            ("other", self.dropped_other),
            ("auth", self.dropped_auth),
            ("plaintext", self.dropped_plaintext),
            ("replay", self.dropped_replay),
            ("stale", self.dropped_stale),
            ("refused", self.dropped_refused),
        ]
    }
}

type Swim = Foca<NodeId, PostcardCodec, SmallRng, MetaBroadcasts>;

/// Outputs collected while handling one input.
#[derive(Default)]
struct Outbox {
    transmits: VecDeque<Transmit>,
    timers: Vec<(Time, NodeTimer)>,
    notes: Vec<OwnedNotification<NodeId>>,
    buf: Vec<u8>,
}

/// foca's view of the outside world during one call.
struct Rt<'a> {
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

pub struct Node {
    cfg: NodeConfig,
    foca: Swim,
    rng: SmallRng,
    store: SharedMetaStore,
    /// Lifeguard's accusations received through foca (`node_lifeguard`).
    accusations: crate::lifeguard::Inbox,
    truth: Truth,
    guard: Guard,
    /// What we last served for members the truth does not know (restored ghosts); for the
    /// others it is kept in their truth entry.
    served_ghosts: HashMap<Arc<str>, ServedStatus>,
    own: MetaRecord,
    out: Outbox,
    events: VecDeque<Event>,
    index: u64,
    stats: Stats,
    now: Time,
    started: bool,
    /// Inside `adopt_members`: served statuses are recorded without events.
    adopting: bool,
    left: bool,
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
    next_suspect_refresh: Time,
    next_reap: Time,
    /// Nodes we hold a record of but SWIM does not know (we missed their join): announce to
    /// their address at the given time if still unknown.
    discover: DueSet,
    /// Members whose metadata we lack, with when to ask for it (a peer first, then the member).
    fetch: DueQueue,
    /// Cluster size the foca config was last scaled for.
    scaled_for: usize,
    /// Sealing, opening and the keyring (see `core::trust`).
    trust: Trust,
    /// Keyring changes being spread (see `core::keyops`).
    rollouts: crate::keyops::Rollouts,
    /// The node's own evidence of whom it reaches (silence, reach checks), for the guard.
    reach: Reach,
    /// foca's incarnation of ourselves when last looked at (it grows when we refute).
    incarnation: u16,
    /// We refuted a suspicion of ourselves since the last reach check started.
    refuted: bool,
    /// foca's count of suspects when we last mirrored them.
    suspects_seen: usize,
    /// The guard state reach checks were last paced for, and the next heal pings.
    reach_state: GuardState,
    next_heal: Time,
}

/// Lifeguard's accusations between foca and the cluster.
#[path = "node_lifeguard.rs"]
mod node_lifeguard;
/// Trust-related parts of the node (keyring, rotation, answer budgets): a child module so
/// that this file stays about membership.
#[path = "node_trust.rs"]
mod node_trust;
use node_trust::session_seed;
pub use node_trust::{KeysError, AMPLIFICATION, MAX_FUTURE};

/// Announces to random members right after connecting.
const BOOTSTRAP_ANNOUNCES: u8 = 3;

/// Max metadata fetches sent per tick (keeps a joiner of a large cluster from bursting).
const FETCH_PER_TICK: usize = 16;

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
pub const MAX_BACKLOG: usize = 1024;

/// Percent of each gossip datagram kept for metadata records while any are queued. A
/// member is of little use to service discovery without its record; with no share, the
/// member updates of a large join fill every datagram and the records wait (each node then
/// fetches every record by hand).
const RECORD_SHARE: u8 = 50;

/// Most `Intro` datagrams sent in answer to one membership filter.
const INTRO_MSGS_PER_ROUND: usize = 3;

impl Node {
    /// Creates a node. `generation` must grow across restarts of the same name (the agent
    /// uses its start time in ms); `seed` drives every random choice.
    pub fn new(
        cfg: NodeConfig,
        generation: u64,
        meta: NodeMeta,
        seed: u64,
        now: Time,
    ) -> Result<Self, NodeError> {
        validate_name(&cfg.name).map_err(NodeError::BadName)?;
        if cfg.cluster_label.len() > MAX_LABEL_LEN {
            return Err(NodeError::BadLabel(cfg.cluster_label.len()));
        }
        cfg.timings.validate().map_err(NodeError::BadTimings)?;
        cfg.guard.validate().map_err(NodeError::BadGuard)?;
        meta.validate()?;
        let id = NodeId::new(&cfg.name, cfg.advertise, generation);
        let store = SharedMetaStore::with_seed(seed ^ SEED_MIX.rotate_left(29));
        let accusations = crate::lifeguard::Inbox::default();
        let max_packet = MAX_DATAGRAM - wire::overhead(&cfg.cluster_label);
        let mut foca = Foca::with_custom_broadcast(
            id.clone(),
            cfg.timings.foca_config(1, max_packet),
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
            MetaBroadcasts {
                store: store.clone(),
                own: id.name().clone(),
                accusations: accusations.clone(),
            },
        );
        foca.set_lifeguard(cfg.timings.lifeguard());
        foca.set_backlog_limit(MAX_BACKLOG);
        foca.set_custom_broadcast_share(RECORD_SHARE);
        let own = MetaRecord {
            name: id.name().clone(),
            addr: id.addr(),
            generation,
            version: 1,
            leaving: false,
            meta,
        };
        let mut truth = Truth::with_seed(seed ^ SEED_MIX.rotate_left(17));
        truth.set(now, &id, TruthState::Alive);
        let guard = Guard::new(cfg.guard.clone(), now);
        let seeds = cfg.seeds.clone();
        let rejoin_backoff = cfg.timings.rejoin_min;
        Ok(Node {
            foca,
            rng: SmallRng::seed_from_u64(seed ^ SEED_MIX),
            store,
            truth,
            guard,
            served_ghosts: HashMap::new(),
            own,
            out: Outbox::default(),
            events: VecDeque::new(),
            index: 0,
            stats: Stats::default(),
            now,
            started: false,
            adopting: false,
            left: false,
            idle: true,
            seeds,
            next_rejoin: None,
            reconnecting: false,
            gossip_now: false,
            bootstrap_left: 0,
            next_bootstrap: now,
            bootstrap_gap: Duration::ZERO,
            rejoin_backoff,
            next_sync: now,
            sync_cursor: 0,
            member_part: 0,
            next_suspect_refresh: now,
            next_reap: now,
            fetch: DueQueue::default(),
            discover: DueSet::default(),
            scaled_for: 1,
            accusations,
            trust: Trust::new(TrustConfig::default(), session_seed(seed, generation)),
            rollouts: Default::default(),
            reach: Reach::new(cfg.timings.probe_period, cfg.timings.probe_rtt),
            incarnation: 0,
            refuted: false,
            suspects_seen: 0,
            reach_state: GuardState::Normal,
            next_heal: now,
            cfg,
        })
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Starts the node: publishes its metadata, announces to the seeds, arms the tick.
    pub fn start(&mut self, now: Time) {
        if self.started {
            return;
        }
        self.started = true;
        self.now = now;
        let own = self.own.clone();
        self.store.lock().offer(own.clone());
        let _ = self.foca.add_broadcast(&own.encode());
        self.drain_meta_changes(now);
        self.announce_to_seeds(now, false);
        self.next_rejoin = Some(now.plus(self.rejoin_backoff));
        self.next_sync = now.plus(self.cfg.timings.sync_interval);
        self.out
            .timers
            .push((now.plus(self.cfg.timings.tick), NodeTimer::Tick));
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, data: &[u8]) {
        self.now = now;
        self.stats.rx_datagrams += 1;
        self.stats.rx_bytes += data.len() as u64;
        let (kind, body) = match self.trust.open(now, from, data, &self.cfg.cluster_label) {
            Ok(x) => x,
            Err(TrustDrop::Wire(e)) => {
                self.count_wire_error(e);
                return;
            }
            Err(e) => {
                self.count_trust_drop(e);
                return;
            }
        };
        self.reach.heard(now);
        let limit = self.generation_limit(now);
        // A stranger (maybe a spoofed source) gets at most a small multiple of what it sent.
        let answer = self.answer_start(from, data.len());
        match kind {
            Kind::Swim => {
                crate::identity::with_generation_limit(limit, || {
                    self.swim(now, |foca, rt| foca.handle_data(&body, rt))
                });
            }
            Kind::Shoal => match ShoalMsg::decode(&body) {
                Ok(msg) => self.handle_shoal(now, from, msg),
                Err(_) => self.stats.dropped_decode += 1,
            },
            Kind::Keys => self.handle_keys(now, from, &body),
            Kind::Operator => match crate::operator::OperatorMsg::decode(&body) {
                Ok(msg) => self.handle_operator(msg),
                Err(_) => self.stats.dropped_decode += 1,
            },
        }
        self.answer_cap(answer);
        self.after_input(now);
    }

    /// A timer armed earlier fired.
    pub fn handle_timer(&mut self, now: Time, timer: NodeTimer) {
        self.now = now;
        match timer {
            NodeTimer::Swim(t) => {
                self.swim(now, |foca, rt| foca.handle_timer(t, rt));
            }
            NodeTimer::Tick => {
                self.tick(now);
                if !self.left {
                    self.out
                        .timers
                        .push((now.plus(self.cfg.timings.tick), NodeTimer::Tick));
                }
            }
        }
        self.after_input(now);
    }

    /// Joins the cluster through these addresses (they are also kept as seeds for rejoins).
    pub fn join(&mut self, now: Time, addrs: &[SocketAddr]) -> Result<(), NodeError> {
        if self.left {
            return Err(NodeError::Left);
        }
        self.now = now;
        for a in addrs {
            if !self.seeds.contains(a) {
                self.seeds.push(*a);
            }
            self.announce(now, *a);
        }
        self.after_input(now);
        Ok(())
    }

    /// Leaves gracefully: marks our record as leaving (so that peers serve `left`, not a
    /// failure), tells a few peers and stops. Returns once the datagrams are queued.
    pub fn leave(&mut self, now: Time) -> Result<(), NodeError> {
        if self.left {
            return Ok(());
        }
        self.now = now;
        self.own.version += 1;
        self.own.leaving = true;
        let own = self.own.clone();
        self.store.lock().offer(own.clone());
        let _ = self.foca.add_broadcast(&own.encode());
        // Tell a few peers directly too, so that the intent does not depend on piggybacking.
        let push = ShoalMsg::Push {
            records: vec![Arc::new(own)],
        };
        let peers: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id().addr())
            .take(self.cfg.timings.gossip_fanout.max(3))
            .collect();
        for p in peers {
            self.send_shoal(p, &push);
        }
        self.swim(now, |foca, rt| foca.leave_cluster(rt));
        self.left = true;
        let me = self.foca.identity().clone();
        self.set_truth(now, &me, TruthState::Left);
        self.push_event(now, EventKind::Local(LocalEvent::Left));
        self.after_input(now);
        Ok(())
    }

    /// Replaces this node's metadata (tags and services) and spreads the new version.
    pub fn set_meta(&mut self, now: Time, meta: NodeMeta) -> Result<(), NodeError> {
        if self.left {
            return Err(NodeError::Left);
        }
        meta.validate()?;
        if meta == self.own.meta {
            return Ok(());
        }
        self.now = now;
        self.own.version += 1;
        self.own.meta = meta;
        let own = self.own.clone();
        self.store.lock().offer(own.clone());
        let _ = self.foca.add_broadcast(&own.encode());
        self.after_input(now);
        Ok(())
    }

    /// Sets and deletes tags of this node.
    pub fn set_tags(
        &mut self,
        now: Time,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), NodeError> {
        let mut meta = self.own.meta.clone();
        for k in delete {
            meta.tags.remove(k);
        }
        for (k, v) in set {
            meta.tags.insert(k.clone(), v.clone());
        }
        self.set_meta(now, meta)
    }

    /// Registers (or replaces) a service of this node.
    pub fn register_service(&mut self, now: Time, svc: Service) -> Result<(), NodeError> {
        svc.validate()?;
        let mut meta = self.own.meta.clone();
        meta.services.insert(svc.name.clone(), svc);
        self.set_meta(now, meta)
    }

    /// Deregisters a service of this node.
    pub fn deregister_service(&mut self, now: Time, name: &str) -> Result<(), NodeError> {
        let mut meta = self.own.meta.clone();
        if meta.services.remove(name).is_none() {
            return Err(NodeError::NoSuchService(name.to_string()));
        }
        self.set_meta(now, meta)
    }

    /// Operator override of the guard.
    pub fn guard_freeze(&mut self, now: Time, who: &str) {
        self.now = now;
        self.guard.freeze(now, who);
        self.after_input(now);
    }

    /// Operator override of the guard.
    pub fn guard_thaw(&mut self, now: Time, who: &str) {
        self.now = now;
        // The operator says the truth is right: the last reach check no longer counts.
        self.reach.forget();
        self.guard.thaw(now, who);
        self.after_input(now);
    }

    /// Operator removal of a held member: served `down` at once. Returns whether it was held.
    pub fn guard_release(&mut self, now: Time, name: &str) -> bool {
        self.now = now;
        let done = self.guard.release(name);
        self.after_input(now);
        done
    }

    /// Operator `force-leave` (Serf's name): `name` failed for good; stop holding it here and
    /// tell every active member to do the same (`core::operator`). Refused for this node and
    /// for a member SWIM believes alive or suspect (it would come back at once). Returns
    /// whether it was held here and how many members were told.
    pub fn force_leave(&mut self, now: Time, name: &str) -> Result<(bool, usize), NodeError> {
        use crate::operator::OperatorMsg;
        self.now = now;
        if name == self.cfg.name {
            return Err(NodeError::ForceLeave(
                "this is the local node; use leave to leave gracefully".into(),
            ));
        }
        match self.truth.get(name).map(|m| m.state) {
            Some(TruthState::Alive | TruthState::Suspect) => {
                return Err(NodeError::ForceLeave(format!(
                    "{name} is alive according to SWIM; force-leave only removes failed or \
                     held members (stop it first, or let it leave gracefully)"
                )))
            }
            None if self.guard.ghosts().all(|(n, _)| **n != *name) => {
                return Err(NodeError::ForceLeave(format!(
                    "no member named {name:?} is known to this agent"
                )))
            }
            _ => {}
        }
        let released = self.guard.release(name);
        let body = OperatorMsg::ForceLeave {
            name: name.to_string(),
        }
        .encode();
        let me = self.foca.identity().addr();
        let peers: Vec<SocketAddr> = self
            .truth
            .iter()
            .filter(|(_, m)| m.state.is_active() && m.id.addr() != me)
            .map(|(_, m)| m.id.addr())
            .collect();
        for dst in &peers {
            wire::write_header(&mut self.out.buf, &self.cfg.cluster_label, Kind::Operator);
            self.out.buf.extend_from_slice(&body);
            if self.out.buf.len() + wire::SEAL_OVERHEAD > MAX_DATAGRAM {
                break;
            }
            self.stats.tx_datagrams += 1;
            self.stats.tx_bytes += self.out.buf.len() as u64;
            self.out.transmits.push_back(Transmit {
                dst: *dst,
                data: self.out.buf.clone(),
            });
        }
        self.after_input(now);
        Ok((released, peers.len()))
    }

    /// An operator command from another agent: applied only where SWIM agrees the member is
    /// gone (a live member is never removed by it).
    fn handle_operator(&mut self, msg: crate::operator::OperatorMsg) {
        use crate::operator::OperatorMsg;
        match msg {
            OperatorMsg::ForceLeave { name } => {
                let gone = match self.truth.get(name.as_str()) {
                    Some(m) => !m.state.is_active(),
                    None => true,
                };
                if gone && name != self.cfg.name {
                    self.guard.release(&name);
                }
            }
        }
    }

    /// Restores a snapshot taken by this node before a restart; call before `start`. A fresh
    /// enough snapshot is served as `warming` until synced; its peers are used to rejoin
    /// either way.
    pub fn restore(
        &mut self,
        now: Time,
        snap: Snapshot,
        now_unix_ms: u64,
    ) -> Result<Restored, NodeError> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(snap.version).into());
        }
        if snap.node != self.cfg.name {
            return Err(SnapshotError::WrongNode {
                expected: self.cfg.name.clone(),
                found: snap.node,
            }
            .into());
        }
        if self.started {
            return Err(SnapshotError::AlreadyStarted.into());
        }
        self.now = now;
        // Up to 16 known peers join the seeds; the rest stay reachable through the view.
        let me = self.cfg.advertise;
        let mut peers: Vec<SocketAddr> = snap
            .known_peers
            .iter()
            .copied()
            .filter(|a| *a != me && !self.seeds.contains(a))
            .collect();
        let mut added = 0;
        while !peers.is_empty() && added < 16 {
            let p = peers.swap_remove(self.rng.random_range(0..peers.len()));
            self.seeds.push(p);
            added += 1;
        }
        let age = snap.age(now_unix_ms);
        if age > self.cfg.guard.snapshot_max_age {
            return Ok(Restored::PeersOnly { age, peers: added });
        }
        let members: Vec<MemberView> = snap
            .members
            .into_iter()
            .filter(|m| m.name != self.cfg.name)
            .collect();
        let n = members.iter().filter(|m| m.status.is_serving()).count();
        self.guard.restore(now, members, snap.baseline, age);
        for (name, g) in self.guard.ghosts() {
            self.served_ghosts.insert(name.clone(), g.status);
        }
        let views: Vec<MemberView> = self.guard.ghosts().map(|(_, g)| g.clone()).collect();
        for view in views {
            self.push_event(
                now,
                EventKind::Member {
                    change: MemberChange::Joined,
                    previous: None,
                    member: view,
                },
            );
        }
        self.after_input(now);
        Ok(Restored::Served {
            members: n,
            peers: added,
        })
    }

    /// Takes over the membership of a formed cluster before `start`, as a full state
    /// transfer from a peer would deliver it (foca's `apply_many` "state replication"): the
    /// records go to the metadata store, the members to SWIM as alive, without spreading
    /// them again (everyone holds them already). Each member is served from here on, without
    /// an event (the caller knows what it handed in: a formed cluster of thousands would
    /// otherwise queue thousands of events on each node). The simulator uses this to start a cluster
    /// as formed, so that a run measures faults on a steady cluster rather than the storm of
    /// every node joining at once. Our own entry, if listed, is skipped.
    pub fn adopt_members(
        &mut self,
        now: Time,
        members: &[(NodeId, Arc<MetaRecord>)],
    ) -> Result<(), NodeError> {
        if self.started {
            return Err(NodeError::AlreadyStarted);
        }
        self.now = now;
        let own = self.foca.identity().clone();
        self.truth.reserve(members.len());
        {
            let mut store = self.store.lock();
            store.reserve(members.len());
            for (id, rec) in members {
                if id.name() != own.name() && rec.name == *id.name() {
                    store.offer(rec.clone());
                }
            }
            // Served with their members below: no separate change events.
            store.take_changed();
        }
        let ids = members
            .iter()
            .filter(|(id, _)| id.name() != own.name() && id.addr() != own.addr())
            .map(|(id, _)| foca::Member::alive(id.clone()));
        self.adopting = true;
        self.swim(now, |foca, rt| foca.apply_many(ids, false, rt));
        self.after_input(now);
        self.adopting = false;
        Ok(())
    }

    /// What to persist so that a restart serves the last view (see `restore`).
    pub fn snapshot(&self, now_unix_ms: u64) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            node: self.cfg.name.clone(),
            taken_at_unix_ms: now_unix_ms,
            members: self.members(),
            baseline: self.guard.baseline().map(|n| n.to_string()).collect(),
            known_peers: self.known_peers(),
            guard: self.guard.report(),
        }
    }

    // ----- outputs ------------------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.out.transmits.pop_front();
        if t.is_none() && self.out.transmits.capacity() > 64 {
            self.out.transmits = VecDeque::new();
        }
        // Every send path queues a plaintext envelope; it is sealed here, on its way out.
        t.map(|mut t| {
            let plain = t.data.len();
            let pad = self.pad_for(t.dst, &t.data);
            t.data = self.trust.seal(self.now, t.dst, t.data, pad);
            self.stats.tx_bytes += (t.data.len() - plain) as u64;
            t
        })
    }

    /// Next timer to arm: deliver it back with `handle_timer` at its deadline.
    pub fn poll_timer(&mut self) -> Option<(Time, NodeTimer)> {
        self.out.timers.pop()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 64 {
            // A burst (a join of thousands) grew the queue: give the memory back.
            self.events = VecDeque::new();
        }
        e
    }

    // ----- queries ------------------------------------------------------------------------

    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn own_meta(&self) -> &NodeMeta {
        &self.own.meta
    }

    /// Our current metadata record, as peers receive it.
    pub fn own_record(&self) -> &MetaRecord {
        &self.own
    }

    pub fn has_left(&self) -> bool {
        self.left
    }

    /// True while foca has no active peer.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Active peers according to SWIM (not counting ourselves).
    pub fn active_peers(&self) -> usize {
        self.foca.num_members()
    }

    /// Index of the last event (the watch stream's index).
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn truth(&self) -> &Truth {
        &self.truth
    }

    pub fn guard_report(&self) -> GuardReport {
        self.guard.report()
    }

    pub fn served_status(&self, name: &str) -> Option<ServedStatus> {
        let m = self.truth.get(name)?;
        Some(self.guard.served(name, m.state))
    }

    /// The served view: every known member with its served status, sorted by name (plus,
    /// after a restart, the restored members the truth does not know yet, as `held`).
    pub fn members(&self) -> Vec<MemberView> {
        let store = self.store.lock();
        let mut v: Vec<MemberView> = self
            .truth
            .iter()
            .map(|(name, m)| self.view(name, m, store.get(name)))
            .collect();
        for (name, g) in self.guard.ghosts() {
            if self.truth.get(name).is_none() {
                v.push(g.clone());
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn member(&self, name: &str) -> Option<MemberView> {
        let Some(m) = self.truth.get(name) else {
            return self
                .guard
                .ghosts()
                .find(|(n, _)| ***n == *name)
                .map(|(_, g)| g.clone());
        };
        let store = self.store.lock();
        Some(self.view(name, m, store.get(name)))
    }

    fn view(
        &self,
        name: &str,
        m: &crate::truth::TruthMember,
        rec: Option<&MetaRecord>,
    ) -> MemberView {
        let mut v = MemberView::build(m, self.guard.served(name, m.state), rec);
        if v.meta_version == 0 {
            // Warming: metadata not received yet; serve the restored one meanwhile.
            if let Some(g) = self.guard.restored(name) {
                v.tags = g.tags.clone();
                v.services = g.services.clone();
                v.meta_version = g.meta_version;
            }
        }
        v
    }

    pub fn local_member(&self) -> MemberView {
        let id = self.foca.identity();
        self.member(id.name()).unwrap_or_else(|| {
            MemberView::build(
                &crate::truth::TruthMember {
                    id: id.clone(),
                    state: TruthState::Alive,
                    since: self.now,
                    served: None,
                },
                ServedStatus::Alive,
                Some(&self.own),
            )
        })
    }

    /// Every service with its instances on members the served view says are serving
    /// (alive, suspect or held), sorted by service name then node.
    pub fn services(&self) -> BTreeMap<String, Vec<Instance>> {
        let mut out: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for m in self.members() {
            if !m.status.is_serving() {
                continue;
            }
            for (s, inst) in m.services.iter().zip(m.instances()) {
                if !self.guard.serves_instance(&s.name, m.status) {
                    continue;
                }
                out.entry(s.name.clone()).or_default().push(inst);
            }
        }
        out
    }

    /// Addresses worth announcing to after a restart: every member we know of but ourselves.
    pub fn known_peers(&self) -> Vec<SocketAddr> {
        let me = self.foca.identity().addr();
        let mut v: Vec<SocketAddr> = self
            .truth
            .iter()
            .map(|(_, m)| m.id.addr())
            .chain(self.guard.ghosts().map(|(_, g)| g.addr))
            .filter(|a| *a != me)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Backlog of SWIM updates and metadata broadcasts still being disseminated.
    pub fn backlog(&self) -> (usize, usize) {
        (
            self.foca.updates_backlog(),
            self.foca.custom_broadcast_backlog(),
        )
    }

    // ----- internals ----------------------------------------------------------------------

    /// The address of one active member, chosen at random.
    fn random_peer(&mut self) -> Option<SocketAddr> {
        let mut one = Vec::with_capacity(1);
        self.foca.random_members(1, &mut one, &mut self.rng);
        one.first().map(|m| m.id().addr())
    }

    /// Runs a foca call with this node's runtime and counts its error, if any.
    fn swim(
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
    }

    fn count_wire_error(&mut self, e: WireError) {
        let s = &mut self.stats;
        match e {
            WireError::Oversized => s.dropped_oversized += 1,
            WireError::Truncated => s.dropped_truncated += 1,
            WireError::BadMagic => s.dropped_bad_magic += 1,
            WireError::BadVersion => s.dropped_bad_version += 1,
            WireError::BadFlags => s.dropped_bad_flags += 1,
            WireError::WrongLabel => s.dropped_wrong_label += 1,
            WireError::BadKind => s.dropped_bad_kind += 1,
        }
    }

    fn count_foca_error(&mut self, e: &foca::Error) {
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

    fn announce(&mut self, now: Time, addr: SocketAddr) {
        if addr == self.foca.identity().addr() {
            return;
        }
        self.swim(now, |foca, rt| foca.announce(NodeId::placeholder(addr), rt));
    }

    /// Announces to every seed, and with `known` also to a few random known peers.
    fn announce_to_seeds(&mut self, now: Time, known: bool) {
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

    fn send_shoal(&mut self, dst: SocketAddr, msg: &ShoalMsg) {
        let body = msg.encode();
        wire::write_header(&mut self.out.buf, &self.cfg.cluster_label, Kind::Shoal);
        self.out.buf.extend_from_slice(&body);
        if self.out.buf.len() > MAX_DATAGRAM {
            return;
        }
        self.stats.tx_datagrams += 1;
        self.stats.tx_bytes += self.out.buf.len() as u64;
        self.out.transmits.push_back(Transmit {
            dst,
            data: self.out.buf.clone(),
        });
    }

    fn shoal_budget(&self) -> usize {
        MAX_DATAGRAM - wire::overhead(&self.cfg.cluster_label) - 8
    }

    fn handle_shoal(&mut self, now: Time, from: SocketAddr, msg: ShoalMsg) {
        if self.left {
            return;
        }
        match msg {
            ShoalMsg::Digest {
                fingerprint,
                count,
                entries,
                replies,
            } => {
                let (mine_fp, mine_count) = {
                    let s = self.store.lock();
                    (s.fingerprint(), s.len() as u32)
                };
                if fingerprint == mine_fp && count == mine_count {
                    return;
                }
                let mut want = Vec::new();
                let mut push = Vec::new();
                {
                    let s = self.store.lock();
                    for e in entries {
                        match s.get(&e.name) {
                            None => want.push(e.name),
                            Some(r) if r.stamp() < (e.generation, e.version) => want.push(e.name),
                            Some(r) if r.stamp() > (e.generation, e.version) => {
                                push.extend(s.get_shared(&e.name).cloned())
                            }
                            Some(_) => {}
                        }
                    }
                }
                for m in pack_push(push, self.shoal_budget()) {
                    self.send_shoal(from, &m);
                }
                if !want.is_empty() {
                    self.send_want(from, want);
                }
                if replies > 0 {
                    let d = self.digest(replies.min(2) - 1);
                    self.send_shoal(from, &d);
                }
            }
            ShoalMsg::Want { names } => {
                let recs: Vec<Arc<MetaRecord>> = {
                    let s = self.store.lock();
                    names
                        .iter()
                        .take(256)
                        .filter_map(|n| s.get_shared(n).cloned())
                        .collect()
                };
                for m in pack_push(recs, self.shoal_budget()) {
                    self.send_shoal(from, &m);
                }
            }
            ShoalMsg::Members {
                part,
                parts,
                filter,
            } => self.answer_member_filter(from, part, parts, &filter),
            ShoalMsg::Intro { members } => self.apply_intros(now, members),
            ShoalMsg::Ping { nonce } => self.send_shoal(from, &ShoalMsg::Pong { nonce }),
            ShoalMsg::Pong { nonce } => {
                // A peer SWIM has given up on answers: it is back, tell SWIM so now rather
                // than at the next periodic announce (heals a partition in one round trip).
                if let Some((name, addr)) = self.reach.on_pong(now, nonce) {
                    let known_alive = self
                        .truth
                        .get(&name)
                        .is_some_and(|m| m.state.is_active() && m.id.addr() == addr);
                    if !known_alive {
                        self.announce(now, addr);
                    }
                }
            }
            ShoalMsg::Push { records } => {
                let mut relay = Vec::new();
                let mut s = self.store.lock();
                for r in records {
                    // Nobody but us writes our record.
                    if *r.name == *self.cfg.name {
                        self.stats.dropped_refused += 1;
                        continue;
                    }
                    // Most records are not newer than ours: check that before validating.
                    if !s.is_newer(&r.name, r.stamp()) {
                        self.stats.meta_records_received += 1;
                        continue;
                    }
                    if crate::identity::validate_name(&r.name).is_err() {
                        self.stats.dropped_bad_metadata += 1;
                        continue;
                    }
                    if !crate::meta::stamp_acceptable(r.stamp(), self.generation_limit(now)) {
                        self.stats.dropped_refused += 1;
                        continue;
                    }
                    let r = Arc::try_unwrap(r).unwrap_or_else(|a| (*a).clone());
                    let Ok(r) = crate::intern::record(r) else {
                        self.stats.dropped_bad_metadata += 1;
                        continue;
                    };
                    self.stats.meta_records_received += 1;
                    let leaving = r.leaving.then(|| r.encode());
                    if s.offer(r) {
                        relay.extend(leaving);
                    }
                }
                drop(s);
                // A graceful leave must reach everyone as intent before the failure detector
                // calls it a failure: spread leaving records learned by direct push.
                for data in relay {
                    let _ = self.foca.add_broadcast(&data);
                }
            }
        }
        let _ = now;
    }

    fn send_want(&mut self, dst: SocketAddr, mut names: Vec<Arc<str>>) {
        let budget = self.shoal_budget();
        while !names.is_empty() {
            let mut size = 4;
            let mut n = 0;
            for name in &names {
                size += name.len() + 2;
                if size > budget {
                    break;
                }
                n += 1;
            }
            let n = n.max(1);
            let rest = names.split_off(n.min(names.len()));
            self.send_shoal(dst, &ShoalMsg::Want { names });
            names = rest;
        }
    }

    /// Opens a membership anti-entropy round with `dst`: a Bloom filter of the members we
    /// know as active in one shard of the name space (the shard rotates every round).
    fn send_member_filter(&mut self, dst: SocketAddr) {
        let active = self
            .truth
            .iter()
            .filter(|(_, m)| m.state.is_active())
            .count();
        let parts = active.div_ceil(SHARD_TARGET).clamp(1, u32::MAX as usize) as u32;
        let part = self.member_part % parts;
        self.member_part = self.member_part.wrapping_add(1);
        let names: Vec<&Arc<str>> = self
            .truth
            .iter()
            .filter(|(_, m)| m.state.is_active() && (parts == 1 || m.id.shard(parts) == part))
            .map(|(n, _)| n)
            .collect();
        // part, parts, hash count and length prefix take at most 16 bytes.
        let mut filter = NameFilter::for_names(names.len(), self.shoal_budget() - 16);
        for n in names {
            filter.insert(n);
        }
        self.stats.member_sync_rounds += 1;
        self.send_shoal(
            dst,
            &ShoalMsg::Members {
                part,
                parts,
                filter,
            },
        );
    }

    /// Answers a membership filter with the active members of its shard it lacks.
    fn answer_member_filter(
        &mut self,
        from: SocketAddr,
        part: u32,
        parts: u32,
        filter: &NameFilter,
    ) {
        if parts == 0 || parts > crate::sync::MAX_PARTS || part >= parts || !filter.is_valid() {
            self.stats.dropped_decode += 1;
            return;
        }
        let mut missing: Vec<IntroEntry> = self
            .truth
            .iter()
            .filter(|(n, m)| {
                m.state.is_active()
                    && m.id.addr() != from
                    && (parts == 1 || m.id.shard(parts) == part)
                    && !filter.contains(n)
            })
            .map(|(n, m)| IntroEntry {
                name: n.clone(),
                addr: m.id.addr(),
                generation: m.id.generation(),
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        // More than fits: start at a random place so that repeated rounds cover them all.
        let start = self.rng.random_range(0..missing.len());
        missing.rotate_left(start);
        for m in pack_intro(missing, self.shoal_budget(), INTRO_MSGS_PER_ROUND) {
            if let ShoalMsg::Intro { members } = &m {
                self.stats.member_intros_sent += members.len() as u64;
            }
            self.send_shoal(from, &m);
        }
    }

    /// Hands members a peer knows as active (and we do not) to SWIM, as a feed would.
    fn apply_intros(&mut self, now: Time, members: Vec<IntroEntry>) {
        let own_addr = self.foca.identity().addr();
        let mut ids = Vec::new();
        for e in members.into_iter().take(256) {
            if *e.name == *self.cfg.name || e.addr == own_addr {
                continue;
            }
            if validate_name(&e.name).is_err() {
                self.stats.dropped_bad_metadata += 1;
                continue;
            }
            if e.generation > self.generation_limit(now) {
                self.stats.dropped_refused += 1;
                continue;
            }
            // Known in this generation or a newer one: SWIM already has the better word.
            if let Some(m) = self.truth.get(&e.name) {
                if m.id.generation() >= e.generation {
                    continue;
                }
            }
            ids.push(NodeId::new(&e.name, e.addr, e.generation));
        }
        if ids.is_empty() {
            return;
        }
        self.stats.member_intros_applied += ids.len() as u64;
        // Re-broadcast like any news: others likely missed these members too. (Tried without:
        // the 1,000-node join reached full view later on 2 seeds of 3, never on one.)
        self.swim(now, |foca, rt| {
            foca.apply_many(ids.into_iter().map(foca::Member::alive), true, rt)
        });
    }

    /// A digest of our records: the fingerprint of all of them and a rotating slice.
    fn digest(&mut self, replies: u8) -> ShoalMsg {
        let budget = self.shoal_budget() - 24;
        let s = self.store.lock();
        let mut entries = Vec::new();
        let mut size = 0;
        let start = self.sync_cursor;
        let mut walked = 0;
        let names = self.truth.names_rotated(start);
        for name in names {
            if let Some(r) = s.get(name) {
                let e = DigestEntry {
                    name: name.clone(),
                    generation: r.generation,
                    version: r.version,
                };
                if size + e.max_encoded_len() > budget {
                    break;
                }
                size += e.max_encoded_len();
                entries.push(e);
            }
            walked += 1;
        }
        self.sync_cursor = start.wrapping_add(walked);
        ShoalMsg::Digest {
            fingerprint: s.fingerprint(),
            count: s.len() as u32,
            entries,
            replies,
        }
    }

    fn tick(&mut self, now: Time) {
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
    }

    /// Runs `f` on the guard with everything it may look at.
    fn with_guard<R>(&mut self, now: Time, f: impl FnOnce(&mut Guard, &GuardCtx<'_>) -> R) -> R {
        let store = self.store.lock();
        let ctx = GuardCtx {
            truth: &self.truth,
            meta: &store,
            self_name: &self.cfg.name,
            active_peers: self.foca.num_members(),
            idle: self.idle,
            reach: self.reach.view(now),
        };
        f(&mut self.guard, &ctx)
    }

    /// Advances the reach check in flight and starts one when the guard wants it (or when
    /// we just refuted a suspicion of ourselves: the cluster cannot hear us well).
    fn check_reach(&mut self, now: Time) {
        let connected = !self.idle && !self.reconnecting;
        self.reach.set_connected(now, connected);
        let period = self.cfg.timings.probe_period;
        let state = self.guard.state();
        if state != self.reach_state {
            // A new episode (or its end): check promptly again.
            self.reach_state = state;
            self.reach.set_spacing(period);
        }
        let (pings, finished) = self.reach.poll(now);
        self.send_pings(pings);
        if finished {
            self.with_guard(now, |g, ctx| g.on_reach(now, ctx));
            if matches!(
                self.guard.state(),
                GuardState::Frozen | GuardState::Isolated
            ) {
                // While the fault lasts, full checks back off (1, 2, 4 ... 16 probe
                // periods apart); heal pings below notice the end of it meanwhile.
                let wider = (self.reach.spacing() * 2).min(period * 16);
                self.reach.set_spacing(wider);
            }
        }
        // (Also while foca is idle: an agent cut off from everyone needs these most.)
        if matches!(state, GuardState::Frozen | GuardState::Isolated) && now >= self.next_heal {
            self.next_heal = now.plus(period);
            let missing = self.missing_peers();
            let pings = self.reach.heal_pings(missing, &mut self.rng);
            self.send_pings(pings);
        }
        if !connected || !self.reach.can_start(now) {
            return;
        }
        let wanted = self.with_guard(now, |g, ctx| g.wants_reach_check(ctx));
        if !(wanted || std::mem::take(&mut self.refuted)) {
            return;
        }
        let mut suspects = std::collections::HashSet::new();
        let mut candidates: Vec<(Arc<str>, SocketAddr)> = self
            .guard
            .baseline_unordered()
            .filter_map(|n| match self.truth.get(n) {
                Some(m) if m.state == TruthState::Left => None,
                Some(m) => {
                    if m.state == TruthState::Suspect {
                        suspects.insert(n.clone());
                    }
                    Some((n.clone(), m.id.addr()))
                }
                None => self.guard.ghost(n).map(|g| (n.clone(), g.addr)),
            })
            .collect();
        // The baseline's order is its hash table's: sort so that the sample replays exactly.
        candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let pings = self.reach.start(now, candidates, &suspects, &mut self.rng);
        self.stats.reach_checks = self.reach.checks;
        self.send_pings(pings);
    }

    /// Baseline peers SWIM does not call alive, or that the last check did not reach,
    /// sorted by name (so that the pick replays exactly).
    fn missing_peers(&self) -> Vec<(Arc<str>, SocketAddr)> {
        let unreached = self.reach.view(self.now).last.map(|r| &r.unreached);
        let mut out: Vec<(Arc<str>, SocketAddr)> = self
            .guard
            .baseline_unordered()
            .filter_map(|n| match self.truth.get(n) {
                Some(m) if m.state == TruthState::Left => None,
                Some(m)
                    if m.state == TruthState::Alive
                        && !unreached.is_some_and(|u| u.contains(n)) =>
                {
                    None
                }
                Some(m) => Some((n.clone(), m.id.addr())),
                None => self.guard.ghost(n).map(|g| (n.clone(), g.addr)),
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn send_pings(&mut self, pings: Vec<(SocketAddr, u64)>) {
        for (addr, nonce) in pings {
            self.stats.reach_pings += 1;
            self.send_shoal(addr, &ShoalMsg::Ping { nonce });
        }
    }

    /// Asks for the metadata records still missing once their wait is over: first in
    /// batches from random peers (a member known for a while is known with its record by
    /// most), then, for what that did not bring, from each member itself. Entries whose
    /// record came meanwhile, or whose member is gone, are skipped without using up budget.
    fn fetch_missing_meta(&mut self, now: Time) {
        let budget = self.shoal_budget();
        let retry_at = now.plus(self.cfg.timings.meta_fetch_after);
        let mut batch: Vec<Arc<str>> = Vec::new();
        let mut batch_size = 4;
        let mut batches = 0;
        let mut direct = 0;
        let mut looked = 0;
        let peer = self.fetch_peer();
        while looked < FETCH_PER_TICK * 64 {
            let Some((name, at, tries)) = self.fetch.pop_due(now) else {
                break;
            };
            looked += 1;
            let Some(m) = self.truth.get(&name) else {
                continue;
            };
            if !m.state.is_active() || !self.needs_meta(&m.id) {
                continue;
            }
            let owner = m.id.addr();
            match peer {
                Some(p) if tries < PEER_FETCH_TRIES => {
                    if batch_size + name.len() + 2 > budget {
                        self.send_meta_batch(std::mem::take(&mut batch), p, batches);
                        batch_size = 4;
                        batches += 1;
                        if batches >= FETCH_BATCHES_PER_TICK {
                            self.fetch.unpop(name, at, tries);
                            break;
                        }
                    }
                    batch_size += name.len() + 2;
                    batch.push(name.clone());
                    self.fetch.push(name, retry_at, tries + 1);
                }
                _ => {
                    if direct >= FETCH_PER_TICK {
                        self.fetch.unpop(name, at, tries);
                        break;
                    }
                    direct += 1;
                    self.stats.meta_direct_requests += 1;
                    self.send_want(owner, vec![name]);
                }
            }
        }
        if let (false, Some(p)) = (batch.is_empty(), peer) {
            self.send_meta_batch(batch, p, batches);
        }
    }

    /// Sends batch number `index` of this tick's metadata requests: the first to `first`,
    /// each later one to another random peer.
    fn send_meta_batch(&mut self, names: Vec<Arc<str>>, first: SocketAddr, index: usize) {
        let dst = if index == 0 {
            first
        } else {
            self.random_peer().unwrap_or(first)
        };
        self.stats.meta_batch_requests += 1;
        self.send_shoal(dst, &ShoalMsg::Want { names });
    }

    fn refresh_suspects(&mut self, now: Time) {
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
                    if m.state == TruthState::Suspect {
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
                .map(|t| (t.state, t.id.generation()));
            if let Some((TruthState::Alive, g)) = cur {
                if g <= m.id().generation() {
                    self.set_truth(now, m.id(), TruthState::Suspect);
                }
            }
        }
    }

    fn reap(&mut self, now: Time, name: &Arc<str>) {
        if **name == *self.cfg.name {
            return;
        }
        let Some(m) = self.truth.remove(name) else {
            return;
        };
        self.store.lock().remove(name);
        self.discover.remove(name);
        let prev = m.served.or(self.served_ghosts.remove(name));
        self.with_guard(now, |g, ctx| {
            g.on_change(now, ctx, name, Some(m.state), None)
        });
        let view = MemberView::build(&m, prev.unwrap_or(ServedStatus::Down), None);
        self.push_event(
            now,
            EventKind::Member {
                change: MemberChange::Reaped,
                previous: prev,
                member: view,
            },
        );
    }

    /// Records a SWIM state for a member, tells the guard, and emits the served change.
    fn set_truth(&mut self, now: Time, id: &NodeId, state: TruthState) {
        let (changed, prev) = self.truth.set(now, id, state);
        if !changed {
            return;
        }
        self.with_guard(now, |g, ctx| {
            g.on_change(now, ctx, id.name(), prev, Some(state))
        });
        self.emit_served(now, id.name(), prev.is_none(), false);
    }

    /// Emits an event if what we serve for `name` changed (or its metadata did).
    fn emit_served(&mut self, now: Time, name: &Arc<str>, joined: bool, meta_changed: bool) {
        if self.adopting {
            if let Some(m) = self.truth.get(name) {
                let status = self.guard.served(name, m.state);
                self.swap_served(name, status);
            }
            return;
        }
        // Most calls change nothing: decide that before building the view.
        if !joined && !meta_changed {
            if let Some(m) = self.truth.get(name) {
                let status = self.guard.served(name, m.state);
                if m.served == Some(status)
                    && (self.served_ghosts.is_empty() || !self.served_ghosts.contains_key(name))
                {
                    return;
                }
            }
        }
        let Some(view) = self.member(name) else {
            return;
        };
        let prev = self.swap_served(name, view.status);
        let change = if joined || prev.is_none() {
            MemberChange::Joined
        } else if prev != Some(view.status) {
            MemberChange::Status
        } else if meta_changed {
            MemberChange::Meta
        } else {
            return;
        };
        self.push_event(
            now,
            EventKind::Member {
                change,
                previous: prev,
                member: view,
            },
        );
    }

    /// Records what is served for `name`; returns what was served before.
    fn swap_served(&mut self, name: &Arc<str>, status: ServedStatus) -> Option<ServedStatus> {
        let ghost = if self.served_ghosts.is_empty() {
            None
        } else {
            self.served_ghosts.remove(name)
        };
        match self.truth.swap_served(name, status) {
            Some(prev) => prev.or(ghost),
            None => {
                self.served_ghosts.insert(name.clone(), status);
                ghost
            }
        }
    }

    fn push_event(&mut self, now: Time, kind: EventKind) {
        self.index += 1;
        self.events.push_back(Event {
            index: self.index,
            at_ms: now.as_millis(),
            kind,
        });
    }

    /// Applies what one input produced: foca notifications, metadata changes, guard changes.
    fn after_input(&mut self, now: Time) {
        self.lifeguard_exchange(now);
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
            self.push_event(
                now,
                EventKind::Member {
                    change: MemberChange::Reaped,
                    previous: prev,
                    member: view,
                },
            );
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
    }

    fn needs_meta(&self, id: &NodeId) -> bool {
        self.store
            .lock()
            .get(id.name())
            .map(|r| r.generation < id.generation())
            .unwrap_or(true)
    }

    fn apply_notification(&mut self, now: Time, n: OwnedNotification<NodeId>) {
        match n {
            OwnedNotification::MemberUp(id) => {
                if let Some(cur) = self.truth.get(id.name()) {
                    if cur.id.generation() > id.generation() && cur.state.is_active() {
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
                    .map(|m| m.state.is_active())
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
                        self.set_truth(now, &old, TruthState::Down);
                    }
                }
                if let Some(cur) = self.truth.get(new.name()) {
                    if cur.state.is_active() && cur.id.generation() <= new.generation() {
                        let st = cur.state;
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
                self.own.generation = new.generation();
                self.own.version += 1;
                self.own.leaving = false;
                let own = self.own.clone();
                self.store.lock().offer(own.clone());
                let _ = self.foca.add_broadcast(&own.encode());
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

    /// Queues a fetch of `name`'s record. A member learned through gossip has its record
    /// travelling beside it: ask only if it has not come after `meta_fetch_after` (a record
    /// that changed while we could not hear it is caught by the anti-entropy digest). While
    /// we are joining, though, members come from feeds without their records, and nothing
    /// will bring those: ask at the next tick, or the apps on this host see every service
    /// empty for that long.
    fn queue_fetch(&mut self, now: Time, name: &Arc<str>) {
        if self.idle || self.bootstrap_left > 0 {
            // At the head: nothing queued is due earlier than now.
            self.fetch.unpop(name.clone(), now, 0);
        } else {
            self.fetch
                .push(name.clone(), now.plus(self.cfg.timings.meta_fetch_after), 0);
        }
    }

    fn record_says_leaving(&self, id: &NodeId) -> bool {
        self.store
            .lock()
            .get(id.name())
            .map(|r| r.leaving && r.generation >= id.generation())
            .unwrap_or(false)
    }

    /// Whether SWIM misses the node behind `name`'s record: unknown, or known down in an
    /// older life than the record's (it restarted and we missed it).
    fn missing_from_swim(&self, name: &str) -> Option<SocketAddr> {
        let store = self.store.lock();
        let rec = store.get(name)?;
        if rec.leaving || *rec.name == *self.cfg.name {
            return None;
        }
        match self.truth.get(name) {
            None => Some(rec.addr),
            Some(m) if !m.state.is_active() && m.id.generation() < rec.generation => Some(rec.addr),
            Some(_) => None,
        }
    }

    fn schedule_discovery(&mut self, now: Time, name: &Arc<str>) {
        if self.missing_from_swim(name).is_some() {
            self.discover
                .insert_if_absent(name.clone(), now.plus(self.cfg.timings.meta_fetch_after));
        }
    }

    fn drain_meta_changes(&mut self, now: Time) {
        let changed = self.store.lock().take_changed();
        for name in changed {
            let Some(m) = self.truth.get(&name) else {
                self.schedule_discovery(now, &name);
                continue;
            };
            let id = m.id.clone();
            let state = m.state;
            if !state.is_active() {
                self.schedule_discovery(now, &name);
            }
            let leaving = self.record_says_leaving(&id);
            if leaving && state != TruthState::Left && *name != *self.cfg.name {
                // Graceful leave: intent, not failure (also reclassifies an earlier `down`).
                self.set_truth(now, &id, TruthState::Left);
            } else if state == TruthState::Alive {
                self.with_guard(now, |g, ctx| g.on_record(ctx, &name));
            }
            self.emit_served(now, &name, false, true);
        }
    }
}

/// Mixes the seed so that foca's and the node's random streams differ.
const SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;
