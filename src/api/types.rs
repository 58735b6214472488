//! The JSON shapes of the local API: request bodies and answers, shared by the server
//! (`api::routes`) and the client (`crate::client`).
//!
//! Owns only data definitions and their (de)serialization; no I/O and no decisions. Member,
//! instance, guard and event shapes come from the core (`MemberView`, `Instance`,
//! `GuardReport`, `Event`) and are embedded as they serialize there.

use serde::{Deserialize, Serialize};
use shoal_core::{DropRecord, Event, GuardReport, Health, Instance, MemberView, Stats, Transition};
use std::collections::BTreeMap;

/// `GET /v1/members`: `{"index", "guard", "members": [MemberView...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembersResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub members: Vec<MemberView>,
}

/// One member (`GET /v1/members/{name}`, and the answer of every metadata command, which
/// returns this node's member as it is now): `{"index", "guard", "member"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub member: MemberView,
}

/// `GET /v1/members/{name}/history`: `{"index", "guard", "member", "history"}`: the member
/// as served now and its last transitions (oldest first), each with its cause.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub member: MemberView,
    pub history: Vec<Transition>,
}

/// Dissemination backlog: SWIM updates and metadata broadcasts not yet spread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub updates: usize,
    pub broadcasts: usize,
}

/// Runtime figures of this node (the `stats` of `/v1/self`, flattened into `/v1/stats`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    /// Datagram and byte counters, drops by reason.
    pub counters: Stats,
    /// Sum of every drop counter.
    pub dropped_total: u64,
    pub backlog: Backlog,
    /// Peers SWIM considers active (not counting this node).
    pub active_peers: usize,
    /// True while the node has no active peer (it keeps re-announcing).
    pub idle: bool,
    /// True once this node has left the cluster.
    pub left: bool,
    /// Served members by status: every status word is present, with 0 when none.
    pub members: BTreeMap<String, usize>,
    /// Encryption: on or not (`--insecure`), the plaintext policy, sealed/opened counts.
    #[serde(default)]
    pub trust: TrustView,
    /// Who sent datagrams this agent refused lately, why, how many and when (one entry per
    /// sender and reason, the most recent first; at most 64).
    #[serde(default)]
    pub recent_drops: Vec<DropRecord>,
    /// Entries of `recent_drops` evicted to make room (many senders).
    #[serde(default)]
    pub recent_drops_evicted: u64,
    /// Members in the cluster (alive, suspect or held) by the protocol range their record
    /// announces ("1" for v0.1.0, "1..2", ...; docs/upgrades.md): how far a rolling upgrade is.
    #[serde(default)]
    pub protocols: BTreeMap<String, usize>,
}

/// `GET /v1/self`: `{"index", "guard", "member", "stats"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelfResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub member: MemberView,
    pub stats: StatsView,
}

/// `GET /v1/stats`: `{"index", "guard", "counters", "dropped_total", "backlog",
/// "active_peers", "idle", "left", "members"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    pub index: u64,
    pub guard: GuardReport,
    #[serde(flatten)]
    pub stats: StatsView,
}

/// `GET /v1/services`: `{"index", "guard", "services": {name: [Instance...]}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServicesResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub services: BTreeMap<String, Vec<Instance>>,
    /// The health guard's report of each service it holds instances of (others: absent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health_guard: BTreeMap<String, GuardReport>,
}

/// `GET /v1/services/{name}`: `{"index", "guard", "service", "instances"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub service: String,
    pub instances: Vec<Instance>,
    /// The health guard's report when it holds instances of this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_guard: Option<GuardReport>,
}

/// `GET /v1/guard` and the answer of `POST /v1/guard/{freeze,thaw}`: `{"index", "guard"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardResponse {
    pub index: u64,
    pub guard: GuardReport,
    /// `POST /v1/guard/thaw?cluster=true`: how many other agents were told to thaw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told: Option<usize>,
}

/// `PUT /v1/tags` body: `{"set": {k: v}, "delete": [k]}` (both optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsRequest {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub delete: Vec<String>,
}

/// `PUT /v1/services` body: `{"name", "port", "tags", "health", "checks"}` (all but name and
/// port optional). With `checks`, the checks decide the health (`health` is refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    pub name: String,
    /// The instance id, unique on this node (default: the name); several instances of one
    /// service on a node each need their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::agent::checks::CheckSpec>,
}

impl ServiceRequest {
    /// The instance id: the one given, else the service's name.
    pub fn instance_id(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }
}

/// `POST /v1/join` body: `{"addrs": ["IP:PORT" | "host:port", ...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub addrs: Vec<String>,
}

/// An address of a join request that could not be resolved, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unresolved {
    pub addr: String,
    pub error: String,
}

/// `POST /v1/join` answer: `{"announced": ["IP:PORT"...], "unresolved": [{"addr", "error"}...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub announced: Vec<std::net::SocketAddr>,
    pub unresolved: Vec<Unresolved>,
}

/// `POST /v1/leave` answer: `{"left": true, "flushed": bool, "finished": bool}`; `flushed`
/// says whether the event loop confirmed within 2 s that the leave datagrams were handed to
/// the socket, `finished` whether the core said within 2 s that the leave is finished (it
/// answers then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveResponse {
    pub left: bool,
    pub flushed: bool,
    #[serde(default)]
    pub finished: bool,
}

/// The body of every error answer: `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The first line of `/v1/watch` (and the line after the watcher fell behind):
/// `{"type": "snapshot", "index", "guard", "members"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub guard: GuardReport,
    pub members: Vec<MemberView>,
}

/// One line of the `/v1/watch` NDJSON stream: a snapshot or a core `Event` (which
/// serializes as `{"index", "at_ms", "type": "member"|"guard"|"local", ...}`).
#[derive(Clone, Debug, PartialEq)]
// One value per line read, never stored in bulk: boxing the event would only cost every
// client that matches on it an indirection.
#[allow(clippy::large_enum_variant)]
pub enum WatchLine {
    Snapshot(Snapshot),
    Event(Event),
}

impl WatchLine {
    pub fn index(&self) -> u64 {
        match self {
            WatchLine::Snapshot(s) => s.index,
            WatchLine::Event(e) => e.index,
        }
    }

    /// The NDJSON line (with its trailing newline).
    pub fn to_line(&self) -> String {
        #[derive(Serialize)]
        struct Tagged<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(flatten)]
            snapshot: &'a Snapshot,
        }
        let mut s = match self {
            WatchLine::Snapshot(snapshot) => serde_json::to_string(&Tagged {
                kind: "snapshot",
                snapshot,
            }),
            WatchLine::Event(e) => serde_json::to_string(e),
        }
        .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    }

    /// Parses one NDJSON line.
    pub fn parse(line: &str) -> Result<WatchLine, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if v.get("type").and_then(|t| t.as_str()) == Some("snapshot") {
            Ok(WatchLine::Snapshot(serde_json::from_value(v)?))
        } else {
            Ok(WatchLine::Event(serde_json::from_value(v)?))
        }
    }
}

/// `POST /v1/force-leave/{name}` answer: `{"index", "guard", "node", "released", "told"}`;
/// `released` says whether this agent was holding the member, `told` how many active members
/// were sent the command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForceLeaveResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub node: String,
    pub released: bool,
    pub told: usize,
}

/// `PUT /v1/event/{name}`: the event as fired (`{"index", "event"}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFireResponse {
    pub index: u64,
    pub event: shoal_core::UserEventView,
}

/// `GET /v1/events`: the recent user events, oldest first, and the Lamport clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventsResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub clock: u64,
    pub events: Vec<shoal_core::RecentEvent>,
}

/// One answer to a query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAnswerView {
    pub from: String,
    /// The handler's output as text (bytes that are not UTF-8 are replaced).
    pub payload: String,
}

/// `POST /v1/query/{name}`: what came back, with counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResult {
    pub id: u64,
    pub name: String,
    /// Members of the served view that match and are alive (or suspect).
    pub expected: usize,
    /// Members that match but are cut off (held by the guard): not reached.
    pub cut_off: usize,
    pub acks: usize,
    pub answers: Vec<QueryAnswerView>,
    /// Answers past the bound of kept answers (counted only).
    pub answers_dropped: usize,
    /// Members that promised an answer and had not sent it when the query ended.
    pub pending: usize,
    pub timeout_ms: u64,
    pub done: bool,
    pub timed_out: bool,
}

impl From<shoal_core::QueryStatus> for QueryResult {
    fn from(s: shoal_core::QueryStatus) -> Self {
        QueryResult {
            id: s.id,
            name: s.name,
            expected: s.expected,
            cut_off: s.cut_off,
            acks: s.acks,
            answers: s
                .answers
                .into_iter()
                .map(|a| QueryAnswerView {
                    from: a.from,
                    payload: String::from_utf8_lossy(&a.payload).into_owned(),
                })
                .collect(),
            answers_dropped: s.answers_dropped,
            pending: s.pending,
            timeout_ms: s.timeout_ms,
            done: s.done,
            timed_out: s.timed_out,
        }
    }
}

/// `POST /v1/query/{name}`: `{"index", "guard", "query"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    pub index: u64,
    pub guard: GuardReport,
    pub query: QueryResult,
}

/// A network coordinate as the API shows it (seconds, as Serf and Consul give them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordView {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl From<&shoal_core::Coordinate> for CoordView {
    fn from(c: &shoal_core::Coordinate) -> Self {
        CoordView {
            vec: c.vec.to_vec(),
            error: c.error,
            adjustment: c.adjustment,
            height: c.height,
        }
    }
}

/// One member's coordinate in `GET /v1/coordinates`, with the estimated round trip to it
/// from this agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeCoordinate {
    pub node: String,
    pub coord: CoordView,
    pub rtt_ms: f64,
}

/// `GET /v1/coordinates`: this agent's coordinate first, then every member's it knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordinatesResponse {
    pub node: String,
    pub coordinates: Vec<NodeCoordinate>,
}

/// `GET /v1/rtt/{a}[/{b}]`: the estimated round trip between two members (from this agent
/// when only one is given).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttResponse {
    pub from: String,
    pub to: String,
    pub rtt_ms: f64,
    pub rtt_us: u64,
    /// `measured` (this agent's own probes of the member: the minimum of recent round
    /// trips) or `coordinates` (network coordinates).
    pub source: String,
}

/// Encryption state and figures for `/v1/stats`, `/v1/self`, `shoal info` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustView {
    /// False when the agent runs `--insecure`.
    pub encrypted: bool,
    pub plaintext: shoal_core::Plaintext,
    pub stats: shoal_core::TrustStats,
}
