//! Operator commands that must reach every agent, not only the one the operator asked:
//! `force-leave` (Serf's name): "this member has failed for good, stop holding it", and the
//! cluster-wide thaw: "the view is right, stop holding on every agent".
//!
//! Owns the message (`OperatorMsg`, postcard-encoded in a datagram of kind `Operator`), its
//! validation at decode, and the bound on thaws. The node sends it straight to every member
//! it believes active (no re-forwarding, so a node cut off from the operator's agent does
//! not get it). On receipt, a force-leave releases the named member only if SWIM there also
//! says it is down or left (a live member is never removed by it); a thaw is taken only
//! sealed when the node has a keyring (plaintext during a move to encryption is refused) and
//! at most once per `THAW_MIN_INTERVAL`. An agent older than the thaw fails to decode it and
//! counts it as a decode drop. It must not touch sockets or clocks.

use crate::identity::validate_name;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An agent takes at most one cluster-wide thaw this often: a replayed or repeated message
/// changes nothing more (each thaw retakes the baseline and drains the held members).
pub const THAW_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// An operator command spread to every agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorMsg {
    /// Stop serving `name` as held: it failed for good (or was retired).
    ForceLeave { name: String },
    /// Thaw the guard (as `shoal guard thaw` on each agent); `from` is the agent the operator
    /// asked, named in each agent's guard reason.
    Thaw { from: String },
}

/// When this agent last took a cluster-wide thaw, to take at most one per
/// `THAW_MIN_INTERVAL`.
#[derive(Clone, Debug, Default)]
pub struct ThawBound {
    last: Option<Time>,
}

impl ThawBound {
    /// Whether a thaw at `now` is taken (and then notes it).
    pub fn admit(&mut self, now: Time) -> bool {
        if self.last.is_some_and(|t| now < t.plus(THAW_MIN_INTERVAL)) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

impl OperatorMsg {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and validates (names as every name: `validate_name`).
    pub fn decode(body: &[u8]) -> Result<OperatorMsg, String> {
        let (msg, rest): (OperatorMsg, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("trailing bytes".into());
        }
        match &msg {
            OperatorMsg::ForceLeave { name } => validate_name(name)?,
            OperatorMsg::Thaw { from } => validate_name(from)?,
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_validation() {
        let m = OperatorMsg::ForceLeave {
            name: "web-1".into(),
        };
        assert_eq!(OperatorMsg::decode(&m.encode()), Ok(m.clone()));
        let mut long = m.encode();
        long.push(0);
        assert!(OperatorMsg::decode(&long).is_err());
        let bad = OperatorMsg::ForceLeave {
            name: "no spaces".into(),
        }
        .encode();
        assert!(OperatorMsg::decode(&bad).is_err());
        assert!(OperatorMsg::decode(&[7, 1, 2]).is_err());
        assert!(OperatorMsg::decode(&[]).is_err());
        let thaw = OperatorMsg::Thaw {
            from: "ops-1".into(),
        };
        assert_eq!(OperatorMsg::decode(&thaw.encode()), Ok(thaw));
        let bad = OperatorMsg::Thaw {
            from: "bad name".into(),
        };
        assert!(OperatorMsg::decode(&bad.encode()).is_err());
    }

    /// What an agent that knows only force-leave (v0.1.0's `OperatorMsg`) makes of a thaw:
    /// a decode error, which the node counts as a dropped datagram (no panic).
    #[test]
    fn an_older_agent_fails_to_decode_a_thaw_cleanly() {
        #[derive(Debug, Deserialize)]
        enum Older {
            #[allow(dead_code)]
            ForceLeave { name: String },
        }
        let thaw = OperatorMsg::Thaw {
            from: "ops-1".into(),
        }
        .encode();
        assert!(postcard::from_bytes::<Older>(&thaw).is_err());
    }

    #[test]
    fn one_thaw_per_interval() {
        let mut b = ThawBound::default();
        let t0 = Time::from_millis(100_000);
        assert!(b.admit(t0));
        assert!(!b.admit(t0));
        assert!(!b.admit(t0.plus(THAW_MIN_INTERVAL - Duration::from_millis(1))));
        assert!(b.admit(t0.plus(THAW_MIN_INTERVAL)));
    }
}
