//! Operator commands that must reach every agent, not only the one the operator asked:
//! today `force-leave` (Serf's name): "this member has failed for good, stop holding it".
//!
//! Owns the message (`OperatorMsg`, postcard-encoded in a datagram of kind `Operator`) and
//! its validation at decode. The node sends it straight to every member it believes active
//! (no re-forwarding, so a node cut off from the operator's agent does not get it) and, on
//! receipt, releases the named member only if SWIM there also says it is down or left: a
//! live member is never removed by it. It must not touch sockets or clocks.
//!
//! Encoding: v0.1.0's postcard layout, then extension fields (`core::ext`); a command of a
//! later release decodes to `None` (ignored and counted). v0.1.0 refuses any byte after the
//! command, so no release may add a field here before v0.1.0 is out of support.

use crate::ext::{decode_kind, Decoded, Kinds};
use crate::identity::validate_name;
use serde::{Deserialize, Serialize};

/// An operator command spread to every agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorMsg {
    /// Stop serving `name` as held: it failed for good (or was retired).
    ForceLeave { name: String },
}

impl Kinds for OperatorMsg {
    /// `ForceLeave`; a new command is added at the end and counted here.
    const KNOWN: u32 = 1;
}

impl OperatorMsg {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and validates (names as every name: `validate_name`); `None`: a command of a
    /// later release.
    pub fn decode(body: &[u8]) -> Result<Option<OperatorMsg>, String> {
        let msg = match decode_kind::<OperatorMsg>(body).map_err(|e| e.to_string())? {
            Decoded::Known(msg, _ext) => msg,
            Decoded::Unknown(_) => return Ok(None),
        };
        match &msg {
            OperatorMsg::ForceLeave { name } => validate_name(name)?,
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
        assert_eq!(OperatorMsg::decode(&[1, 3, b'a', b'b', b'c']), Ok(None));
        let bad = OperatorMsg::ForceLeave {
            name: "no spaces".into(),
        }
        .encode();
        assert!(OperatorMsg::decode(&bad).is_err());
        assert!(OperatorMsg::decode(&[0, 9, 2]).is_err());
        assert!(OperatorMsg::decode(&[]).is_err());
    }
}
