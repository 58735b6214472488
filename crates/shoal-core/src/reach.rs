//! Reach: this node's own evidence of which peers it can reach, for the guard.
//!
//! SWIM finds out that a peer is unreachable one random probe at a time and confirms it only
//! after the suspicion timeout; a node that is itself cut off learns it last. The guard must
//! act before that, so this module gathers local evidence quickly:
//! - **silence**: when the last datagram from any peer arrived (a connected node hears an
//!   ack every probe period, so a few silent periods mean nothing gets in: a two-way cut or
//!   a one-way cut that lets this node send but not receive);
//! - **reach checks**: a ping (`ShoalMsg::Ping`, a nonce) to `START` random baseline peers;
//!   only if one of them does not answer within a probe timeout (loss, a crash, a cut) is
//!   the check widened to every baseline peer, or a random sample of `SAMPLE` of them in a
//!   larger cluster. Each target is retried every probe timeout for `ROUNDS` rounds; a peer
//!   that answers any round is reached. The answer (`Pong`) echoes the nonce and is the
//!   same size as the ping (no amplification). A check that meets no loss costs `START`
//!   pings whatever the cluster size. A nonce is drawn at random per check (and per round of
//!   heal pings) and counts only when it comes back from the address it was sent to: an
//!   answer captured on its way to another node (whose nonces are its own) or to an earlier
//!   check is no evidence, replayed or not.
//!
//! It owns the in-flight check, its last result and the silence clock. It decides nothing:
//! the guard reads `ReachView` and decides; the node decides when to start a check and
//! sends the pings it returns. It never reads a clock and draws randomness only from the
//! rng it is handed.

use crate::hash::{FixedHashMap, FixedHashSet, HashSeed};
use crate::time::Time;
use rand::rngs::SmallRng;
use rand::RngExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Most peers one reach check pings. Up to this many baseline peers, a widened check sees
/// every one of them (an exact count against the trip limit); beyond, a uniform sample of
/// this many estimates the unreachable fraction (±4.3 points at 40 %, one standard
/// deviation).
pub(crate) const SAMPLE: usize = 128;

/// Peers a check pings first (a uniform sample of the baseline). When all of them answer,
/// nothing is unreachable that a check could tell apart from noise, and the check ends
/// there; a single silence widens it to `SAMPLE`. A cluster of up to 17 members is checked
/// whole at once: the widening costs a round (a probe timeout), and in a small cluster cut
/// in two that round let SWIM declare a member of the other side down before the guard
/// froze (`tests/guard` `a_split_in_the_middle_of_churn_never_serves_anyone_down` failed
/// about one run in three with 4). The cost per check stays bounded at any size.
pub(crate) const START: usize = 16;

/// Ping rounds of one check (a peer that answers any of them is reached). With per-link
/// loss p, a live peer is missed with probability (1 - (1 - p)²)^ROUNDS: 2.6 % at 30 % loss.
pub(crate) const ROUNDS: u8 = 4;

/// Silent probe periods that mean nothing gets in (a connected node hears an ack every
/// period; three in a row lost is 2.7 % at 30 % loss each way, and a check must confirm
/// before anything but silence is concluded).
pub(crate) const SILENT_PERIODS: u32 = 3;

/// Missing peers pinged once each per probe period while the guard holds (heal detection).
pub(crate) const HEAL_PINGS: usize = 3;

/// The low bits of a nonce: the index of the target in its check.
const INDEX_MASK: u64 = 0xF_FFFF;

/// Outcome of the last finished reach check.
#[derive(Clone, Debug, Default)]
pub struct CheckResult {
    /// When the check started and finished.
    pub started: Time,
    pub at: Time,
    /// Peers pinged.
    pub targets: usize,
    /// Baseline size the targets were drawn from (`targets` when not sampled).
    pub population: usize,
    /// Pinged peers that answered no round (minus late answers that came after).
    pub unreached: FixedHashSet<Arc<str>>,
    /// Baseline peers SWIM already suspected when the check started: pinged once, no
    /// retries (a slow node under suspicion must not get a burst of pings); they count as
    /// not reached unless they answer.
    pub skipped: usize,
    /// Pinged peers that answered (direct evidence that they are alive, whatever SWIM
    /// concludes later).
    pub reached: FixedHashSet<Arc<str>>,
}

impl CheckResult {
    pub fn reached(&self) -> usize {
        self.targets - self.unreached.len()
    }

    /// Share of the baseline reached: the answered share of the pinged peers, scaled down
    /// by the suspects that were not pinged.
    pub fn reached_fraction(&self) -> f64 {
        if self.targets == 0 {
            return 0.0;
        }
        self.reached() as f64 / self.targets as f64
    }
}

/// What the guard reads.
#[derive(Clone, Copy, Debug)]
pub struct ReachView<'a> {
    /// How long no datagram has come from any peer, when that is long enough to mean
    /// something (`None`: heard recently, or not connected long enough to judge).
    pub silent_for: Option<Duration>,
    /// The last finished check, if recent enough to use.
    pub last: Option<&'a CheckResult>,
    /// When this node last had to refute a suspicion of itself (peers could not hear it,
    /// so what it concluded about them from its own failed probes is in doubt too).
    pub refuted_at: Option<Time>,
}

#[derive(Debug)]
struct Check {
    /// The random high bits of this check's nonces (the low 20 bits index the target).
    tag: u64,
    /// The uniform sample (at most `SAMPLE`), in random order; the first `width` are pinged.
    targets: Vec<(Arc<str>, SocketAddr)>,
    width: usize,
    /// Rounds each target was pinged in.
    sent: Vec<u8>,
    answered: Vec<bool>,
    /// Unreachable in the previous check too: one ping, no retries (what matters about
    /// them is whether they are back, and one answer says that).
    once: Vec<bool>,
    population: usize,
    skipped: usize,
    rounds_sent: u8,
    next_round: Time,
    started: Time,
}

#[derive(Debug)]
pub(crate) struct Reach {
    probe_period: Duration,
    /// How many times Lifeguard's local health stretches our probe period (1: not at all):
    /// we hear an ack once per *our* probe period, so silence is counted in those.
    stretch: u32,
    round_gap: Duration,
    last_rx: Option<Time>,
    /// Since when the node has been connected (peers exist); silence is judged only after
    /// `SILENT_PERIODS` of it.
    connected_since: Option<Time>,
    check: Option<Check>,
    last: Option<CheckResult>,
    /// Targets of the last finished check by nonce, so that a late answer still counts.
    late: FixedHashMap<u64, (Arc<str>, SocketAddr)>,
    /// The random high bits of the nonces of the last round of heal pings.
    heal_tag: u64,
    /// No new check before this.
    next_allowed: Time,
    /// Gap between the end of one check and the start of the next (the node widens it
    /// while a fault lasts).
    spacing: Duration,
    /// Missing peers pinged once each since the last such round (nonces `heal_tag | index`).
    heal: Vec<(Arc<str>, SocketAddr)>,
    /// Last tick time, to tell a stalled process (paused, starved) from silence.
    #[cfg(test)]
    last_tick: Option<Time>,
    refuted_at: Option<Time>,
    pub checks: u64,
    pub pings_sent: u64,
    /// The seed of the tables of names (the node's, see `hash::HashSeed`).
    hashes: HashSeed,
}

impl Reach {
    /// No check yet; `hashes` seeds the tables of names (the node's, see `hash::HashSeed`).
    pub(crate) fn new(probe_period: Duration, probe_rtt: Duration, hashes: HashSeed) -> Reach {
        Reach {
            probe_period,
            stretch: 1,
            round_gap: probe_rtt.max(Duration::from_millis(1)),
            last_rx: None,
            connected_since: None,
            check: None,
            last: None,
            late: hashes.map(),
            heal_tag: 0,
            next_allowed: Time::ZERO,
            spacing: probe_period,
            heal: Vec::new(),
            #[cfg(test)]
            last_tick: None,
            refuted_at: None,
            checks: 0,
            pings_sent: 0,
            hashes,
        }
    }

    /// A datagram that passed the envelope checks arrived from a peer.
    pub(crate) fn heard(&mut self, now: Time) {
        self.last_rx = Some(now);
    }

    /// Whether the node has peers to hear from (foca not idle).
    pub(crate) fn set_connected(&mut self, now: Time, connected: bool) {
        match (connected, self.connected_since) {
            (true, None) => self.connected_since = Some(now),
            (false, Some(_)) => self.connected_since = None,
            _ => {}
        }
    }

    #[cfg(test)]
    /// Called on every tick before the view is read. Returns false when the process was
    /// stalled (this tick came more than a probe period late): whatever queued up while it
    /// was stalled has not been read yet, so silence must not be concluded on this tick.
    pub(crate) fn on_tick(&mut self, now: Time, tick: Duration) -> bool {
        let stalled = self
            .last_tick
            .map(|t| now.since(t) > tick + self.probe_period)
            .unwrap_or(false);
        self.last_tick = Some(now);
        if stalled {
            // Judge silence afresh from here: the backlog of datagrams comes next.
            self.last_rx = Some(now);
        }
        !stalled
    }

    /// Lifeguard stretches our probe period `stretch` times (local health + 1).
    pub(crate) fn set_stretch(&mut self, stretch: u32) {
        self.stretch = stretch.max(1);
    }

    /// How long nothing has been heard, once that is at least `periods` (stretched) probe
    /// periods and the node has been connected that long.
    pub(crate) fn silent(&self, now: Time, periods: u32) -> Option<Duration> {
        let limit = self.probe_period * self.stretch * periods;
        let since = self.connected_since?;
        if now.since(since) < limit {
            return None;
        }
        let quiet = now.since(self.last_rx.unwrap_or(since).max(since));
        (quiet >= limit).then_some(quiet)
    }

    /// When silence of `periods` (stretched) probe periods begins if nothing is heard
    /// meanwhile (`None` while not connected).
    pub(crate) fn silent_at(&self, periods: u32) -> Option<Time> {
        let limit = self.probe_period * self.stretch * periods;
        let since = self.connected_since?;
        Some(self.last_rx.unwrap_or(since).max(since).plus(limit))
    }

    /// Whether nothing here changes with time alone: no check in flight, the last one
    /// still standing reached everyone, and not silent at `now`.
    pub(crate) fn quiet(&self, now: Time, periods: u32) -> bool {
        self.check.is_none()
            && self.view(now).last.is_none_or(|r| r.unreached.is_empty())
            && self.silent(now, periods).is_none()
    }

    /// The evidence for the guard. A check's result stands until the next check could have
    /// finished (the spacing, a whole check and a probe period of slack).
    pub(crate) fn view(&self, now: Time) -> ReachView<'_> {
        let rounds = u32::from(ROUNDS) + 1;
        let max_age =
            self.spacing + self.round_gap * rounds + self.probe_period.max(self.round_gap * rounds);
        ReachView {
            silent_for: self.silent(now, SILENT_PERIODS),
            last: self.last.as_ref().filter(|r| now.since(r.at) <= max_age),
            refuted_at: self.refuted_at,
        }
    }

    /// This node refuted a suspicion of itself.
    pub(crate) fn refuted(&mut self, now: Time) {
        self.refuted_at = Some(now);
    }

    /// Sets the gap between checks (from the end of the one in flight, if any).
    pub(crate) fn set_spacing(&mut self, spacing: Duration) {
        if spacing != self.spacing {
            let end = self.last.as_ref().map(|r| r.at).unwrap_or(Time::ZERO);
            self.next_allowed = end.plus(spacing);
            self.spacing = spacing;
        }
    }

    pub(crate) fn spacing(&self) -> Duration {
        self.spacing
    }

    /// Pings up to `HEAL_PINGS` of `missing` (peers held, suspect or unreachable) once
    /// each: between checks, the cheapest way to notice that a cut has healed (one answer
    /// from the other side is enough to rejoin it).
    pub(crate) fn heal_pings(
        &mut self,
        mut missing: Vec<(Arc<str>, SocketAddr)>,
        rng: &mut SmallRng,
    ) -> Vec<(SocketAddr, u64)> {
        let k = missing.len().min(HEAL_PINGS);
        for i in 0..k {
            let j = rng.random_range(i..missing.len());
            missing.swap(i, j);
        }
        missing.truncate(k);
        self.heal = missing;
        self.heal_tag = Self::draw_tag(rng);
        self.pings_sent += k as u64;
        self.heal
            .iter()
            .enumerate()
            .map(|(i, (_, a))| (*a, self.heal_tag | i as u64))
            .collect()
    }

    /// Whether a new check may start now (none in flight, spacing respected).
    pub(crate) fn can_start(&self, now: Time) -> bool {
        self.check.is_none() && now >= self.next_allowed
    }

    /// Starts a check of `population` baseline peers, `candidates` being their names and
    /// addresses: `START` of them at first, widened on a silence to all of them up to
    /// `SAMPLE`, else a uniform sample. Returns the pings to send as (address, nonce).
    pub(crate) fn start(
        &mut self,
        now: Time,
        mut candidates: Vec<(Arc<str>, SocketAddr)>,
        suspects: &FixedHashSet<Arc<str>>,
        rng: &mut SmallRng,
    ) -> Vec<(SocketAddr, u64)> {
        let mut before: FixedHashSet<Arc<str>> = self
            .last
            .as_ref()
            .map(|r| r.unreached.clone())
            .unwrap_or_else(|| self.hashes.set());
        before.extend(suspects.iter().cloned());
        let skipped = candidates
            .iter()
            .filter(|(n, _)| suspects.contains(n))
            .count();
        let population = candidates.len();
        if population == 0 || self.check.is_some() {
            return Vec::new();
        }
        // Partial Fisher-Yates: the first SAMPLE entries become a uniform sample, in random
        // order (so that the first START are one too).
        let k = candidates.len().min(SAMPLE);
        for i in 0..k {
            let j = rng.random_range(i..candidates.len());
            candidates.swap(i, j);
        }
        candidates.truncate(k);
        let tag = Self::draw_tag(rng);
        self.checks += 1;
        let n = candidates.len();
        let once = candidates
            .iter()
            .map(|(name, _)| before.contains(name))
            .collect();
        self.check = Some(Check {
            tag,
            targets: candidates,
            width: n.min(START),
            sent: vec![0; n],
            answered: vec![false; n],
            once,
            population,
            skipped,
            rounds_sent: 0,
            next_round: now,
            started: now,
        });
        self.poll(now).0
    }

    /// Random high bits for a check's nonces (never 0: no nonce is guessable as 0).
    fn draw_tag(rng: &mut SmallRng) -> u64 {
        (rng.random::<u64>() & !INDEX_MASK) | (INDEX_MASK + 1)
    }

    fn nonce(tag: u64, i: usize) -> u64 {
        tag | (i as u64 & INDEX_MASK)
    }

    /// An answer from `from` to one of our pings. Returns the peer it came from; `None`
    /// (no evidence) for a nonce we did not draw or that comes from another address than the
    /// one it was sent to.
    pub(crate) fn on_pong(
        &mut self,
        now: Time,
        from: SocketAddr,
        nonce: u64,
    ) -> Option<(Arc<str>, SocketAddr)> {
        self.heard(now);
        let tag = nonce & !INDEX_MASK;
        let i = (nonce & INDEX_MASK) as usize;
        if tag == self.heal_tag && tag != 0 {
            return self.heal.get(i).filter(|(_, a)| *a == from).cloned();
        }
        if let Some(c) = self.check.as_mut().filter(|c| c.tag == tag) {
            let t = c.targets.get(i).filter(|(_, a)| *a == from)?;
            if let Some(a) = c.answered.get_mut(i) {
                *a = true;
            }
            return Some(t.clone());
        }
        // An answer to a finished check: that peer is reachable after all.
        if self.late.get(&nonce).is_none_or(|(_, a)| *a != from) {
            return None;
        }
        let (name, _) = self.late.remove(&nonce)?;
        if let Some(r) = self.last.as_mut() {
            r.unreached.remove(&name);
            r.reached.insert(name);
        }
        None
    }

    /// Advances the check in flight: returns the pings of the next round, if due, and
    /// whether the check finished (its result is then in `view`).
    pub(crate) fn poll(&mut self, now: Time) -> (Vec<(SocketAddr, u64)>, bool) {
        let Some(c) = self.check.as_mut() else {
            return (Vec::new(), false);
        };
        let all_answered = c.answered[..c.width].iter().all(|a| *a);
        if now < c.next_round && !all_answered {
            return (Vec::new(), false);
        }
        // A silence among the first targets (loss, a crash, a cut): widen to the sample.
        if c.rounds_sent > 0 && !all_answered && c.width < c.targets.len() {
            c.width = c.targets.len();
        }
        let exhausted = (0..c.width)
            .all(|i| c.answered[i] || c.sent[i] >= ROUNDS || (c.once[i] && c.sent[i] > 0));
        if exhausted || all_answered {
            let Some(c) = self.check.take() else {
                return (Vec::new(), false);
            };
            self.late.clear();
            let mut unreached = self.hashes.set();
            let mut reached = self.hashes.set();
            for (i, (name, _)) in c.targets[..c.width].iter().enumerate() {
                if c.answered[i] {
                    reached.insert(name.clone());
                } else {
                    unreached.insert(name.clone());
                    self.late
                        .insert(Self::nonce(c.tag, i), (name.clone(), c.targets[i].1));
                }
            }
            self.last = Some(CheckResult {
                started: c.started,
                at: now,
                targets: c.width,
                population: c.population,
                unreached,
                skipped: c.skipped,
                reached,
            });
            self.next_allowed = now.plus(self.spacing);
            return (Vec::new(), true);
        }
        c.rounds_sent = c.rounds_sent.saturating_add(1);
        c.next_round = now.plus(self.round_gap);
        let mut out = Vec::new();
        for (i, (_, addr)) in c.targets[..c.width].iter().enumerate() {
            if !c.answered[i] && c.sent[i] < ROUNDS && (c.sent[i] == 0 || !c.once[i]) {
                c.sent[i] += 1;
                out.push((*addr, Self::nonce(c.tag, i)));
            }
        }
        self.pings_sent += out.len() as u64;
        (out, false)
    }

    /// Forgets the last result (the operator said the truth is right).
    pub(crate) fn forget(&mut self) {
        self.last = None;
        self.late.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn peers(n: usize) -> Vec<(Arc<str>, SocketAddr)> {
        (0..n)
            .map(|i| {
                (
                    Arc::from(format!("n{i}")),
                    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                )
            })
            .collect()
    }

    #[test]
    fn a_check_counts_who_answered_and_retries_the_others() {
        let mut r = Reach::new(
            Duration::from_millis(1000),
            Duration::from_millis(500),
            HashSeed::default(),
        );
        let mut rng = SmallRng::seed_from_u64(1);
        let pings = r.start(Time(0), peers(4), &FixedHashSet::default(), &mut rng);
        assert_eq!(pings.len(), 4);
        // n0 and n1 answer the first round.
        r.on_pong(Time(10), pings[0].0, pings[0].1);
        r.on_pong(Time(10), pings[1].0, pings[1].1);
        let (again, done) = r.poll(Time(500));
        assert!(!done);
        assert_eq!(again.len(), 2, "only the silent ones are pinged again");
        for t in [1000, 1500] {
            let (p, done) = r.poll(Time(t));
            assert_eq!((p.len(), done), (2, false));
        }
        let (_, done) = r.poll(Time(2000));
        assert!(done);
        let v = r.view(Time(2000));
        let res = v.last.expect("a result");
        assert_eq!((res.targets, res.reached()), (4, 2));
        // A late answer counts.
        r.on_pong(Time(2100), again[0].0, again[0].1);
        assert_eq!(r.view(Time(2100)).last.unwrap().reached(), 3);
        assert!(!r.can_start(Time(2500)), "spaced by a probe period");
        assert!(r.can_start(Time(3000)));
    }

    #[test]
    fn a_large_baseline_is_sampled_and_estimated() {
        let mut r = Reach::new(
            Duration::from_millis(1000),
            Duration::from_millis(500),
            HashSeed::default(),
        );
        let mut rng = SmallRng::seed_from_u64(2);
        let pings = r.start(Time(0), peers(1000), &FixedHashSet::default(), &mut rng);
        assert_eq!(pings.len(), START, "a check starts small");
        let mut t = 0;
        let mut sent = pings.len();
        loop {
            t += 500;
            let (p, done) = r.poll(Time(t));
            sent += p.len();
            if done {
                break;
            }
            assert!(t < 10_000);
        }
        // Nobody answered: widened to the sample, each target pinged ROUNDS times.
        assert_eq!(sent, SAMPLE * usize::from(ROUNDS));
        let res = r.view(Time(t)).last.unwrap().clone();
        assert_eq!(res.population, 1000);
        assert_eq!((res.targets, res.unreached.len()), (SAMPLE, SAMPLE));
        assert_eq!(res.reached_fraction(), 0.0);
    }

    /// An answer counts only from the address its ping went to, and only with a nonce this
    /// node drew: a Pong captured on its way to another node (replayed, or relayed from a
    /// spoofed source) is no evidence.
    #[test]
    fn only_our_own_nonces_from_their_target_are_evidence() {
        let hashes = HashSeed::default();
        let (period, rtt) = (Duration::from_millis(1000), Duration::from_millis(500));
        let mut mine = Reach::new(period, rtt, hashes);
        let mut theirs = Reach::new(period, rtt, hashes);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut other_rng = SmallRng::seed_from_u64(4);
        let none = FixedHashSet::default();
        let pings = mine.start(Time(0), peers(4), &none, &mut rng);
        let their_pings = theirs.start(Time(0), peers(4), &none, &mut other_rng);
        // Another node's nonces for the same peers, from the right addresses: no evidence.
        for (a, n) in &their_pings {
            assert_eq!(mine.on_pong(Time(5), *a, *n), None);
        }
        // Our nonce for n0 coming from n1's address: no evidence either.
        assert_eq!(mine.on_pong(Time(5), pings[1].0, pings[0].1), None);
        // The real answer counts.
        assert!(mine.on_pong(Time(5), pings[0].0, pings[0].1).is_some());
        let mut t = 0;
        while !mine.poll(Time(t)).1 {
            t += 500;
            assert!(t < 10_000);
        }
        let res = mine.view(Time(t)).last.unwrap();
        assert_eq!(res.reached(), 1);
        // Late answers follow the same rule.
        assert!(mine.on_pong(Time(t), pings[3].0, pings[2].1).is_none());
        assert_eq!(mine.view(Time(t)).last.unwrap().reached(), 1);
        // Heal pings too.
        let heal = mine.heal_pings(peers(2), &mut rng);
        assert_eq!(mine.on_pong(Time(t), heal[0].0, heal[1].1), None);
        assert!(mine.on_pong(Time(t), heal[1].0, heal[1].1).is_some());
        assert!(mine.on_pong(Time(t), heal[1].0, 1).is_none());
    }

    /// Review of #24: every node seeing a suspicion pinged up to 128 peers. A check that
    /// meets no loss now costs START pings at any cluster size; one silence widens it.
    #[test]
    fn reach_fan_out_stays_small_without_loss_and_widens_on_a_silence() {
        let mut r = Reach::new(
            Duration::from_millis(1000),
            Duration::from_millis(500),
            HashSeed::default(),
        );
        let mut rng = SmallRng::seed_from_u64(3);
        let none = FixedHashSet::default();
        for n in [10, 1000, 5000] {
            let pings = r.start(Time(0), peers(n), &none, &mut rng);
            assert_eq!(pings.len(), START.min(n), "{n} peers");
            for (addr, nonce) in &pings {
                r.on_pong(Time(5), *addr, *nonce);
            }
            let (more, done) = r.poll(Time(5));
            assert!(
                done && more.is_empty(),
                "all answered: done after START pings"
            );
            let res = r.view(Time(5)).last.unwrap().clone();
            let k = START.min(n);
            assert_eq!((res.targets, res.reached()), (k, k));
            r.set_spacing(Duration::ZERO);
        }
        // One of the four stays silent: the check widens to every peer (up to SAMPLE).
        let all = peers(40);
        let pings = r.start(Time(10_000), all.clone(), &none, &mut rng);
        for (addr, nonce) in &pings[1..] {
            r.on_pong(Time(10_005), *addr, *nonce);
        }
        let (wide, done) = r.poll(Time(10_500));
        assert!(!done);
        assert_eq!(
            wide.len(),
            1 + 40 - START,
            "the silent one again, and the rest"
        );
        for (addr, nonce) in &wide {
            if *addr != pings[0].0 {
                r.on_pong(Time(10_600), *addr, *nonce);
            }
        }
        let mut t = 10_500;
        while !r.poll(Time(t)).1 {
            t += 500;
            assert!(t < 20_000);
        }
        let res = r.view(Time(t)).last.unwrap().clone();
        assert_eq!((res.targets, res.population, res.reached()), (40, 40, 39));
    }

    #[test]
    fn silence_is_judged_only_once_connected_and_not_after_a_stall() {
        let mut r = Reach::new(
            Duration::from_millis(200),
            Duration::from_millis(100),
            HashSeed::default(),
        );
        assert!(
            r.silent(Time(10_000), SILENT_PERIODS).is_none(),
            "never connected"
        );
        r.set_connected(Time(0), true);
        r.heard(Time(100));
        assert!(r.silent(Time(600), SILENT_PERIODS).is_none());
        assert!(r.silent(Time(700), SILENT_PERIODS).is_some());
        // Ticks every 50 ms, then one 2 s late: a stall, silence restarts from there.
        assert!(r.on_tick(Time(700), Duration::from_millis(50)));
        assert!(!r.on_tick(Time(2700), Duration::from_millis(50)));
        assert!(r.silent(Time(2700), SILENT_PERIODS).is_none());
        // Lifeguard stretched our probes 3x: we hear an ack every 3 periods.
        r.set_stretch(3);
        assert!(r.silent(Time(2700 + 3 * 600 - 1), SILENT_PERIODS).is_none());
        assert!(r.silent(Time(2700 + 3 * 600), SILENT_PERIODS).is_some());
    }
}
