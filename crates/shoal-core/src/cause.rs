//! Why each member is in its state: the evidence behind every served transition (who
//! suspected it, the independent confirmations, when it was last heard, a refutation, the
//! guard's decision, an operator's force-leave) and a short history of transitions per member.
//!
//! Owns `Causes`: per member that did more than join, the evidence of its current suspicion
//! and its last `HISTORY` transitions, kept as compact facts (the sentence is built when
//! asked); the notes of the current input (our suspicion timer fired, its address was taken
//! over, an operator force-left it); and a fixed cache of when each member address was last
//! heard from. The JSON shapes `Cause` and `Transition` are `core::cause_view` (re-exported
//! here). It only records what the node's
//! SWIM adapter, Lifeguard exchange, guard and operator commands already saw; it must not
//! decide anything about membership or what is served, and must stay sans-IO.

pub use crate::cause_view::{Cause, CauseKind, Transition};
use crate::hash::{FixedHashMap, HashSeed};
use crate::identity::AddrKey;
use crate::status::ServedStatus;
use crate::time::Time;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;

/// Transitions kept per member (oldest dropped first).
pub(crate) const HISTORY: usize = 8;
/// Accusers named per suspicion (the count goes on past it).
pub(crate) const MAX_ACCUSERS_NAMED: usize = 8;

/// Evidence about the member's current suspicion.
#[derive(Clone, Debug, Default)]
struct Suspicion {
    generation: u64,
    incarnation: u16,
    probe_failed: bool,
    confirmations: u32,
    accusers: Vec<Arc<str>>,
}

/// One transition as kept: the facts only, shared where they repeat (the accusers of one
/// suspicion, the guard's words of one state); `Cause` and its sentence are built when asked.
#[derive(Clone, Debug)]
struct Record {
    at: Time,
    generation: u64,
    from: Option<ServedStatus>,
    to: ServedStatus,
    reason: CauseKind,
    probe_failed: bool,
    refuted: bool,
    /// The suspicion timed out on this node (for the sentence of a `Held`).
    timed_out_here: bool,
    replaced: bool,
    confirmations: u32,
    accusers: Option<Arc<[Arc<str>]>>,
    last_heard: Option<Time>,
    guard: Option<Arc<str>>,
    by: Option<Arc<str>>,
}

impl Record {
    fn cause(&self) -> Cause {
        let mut c = Cause {
            reason: self.reason,
            probe_failed: self.probe_failed,
            confirmations: self.confirmations,
            accusers: self
                .accusers
                .iter()
                .flat_map(|a| a.iter())
                .map(|a| a.to_string())
                .collect(),
            last_heard_ms: self.last_heard.map(Time::as_millis),
            refuted: self.refuted,
            guard: self.guard.as_deref().map(str::to_string),
            by: self.by.as_deref().map(str::to_string),
            text: String::new(),
        };
        c.text = sentence(&c, self);
        c
    }

    fn transition(&self) -> Transition {
        Transition {
            at_ms: self.at.as_millis(),
            from: self.from,
            to: self.to,
            generation: self.generation,
            cause: self.cause(),
        }
    }
}

/// What is known about one member with a transition beyond joining (a member that only
/// joined has no entry: most members of a large cluster).
#[derive(Clone, Debug, Default)]
struct Entry {
    suspicion: Option<Box<Suspicion>>,
    /// Our own suspicion timer of it fired during the current input.
    timed_out_here: bool,
    /// Another node took over its address during the current input.
    replaced: bool,
    /// An operator force-left it (who), during the current input.
    force_left: Option<Arc<str>>,
    /// The generation of its last transition.
    generation: Option<u64>,
    history: VecDeque<Record>,
}

/// What the node saw that a transition's cause is made of, besides the evidence table.
pub struct Facts<'a> {
    pub now: Time,
    pub generation: u64,
    pub from: Option<ServedStatus>,
    pub to: ServedStatus,
    /// The member's address (to look up when it was last heard).
    pub addr: SocketAddr,
    /// The guard's reason for holding it, if it holds it (in any mode but off).
    pub hold: Option<String>,
    /// The guard's state and reason, in words ("normal: no failures").
    pub guard_state: &'a str,
    /// The guard enforces (else it only reports what it would do).
    pub enforce: bool,
    pub guard_off: bool,
}

/// Sets of the last-heard cache (two addresses each).
const HEARD_SETS: usize = 256;

/// Every member's causes. Bounded: one entry per member the truth knows that did more than
/// join (the node removes it when it reaps the member), `HISTORY` transitions and
/// `MAX_ACCUSERS_NAMED` names each; the last-heard times are a fixed cache of
/// `2 x HEARD_SETS` addresses (exact for clusters of up to a few hundred members; in larger
/// ones the members heard from least recently fall out, and say "not heard from directly lately").
#[derive(Debug)]
pub struct Causes {
    members: FixedHashMap<Arc<str>, Entry>,
    heard: Vec<[Option<(AddrKey, Time)>; 2]>,
    hashes: HashSeed,
    /// Members with a note of the current input (cleared by `end_input`).
    noted: Vec<Arc<str>>,
    /// The guard's last words, shared by every transition that quotes them.
    guard_words: Option<Arc<str>>,
}

impl Causes {
    pub fn with_seed(hashes: HashSeed) -> Causes {
        Causes {
            members: hashes.map(),
            heard: Vec::new(),
            hashes,
            noted: Vec::new(),
            guard_words: None,
        }
    }

    fn heard_set(&self, key: AddrKey) -> usize {
        (self.hashes.state().hash_one(key) as usize) % HEARD_SETS
    }

    /// An authentic datagram came from `addr`, a known member's address.
    pub fn heard(&mut self, now: Time, addr: SocketAddr) {
        let key = AddrKey::of(addr);
        let set = self.heard_set(key);
        if self.heard.is_empty() {
            self.heard = vec![[None, None]; HEARD_SETS];
        }
        let slots = &mut self.heard[set];
        let i = match slots {
            [Some((k, _)), _] if *k == key => 0,
            [_, Some((k, _))] if *k == key => 1,
            [None, _] => 0,
            [_, None] => 1,
            // Both taken by others: replace the one heard from longest ago.
            [Some((_, a)), Some((_, b))] => usize::from(*b < *a),
        };
        slots[i] = Some((key, now));
    }

    pub fn last_heard(&self, addr: SocketAddr) -> Option<Time> {
        let key = AddrKey::of(addr);
        let slots = self.heard.get(self.heard_set(key))?;
        slots
            .iter()
            .flatten()
            .find(|(k, _)| *k == key)
            .map(|(_, t)| *t)
    }

    fn suspicion(&mut self, name: &Arc<str>, generation: u64, incarnation: u16) -> &mut Suspicion {
        let e = self.members.entry(name.clone()).or_default();
        let fresh = e
            .suspicion
            .as_ref()
            .is_none_or(|s| (s.generation, s.incarnation) < (generation, incarnation));
        if fresh {
            e.suspicion = Some(Box::new(Suspicion {
                generation,
                incarnation,
                ..Default::default()
            }));
        }
        e.suspicion.get_or_insert_with(Default::default)
    }

    /// This node's own probe of `name` (at `incarnation`) failed: it suspects it.
    pub fn probe_failed(&mut self, name: &Arc<str>, generation: u64, incarnation: u16) {
        let s = self.suspicion(name, generation, incarnation);
        if (s.generation, s.incarnation) == (generation, incarnation) {
            s.probe_failed = true;
        }
    }

    /// `accuser`'s accusation of `name` counted as a new, independent confirmation.
    pub fn confirmed(
        &mut self,
        name: &Arc<str>,
        generation: u64,
        incarnation: u16,
        accuser: &Arc<str>,
    ) {
        let s = self.suspicion(name, generation, incarnation);
        if (s.generation, s.incarnation) != (generation, incarnation)
            || s.accusers.iter().any(|a| a == accuser)
        {
            return;
        }
        s.confirmations = s.confirmations.saturating_add(1);
        if s.accusers.len() < MAX_ACCUSERS_NAMED {
            s.accusers.push(accuser.clone());
        }
    }

    /// Our own suspicion timer of `name` fired (its down notice, if any, is ours).
    pub fn timed_out_here(&mut self, name: &Arc<str>) {
        self.note(name).timed_out_here = true;
    }

    /// Another node took over `name`'s address.
    pub fn replaced(&mut self, name: &Arc<str>) {
        self.note(name).replaced = true;
    }

    /// An operator force-left `name` (`by`: who, in words).
    pub fn force_left(&mut self, name: &Arc<str>, by: String) {
        self.note(name).force_left = Some(Arc::from(by));
    }

    /// The entry of a member about to get a note of the current input. Only members the
    /// node knows get notes (the caller checks), so this adds no entry a stranger chose.
    fn note(&mut self, name: &Arc<str>) -> &mut Entry {
        if !self.noted.contains(name) {
            self.noted.push(name.clone());
        }
        self.members.entry(name.clone()).or_default()
    }

    /// Forgets the notes of one input (timer fired, replaced, force-left) that led to no
    /// transition.
    pub fn end_input(&mut self) {
        for n in self.noted.drain(..) {
            if let Some(e) = self.members.get_mut(&n) {
                e.timed_out_here = false;
                e.replaced = false;
                e.force_left = None;
            }
        }
    }

    /// Forgets a member (reaped); returns the cause of its last status.
    pub fn remove(&mut self, name: &str) -> Option<Cause> {
        let e = self.members.remove(name)?;
        e.history.back().map(Record::cause)
    }

    /// Whether nothing this node saw confirms a failure of `name`: its own probe of it did
    /// not fail, its own suspicion timer did not fire, and no healthy accuser's accusation
    /// reached it. A down notice then carries a lone accuser's verdict.
    pub fn unconfirmed(&self, name: &str) -> bool {
        self.members.get(name).is_none_or(|e| {
            !e.timed_out_here
                && e.suspicion
                    .as_ref()
                    .is_none_or(|s| !s.probe_failed && s.confirmations == 0)
        })
    }

    /// Whether the member has an entry (did more than join).
    pub fn has(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// The cause of the member's current status (`None`: it only joined).
    pub fn current(&self, name: &str) -> Option<Cause> {
        self.members
            .get(name)
            .and_then(|e| e.history.back())
            .map(Record::cause)
    }

    /// The member's last transitions, oldest first (empty: it only joined).
    pub fn history(&self, name: &str) -> Vec<Transition> {
        self.members
            .get(name)
            .map(|e| e.history.iter().map(Record::transition).collect())
            .unwrap_or_default()
    }

    /// The cause of joining, for a member with no entry.
    pub fn joined() -> Cause {
        Cause {
            reason: CauseKind::Joined,
            probe_failed: false,
            confirmations: 0,
            accusers: Vec::new(),
            last_heard_ms: None,
            refuted: false,
            guard: None,
            by: None,
            text: "joined".into(),
        }
    }

    /// Shares the guard's words with the last transition that quoted the same.
    fn guard_words(&mut self, words: String) -> Arc<str> {
        match &self.guard_words {
            Some(w) if **w == *words => w.clone(),
            _ => {
                let w: Arc<str> = Arc::from(words);
                self.guard_words = Some(w.clone());
                w
            }
        }
    }

    /// Records a served transition of `name` and returns its cause. A member's first
    /// transition to `alive` (it joined) is not kept.
    pub fn transition(&mut self, name: &Arc<str>, f: &Facts<'_>) -> Cause {
        if f.from.is_none() && f.to == ServedStatus::Alive && !self.members.contains_key(name) {
            return Causes::joined();
        }
        let last_heard = self.last_heard(f.addr);
        let guard = guard_decision(f).map(|g| self.guard_words(g));
        let e = self.members.entry(name.clone()).or_default();
        let rec = record(e, f, last_heard, guard);
        let cause = rec.cause();
        e.history.push_back(rec);
        while e.history.len() > HISTORY {
            e.history.pop_front();
        }
        e.generation = Some(f.generation);
        e.timed_out_here = false;
        e.replaced = false;
        e.force_left = None;
        if matches!(f.to, ServedStatus::Alive | ServedStatus::Left) {
            // The suspicion is over (refuted, restarted or left): a new one starts afresh.
            e.suspicion = None;
        }
        cause
    }

    /// Members with an entry (for tests of the bound).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// What the guard decided, in words, for a transition to `f.to` (`None`: nothing to say).
fn guard_decision(f: &Facts<'_>) -> Option<String> {
    match f.to {
        ServedStatus::Held => f.hold.clone(),
        ServedStatus::Down if f.from == Some(ServedStatus::Held) => {
            Some(format!("released by the guard ({})", f.guard_state))
        }
        ServedStatus::Down if f.guard_off => Some("guard off".into()),
        ServedStatus::Down if !f.enforce => Some(match &f.hold {
            Some(h) => format!("shadow mode, would be {h}"),
            None => "shadow mode, would remove it too".into(),
        }),
        ServedStatus::Down => Some(format!(
            "removed, under the limit (guard {})",
            f.guard_state
        )),
        _ => None,
    }
}

/// The record of a transition, from the member's entry and the facts.
fn record(e: &Entry, f: &Facts<'_>, last_heard: Option<Time>, guard: Option<Arc<str>>) -> Record {
    let s = e
        .suspicion
        .as_ref()
        .filter(|s| s.generation == f.generation);
    // A member served down, held or left comes back alive only as a new generation.
    let newer = e.generation.is_some_and(|g| g < f.generation)
        || matches!(
            f.from,
            Some(ServedStatus::Down | ServedStatus::Held | ServedStatus::Left)
        );
    let mut refuted = false;
    let reason = match f.to {
        ServedStatus::Alive if f.from.is_none() => CauseKind::Joined,
        ServedStatus::Alive if newer => CauseKind::Restarted,
        ServedStatus::Alive if f.from == Some(ServedStatus::Suspect) => {
            refuted = true;
            CauseKind::Refuted
        }
        ServedStatus::Alive => CauseKind::Alive,
        ServedStatus::Suspect => CauseKind::Suspected,
        ServedStatus::Left | ServedStatus::Down if e.force_left.is_some() => CauseKind::ForceLeft,
        ServedStatus::Left => CauseKind::Left,
        ServedStatus::Down if f.from == Some(ServedStatus::Held) => CauseKind::Released,
        ServedStatus::Down if e.replaced => CauseKind::Replaced,
        ServedStatus::Down if e.timed_out_here => CauseKind::SuspicionTimeout,
        ServedStatus::Down => CauseKind::DownNotice,
        ServedStatus::Held => CauseKind::Held,
        ServedStatus::Restarting => CauseKind::Restarting,
        ServedStatus::Damped => CauseKind::Damped,
    };
    let guard = if reason == CauseKind::ForceLeft {
        Some(Arc::from("released by the operator"))
    } else {
        guard
    };
    Record {
        at: f.now,
        generation: f.generation,
        from: f.from,
        to: f.to,
        reason,
        probe_failed: s.is_some_and(|s| s.probe_failed),
        refuted,
        timed_out_here: e.timed_out_here,
        replaced: e.replaced,
        confirmations: s.map(|s| s.confirmations).unwrap_or(0),
        accusers: s
            .filter(|s| !s.accusers.is_empty())
            .map(|s| Arc::from(s.accusers.as_slice())),
        last_heard,
        guard,
        by: e.force_left.clone(),
    }
}

/// The cause in words: `suspicion timed out here (our probe failed); 3 confirmations from
/// a, b, c; last heard 7.2 s ago; no refutation; guard: removed, under the limit`.
fn sentence(c: &Cause, r: &Record) -> String {
    let mut t = String::new();
    let how = if c.probe_failed {
        "our own probe failed"
    } else {
        "heard from the cluster"
    };
    match c.reason {
        CauseKind::Joined => t.push_str("joined"),
        CauseKind::Restarted => {
            let _ = write!(
                t,
                "came back as generation {} (restarted, or rejoined after being declared down)",
                r.generation
            );
        }
        CauseKind::Refuted => t.push_str("refuted the suspicion (incarnation bump)"),
        CauseKind::Alive => t.push_str("alive"),
        CauseKind::Suspected => {
            let _ = write!(t, "suspected: {how}");
        }
        CauseKind::SuspicionTimeout => {
            let _ = write!(t, "suspicion timed out here ({how})");
        }
        CauseKind::DownNotice => {
            t.push_str("declared down by the cluster (down notice gossiped");
            if c.probe_failed {
                t.push_str("; our own probe had failed too");
            }
            t.push(')');
        }
        CauseKind::Replaced => t.push_str("another node took over its address"),
        CauseKind::Held => {
            let kind = if r.replaced {
                "its address was taken over".to_string()
            } else if r.timed_out_here {
                format!("suspicion timed out here ({how})")
            } else if c.probe_failed {
                "declared down by the cluster (our own probe had failed too)".to_string()
            } else {
                "declared down by the cluster".to_string()
            };
            let _ = write!(t, "down by failure: {kind}");
        }
        CauseKind::Released => t.push_str("no longer held"),
        CauseKind::ForceLeft => {
            t.push_str("removed by an operator (force-leave");
            if let Some(by) = &c.by {
                let _ = write!(t, " by {by}");
            }
            t.push(')');
        }
        CauseKind::Left => t.push_str("left gracefully"),
        CauseKind::Restarting => {
            t.push_str("stopped to restart (its record said so): served through its grace")
        }
        CauseKind::Damped => {
            t.push_str("flapping (down by failure and back): not served until it has been stable")
        }
    }
    let failure = matches!(
        c.reason,
        CauseKind::Suspected
            | CauseKind::SuspicionTimeout
            | CauseKind::DownNotice
            | CauseKind::Held
    );
    if failure || c.confirmations > 0 {
        match c.confirmations {
            0 => t.push_str("; no confirmation from others"),
            n => {
                let _ = write!(
                    t,
                    "; {n} confirmation{} from {}",
                    if n == 1 { "" } else { "s" },
                    c.accusers.join(", ")
                );
                if n as usize > c.accusers.len() {
                    t.push_str(", ...");
                }
            }
        }
    }
    if failure || c.reason == CauseKind::Refuted {
        match c.last_heard_ms {
            Some(ms) => {
                let ago = r.at.as_millis().saturating_sub(ms);
                let _ = write!(
                    t,
                    "; last heard {}.{} s ago",
                    ago / 1000,
                    (ago % 1000) / 100
                );
            }
            None => t.push_str("; not heard from directly lately"),
        }
    }
    if failure && r.to != ServedStatus::Suspect {
        t.push_str("; no refutation");
    }
    if let Some(g) = &c.guard {
        let _ = write!(t, "; guard: {g}");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(now: u64, from: Option<ServedStatus>, to: ServedStatus) -> Facts<'static> {
        Facts {
            now: Time(now),
            generation: 1,
            from,
            to,
            addr: "127.0.0.1:1".parse().unwrap(),
            hold: None,
            guard_state: "normal: no failures",
            enforce: true,
            guard_off: false,
        }
    }

    #[test]
    fn the_sentence_names_the_evidence() {
        let mut c = Causes::with_seed(HashSeed::of_node(1));
        let web: Arc<str> = Arc::from("web-3");
        c.heard(Time(1_000), "127.0.0.1:1".parse().unwrap());
        c.transition(&web, &facts(0, None, ServedStatus::Alive));
        c.probe_failed(&web, 1, 0);
        for a in ["a", "b", "c"] {
            c.confirmed(&web, 1, 0, &Arc::from(a));
        }
        c.confirmed(&web, 1, 0, &Arc::from("a"));
        c.timed_out_here(&web);
        let cause = c.transition(
            &web,
            &facts(8_200, Some(ServedStatus::Suspect), ServedStatus::Down),
        );
        assert_eq!(cause.reason, CauseKind::SuspicionTimeout);
        assert_eq!(cause.confirmations, 3, "each accuser counts once");
        assert_eq!(
            cause.text,
            "suspicion timed out here (our own probe failed); 3 confirmations from a, b, c; \
             last heard 7.2 s ago; no refutation; guard: removed, under the limit (guard normal: \
             no failures)"
        );
    }

    #[test]
    fn last_heard_is_a_fixed_cache_exact_for_small_clusters() {
        let mut c = Causes::with_seed(HashSeed::of_node(3));
        let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 20_000 + i));
        for i in 0..100 {
            c.heard(Time(u64::from(i)), addr(i));
        }
        // 100 addresses in 256 sets of two: every one is kept.
        for i in 0..100 {
            assert_eq!(c.last_heard(addr(i)), Some(Time(u64::from(i))));
        }
        c.heard(Time(500), addr(7));
        assert_eq!(c.last_heard(addr(7)), Some(Time(500)));
        // A flood of addresses: the cache stays its size; the latest are found.
        for i in 0..10_000 {
            c.heard(Time(1_000 + u64::from(i)), addr(i));
        }
        assert_eq!(c.heard.len(), HEARD_SETS);
        assert_eq!(c.last_heard(addr(9_999)), Some(Time(10_999)));
        assert_eq!(c.last_heard(SocketAddr::from(([10, 0, 0, 1], 1))), None);
    }

    #[test]
    fn history_and_names_are_bounded() {
        let mut c = Causes::with_seed(HashSeed::of_node(1));
        let m: Arc<str> = Arc::from("m");
        for i in 0..100u16 {
            c.confirmed(&m, 1, 0, &Arc::from(format!("a{i}").as_str()));
            c.transition(
                &m,
                &facts(
                    u64::from(i),
                    Some(ServedStatus::Alive),
                    ServedStatus::Suspect,
                ),
            );
        }
        assert_eq!(c.history("m").len(), HISTORY);
        let last = c.current("m").unwrap();
        assert_eq!(last.confirmations, 100);
        assert_eq!(last.accusers.len(), MAX_ACCUSERS_NAMED);
        assert!(last.text.contains("a7, ...;"), "{}", last.text);
    }
}
