//! Extension fields: how a record or a message gains a field in a later release without
//! breaking the release before it (docs/upgrades.md, "Adding a field").
//!
//! Owns [`Ext`] (the fields that follow the fixed part of a record or a message, known and
//! unknown alike, kept verbatim), their byte layout, [`Field`] (the typed handle declared
//! once per field, in `core::fields`) and [`decode_kind`] (decoding an enum of message kinds
//! where a kind from a later release is reported, not an error). Must not know any record or
//! message: those declare their fields in `core::fields`.
//!
//! Layout: the fixed part of a record or message (postcard, exactly as v0.1.0 wrote it, frozen
//! forever) is followed by zero or more fields, each `number` (varint), `len` (varint) and
//! `len` bytes of value (the postcard encoding of the field's type), in increasing number
//! order, each number at most once. The fields run to the end of what holds them (a
//! length-delimited broadcast item, a datagram's body, or a byte string inside a message).
//! v0.1.0 reads the fixed part with `postcard::from_bytes`, which ignores what follows, so it
//! reads what this release writes. A reader keeps every field, decodes the ones it knows and
//! writes back the unknown ones as they came: a record relayed by an older agent keeps the
//! fields of a newer one.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use thiserror::Error;

/// Most fields one record or message may carry (bounds the work of a hostile peer).
pub(crate) const MAX_FIELDS: usize = 32;

/// Why the extension fields of a record or message were refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ExtError {
    #[error("extension fields truncated")]
    Truncated,
    #[error("extension field numbers not strictly increasing")]
    Unordered,
    #[error("more than {MAX_FIELDS} extension fields")]
    TooMany,
    #[error("extension field {number} ({name}) does not decode")]
    BadValue { number: u32, name: &'static str },
    #[error("fixed part does not decode: {0}")]
    Fixed(String),
}

/// Why a message (an enum of kinds) was not decoded.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MsgError {
    /// A kind a later release added: ignored and counted, not a fault.
    #[error("message kind {0} of a later release")]
    Later(u32),
    #[error("undecodable message: {0}")]
    Decode(#[from] ExtError),
}

/// The extension fields of one record or message, sorted by number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ext {
    fields: Vec<(u32, Box<[u8]>)>,
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(data: &[u8]) -> Result<(u32, &[u8]), ExtError> {
    postcard::take_from_bytes::<u32>(data).map_err(|_| ExtError::Truncated)
}

impl Ext {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Numbers of the fields present, in order.
    pub fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.fields.iter().map(|(n, _)| *n)
    }

    /// The raw value of field `number`.
    pub fn raw(&self, number: u32) -> Option<&[u8]> {
        self.fields
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .map(|i| &*self.fields[i].1)
    }

    /// Sets the raw value of field `number` (replacing it if present).
    pub fn set_raw(&mut self, number: u32, value: Box<[u8]>) {
        match self.fields.binary_search_by_key(&number, |(n, _)| *n) {
            Ok(i) => self.fields[i].1 = value,
            Err(i) => self.fields.insert(i, (number, value)),
        }
    }

    /// Removes field `number`.
    pub fn remove(&mut self, number: u32) {
        self.fields.retain(|(n, _)| *n != number);
    }

    /// Bytes [`Ext::encode_into`] writes.
    pub fn encoded_len(&self) -> usize {
        self.fields
            .iter()
            .map(|(n, v)| varint_len(u64::from(*n)) + varint_len(v.len() as u64) + v.len())
            .sum()
    }

    /// Appends the fields to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.fields {
            put_varint(out, u64::from(*n));
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Reads fields up to the end of `data` (empty: no field).
    pub fn decode(mut data: &[u8]) -> Result<Ext, ExtError> {
        let mut fields: Vec<(u32, Box<[u8]>)> = Vec::new();
        while !data.is_empty() {
            if fields.len() == MAX_FIELDS {
                return Err(ExtError::TooMany);
            }
            let (number, rest) = take_varint(data)?;
            let (len, rest) = take_varint(rest)?;
            let len = len as usize;
            if rest.len() < len {
                return Err(ExtError::Truncated);
            }
            if fields.last().is_some_and(|(last, _)| *last >= number) {
                return Err(ExtError::Unordered);
            }
            fields.push((number, rest[..len].into()));
            data = &rest[len..];
        }
        Ok(Ext { fields })
    }
}

/// A typed extension field: its number (never reused, see `core::fields`), a name for
/// errors, and the type of its value. Its value is postcard, read with `from_bytes`, so the
/// type of a field may itself gain members at its end later.
pub struct Field<T> {
    pub number: u32,
    pub name: &'static str,
    _value: PhantomData<fn() -> T>,
}

impl<T> Field<T> {
    pub const fn new(number: u32, name: &'static str) -> Field<T> {
        Field {
            number,
            name,
            _value: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Field<T> {
    /// The field's value: `Ok(None)` when absent (a writer of an older release), an error
    /// when present but undecodable.
    pub fn get(&self, ext: &Ext) -> Result<Option<T>, ExtError> {
        ext.raw(self.number)
            .map(|raw| {
                postcard::from_bytes(raw).map_err(|_| ExtError::BadValue {
                    number: self.number,
                    name: self.name,
                })
            })
            .transpose()
    }

    pub fn set(&self, ext: &mut Ext, value: &T) {
        // Serializing an owned value into a Vec cannot fail.
        let raw = postcard::to_allocvec(value).unwrap_or_default();
        ext.set_raw(self.number, raw.into_boxed_slice());
    }
}

/// An enum of message kinds decoded by [`decode_kind`].
pub(crate) trait Kinds: DeserializeOwned {
    /// How many variants this release knows: a kind number at or past it comes from a later
    /// release. Bump it with every new variant (a test of each enum checks it).
    const KNOWN: u32;
}

/// What [`decode_kind`] read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<T> {
    /// A kind this release knows, and the extension fields after it.
    Known(T, Ext),
    /// A kind from a later release (its number): ignore it and count it.
    Unknown(u32),
}

/// Decodes a message enum (postcard: the variant number as a varint, then its fields) and
/// the extension fields after it. New kinds are only ever added at the end of an enum, so a
/// variant number this release does not know is a later release's kind, not an error.
pub(crate) fn decode_kind<T: Kinds>(data: &[u8]) -> Result<Decoded<T>, ExtError> {
    let (kind, _) = take_varint(data)?;
    if kind >= T::KNOWN {
        return Ok(Decoded::Unknown(kind));
    }
    let (msg, rest) =
        postcard::take_from_bytes::<T>(data).map_err(|e| ExtError::Fixed(e.to_string()))?;
    Ok(Decoded::Known(msg, Ext::decode(rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[test]
    fn fields_roundtrip_in_order() {
        let a: Field<u64> = Field::new(7, "a");
        let b: Field<String> = Field::new(2, "b");
        let mut ext = Ext::default();
        a.set(&mut ext, &300);
        b.set(&mut ext, &"hi".to_string());
        assert_eq!(ext.numbers().collect::<Vec<_>>(), vec![2, 7]);
        let bytes = ext.to_bytes();
        assert_eq!(bytes.len(), ext.encoded_len());
        let back = Ext::decode(&bytes).unwrap();
        assert_eq!(back, ext);
        assert_eq!(a.get(&back), Ok(Some(300)));
        assert_eq!(b.get(&back), Ok(Some("hi".to_string())));
        assert_eq!(Field::<u8>::new(3, "c").get(&back), Ok(None));
        a.set(&mut ext, &1);
        assert_eq!(a.get(&ext), Ok(Some(1)));
        ext.remove(7);
        assert_eq!(a.get(&ext), Ok(None));
    }

    #[test]
    fn refusals() {
        assert_eq!(Ext::decode(&[]), Ok(Ext::default()));
        assert_eq!(Ext::decode(&[1]), Err(ExtError::Truncated));
        assert_eq!(Ext::decode(&[1, 3, 0]), Err(ExtError::Truncated));
        assert_eq!(Ext::decode(&[2, 0, 1, 0]), Err(ExtError::Unordered));
        assert_eq!(Ext::decode(&[2, 0, 2, 0]), Err(ExtError::Unordered));
        let many: Vec<u8> = (1..=MAX_FIELDS as u8 + 1).flat_map(|n| [n, 0]).collect();
        assert_eq!(Ext::decode(&many), Err(ExtError::TooMany));
        let mut ext = Ext::default();
        ext.set_raw(1, vec![0xff; 3].into());
        assert!(Field::<u64>::new(1, "x").get(&ext).is_err());
    }

    /// A field's type may gain members at its end: a reader of the shorter type reads the
    /// longer one's prefix.
    #[test]
    fn a_field_type_may_grow_at_its_end() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct V1 {
            a: u16,
        }
        #[derive(Serialize, Deserialize)]
        struct V2 {
            a: u16,
            b: String,
        }
        let mut ext = Ext::default();
        Field::<V2>::new(1, "f").set(
            &mut ext,
            &V2 {
                a: 9,
                b: "new".into(),
            },
        );
        assert_eq!(Field::<V1>::new(1, "f").get(&ext), Ok(Some(V1 { a: 9 })));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Old {
        A(u8),
        B { s: String },
    }
    impl Kinds for Old {
        const KNOWN: u32 = 2;
    }
    #[derive(Serialize, Deserialize)]
    enum New {
        A(u8),
        B { s: String },
        C(u64, String),
    }

    #[test]
    fn a_later_kind_is_reported_not_refused() {
        let c = postcard::to_allocvec(&New::C(5, "x".into())).unwrap();
        assert_eq!(decode_kind::<Old>(&c), Ok(Decoded::Unknown(2)));
        let mut b = postcard::to_allocvec(&New::B { s: "y".into() }).unwrap();
        let mut ext = Ext::default();
        Field::<u8>::new(4, "later").set(&mut ext, &1);
        ext.encode_into(&mut b);
        assert_eq!(
            decode_kind::<Old>(&b),
            Ok(Decoded::Known(Old::B { s: "y".into() }, ext))
        );
        assert!(decode_kind::<Old>(&[]).is_err());
        assert!(decode_kind::<Old>(&[1, 9]).is_err());
        // Bytes after the fixed part that are not fields are refused.
        let mut bad = postcard::to_allocvec(&Old::A(1)).unwrap();
        bad.push(1);
        assert!(decode_kind::<Old>(&bad).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_roundtrips(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(ext) = Ext::decode(&data) {
                prop_assert_eq!(Ext::decode(&ext.to_bytes()), Ok(ext.clone()));
                prop_assert!(ext.encoded_len() <= data.len());
            }
            let _ = decode_kind::<Old>(&data);
        }
    }
}
