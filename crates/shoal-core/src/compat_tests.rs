//! Version compatibility of what goes on the wire (docs/upgrades.md): v0.1.0 reads what this
//! release writes, and this release reads (and relays intact) what a later release writes
//! with a field or a message kind this one does not know. Tests only; the mixed-version
//! cluster of real binaries is `tests/upgrade.rs`.

use crate::ext::{Ext, Field};
use crate::fields;
use crate::meta::{Health, MetaRecord, NodeMeta, Service};
use crate::meta_gossip::MetaBroadcasts;
use crate::sync::{MsgError, ShoalMsg};
use crate::wire::{ProtocolRange, PROTOCOL, PROTOCOL_V1};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// v0.1.0's record, frozen here as it was at e3fc227: what a v0.1.0 agent decodes.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct V1Record {
    name: String,
    addr: SocketAddr,
    generation: u64,
    version: u64,
    leaving: bool,
    meta: NodeMeta,
}

/// v0.1.0's `ShoalMsg::Push` (variant 1), as a v0.1.0 agent decodes it.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum V1Msg {
    Digest(u64, u32, Vec<(String, u64, u64)>, u8),
    Push { records: Vec<V1Record> },
}

fn v1(r: &MetaRecord) -> V1Record {
    V1Record {
        name: r.name.to_string(),
        addr: r.addr,
        generation: r.generation,
        version: r.version,
        leaving: r.leaving,
        meta: r.meta.clone(),
    }
}

fn record(name: &str, tags: usize, services: usize) -> MetaRecord {
    let mut meta = NodeMeta::default();
    for i in 0..tags {
        meta.tags.insert(format!("k{i}"), format!("v{i}"));
    }
    for i in 0..services {
        let name = format!("svc{i}");
        meta.services.insert(
            name.clone(),
            Service {
                name,
                port: 8000 + i as u16,
                tags: BTreeMap::new(),
                health: Some(Health::Passing),
                health_output: None,
            },
        );
    }
    let mut r = MetaRecord {
        name: Arc::from(name),
        addr: SocketAddr::from(([127, 0, 0, 1], 7946)),
        generation: 1_765_000_000_000,
        version: 3,
        leaving: false,
        meta,
        ext: Ext::default(),
    };
    fields::record::PROTOCOL.set(&mut r.ext, &PROTOCOL);
    r
}

/// What a later release's writer adds: fields with numbers this release does not know.
fn later_fields(r: &mut MetaRecord, extra: &[(u32, Vec<u8>)]) {
    for (n, v) in extra {
        r.ext.set_raw(*n, v.clone().into_boxed_slice());
    }
}

#[test]
fn v0_1_0_reads_what_this_release_writes() {
    let r = record("web-1", 3, 2);
    // A broadcast item (length-delimited by foca): v0.1.0 decodes it with `from_bytes`.
    let bytes = r.encode();
    assert!(bytes.len() > postcard::to_allocvec(&v1(&r)).unwrap().len());
    assert_eq!(postcard::from_bytes::<V1Record>(&bytes).unwrap(), v1(&r));
    // Its fixed part is byte for byte v0.1.0's encoding.
    let fixed = postcard::to_allocvec(&v1(&r)).unwrap();
    assert_eq!(&bytes[..fixed.len()], &fixed[..]);
    // A push of several records: v0.1.0 reads the records in a row and ignores the rest.
    let push = ShoalMsg::Push {
        records: vec![Arc::new(r.clone()), Arc::new(record("db-1", 1, 0))],
    };
    let got: V1Msg = postcard::from_bytes(&push.encode()).unwrap();
    assert_eq!(
        got,
        V1Msg::Push {
            records: vec![v1(&r), v1(&record("db-1", 1, 0))]
        }
    );
}

#[test]
fn this_release_reads_v0_1_0() {
    let r = record("old-1", 2, 1);
    let old = postcard::to_allocvec(&v1(&r)).unwrap();
    let back = MetaRecord::decode(&old).unwrap();
    assert!(back.ext.is_empty());
    assert_eq!(back.protocol(), PROTOCOL_V1);
    assert_eq!(back.meta, r.meta);
    let mut old_push = postcard::to_allocvec(&V1Msg::Push {
        records: vec![v1(&r)],
    })
    .unwrap();
    let ShoalMsg::Push { records } = ShoalMsg::decode(&old_push).unwrap() else {
        panic!("not a push");
    };
    assert_eq!(records[0].protocol(), PROTOCOL_V1);
    // Not extension fields after v0.1.0's part: refused (v0.1.0 never wrote any).
    old_push.push(0x05);
    assert!(ShoalMsg::decode(&old_push).is_err());
}

#[test]
fn a_bad_known_field_reads_as_absent_and_the_record_is_kept() {
    // Refusing the record would cost the rest of its broadcast packet's items, and a later
    // release may widen what a field allows: the value is ignored, the record kept.
    let mut r = record("n", 0, 0);
    fields::record::PROTOCOL.set(&mut r.ext, &ProtocolRange { min: 3, max: 2 });
    assert_eq!(
        MetaRecord::decode(&r.encode()).unwrap().protocol(),
        PROTOCOL_V1
    );
    r.ext
        .set_raw(fields::record::PROTOCOL.number, vec![0xff].into());
    assert_eq!(
        MetaRecord::decode(&r.encode()).unwrap().protocol(),
        PROTOCOL_V1
    );
}

#[test]
fn own_record_fields_fit_the_reserve() {
    // The worst case of this release's own fields: its protocol, the longest restart, its
    // member key and signature.
    let mut r = record("n", 0, 0);
    fields::record::PROTOCOL.set(&mut r.ext, &crate::wire::PROTOCOL);
    r.set_restart(Some(crate::restart::RestartIntent::new(
        crate::restart::MAX_GRACE,
    )));
    crate::member_key::MemberKeys::from_secret(&[1; crate::member_key::SECRET_LEN])
        .sign_record(&mut r);
    assert!(r.ext.encoded_len() <= crate::meta::EXT_RESERVE);
}

#[test]
fn a_message_kind_of_a_later_release_is_reported() {
    // Variant 10 (after `Coord`) with some body: a later release's kind.
    assert_eq!(ShoalMsg::decode(&[10, 1, 2, 3]), Err(MsgError::Later(10)));
    assert_eq!(ShoalMsg::decode(&[200, 1]), Err(MsgError::Later(200)));
    // The last kind this release knows is the last one it counts, and it decodes.
    let last = ShoalMsg::Coord(crate::coordinate::WireCoord::from_coord(
        &crate::coordinate::Coordinate::default(),
    ));
    let bytes = last.encode();
    assert_eq!(
        u32::from(bytes[0]) + 1,
        <ShoalMsg as crate::ext::Kinds>::KNOWN
    );
    assert_eq!(ShoalMsg::decode(&bytes), Ok(last));
}

fn handler() -> MetaBroadcasts {
    MetaBroadcasts {
        shared: crate::Shared::new(1),
        max_generation: u64::MAX,
        store: crate::meta_store::MetaStore::default(),
        own: Arc::from("me"),
        accusations: crate::lifeguard::Inbox::with_seed(crate::hash::HashSeed::of_node(1), 3),
        unknown: Default::default(),
        about_us: None,
    }
}

#[test]
fn a_broadcast_item_of_a_later_release_is_ignored_and_counted() {
    use foca::BroadcastHandler;
    let mut h = handler();
    let item = [0xf1, 1, 2, 3];
    let got = BroadcastHandler::<()>::receive_item(&mut h, &item, Some(&()));
    assert!(matches!(got, Ok(None)));
    assert_eq!(h.unknown, 1);
}

fn extra_fields() -> impl Strategy<Value = Vec<(u32, Vec<u8>)>> {
    // Numbers this release does not know (6 and up), values of any bytes.
    proptest::collection::btree_map(
        6u32..10_000,
        proptest::collection::vec(any::<u8>(), 0..40),
        0..5,
    )
    .prop_map(|m| m.into_iter().collect())
}

proptest! {
    /// A record of release N+1 (fields this release does not know, after the ones it knows)
    /// is read by this release, and relayed with every field intact: as a broadcast item, in
    /// a `Push`, and through the broadcast handler that stores it.
    #[test]
    fn a_later_record_is_read_and_relayed_intact(
        tags in 0usize..6,
        services in 0usize..4,
        extra in extra_fields(),
        also_in_push in proptest::collection::vec(0usize..3, 0..3),
    ) {
        let mut r = record("web-2", tags, services);
        later_fields(&mut r, &extra);
        let bytes = r.encode();
        let back = MetaRecord::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(back.protocol(), PROTOCOL);
        prop_assert_eq!(back.encode(), bytes.clone(), "relayed byte for byte");
        for (n, v) in &extra {
            prop_assert_eq!(back.ext.raw(*n), Some(&v[..]));
        }
        // In a push, between records without fields.
        let mut records: Vec<Arc<MetaRecord>> =
            also_in_push.iter().map(|i| Arc::new(record(&format!("o{i}"), *i, 0))).collect();
        records.iter_mut().for_each(|o| Arc::make_mut(o).ext = Ext::default());
        records.insert(records.len() / 2, Arc::new(r.clone()));
        let push = ShoalMsg::Push { records: records.clone() };
        prop_assert_eq!(ShoalMsg::decode(&push.encode()).unwrap(), push);
        // Through foca's broadcast handler: stored with its fields.
        use foca::BroadcastHandler;
        let mut h = handler();
        let got = BroadcastHandler::<()>::receive_item(&mut h, &bytes, Some(&()));
        prop_assert!(matches!(got, Ok(Some(_))));
        let stored = h.store.get("web-2").cloned().unwrap();
        prop_assert_eq!(stored.encode(), bytes);
    }

    /// A later release adds a field to a message: this release reads the message.
    #[test]
    fn a_later_message_field_is_skipped(extra in extra_fields()) {
        let msg = ShoalMsg::Want { names: vec![Arc::from("a"), Arc::from("b")] };
        let mut bytes = msg.encode();
        let mut ext = Ext::default();
        for (n, v) in &extra {
            ext.set_raw(*n, v.clone().into_boxed_slice());
        }
        ext.encode_into(&mut bytes);
        prop_assert_eq!(ShoalMsg::decode(&bytes).unwrap(), msg);
    }
}

/// The helper a later release uses to add a field, end to end: declare it, write it, read it
/// (absent from an older writer), and an older reader keeps it.
#[test]
fn adding_a_field_in_a_later_release() {
    // Release N+1 declares, in core::fields::record (the next free number there):
    const DRAINING: Field<bool> = Field::new(4, "draining");
    let mut r = record("n", 1, 0);
    DRAINING.set(&mut r.ext, &true);
    let bytes = r.encode();
    // Release N+1 reads it.
    let back = MetaRecord::decode(&bytes).unwrap();
    assert_eq!(DRAINING.get(&back.ext), Ok(Some(true)));
    // An older writer did not set it: the reader decides the default.
    let older = record("n", 1, 0);
    assert!(!DRAINING.get(&older.ext).unwrap().unwrap_or(false));
    // This release (which does not declare it) keeps it when it relays the record.
    assert_eq!(back.ext.raw(4), Some(&[1u8][..]));
    // v0.1.0 still reads the record.
    assert_eq!(postcard::from_bytes::<V1Record>(&bytes).unwrap(), v1(&r));
}

/// A v0.1.0 agent relays a record in a `Push` without its fields; the owner's copy (same
/// version, with them) then replaces it, and never the other way round.
#[test]
fn a_record_stripped_by_v0_1_0_is_replaced_by_the_owners_copy() {
    let full = record("new-1", 1, 1);
    let mut stripped = full.clone();
    stripped.ext = Ext::default();
    let mut store = crate::meta_store::MetaStore::default();
    assert!(store.offer(stripped.clone()));
    let fingerprint = store.fingerprint();
    assert!(store.wants("new-1", full.stamp(), true));
    assert!(store.offer(full.clone()));
    assert_eq!(store.get("new-1").unwrap().protocol(), PROTOCOL);
    assert_eq!(
        store.fingerprint(),
        fingerprint,
        "same version: same fingerprint"
    );
    assert!(!store.offer(stripped));
    assert!(!store.offer(full.clone()));
    // Through foca's broadcast handler too.
    use foca::BroadcastHandler;
    let mut h = handler();
    let mut old = full.clone();
    old.ext = Ext::default();
    h.store.offer(old);
    let got = BroadcastHandler::<()>::receive_item(&mut h, &full.encode(), Some(&()));
    assert!(matches!(got, Ok(Some(_))));
    assert_eq!(h.store.get("new-1").unwrap().protocol(), PROTOCOL);
}

fn web(port: u16) -> Service {
    Service {
        name: "web".into(),
        port,
        tags: BTreeMap::new(),
        health: None,
        health_output: None,
    }
}

/// What v0.1.0 does with a record it decoded: refuse it unless every services key is the
/// service's name (its `NodeMeta::validate`, frozen here).
fn v1_accepts(r: &V1Record) -> bool {
    r.meta.services.iter().all(|(k, s)| *k == s.name)
}

#[test]
fn several_instances_of_a_service_round_trip_and_v0_1_0_reads_the_first() {
    let mut r = record("n1", 1, 1);
    let mut meta = r.meta.clone();
    meta.services.insert("web-2".into(), web(8081));
    meta.services.insert("web-1".into(), web(8080));
    r.set_meta(meta.clone());
    let bytes = r.encode();
    // This release reads both instances, by id, and relays the same bytes.
    let back = MetaRecord::decode(&bytes).unwrap();
    assert_eq!(back.meta, meta);
    assert_eq!(back.encode(), bytes);
    // So does a Push, the anti-entropy path.
    let push = ShoalMsg::Push {
        records: vec![Arc::new(r.clone())],
    };
    let ShoalMsg::Push { records } = ShoalMsg::decode(&push.encode()).unwrap() else {
        panic!("not a push");
    };
    assert_eq!(records[0].meta, meta);
    // v0.1.0 reads one instance of web, the lowest id, keyed by name, and accepts it.
    let old: V1Record = postcard::from_bytes(&bytes).unwrap();
    assert!(v1_accepts(&old));
    assert_eq!(old.meta.services.len(), 2);
    assert_eq!(old.meta.services["web"].port, 8080);
    assert_eq!(old.meta.services["svc0"].port, 8000);
    // One instance per name with its name as id: byte for byte what v0.1.0 wrote.
    let single = record("n1", 1, 1);
    assert_eq!(
        single.encode()[..],
        postcard::to_allocvec(&v1(&single)).unwrap()[..]
            .iter()
            .chain(single.ext.to_bytes().iter())
            .copied()
            .collect::<Vec<u8>>()[..]
    );
    assert!(fields::record::INSTANCES
        .get(&single.ext)
        .unwrap()
        .is_none());
}

/// Field `record.instances` is validated once at decode; one that fails reads as absent (as
/// any known field out of range: never a refused record), so the record reads as v0.1.0 reads
/// it, one instance per service, and is relayed with its bytes intact. A fixed part whose key
/// is not its service's name is refused, as v0.1.0 refuses it.
#[test]
fn instances_are_validated_at_decode() {
    use crate::instances::Instances;
    use crate::meta::{MetaError, MAX_SERVICES};
    let base = || {
        let mut r = record("n1", 0, 0);
        let mut meta = NodeMeta::default();
        meta.services.insert("web-1".into(), web(8080));
        r.set_meta(meta);
        r
    };
    let with = |inst: Instances| {
        let mut r = base();
        fields::record::INSTANCES.set(&mut r.ext, &inst);
        r.encode()
    };
    // What the record reads as: (id, port) of each instance.
    let read = |bytes: &[u8]| -> Vec<(String, u16)> {
        let r = MetaRecord::decode(bytes).expect("never a refused record");
        assert_eq!(r.encode(), bytes, "relayed intact");
        r.meta
            .services
            .iter()
            .map(|(id, s)| (id.clone(), s.port))
            .collect()
    };
    let fixed_only = vec![("web".to_string(), 8080)];
    let ok = Instances {
        ids: vec![("web".into(), "web-1".into())],
        more: vec![("web-2".into(), web(8081))],
    };
    assert_eq!(
        read(&with(ok.clone())),
        vec![("web-1".to_string(), 8080), ("web-2".to_string(), 8081)]
    );
    // The same id twice (once as the first instance's id, once as another instance).
    let mut dup = ok.clone();
    dup.more = vec![("web-1".into(), web(8081))];
    assert_eq!(read(&with(dup)), fixed_only);
    let mut dup = ok.clone();
    dup.more = vec![("web-2".into(), web(8081)), ("web-2".into(), web(8082))];
    assert_eq!(read(&with(dup)), fixed_only);
    // An instance that sorts before the fixed part's (not the lowest id: not canonical).
    let mut low = ok.clone();
    low.more = vec![("web-0".into(), web(8081))];
    assert_eq!(read(&with(low)), fixed_only);
    // An instance of a service the fixed part does not carry.
    let mut orphan = ok.clone();
    let mut db = web(5432);
    db.name = "db".into();
    orphan.more = vec![("web-2".into(), db)];
    assert_eq!(read(&with(orphan)), fixed_only);
    // A bad id; a field that does not decode.
    let mut bad = ok.clone();
    bad.more = vec![("web 2".into(), web(8081))];
    assert_eq!(read(&with(bad)), fixed_only);
    let mut garbage = base();
    garbage.ext.set_raw(
        fields::record::INSTANCES.number,
        vec![7, 1].into_boxed_slice(),
    );
    assert_eq!(read(&garbage.encode()), fixed_only);
    // The fixed part's own rule (v0.1.0's): a key that is not the service's name is refused.
    let mut renamed = V1Record {
        meta: NodeMeta::default(),
        ..v1(&base())
    };
    renamed.meta.services.insert("web-1".into(), web(8080));
    assert!(matches!(
        MetaRecord::decode(&postcard::to_allocvec(&renamed).unwrap()),
        Err(MetaError::BadServiceName(_))
    ));
    // More instances than MAX_SERVICES in all: refused when set, the field absent at decode.
    let mut many = NodeMeta::default();
    for i in 0..=MAX_SERVICES {
        many.services
            .insert(format!("w{i:02}"), web(8000 + i as u16));
    }
    assert!(matches!(
        many.validate(),
        Err(MetaError::TooManyServices(n)) if n == MAX_SERVICES + 1
    ));
    let mut over = base();
    over.set_meta(many);
    assert_eq!(
        MetaRecord::decode(&over.encode())
            .unwrap()
            .meta
            .services
            .len(),
        1,
        "more than MAX_SERVICES instances: the field reads as absent"
    );
    // Extra instances count against the record's size limit.
    let mut big = NodeMeta::default();
    for i in 0..MAX_SERVICES {
        let mut s = web(8000 + i as u16);
        s.tags.insert("k".into(), "v".repeat(40));
        big.services.insert(format!("web-{i:02}"), s);
    }
    assert!(matches!(big.validate(), Err(MetaError::TooLarge(_))));
}
