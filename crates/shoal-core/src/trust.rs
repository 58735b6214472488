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
use crate::replay::{Refusal, ReplayGuard};
use crate::time::Time;
use crate::wire::{
    self, Envelope, Kind, FLAG_PADDED, FLAG_PAIR, FLAG_SEALED, PAIR_TAG_LEN, SEAL_OVERHEAD,
};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

const SEAL_HEADER: usize = 24;
const TAG_LEN: usize = 16;
/// Peers remembered as still sending with a non-primary key.
const MAX_PEER_KEYS: usize = 1024;

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

    /// Whether the plaintext envelope `plain` (as `wire::write_header` + body wrote it) goes
    /// out sealed: always with a key, except while sending plaintext (`Plaintext::Send`), when
    /// only keyring changes (and any kind past them) are sealed. Operator commands follow the
    /// setting like SWIM and shoal messages, so that they reach agents not yet given the key.
    pub fn seals(&self, plain: &[u8]) -> bool {
        if self.cfg.keyring.is_none() {
            return false;
        }
        let h = wire::header_len_of(plain);
        self.cfg.plaintext != Plaintext::Send
            || plain
                .get(h.wrapping_sub(1))
                .is_none_or(|k| *k >= Kind::Keys as u8)
    }

    /// Seals a plaintext envelope (as `wire::write_header` + body wrote it) for `dst`,
    /// first padding it to at least `pad_to` bytes in all (0: no padding). Returns it
    /// unsealed when the node sends plaintext.
    pub fn seal(&mut self, now: Time, dst: SocketAddr, plain: Vec<u8>, pad_to: usize) -> Vec<u8> {
        self.seal_paired(now, dst, plain, pad_to, None)
    }

    /// [`Trust::seal`], with the pair tag of `pair` (our key of the pair with `dst`,
    /// `member_key::pair_keys`) when given and the datagram is sealed.
    pub fn seal_paired(
        &mut self,
        now: Time,
        dst: SocketAddr,
        mut plain: Vec<u8>,
        pad_to: usize,
        pair: Option<&XChaCha20Poly1305>,
    ) -> Vec<u8> {
        let h = wire::header_len_of(&plain);
        if plain.len() < h {
            return plain;
        }
        let sealing = self.seals(&plain);
        let pair = pair.filter(|_| sealing);
        let extra = match (sealing, pair.is_some()) {
            (false, _) => 0,
            (true, false) => SEAL_OVERHEAD,
            (true, true) => SEAL_OVERHEAD + PAIR_TAG_LEN,
        };
        if plain.len() + extra + 2 <= pad_to {
            let pad = pad_to - plain.len() - extra - 2;
            plain.resize(plain.len() + pad, 0);
            plain.extend_from_slice(&(pad as u16).to_be_bytes());
            plain[3] |= FLAG_PADDED;
        }
        if !sealing {
            return plain;
        }
        let Some(ring) = self.cfg.keyring.as_ref() else {
            return plain;
        };
        let key = self
            .peer_keys
            .get(&dst)
            .and_then(|id| ring.get(*id).next())
            .unwrap_or_else(|| ring.primary());
        self.counter += 1;
        let ts = (self.wall_ms(now) / 1000).min(u64::from(u32::MAX)) as u32;
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&plain[..h]);
        out[3] |= FLAG_SEALED;
        if pair.is_some() {
            out[3] |= FLAG_PAIR;
        }
        out.extend_from_slice(&key.id().0.to_be_bytes());
        out.extend_from_slice(&self.session.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        let ad_len = out.len();
        out.extend_from_slice(&plain[h..]);
        let nonce = nonce(self.session, self.counter);
        let (ad, body) = out.split_at_mut(ad_len);
        match key.aead().encrypt_in_place_detached(&nonce, ad, body) {
            Ok(tag) => out.extend_from_slice(&tag),
            // Only for bodies past 256 GiB: cannot happen for a datagram.
            Err(_) => return plain,
        }
        if let Some(p) = pair {
            let tag = p
                .encrypt_in_place_detached(&pair_nonce(self.session, self.counter), &out, &mut [])
                .unwrap_or_default();
            out.extend_from_slice(&tag);
        }
        self.stats.sealed += 1;
        out
    }

    /// Checks the envelope, authenticates and decrypts a sealed body, refuses replays.
    /// Returns the kind and the plaintext body.
    pub fn open<'a>(
        &mut self,
        now: Time,
        from: SocketAddr,
        data: &'a [u8],
        label: &str,
    ) -> Result<(Kind, Cow<'a, [u8]>), TrustDrop> {
        self.open_paired(now, from, data, label, None)
    }

    /// [`Trust::open`], checking a pair tag with `pair` (the key of what the member at
    /// `from` sends us, `member_key::pair_keys`) when the datagram carries one.
    pub fn open_paired<'a>(
        &mut self,
        now: Time,
        from: SocketAddr,
        data: &'a [u8],
        label: &str,
        pair: Option<&XChaCha20Poly1305>,
    ) -> Result<(Kind, Cow<'a, [u8]>), TrustDrop> {
        self.opened_from_member = false;
        let env: Envelope<'a> = wire::parse(data, label).map_err(TrustDrop::Wire)?;
        if !env.sealed {
            let accept = match &self.cfg.keyring {
                None => true,
                Some(_) => self.cfg.plaintext != Plaintext::Refuse,
            };
            // Keyring changes are only ever taken from a key holder; operator commands follow
            // the plaintext setting like SWIM and shoal messages (see `seals`).
            if !accept || (self.cfg.keyring.is_some() && env.kind == Kind::Keys) {
                return Err(TrustDrop::Plaintext);
            }
            self.stats.plaintext_accepted += 1;
            self.opened_with = None;
            let body = if env.padded {
                unpad(env.body)?
            } else {
                env.body
            };
            return Ok((env.kind, Cow::Borrowed(body)));
        }
        let Some(ring) = self.cfg.keyring.as_ref() else {
            return Err(TrustDrop::Auth);
        };
        let tagged = if env.paired { PAIR_TAG_LEN } else { 0 };
        if env.body.len() < SEAL_HEADER + TAG_LEN + tagged {
            return Err(TrustDrop::Wire(wire::WireError::Truncated));
        }
        let (body, pair_tag) = env.body.split_at(env.body.len() - tagged);
        let (sh, rest) = body.split_at(SEAL_HEADER);
        let key_id = KeyId(u32::from_be_bytes([sh[0], sh[1], sh[2], sh[3]]));
        let session = u64::from_be_bytes(sh[4..12].try_into().unwrap_or_default());
        let counter = u64::from_be_bytes(sh[12..20].try_into().unwrap_or_default());
        let ts = u32::from_be_bytes([sh[20], sh[21], sh[22], sh[23]]);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut ad = Vec::with_capacity(env.header.len() + SEAL_HEADER);
        ad.extend_from_slice(env.header);
        ad.extend_from_slice(sh);
        let nonce = nonce(session, counter);
        let tag = Tag::from_slice(tag);
        let mut opened: Option<(Vec<u8>, bool)> = None;
        for (i, key) in ring.keys().iter().enumerate() {
            if key.id() != key_id {
                continue;
            }
            let mut buf = ct.to_vec();
            if key
                .aead()
                .decrypt_in_place_detached(&nonce, &ad, &mut buf, tag)
                .is_ok()
            {
                opened = Some((buf, i == 0));
                break;
            }
        }
        let Some((body, primary)) = opened else {
            if ring.is_retired_id(key_id) {
                return Err(TrustDrop::Retired);
            }
            return Err(TrustDrop::Auth);
        };
        // The pair tag: only the member bound to the source's name can write it.
        let member = match pair {
            Some(p) if env.paired => p
                .decrypt_in_place_detached(
                    &pair_nonce(session, counter),
                    &data[..data.len() - tagged],
                    &mut [],
                    Tag::from_slice(pair_tag),
                )
                .is_ok(),
            _ => false,
        };
        // Checked after authentication: a forged header must not be told apart from a
        // replayed one, and must not touch the table.
        match self.replay.check(now, from, member, session, counter, ts) {
            Ok(()) => {}
            Err(Refusal::Replay) => return Err(TrustDrop::Replay),
        }
        let skew = (i64::from(ts) * 1000).saturating_sub(self.wall_ms(now) as i64);
        // The sender's clock was read in whole seconds: allow the second it rounded down.
        let skewed = skew > w_ms(&self.cfg) || skew.saturating_add(1000) < -w_ms(&self.cfg);
        if skewed && env.kind == Kind::Operator {
            return Err(TrustDrop::Stale);
        }
        self.replay
            .commit(now, from, member, session, counter, ts, skew);
        if skewed {
            self.stats.skewed += 1;
            self.last_skewed = Some((from, skew));
        }
        if primary {
            self.peer_keys.remove(&from);
        } else if self.peer_keys.len() < MAX_PEER_KEYS || self.peer_keys.contains_key(&from) {
            self.peer_keys.insert(from, key_id);
        }
        self.stats.opened += 1;
        self.last_opened = Some((from, primary));
        self.opened_with = Some(key_id);
        self.opened_from_member = member;
        let mut body = body;
        if env.padded {
            let n = unpad(&body)?.len();
            body.truncate(n);
        }
        Ok((env.kind, Cow::Owned(body)))
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

/// The body without its padding (the last 2 bytes say how many bytes of padding precede them).
fn unpad(body: &[u8]) -> Result<&[u8], TrustDrop> {
    let truncated = TrustDrop::Wire(wire::WireError::Truncated);
    let n = body.len().checked_sub(2).ok_or(truncated)?;
    let pad = u16::from_be_bytes([body[n], body[n + 1]]) as usize;
    let end = n.checked_sub(pad).ok_or(truncated)?;
    Ok(&body[..end])
}

fn w_ms(cfg: &TrustConfig) -> i64 {
    cfg.replay_window.as_millis().min(i64::MAX as u128) as i64
}

/// The nonce of a pair tag: the datagram's, with another tail (another key, too).
fn pair_nonce(session: u64, counter: u64) -> XNonce {
    let mut n = nonce(session, counter);
    n[16..].copy_from_slice(&[0xFF; 8]);
    n
}

fn nonce(session: u64, counter: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&session.to_be_bytes());
    n[8..16].copy_from_slice(&counter.to_be_bytes());
    XNonce::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KEY_LEN;

    fn ring(b: u8) -> Keyring {
        Keyring::new(Key::from_bytes([b; KEY_LEN]))
    }

    fn cfg(ring: Option<Keyring>) -> TrustConfig {
        TrustConfig {
            keyring: ring,
            ..TrustConfig::default()
        }
    }

    /// A trust layer whose wall clock reads 1_700_000_000_000 at `Time::ZERO`.
    fn at_wall(cfg: TrustConfig, session: u64, hashes: HashSeed) -> Trust {
        let mut t = Trust::new(cfg, session, hashes);
        t.set_wall_clock(Time::ZERO, 1_700_000_000_000);
        t
    }

    fn plain(label: &str, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        wire::write_header(&mut v, label, Kind::Shoal);
        v.extend_from_slice(body);
        v
    }

    const A: &str = "127.0.0.1:1";

    #[test]
    fn seal_open_roundtrip_and_overhead() {
        let mut tx = at_wall(cfg(Some(ring(1))), 11, HashSeed::default());
        let mut rx = at_wall(cfg(Some(ring(1))), 12, HashSeed::default());
        let p = plain("prod", b"hello");
        let sealed = tx.seal(Time(5), A.parse().unwrap(), p.clone(), 0);
        assert_eq!(sealed.len(), p.len() + SEAL_OVERHEAD);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        let (kind, body) = rx
            .open(Time(5), A.parse().unwrap(), &sealed, "prod")
            .unwrap();
        assert_eq!(kind, Kind::Shoal);
        assert_eq!(&*body, b"hello");
        // Replayed: refused.
        assert_eq!(
            rx.open(Time(6), A.parse().unwrap(), &sealed, "prod"),
            Err(TrustDrop::Replay)
        );
        // Any bit flipped anywhere: refused (header bits as auth, wire or label errors).
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            let mut fresh = at_wall(cfg(Some(ring(1))), 13, HashSeed::default());
            assert!(
                fresh
                    .open(Time(5), A.parse().unwrap(), &bad, "prod")
                    .is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn padding_roundtrips_sealed_and_plain() {
        let a: SocketAddr = A.parse().unwrap();
        for ring in [Some(ring(1)), None] {
            let mut tx = at_wall(cfg(ring.clone()), 21, HashSeed::default());
            let mut rx = at_wall(cfg(ring), 22, HashSeed::default());
            let d = tx.seal(Time(0), a, plain("l", b"short"), 700);
            assert_eq!(d.len(), 700);
            assert_eq!(&*rx.open(Time(0), a, &d, "l").unwrap().1, b"short");
            // Already long enough: no padding.
            let long = vec![7u8; 900];
            let d = tx.seal(Time(0), a, plain("l", &long), 700);
            assert_eq!(&*rx.open(Time(0), a, &d, "l").unwrap().1, &long[..]);
        }
        // A pad length past the body is refused, not a panic.
        let mut bad = plain("", b"\x00\x09");
        bad[3] |= FLAG_PADDED;
        let mut rx = at_wall(cfg(None), 23, HashSeed::default());
        assert!(rx.open(Time(0), A.parse().unwrap(), &bad, "").is_err());
    }

    #[test]
    fn wrong_key_plaintext_and_stale_refused() {
        let mut tx = at_wall(cfg(Some(ring(1))), 11, HashSeed::default());
        let mut other = at_wall(cfg(Some(ring(2))), 12, HashSeed::default());
        let mut insecure = at_wall(cfg(None), 13, HashSeed::default());
        let from = A.parse().unwrap();
        let sealed = tx.seal(Time(0), from, plain("", b"x"), 0);
        assert_eq!(other.open(Time(0), from, &sealed, ""), Err(TrustDrop::Auth));
        assert_eq!(
            insecure.open(Time(0), from, &sealed, ""),
            Err(TrustDrop::Auth)
        );
        let p = plain("", b"x");
        assert_eq!(other.open(Time(0), from, &p, ""), Err(TrustDrop::Plaintext));
        assert!(insecure.open(Time(0), from, &p, "").is_ok());
        // Accepted during a transition, except keyring messages.
        let mut accept = at_wall(
            TrustConfig {
                plaintext: Plaintext::Accept,
                ..cfg(Some(ring(2)))
            },
            14,
            HashSeed::default(),
        );
        assert!(accept.open(Time(0), from, &p, "").is_ok());
        let mut keys = Vec::new();
        wire::write_header(&mut keys, "", Kind::Keys);
        assert_eq!(
            accept.open(Time(0), from, &keys, ""),
            Err(TrustDrop::Plaintext)
        );
        // Operator commands follow the setting: accepted in plaintext during a transition,
        // refused by default; sealed except while sending plaintext. Keyring changes are
        // sealed even then.
        let mut op = Vec::new();
        wire::write_header(&mut op, "", Kind::Operator);
        op.push(0);
        assert!(accept.open(Time(0), from, &op, "").is_ok());
        assert_eq!(
            other.open(Time(0), from, &op, ""),
            Err(TrustDrop::Plaintext)
        );
        assert!(accept.seals(&op));
        let send = at_wall(
            TrustConfig {
                plaintext: Plaintext::Send,
                ..cfg(Some(ring(2)))
            },
            16,
            HashSeed::default(),
        );
        assert!(!send.seals(&op));
        assert!(!send.seals(&p));
        assert!(send.seals(&keys));
        assert!(!insecure.seals(&keys));
        // Two minutes later, a capture of gossip is accepted by a receiver that never heard
        // its sender (no clock agreement is needed), and counted as skewed; an operator
        // command is refused as stale.
        let mut rx = at_wall(cfg(Some(ring(1))), 15, HashSeed::default());
        let late = Time(120_000);
        assert!(rx.open(late, from, &sealed, "").is_ok());
        assert_eq!(rx.stats(late).skewed, 1);
        assert_eq!(rx.take_last_skewed(), Some((from, -120_000)));
        assert_eq!(rx.skews(late), vec![(from, -120_000)]);
        let mut op = Vec::new();
        wire::write_header(&mut op, "", Kind::Operator);
        op.push(0);
        let cmd = tx.seal(Time(0), from, op, 0);
        assert_eq!(rx.open(late, from, &cmd, ""), Err(TrustDrop::Stale));
        assert!(rx.open(Time(30_000), from, &cmd, "").is_ok());
    }

    #[test]
    fn old_key_peer_answered_with_its_key() {
        let k1 = Key::from_bytes([1; KEY_LEN]);
        let k2 = Key::from_bytes([2; KEY_LEN]);
        let mut old = at_wall(cfg(Some(Keyring::new(k1.clone()))), 1, HashSeed::default());
        let mut new = at_wall(cfg(Some(Keyring::new(k2.clone()))), 2, HashSeed::default());
        new.install(k1.clone()).unwrap();
        assert!(new.take_keyring_change().is_some());
        let a = "127.0.0.1:1".parse().unwrap();
        let b = "127.0.0.1:2".parse().unwrap();
        let d = old.seal(Time(0), b, plain("", b"hi"), 0);
        assert!(new.open(Time(0), a, &d, "").is_ok());
        let back = new.seal(Time(0), a, plain("", b"yo"), 0);
        assert_eq!(&*old.open(Time(0), b, &back, "").unwrap().1, b"yo");
        // Once the old key is removed, the peer gets the primary (and cannot read it).
        new.change_keyring(|r| r.remove(&k1)).unwrap();
        let back = new.seal(Time(0), a, plain("", b"yo"), 0);
        assert_eq!(old.open(Time(0), b, &back, ""), Err(TrustDrop::Auth));
    }
}
