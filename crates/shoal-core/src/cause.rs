//! Why each member is in its state: the evidence behind every served transition (who
//! suspected it, the independent confirmations, when it was last heard, a refutation, the
//! guard's decision, an operator's force-leave) and a short history of transitions per member.
//!
//! Owns `Causes` (one bounded entry per member the truth knows: the evidence gathered for the
//! current suspicion, the last cause and the last `HISTORY` transitions, plus the time each
//! known address was last heard from) and the JSON shapes `Cause` and `Transition`. It only
//! records what the node's SWIM adapter, Lifeguard exchange and guard already saw; it must not
//! decide anything about membership or what is served, and must stay sans-IO.

use crate::hash::{FixedHashMap, HashSeed};
use crate::time::Time;
use crate::truth::ServedStatus;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// Transitions kept per member (oldest dropped first).
pub const HISTORY: usize = 8;
/// Accusers named per suspicion (the count goes on past it).
pub const MAX_ACCUSERS_NAMED: usize = 8;

/// What happened to a member, in one word (the `reason` of a `Cause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// First seen by this node.
    Joined,
    /// Back as a new generation (it restarted, or rejoined after being declared down).
    Restarted,
    /// Alive again after a suspicion it refuted (an incarnation bump).
    Refuted,
    /// Alive (any other way back).
    Alive,
    /// Suspected: this node's probe failed, or the suspicion was heard from the cluster.
    Suspected,
    /// Declared down here: the suspicion timed out on this node.
    SuspicionTimeout,
    /// Declared down by the cluster: the down notice was gossiped to this node.
    DownNotice,
    /// Another node took over its address.
    Replaced,
    /// Down by failure, but still served by the guard.
    Held,
    /// No longer held: the guard released it (thaw, drain, a confirming reach check).
    Released,
    /// Removed by an operator (`force-leave`).
    ForceLeft,
    /// Left gracefully (its record said it was leaving).
    Left,
}

impl CauseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CauseKind::Joined => "joined",
            CauseKind::Restarted => "restarted",
            CauseKind::Refuted => "refuted",
            CauseKind::Alive => "alive",
            CauseKind::Suspected => "suspected",
            CauseKind::SuspicionTimeout => "suspicion_timeout",
            CauseKind::DownNotice => "down_notice",
            CauseKind::Replaced => "replaced",
            CauseKind::Held => "held",
            CauseKind::Released => "released",
            CauseKind::ForceLeft => "force_left",
            CauseKind::Left => "left",
        }
    }
}

impl std::fmt::Display for CauseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a member entered its served status (the `cause` of `/v1/members` items and events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub reason: CauseKind,
    /// This node's own probe of the member failed (it suspected the member itself).
    #[serde(default, skip_serializing_if = "is_false")]
    pub probe_failed: bool,
    /// Independent confirmations: other members whose own probe failed too (Lifeguard
    /// accusations from healthy accusers, counted once each).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub confirmations: u32,
    /// The first of them by name (at most `MAX_ACCUSERS_NAMED`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accusers: Vec<String>,
    /// When this node last received an authentic datagram from the member's address
    /// (agent clock, ms); absent when never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heard_ms: Option<u64>,
    /// The member refuted a suspicion (it bumped its incarnation).
    #[serde(default, skip_serializing_if = "is_false")]
    pub refuted: bool,
    /// The guard's decision, in words (held and why, released and why, or not held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// Who acted, when an operator did (force-leave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// All of the above in one sentence, as the log line and `shoal explain` print it.
    pub text: String,
}

/// One served transition of a member (`shoal explain`, `/v1/members/{name}/history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: u64,
    /// What was served before (`None`: the member was new to this node).
    pub from: Option<ServedStatus>,
    pub to: ServedStatus,
    pub generation: u64,
    pub cause: Cause,
}

/// Evidence about the member's current suspicion.
#[derive(Clone, Debug, Default)]
struct Suspicion {
    generation: u64,
    incarnation: u16,
    probe_failed: bool,
    confirmations: u32,
    accusers: Vec<Arc<str>>,
}

/// What is known about one member.
#[derive(Clone, Debug, Default)]
struct Entry {
    suspicion: Option<Suspicion>,
    /// Our own suspicion timer of it fired during the current input.
    timed_out_here: bool,
    /// Another node took over its address during the current input.
    replaced: bool,
    /// An operator force-left it (who), during the current input.
    force_left: Option<String>,
    /// The generation of its last transition.
    generation: Option<u64>,
    history: VecDeque<Transition>,
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

/// Every member's causes. Bounded: one entry per member the truth knows (the node removes it
/// when it reaps the member), `HISTORY` transitions and `MAX_ACCUSERS_NAMED` names each, and
/// one last-heard time per known member address.
#[derive(Debug)]
pub struct Causes {
    members: FixedHashMap<Arc<str>, Entry>,
    heard: FixedHashMap<SocketAddr, Time>,
    /// Members with a note of the current input (cleared by `end_input`).
    noted: Vec<Arc<str>>,
}

impl Causes {
    pub fn with_seed(hashes: HashSeed) -> Causes {
        Causes {
            members: hashes.map(),
            heard: hashes.map(),
            noted: Vec::new(),
        }
    }

    /// An authentic datagram came from `addr`, a known member's address.
    pub fn heard(&mut self, now: Time, addr: SocketAddr) {
        self.heard.insert(addr, now);
    }

    pub fn last_heard(&self, addr: SocketAddr) -> Option<Time> {
        self.heard.get(&addr).copied()
    }

    fn suspicion(&mut self, name: &Arc<str>, generation: u64, incarnation: u16) -> &mut Suspicion {
        let e = self.members.entry(name.clone()).or_default();
        let fresh = e
            .suspicion
            .as_ref()
            .is_none_or(|s| (s.generation, s.incarnation) < (generation, incarnation));
        if fresh {
            e.suspicion = Some(Suspicion {
                generation,
                incarnation,
                ..Default::default()
            });
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
        self.note(name).force_left = Some(by);
    }

    /// The entry of a member about to get a note of the current input. Only members the
    /// node knows get notes (the caller checks), so this adds no entry a stranger chose.
    fn note(&mut self, name: &Arc<str>) -> &mut Entry {
        if self.noted.len() < 4096 && !self.noted.contains(name) {
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

    /// Forgets a member (reaped), and when its address was last heard.
    pub fn remove(&mut self, name: &str, addr: SocketAddr) -> Option<Cause> {
        self.heard.remove(&addr);
        let e = self.members.remove(name)?;
        e.history.back().map(|t| t.cause.clone())
    }

    /// The cause of the member's current status.
    pub fn current(&self, name: &str) -> Option<&Cause> {
        self.members
            .get(name)
            .and_then(|e| e.history.back())
            .map(|t| &t.cause)
    }

    /// The member's last transitions, oldest first.
    pub fn history(&self, name: &str) -> Vec<Transition> {
        self.members
            .get(name)
            .map(|e| e.history.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records a served transition of `name` and returns its cause.
    pub fn transition(&mut self, name: &Arc<str>, f: &Facts<'_>) -> Cause {
        let last_heard = self.last_heard(f.addr);
        let e = self.members.entry(name.clone()).or_default();
        let cause = explain(e, f, last_heard);
        e.history.push_back(Transition {
            at_ms: f.now.as_millis(),
            from: f.from,
            to: f.to,
            generation: f.generation,
            cause: cause.clone(),
        });
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

/// The cause of a transition, from the member's entry and the facts.
fn explain(e: &Entry, f: &Facts<'_>, last_heard: Option<Time>) -> Cause {
    let s = e
        .suspicion
        .as_ref()
        .filter(|s| s.generation == f.generation);
    let mut c = Cause {
        reason: CauseKind::Alive,
        probe_failed: s.is_some_and(|s| s.probe_failed),
        confirmations: s.map(|s| s.confirmations).unwrap_or(0),
        accusers: s
            .map(|s| s.accusers.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default(),
        last_heard_ms: last_heard.map(Time::as_millis),
        refuted: false,
        guard: None,
        by: e.force_left.clone(),
        text: String::new(),
    };
    let newer = e.generation.is_some_and(|g| g < f.generation);
    let failure = || {
        if e.replaced {
            CauseKind::Replaced
        } else if e.timed_out_here {
            CauseKind::SuspicionTimeout
        } else {
            CauseKind::DownNotice
        }
    };
    c.reason = match f.to {
        ServedStatus::Alive if f.from.is_none() => CauseKind::Joined,
        ServedStatus::Alive if newer => CauseKind::Restarted,
        ServedStatus::Alive if f.from == Some(ServedStatus::Suspect) => {
            c.refuted = true;
            CauseKind::Refuted
        }
        ServedStatus::Alive => CauseKind::Alive,
        ServedStatus::Suspect => CauseKind::Suspected,
        ServedStatus::Left if e.force_left.is_some() => CauseKind::ForceLeft,
        ServedStatus::Left => CauseKind::Left,
        ServedStatus::Down if e.force_left.is_some() => CauseKind::ForceLeft,
        ServedStatus::Down if f.from == Some(ServedStatus::Held) => CauseKind::Released,
        ServedStatus::Down => failure(),
        ServedStatus::Held => CauseKind::Held,
    };
    c.guard = match (f.to, c.reason) {
        (ServedStatus::Held, _) => f.hold.clone(),
        (_, CauseKind::Released) => Some(format!("released by the guard ({})", f.guard_state)),
        (_, CauseKind::ForceLeft) => Some("released by the operator".into()),
        (ServedStatus::Down, _) if f.guard_off => Some("guard off".into()),
        (ServedStatus::Down, _) if !f.enforce => Some(match &f.hold {
            Some(h) => format!("shadow mode, would be {h}"),
            None => "shadow mode, would remove it too".into(),
        }),
        (ServedStatus::Down, _) => Some(format!(
            "removed, under the limit (guard {})",
            f.guard_state
        )),
        _ => None,
    };
    c.text = sentence(&c, f, e);
    c
}

/// The cause in words: `suspicion timed out here (our probe failed); 3 confirmations from
/// a, b, c; last heard 7.2 s ago; no refutation; guard: removed, under the limit`.
fn sentence(c: &Cause, f: &Facts<'_>, e: &Entry) -> String {
    let mut t = String::new();
    let how = if c.probe_failed {
        "our own probe failed"
    } else {
        "heard from the cluster"
    };
    match c.reason {
        CauseKind::Joined => t.push_str("joined"),
        CauseKind::Restarted => {
            let _ = write!(t, "came back as generation {}", f.generation);
            if let Some(g) = e.generation {
                let _ = write!(t, " (was {g}): restarted or rejoined");
            }
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
            let kind = if e.replaced {
                "its address was taken over".to_string()
            } else if e.timed_out_here {
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
                let ago = f.now.as_millis().saturating_sub(ms);
                let _ = write!(
                    t,
                    "; last heard {}.{} s ago",
                    ago / 1000,
                    (ago % 1000) / 100
                );
            }
            None => t.push_str("; never heard from directly"),
        }
    }
    if failure && f.to != ServedStatus::Suspect {
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
