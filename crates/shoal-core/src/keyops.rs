//! Keyring changes spread across the cluster (`shoal keys install|use|remove`).
//!
//! Owns the keyring message (wire kind `Keys`, only ever accepted sealed), its decoding and
//! the bookkeeping of one rollout: which members were asked, which confirmed, which refused
//! and why. The node applies a change locally, sends it to every active member, and each
//! member applies it and answers with an acknowledgement; the operator gets the list of
//! members that did not confirm. Must not touch the keyring itself (the node does, through
//! `core::trust`).

use crate::keyring::{Key, KeyError, KEY_LEN};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Most rollouts remembered at once (the oldest is forgotten first).
pub const MAX_ROLLOUTS: usize = 8;
/// Longest error text carried in an acknowledgement.
const MAX_ERROR_LEN: usize = 200;

/// A change of the keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOpKind {
    Install,
    Use,
    Remove,
}

impl KeyOpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOpKind::Install => "install",
            KeyOpKind::Use => "use",
            KeyOpKind::Remove => "remove",
        }
    }
}

/// The wire form of keyring messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyMsg {
    /// Apply this change; answer with `Ack { id }`.
    Op {
        id: u64,
        kind: KeyOpKind,
        key: [u8; KEY_LEN],
    },
    /// The change `id` was applied (`error` empty) or refused.
    Ack { id: u64, error: String },
}

impl KeyMsg {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(data: &[u8]) -> Option<KeyMsg> {
        let m: KeyMsg = postcard::from_bytes(data).ok()?;
        if let KeyMsg::Ack { error, .. } = &m {
            if error.len() > MAX_ERROR_LEN {
                return None;
            }
        }
        Some(m)
    }

    pub fn ack(id: u64, res: Result<(), KeyError>) -> KeyMsg {
        let mut error = res.err().map(|e| e.to_string()).unwrap_or_default();
        error.truncate(MAX_ERROR_LEN);
        KeyMsg::Ack { id, error }
    }
}

/// Where one member stands in a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "error")]
pub enum Confirm {
    Pending,
    Confirmed,
    Refused(String),
}

/// One keyring change being spread.
#[derive(Clone, Debug)]
pub struct Rollout {
    pub id: u64,
    pub kind: KeyOpKind,
    pub key: Key,
    pub started: Time,
    /// Every member asked, by address, with its name.
    pub members: BTreeMap<SocketAddr, (Arc<str>, Confirm)>,
}

impl Rollout {
    pub fn message(&self) -> KeyMsg {
        KeyMsg::Op {
            id: self.id,
            kind: self.kind,
            key: *self.key.bytes(),
        }
    }

    /// Members that have not answered yet.
    pub fn pending(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.members
            .iter()
            .filter(|(_, (_, c))| *c == Confirm::Pending)
            .map(|(a, _)| *a)
    }

    pub fn done(&self) -> bool {
        self.pending().next().is_none()
    }

    /// Records an acknowledgement from `from` (ignored when `from` was not asked).
    pub fn ack(&mut self, from: SocketAddr, error: String) {
        if let Some((_, c)) = self.members.get_mut(&from) {
            if *c == Confirm::Pending {
                *c = if error.is_empty() {
                    Confirm::Confirmed
                } else {
                    Confirm::Refused(error)
                };
            }
        }
    }

    /// `(name, confirm)` for every member asked, sorted by name.
    pub fn report(&self) -> Vec<(String, Confirm)> {
        let mut v: Vec<(String, Confirm)> = self
            .members
            .values()
            .map(|(n, c)| (n.to_string(), c.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// The rollouts a node remembers (at most [`MAX_ROLLOUTS`], the oldest forgotten first).
#[derive(Debug, Default)]
pub struct Rollouts {
    list: std::collections::VecDeque<Rollout>,
    next_id: u64,
}

impl Rollouts {
    /// Starts a rollout; `salt` makes ids of different nodes differ.
    pub fn start(
        &mut self,
        now: Time,
        salt: u64,
        kind: KeyOpKind,
        key: Key,
        members: BTreeMap<SocketAddr, (Arc<str>, Confirm)>,
    ) -> &Rollout {
        self.next_id += 1;
        let id = (salt << 16) ^ self.next_id;
        if self.list.len() >= MAX_ROLLOUTS {
            self.list.pop_front();
        }
        self.list.push_back(Rollout {
            id,
            kind,
            key,
            started: now,
            members,
        });
        &self.list[self.list.len() - 1]
    }

    pub fn get(&self, id: u64) -> Option<&Rollout> {
        self.list.iter().find(|r| r.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Rollout> {
        self.list.iter_mut().find(|r| r.id == id)
    }
}

/// Applies a keyring change described by `kind` and `key` to a ring.
pub fn apply(
    ring: &mut crate::keyring::Keyring,
    kind: KeyOpKind,
    key: &Key,
) -> Result<(), KeyError> {
    match kind {
        KeyOpKind::Install => ring.install(key.clone()),
        KeyOpKind::Use => ring.use_key(key),
        KeyOpKind::Remove => ring.remove(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip_and_bounded() {
        let m = KeyMsg::Op {
            id: 7,
            kind: KeyOpKind::Use,
            key: [3; KEY_LEN],
        };
        assert_eq!(KeyMsg::decode(&m.encode()), Some(m));
        let long = KeyMsg::Ack {
            id: 1,
            error: "x".repeat(500),
        };
        assert_eq!(KeyMsg::decode(&long.encode()), None);
        assert_eq!(KeyMsg::decode(&[9, 9, 9]), None);
    }
}
