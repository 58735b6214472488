//! The cluster keyring: the keys this node seals and opens datagrams with.
//!
//! Owns the key type (32 bytes, XChaCha20-Poly1305), its short public id (a keyed
//! fingerprint: it says which key sealed a datagram without revealing the key), the base64
//! text form operators pass around, and the ring: one primary key used to send, a few more
//! accepted on receipt. Must not do any I/O (the agent persists the ring) nor draw randomness
//! (keys are generated at the binary's edge).

use base64::Engine as _;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Most keys a ring holds (the primary included): enough for a rotation in flight.
pub const MAX_KEYS: usize = 8;

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
}

impl Key {
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

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    pub(crate) fn aead(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

/// One primary key (sends) and up to `MAX_KEYS - 1` more (accepted on receipt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    /// `keys[0]` is the primary.
    keys: Vec<Key>,
}

impl Keyring {
    pub fn new(primary: Key) -> Keyring {
        Keyring {
            keys: vec![primary],
        }
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

    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Every key, the primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn get(&self, id: KeyId) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.id == id)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }

    /// Adds a key to the accepted ones (no change if it is there already).
    pub fn install(&mut self, key: Key) -> Result<(), KeyError> {
        if self.contains(&key) {
            return Ok(());
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
        Ok(())
    }

    /// Removes an accepted key; the primary cannot be removed. Removing a key that is not
    /// there changes nothing.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyError> {
        if self.primary() == key {
            return Err(KeyError::IsPrimary(key.id));
        }
        self.keys.retain(|k| k != key);
        Ok(())
    }

    /// The text form persisted in the keyring file: one base64 key a line, primary first.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for k in &self.keys {
            s.push_str(&k.to_base64());
            s.push('\n');
        }
        s
    }

    /// Parses the keyring file's text (blank lines and `#` comments are ignored).
    pub fn from_text(text: &str) -> Result<Keyring, KeyError> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Key::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Keyring::from_keys(keys)
    }
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
}
