//! The cluster keyring: the keys this node seals and opens datagrams with.
//!
//! Owns the key type (32 bytes, XChaCha20-Poly1305), its short public id (a keyed
//! fingerprint: it says which key sealed a datagram without revealing the key), the base64
//! text form operators pass around, and the ring: one primary key used to send, a few more
//! accepted on receipt; and the retired keys: fingerprints of keys a `keys remove` took out,
//! never accepted again from any source. Two bounded lists: keys this ring once sent with
//! (its primary at some point: the keys a rotation means to evict) are kept apart from keys
//! only ever installed, so that a key holder who installs and removes keys of its own churns
//! only the second list and cannot push a real former primary off. Must not do any
//! I/O (the agent persists the ring) nor draw randomness (keys are generated at the binary's
//! edge).

use base64::Engine as _;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Most keys a ring holds (the primary included): enough for a rotation in flight.
pub(crate) const MAX_KEYS: usize = 8;
/// Most retired keys remembered that were never this ring's primary (the oldest is forgotten
/// first): what a key holder installing and removing keys of its own can churn.
pub(crate) const MAX_RETIRED: usize = 64;
/// Most retired keys remembered that this ring once sent with (its primary at some point):
/// a rotation's evicted key. Pushing one off takes this many keys made primary (and so sent
/// with by every agent) and removed after it, about 15 years of monthly rotations.
pub(crate) const MAX_RETIRED_PRIMARY: usize = 1024;

/// The short public id of a key, carried in every sealed datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A cluster key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a key is base64 of exactly {KEY_LEN} bytes (see `shoal keygen`); got {0}")]
    BadKey(String),
    #[error("the key {0} is not installed; install it first")]
    NotInstalled(KeyId),
    #[error("the key {0} is the primary key; make another key primary (`keys use`) first")]
    IsPrimary(KeyId),
    #[error("the keyring holds {MAX_KEYS} keys already; remove one first")]
    Full,
    #[error("the keyring is empty")]
    Empty,
    #[error("the key {0} was removed from the keyring (retired): it is never accepted again; use a new key (`shoal keygen`)")]
    Retired(KeyId),
    #[error("the change would take out the key {0} it came sealed with")]
    SealedWith(KeyId),
    #[error("the keyring has seen as many changes as it can count")]
    GenerationExhausted,
}

/// A key taken out by `keys remove`: its public id (to name the datagrams sealed with it) and
/// a fingerprint that tells it apart from any other key without being the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retired {
    pub id: KeyId,
    pub fingerprint: [u8; 16],
}

impl Key {
    /// A key of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        // The id is the tag of an empty message sealed under the key with a fixed nonce: it
        // names the key without telling anything about it.
        let aead = XChaCha20Poly1305::new(&bytes.into());
        let nonce = XNonce::from([0xA5u8; 24]);
        let tag = aead
            .encrypt_in_place_detached(&nonce, b"shoal key id v1", &mut [])
            .map(|t| {
                let mut id = [0u8; 4];
                id.copy_from_slice(&t[..4]);
                u32::from_be_bytes(id)
            })
            .unwrap_or(0);
        Key {
            bytes,
            id: KeyId(tag),
        }
    }

    /// Parses the base64 text form (standard alphabet, padded; whitespace around is ignored).
    pub fn parse(text: &str) -> Result<Key, KeyError> {
        let t = text.trim();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|e| KeyError::BadKey(e.to_string()))?;
        let bytes: [u8; KEY_LEN] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadKey(format!("{} bytes", raw.len())))?;
        Ok(Key::from_bytes(bytes))
    }

    /// The base64 text form.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes)
    }

    /// Its id (carried in each sealed datagram).
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    pub(crate) fn aead(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }

    /// Remembered once the key is retired: the 16-byte tag of an empty message under the key
    /// (another nonce and text than the id's), which names it without revealing it.
    pub fn retired(&self) -> Retired {
        let nonce = XNonce::from([0x5Au8; 24]);
        let fingerprint = self
            .aead()
            .encrypt_in_place_detached(&nonce, b"shoal retired key v1", &mut [])
            .map(|t| {
                let mut f = [0u8; 16];
                f.copy_from_slice(&t);
                f
            })
            .unwrap_or([0; 16]);
        Retired {
            id: self.id,
            fingerprint,
        }
    }
}

/// One primary key (sends) and up to `MAX_KEYS - 1` more (accepted on receipt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    /// `keys[0]` is the primary.
    keys: Vec<Key>,
    /// How many changes this ring has seen (`shoal keys` steps and catch-ups): orders the
    /// rings of two agents, so that one that missed a step is brought up to date and never
    /// the other way round. Persisted as a `# generation N` line of the keyring file.
    generation: u64,
    /// Keys removed by `keys remove` that were never the primary here (at most
    /// [`MAX_RETIRED`], oldest first): refused by `install`, in a peer's ring and on
    /// datagrams. Persisted as `# retired ID FINGERPRINT` lines (older readers skip them).
    retired: Vec<Retired>,
    /// Keys removed that this ring once sent with (at most [`MAX_RETIRED_PRIMARY`], oldest
    /// first), refused likewise; kept apart so that churning `retired` never reaches them.
    /// Persisted as `# retired-primary ID FINGERPRINT` lines.
    retired_primary: Vec<Retired>,
    /// The keys of the ring that have been its primary (fingerprints): the current primary
    /// and the ones a `use` replaced. Persisted as `# was-primary ID FINGERPRINT` lines.
    was_primary: Vec<Retired>,
}

impl Keyring {
    /// A ring of one key, the primary.
    pub fn new(primary: Key) -> Keyring {
        Keyring {
            was_primary: vec![primary.retired()],
            keys: vec![primary],
            generation: 0,
            retired: Vec::new(),
            retired_primary: Vec::new(),
        }
    }

    /// How many changes this ring has seen.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Sets the generation (a ring adopted from a peer carries the peer's).
    pub fn with_generation(mut self, generation: u64) -> Keyring {
        self.generation = generation;
        self
    }

    /// Counts one change (called by the trust layer after a change that altered the ring).
    /// Never saturates: past `u64::MAX` the change is refused.
    pub fn bump_generation(&mut self) -> Result<(), KeyError> {
        self.generation = self
            .generation
            .checked_add(1)
            .ok_or(KeyError::GenerationExhausted)?;
        Ok(())
    }

    /// The retired keys: those this ring once sent with, then the others, oldest first.
    pub fn retired(&self) -> impl Iterator<Item = &Retired> {
        self.retired_primary.iter().chain(&self.retired)
    }

    /// True when `key` was retired here.
    pub fn is_retired(&self, key: &Key) -> bool {
        let r = key.retired();
        self.retired().any(|x| *x == r)
    }

    /// True when a retired key has this id (what an unopened datagram tells of its key).
    pub fn is_retired_id(&self, id: KeyId) -> bool {
        self.retired().any(|r| r.id == id)
    }

    /// Remembers `key` as retired (a no-op when it already is): with the keys this ring
    /// sent with if it ever was its primary, else with the others (each list forgets its
    /// oldest past its bound).
    pub fn retire(&mut self, key: &Key) {
        let r = key.retired();
        let primary = self.was_primary.contains(&r);
        self.was_primary.retain(|x| *x != r);
        self.add_retired(r, primary);
    }

    fn add_retired(&mut self, r: Retired, primary: bool) {
        if self.retired_primary.contains(&r) {
            return;
        }
        if primary {
            self.retired.retain(|x| *x != r);
        } else if self.retired.contains(&r) {
            return;
        }
        let (list, max) = if primary {
            (&mut self.retired_primary, MAX_RETIRED_PRIMARY)
        } else {
            (&mut self.retired, MAX_RETIRED)
        };
        if list.len() >= max {
            list.remove(0);
        }
        list.push(r);
    }

    fn mark_primary(&mut self) {
        let r = self.keys[0].retired();
        if !self.was_primary.contains(&r) {
            self.was_primary.push(r);
        }
    }

    /// The same keys with `other`'s retired keys added to ours, and which of our keys
    /// `other` once sent with (a peer's ring adopted in a catch-up keeps what we knew).
    pub fn with_retired_of(mut self, other: &Keyring) -> Keyring {
        for r in &other.retired_primary {
            self.add_retired(*r, true);
        }
        for r in &other.retired {
            self.add_retired(*r, false);
        }
        for r in &other.was_primary {
            if !self.was_primary.contains(r) {
                self.was_primary.push(*r);
            }
        }
        // Newest last: past the bound, the oldest marks go (the current primary's stays).
        let excess = self.was_primary.len().saturating_sub(MAX_KEYS * 2);
        self.was_primary.drain(..excess);
        self
    }

    /// True when both rings hold the same keys with the same primary, whatever their
    /// generations.
    pub fn same_keys(&self, other: &Keyring) -> bool {
        self.keys == other.keys
    }

    /// A ring from keys in order, the first one primary (duplicates are dropped).
    pub fn from_keys(keys: Vec<Key>) -> Result<Keyring, KeyError> {
        let mut ring: Option<Keyring> = None;
        for k in keys {
            match ring.as_mut() {
                None => ring = Some(Keyring::new(k)),
                Some(r) => r.install(k)?,
            }
        }
        ring.ok_or(KeyError::Empty)
    }

    /// The key datagrams are sealed with.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Every key, the primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The keys with this id (ids may collide).
    pub fn get(&self, id: KeyId) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.id == id)
    }

    /// Whether the ring holds `key`.
    pub fn contains(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }

    /// Adds a key to the accepted ones (no change if it is there already). A retired key is
    /// refused.
    pub fn install(&mut self, key: Key) -> Result<(), KeyError> {
        if self.contains(&key) {
            return Ok(());
        }
        if self.is_retired(&key) {
            return Err(KeyError::Retired(key.id));
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyError::Full);
        }
        self.keys.push(key);
        Ok(())
    }

    /// Makes an installed key the primary (the old primary stays accepted).
    pub fn use_key(&mut self, key: &Key) -> Result<(), KeyError> {
        let Some(i) = self.keys.iter().position(|k| k == key) else {
            return Err(KeyError::NotInstalled(key.id));
        };
        let k = self.keys.remove(i);
        self.keys.insert(0, k);
        self.mark_primary();
        Ok(())
    }

    /// Removes an accepted key and retires it (never accepted again); the primary cannot be
    /// removed. Removing a key that is not there changes nothing (so that a peer's removes
    /// of made-up keys cannot push the real ones off the bounded retired list).
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyError> {
        if self.primary() == key {
            return Err(KeyError::IsPrimary(key.id));
        }
        if self.contains(key) {
            self.keys.retain(|k| k != key);
            self.retire(key);
        }
        // What is not in the ring was never its primary (bounded by the ring's size).
        let keys = &self.keys;
        self.was_primary
            .retain(|r| keys.iter().any(|k| k.retired() == *r));
        Ok(())
    }

    /// The text form persisted in the keyring file: one base64 key a line, primary first,
    /// after a `# generation N` comment and the `# retired ID FINGERPRINT` ones (older readers
    /// skip them).
    pub fn to_text(&self) -> String {
        let mut s = format!("# generation {}\n", self.generation);
        for r in &self.retired_primary {
            s.push_str(&format!(
                "# retired-primary {} {}\n",
                r.id,
                hex(&r.fingerprint)
            ));
        }
        for r in &self.retired {
            s.push_str(&format!("# retired {} {}\n", r.id, hex(&r.fingerprint)));
        }
        for r in &self.was_primary {
            s.push_str(&format!("# was-primary {} {}\n", r.id, hex(&r.fingerprint)));
        }
        for k in &self.keys {
            s.push_str(&k.to_base64());
            s.push('\n');
        }
        s
    }

    /// Parses the keyring file's text (blank lines and `#` comments are ignored).
    pub fn from_text(text: &str) -> Result<Keyring, KeyError> {
        let generation = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("# generation ")?.trim().parse().ok())
            .unwrap_or(0);
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Key::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let mut ring = Keyring::from_keys(keys)?.with_generation(generation);
        for l in text.lines() {
            let l = l.trim();
            if let Some(r) = l.strip_prefix("# retired ").and_then(parse_retired) {
                ring.add_retired(r, false);
            } else if let Some(r) = l.strip_prefix("# retired-primary ").and_then(parse_retired) {
                ring.add_retired(r, true);
            } else if let Some(r) = l.strip_prefix("# was-primary ").and_then(parse_retired) {
                if ring.keys.iter().any(|k| k.retired() == r) && !ring.was_primary.contains(&r) {
                    ring.was_primary.push(r);
                }
            }
        }
        Ok(ring)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `ID FINGERPRINT` (8 and 32 hex digits) of a `# retired` line.
fn parse_retired(s: &str) -> Option<Retired> {
    let mut parts = s.split_whitespace();
    let id = u32::from_str_radix(parts.next()?, 16).ok()?;
    let f = parts.next()?;
    if f.len() != 32 || !f.is_ascii() {
        return None;
    }
    let mut fingerprint = [0u8; 16];
    for (i, b) in fingerprint.iter_mut().enumerate() {
        *b = u8::from_str_radix(&f[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(Retired {
        id: KeyId(id),
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; KEY_LEN])
    }

    #[test]
    fn text_roundtrip_and_ids() {
        let k = key(7);
        let back = Key::parse(&format!("  {}\n", k.to_base64())).unwrap();
        assert_eq!(back, k);
        assert_ne!(key(1).id(), key(2).id());
        assert!(matches!(Key::parse("abc"), Err(KeyError::BadKey(_))));
        assert!(matches!(Key::parse("AAAA"), Err(KeyError::BadKey(_))));
        let ring = Keyring::from_keys(vec![key(1), key(2), key(1)]).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(Keyring::from_text(&ring.to_text()).unwrap(), ring);
        assert_eq!(Keyring::from_text("# none\n"), Err(KeyError::Empty));
        let ring = ring.with_generation(7);
        assert_eq!(Keyring::from_text(&ring.to_text()).unwrap().generation(), 7);
        // A file written before generations were kept reads as generation 0.
        let old = format!("{}\n", key(3).to_base64());
        assert_eq!(Keyring::from_text(&old).unwrap().generation(), 0);
    }

    #[test]
    fn rotation_rules() {
        let mut ring = Keyring::new(key(1));
        assert_eq!(ring.remove(&key(1)), Err(KeyError::IsPrimary(key(1).id())));
        assert_eq!(
            ring.use_key(&key(2)),
            Err(KeyError::NotInstalled(key(2).id()))
        );
        ring.install(key(2)).unwrap();
        ring.use_key(&key(2)).unwrap();
        assert_eq!(ring.primary(), &key(2));
        ring.remove(&key(1)).unwrap();
        assert_eq!(ring.keys().len(), 1);
        for b in 10..10 + MAX_KEYS as u8 - 1 {
            ring.install(key(b)).unwrap();
        }
        assert_eq!(ring.install(key(99)), Err(KeyError::Full));
    }

    #[test]
    fn removed_keys_are_retired_for_good_and_the_list_is_bounded() {
        let mut ring = Keyring::new(key(1));
        ring.install(key(2)).unwrap();
        ring.remove(&key(2)).unwrap();
        assert!(ring.is_retired(&key(2)) && ring.is_retired_id(key(2).id()));
        assert!(!ring.is_retired(&key(1)));
        assert_eq!(ring.install(key(2)), Err(KeyError::Retired(key(2).id())));
        // Persisted with the ring; a file of an older release (no such lines) has none.
        let mut back = Keyring::from_text(&ring.to_text()).unwrap();
        assert_eq!(back, ring);
        assert_eq!(back.install(key(2)), Err(KeyError::Retired(key(2).id())));
        // The fingerprint is not the key, and tells keys with the same id apart.
        assert!(!ring.to_text().contains(&hex(key(2).bytes())));
        let other = Retired {
            id: key(2).id(),
            fingerprint: [0; 16],
        };
        assert_ne!(key(2).retired(), other);
        // Bounded: the oldest retired key is forgotten first.
        for b in 10..10 + MAX_RETIRED as u8 + 5 {
            ring.install(key(b)).unwrap();
            ring.remove(&key(b)).unwrap();
        }
        // A key that was never in the ring is not retired by a remove.
        ring.remove(&key(200)).unwrap();
        assert!(!ring.is_retired(&key(200)));
        assert_eq!(ring.retired().count(), MAX_RETIRED);
        assert!(!ring.is_retired(&key(2)));
        assert!(ring.is_retired(&key(10 + MAX_RETIRED as u8 + 4)));
    }

    /// The review's finding: a key holder flushed the 64 retired keys by installing and
    /// removing 64 keys of its own, and the rotation's old key could then be installed again.
    /// A key this ring sent with is kept apart: no churn of never-used keys pushes it off,
    /// and it stays so across a save (and a catch-up's adopted ring).
    #[test]
    fn churning_keys_of_ones_own_cannot_flush_a_retired_primary() {
        let mut ring = Keyring::new(key(1));
        ring.install(key(2)).unwrap();
        ring.use_key(&key(2)).unwrap();
        // Saved between the `use` and the `remove`: key 1 is remembered as once primary.
        let mut ring = Keyring::from_text(&ring.to_text()).unwrap();
        ring.remove(&key(1)).unwrap();
        for b in 10..=250u8 {
            ring.install(key(b)).unwrap();
            ring.remove(&key(b)).unwrap();
        }
        assert_eq!(ring.install(key(1)), Err(KeyError::Retired(key(1).id())));
        let mut back = Keyring::from_text(&ring.to_text()).unwrap();
        assert_eq!(back.install(key(1)), Err(KeyError::Retired(key(1).id())));
        // A ring adopted from a peer keeps ours, and what we once sent with.
        let mut old = Keyring::new(key(1));
        old.install(key(3)).unwrap();
        let mut adopted = Keyring::from_keys(vec![key(3)])
            .unwrap()
            .with_retired_of(&old);
        adopted.retire(&key(1));
        for b in 10..=250u8 {
            adopted.install(key(b)).unwrap();
            adopted.remove(&key(b)).unwrap();
        }
        assert!(adopted.is_retired(&key(1)));
    }

    #[test]
    fn generations_never_saturate() {
        let mut ring = Keyring::new(key(1)).with_generation(u64::MAX - 1);
        ring.bump_generation().unwrap();
        assert_eq!(ring.generation(), u64::MAX);
        assert_eq!(ring.bump_generation(), Err(KeyError::GenerationExhausted));
        assert_eq!(ring.generation(), u64::MAX);
    }
}
