//! Sealing and opening datagrams: authentication, encryption and replay protection.
//!
//! Owns the node's keyring, its sending session and counter, the replay table, the clock
//! skew seen from peers and the plaintext policy. Every datagram the node sends passes
//! through [`Trust::seal`] and every datagram it receives through [`Trust::open`]; the rest of
//! the core sees plaintext envelopes only. Must not read a clock or draw OS randomness: the
//! session comes from the node's seed, time from the driver (`set_wall_clock` maps the
//! core's time onto the wall clock that timestamps need).
//!
//! Timestamps: every sealed datagram carries the sender's wall clock (v0.1.0 receivers check
//! it against theirs, so this release keeps sending it). This release accepts a datagram
//! whatever its timestamp says, as SWIM needs no clock agreement: replays are refused by the
//! replay table (`core::replay`, per sender, ordered by the sender's own timestamps). The
//! skew is measured and counted (`TrustStats::skewed`, `Trust::skews`) for the log and the
//! metrics. Only operator commands (`Kind::Operator`, a cluster-wide thaw) still need a
//! timestamp within `replay_window` of our clock: a capture of one replayed days later must
//! not act again, and they are rare, run by an operator who can run them elsewhere.
//!
//! A sealed datagram is the envelope header with [`wire::FLAG_SEALED`] set, then
//! `key_id[4] session[8] counter[8] timestamp_secs[4]` (big-endian), then the body encrypted
//! with XChaCha20-Poly1305 and its 16-byte tag. The associated data is everything before the
//! ciphertext: magic, version, flags, cluster label, kind and the seal header, so none of
//! them can be changed. The 24-byte nonce is `session || counter || 0[8]`: unique per key as
//! long as a sender never reuses a (session, counter) pair, which holds because the session
//! is drawn afresh (and mixed with the generation) at every start and the counter only
//! grows.
//!
//! Between two members that know each other's member keys, the datagram also carries a pair
//! tag ([`wire::FLAG_PAIR`]): 16 bytes after the seal's tag, an XChaCha20-Poly1305 tag of
//! nothing with the pair's key (`member_key::pair_keys`) over the whole datagram before it,
//! nonce `session || counter || 0xFF[8]`. A holder of the cluster key can write any
//! session and counter under a spoofed source address, but not this tag: the replay state of
//! datagrams that carry a valid one is kept apart (`core::replay`, keyed by source and
//! whether the sender was authenticated), so a spoofed datagram cannot push a member's
//! window past its real counters. A tag that does not verify (or that the receiver cannot
//! check: no key bound for the sender yet) leaves the datagram a cluster-key one.

use crate::hash::{FixedHashMap, HashSeed};
use crate::keyring::{Key, KeyError, KeyId, Keyring};
use crate::replay::ReplayGuard;
use crate::time::Time;
use crate::wire;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Sealing and opening one datagram: the envelope, the seal, the pair tag, replays.
mod seal;
#[cfg(test)]
mod tests;

/// What to do with datagrams that are not sealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plaintext {
    /// Seal everything, refuse plaintext (the default with a key).
    #[default]
    Refuse,
    /// Seal everything, accept plaintext too (step 2 of moving a cluster to encryption).
    Accept,
    /// Send plaintext, accept both (step 1: every agent gets the key before anyone seals).
    Send,
}

/// How a node protects its datagrams.
#[derive(Clone, Debug)]
pub struct TrustConfig {
    /// `None`: insecure (plaintext only; sealed datagrams are dropped).
    pub keyring: Option<Keyring>,
    /// Whether plaintext datagrams are accepted.
    pub plaintext: Plaintext,
    /// How far a new session of a sender may be stamped before its live session started
    /// (`core::replay`), and the clock skew beyond which a datagram is counted as skewed
    /// (accepted; operator commands are refused past it).
    pub replay_window: Duration,
    /// Most sender sessions tracked for replay protection.
    pub max_sessions: usize,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            keyring: None,
            plaintext: Plaintext::Refuse,
            replay_window: Duration::from_secs(60),
            max_sessions: 4096,
        }
    }
}

/// Why a datagram was dropped by [`Trust::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustDrop {
    Wire(wire::WireError),
    /// Sealed under no key we hold, or forged, or altered.
    Auth,
    /// A plaintext datagram where only sealed ones are accepted (or a plaintext keyring message).
    Plaintext,
    Replay,
    /// An operator command stamped further than `replay_window` from our clock.
    Stale,
    /// Sealed under a key this node retired (`keys remove`): a sender that missed the
    /// rotation, or a former member.
    Retired,
}

/// Counters of the trust layer, reported with the node's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStats {
    /// Datagrams sealed and sent.
    pub sealed: u64,
    /// Sealed datagrams received and opened.
    pub opened: u64,
    /// Plaintext datagrams accepted (insecure or during a transition).
    pub plaintext_accepted: u64,
    /// Replay-table sessions evicted because the table was full.
    pub replay_evictions: u64,
    /// Sessions in the replay table now.
    pub replay_sessions: u64,
    /// Keyrings adopted from a peer with a newer one (an agent that missed a rotation step).
    pub keyring_catch_ups: u64,
    /// Datagrams accepted although stamped further than `replay_window` from our clock.
    #[serde(default)]
    pub skewed: u64,
    /// The largest clock difference (ms, either way) with a peer heard within the window.
    #[serde(default)]
    pub max_skew_ms: u64,
    /// Keyrings (`State`) and changes (`Op`) refused: too far ahead, more changes than
    /// generations, a retired key put back, or the key they came sealed with taken out.
    #[serde(default)]
    pub keyring_refused: u64,
    /// Key material (`Op`, `State`) not sent to a member because no member key is bound to
    /// its name: it is only ever sent sealed to the recipient's own key.
    #[serde(default)]
    pub key_material_withheld: u64,
    /// Keyring changes (`Op`) and rings (`State`) refused because they did not come sealed
    /// to this agent's member key by the member at their source address: sent by a holder
    /// of a ring key only (or a v0.1.0 agent).
    #[serde(default)]
    pub key_material_refused: u64,
    /// Operator commands (`force-leave`, the cluster-wide thaw) refused because they were
    /// not authenticated as the member bound to their source address (no valid pair tag).
    #[serde(default)]
    pub operator_refused: u64,
}

/// Seals and opens datagrams: keyring, session, replay table.
pub struct Trust {
    cfg: TrustConfig,
    /// Wall clock (Unix ms) at the core's `Time::ZERO` (`set_wall_clock`; 0 until set).
    unix_ms_at_zero: u64,
    session: u64,
    counter: u64,
    hashes: HashSeed,
    replay: ReplayGuard,
    /// Peers (by address) whose last authenticated datagram used a non-primary key: answered
    /// with that key while we still hold it, so that a node with only the old key gets in
    /// during a rotation.
    peer_keys: FixedHashMap<SocketAddr, KeyId>,
    keyring_changed: bool,
    /// The sender of the last datagram opened, and whether it used our primary key (for the
    /// keyring catch-up, `Node::keys_catch_up`).
    last_opened: Option<(SocketAddr, bool)>,
    /// The last peer whose datagram was accepted skewed, and its skew (its clock minus ours,
    /// ms), for the driver's rate-limited warning.
    last_skewed: Option<(SocketAddr, i64)>,
    /// The key the datagram being handled was sealed with (`None`: plaintext).
    opened_with: Option<KeyId>,
    /// Whether the datagram being handled carried a valid pair tag: it comes from the
    /// member bound to its source's name, not only from a holder of the cluster key.
    opened_from_member: bool,
    stats: TrustStats,
}

impl Trust {
    /// `session` is sent in clear in every datagram: it must not reveal `hashes`, the
    /// node's private seed of the tables a datagram can grow.
    pub fn new(cfg: TrustConfig, session: u64, hashes: HashSeed) -> Trust {
        let replay = ReplayGuard::new(cfg.replay_window, cfg.max_sessions, hashes);
        Trust {
            cfg,
            unix_ms_at_zero: 0,
            session,
            counter: 0,
            hashes,
            replay,
            peer_keys: hashes.map(),
            keyring_changed: false,
            last_opened: None,
            last_skewed: None,
            opened_with: None,
            opened_from_member: false,
            stats: TrustStats::default(),
        }
    }

    /// Wall clock (Unix ms) at `Time::ZERO`, to rebuild the trust layer with
    /// (`Node::set_trust` keeps the node's one wall clock).
    pub fn unix_ms_at_zero(&self) -> u64 {
        self.unix_ms_at_zero
    }

    /// The node's table seed, to rebuild the trust layer with (`Node::set_trust`).
    pub fn hashes(&self) -> HashSeed {
        self.hashes
    }

    /// Its configuration.
    pub fn config(&self) -> &TrustConfig {
        &self.cfg
    }

    /// This node's sending session.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Whether it runs without a key.
    pub fn is_insecure(&self) -> bool {
        self.cfg.keyring.is_none()
    }

    /// The keyring (none when insecure).
    pub fn keyring(&self) -> Option<&Keyring> {
        self.cfg.keyring.as_ref()
    }

    /// The counters; `now` dates the skew gauge (peers heard within the window).
    pub fn stats(&self, now: Time) -> TrustStats {
        let mut s = self.stats;
        s.replay_evictions = self.replay.evictions;
        s.replay_sessions = self.replay.len() as u64;
        s.max_skew_ms = self
            .replay
            .skews(now)
            .map(|(_, k)| k.unsigned_abs())
            .max()
            .unwrap_or(0);
        s
    }

    /// The peers heard within the window whose clock differs from ours by more than the
    /// window, with the difference (theirs minus ours, ms), largest first.
    pub fn skews(&self, now: Time) -> Vec<(SocketAddr, i64)> {
        let w = self.cfg.replay_window.as_millis() as u64;
        let mut v: Vec<(SocketAddr, i64)> = self
            .replay
            .skews(now)
            .filter(|(_, k)| k.unsigned_abs() > w)
            .collect();
        v.sort_by_key(|(a, k)| (std::cmp::Reverse(k.unsigned_abs()), *a));
        v
    }

    /// The last peer whose datagram was accepted although skewed, once.
    pub fn take_last_skewed(&mut self) -> Option<(SocketAddr, i64)> {
        self.last_skewed.take()
    }

    /// Corrects the mapping of the core's time onto the wall clock.
    pub fn set_wall_clock(&mut self, now: Time, unix_ms: u64) {
        self.unix_ms_at_zero = unix_ms.saturating_sub(now.as_millis());
    }

    fn wall_ms(&self, now: Time) -> u64 {
        self.unix_ms_at_zero.saturating_add(now.as_millis())
    }

    /// The wall clock at `now` (Unix ms), as the driver gave it.
    pub fn wall_clock(&self, now: Time) -> u64 {
        self.wall_ms(now)
    }

    // ----- keyring changes ----------------------------------------------------------------

    /// Applies a change to the keyring. Insecure nodes have no ring to change.
    pub fn change_keyring(
        &mut self,
        f: impl FnOnce(&mut Keyring) -> Result<(), KeyError>,
    ) -> Result<(), KeyError> {
        let Some(ring) = self.cfg.keyring.as_mut() else {
            return Err(KeyError::Empty);
        };
        let before = ring.clone();
        f(ring)?;
        if !ring.same_keys(&before) {
            if let Err(e) = ring.bump_generation() {
                *ring = before;
                return Err(e);
            }
        }
        if *ring != before {
            self.keyring_changed = true;
            let ring = ring.clone();
            // Forget peers on keys we dropped.
            self.peer_keys
                .retain(|_, id| ring.get(*id).next().is_some());
        }
        Ok(())
    }

    /// Replaces the ring with a peer's newer one (its generation included). Only ever called
    /// with a ring that came sealed under one of our keys and passed `keyops::check_state`.
    pub fn adopt_keyring(&mut self, ring: Keyring) -> Result<(), KeyError> {
        let Some(mine) = self.cfg.keyring.as_mut() else {
            return Err(KeyError::Empty);
        };
        *mine = ring;
        let ring = mine.clone();
        self.keyring_changed = true;
        self.stats.keyring_catch_ups += 1;
        self.peer_keys
            .retain(|_, id| ring.get(*id).next().is_some());
        Ok(())
    }

    /// Counts a keyring or keyring change refused (`keyops::StateRefusal`).
    pub fn count_keyring_refused(&mut self) {
        self.stats.keyring_refused += 1;
    }

    /// Counts a keyring change or ring refused for not coming from a bound member.
    pub fn count_key_material_refused(&mut self) {
        self.stats.key_material_refused += 1;
    }

    /// Counts an operator command refused for not coming from a bound member.
    pub fn count_operator_refused(&mut self) {
        self.stats.operator_refused += 1;
    }

    /// Counts key material withheld from a member with no bound key.
    pub fn count_key_material_withheld(&mut self) {
        self.stats.key_material_withheld += 1;
    }

    /// Whether the datagram being handled carried a valid pair tag (it comes from the member
    /// bound to its source address's name, not only from a holder of the cluster key).
    pub fn opened_from_member(&self) -> bool {
        self.opened_from_member
    }

    /// The key the datagram being handled was sealed with (`None` for plaintext).
    pub fn opened_with(&self) -> Option<KeyId> {
        self.opened_with
    }

    /// The sender of the last datagram opened and whether it used our primary key, once.
    pub fn take_last_opened(&mut self) -> Option<(SocketAddr, bool)> {
        self.last_opened.take()
    }

    /// The keyring, once after each change (for the driver to persist).
    pub fn take_keyring_change(&mut self) -> Option<Keyring> {
        if std::mem::take(&mut self.keyring_changed) {
            self.cfg.keyring.clone()
        } else {
            None
        }
    }

    /// Adds `key` to the ring.
    pub fn install(&mut self, key: Key) -> Result<(), KeyError> {
        self.change_keyring(|r| r.install(key))
    }
}
