//! Member keys: each agent's own key pair, the signature on its record, and sealing a
//! message to one member.
//!
//! Owns [`MemberKeys`] (an Ed25519 signing key and an X25519 secret, both built from 64 bytes
//! the driver drew from the OS at first start and keeps in its data directory),
//! [`MemberPub`] (their public halves, carried in the member's record as field
//! `record.member_key`; the signature over a record is `core::record_sig`) and
//! [`seal_to`]/[`open_sealed`]: X25519 between the sender's and the recipient's static keys,
//! HKDF-SHA256, then XChaCha20-Poly1305 (the AEAD of the datagrams), as NaCl's `crypto_box`
//! does with HKDF in place of HSalsa20. Must not draw randomness (the nonce comes from the
//! caller, the node's seeded rng: it needs to be unique, not secret) and must not decide
//! whom to trust (`core::bindings` binds names to keys).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

/// Bytes of secret a member key pair is built from (and kept in the data directory).
pub const SECRET_LEN: usize = 64;
/// Bytes [`seal_to`] adds to what it seals: the sender's public key, the nonce, the tag.
pub(crate) const SEAL_OVERHEAD: usize = 32 + 24 + 16;
const SEAL_CONTEXT: &[u8] = b"shoal member seal v1";
const PAIR_CONTEXT: &[u8] = b"shoal pair tag v1";

/// A member's public keys: Ed25519 to verify its records, X25519 to seal to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberPub {
    /// The Ed25519 public key (verifies record signatures).
    pub sign: [u8; 32],
    /// The X25519 public key (messages sealed to the member).
    pub seal: [u8; 32],
}

impl MemberPub {
    /// A short fingerprint for logs and the API: the first 8 bytes of the signing key, hex.
    pub fn fingerprint(&self) -> String {
        self.sign[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An Ed25519 signature, as two halves (serde has no 64-byte arrays): 64 bytes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSig(pub [u8; 32], pub [u8; 32]);

/// This member's own keys.
#[derive(Clone)]
pub struct MemberKeys {
    signing: SigningKey,
    sealing: StaticSecret,
    public: MemberPub,
}

impl std::fmt::Debug for MemberKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberKeys({})", self.public.fingerprint())
    }
}

impl MemberKeys {
    /// The key pair built from `secret` (drawn from the OS by the driver, at first start).
    pub fn from_secret(secret: &[u8; SECRET_LEN]) -> MemberKeys {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        a.copy_from_slice(&secret[..32]);
        b.copy_from_slice(&secret[32..]);
        let signing = SigningKey::from_bytes(&a);
        let sealing = StaticSecret::from(b);
        let public = MemberPub {
            sign: signing.verifying_key().to_bytes(),
            seal: PublicKey::from(&sealing).to_bytes(),
        };
        MemberKeys {
            signing,
            sealing,
            public,
        }
    }

    /// The public halves.
    pub fn public(&self) -> MemberPub {
        self.public
    }

    /// An Ed25519 signature over `msg` with our signing key (`core::record_sig` signs records).
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

fn box_key(shared: &[u8; 32], from: &[u8; 32], to: &[u8; 32]) -> XChaCha20Poly1305 {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(SEAL_CONTEXT), shared);
    let mut okm = [0u8; 32];
    let mut info = [0u8; 64];
    info[..32].copy_from_slice(from);
    info[32..].copy_from_slice(to);
    // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
    let _ = hk.expand(&info, &mut okm);
    XChaCha20Poly1305::new(&okm.into())
}

/// The keys of the datagram tags between `keys` and the member whose X25519 public key is
/// `peer` (`core::trust`, [`crate::wire::FLAG_PAIR`]): `(ours, theirs)`, the key that tags
/// what we send to it and the one that checks what it sends us. X25519 between the two
/// static keys, then HKDF-SHA256 (salt `shoal pair tag v1`, info the sender's public key and
/// then the recipient's), so each direction has its own key and nobody else (another key
/// holder included) can compute either. `None` for a low-order `peer` key.
pub fn pair_keys(
    keys: &MemberKeys,
    peer: &[u8; 32],
) -> Option<(XChaCha20Poly1305, XChaCha20Poly1305)> {
    let shared = keys.sealing.diffie_hellman(&PublicKey::from(*peer));
    if !shared.was_contributory() {
        return None;
    }
    let me = &keys.public.seal;
    let derive = |from: &[u8; 32], to: &[u8; 32]| {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(PAIR_CONTEXT), shared.as_bytes());
        let mut okm = [0u8; 32];
        let mut info = [0u8; 64];
        info[..32].copy_from_slice(from);
        info[32..].copy_from_slice(to);
        // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
        let _ = hk.expand(&info, &mut okm);
        XChaCha20Poly1305::new(&okm.into())
    };
    Some((derive(me, peer), derive(peer, me)))
}

/// Seals `plain` to the member whose X25519 public key is `to`, from `keys`: `our seal
/// public key[32] || nonce[24] || ciphertext || tag[16]`. Only the holder of `to`'s secret
/// opens it, and it knows who sealed it (static-static, so it is authenticated too).
/// `nonce` must never repeat for one (sender, recipient) pair; it need not be secret.
pub fn seal_to(keys: &MemberKeys, to: &[u8; 32], nonce: [u8; 24], plain: &[u8]) -> Vec<u8> {
    let shared = keys.sealing.diffie_hellman(&PublicKey::from(*to));
    let aead = box_key(shared.as_bytes(), &keys.public.seal, to);
    let aad = [&keys.public.seal[..], &to[..]].concat();
    let ct = aead
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
    out.extend_from_slice(&keys.public.seal);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Why [`open_sealed`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed message shorter than its overhead")]
    Short,
    #[error("sealed message not for this member, or altered")]
    Auth,
}

/// Opens what [`seal_to`] sealed to us: the sender's X25519 public key and the plaintext.
pub fn open_sealed(keys: &MemberKeys, sealed: &[u8]) -> Result<([u8; 32], Vec<u8>), SealError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(SealError::Short);
    }
    let mut from = [0u8; 32];
    from.copy_from_slice(&sealed[..32]);
    let nonce = XNonce::from_slice(&sealed[32..56]);
    let shared = keys.sealing.diffie_hellman(&PublicKey::from(from));
    // An all-zero shared secret: a low-order "public key" chosen to make the key known.
    if !shared.was_contributory() {
        return Err(SealError::Auth);
    }
    let aead = box_key(shared.as_bytes(), &from, &keys.public.seal);
    let aad = [&from[..], &keys.public.seal[..]].concat();
    let plain = aead
        .decrypt(
            nonce,
            Payload {
                msg: &sealed[56..],
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Auth)?;
    Ok((from, plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> MemberKeys {
        MemberKeys::from_secret(&[b; SECRET_LEN])
    }

    #[test]
    fn sealed_opens_only_for_its_recipient() {
        let (a, b, c) = (keys(1), keys(2), keys(3));
        let sealed = seal_to(&a, &b.public().seal, [7; 24], b"the new key");
        assert_eq!(sealed.len(), SEAL_OVERHEAD + 11);
        let (from, plain) = open_sealed(&b, &sealed).unwrap();
        assert_eq!((from, &plain[..]), (a.public().seal, &b"the new key"[..]));
        assert_eq!(open_sealed(&c, &sealed), Err(SealError::Auth));
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(open_sealed(&b, &bad), Err(SealError::Auth));
        // A claimed sender key that is not the sealer's does not open either.
        let mut swapped = sealed;
        swapped[..32].copy_from_slice(&c.public().seal);
        assert_eq!(open_sealed(&b, &swapped), Err(SealError::Auth));
        assert_eq!(open_sealed(&b, &[0; 10]), Err(SealError::Short));
        let mut low = vec![0u8; SEAL_OVERHEAD];
        low[0] = 0; // the all-zero point
        assert_eq!(open_sealed(&b, &low), Err(SealError::Auth));
    }
}
