//! Sealing and opening one datagram: `Trust::seals`, `seal`, `seal_paired`, `open` and
//! `open_paired`, with the seal header, the padding, the pair tag and the replay and skew
//! checks (the format is described in `trust`).
//!
//! A child module of `trust` (it reaches the trust layer's fields). Must not read a clock or
//! draw OS randomness: time comes from the caller, the session from the node's seed.

use super::{Plaintext, Trust, TrustConfig, TrustDrop};
use crate::keyring::KeyId;
use crate::replay::Refusal;
use crate::time::Time;
use crate::wire::{
    self, Envelope, Kind, FLAG_PADDED, FLAG_PAIR, FLAG_SEALED, PAIR_TAG_LEN, SEAL_OVERHEAD,
};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use std::borrow::Cow;
use std::net::SocketAddr;

const SEAL_HEADER: usize = 24;
const TAG_LEN: usize = 16;
/// Peers remembered as still sending with a non-primary key.
const MAX_PEER_KEYS: usize = 1024;

impl Trust {
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
