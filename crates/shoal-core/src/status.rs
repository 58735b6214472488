//! The status words: a member's state according to SWIM (`TruthState`) and as served to apps
//! (`ServedStatus`), with their names on the wire, in JSON and in the API.
//!
//! A leaf: it imports no other module of the core, so the truth, the causes and the guard can
//! all use it. Must not hold state or decide anything.

use serde::{Deserialize, Serialize};

/// A member's state according to SWIM (plus the graceful-leave intent it carried).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TruthState {
    /// Alive.
    Alive,
    /// Suspected of failure.
    Suspect,
    /// Declared down by failure detection.
    Down,
    /// Left gracefully (or its record said it was leaving when it went down).
    Left,
}

impl TruthState {
    pub(crate) fn is_active(self) -> bool {
        matches!(self, TruthState::Alive | TruthState::Suspect)
    }
}

/// A member's status as served to apps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServedStatus {
    /// Alive.
    Alive,
    /// Suspected of failure.
    Suspect,
    /// Down according to SWIM, but still served by the guard.
    Held,
    /// Left gracefully (or removed by intent).
    Left,
    /// Down, and not held.
    Down,
    /// Down according to SWIM after announcing a restart, within the grace it announced:
    /// still served (`core::restart`).
    Restarting,
    /// Alive according to SWIM, but it kept failing and coming back: not served until its
    /// flap penalty decays (`core::damping`).
    Damped,
}

impl ServedStatus {
    /// The status as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedStatus::Alive => "alive",
            ServedStatus::Suspect => "suspect",
            ServedStatus::Held => "held",
            ServedStatus::Restarting => "restarting",
            ServedStatus::Left => "left",
            ServedStatus::Down => "down",
            ServedStatus::Damped => "damped",
        }
    }

    /// Whether apps should send traffic to this member's services.
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            ServedStatus::Alive
                | ServedStatus::Suspect
                | ServedStatus::Held
                | ServedStatus::Restarting
        )
    }

    /// The status written as `s`, if any.
    pub fn parse(s: &str) -> Option<ServedStatus> {
        Some(match s {
            "alive" => ServedStatus::Alive,
            "suspect" => ServedStatus::Suspect,
            "held" => ServedStatus::Held,
            "restarting" => ServedStatus::Restarting,
            "left" => ServedStatus::Left,
            "down" | "failed" => ServedStatus::Down,
            "damped" => ServedStatus::Damped,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ServedStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
