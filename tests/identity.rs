//! Member keys, end to end with real agents on loopback: a key holder cannot forge another
//! member's leave or restart intent (the finding of issue 22: a pushed record `{leaving:
//! true, generation: now + 50 min}` for a live member had every agent serve it `left`), the
//! refusals are counted, and what an agent learned survives its restart (its own key and
//! the keys it bound); nor can it move a bound member's address by announcing its name.

mod common;

use common::{Cluster, Events};
use shoal::agent::datadir::process_key;
use shoal_core::ShoalMsg;
use shoal_core::{write_header, DatagramKind as Kind};
use shoal_core::{Key, Keyring};
use shoal_core::{MemberKeys, SECRET_LEN};
use shoal_core::{MetaRecord, NodeId, ServedStatus, Time};
use shoal_core::{RestartIntent, MAX_GRACE};
use shoal_core::{Trust, TrustConfig};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A member of the cluster gone rogue: it holds the cluster key and its own member key, and
/// pushes records it wrote for another member.
struct KeyHolder {
    trust: Trust,
    sock: UdpSocket,
    keys: MemberKeys,
}

impl KeyHolder {
    fn new() -> KeyHolder {
        let key = Key::parse(&process_key()).unwrap();
        let mut trust = Trust::new(
            TrustConfig {
                keyring: Some(Keyring::new(key)),
                ..TrustConfig::default()
            },
            0x5151_2222,
            shoal_core::HashSeed::of_node(0x5151_2222),
        );
        trust.set_wall_clock(Time::ZERO, unix_ms());
        KeyHolder {
            trust,
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            keys: MemberKeys::from_secret(&[0x77; SECRET_LEN]),
        }
    }

    fn push(&mut self, to: SocketAddr, rec: &MetaRecord) {
        let msg = ShoalMsg::Push {
            records: vec![Arc::new(rec.clone())],
        };
        self.send(to, Kind::Shoal, &msg.encode());
    }

    fn send(&mut self, to: SocketAddr, kind: Kind, body: &[u8]) {
        let mut plain = Vec::new();
        write_header(&mut plain, "", kind);
        plain.extend_from_slice(body);
        let d = self.trust.seal(Time::ZERO, to, plain, 0);
        self.sock.send_to(&d, to).unwrap();
    }

    /// A SWIM announce to `to` claiming identity `claim`.
    fn announce_as(&mut self, to: SocketAddr, claim: &NodeId) {
        let header = foca::Header {
            src: claim.clone(),
            src_incarnation: 0,
            dst: NodeId::placeholder(to),
            message: foca::Message::Announce,
        };
        self.send(to, Kind::Swim, &postcard::to_allocvec(&header).unwrap());
    }

    /// `victim`'s record rewritten: leaving, or restarting for an hour, with a generation 50
    /// minutes ahead; unsigned, or signed with this key holder's own key.
    fn forgeries(&self, victim: &MetaRecord) -> Vec<MetaRecord> {
        let mut out = Vec::new();
        for restart in [false, true] {
            for sign in [false, true] {
                let mut r = victim.clone();
                r.generation = unix_ms() + 50 * 60 * 1000;
                r.version = 1;
                r.ext.remove(shoal_core::record_fields::SIGNATURE.number);
                r.ext.remove(shoal_core::record_fields::MEMBER_KEY.number);
                if restart {
                    r.set_restart(Some(RestartIntent::new(MAX_GRACE)));
                } else {
                    r.leaving = true;
                }
                if sign {
                    self.keys.sign_record(&mut r);
                }
                out.push(r);
            }
        }
        out
    }
}

/// A formed cluster of 3 where every agent has bound n1's key (its first signed record)
/// before the rogue speaks.
async fn n1_bound_everywhere() -> Cluster {
    let c = Cluster::start(3).await;
    c.converge(Duration::from_secs(10)).await;
    common::wait_until(Duration::from_secs(10), "n1's key bound everywhere", || {
        [0, 2]
            .iter()
            .all(|&i| c.shared[i].lock().bound_key("n1").is_some())
    })
    .await;
    c
}

#[tokio::test]
async fn a_key_holder_cannot_forge_another_members_leave() {
    let mut c = n1_bound_everywhere().await;
    let victim = c.shared[1].lock().own_record().clone();
    let mut ev = Events::subscribe(&c, &[0, 2]);
    let mut rogue = KeyHolder::new();
    let forged = rogue.forgeries(&victim);
    for r in &forged {
        for i in [0, 2] {
            rogue.push(c.addrs[i], r);
        }
    }
    // Over the whole interval, on both observers' watch streams: n1 stays alive.
    ev.watch_for(Duration::from_secs(3)).await;
    let bad = ev.not_alive("n1");
    assert!(bad.is_empty(), "n1 was served {bad:?}");
    for i in [0, 2] {
        let n = c.shared[i].lock();
        assert_eq!(n.member("n1").map(|m| m.status), Some(ServedStatus::Alive));
        let st = n.stats();
        assert_eq!(st.dropped_unsigned_record, 2, "n{i}: {st:?}");
        assert_eq!(st.dropped_wrong_member_key, 2, "n{i}: {st:?}");
    }
    // n0 restarts: it keeps its own key, and the key it bound for n1 (the forgeries are
    // still refused, not bound on first use anew).
    let own_key = c.shared[0].lock().member_key();
    let bound = c.shared[0].lock().bound_key("n1");
    c.kill(0).await;
    c.restart(0).await;
    assert_eq!(c.shared[0].lock().member_key(), own_key);
    assert_eq!(c.shared[0].lock().bound_key("n1"), bound);
    ev.add(0, &c.shared[0]);
    for r in &forged {
        rogue.push(c.addrs[0], r);
    }
    common::wait_until(
        Duration::from_secs(5),
        "the forgeries refused again",
        || {
            let n = c.shared[0].lock();
            let st = n.stats();
            st.dropped_unsigned_record + st.dropped_wrong_member_key == 4
        },
    )
    .await;
    ev.watch_for(Duration::from_secs(1)).await;
    assert!(
        ev.of("n1")
            .iter()
            .all(|(_, s)| *s != ServedStatus::Left && *s != ServedStatus::Restarting),
        "n1 was served {:?}",
        ev.of("n1")
    );
    c.stop().await;
}

#[tokio::test]
async fn a_key_holder_cannot_move_a_bound_members_address() {
    let c = n1_bound_everywhere().await;
    let victim = c.shared[1].lock().own_record().clone();
    let mut ev = Events::subscribe(&c, &[0, 2]);
    let mut rogue = KeyHolder::new();
    let at = rogue.sock.local_addr().unwrap();
    // n1's name at the rogue's own address, a newer generation: announced (SWIM) and
    // introduced (Intro) to both observers.
    let claim = NodeId::new("n1", at, victim.generation + 1_000);
    let intro = ShoalMsg::Intro {
        members: vec![shoal_core::IntroEntry {
            name: Arc::from("n1"),
            addr: at,
            generation: victim.generation + 1_000,
        }],
    };
    for i in [0, 2] {
        rogue.announce_as(c.addrs[i], &claim);
        rogue.send(c.addrs[i], Kind::Shoal, &intro.encode());
    }
    // Over the whole interval, on both watch streams: n1 is alive at its own address.
    ev.watch_for(Duration::from_secs(3)).await;
    let moved: Vec<_> = ev
        .addrs
        .iter()
        .filter(|(_, m, a)| m == "n1" && *a != victim.addr)
        .collect();
    assert!(moved.is_empty(), "n1 served at {moved:?}");
    let bad = ev.not_alive("n1");
    assert!(bad.is_empty(), "n1 was served {bad:?}");
    for i in [0, 2] {
        let n = c.shared[i].lock();
        let m = n.member("n1").unwrap();
        assert_eq!((m.addr, m.status), (victim.addr, ServedStatus::Alive));
    }
    assert!(c.shared[0].lock().stats().dropped_unproven_identity >= 1);
    c.stop().await;
}
