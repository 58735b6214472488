//! A restart is not a decommission: the restart intent a stopping node announces, and the
//! one place it is put on and taken off the wire.
//!
//! An agent that stops to restart (SIGTERM by default) sets `MetaRecord::restart` to "expect
//! me back within `grace`" and spreads that version of its record before it stops. Peers keep
//! serving it (status `restarting`) until it is back (a new generation) or the grace has run
//! out (then it is a failure like any other: `Guard::restart_expired`).
//!
//! Wire: the intent is a trailing **extension** that readers of the previous release never
//! see. postcard ignores bytes after a value, and both places a record travels end where the
//! reader stops reading:
//! - a record as a foca broadcast item (`MetaRecord::encode`) is length-delimited by foca: the
//!   extensions follow the postcard record inside the item;
//! - records inside a `ShoalMsg::Push` are not delimited, so there the extensions follow the
//!   whole message, each naming the index of the record it belongs to.
//!
//! An extension section is a sequence of `(tag: u8, payload: bytes)` in postcard (a varint
//! length before the payload); unknown tags are skipped, so later extensions stay compatible
//! too. This module must not decide what is served (the guard does) nor keep state.

use crate::meta::{MetaError, MetaRecord};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Extension tag of a record's restart intent (inside a broadcast item).
const TAG_RESTART: u8 = 1;
/// Extension tag of the restart intents of a `Push`'s records: `Vec<(index, grace_ms)>`.
const TAG_PUSH_RESTART: u8 = 2;

/// Shortest grace an owner may announce (and a reader accepts).
pub const MIN_GRACE: Duration = Duration::from_secs(1);
/// Longest grace an owner may announce (and a reader accepts): a forged "back in a year"
/// cannot keep a dead member served.
pub const MAX_GRACE: Duration = Duration::from_secs(3600);
/// Most bytes a restart extension adds to a record (tag, length, a u32 varint).
pub const EXT_MAX: usize = 1 + 1 + 5;

/// "I am restarting: expect me back within `grace_ms`."
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RestartIntent {
    pub grace_ms: u32,
}

impl RestartIntent {
    /// An intent with `grace` clamped to [`MIN_GRACE`, `MAX_GRACE`].
    pub fn new(grace: Duration) -> Self {
        let g = grace.clamp(MIN_GRACE, MAX_GRACE);
        RestartIntent {
            grace_ms: g.as_millis() as u32,
        }
    }

    pub fn grace(self) -> Duration {
        Duration::from_millis(u64::from(self.grace_ms))
    }

    fn valid(self) -> bool {
        (MIN_GRACE..=MAX_GRACE).contains(&self.grace())
    }
}

fn push_ext(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    // Serializing bounded data into a Vec cannot fail.
    if let Ok(v) = postcard::to_allocvec(&(tag, payload)) {
        out.extend_from_slice(&v);
    }
}

/// The extensions after a value: `(tag, payload)` pairs. A malformed section is an error.
fn read_exts(mut rest: &[u8]) -> Result<Vec<(u8, &[u8])>, MetaError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let ((tag, payload), tail): ((u8, &[u8]), &[u8]) = postcard::take_from_bytes(rest)
            .map_err(|e| MetaError::Decode(format!("extension: {e}")))?;
        out.push((tag, payload));
        rest = tail;
    }
    Ok(out)
}

fn intent_of(payload: &[u8]) -> Result<RestartIntent, MetaError> {
    let grace_ms: u32 = postcard::from_bytes(payload)
        .map_err(|e| MetaError::Decode(format!("restart intent: {e}")))?;
    let i = RestartIntent { grace_ms };
    if !i.valid() {
        return Err(MetaError::Refused("restart grace out of range"));
    }
    Ok(i)
}

/// A record as a broadcast item: the postcard record, then its extensions.
pub fn encode_record(rec: &MetaRecord) -> Vec<u8> {
    let mut out = postcard::to_allocvec(rec).unwrap_or_default();
    if let Some(i) = rec.restart {
        if let Ok(p) = postcard::to_allocvec(&i.grace_ms) {
            push_ext(&mut out, TAG_RESTART, &p);
        }
    }
    out
}

/// Decodes a broadcast item (see [`encode_record`]); unknown extensions are skipped.
pub fn decode_record(data: &[u8]) -> Result<MetaRecord, MetaError> {
    let (mut rec, rest): (MetaRecord, &[u8]) =
        postcard::take_from_bytes(data).map_err(|e| MetaError::Decode(e.to_string()))?;
    for (tag, payload) in read_exts(rest)? {
        if tag == TAG_RESTART {
            rec.restart = Some(intent_of(payload)?);
        }
    }
    Ok(rec)
}

/// The extension section after an encoded `Push` of `records` (empty when none carries an
/// intent, so that the message is byte for byte what the previous release sends).
pub fn push_trailer<'a>(records: impl Iterator<Item = &'a MetaRecord>) -> Vec<u8> {
    let intents: Vec<(u32, u32)> = records
        .enumerate()
        .filter_map(|(k, r)| r.restart.map(|i| (k as u32, i.grace_ms)))
        .collect();
    let mut out = Vec::new();
    if !intents.is_empty() {
        if let Ok(p) = postcard::to_allocvec(&intents) {
            push_ext(&mut out, TAG_PUSH_RESTART, &p);
        }
    }
    out
}

/// Bytes the trailer adds for one record with an intent (its share of [`push_trailer`]).
pub fn push_trailer_len(rec: &MetaRecord) -> usize {
    if rec.restart.is_some() {
        EXT_MAX + 5
    } else {
        0
    }
}

/// Applies a `Push`'s extension section to its records: `set(index, intent)` for each.
pub fn read_push_trailer(
    rest: &[u8],
    mut set: impl FnMut(usize, RestartIntent),
) -> Result<(), MetaError> {
    for (tag, payload) in read_exts(rest)? {
        if tag != TAG_PUSH_RESTART {
            continue;
        }
        let intents: Vec<(u32, u32)> = postcard::from_bytes(payload)
            .map_err(|e| MetaError::Decode(format!("restart intents: {e}")))?;
        for (k, grace_ms) in intents {
            let i = RestartIntent { grace_ms };
            if !i.valid() {
                return Err(MetaError::Refused("restart grace out of range"));
            }
            set(k as usize, i);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NodeMeta;
    use crate::sync::ShoalMsg;
    use std::sync::Arc;

    fn rec(restart: Option<RestartIntent>) -> MetaRecord {
        let mut meta = NodeMeta::default();
        meta.tags.insert("role".into(), "db".into());
        MetaRecord {
            name: Arc::from("r1"),
            addr: "127.0.0.1:7946".parse().unwrap(),
            generation: 7,
            version: 3,
            leaving: false,
            restart,
            meta,
        }
    }

    /// What the previous release decodes: the record without the field (postcard, the
    /// shape it had), and `ShoalMsg` as it was.
    #[derive(Deserialize, Debug, PartialEq)]
    struct OldRecord {
        name: String,
        addr: std::net::SocketAddr,
        generation: u64,
        version: u64,
        leaving: bool,
        meta: NodeMeta,
    }

    #[test]
    fn an_old_reader_decodes_a_record_with_an_intent() {
        let r = rec(Some(RestartIntent::new(Duration::from_secs(60))));
        let bytes = encode_record(&r);
        let old: OldRecord = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(old.meta, r.meta);
        assert_eq!((old.generation, old.version), (7, 3));
        // Without an intent the bytes are exactly the previous release's.
        assert_eq!(
            encode_record(&rec(None)),
            postcard::to_allocvec(&rec(None)).unwrap()
        );
        assert_eq!(decode_record(&bytes).unwrap(), r);
    }

    #[test]
    fn an_old_reader_decodes_a_push_with_intents() {
        let a = rec(None);
        let mut b = rec(Some(RestartIntent::new(Duration::from_secs(30))));
        b.name = Arc::from("r2");
        let msg = ShoalMsg::Push {
            records: vec![Arc::new(a.clone()), Arc::new(b.clone())],
        };
        let bytes = msg.encode();
        // The previous release: postcard::from_bytes of the same enum shape, trailing
        // bytes ignored; both records decode, without the intent.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        enum OldMsg {
            Digest(u64, u32, Vec<(String, u64, u64)>, u8),
            Push { records: Vec<OldRecord> },
        }
        match postcard::from_bytes::<OldMsg>(&bytes).unwrap() {
            OldMsg::Push { records } => {
                assert_eq!(records.len(), 2);
                assert_eq!(records[1].name, "r2");
            }
            OldMsg::Digest(..) => panic!("not a push"),
        }
        assert_eq!(ShoalMsg::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn unknown_extensions_are_skipped_and_bad_ones_refused() {
        let r = rec(None);
        let mut bytes = encode_record(&r);
        push_ext(&mut bytes, 99, b"future");
        assert_eq!(decode_record(&bytes).unwrap(), r);
        let mut bad = encode_record(&r);
        push_ext(
            &mut bad,
            TAG_RESTART,
            &postcard::to_allocvec(&0u32).unwrap(),
        );
        assert!(decode_record(&bad).is_err());
        let mut cut = encode_record(&r);
        cut.extend_from_slice(&[TAG_RESTART, 9, 1]);
        assert!(decode_record(&cut).is_err());
    }
}
