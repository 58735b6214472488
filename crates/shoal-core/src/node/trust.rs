//! The node's trust-facing parts: its keyring and plaintext policy, keyring rollouts across
//! the cluster, drop accounting of the trust layer, the limit on generations from the future,
//! the bound on members and the answer budget for strangers.
//!
//! A child module of `core::node` (it reaches the node's fields) so that node/mod.rs stays about
//! membership. Must not seal or open anything itself (`core::trust` does) and must stay
//! sans-IO: the driver persists the keyring it hands out.

use super::{Node, NodeError};
use crate::keyops::{
    apply, check_state, CatchUpKind, Confirm, KeyMsg, KeyOpKind, Rollout, StateRefusal,
};
use crate::keyring::{Key, KeyError, Keyring};
use crate::time::Time;
use crate::trust::{Plaintext, TrustConfig, TrustDrop, TrustStats};
use crate::wire::{self, Kind};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How far ahead of our clock a generation (a node's start time) may be. Records and
/// identities beyond it are refused: a forged "newest generation" cannot pin a name forever.
pub(crate) const MAX_FUTURE: Duration = Duration::from_secs(3600);

/// Peers remembered at once as owed a ring they had no bound key for
/// (`Node::catch_up_withheld`).
const MAX_WITHHELD: usize = 256;

/// Keyring changes remembered as applied (`Node::ops_applied`).
const MAX_OPS_APPLIED: usize = 1_024;

/// Most members (alive, suspect or down until forgotten) a node holds unless the driver says
/// otherwise (`Node::set_max_members`): past it, an unknown member a datagram names (SWIM
/// updates, announces, introductions) is refused and counted (`Stats::members_refused`).
pub const DEFAULT_MAX_MEMBERS: usize = 100_000;

/// A stranger (an address that is not an active member) is answered with at most this many
/// times the bytes of its datagram.
pub(crate) const AMPLIFICATION: usize = 2;

/// The sending session: random per start (from the node's seed) and mixed with the
/// generation, so that a restarted node never reuses a nonce even with the same seed. It is
/// sent in clear in every datagram, so it is derived one way (XChaCha20's keystream under the
/// seed): it reveals nothing of the seed, from which the node's hash tables and random
/// choices are derived.
pub(super) fn session_seed(seed: u64, generation: u64) -> u64 {
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..24].copy_from_slice(b"shoal session v2");
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&generation.to_le_bytes());
    let mut out = [0u8; 8];
    let aead = XChaCha20Poly1305::new(&key.into());
    // Encrypting zeros yields the keystream; the tag is not needed. Cannot fail (8 bytes).
    let _ = aead.encrypt_in_place_detached(&XNonce::from(nonce), b"", &mut out);
    u64::from_le_bytes(out)
}

#[derive(Debug, thiserror::Error)]
/// Why a keyring command was refused.
pub enum KeysError {
    #[error("this agent runs without encryption (--insecure): there is no keyring to change")]
    /// The node runs without a key (`--insecure`).
    Insecure,
    #[error(transparent)]
    /// The key change itself was refused.
    Key(#[from] KeyError),
}

impl Node {
    /// Sets how datagrams are protected. Call before `start` (the agent does at once). A node
    /// is insecure (plaintext) until this is called with a keyring.
    pub fn set_trust(&mut self, cfg: TrustConfig) -> Result<(), NodeError> {
        if self.started {
            return Err(NodeError::AlreadyStarted);
        }
        let session = self.trust.session();
        let wall = self.trust.unix_ms_at_zero();
        self.trust = crate::trust::Trust::new(cfg, session, self.hashes);
        // The node's one wall clock (`set_wall_clock`) stays as it was.
        self.trust.set_wall_clock(Time::ZERO, wall);
        Ok(())
    }

    /// Bounds the members this node holds (active and down, this node included); see
    /// [`DEFAULT_MAX_MEMBERS`]. Members already known keep being updated.
    pub fn set_max_members(&mut self, max: usize) {
        self.foca.set_max_members(max);
        self.store_mut().set_max_records(max);
    }

    /// True when the node runs without a key.
    pub fn is_insecure(&self) -> bool {
        self.trust.is_insecure()
    }

    /// The plaintext policy.
    pub fn plaintext_mode(&self) -> Plaintext {
        self.trust.config().plaintext
    }

    /// The keyring (none when insecure).
    pub fn keyring(&self) -> Option<&Keyring> {
        self.trust.keyring()
    }

    /// Trust counters.
    pub fn trust_stats(&self) -> TrustStats {
        self.trust.stats(self.now)
    }

    /// Peers heard lately whose clock differs from ours by more than the replay window, with
    /// the difference (theirs minus ours, ms), largest first. Their datagrams are accepted:
    /// this is for the log and the operator, membership needs no clock agreement.
    pub fn clock_skews(&self) -> Vec<(SocketAddr, i64)> {
        self.trust.skews(self.now)
    }

    /// The last peer whose datagram was accepted although its clock is off, once (for the
    /// driver's rate-limited warning).
    #[must_use]
    pub fn take_last_skewed(&mut self) -> Option<(SocketAddr, i64)> {
        self.trust.take_last_skewed()
    }

    /// The one wall-clock input: maps the core's time onto the wall clock (Unix ms) for
    /// everything that needs one (timestamps of sealed datagrams, the largest generation
    /// accepted, the stamp and age of snapshots). Call it before `set_trust`/`restore` and
    /// again before draining outputs when the wall clock may have moved; until then the wall
    /// clock reads as the core's time (the simulator's choice; a driver on real time that
    /// forgot the call would restore every snapshot as fresh).
    pub fn set_wall_clock(&mut self, now: Time, unix_ms: u64) {
        self.trust.set_wall_clock(now, unix_ms);
    }

    /// The keyring after a change (once per change), for the driver to persist.
    #[must_use]
    pub fn take_keyring_change(&mut self) -> Option<Keyring> {
        self.trust.take_keyring_change()
    }

    /// Applies a keyring change here, then sends it to every active member. Returns the
    /// rollout's id; follow it with [`Node::keys_rollout`] and resend to the members that have
    /// not confirmed with [`Node::keys_resend`].
    pub fn keys_change(&mut self, now: Time, kind: KeyOpKind, key: Key) -> Result<u64, KeysError> {
        if self.trust.is_insecure() {
            return Err(KeysError::Insecure);
        }
        self.now = now;
        self.trust.change_keyring(|r| apply(r, kind, &key))?;
        let me = self.foca.identity().addr();
        let members: BTreeMap<SocketAddr, (std::sync::Arc<str>, Confirm)> = self
            .truth
            .iter()
            .filter(|(_, m)| m.state().is_active() && m.id.addr() != me)
            .map(|(n, m)| (m.id.addr(), (n.clone(), Confirm::Pending)))
            .collect();
        let salt = self.trust.session() & 0xFFFF_FFFF_FFFF;
        let id = self.rollouts.start(now, salt, kind, key, members).id;
        self.keys_resend(now, id);
        Ok(id)
    }

    /// Sends rollout `id` again to the members that have not answered.
    pub fn keys_resend(&mut self, now: Time, id: u64) {
        self.now = now;
        let Some(r) = self.rollouts.get(id) else {
            return;
        };
        let msg = r.message();
        let pending: Vec<SocketAddr> = r.pending().collect();
        for dst in pending {
            self.send_key_material(dst, &msg);
        }
    }

    /// The rollout of keyring change `id`, while it is known.
    pub fn keys_rollout(&self, id: u64) -> Option<&Rollout> {
        self.rollouts.get(id)
    }

    /// Sends a keyring message that carries key material (`Op`, `State`) to `dst`: the one
    /// place keys leave this node. The message goes only sealed to `dst`'s own member key,
    /// as bound to its name (`seal_key_material`, `KeyMsg::Sealed`), so that no holder of a
    /// ring key, a retired one included, can read it. A member without a bound key (a v0.1.0
    /// agent, one whose signed record has not reached us yet) gets nothing, counted in
    /// `TrustStats::key_material_withheld`: a rollout keeps it pending and its resends reach
    /// it once it is bound, and the catch-up (`Hello`, `State`) serves it then.
    fn send_key_material(&mut self, dst: SocketAddr, msg: &KeyMsg) {
        debug_assert!(matches!(msg, KeyMsg::Op { .. } | KeyMsg::State { .. }));
        match self.seal_key_material(dst, msg) {
            Some(sealed) => self.send_keys(dst, &sealed),
            None => self.trust.count_key_material_withheld(),
        }
    }

    /// Sends a keyring message as given (`Ack`, `Hello`, or key material already sealed by
    /// [`Node::send_key_material`]).
    fn send_keys(&mut self, dst: SocketAddr, msg: &KeyMsg) {
        wire::write_header(&mut self.out.buf, &self.cfg.cluster_label, Kind::Keys);
        self.out.buf.extend_from_slice(&msg.encode());
        self.stats.tx_datagrams += 1;
        self.stats.tx_bytes += self.out.buf.len() as u64;
        self.out.transmits.push_back(super::Transmit {
            dst,
            data: self.out.buf.clone(),
        });
    }

    /// A keyring message arrived (sealed: `core::trust` refuses plaintext ones).
    pub(super) fn handle_keys(&mut self, now: Time, from: SocketAddr, body: &[u8]) {
        let msg = match KeyMsg::decode(body) {
            Ok(msg) => msg,
            Err(crate::ext::MsgError::Later(_)) => {
                self.stats.unknown_kinds += 1;
                return;
            }
            Err(_) => {
                self.stats.dropped_decode += 1;
                return;
            }
        };
        let (msg, from_member) = match msg {
            KeyMsg::Sealed { sealed } => match self.open_key_material(from, &sealed) {
                Some(inner) => inner,
                None => {
                    self.stats.dropped_decode += 1;
                    return;
                }
            },
            msg => (msg, Some(false)),
        };
        // Key material is taken only as it is sent (`send_key_material`): sealed to our
        // member key by the member at the datagram's address, as bound to its name. A bare
        // ring key (a former member who kept one, anyone handed the cluster key) changes
        // nothing: refused, counted, and an `Op` is answered with why. Sealed by a member
        // whose key we have not bound yet (its signed record is on its way): refused and
        // counted too, but not answered, so that the sender's resends reach us once bound.
        if matches!(msg, KeyMsg::Op { .. } | KeyMsg::State { .. }) && from_member != Some(true) {
            self.trust.count_key_material_refused();
            if let (KeyMsg::Op { id, .. }, Some(false)) = (&msg, from_member) {
                let id = *id;
                let why = "refused: a keyring change is taken only sealed to this agent's \
                           member key by a member bound to its name";
                self.send_keys(
                    from,
                    &KeyMsg::Ack {
                        id,
                        error: why.into(),
                    },
                );
            }
            return;
        }
        match msg {
            KeyMsg::Op { id, kind, key } => {
                // A sealed change has no freshness of its own: a key holder who recorded one
                // could replay it in a new envelope (under a spoofed source address, without
                // the pair tag) and undo a later step, e.g. an old `use`. A change applied
                // here once is acknowledged again (the sender's resends), never re-applied.
                if self.ops_applied.contains(&id) {
                    self.send_keys(from, &KeyMsg::ack(id, Ok(())));
                    return;
                }
                let key = Key::from_bytes(key);
                // A change may not take out the key it came sealed with (as for `State`).
                let sealed_with = self.trust.opened_with();
                let res = if kind == KeyOpKind::Remove && sealed_with == Some(key.id()) {
                    Err(KeyError::SealedWith(key.id()))
                } else {
                    self.trust.change_keyring(|r| apply(r, kind, &key))
                };
                if matches!(res, Err(KeyError::Retired(_) | KeyError::SealedWith(_))) {
                    self.trust.count_keyring_refused();
                }
                if res.is_ok() {
                    if self.ops_applied.len() >= MAX_OPS_APPLIED {
                        self.ops_applied.pop_front();
                    }
                    self.ops_applied.push_back(id);
                }
                self.send_keys(from, &KeyMsg::ack(id, res));
            }
            KeyMsg::Ack { id, error } => {
                if let Some(r) = self.rollouts.get_mut(id) {
                    r.ack(from, error);
                }
            }
            KeyMsg::Hello { generation } => {
                let Some(mine) = self.trust.keyring().map(|r| r.generation()) else {
                    return;
                };
                if mine > generation {
                    self.send_catch_up(now, from, CatchUpKind::State);
                } else if mine < generation {
                    self.send_catch_up(now, from, CatchUpKind::Hello);
                }
            }
            KeyMsg::State { .. } => {
                let (Some(theirs), Some(mine)) = (msg.ring(), self.trust.keyring()) else {
                    self.stats.dropped_decode += 1;
                    return;
                };
                let Some(sealed_with) = self.trust.opened_with() else {
                    return;
                };
                // Only a newer ring replaces ours (a peer that missed a step never undoes
                // it), one checked jump at a time (`keyops::check_state`).
                match check_state(mine, &theirs, sealed_with) {
                    Ok(ring) => {
                        let _ = self.trust.adopt_keyring(ring);
                    }
                    Err(StateRefusal::NotNewer) => {}
                    Err(_) => self.trust.count_keyring_refused(),
                }
            }
            // Opened above: a sealed message never holds another.
            KeyMsg::Sealed { .. } => self.stats.dropped_decode += 1,
        }
    }

    /// After a datagram was opened: a peer that sealed with a key other than our primary
    /// missed a step (or we did) and is sent our ring; every `HELLO_EVERY` a peer is told our
    /// ring's generation. Both rate-limited per peer (`keyops::CatchUp`).
    pub(super) fn keys_catch_up(&mut self, now: Time) {
        let Some((from, primary)) = self.trust.take_last_opened() else {
            return;
        };
        if self.catch_up_withheld.contains(&from) && self.seal_key_of(from).is_some() {
            self.catch_up_withheld.remove(&from);
            self.send_catch_up(now, from, CatchUpKind::State);
            return;
        }
        if primary {
            // Unsolicited: spaced across all peers (`keyops::HELLO_SPACING`).
            if self.rollouts.catch_up.may_greet(now, from) {
                self.send_catch_up_now(from, CatchUpKind::Hello);
            }
        } else {
            self.send_catch_up(now, from, CatchUpKind::State);
        }
    }

    fn send_catch_up(&mut self, now: Time, to: SocketAddr, kind: CatchUpKind) {
        // A ring goes only sealed to the peer's own key: while none is bound to the member
        // at `to` (a member back at a new address or generation, its signed record not in
        // yet), withhold it without spending the peer's rate-limit slot, so that the next
        // datagram after the binding serves it (not `STATE_EVERY` later).
        if kind == CatchUpKind::State && self.seal_key_of(to).is_none() {
            self.trust.count_key_material_withheld();
            if self.catch_up_withheld.len() < MAX_WITHHELD {
                self.catch_up_withheld.insert(to);
            }
            return;
        }
        if self.rollouts.catch_up.may_send(now, to, kind) {
            self.send_catch_up_now(to, kind);
        }
    }

    /// Sends `kind` to `to` (the rate limits already passed).
    fn send_catch_up_now(&mut self, to: SocketAddr, kind: CatchUpKind) {
        let Some(ring) = self.trust.keyring() else {
            return;
        };
        match kind {
            CatchUpKind::State => {
                let msg = KeyMsg::state(ring);
                self.send_key_material(to, &msg);
            }
            CatchUpKind::Hello => {
                let msg = KeyMsg::Hello {
                    generation: ring.generation(),
                };
                self.send_keys(to, &msg);
            }
        }
    }

    pub(super) fn count_trust_drop(&mut self, e: TrustDrop) {
        let s = &mut self.stats;
        match e {
            TrustDrop::Wire(w) => self.count_wire_error(w),
            TrustDrop::Auth => s.dropped_auth += 1,
            TrustDrop::Plaintext => s.dropped_plaintext += 1,
            TrustDrop::Replay => s.dropped_replay += 1,
            TrustDrop::Stale => s.dropped_stale += 1,
            TrustDrop::Retired => s.dropped_retired_key += 1,
        }
    }

    /// The largest generation accepted now: our wall clock plus [`MAX_FUTURE`].
    pub(super) fn generation_limit(&self, now: Time) -> u64 {
        self.trust
            .wall_clock(now)
            .saturating_add(MAX_FUTURE.as_millis() as u64)
            .max(
                self.own
                    .generation
                    .saturating_add(MAX_FUTURE.as_millis() as u64),
            )
    }

    /// Before handling a datagram of `len` bytes from `from`: the answer budget, when
    /// `from` is no member's address (`AMPLIFICATION` x `len` bytes to `from`), with the
    /// position in the transmit queue where this input's datagrams start.
    pub(super) fn answer_start(&self, from: SocketAddr, len: usize) -> Option<AnswerBudget> {
        let key = crate::identity::AddrKey::of(from);
        // A member, even one we believe down (a healing partition), is no stranger.
        if self.foca.is_known_addr(&key) {
            return None;
        }
        Some(AnswerBudget {
            to: from,
            bytes: len.saturating_mul(AMPLIFICATION),
            first: self.out.transmits.len(),
        })
    }

    /// After handling the datagram: drops what this input queued for the stranger past its
    /// budget (counted in `answers_capped`). Every message kind goes through here.
    pub(super) fn answer_cap(&mut self, budget: Option<AnswerBudget>) {
        let Some(b) = budget else {
            return;
        };
        // The datagram introduced its sender (an announce, or a ping from a member we had not
        // heard of yet): it is a member now, answered like the others.
        if self
            .foca
            .is_active_addr(&crate::identity::AddrKey::of(b.to))
        {
            return;
        }
        let mut left = b.bytes;
        let mut i = b.first;
        while i < self.out.transmits.len() {
            let t = &self.out.transmits[i];
            if t.dst != b.to {
                i += 1;
                continue;
            }
            // What goes on the wire: the seal (when sealing) and any padding come on top.
            let seal = if self.trust.seals(&t.data) {
                wire::SEAL_OVERHEAD
            } else {
                0
            };
            let size = (t.data.len() + seal).max(self.pad_for(t.dst, &t.data));
            if size <= left {
                left -= size;
                i += 1;
                continue;
            }
            if let Some(t) = self.out.transmits.remove(i) {
                self.stats.answers_capped += 1;
                self.stats.tx_datagrams = self.stats.tx_datagrams.saturating_sub(1);
                self.stats.tx_bytes = self.stats.tx_bytes.saturating_sub(t.data.len() as u64);
            }
        }
    }

    /// The peer to ask first for missing records: right after connecting, a seed we
    /// announced to (it knows us, so it answers in full; a peer that has not heard of us yet
    /// answers a stranger only `AMPLIFICATION` times what it asked), else a random peer.
    pub(super) fn fetch_peer(&mut self) -> Option<SocketAddr> {
        if self.bootstrap_left > 0 {
            let active: Vec<SocketAddr> = self
                .seeds
                .iter()
                .copied()
                .filter(|a| self.foca.is_active_addr(&crate::identity::AddrKey::of(*a)))
                .collect();
            if !active.is_empty() {
                use rand::RngExt;
                return Some(active[self.rng.random_range(0..active.len())]);
            }
        }
        self.random_peer()
    }

    /// Size to pad a datagram (`data`, a plaintext envelope) to `dst` to: [`PAD_TO`] for a
    /// SWIM datagram to an address that is not an active member (an announce to a seed: its
    /// answer, capped at `AMPLIFICATION` times its size, must fit a full datagram), else 0.
    pub(super) fn pad_for(&self, dst: SocketAddr, data: &[u8]) -> usize {
        let h = wire::header_len(&self.cfg.cluster_label);
        if data.get(h - 1) != Some(&(Kind::Swim as u8)) {
            return 0;
        }
        let key = crate::identity::AddrKey::of(dst);
        if self.foca.is_active_addr(&key) {
            0
        } else {
            PAD_TO
        }
    }
}

/// See [`Node::answer_start`].
pub(super) struct AnswerBudget {
    to: SocketAddr,
    bytes: usize,
    first: usize,
}

/// What a datagram to a stranger is padded to: its answer may then be a full datagram.
pub(super) const PAD_TO: usize = wire::MAX_DATAGRAM.div_ceil(AMPLIFICATION);
