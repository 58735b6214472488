//! Keyring changes spread across the cluster (`shoal keys install|use|remove`).
//!
//! Owns the keyring message (wire kind `Keys`, only ever accepted sealed), its decoding and
//! the bookkeeping of one rollout: which members were asked, which confirmed, which refused
//! and why. The node applies a change locally, sends it to every active member, and each
//! member applies it and answers with an acknowledgement; the operator gets the list of
//! members that did not confirm. Must not touch the keyring itself (the node does, through
//! `core::trust`).
//!
//! Also the catch-up of an agent that missed a step (it was down, or cut off): every ring has
//! a generation (its count of changes). A peer that hears from an agent sealing with a key
//! that is no longer its primary sends it its ring (`State`); every `HELLO_EVERY` each agent
//! tells a peer it hears from its generation (`Hello`), and the one with the older ring is
//! sent the newer. An agent starts such an exchange at most once per `HELLO_SPACING` in all
//! (the first at once), with whichever peer it hears from next, so its idle traffic does
//! not grow with the cluster. A ring is adopted only when its generation is larger than ours, and only
//! from a datagram sealed under one of our keys: key holders alone change keyrings, and an
//! older ring never replaces a newer one. How often each peer is sent either message is
//! bounded (`STATE_EVERY`, `HELLO_EVERY`, at most `MAX_CATCH_UP_PEERS` peers remembered).
//!
//! A peer's ring is checked before it is adopted ([`check_state`]): it may be at most
//! [`MAX_KEYRING_JUMP`] generations ahead, differ from ours by no more changes than
//! generations it is ahead, keep the key it came sealed with and hold no key we retired.
//! So one sealed datagram can neither replace a whole ring nor push the generation to
//! `u64::MAX` (where no later catch-up could win again).

use crate::ext::{decode_kind, Decoded, ExtError, Kinds, MsgError};
use crate::keyring::{Key, KeyError, KeyId, Keyring, KEY_LEN, MAX_KEYS};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Most rollouts remembered at once (the oldest is forgotten first).
pub(crate) const MAX_ROLLOUTS: usize = 8;
/// Least time between two keyrings (`State`) sent to one peer.
pub(crate) const STATE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Least time between two generations (`Hello`) sent to one peer.
pub(crate) const HELLO_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Least time between two `Hello`s an agent starts on its own (to any peer): without it an
/// agent told every peer it heard from, once per `HELLO_EVERY` each, which grew its idle
/// traffic with the cluster (about 1.6 datagrams a second per agent at 50 members). An
/// answer to a `Hello` is not spaced. A restarted agent's first `Hello` goes at once. With
/// every agent greeting a peer this often, an agent that missed an `install` hears a newer
/// generation within about `HELLO_SPACING / 2` on average (it greets, and is greeted, about
/// once per `HELLO_SPACING`); a missed `use` is caught up at once (`State`).
pub(crate) const HELLO_SPACING: std::time::Duration = std::time::Duration::from_secs(30);
/// Most peers whose last catch-up messages are remembered.
pub(crate) const MAX_CATCH_UP_PEERS: usize = 1024;
/// Most generations a peer's ring (`State`) may be ahead of ours to be adopted: about ten
/// rotations (install, use, remove) missed. An agent further behind is refused (counted)
/// and given the current key by the operator (docs/security.md). Rings with our keys and
/// a larger generation move ours by at most this much at a time, so the generation can grow
/// by at most this much per accepted datagram: reaching `u64::MAX` would take 2^59 of them.
pub(crate) const MAX_KEYRING_JUMP: u64 = 32;
/// Longest error text carried in an acknowledgement.
const MAX_ERROR_LEN: usize = 200;

/// A change of the keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOpKind {
    /// Add a key to the ring.
    Install,
    /// Make a key of the ring the primary one.
    Use,
    /// Remove a key from the ring.
    Remove,
}

impl KeyOpKind {
    /// The change as written in JSON and logs.
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
        /// The change's id.
        id: u64,
        /// What to do.
        kind: KeyOpKind,
        /// The key.
        key: [u8; KEY_LEN],
    },
    /// The change `id` was applied (`error` empty) or refused.
    Ack {
        /// The change.
        id: u64,
        /// Why it was refused (empty: applied).
        error: String,
    },
    /// "My keyring has seen this many changes": answered with `State` by a peer whose ring
    /// is newer, with `Hello` by one whose ring is older.
    Hello {
        /// Changes the sender's ring has seen.
        generation: u64,
    },
    /// A whole keyring (primary first) and its generation, for a peer with an older one.
    State {
        /// Changes the ring has seen.
        generation: u64,
        /// The keys, primary first.
        keys: Vec<[u8; KEY_LEN]>,
    },
    /// An `Op` or a `State` sealed to the recipient's own X25519 key
    /// (`member_key::seal_to`; sent only to a member whose record carries one, so never to
    /// a v0.1.0 agent).
    Sealed {
        /// The sealed message.
        sealed: Vec<u8>,
    },
}

impl Kinds for KeyMsg {
    /// Variants up to `Sealed`; a new kind is added at the end and counted here.
    const KNOWN: u32 = 5;
}

impl KeyMsg {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and validates: v0.1.0's postcard layout, then extension fields
    /// (`core::ext`); a message kind of a later release is [`MsgError::Later`].
    pub fn decode(data: &[u8]) -> Result<KeyMsg, MsgError> {
        let m = match decode_kind::<KeyMsg>(data)? {
            Decoded::Known(m, _ext) => m,
            Decoded::Unknown(kind) => return Err(MsgError::Later(kind)),
        };
        let invalid = |what: &str| Err(MsgError::Decode(ExtError::Fixed(what.into())));
        match &m {
            KeyMsg::Ack { error, .. } if error.len() > MAX_ERROR_LEN => invalid("error too long"),
            KeyMsg::State { keys, .. } if keys.is_empty() || keys.len() > MAX_KEYS => {
                invalid("bad key count")
            }
            _ => Ok(m),
        }
    }

    /// The `State` message of a ring.
    pub fn state(ring: &Keyring) -> KeyMsg {
        KeyMsg::State {
            generation: ring.generation(),
            keys: ring.keys().iter().map(|k| *k.bytes()).collect(),
        }
    }

    /// The ring a `State` carries (`None` for another message, or duplicate keys).
    pub fn ring(&self) -> Option<Keyring> {
        let KeyMsg::State { generation, keys } = self else {
            return None;
        };
        let ring = Keyring::from_keys(keys.iter().map(|k| Key::from_bytes(*k)).collect()).ok()?;
        (ring.keys().len() == keys.len()).then(|| ring.with_generation(*generation))
    }

    pub(crate) fn ack(id: u64, res: Result<(), KeyError>) -> KeyMsg {
        let mut error = res.err().map(|e| e.to_string()).unwrap_or_default();
        error.truncate(MAX_ERROR_LEN);
        KeyMsg::Ack { id, error }
    }
}

/// Where one member stands in a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "error")]
pub enum Confirm {
    /// No answer yet.
    Pending,
    /// Applied.
    Confirmed,
    /// Refused, and why.
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
pub(crate) struct Rollouts {
    list: std::collections::VecDeque<Rollout>,
    next_id: u64,
    /// Catch-up messages sent to peers behind (or ahead), rate-limited per peer.
    pub catch_up: CatchUp,
}

impl Rollouts {
    /// Starts a rollout; `salt` makes ids of different nodes differ.
    pub(crate) fn start(
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

    pub(crate) fn get(&self, id: u64) -> Option<&Rollout> {
        self.list.iter().find(|r| r.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Rollout> {
        self.list.iter_mut().find(|r| r.id == id)
    }
}

/// Which catch-up message was last sent to a peer, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CatchUpKind {
    State,
    Hello,
}

/// When each peer was last sent a `State` and a `Hello` (bounded).
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    peers: BTreeMap<SocketAddr, (Option<Time>, Option<Time>)>,
    /// When this agent last started a `Hello` exchange on its own.
    last_greeting: Option<Time>,
}

impl CatchUp {
    /// True (and noted) when an unsolicited `Hello` may go to `peer` now: at most one per
    /// `HELLO_SPACING` in all, and one per `HELLO_EVERY` to each peer.
    pub(crate) fn may_greet(&mut self, now: Time, peer: SocketAddr) -> bool {
        if self
            .last_greeting
            .is_some_and(|t| now.since(t) < HELLO_SPACING)
        {
            return false;
        }
        if !self.may_send(now, peer, CatchUpKind::Hello) {
            return false;
        }
        self.last_greeting = Some(now);
        true
    }

    /// True (and noted) when `kind` may be sent to `peer` now.
    pub(crate) fn may_send(&mut self, now: Time, peer: SocketAddr, kind: CatchUpKind) -> bool {
        let every = match kind {
            CatchUpKind::State => STATE_EVERY,
            CatchUpKind::Hello => HELLO_EVERY,
        };
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_CATCH_UP_PEERS {
            // Forget peers not sent anything for a while; if none, send nothing.
            self.peers.retain(|_, (s, h)| {
                [*s, *h]
                    .into_iter()
                    .flatten()
                    .any(|t| now.since(t) < HELLO_EVERY)
            });
            if self.peers.len() >= MAX_CATCH_UP_PEERS {
                return false;
            }
        }
        let e = self.peers.entry(peer).or_default();
        let slot = match kind {
            CatchUpKind::State => &mut e.0,
            CatchUpKind::Hello => &mut e.1,
        };
        if slot.is_some_and(|t| now.since(t) < every) {
            return false;
        }
        *slot = Some(now);
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }
}

/// Why a peer's ring (`State`) was not adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateRefusal {
    /// Not newer than ours: nothing to do (rings cross in flight; not counted).
    NotNewer,
    /// More than [`MAX_KEYRING_JUMP`] generations ahead, with other keys.
    TooFar,
    /// Differs from ours by more changes than the generations it is ahead.
    TooManyChanges,
    /// Lacks the key the datagram that carried it was sealed with (a sender seals with a
    /// key of its own ring, so its ring always holds it).
    DropsSealingKey,
    /// Holds a key this node retired.
    Retired,
}

/// The ring to adopt from a peer's `theirs`, which came in a datagram sealed with the key
/// `sealed_with` of our ring `mine`; or why not.
///
/// Each key added or removed and a change of primary is one step, so a ring `n` generations
/// ahead may differ from ours by at most `n` such changes, and `n` is at most
/// [`MAX_KEYRING_JUMP`]. A ring with our keys only moves our generation, by at most
/// `MAX_KEYRING_JUMP` (an agent started with the current key catches up in a few
/// exchanges). Keys in ours and not in theirs are retired here, as their removal was.
pub(crate) fn check_state(
    mine: &Keyring,
    theirs: &Keyring,
    sealed_with: KeyId,
) -> Result<Keyring, StateRefusal> {
    let (g, t) = (mine.generation(), theirs.generation());
    if t <= g {
        return Err(StateRefusal::NotNewer);
    }
    if !theirs
        .keys()
        .iter()
        .any(|k| k.id() == sealed_with && mine.contains(k))
    {
        return Err(StateRefusal::DropsSealingKey);
    }
    if theirs.keys().iter().any(|k| mine.is_retired(k)) {
        return Err(StateRefusal::Retired);
    }
    let added = theirs.keys().iter().filter(|k| !mine.contains(k)).count();
    let removed: Vec<&Key> = mine.keys().iter().filter(|k| !theirs.contains(k)).collect();
    let changes = (added + removed.len()) as u64 + u64::from(theirs.primary() != mine.primary());
    let ahead = t - g;
    let generation = if changes == 0 {
        g + ahead.min(MAX_KEYRING_JUMP)
    } else if ahead > MAX_KEYRING_JUMP {
        return Err(StateRefusal::TooFar);
    } else if changes > ahead {
        return Err(StateRefusal::TooManyChanges);
    } else {
        t
    };
    let mut ring = theirs
        .clone()
        .with_generation(generation)
        .with_retired_of(mine);
    for k in removed {
        ring.retire(k);
    }
    Ok(ring)
}

/// Applies a keyring change described by `kind` and `key` to a ring.
pub(crate) fn apply(
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
        assert_eq!(KeyMsg::decode(&m.encode()), Ok(m));
        let long = KeyMsg::Ack {
            id: 1,
            error: "x".repeat(500),
        };
        assert!(KeyMsg::decode(&long.encode()).is_err());
        assert_eq!(KeyMsg::decode(&[9, 9, 9]), Err(MsgError::Later(9)));
        assert!(KeyMsg::decode(&[2]).is_err());
        let ring = Keyring::from_keys(vec![
            Key::from_bytes([1; KEY_LEN]),
            Key::from_bytes([2; KEY_LEN]),
        ])
        .unwrap()
        .with_generation(4);
        let st = KeyMsg::state(&ring);
        let back = KeyMsg::decode(&st.encode()).unwrap();
        assert_eq!(back.ring(), Some(ring));
        for keys in [vec![], vec![[0; KEY_LEN]; MAX_KEYS + 1]] {
            let m = KeyMsg::State {
                generation: 1,
                keys,
            };
            assert!(KeyMsg::decode(&m.encode()).is_err());
        }
        let dup = KeyMsg::State {
            generation: 1,
            keys: vec![[5; KEY_LEN], [5; KEY_LEN]],
        };
        assert_eq!(dup.ring(), None);
    }

    #[test]
    fn catch_up_is_rate_limited_and_bounded() {
        let mut c = CatchUp::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let t0 = Time(1_000_000);
        assert!(c.may_send(t0, a, CatchUpKind::State));
        assert!(!c.may_send(t0.plus(STATE_EVERY / 2), a, CatchUpKind::State));
        assert!(c.may_send(t0, a, CatchUpKind::Hello));
        assert!(c.may_send(t0.plus(STATE_EVERY), a, CatchUpKind::State));
        assert!(!c.may_send(t0.plus(STATE_EVERY), a, CatchUpKind::Hello));
        for p in 2..(MAX_CATCH_UP_PEERS as u16 + 10) {
            let peer = SocketAddr::from(([127, 0, 0, 1], p));
            c.may_send(t0, peer, CatchUpKind::Hello);
        }
        assert!(c.len() <= MAX_CATCH_UP_PEERS);
        // Once they are old, new peers take their places.
        let late = t0.plus(HELLO_EVERY * 2);
        assert!(c.may_send(late, "127.0.0.2:9".parse().unwrap(), CatchUpKind::Hello));
        assert!(c.len() <= MAX_CATCH_UP_PEERS);
    }

    #[test]
    fn greetings_are_spaced_whatever_the_number_of_peers() {
        let mut c = CatchUp::default();
        let t0 = Time(1_000_000);
        let peer = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        // The first goes at once (a restarted agent catches up without waiting).
        assert!(c.may_greet(t0, peer(1)));
        // Every other peer heard from within the spacing waits, however many there are.
        let sent = (2..200u16)
            .filter(|p| c.may_greet(t0.plus(HELLO_SPACING / 2), peer(*p)))
            .count();
        assert_eq!(sent, 0);
        // After the spacing, one more (to a peer not greeted within HELLO_EVERY).
        assert!(c.may_greet(t0.plus(HELLO_SPACING), peer(2)));
        // A peer greeted within HELLO_EVERY is not greeted again, whatever the spacing.
        let mut d = CatchUp::default();
        assert!(d.may_greet(t0, peer(1)));
        let within = t0.plus(HELLO_EVERY - std::time::Duration::from_millis(1));
        assert!(!d.may_send(within, peer(1), CatchUpKind::Hello));
        assert!(d.may_send(within, peer(2), CatchUpKind::Hello));
        assert!(!c.may_greet(t0.plus(HELLO_SPACING), peer(3)));
        // Over a minute of hearing from 100 peers all the time: at most one per spacing.
        let mut n = 0;
        for s in 0..600u64 {
            let now = t0.plus(HELLO_SPACING + std::time::Duration::from_millis(100 * s));
            for p in 10..110u16 {
                if c.may_greet(now, peer(p)) {
                    n += 1;
                }
            }
        }
        assert!(
            n <= 60 / HELLO_SPACING.as_secs() + 1,
            "{n} greetings in 60 s"
        );
        // Answers are not spaced: a Hello answered to a peer still goes.
        assert!(c.may_send(t0.plus(HELLO_SPACING), peer(150), CatchUpKind::Hello));
    }
}
