//! Shoal's own messages beside SWIM: metadata and membership anti-entropy.
//!
//! Owns the `ShoalMsg` wire shapes (digest, push, want, members filter, introductions, the
//! reach check's ping and pong), the
//! Bloom filter of member names and its hash sharding, and the packing of records into
//! datagram-sized messages. The node decides when to send them and what to do with them;
//! this module must not touch any state.
//!
//! Encoding: v0.1.0's postcard layout (frozen), then extension fields (`core::ext`, declared
//! in `core::fields::shoal_msg`); a kind of a later release decodes to [`MsgError::Later`]
//! (docs/upgrades.md). The records of a `Push` are not length-delimited in that layout, so
//! their own extension fields travel in the message's `RECORD_EXTS` field.

pub(crate) use crate::ext::MsgError;
use crate::ext::{decode_kind, Decoded, Ext, ExtError, Kinds};
use crate::fields::shoal_msg::RECORD_EXTS;
use crate::hash::bloom_hashes;
use crate::meta::MetaRecord;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// Names per shard the membership filter aims for: `parts = ceil(active / SHARD_TARGET)`.
pub(crate) const SHARD_TARGET: usize = 800;
/// Filter bits per inserted name (with `FILTER_HASHES` hashes: ~0.8% false positives).
pub(crate) const FILTER_BITS_PER_NAME: usize = 10;
/// Hash functions of the filter.
pub(crate) const FILTER_HASHES: u8 = 7;
/// Most hash functions a received filter may ask for (bounds the work a peer can cause).
pub(crate) const MAX_FILTER_HASHES: u8 = 16;
/// Most shards a received filter may claim.
pub(crate) const MAX_PARTS: u32 = 1 << 16;

/// A Bloom filter of member names (double hashing over two seeded FNV-1a hashes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameFilter {
    hashes: u8,
    bits: Vec<u8>,
}

impl NameFilter {
    /// An empty filter sized for `n` names, at most `max_bytes` bytes (at least 8).
    pub fn for_names(n: usize, max_bytes: usize) -> Self {
        let bytes = (n * FILTER_BITS_PER_NAME)
            .div_ceil(8)
            .clamp(8, max_bytes.max(8));
        NameFilter {
            hashes: FILTER_HASHES,
            bits: vec![0; bytes],
        }
    }

    fn positions(&self, (h1, h2): (u64, u64)) -> impl Iterator<Item = usize> {
        let m = (self.bits.len() * 8) as u64;
        (0..u64::from(self.hashes))
            .map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m.max(1)) as usize)
    }

    pub fn insert(&mut self, name: &str) {
        self.insert_hashed(bloom_hashes(name));
    }

    /// `insert` of a name whose [`bloom_hashes`] are `h` (`NodeId::bloom` holds them).
    pub fn insert_hashed(&mut self, h: (u64, u64)) {
        if self.bits.is_empty() {
            return;
        }
        let m = (self.bits.len() * 8) as u64;
        let (h1, h2) = h;
        for i in 0..u64::from(self.hashes) {
            let p = (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize;
            self.bits[p / 8] |= 1 << (p % 8);
        }
    }

    /// Whether `name` may have been inserted (false positives possible, no false negatives).
    pub fn contains(&self, name: &str) -> bool {
        self.contains_hashed(bloom_hashes(name))
    }

    /// `contains` of a name whose [`bloom_hashes`] are `h`.
    pub fn contains_hashed(&self, h: (u64, u64)) -> bool {
        !self.bits.is_empty()
            && self.positions(h).all(|p| {
                self.bits
                    .get(p / 8)
                    .is_some_and(|b| b & (1 << (p % 8)) != 0)
            })
    }

    /// Whether a received filter is usable (bounded work, non-empty).
    pub fn is_valid(&self) -> bool {
        (1..=MAX_FILTER_HASHES).contains(&self.hashes) && !self.bits.is_empty()
    }

    pub fn byte_len(&self) -> usize {
        self.bits.len()
    }
}

/// A member the sender knows as active: enough for the receiver's SWIM to add it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntroEntry {
    #[serde(deserialize_with = "crate::intern::de_name")]
    /// The member's name.
    pub name: Arc<str>,
    /// Its address.
    pub addr: SocketAddr,
    /// Its generation.
    pub generation: u64,
}

impl IntroEntry {
    /// Upper bound of the encoded size (name and its length prefix, address, u64 varint).
    pub fn max_encoded_len(&self) -> usize {
        self.name.len() + 2 + 20 + 10
    }
}

/// (name, generation, version) of one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    #[serde(deserialize_with = "crate::intern::de_name")]
    /// The record's owner.
    pub name: Arc<str>,
    /// Its generation.
    pub generation: u64,
    /// Its version.
    pub version: u64,
}

impl DigestEntry {
    /// Upper bound of the encoded size (name, its length prefix, two u64 varints).
    pub fn max_encoded_len(&self) -> usize {
        self.name.len() + 2 + 10 + 10
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// Shoal's own messages beside SWIM.
pub enum ShoalMsg {
    /// "Here is the fingerprint of all the records I hold and a slice of them": when the
    /// fingerprints differ, the receiver pushes what it has newer, asks for what it lacks, and
    /// while `replies > 0` answers with a digest of its own (`replies - 1`). A round opens with
    /// an empty slice and `replies = 2`: one tiny datagram when both sides agree, three when
    /// they do not.
    Digest {
        /// Fingerprint of every record the sender holds.
        fingerprint: u64,
        /// How many records it holds.
        count: u32,
        /// A slice of them.
        entries: Vec<DigestEntry>,
        /// Digests still wanted in answer.
        replies: u8,
    },
    /// Records, newest known versions.
    Push {
        /// The records.
        records: Vec<Arc<MetaRecord>>,
    },
    /// "Send me the records of these nodes." Answered with at most one datagram of records
    /// (what did not fit is asked again at the next digest round), a few times a second per
    /// requester (`node::WANT_ANSWERS_PER_SEC`).
    Want {
        #[serde(deserialize_with = "crate::intern::de_names")]
        /// The names.
        names: Vec<Arc<str>>,
    },
    /// Membership anti-entropy: "these are the members I know as active whose names fall in
    /// shard `part` of `parts`" (myself included). The receiver answers with `Intro` for the
    /// active members of that shard the filter lacks.
    Members {
        /// The shard.
        part: u32,
        /// Shards in all.
        parts: u32,
        /// The names the sender knows in that shard.
        filter: NameFilter,
    },
    /// Members the sender knows as active, for the receiver to add to SWIM.
    Intro {
        /// The members.
        members: Vec<IntroEntry>,
    },
    /// A reach check (see `core::reach`): "answer with this nonce".
    Ping {
        /// The nonce to echo.
        nonce: u64,
    },
    /// The answer to a `Ping`, the same size.
    Pong {
        /// The nonce echoed.
        nonce: u64,
    },
    /// Reach reports (see `core::gray`): observers that cannot reach a member. Added in the
    /// gray-failure release; an older agent drops the datagram as undecodable (counted).
    Reach {
        /// The reports.
        reports: Vec<crate::gray::ReachReport>,
    },
    /// User events, their anti-entropy, queries and answers (`core::fleet`). Added in the
    /// events release; an older agent counts it as a later kind and ignores it.
    Fleet(crate::fleet::FleetMsg),
    /// The sender's network coordinate, to a member that probed it (`core::coordinate`).
    /// Added in the coordinates release; an older agent counts it as a later kind and
    /// ignores it.
    Coord(crate::coordinate::WireCoord),
}

impl Kinds for ShoalMsg {
    /// Variants up to `Coord`; a new kind is added at the end and counted here.
    const KNOWN: u32 = 10;
}

impl ShoalMsg {
    /// The message, then (a `Push` whose records carry a restart intent) the extension
    /// section the previous release ignores (`core::restart`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = postcard::to_allocvec(self).unwrap_or_default();
        if let ShoalMsg::Push { records } = self {
            let exts: Vec<(u32, Vec<u8>)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.ext.is_empty())
                .map(|(i, r)| (i as u32, r.ext.to_bytes()))
                .collect();
            if !exts.is_empty() {
                let mut ext = Ext::default();
                RECORD_EXTS.set(&mut ext, &exts);
                ext.encode_into(&mut out);
            }
        }
        out
    }

    /// Decodes a message (a later kind is `MsgError::Later`).
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let (mut msg, ext) = match decode_kind::<ShoalMsg>(data)? {
            Decoded::Known(msg, ext) => (msg, ext),
            Decoded::Unknown(kind) => return Err(MsgError::Later(kind)),
        };
        if let ShoalMsg::Fleet(m) = &msg {
            m.validate().map_err(|e| ExtError::Fixed(e.to_string()))?;
        }
        if let ShoalMsg::Push { records } = &mut msg {
            let bad = ExtError::BadValue {
                number: RECORD_EXTS.number,
                name: RECORD_EXTS.name,
            };
            for (i, bytes) in RECORD_EXTS.get(&ext)?.unwrap_or_default() {
                let rec = records.get_mut(i as usize).ok_or_else(|| bad.clone())?;
                Arc::make_mut(rec).ext = Ext::decode(&bytes)?;
            }
            // Services keyed by instance id, with those of field `record.instances`.
            for rec in records.iter_mut() {
                Arc::make_mut(rec)
                    .join_instances()
                    .map_err(|e| ExtError::Fixed(e.to_string()))?;
            }
        }
        Ok(msg)
    }
}

/// Bytes a record's extension fields add to a `Push` beyond their own: its index and their
/// length (varints), with room for the field's own header shared by all.
const PUSH_EXT_OVERHEAD: usize = 8;

/// Splits `records` into `Push` messages whose encoding stays within `budget` bytes.
/// A record that alone exceeds the budget is skipped (cannot happen with valid metadata).
pub(crate) fn pack_push(records: Vec<Arc<MetaRecord>>, budget: usize) -> Vec<ShoalMsg> {
    let mut out = Vec::new();
    let mut cur: Vec<Arc<MetaRecord>> = Vec::new();
    let start = 4 + PUSH_EXT_OVERHEAD;
    let mut cur_len = start;
    for r in records {
        let mut len = r.encoded_len();
        if !r.ext.is_empty() {
            len = len.saturating_add(PUSH_EXT_OVERHEAD);
        }
        if len.saturating_add(start) > budget {
            continue;
        }
        if cur_len + len > budget && !cur.is_empty() {
            out.push(ShoalMsg::Push {
                records: std::mem::take(&mut cur),
            });
            cur_len = start;
        }
        cur_len += len;
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(ShoalMsg::Push { records: cur });
    }
    out
}

/// Splits `members` into at most `max_msgs` `Intro` messages within `budget` bytes each;
/// entries that do not fit are dropped (a later round sends them).
pub(crate) fn pack_intro(
    members: impl IntoIterator<Item = IntroEntry>,
    budget: usize,
    max_msgs: usize,
) -> Vec<ShoalMsg> {
    let mut out = Vec::new();
    let mut cur: Vec<IntroEntry> = Vec::new();
    let mut cur_len = 4;
    for e in members {
        let len = e.max_encoded_len();
        if cur_len + len > budget && !cur.is_empty() {
            out.push(ShoalMsg::Intro {
                members: std::mem::take(&mut cur),
            });
            cur_len = 4;
            if out.len() >= max_msgs {
                return out;
            }
        }
        if cur_len + len > budget {
            continue;
        }
        cur_len += len;
        cur.push(e);
    }
    if !cur.is_empty() && out.len() < max_msgs {
        out.push(ShoalMsg::Intro { members: cur });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::shard_of;
    use crate::meta::NodeMeta;

    #[test]
    fn packing_respects_budget() {
        let mut meta = NodeMeta::default();
        meta.tags.insert("k".into(), "v".repeat(200));
        let recs: Vec<Arc<MetaRecord>> = (0..20)
            .map(|i| {
                Arc::new(MetaRecord {
                    name: Arc::from(format!("node-{i}")),
                    addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
                    generation: 1,
                    version: 1,
                    leaving: false,
                    meta: meta.clone(),
                    ext: Default::default(),
                })
            })
            .collect();
        let msgs = pack_push(recs, 1300);
        assert!(msgs.len() > 1);
        let mut total = 0;
        for m in &msgs {
            assert!(m.encode().len() <= 1300);
            if let ShoalMsg::Push { records } = m {
                total += records.len();
            }
        }
        assert_eq!(total, 20);
    }

    #[test]
    fn name_filter_has_no_false_negatives_and_fits_a_datagram() {
        // The largest shard we aim for, plus slack for uneven hashing.
        let budget = 1400 - 16;
        let names: Vec<String> = (0..1000)
            .map(|i| format!("host-{i:05}.rack-{}", i % 7))
            .collect();
        let mut f = NameFilter::for_names(names.len(), budget - 32);
        for n in &names {
            f.insert(n);
        }
        assert!(names.iter().all(|n| f.contains(n)), "a false negative");
        let msg = ShoalMsg::Members {
            part: 3,
            parts: 4,
            filter: f.clone(),
        };
        let enc = msg.encode();
        assert!(enc.len() <= budget, "{} bytes", enc.len());
        assert_eq!(ShoalMsg::decode(&enc).unwrap(), msg);
        // False positives stay rare for names never inserted.
        let fp = (0..10_000)
            .filter(|i| f.contains(&format!("other-{i}")))
            .count();
        assert!(fp < 300, "{fp} false positives in 10000");
        // At the target shard size the filter is ~1 KB.
        let g = NameFilter::for_names(SHARD_TARGET, budget - 32);
        assert!(g.byte_len() <= 1000);
    }

    #[test]
    fn shards_partition_the_names() {
        let names: Vec<String> = (0..3000).map(|i| format!("n{i}")).collect();
        let parts = 4;
        let mut counts = [0usize; 4];
        for n in &names {
            let s = shard_of(n, parts);
            assert!(s < parts);
            assert_eq!(s, shard_of(n, parts), "stable");
            counts[s as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 600), "{counts:?}");
        assert!(names.iter().all(|n| shard_of(n, 1) == 0));
    }

    #[test]
    fn received_filter_limits() {
        let f = NameFilter {
            hashes: 200,
            bits: vec![0xff; 8],
        };
        assert!(!f.is_valid());
        let empty = NameFilter {
            hashes: 7,
            bits: vec![],
        };
        assert!(!empty.is_valid());
        assert!(!empty.contains("x"));
    }

    #[test]
    fn intro_packing_is_bounded() {
        let entries: Vec<IntroEntry> = (0..500)
            .map(|i| IntroEntry {
                name: Arc::from(format!("node-{i}")),
                addr: std::net::SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 7946)),
                generation: 1_700_000_000_000 + i,
            })
            .collect();
        let msgs = pack_intro(entries, 1300, 3);
        assert_eq!(msgs.len(), 3);
        for m in &msgs {
            assert!(m.encode().len() <= 1300);
        }
    }
}
