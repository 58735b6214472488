//! Lifeguard (arXiv 1707.00788; memberlist's `awareness.go` and `suspicion.go`) for shoal.
//!
//! The mechanisms run inside the vendored foca (`vendor/foca/src/lifeguard.rs`: local health
//! stretching the probe timers, suspicion timeouts that shrink with confirmations, the buddy
//! system). This module owns what foca cannot: the timeout table (floats, from `Timings`),
//! and the *accusations* that carry independent confirmations across the cluster, since
//! foca's member updates do not say who suspects whom. An accusation ("my own probe of
//! `subject`, generation `generation`, at `incarnation` failed, and my own local health was
//! `health` then", signed by nothing but its `accuser` name, like every other gossip) travels
//! as a foca custom broadcast beside the metadata records, marked by a leading zero byte that
//! no record starts with (a record starts with its name's length). The generation keeps an
//! accusation of a member's former life (before it renewed itself) from counting against the
//! new one; the health lets a receiver count only accusers that were healthy themselves: a
//! member that is itself in a loss burst fails its probes of healthy peers, and its
//! accusation is no independent evidence (it is still passed on).
//!
//! Received accusations are validated (names, size), deduplicated in a bounded table (so
//! each is re-gossiped once) and queued in a bounded inbox for the node, which hands them
//! to foca. Only those that can still change a suspicion somewhere are passed on: from a
//! healthy accuser, and among the first `enough` healthy accusers this node heard of for
//! that suspicion (the most this node's timeout table counts, the same on every member that
//! runs the same timings); past that, every member has
//! its confirmations from the ones already going round, and more would only cost traffic,
//! which then grew with the cluster (every member that probed a dead one, and every member
//! whose timer ended before the down notice reached it, accused, and each accusation went
//! to everyone). A forged accusation can at most shorten one suspicion that really exists to the
//! suspicion timeout; it cannot create one. Forged accusers can also fill a suspicion's
//! `enough` and so keep real accusations from being passed on, slowing its detection to
//! the suspicion's unconfirmed timeout at worst; with `--encrypt` only key holders can send
//! any. Must not decide membership: foca does.

use crate::hash::{FixedHashMap, HashSeed};
use crate::profile::Timings;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// First byte of an accusation item (a metadata record never starts with it).
pub(crate) const TAG: u8 = 0;
/// Format version of the item, after the tag (1: no generation nor health; still read).
pub(crate) const VERSION: u8 = 2;
/// An accuser whose local health score was above this when it accused is not counted as a
/// confirmation (its own probes fail because it is the one in trouble). The failed probe
/// behind the accusation has raised the score by one already: 1 is "healthy until then".
/// (0 counted no accuser at all: bursty-50's crashes were seen after 42-50 s.)
pub(crate) const MAX_ACCUSER_HEALTH: u8 = 1;
/// About how many members probe a suspect from their next probe on once they hear of the
/// suspicion, beside their round (see `foca::Lifeguard::prompt_probers`).
pub(crate) const PROMPT_PROBERS: usize = 8;
/// A down notice is spread this many times as often as other updates (see
/// `foca::Lifeguard::down_transmissions`): a member in a loss burst while it went round
/// otherwise kept the dead member until its own round of probes reached it (bursty-50: crash
/// seen up to 38 s late; with 3, at most 21 s).
pub(crate) const DOWN_TRANSMISSIONS: u8 = 3;
/// Accusations waiting for the node at most (more are dropped and counted).
pub(crate) const MAX_INBOX: usize = 256;
/// Distinct (subject, accuser) pairs remembered for deduplication (and suspicions whose
/// healthy accusers are counted).
pub(crate) const MAX_SEEN: usize = 4096;
/// Largest accusation item: tag, version, two names (64 + 1 bytes each), incarnation,
/// generation, health.
pub(crate) const MAX_ITEM: usize = 2 + 2 * 65 + 3 + 10 + 2;

/// Lifeguard's settings for foca from the timings (`None` when turned off, `Timings::lifeguard`).
pub(crate) fn settings_for(t: &Timings) -> Option<foca::Lifeguard> {
    t.lifeguard.then(|| settings(t))
}

/// foca's Lifeguard settings from the timings: memberlist's suspicion timeouts (`k =
/// suspicion_mult - 2` expected confirmations; from `suspicion_max_mult` times the timeout
/// down to it, log-scaled), optionally continued below it when many more probers agree.
pub(crate) fn settings(t: &Timings) -> foca::Lifeguard {
    let k = (t.suspicion_mult - 2.0).max(0.0).floor() as usize;
    foca::Lifeguard {
        max_health: t.lhm_max,
        suspicion_permille: permille_table(
            k,
            t.suspicion_max_mult,
            t.suspicion_fast_confirmations,
            t.suspicion_floor,
        ),
        confirmations: k,
        prompt_probers: PROMPT_PROBERS,
        down_transmissions: DOWN_TRANSMISSIONS,
    }
}

/// Suspicion timeout in permille of the minimum, per number of independent confirmations
/// beyond the first accuser. Up to `k`: memberlist's `remainingSuspicionTime`,
/// `max - ln(n + 1) / ln(k + 1) x (max - min)` (floored at the minimum); with `fast > k`, it
/// goes on shrinking the same way from the minimum at `k` to `floor x min` at `fast`.
pub(crate) fn permille_table(k: usize, max_mult: f64, fast: usize, floor: f64) -> Vec<u32> {
    let max = max_mult.max(1.0);
    let mut out = Vec::new();
    if k == 0 {
        out.push(1000);
    } else {
        for n in 0..=k {
            let frac = ((n + 1) as f64).ln() / ((k + 1) as f64).ln();
            let raw = (max - frac * (max - 1.0)).max(1.0);
            out.push((raw * 1000.0).floor() as u32);
        }
    }
    if fast > k && floor < 1.0 {
        let span = (fast - k + 1) as f64;
        for n in (k + 1)..=fast {
            let frac = ((n - k + 1) as f64).ln() / span.ln();
            let raw = 1.0 - frac * (1.0 - floor);
            out.push((raw * 1000.0).floor() as u32);
        }
    }
    out
}

/// One accusation: `accuser`'s own probe of `subject` (its `generation`) at `incarnation`
/// failed, while the accuser's own local health score was `health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Accusation {
    pub subject: String,
    pub incarnation: u16,
    pub accuser: String,
    /// The subject's generation; `None` from a version-1 accuser (not checked then).
    pub generation: Option<u64>,
    pub health: u8,
}

/// Version 1 on the wire (no generation nor health).
#[derive(Deserialize)]
struct AccusationV1 {
    subject: String,
    incarnation: u16,
    accuser: String,
}

impl Accusation {
    /// Whether it counts as an independent confirmation.
    #[allow(clippy::wrong_self_convention)] // reads "is from a healthy accuser", not a constructor
    pub(crate) fn from_healthy_accuser(&self) -> bool {
        self.health <= MAX_ACCUSER_HEALTH
    }

    /// Orders accusations of one (subject, accuser) pair: newer generation, then incarnation.
    fn age(&self) -> (u64, u16) {
        (self.generation.unwrap_or(0), self.incarnation)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AccusationError {
    #[error("accusation too large ({0} bytes)")]
    TooLarge(usize),
    #[error("accusation of an unknown format")]
    Format,
    #[error("accusation does not decode")]
    Decode,
    #[error("accusation names an invalid node")]
    BadName,
}

impl Accusation {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![TAG, VERSION];
        // Names are validated: encoding cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Result<Accusation, AccusationError> {
        if data.len() > MAX_ITEM {
            return Err(AccusationError::TooLarge(data.len()));
        }
        let a = match data {
            [TAG, VERSION, body @ ..] => {
                postcard::from_bytes::<Accusation>(body).map_err(|_| AccusationError::Decode)?
            }
            [TAG, 1, body @ ..] => {
                let v1: AccusationV1 =
                    postcard::from_bytes(body).map_err(|_| AccusationError::Decode)?;
                Accusation {
                    subject: v1.subject,
                    incarnation: v1.incarnation,
                    accuser: v1.accuser,
                    generation: None,
                    health: 0,
                }
            }
            _ => return Err(AccusationError::Format),
        };
        let ok = |n: &str| crate::identity::validate_name(n).is_ok();
        if !ok(&a.subject) || !ok(&a.accuser) || a.subject == a.accuser {
            return Err(AccusationError::BadName);
        }
        Ok(a)
    }
}

/// Accusations received through foca, waiting for the node: a field of foca's broadcast
/// handler (`meta_gossip::MetaBroadcasts`), which the node reaches through
/// `Foca::broadcast_handler_mut`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Inbox {
    queue: VecDeque<Accusation>,
    /// Deduplication by (subject, accuser): a table a datagram grows (bounded by
    /// `MAX_SEEN`), seeded by the node (`HashSeed`).
    seen: FixedHashMap<(String, String), (u64, u16)>,
    /// Healthy accusers heard of per suspicion (a subject at one generation and
    /// incarnation), bounded by `MAX_SEEN` as `seen` is.
    heard: FixedHashMap<(String, (u64, u16)), usize>,
    /// Healthy accusers of one suspicion passed on at most (0: no limit).
    enough: usize,
    pub dropped: u64,
}

impl Inbox {
    /// An empty inbox whose tables take the node's hash seed, passing on the first `enough`
    /// healthy accusers of each suspicion (`foca::Lifeguard::suspicion_permille`'s length:
    /// the most accusers a timeout counts).
    pub(crate) fn with_seed(hashes: HashSeed, enough: usize) -> Inbox {
        Inbox {
            queue: VecDeque::new(),
            seen: hashes.map(),
            heard: hashes.map(),
            enough,
            dropped: 0,
        }
    }
    /// Takes a received accusation; whether foca passes it on: it is new, and still news to
    /// others (`worth_passing_on`). One that is new but not passed on still goes to the node.
    pub(crate) fn offer(&mut self, a: Accusation) -> bool {
        if !self.note_seen(&a) {
            return false;
        }
        let pass_on = self.worth_passing_on(&a);
        if self.queue.len() >= MAX_INBOX {
            self.dropped += 1;
            return pass_on;
        }
        self.queue.push_back(a);
        pass_on
    }

    /// Marks our own accusation as seen (so that its echo is not taken as news); whether it
    /// is worth sending (`worth_passing_on`: foca counts it locally either way).
    pub(crate) fn own(&mut self, a: &Accusation) -> bool {
        // A repeat (our probe of a suspect we already accuse failed again) is no news.
        if !self.note_seen(a) {
            return false;
        }
        self.worth_passing_on(a)
    }

    /// Remembers `a`'s (subject, accuser) at its age; false if that age or a newer one was
    /// seen already.
    fn note_seen(&mut self, a: &Accusation) -> bool {
        let key = (a.subject.clone(), a.accuser.clone());
        if self.seen.get(&key).is_some_and(|age| *age >= a.age()) {
            return false;
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        self.seen.insert(key, a.age());
        true
    }

    /// Whether a new accusation can still change a suspicion somewhere: it is from a healthy
    /// accuser (no one counts the others) and among the first `enough` healthy ones we
    /// heard of for its suspicion.
    fn worth_passing_on(&mut self, a: &Accusation) -> bool {
        if !a.from_healthy_accuser() {
            return false;
        }
        if self.heard.len() >= MAX_SEEN {
            self.heard.clear();
        }
        let n = self.heard.entry((a.subject.clone(), a.age())).or_insert(0);
        *n += 1;
        self.enough == 0 || *n <= self.enough
    }

    pub(crate) fn drain(&mut self) -> Vec<Accusation> {
        self.queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberlist_timeouts() {
        // lan: suspicion_mult 4 gives k = 2; 6x, then ln2/ln3 of the way, then 1x.
        let t = permille_table(2, 6.0, 0, 1.0);
        assert_eq!(t, vec![6000, 2845, 1000]);
        // k = 4 (suspicion_mult 6, wan): strictly decreasing down to the minimum.
        let t = permille_table(4, 6.0, 0, 1.0);
        assert_eq!(t.len(), 5);
        assert!(t.windows(2).all(|w| w[0] > w[1]), "{t:?}");
        assert_eq!((t[0], t[4]), (6000, 1000));
        // No confirmations expected: the minimum.
        assert_eq!(permille_table(0, 6.0, 0, 1.0), vec![1000]);
    }

    #[test]
    fn below_the_floor_only_with_many_confirmations() {
        let t = permille_table(2, 6.0, 6, 0.5);
        assert_eq!(&t[..3], &[6000, 2845, 1000]);
        assert_eq!(t.len(), 7);
        assert_eq!(t[6], 500);
        assert!(t.windows(2).all(|w| w[0] > w[1]), "{t:?}");
        // A floor of 1 adds nothing.
        assert_eq!(permille_table(2, 6.0, 6, 1.0).len(), 3);
    }

    #[test]
    fn settings_follow_the_profile() {
        let mut t = crate::Profile::Lan.timings();
        assert!(settings_for(&t).is_some(), "on by default");
        let s = settings(&t);
        assert_eq!(s.confirmations, 2);
        assert_eq!(s.max_health, 8);
        assert_eq!(s.prompt_probers, PROMPT_PROBERS);
        assert_eq!(s.down_transmissions, DOWN_TRANSMISSIONS);
        // 6x, memberlist's log scale down to 1x at k = 2, then down to 0.5x at 5.
        assert_eq!(&s.suspicion_permille[..3], &[6000, 2845, 1000]);
        assert_eq!(s.suspicion_permille.len(), 6);
        assert_eq!(s.suspicion_permille[5], 500);
        t.lifeguard = false;
        assert!(settings_for(&t).is_none(), "the way back");
        t.suspicion_fast_confirmations = 0;
        assert_eq!(settings(&t).suspicion_permille, vec![6000, 2845, 1000]);
    }

    #[test]
    fn only_healthy_accusers_count() {
        let a = |health| Accusation {
            subject: "n1".into(),
            incarnation: 0,
            accuser: "n2".into(),
            generation: Some(5),
            health,
        };
        // The accuser's own failed probe raised its score to 1: still healthy.
        assert!(a(0).from_healthy_accuser());
        assert!(a(1).from_healthy_accuser());
        assert!(!a(2).from_healthy_accuser());
        assert!(!a(8).from_healthy_accuser());
    }

    #[test]
    fn accusations_round_trip_and_bad_ones_are_refused() {
        let a = Accusation {
            subject: "n1".into(),
            incarnation: 3,
            accuser: "n2".into(),
            generation: Some(1_700_000_000_000),
            health: 2,
        };
        let b = a.encode();
        assert_eq!(b[0], TAG);
        assert_eq!(Accusation::decode(&b), Ok(a.clone()));
        assert_eq!(
            Accusation::decode(&[TAG, 9, 1]),
            Err(AccusationError::Format)
        );
        assert_eq!(
            Accusation::decode(&[TAG, VERSION, 200]),
            Err(AccusationError::Decode)
        );
        let bad = Accusation {
            subject: "bad name!".into(),
            ..a.clone()
        };
        assert_eq!(
            Accusation::decode(&bad.encode()),
            Err(AccusationError::BadName)
        );
        let same = Accusation {
            accuser: "n1".into(),
            ..a.clone()
        };
        assert_eq!(
            Accusation::decode(&same.encode()),
            Err(AccusationError::BadName)
        );
        // Version 1 (no generation nor health) is still read.
        #[derive(serde::Serialize)]
        struct V1<'a>(&'a str, u16, &'a str);
        let mut v1 = vec![TAG, 1];
        v1.extend(postcard::to_allocvec(&V1("n1", 3, "n2")).unwrap());
        let old = Accusation::decode(&v1).unwrap();
        assert_eq!((old.generation, old.health), (None, 0));
        assert_eq!((old.subject.as_str(), old.incarnation), ("n1", 3));
        assert!(matches!(
            Accusation::decode(&[0u8; MAX_ITEM + 1]),
            Err(AccusationError::TooLarge(_))
        ));
    }

    #[test]
    fn only_accusations_that_can_still_count_are_passed_on() {
        let mut s = Inbox::with_seed(HashSeed::of_node(1), 3);
        let a = |accuser: &str, inc, health| Accusation {
            subject: "s".into(),
            incarnation: inc,
            accuser: accuser.into(),
            generation: Some(1),
            health,
        };
        // An unhealthy accuser confirms nothing anywhere: taken, not passed on.
        assert!(!s.offer(a("sick", 1, 4)));
        // The first three healthy ones (ours among them) go round, later ones do not.
        assert!(s.offer(a("a", 1, 0)));
        assert!(s.own(&a("me", 1, 1)));
        assert!(s.offer(a("b", 1, 0)));
        assert!(!s.offer(a("c", 1, 0)));
        assert!(!s.own(&a("me2", 1, 0)));
        // Every new one still reaches the node (foca counts what it can).
        assert_eq!(s.drain().len(), 4);
        // Our own accusation repeated (a later probe of it failed too) is no news, and
        // does not use up the suspicion's quota.
        let mut t = Inbox::with_seed(HashSeed::of_node(2), 2);
        assert!(t.own(&a("me", 1, 0)));
        assert!(!t.own(&a("me", 1, 0)));
        assert!(!t.own(&a("me", 1, 0)));
        assert!(t.offer(a("a", 1, 0)));
        assert!(!t.offer(a("b", 1, 0)));
        // A refuted suspect suspected again (newer incarnation) starts afresh.
        assert!(s.offer(a("c", 2, 0)));
    }

    #[test]
    fn inbox_dedups_and_is_bounded() {
        let mut s = Inbox::default();
        let a = |i: usize, inc| Accusation {
            subject: format!("s{i}"),
            incarnation: inc,
            accuser: "x".into(),
            generation: Some(1),
            health: 0,
        };
        assert!(s.offer(a(1, 1)));
        assert!(!s.offer(a(1, 1)));
        assert!(!s.offer(a(1, 0)));
        assert!(s.offer(a(1, 2)));
        s.own(&a(2, 5));
        assert!(!s.offer(a(2, 5)));
        // A renewed subject (newer generation) starts at incarnation 0 again: news.
        let renewed = Accusation {
            generation: Some(2),
            ..a(2, 0)
        };
        assert!(s.offer(renewed.clone()));
        assert!(!s.offer(renewed));
        assert_eq!(s.drain().len(), 3);
        for i in 0..(MAX_INBOX + 10) {
            s.offer(a(100 + i, 0));
        }
        assert_eq!(s.dropped, 10);
        assert_eq!(s.drain().len(), MAX_INBOX);
    }
}
