//! The datagram envelope.
//!
//! Owns the byte layout every shoal datagram starts with and its checks. It wraps either a
//! foca packet or a shoal message (anti-entropy) and must never interpret either body.
//!
//! Layout (all single bytes unless noted):
//! `magic[2] = "SH"`, `version`, `flags`, `label_len`, `label[label_len]`, `kind`, `body..`.
//! `flags` bit 0 ([`FLAG_SEALED`]) says the body is sealed: then it is a seal header (key id,
//! sender session, counter, timestamp), the ciphertext and the tag (see `core::trust`, which
//! owns sealing and opening). A datagram with unknown flag bits set is refused so that a newer
//! sender is not misread. The whole datagram is at most [`MAX_DATAGRAM`] bytes, seal included:
//! every sender reserves [`SEAL_OVERHEAD`] bytes whether it seals or not (see [`overhead`]).
//!
//! Also owns the two versions of the wire (docs/upgrades.md): the envelope's `version` byte
//! is the version of this layout ([`WIRE_VERSION`], accepted: [`ENVELOPE_VERSIONS`]); what
//! the bodies say is the protocol ([`PROTOCOL`]), a range each agent announces in its record.

use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;
use thiserror::Error;

pub(crate) const MAGIC: [u8; 2] = *b"SH";
/// The envelope layout version this release writes. v0.1.0 accepts exactly 1.
pub(crate) const WIRE_VERSION: u8 = 1;
/// Envelope layout versions this release accepts. A new layout is accepted one release
/// before any release writes it (docs/upgrades.md).
pub(crate) const ENVELOPE_VERSIONS: RangeInclusive<u8> = WIRE_VERSION..=WIRE_VERSION;

/// A range of protocol versions: an agent writes `max` and interoperates with every agent
/// whose range overlaps its own (it reads and keeps writing what `min` reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProtocolRange {
    /// Lowest protocol version spoken.
    pub min: u16,
    /// Highest protocol version spoken.
    pub max: u16,
}

impl ProtocolRange {
    /// Whether an agent of range `self` and one of `other` understand each other.
    pub fn overlaps(&self, other: &ProtocolRange) -> bool {
        self.min <= other.max && other.min <= self.max
    }

    pub(crate) fn is_valid(&self) -> bool {
        1 <= self.min && self.min <= self.max
    }
}

impl std::fmt::Display for ProtocolRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.max)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

impl std::str::FromStr for ProtocolRange {
    type Err = String;

    /// The [`Display`](std::fmt::Display) form: `2` or `1..2`.
    fn from_str(s: &str) -> Result<ProtocolRange, String> {
        let (min, max) = s.split_once("..").unwrap_or((s, s));
        let num = |x: &str| {
            x.trim()
                .parse::<u16>()
                .map_err(|_| format!("not a protocol range: {s:?}"))
        };
        let r = ProtocolRange {
            min: num(min)?,
            max: num(max)?,
        };
        if r.is_valid() {
            Ok(r)
        } else {
            Err(format!("not a protocol range: {s:?}"))
        }
    }
}

/// The protocol of v0.1.0, which does not announce one: envelope 1, postcard records and
/// messages with no extension fields, a kind it does not know refused.
pub const PROTOCOL_V1: ProtocolRange = ProtocolRange { min: 1, max: 1 };
/// The protocol of this release: 2 (extension fields after records and messages, kinds of a
/// later release ignored and counted), interoperating with 1 (v0.1.0). Bump `max` with a
/// change a reader of the previous protocol handles only because it follows these rules, and
/// `min` to the previous release's `max` when a release is cut (docs/upgrades.md).
pub const PROTOCOL: ProtocolRange = ProtocolRange { min: 1, max: 2 };
/// Largest datagram shoal sends or accepts.
pub const MAX_DATAGRAM: usize = 1400;
/// Longest cluster label.
pub const MAX_LABEL_LEN: usize = 64;
/// Flag bit: the body is sealed (authenticated and encrypted).
pub(crate) const FLAG_SEALED: u8 = 1;
/// Flag bit: the (decrypted) body ends with padding and its 2-byte length. A node pads what
/// it sends to a stranger (an announce to a seed) so that the answer, which a stranger only
/// gets up to `AMPLIFICATION` times the size of its datagram, can be a full datagram.
pub(crate) const FLAG_PADDED: u8 = 2;
/// Flag bit (sealed datagrams only): a 16-byte tag follows the seal's, computed with the key
/// of the sender and recipient pair (`member_key::pair_keys`) over everything before it. It
/// proves the datagram comes from the member whose key the recipient bound to the sender's
/// name, which a holder of the cluster key alone cannot forge: the replay window of the
/// sender is advanced only by such datagrams (`core::replay`). Sent only to a member whose
/// record carries a member key (never to a v0.1.0 agent, which refuses unknown flags).
pub(crate) const FLAG_PAIR: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_SEALED | FLAG_PADDED | FLAG_PAIR;
/// Bytes of the pair tag ([`FLAG_PAIR`]).
pub(crate) const PAIR_TAG_LEN: usize = 16;
/// Bytes a seal adds: key id (4), session (8), counter (8), timestamp (4), tag (16).
pub(crate) const SEAL_OVERHEAD: usize = 40;

/// What the body of a datagram is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A foca (SWIM) packet.
    Swim = 0,
    /// A shoal message (metadata anti-entropy), postcard-encoded.
    Shoal = 1,
    /// An operator command every agent must apply (`core::operator`).
    Operator = 2,
    /// A keyring message (rotation across the cluster); only ever accepted sealed.
    Keys = 3,
}

/// Why a datagram was refused. Each variant is counted separately in the stats.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("datagram larger than {MAX_DATAGRAM} bytes")]
    Oversized,
    #[error("datagram too short or truncated")]
    Truncated,
    #[error("bad magic: not a shoal datagram")]
    BadMagic,
    #[error(
        "envelope version {0} is not one this release accepts ({lo}..={hi}): \
         an agent of another release (docs/upgrades.md)",
        lo = ENVELOPE_VERSIONS.start(),
        hi = ENVELOPE_VERSIONS.end()
    )]
    BadVersion(u8),
    #[error("unsupported flags")]
    BadFlags,
    #[error("cluster label does not match")]
    WrongLabel,
    #[error("unknown message kind")]
    BadKind,
}

/// Number of bytes the envelope takes for a given label.
pub(crate) fn header_len(label: &str) -> usize {
    6 + label.len()
}

/// Number of bytes the envelope of `data` (a datagram this node wrote) takes, from its label
/// length byte.
pub(crate) fn header_len_of(data: &[u8]) -> usize {
    6 + data.get(4).copied().unwrap_or(0) as usize
}

/// Bytes every datagram reserves for the envelope, a seal and a pair tag: what foca's
/// packets and shoal messages must leave free of the [`MAX_DATAGRAM`] limit.
pub(crate) fn overhead(label: &str) -> usize {
    header_len(label) + SEAL_OVERHEAD + PAIR_TAG_LEN
}

/// A datagram whose envelope passed the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub kind: Kind,
    pub sealed: bool,
    pub padded: bool,
    /// A pair tag follows the seal ([`FLAG_PAIR`]).
    pub paired: bool,
    /// The envelope header, up to and including the kind byte.
    pub header: &'a [u8],
    /// What follows the header (a seal header, ciphertext and tag when sealed).
    pub body: &'a [u8],
}

/// Writes the envelope header into `out` (cleared first).
pub fn write_header(out: &mut Vec<u8>, label: &str, kind: Kind) {
    debug_assert!(label.len() <= MAX_LABEL_LEN);
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(WIRE_VERSION);
    out.push(0);
    out.push(label.len() as u8);
    out.extend_from_slice(label.as_bytes());
    out.push(kind as u8);
}

/// Checks the envelope of `data` against our `label` and returns the kind and the body.
/// Test helper for plaintext envelopes: the core uses [`parse`].
pub fn open<'a>(data: &'a [u8], label: &str) -> Result<(Kind, &'a [u8]), WireError> {
    parse(data, label).map(|e| (e.kind, e.body))
}

/// Checks the envelope of `data` against our `label`.
pub(crate) fn parse<'a>(data: &'a [u8], label: &str) -> Result<Envelope<'a>, WireError> {
    if data.len() > MAX_DATAGRAM {
        return Err(WireError::Oversized);
    }
    if data.len() < 2 {
        return Err(WireError::Truncated);
    }
    if data[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if data.len() < 5 {
        return Err(WireError::Truncated);
    }
    if !ENVELOPE_VERSIONS.contains(&data[2]) {
        return Err(WireError::BadVersion(data[2]));
    }
    if data[3] & !KNOWN_FLAGS != 0 {
        return Err(WireError::BadFlags);
    }
    let label_len = data[4] as usize;
    let rest = &data[5..];
    if rest.len() < label_len + 1 {
        return Err(WireError::Truncated);
    }
    if &rest[..label_len] != label.as_bytes() {
        return Err(WireError::WrongLabel);
    }
    let kind = match rest[label_len] {
        0 => Kind::Swim,
        1 => Kind::Shoal,
        2 => Kind::Operator,
        3 => Kind::Keys,
        _ => return Err(WireError::BadKind),
    };
    let h = 5 + label_len + 1;
    // A pair tag only ever follows a seal.
    if data[3] & (FLAG_PAIR | FLAG_SEALED) == FLAG_PAIR {
        return Err(WireError::BadFlags);
    }
    Ok(Envelope {
        kind,
        sealed: data[3] & FLAG_SEALED != 0,
        padded: data[3] & FLAG_PADDED != 0,
        paired: data[3] & FLAG_PAIR != 0,
        header: &data[..h],
        body: &data[h..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip() {
        let mut buf = Vec::new();
        write_header(&mut buf, "prod", Kind::Shoal);
        buf.extend_from_slice(b"body");
        assert_eq!(buf.len(), header_len("prod") + 4);
        assert_eq!(open(&buf, "prod"), Ok((Kind::Shoal, &b"body"[..])));
        assert_eq!(open(&buf, "test"), Err(WireError::WrongLabel));
    }

    #[test]
    fn refusals() {
        assert_eq!(open(b"", ""), Err(WireError::Truncated));
        assert_eq!(open(b"XX\x01\x00\x00\x00", ""), Err(WireError::BadMagic));
        assert_eq!(
            open(b"SH\x09\x00\x00\x00", ""),
            Err(WireError::BadVersion(9))
        );
        assert_eq!(
            WireError::BadVersion(2).to_string(),
            "envelope version 2 is not one this release accepts (1..=1): \
             an agent of another release (docs/upgrades.md)"
        );
        assert_eq!(open(b"SH\x01\x04\x00\x00", ""), Err(WireError::BadFlags));
        assert_eq!(open(b"SH\x01\x00\x05ab", ""), Err(WireError::Truncated));
        assert_eq!(open(b"SH\x01\x00\x00\x07", ""), Err(WireError::BadKind));
        assert_eq!(open(&[0u8; 1401], ""), Err(WireError::Oversized));
    }

    #[test]
    fn protocol_ranges() {
        assert!(PROTOCOL.is_valid() && PROTOCOL_V1.is_valid());
        assert!(
            PROTOCOL.overlaps(&PROTOCOL_V1),
            "this release speaks v0.1.0's protocol"
        );
        assert!(!ProtocolRange { min: 3, max: 4 }.overlaps(&PROTOCOL_V1));
        assert!(!ProtocolRange { min: 0, max: 1 }.is_valid());
        assert!(!ProtocolRange { min: 3, max: 2 }.is_valid());
        assert_eq!(PROTOCOL.to_string(), "1..2");
        assert_eq!(PROTOCOL_V1.to_string(), "1");
        assert_eq!("1..2".parse(), Ok(PROTOCOL));
        assert_eq!("1".parse(), Ok(PROTOCOL_V1));
        assert!("2..1".parse::<ProtocolRange>().is_err());
        assert!("x".parse::<ProtocolRange>().is_err());
        // v0.1.0 accepts exactly envelope 1: this release writes it.
        assert_eq!(WIRE_VERSION, 1);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = open(&data, "label");
        }
    }
}
