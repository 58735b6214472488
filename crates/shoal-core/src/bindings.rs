//! Which key speaks for which name: trust on first use, as SSH's `known_hosts`.
//!
//! Owns [`Bindings`], the table of names bound to a member key (`member_key::MemberPub`),
//! and [`Bindings::admit`], the one check every record from the wire passes before it is
//! stored: a name's first validly signed record binds the name to the key that signed it;
//! from then on only records signed by that key are taken for that name. An unsigned record
//! (a v0.1.0 owner, a node without member keys, or a copy a v0.1.0 agent relayed without its
//! fields) is taken only while its name has no bound key. The table is bounded
//! ([`MAX_BINDINGS`]); the driver persists it (`Node::take_bindings_change`) so that a
//! restart keeps it, and the operator forgets a name to let a rebuilt host (new key, same
//! name) in (`Node::forget_member_key`). Must not verify signatures itself
//! (`record_sig::record_signer` does) and must do no I/O.

use crate::member_key::MemberPub;
use crate::meta::MetaRecord;
use crate::record_sig::{record_signer, Signer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most names bound at once. Past it, a binding of a name with no record in the store is
/// forgotten to make room; when every bound name has a record, a new signer is refused.
pub(crate) const MAX_BINDINGS: usize = 65_536;

/// Why a record from the wire was not taken (its value indexes `MetaStore::take_refused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its name is bound to a key and the record is not signed.
    Unsigned = 0,
    /// Signed by another key than the one its name is bound to (or a signature that does
    /// not verify).
    WrongKey = 1,
    /// The table of bindings is full of names that all have records.
    Full = 2,
    /// Unsigned, while the record held for its name is signed: its owner runs a release
    /// that signs (checked by `MetaStore::admit` even when the name is bound to no key, as
    /// after `forget`).
    UnsignedFromSigner = 3,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Unsigned => "unsigned_record",
            Refused::WrongKey => "wrong_member_key",
            Refused::Full => "bindings_full",
            Refused::UnsignedFromSigner => "unsigned_from_signer",
        }
    }
}

/// Names bound to member keys.
#[derive(Debug, Default)]
pub struct Bindings {
    by_name: BTreeMap<Arc<str>, MemberPub>,
    /// Changed since the driver last took the table (to persist it).
    changed: bool,
}

impl Bindings {
    /// The table as persisted (`Node::take_bindings_change`), at most [`MAX_BINDINGS`].
    pub fn from_entries(entries: impl IntoIterator<Item = (Arc<str>, MemberPub)>) -> Bindings {
        let mut by_name = BTreeMap::new();
        for (name, key) in entries.into_iter().take(MAX_BINDINGS) {
            if crate::identity::validate_name(&name).is_ok() {
                by_name.insert(name, key);
            }
        }
        Bindings {
            by_name,
            changed: false,
        }
    }

    /// The key bound to `name`, if any.
    pub fn get(&self, name: &str) -> Option<&MemberPub> {
        self.by_name.get(name)
    }

    /// Names bound.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no name is bound.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every binding: name and key.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &MemberPub)> {
        self.by_name.iter()
    }

    /// Binds `name` to `key` (our own name at start). Returns whether anything changed.
    pub fn bind(&mut self, name: Arc<str>, key: MemberPub) -> bool {
        if self.by_name.get(&name) == Some(&key) {
            return false;
        }
        self.by_name.insert(name, key);
        self.changed = true;
        true
    }

    /// Forgets `name`'s key (the operator's `shoal keys forget NAME`): its next signed record
    /// binds it again. Returns the key it was bound to.
    pub fn forget(&mut self, name: &str) -> Option<MemberPub> {
        let old = self.by_name.remove(name)?;
        self.changed = true;
        Some(old)
    }

    /// The table, once per change, for the driver to persist.
    pub fn take_change(&mut self) -> Option<Vec<(Arc<str>, MemberPub)>> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(self.by_name.iter().map(|(n, k)| (n.clone(), *k)).collect())
    }

    /// Whether `rec` (from the wire, newer than what the store holds) may be stored, binding
    /// its name to its signer on first use. `has_record(name)`: whether the store holds a
    /// record of `name` (a binding of a name without one may make room).
    pub fn admit(
        &mut self,
        rec: &MetaRecord,
        has_record: impl Fn(&str) -> bool,
    ) -> Result<(), Refused> {
        let signer = record_signer(rec);
        match (self.by_name.get(&*rec.name), signer) {
            (_, Signer::Bad) => Err(Refused::WrongKey),
            (Some(bound), Signer::Valid(k)) if *bound == k => Ok(()),
            (Some(_), Signer::Valid(_)) => Err(Refused::WrongKey),
            (Some(_), Signer::Unsigned) => Err(Refused::Unsigned),
            (None, Signer::Unsigned) => Ok(()),
            (None, Signer::Valid(k)) => {
                if self.by_name.len() >= MAX_BINDINGS {
                    let spare = self
                        .by_name
                        .keys()
                        .find(|n| !has_record(n) && n[..] != rec.name[..])
                        .cloned();
                    match spare {
                        Some(n) => {
                            self.by_name.remove(&n);
                        }
                        None => return Err(Refused::Full),
                    }
                }
                self.bind(rec.name.clone(), k);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member_key::{MemberKeys, SECRET_LEN};
    use crate::meta::NodeMeta;

    fn rec(name: &str, version: u64, by: Option<u8>) -> MetaRecord {
        let mut r = MetaRecord {
            name: Arc::from(name),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
            version,
            leaving: false,
            meta: NodeMeta::default(),
            ext: Default::default(),
        };
        if let Some(b) = by {
            MemberKeys::from_secret(&[b; SECRET_LEN]).sign_record(&mut r);
        }
        r
    }

    #[test]
    fn the_first_signer_binds_the_name_and_only_it_speaks_for_it_after() {
        let mut b = Bindings::default();
        // Unsigned while unbound: taken (v0.1.0, the mixed-version window).
        assert_eq!(b.admit(&rec("a", 1, None), |_| true), Ok(()));
        assert!(b.is_empty());
        assert_eq!(b.admit(&rec("a", 2, Some(1)), |_| true), Ok(()));
        assert_eq!(b.take_change().map(|v| v.len()), Some(1));
        assert_eq!(b.take_change(), None);
        assert_eq!(b.admit(&rec("a", 3, Some(1)), |_| true), Ok(()));
        assert_eq!(
            b.admit(&rec("a", 4, Some(2)), |_| true),
            Err(Refused::WrongKey)
        );
        assert_eq!(
            b.admit(&rec("a", 4, None), |_| true),
            Err(Refused::Unsigned)
        );
        let mut altered = rec("a", 4, Some(1));
        altered.leaving = true;
        assert_eq!(b.admit(&altered, |_| true), Err(Refused::WrongKey));
        // The operator forgets the name: the next signer (a rebuilt host) binds it.
        assert!(b.forget("a").is_some());
        assert_eq!(b.admit(&rec("a", 5, Some(2)), |_| true), Ok(()));
        assert_eq!(
            b.admit(&rec("a", 6, Some(1)), |_| true),
            Err(Refused::WrongKey)
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let k = MemberKeys::from_secret(&[1; SECRET_LEN]).public();
        let mut b =
            Bindings::from_entries((0..MAX_BINDINGS + 5).map(|i| (Arc::from(format!("n{i}")), k)));
        assert_eq!(b.len(), MAX_BINDINGS);
        assert_eq!(
            b.admit(&rec("new", 1, Some(1)), |_| true),
            Err(Refused::Full)
        );
        // A bound name without a record makes room.
        assert_eq!(b.admit(&rec("new", 1, Some(1)), |n| n != "n7"), Ok(()));
        assert_eq!(b.len(), MAX_BINDINGS);
        assert!(b.get("n7").is_none() && b.get("new").is_some());
    }
}
