//! The JSON shapes of why a member is in its state: `CauseKind` (one word), `Cause` (the
//! evidence and its sentence) and `Transition` (one served transition), as the API, the log
//! and `shoal explain` show them.
//!
//! Data only: `core::cause` records the facts and builds these when asked. Must not decide
//! anything and holds no state.

use crate::status::ServedStatus;
use serde::{Deserialize, Serialize};

/// What happened to a member, in one word (the `reason` of a `Cause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// First seen by this node.
    Joined,
    /// Back as a new generation (it restarted, or rejoined after being declared down).
    Restarted,
    /// Alive again after a suspicion it refuted (an incarnation bump).
    Refuted,
    /// Alive (any other way back).
    Alive,
    /// Suspected: this node's probe failed, or the suspicion was heard from the cluster.
    Suspected,
    /// Declared down here: the suspicion timed out on this node.
    SuspicionTimeout,
    /// Declared down by the cluster: the down notice was gossiped to this node.
    DownNotice,
    /// Another node took over its address.
    Replaced,
    /// Down by failure, but still served by the guard.
    Held,
    /// No longer held: the guard released it (thaw, drain, a confirming reach check).
    Released,
    /// Removed by an operator (`force-leave`).
    ForceLeft,
    /// Left gracefully (its record said it was leaving).
    Left,
    /// Stopped to restart (its record said so): served `restarting` through its grace.
    Restarting,
    /// Went down by failure and came back, again: served `damped` until it has been stable
    /// (flap damping, `core::damping`).
    Damped,
}

impl CauseKind {
    /// The reason as written in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CauseKind::Joined => "joined",
            CauseKind::Restarted => "restarted",
            CauseKind::Refuted => "refuted",
            CauseKind::Alive => "alive",
            CauseKind::Suspected => "suspected",
            CauseKind::SuspicionTimeout => "suspicion_timeout",
            CauseKind::DownNotice => "down_notice",
            CauseKind::Replaced => "replaced",
            CauseKind::Held => "held",
            CauseKind::Restarting => "restarting",
            CauseKind::Damped => "damped",
            CauseKind::Released => "released",
            CauseKind::ForceLeft => "force_left",
            CauseKind::Left => "left",
        }
    }
}

impl std::fmt::Display for CauseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a member entered its served status (the `cause` of `/v1/members` items and events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// What happened (joined, failed, left, ...).
    pub reason: CauseKind,
    /// This node's own probe of the member failed (it suspected the member itself).
    #[serde(default, skip_serializing_if = "is_false")]
    pub probe_failed: bool,
    /// Independent confirmations: other members whose own probe failed too (Lifeguard
    /// accusations from healthy accusers, counted once each).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub confirmations: u32,
    /// The first of them by name (at most `MAX_ACCUSERS_NAMED`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accusers: Vec<String>,
    /// When this node last received an authentic datagram from the member's address
    /// (agent clock, ms); absent when never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heard_ms: Option<u64>,
    /// The member refuted a suspicion (it bumped its incarnation).
    #[serde(default, skip_serializing_if = "is_false")]
    pub refuted: bool,
    /// The guard's decision, in words (held and why, released and why, or not held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// Who acted, when an operator did (force-leave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// All of the above in one sentence, as the log line and `shoal explain` print it.
    pub text: String,
}

/// One served transition of a member (`shoal explain`, `/v1/members/{name}/history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When (driver clock, ms).
    pub at_ms: u64,
    /// What was served before (`None`: the member was new to this node).
    pub from: Option<ServedStatus>,
    /// What was served after.
    pub to: ServedStatus,
    /// The member's generation at the time.
    pub generation: u64,
    /// Why.
    pub cause: Cause,
}
