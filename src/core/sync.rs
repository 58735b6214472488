//! Shoal's own messages beside SWIM: metadata anti-entropy.
//!
//! Owns the `ShoalMsg` wire shapes (digest, push, want) and the packing of records into
//! datagram-sized messages. The node decides when to send them and what to do with them;
//! this module must not touch any state.

use crate::core::meta::MetaRecord;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// (name, generation, version) of one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    #[serde(deserialize_with = "crate::core::intern::de_name")]
    pub name: Arc<str>,
    pub generation: u64,
    pub version: u64,
}

impl DigestEntry {
    /// Upper bound of the encoded size (name, its length prefix, two u64 varints).
    pub fn max_encoded_len(&self) -> usize {
        self.name.len() + 2 + 10 + 10
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShoalMsg {
    /// "Here is the fingerprint of all the records I hold and a slice of them": when the
    /// fingerprints differ, the receiver pushes what it has newer, asks for what it lacks, and
    /// while `replies > 0` answers with a digest of its own (`replies - 1`). A round opens with
    /// an empty slice and `replies = 2`: one tiny datagram when both sides agree, three when
    /// they do not.
    Digest {
        fingerprint: u64,
        count: u32,
        entries: Vec<DigestEntry>,
        replies: u8,
    },
    /// Records, newest known versions.
    Push { records: Vec<Arc<MetaRecord>> },
    /// "Send me the records of these nodes."
    Want {
        #[serde(deserialize_with = "crate::core::intern::de_names")]
        names: Vec<Arc<str>>,
    },
}

impl ShoalMsg {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(data: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(data)
    }
}

/// Splits `records` into `Push` messages whose encoding stays within `budget` bytes.
/// A record that alone exceeds the budget is skipped (cannot happen with valid metadata).
pub fn pack_push(records: Vec<Arc<MetaRecord>>, budget: usize) -> Vec<ShoalMsg> {
    let mut out = Vec::new();
    let mut cur: Vec<Arc<MetaRecord>> = Vec::new();
    let mut cur_len = 4;
    for r in records {
        let len = postcard::serialize_with_flavor(&*r, postcard::ser_flavors::Size::default())
            .unwrap_or(usize::MAX);
        if len.saturating_add(4) > budget {
            continue;
        }
        if cur_len + len > budget && !cur.is_empty() {
            out.push(ShoalMsg::Push {
                records: std::mem::take(&mut cur),
            });
            cur_len = 4;
        }
        cur_len += len;
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(ShoalMsg::Push { records: cur });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::meta::NodeMeta;

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
}
