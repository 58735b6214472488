//! The signature over a record (field `record.signature`) and the key it carries (field
//! `record.member_key`): signing our own record, and telling what a received record's
//! signature says.
//!
//! Above `core::member_key` (the keys), `core::meta` (the record) and `core::fields`;
//! `core::bindings` uses it. Must not decide whom to trust (`core::bindings` binds names to
//! keys) and must do no I/O.

use crate::member_key::{MemberKeys, MemberPub, RecordSig};
use crate::meta::MetaRecord;
use ed25519_dalek::VerifyingKey;

/// What a record signature covers, before the record's bytes (domain separation).
const RECORD_CONTEXT: &[u8] = b"shoal record signature v1\0";

impl MemberKeys {
    /// Puts our public keys in `rec` (our own record) and signs it: call after every change.
    pub fn sign_record(&self, rec: &mut MetaRecord) {
        crate::fields::record::MEMBER_KEY.set(&mut rec.ext, &self.public());
        let sig = self.sign(&signed_content(rec));
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        a.copy_from_slice(&sig[..32]);
        b.copy_from_slice(&sig[32..]);
        crate::fields::record::SIGNATURE.set(&mut rec.ext, &RecordSig(a, b));
    }
}

/// What a record's signature says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// No key or no signature: written by a release that does not sign, or by a node
    /// without member keys (the simulator), or stripped by a v0.1.0 relay.
    Unsigned,
    /// Signed by the key it carries.
    Valid(MemberPub),
    /// A signature that does not verify with the key the record carries (or fields that do
    /// not decode): forged or altered.
    Bad,
}

/// The bytes a record's signature covers: the context, then the record's encoding (fixed
/// part and every extension field, known and unknown) without field `record.signature`.
fn signed_content(rec: &MetaRecord) -> Vec<u8> {
    let mut unsigned = rec.ext.clone();
    unsigned.remove(crate::fields::record::SIGNATURE.number);
    let mut out = RECORD_CONTEXT.to_vec();
    out.extend_from_slice(&postcard::to_allocvec(rec).unwrap_or_default());
    unsigned.encode_into(&mut out);
    out
}

/// Verifies `rec`'s signature against the key it carries (whether that key is the one bound
/// to the name is for `core::bindings` to say).
pub fn record_signer(rec: &MetaRecord) -> Signer {
    use crate::fields::record::{MEMBER_KEY, SIGNATURE};
    let (key, sig) = match (MEMBER_KEY.get(&rec.ext), SIGNATURE.get(&rec.ext)) {
        (Ok(None), Ok(None)) => return Signer::Unsigned,
        (Ok(Some(k)), Ok(Some(s))) => (k, s),
        _ => return Signer::Bad,
    };
    let Ok(vk) = VerifyingKey::from_bytes(&key.sign) else {
        return Signer::Bad;
    };
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&sig.0);
    bytes[32..].copy_from_slice(&sig.1);
    let sig = ed25519_dalek::Signature::from_bytes(&bytes);
    match vk.verify_strict(&signed_content(rec), &sig) {
        Ok(()) => Signer::Valid(key),
        Err(_) => Signer::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member_key::SECRET_LEN;
    use crate::meta::NodeMeta;
    use std::sync::Arc;

    fn keys(b: u8) -> MemberKeys {
        MemberKeys::from_secret(&[b; SECRET_LEN])
    }

    fn rec() -> MetaRecord {
        MetaRecord {
            name: Arc::from("n1"),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 5,
            version: 2,
            leaving: false,
            meta: NodeMeta::default(),
            ext: Default::default(),
        }
    }

    #[test]
    fn a_signed_record_verifies_after_a_round_trip_and_not_after_any_change() {
        let k = keys(1);
        let mut r = rec();
        assert_eq!(record_signer(&r), Signer::Unsigned);
        k.sign_record(&mut r);
        let back = MetaRecord::decode(&r.encode()).unwrap();
        assert_eq!(record_signer(&back), Signer::Valid(k.public()));
        let mut forged = back.clone();
        forged.leaving = true;
        assert_eq!(record_signer(&forged), Signer::Bad);
        let mut forged = back.clone();
        forged.generation += 1;
        assert_eq!(record_signer(&forged), Signer::Bad);
        let mut forged = back.clone();
        forged.set_restart(Some(crate::restart::RestartIntent::new(
            std::time::Duration::from_secs(60),
        )));
        assert_eq!(record_signer(&forged), Signer::Bad);
        // Another key holder re-signs it: valid, but with its own key (the binding decides).
        let mut other = back.clone();
        other.leaving = true;
        keys(2).sign_record(&mut other);
        assert_eq!(record_signer(&other), Signer::Valid(keys(2).public()));
        // A key without a signature, or a signature without a key: not "unsigned".
        let mut half = back;
        half.ext.remove(crate::fields::record::SIGNATURE.number);
        assert_eq!(record_signer(&half), Signer::Bad);
    }
}
