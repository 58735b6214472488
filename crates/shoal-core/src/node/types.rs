//! The node's vocabulary: its configuration, errors, timers, datagrams out, events and
//! counters. Plain data; a child module of `node` (re-exported from there). Must not hold
//! any behaviour beyond naming and summing.

use crate::guard::{GuardConfig, GuardTransition};
use crate::identity::NodeId;
use crate::meta::{MetaError, NodeMeta};
use crate::profile::Timings;
use crate::snapshot::SnapshotError;
use crate::truth::{MemberView, ServedStatus};
use crate::wire::MAX_LABEL_LEN;
use foca::Timer;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use thiserror::Error;

/// Static configuration of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name.
    pub name: String,
    /// The address other members send to (the agent's `--advertise`, or its bind address).
    pub advertise: SocketAddr,
    /// Datagrams with another label are dropped: keeps clusters on one network apart.
    pub cluster_label: String,
    /// Timing knobs.
    pub timings: Timings,
    /// Addresses to announce to at start and whenever the node has no active peer.
    pub seeds: Vec<SocketAddr>,
    /// The guard's configuration.
    pub guard: GuardConfig,
    /// Refresh `suspect` statuses from foca every probe period (O(members)).
    pub track_suspects: bool,
    /// Ejection of instances apps report failing (`core::outlier`).
    pub outlier: crate::outlier::OutlierConfig,
    /// Bounds of user events and queries, and the query names this node answers.
    pub fleet: crate::fleet::FleetConfig,
}

#[derive(Debug, Error)]
/// Why a node could not be built or a command was refused.
pub enum NodeError {
    #[error("invalid node name: {0}")]
    /// Not a valid name.
    BadName(String),
    #[error("cluster label is {0} bytes; the limit is {MAX_LABEL_LEN}")]
    /// The cluster label is longer than `MAX_LABEL_LEN` (its length).
    BadLabel(usize),
    #[error("invalid timings: {0}")]
    /// Timings out of bounds.
    BadTimings(String),
    #[error("invalid guard settings: {0}")]
    /// Guard configuration out of bounds.
    BadGuard(String),
    #[error(transparent)]
    /// Metadata that breaks a limit.
    Meta(#[from] MetaError),
    #[error("this node has left the cluster; restart it to join again")]
    /// The node has left.
    Left,
    #[error("no service instance or service named {0:?} is registered on this node")]
    /// No such service on this node.
    NoSuchService(String),
    #[error(
        "service {name:?} has several instances on this node ({}): give the instance id",
        ids.join(", ")
    )]
    /// Several instances of the service: give the instance id.
    AmbiguousService {
        /// The service.
        name: String,
        /// Its instance ids.
        ids: Vec<String>,
    },
    #[error(transparent)]
    /// The snapshot could not be restored.
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    /// An event or query was refused.
    Fleet(#[from] crate::fleet::FleetError),
    #[error("the node has started; members can only be adopted before")]
    /// Only allowed before the node starts.
    AlreadyStarted,
    #[error("force-leave refused: {0}")]
    /// A force-leave was refused (why).
    ForceLeave(String),
    #[error("invalid outlier settings: {0}")]
    /// Outlier configuration out of bounds.
    BadOutlier(String),
}

/// The instance `key` names in `meta`: the instance of that id, else the one instance of the
/// service of that name (`NodeError::AmbiguousService` when it has several).
pub(super) fn resolve(meta: &NodeMeta, key: &str) -> Result<String, NodeError> {
    if meta.services.contains_key(key) {
        return Ok(key.to_string());
    }
    let ids: Vec<String> = meta
        .services
        .iter()
        .filter(|(_, s)| s.name == key)
        .map(|(id, _)| id.clone())
        .collect();
    match ids.len() {
        0 => Err(NodeError::NoSuchService(key.to_string())),
        1 => Ok(ids.into_iter().next().unwrap_or_default()),
        _ => Err(NodeError::AmbiguousService {
            name: key.to_string(),
            ids,
        }),
    }
}

/// A keyed timer of the node, many armed at a time, kept in its ordered queue (the node's
/// jobs are named timers, `core::timers::TimerName`; drivers see only `Node::poll_timeout`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeTimer {
    Swim(Timer<NodeId>),
    /// The restart grace of this member may have run out (`Guard::restart_expired`).
    RestartGrace(std::sync::Arc<str>),
    /// A push round of events and queries, or the event anti-entropy (`node/fleet.rs`).
    Fleet,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dst: SocketAddr,
    /// The datagram.
    pub data: Vec<u8>,
}

/// How a member changed in the served view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    /// The member appeared.
    Joined,
    /// Its served status changed.
    Status,
    /// Its metadata changed.
    Meta,
    /// It was forgotten.
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
    Rejoined {
        /// The new generation.
        generation: u64,
    },
    /// We left the cluster.
    Left,
    /// The leave is finished: its datagrams were handed out and it had two gossip
    /// intervals to spread. Drivers stop the node now (`Node::leave_finished`).
    LeaveFinished,
    /// The restart announcement is finished (`Node::announce_restart`): as a leave's, its
    /// datagrams were handed out and it had two gossip intervals to spread. Drivers stop the
    /// node now (`Node::leave_finished`), without leaving.
    RestartAnnounced,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
/// What an event is about.
pub enum EventKind {
    /// A member changed.
    Member {
        /// What changed.
        change: MemberChange,
        /// Its served status before.
        previous: Option<ServedStatus>,
        /// The member now.
        member: MemberView,
    },
    /// The guard changed state.
    Guard(GuardTransition),
    /// Something happened to this node.
    Local(LocalEvent),
    /// A service's health guard changed state (see `core::health_guard`).
    Health(crate::health_guard::HealthTransition),
    /// An instance was ejected, restored or capped from apps' reports (`core::outlier`).
    Outlier(crate::outlier::OutlierTransition),
    /// A user event arrived (delivered once per agent; `core::fleet`).
    UserEvent(super::fleet::UserEventView),
    /// A query this node matches arrived.
    Query(super::fleet::QueryView),
}

/// A change of the served view (or of the node), numbered by a monotonic index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the event stream.
    pub index: u64,
    /// When (driver clock, ms).
    pub at_ms: u64,
    #[serde(flatten)]
    /// What happened.
    pub kind: EventKind,
}

/// Counters of everything the node received, sent and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Dropped: larger than `MAX_DATAGRAM`.
    pub dropped_oversized: u64,
    /// Dropped: shorter than its header says.
    pub dropped_truncated: u64,
    /// Dropped: wrong magic.
    pub dropped_bad_magic: u64,
    /// Dropped: an envelope version this release does not read.
    pub dropped_bad_version: u64,
    /// Dropped: unknown envelope flags.
    pub dropped_bad_flags: u64,
    /// Dropped: another cluster label.
    pub dropped_wrong_label: u64,
    /// Dropped: unknown datagram kind.
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
    /// Sealed datagrams under a key this node retired (`keys remove`).
    #[serde(default)]
    pub dropped_retired_key: u64,
    /// Records or members refused at decode: a bad name, a record about this node, a
    /// generation or version far in the future.
    #[serde(default)]
    pub dropped_refused: u64,
    /// Records refused because their name is bound to a member key and they are unsigned
    /// (`core::bindings`).
    #[serde(default)]
    pub dropped_unsigned_record: u64,
    /// Records refused because they are signed by another key than the one their name is
    /// bound to, or their signature does not verify: forged or altered.
    #[serde(default)]
    pub dropped_wrong_member_key: u64,
    /// Records of a new signer refused because the table of bindings is full.
    #[serde(default)]
    pub dropped_bindings_full: u64,
    /// SWIM identities of a name bound to a member key (a new address or a newer
    /// generation) that no record signed by that key proves: not taken (a key holder
    /// announcing another member's name at its own address).
    #[serde(default)]
    pub dropped_unproven_identity: u64,
    /// Unsigned records of a name whose held record is signed (its owner signs): forged.
    #[serde(default)]
    pub dropped_unsigned_from_signer: u64,
    /// Answers to a stranger cut to a small multiple of its request's size.
    #[serde(default)]
    pub answers_capped: u64,
    /// Metadata records received.
    pub meta_records_received: u64,
    /// Anti-entropy rounds started.
    pub anti_entropy_rounds: u64,
    /// Rejoin attempts.
    pub rejoin_attempts: u64,
    /// Announces to nodes known from their metadata but missed by SWIM.
    pub discovery_announces: u64,
    /// Discovery announces not sent: their address had its budget for the window
    /// (`DISCOVERY_PER_ADDR`; many records naming one address).
    #[serde(default)]
    pub discovery_announces_limited: u64,
    /// `Want`s left unanswered: their sender had its budget for the second
    /// (`WANT_ANSWERS_PER_SEC`).
    #[serde(default)]
    pub want_answers_limited: u64,
    /// Membership anti-entropy rounds this node opened (filter of known members sent).
    pub member_sync_rounds: u64,
    /// Members a peer's filter lacked, sent back to it.
    pub member_intros_sent: u64,
    /// Members learned through membership anti-entropy and handed to SWIM.
    pub member_intros_applied: u64,
    /// Updates about unknown members refused because the member table was full
    /// (`Node::set_max_members`).
    #[serde(default)]
    pub members_refused: u64,
    /// Records of names not held refused because the record store was full (`max_members`).
    #[serde(default)]
    pub records_refused: u64,
    /// Membership filters sent as pulls of the bulk transfer after joining.
    #[serde(default)]
    pub member_pulls: u64,
    /// Membership filters left unanswered: this second's answer budget was spent.
    #[serde(default)]
    pub member_pulls_unanswered: u64,
    /// Messages not sent because they came out larger than a datagram (a bug if ever > 0).
    #[serde(default)]
    pub tx_oversized: u64,
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
    /// Records about this node it did not issue (a forged leave, a newer generation), refuted
    /// by re-issuing its own record above them.
    #[serde(default)]
    pub records_refuted: u64,
    /// Messages and broadcast items of a kind a later release added (docs/upgrades.md):
    /// ignored, not a fault, so not a drop.
    #[serde(default)]
    pub unknown_kinds: u64,
    /// Updates of this node's network coordinate (one per timed probe, `core::coordinate`).
    #[serde(default)]
    pub coordinate_updates: u64,
    /// Coordinates this node sent to members that probed it.
    #[serde(default)]
    pub coordinates_sent: u64,
    /// Coordinates refused from peers: not finite or out of bounds (a peer that lies).
    #[serde(default)]
    pub coordinates_refused: u64,
    /// Coordinates ignored because this node had not probed their sender recently.
    #[serde(default)]
    pub coordinates_unsolicited: u64,
    /// Authentic cluster-wide thaws not taken: within `operator::THAW_MIN_INTERVAL` of the
    /// last one (a repeat or a replay under another session), or naming this node.
    #[serde(default)]
    pub operator_thaws_ignored: u64,
    /// Members this node removed on gray evidence (several observers cannot reach them).
    #[serde(default)]
    pub gray_removals: u64,
    /// Service health statuses written into this node's record (`Node::check_result`, paced
    /// by `core::health_rate`).
    #[serde(default)]
    pub health_published: u64,
    /// Datagrams of reach reports sent (`core::gray`).
    #[serde(default)]
    pub reach_reports_sent: u64,
    /// Gray removals that ended because SWIM declared the member down itself.
    #[serde(default)]
    pub gray_removals_ended_by_swim: u64,
    /// User events fired here.
    #[serde(default)]
    pub events_fired: u64,
    /// User events from other members delivered here (once each).
    #[serde(default)]
    pub events_received: u64,
    /// User events received again (already delivered, or older than what is remembered).
    #[serde(default)]
    pub events_duplicate: u64,
    /// User events not delivered because a newer one of the same name was (coalescing).
    #[serde(default)]
    pub events_coalesced: u64,
    /// User events refused when fired here: the payload is past `event_payload_max`.
    #[serde(default)]
    pub events_too_big: u64,
    /// Queries asked here, and received from others.
    #[serde(default)]
    pub queries_sent: u64,
    #[serde(default)]
    /// Queries received.
    pub queries_received: u64,
    /// Queries received that this node answered (its handler's output sent).
    #[serde(default)]
    pub queries_answered: u64,
    /// Answers received to queries asked here.
    #[serde(default)]
    pub query_answers_received: u64,
    /// Queries asked here that ended at their timeout with acks or answers missing.
    #[serde(default)]
    pub queries_timed_out: u64,
    /// Queries dropped by the rate limit of queries processed.
    #[serde(default)]
    pub queries_dropped_rate: u64,
    /// Acks and answers ignored: not from the member's address, late, or for no query of ours.
    #[serde(default)]
    pub fleet_ignored: u64,
    /// Push rounds' datagrams of events and queries, per peer.
    #[serde(default)]
    pub fleet_pushes: u64,
    /// Datagrams offering event ids (the push rounds after the first), per peer.
    #[serde(default)]
    pub event_offers: u64,
    /// Datagrams asking an offerer for events this node lacked.
    #[serde(default)]
    pub event_wants: u64,
    /// Event anti-entropy rounds started.
    #[serde(default)]
    pub event_syncs: u64,
    /// Bytes of the datagrams of events, queries and answers sent (their traffic cost).
    #[serde(default)]
    pub fleet_tx_bytes: u64,
}

impl Stats {
    /// Every datagram dropped, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops().iter().map(|(_, n)| n).sum()
    }

    /// Every drop counter with its reason label.
    pub fn drops(&self) -> [(&'static str, u64); 22] {
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
            ("retired_key", self.dropped_retired_key),
            ("unsigned_record", self.dropped_unsigned_record),
            ("wrong_member_key", self.dropped_wrong_member_key),
            ("bindings_full", self.dropped_bindings_full),
            ("unproven_identity", self.dropped_unproven_identity),
            ("unsigned_from_signer", self.dropped_unsigned_from_signer),
        ]
    }
}
