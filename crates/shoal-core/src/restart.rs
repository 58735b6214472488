//! A restart is not a decommission: the restart intent a stopping node announces.
//!
//! An agent that stops to restart (SIGTERM by default) puts "expect me back within `grace`"
//! in its record and spreads that version before it stops. Peers keep serving it (status
//! `restarting`) until it is back (a new generation) or the grace has run out (then it is a
//! failure like any other: `Guard::restart_expired`).
//!
//! Wire: the intent is the record's extension field `fields::record::RESTART` (its grace in
//! milliseconds), which v0.1.0 skips (docs/upgrades.md); in a `Push` it travels with the
//! record's other fields. Owns the intent's type and its bounds; must not decide what is
//! served (the guard does) nor keep state.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Shortest grace an owner may announce (and a reader accepts).
pub const MIN_GRACE: Duration = Duration::from_secs(1);
/// Longest grace an owner may announce (and a reader accepts): a forged "back in a year"
/// cannot keep a dead member served.
pub const MAX_GRACE: Duration = Duration::from_secs(3600);

/// "I am restarting: expect me back within `grace_ms`."
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RestartIntent {
    /// How long peers keep serving it (ms).
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

    pub(crate) fn grace(self) -> Duration {
        Duration::from_millis(u64::from(self.grace_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ext::Ext;
    use crate::meta::{MetaRecord, NodeMeta};
    use crate::sync::ShoalMsg;
    use std::sync::Arc;

    fn rec(restart: Option<RestartIntent>) -> MetaRecord {
        let mut meta = NodeMeta::default();
        meta.tags.insert("role".into(), "db".into());
        let mut r = MetaRecord {
            name: Arc::from("r1"),
            addr: "127.0.0.1:7946".parse().unwrap(),
            generation: 7,
            version: 3,
            leaving: false,
            meta,
            ext: Ext::default(),
        };
        r.set_restart(restart);
        r
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
        let bytes = r.encode();
        let old: OldRecord = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(old.meta, r.meta);
        assert_eq!((old.generation, old.version), (7, 3));
        let back = MetaRecord::decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.restart(), Some(RestartIntent { grace_ms: 60_000 }));
        assert_eq!(rec(None).restart(), None);
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
        let back = ShoalMsg::decode(&bytes).unwrap();
        assert_eq!(back, msg);
        match back {
            ShoalMsg::Push { records } => {
                assert_eq!(records[0].restart(), None);
                assert_eq!(
                    records[1].restart(),
                    Some(RestartIntent { grace_ms: 30_000 })
                );
            }
            _ => panic!("not a push"),
        }
    }

    #[test]
    fn a_grace_out_of_bounds_is_clamped_never_a_refused_record() {
        // A later release may widen the bounds: the record stays readable (a refused
        // broadcast item would cost the rest of its packet's items), the grace is clamped.
        let mut r = rec(None);
        crate::fields::record::RESTART.set(&mut r.ext, &0u32);
        let back = MetaRecord::decode(&r.encode()).unwrap();
        assert_eq!(back.restart().map(RestartIntent::grace), Some(MIN_GRACE));
        crate::fields::record::RESTART.set(&mut r.ext, &u32::MAX);
        let back = MetaRecord::decode(&r.encode()).unwrap();
        assert_eq!(back.restart().map(RestartIntent::grace), Some(MAX_GRACE));
        crate::fields::record::RESTART.set(&mut r.ext, &5_000u32);
        let back = MetaRecord::decode(&r.encode()).unwrap();
        assert_eq!(back.restart(), Some(RestartIntent { grace_ms: 5_000 }));
        // A value of the wrong shape reads as absent.
        r.ext.set_raw(
            crate::fields::record::RESTART.number,
            vec![0xff; 6].into_boxed_slice(),
        );
        let back = MetaRecord::decode(&r.encode()).unwrap();
        assert_eq!(back.restart(), None);
    }
}
