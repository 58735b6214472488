//! The snapshot of the served view a node persists so that a restart does not start empty.
//!
//! Owns `Snapshot` (what is persisted: the served members, the baseline, the known peers and
//! the guard report, stamped with wall-clock time) and the errors of restoring one. Producing
//! (on the node's schedule, `SNAPSHOT_EVERY`) and restoring happen in `Node::poll_snapshot` /
//! `Node::restore`; writing the file atomically is
//! the agent's job (`agent::snapshot`). Must not touch a file or read a clock.

use crate::guard::GuardReport;
use crate::truth::MemberView;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

/// How often a running node hands its driver a snapshot to persist (`Node::poll_snapshot`),
/// when the served view changed since the last one. Drivers persist what they are handed and
/// nothing else (the agent also saves one when it shuts down gracefully), so a crash loses up
/// to this much of the view, in the agent and in the simulator alike.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);

/// Format version of `Snapshot`; a snapshot with another version is refused.
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// The served view and known peers, as a driver persists them.
pub struct Snapshot {
    /// Format version (`SNAPSHOT_VERSION`).
    pub version: u32,
    /// The node that took it (a snapshot is only restored by the node of the same name).
    pub node: String,
    /// Wall-clock time it was taken (ms since the Unix epoch): its age survives a restart.
    pub taken_at_unix_ms: u64,
    /// The served view (every member with its served status).
    pub members: Vec<MemberView>,
    /// Names of the baseline the guard compared against.
    pub baseline: Vec<String>,
    /// Addresses to announce to when rejoining.
    pub known_peers: Vec<SocketAddr>,
    /// The guard's report when it was taken.
    pub guard: GuardReport,
    /// The node's user events (Lamport clock, ids seen, recent events), so that a restart
    /// delivers none twice; absent in snapshots of releases before 0.2 and when nothing
    /// happened (older releases ignore the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<crate::fleet::FleetMemory>,
}

impl Snapshot {
    /// Age of the snapshot at `now_unix_ms` (zero if it claims to come from the future).
    pub fn age(&self, now_unix_ms: u64) -> Duration {
        Duration::from_millis(now_unix_ms.saturating_sub(self.taken_at_unix_ms))
    }
}

/// What restoring a snapshot did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// The view is served as `warming` and its peers are used to rejoin.
    Served {
        /// Members served.
        members: usize,
        /// Peers to rejoin through.
        peers: usize,
    },
    /// Too old to be served; only its peers are used to rejoin.
    PeersOnly {
        /// Its age.
        age: Duration,
        /// Peers to rejoin through.
        peers: usize,
    },
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
/// Why a snapshot was not restored.
pub enum SnapshotError {
    #[error("snapshot format version {0} is not supported (expected {SNAPSHOT_VERSION})")]
    /// Another format version.
    Version(u32),
    #[error("snapshot belongs to node {found:?}, not {expected:?}")]
    /// Taken by another node.
    WrongNode {
        /// This node.
        expected: String,
        /// The node that took it.
        found: String,
    },
    #[error("a snapshot can only be restored before the node starts")]
    /// The node has already started.
    AlreadyStarted,
}
