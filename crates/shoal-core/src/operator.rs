//! Operator commands that must reach every agent, not only the one the operator asked:
//! `force-leave` (Serf's name): "this member has failed for good, stop holding it", and the
//! cluster-wide thaw: "the view is right, stop holding on every agent".
//!
//! Owns the message (`OperatorMsg`, postcard-encoded in a datagram of kind `Operator`), its
//! validation at decode, and the bound on thaws. The node sends it straight to every member
//! it believes active (no re-forwarding, so a node cut off from the operator's agent does
//! not get it). On receipt, a force-leave releases the named member only if SWIM there also
//! says it is down or left (a live member is never removed by it); a thaw is taken only
//! sealed when the node has a keyring (plaintext during a move to encryption is refused), with
//! a timestamp within `replay_window` of the receiver's clock (`core::trust`: a capture
//! replayed later does not act), and at most once per `THAW_MIN_INTERVAL`. An insecure node
//! (no keyring, nothing sealed) takes commands only from an active member's address. It must not touch sockets or clocks.
//!
//! Encoding: v0.1.0's postcard layout, then extension fields (`core::ext`); a command of a
//! later release decodes to `None` (ignored and counted). v0.1.0 refuses any byte after the
//! command, so no release may add a field here before v0.1.0 is out of support. The thaw is
//! kind 1: v0.1.0 fails to decode it (a decode drop, counted), an agent of the release
//! between (kinds known: 1) ignores and counts it as a later kind.

use crate::ext::{decode_kind, Decoded, Kinds};
use crate::identity::validate_name;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An agent takes at most one cluster-wide thaw this often: a replayed or repeated message
/// changes nothing more (each thaw retakes the baseline and drains the held members).
pub(crate) const THAW_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// An operator command spread to every agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OperatorMsg {
    /// Stop serving `name` as held: it failed for good (or was retired).
    ForceLeave { name: String },
    /// Thaw the guard (as `shoal guard thaw` on each agent); `from` is the agent the operator
    /// asked, named in each agent's guard reason.
    Thaw { from: String },
}

/// When this agent last took a cluster-wide thaw, to take at most one per
/// `THAW_MIN_INTERVAL`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ThawBound {
    last: Option<Time>,
}

impl ThawBound {
    /// Whether a thaw at `now` is taken (and then notes it).
    pub(crate) fn admit(&mut self, now: Time) -> bool {
        if self.last.is_some_and(|t| now < t.plus(THAW_MIN_INTERVAL)) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

impl Kinds for OperatorMsg {
    /// `ForceLeave`, `Thaw`; a new command is added at the end and counted here.
    const KNOWN: u32 = 2;
}

impl OperatorMsg {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and validates (names as every name: `validate_name`); `None`: a command of a
    /// later release.
    pub(crate) fn decode(body: &[u8]) -> Result<Option<OperatorMsg>, String> {
        let msg = match decode_kind::<OperatorMsg>(body).map_err(|e| e.to_string())? {
            Decoded::Known(msg, _ext) => msg,
            Decoded::Unknown(_) => return Ok(None),
        };
        match &msg {
            OperatorMsg::ForceLeave { name } => validate_name(name)?,
            OperatorMsg::Thaw { from } => validate_name(from)?,
        }
        Ok(Some(msg))
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
        assert_eq!(OperatorMsg::decode(&m.encode()), Ok(Some(m.clone())));
        // Bytes after the command must be extension fields.
        let mut long = m.encode();
        long.push(1);
        assert!(OperatorMsg::decode(&long).is_err());
        long.push(0);
        assert_eq!(OperatorMsg::decode(&long), Ok(Some(m.clone())));
        // A command of a later release is ignored, not an error.
        assert_eq!(OperatorMsg::decode(&[2, 3, b'a', b'b', b'c']), Ok(None));
        let bad = OperatorMsg::ForceLeave {
            name: "no spaces".into(),
        }
        .encode();
        assert!(OperatorMsg::decode(&bad).is_err());
        assert!(OperatorMsg::decode(&[0, 9, 2]).is_err());
        assert!(OperatorMsg::decode(&[]).is_err());
        let thaw = OperatorMsg::Thaw {
            from: "ops-1".into(),
        };
        assert_eq!(OperatorMsg::decode(&thaw.encode()), Ok(Some(thaw)));
        let bad = OperatorMsg::Thaw {
            from: "bad name".into(),
        };
        assert!(OperatorMsg::decode(&bad.encode()).is_err());
    }

    /// What agents without the thaw make of it: v0.1.0 (strict postcard, force-leave only)
    /// fails to decode it, counted as a decode drop; the release before this one (kinds
    /// known: 1) sees a later kind, ignored and counted. Neither panics.
    #[test]
    fn agents_without_the_thaw_drop_it_cleanly() {
        #[derive(Debug, Deserialize)]
        enum Older {
            #[allow(dead_code)]
            ForceLeave { name: String },
        }
        impl Kinds for Older {
            const KNOWN: u32 = 1;
        }
        let thaw = OperatorMsg::Thaw {
            from: "ops-1".into(),
        }
        .encode();
        assert!(postcard::from_bytes::<Older>(&thaw).is_err());
        assert!(matches!(
            decode_kind::<Older>(&thaw),
            Ok(Decoded::Unknown(1))
        ));
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
