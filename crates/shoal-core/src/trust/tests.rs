//! Unit tests of `core::trust` (a child module of `trust`): seal and open round trips and
//! overhead, padding, the refusals (wrong key, plaintext, stale) and a peer on an old key.

use super::{Plaintext, Trust, TrustConfig, TrustDrop};
use crate::hash::HashSeed;
use crate::keyring::{Key, Keyring, KEY_LEN};
use crate::time::Time;
use crate::wire::{self, Kind, FLAG_PADDED, SEAL_OVERHEAD};
use std::net::SocketAddr;

fn ring(b: u8) -> Keyring {
    Keyring::new(Key::from_bytes([b; KEY_LEN]))
}

fn cfg(ring: Option<Keyring>) -> TrustConfig {
    TrustConfig {
        keyring: ring,
        ..TrustConfig::default()
    }
}

/// A trust layer whose wall clock reads 1_700_000_000_000 at `Time::ZERO`.
fn at_wall(cfg: TrustConfig, session: u64, hashes: HashSeed) -> Trust {
    let mut t = Trust::new(cfg, session, hashes);
    t.set_wall_clock(Time::ZERO, 1_700_000_000_000);
    t
}

fn plain(label: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    wire::write_header(&mut v, label, Kind::Shoal);
    v.extend_from_slice(body);
    v
}

const A: &str = "127.0.0.1:1";

#[test]
fn seal_open_roundtrip_and_overhead() {
    let mut tx = at_wall(cfg(Some(ring(1))), 11, HashSeed::default());
    let mut rx = at_wall(cfg(Some(ring(1))), 12, HashSeed::default());
    let p = plain("prod", b"hello");
    let sealed = tx.seal(Time(5), A.parse().unwrap(), p.clone(), 0);
    assert_eq!(sealed.len(), p.len() + SEAL_OVERHEAD);
    assert!(!sealed.windows(5).any(|w| w == b"hello"));
    let (kind, body) = rx
        .open(Time(5), A.parse().unwrap(), &sealed, "prod")
        .unwrap();
    assert_eq!(kind, Kind::Shoal);
    assert_eq!(&*body, b"hello");
    // Replayed: refused.
    assert_eq!(
        rx.open(Time(6), A.parse().unwrap(), &sealed, "prod"),
        Err(TrustDrop::Replay)
    );
    // Any bit flipped anywhere: refused (header bits as auth, wire or label errors).
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x40;
        let mut fresh = at_wall(cfg(Some(ring(1))), 13, HashSeed::default());
        assert!(
            fresh
                .open(Time(5), A.parse().unwrap(), &bad, "prod")
                .is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn padding_roundtrips_sealed_and_plain() {
    let a: SocketAddr = A.parse().unwrap();
    for ring in [Some(ring(1)), None] {
        let mut tx = at_wall(cfg(ring.clone()), 21, HashSeed::default());
        let mut rx = at_wall(cfg(ring), 22, HashSeed::default());
        let d = tx.seal(Time(0), a, plain("l", b"short"), 700);
        assert_eq!(d.len(), 700);
        assert_eq!(&*rx.open(Time(0), a, &d, "l").unwrap().1, b"short");
        // Already long enough: no padding.
        let long = vec![7u8; 900];
        let d = tx.seal(Time(0), a, plain("l", &long), 700);
        assert_eq!(&*rx.open(Time(0), a, &d, "l").unwrap().1, &long[..]);
    }
    // A pad length past the body is refused, not a panic.
    let mut bad = plain("", b"\x00\x09");
    bad[3] |= FLAG_PADDED;
    let mut rx = at_wall(cfg(None), 23, HashSeed::default());
    assert!(rx.open(Time(0), A.parse().unwrap(), &bad, "").is_err());
}

#[test]
fn wrong_key_plaintext_and_stale_refused() {
    let mut tx = at_wall(cfg(Some(ring(1))), 11, HashSeed::default());
    let mut other = at_wall(cfg(Some(ring(2))), 12, HashSeed::default());
    let mut insecure = at_wall(cfg(None), 13, HashSeed::default());
    let from = A.parse().unwrap();
    let sealed = tx.seal(Time(0), from, plain("", b"x"), 0);
    assert_eq!(other.open(Time(0), from, &sealed, ""), Err(TrustDrop::Auth));
    assert_eq!(
        insecure.open(Time(0), from, &sealed, ""),
        Err(TrustDrop::Auth)
    );
    let p = plain("", b"x");
    assert_eq!(other.open(Time(0), from, &p, ""), Err(TrustDrop::Plaintext));
    assert!(insecure.open(Time(0), from, &p, "").is_ok());
    // Accepted during a transition, except keyring messages.
    let mut accept = at_wall(
        TrustConfig {
            plaintext: Plaintext::Accept,
            ..cfg(Some(ring(2)))
        },
        14,
        HashSeed::default(),
    );
    assert!(accept.open(Time(0), from, &p, "").is_ok());
    let mut keys = Vec::new();
    wire::write_header(&mut keys, "", Kind::Keys);
    assert_eq!(
        accept.open(Time(0), from, &keys, ""),
        Err(TrustDrop::Plaintext)
    );
    // Operator commands follow the setting: accepted in plaintext during a transition,
    // refused by default; sealed except while sending plaintext. Keyring changes are
    // sealed even then.
    let mut op = Vec::new();
    wire::write_header(&mut op, "", Kind::Operator);
    op.push(0);
    assert!(accept.open(Time(0), from, &op, "").is_ok());
    assert_eq!(
        other.open(Time(0), from, &op, ""),
        Err(TrustDrop::Plaintext)
    );
    assert!(accept.seals(&op));
    let send = at_wall(
        TrustConfig {
            plaintext: Plaintext::Send,
            ..cfg(Some(ring(2)))
        },
        16,
        HashSeed::default(),
    );
    assert!(!send.seals(&op));
    assert!(!send.seals(&p));
    assert!(send.seals(&keys));
    assert!(!insecure.seals(&keys));
    // Two minutes later, a capture of gossip is accepted by a receiver that never heard
    // its sender (no clock agreement is needed), and counted as skewed; an operator
    // command is refused as stale.
    let mut rx = at_wall(cfg(Some(ring(1))), 15, HashSeed::default());
    let late = Time(120_000);
    assert!(rx.open(late, from, &sealed, "").is_ok());
    assert_eq!(rx.stats(late).skewed, 1);
    assert_eq!(rx.take_last_skewed(), Some((from, -120_000)));
    assert_eq!(rx.skews(late), vec![(from, -120_000)]);
    let mut op = Vec::new();
    wire::write_header(&mut op, "", Kind::Operator);
    op.push(0);
    let cmd = tx.seal(Time(0), from, op, 0);
    assert_eq!(rx.open(late, from, &cmd, ""), Err(TrustDrop::Stale));
    assert!(rx.open(Time(30_000), from, &cmd, "").is_ok());
}

#[test]
fn old_key_peer_answered_with_its_key() {
    let k1 = Key::from_bytes([1; KEY_LEN]);
    let k2 = Key::from_bytes([2; KEY_LEN]);
    let mut old = at_wall(cfg(Some(Keyring::new(k1.clone()))), 1, HashSeed::default());
    let mut new = at_wall(cfg(Some(Keyring::new(k2.clone()))), 2, HashSeed::default());
    new.install(k1.clone()).unwrap();
    assert!(new.take_keyring_change().is_some());
    let a = "127.0.0.1:1".parse().unwrap();
    let b = "127.0.0.1:2".parse().unwrap();
    let d = old.seal(Time(0), b, plain("", b"hi"), 0);
    assert!(new.open(Time(0), a, &d, "").is_ok());
    let back = new.seal(Time(0), a, plain("", b"yo"), 0);
    assert_eq!(&*old.open(Time(0), b, &back, "").unwrap().1, b"yo");
    // Once the old key is removed, the peer gets the primary (and cannot read it).
    new.change_keyring(|r| r.remove(&k1)).unwrap();
    let back = new.seal(Time(0), a, plain("", b"yo"), 0);
    assert_eq!(old.open(Time(0), b, &back, ""), Err(TrustDrop::Auth));
}
