//! Operator commands that must reach every agent, not only the one the operator asked:
//! today `force-leave` (Serf's name): "this member has failed for good, stop holding it".
//!
//! Owns the message (`OperatorMsg`, postcard-encoded in a datagram of kind `Operator`) and
//! its validation at decode. The node sends it straight to every member it believes active
//! (no re-forwarding, so a node cut off from the operator's agent does not get it) and, on
//! receipt, releases the named member only if SWIM there also says it is down or left: a
//! live member is never removed by it. It must not touch sockets or clocks.

use crate::identity::validate_name;
use serde::{Deserialize, Serialize};

/// An operator command spread to every agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorMsg {
    /// Stop serving `name` as held: it failed for good (or was retired).
    ForceLeave { name: String },
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
    }
}
