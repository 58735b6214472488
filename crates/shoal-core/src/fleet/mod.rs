//! Fleet events and queries (Serf's user events and queries): the wire shapes of
//! `ShoalMsg::Fleet`, their validation at decode, and the node's bounded tables: the Lamport
//! clock, the ids already seen (delivered once), the recent events (listed, and offered in
//! the event anti-entropy), coalescing by name, what is being spread and for how many rounds,
//! the queries this node asked and their answers, and the rate limits.
//!
//! The wire shapes and their validation are `core::fleet_wire` (re-exported here); the
//! query methods are the child module `query`.
//!
//! Pure state: the node (`node/fleet.rs`) decides when to send and what to emit. This module
//! must not read a clock (times come in as `Time`), draw randomness (ids come from the node's
//! seeded rng) or do I/O. Every table here is bounded by a constant; a datagram cannot grow
//! any of them past it.

use crate::hash::{mix, FixedHashMap, FixedHashSet, HashSeed};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::fleet_wire::check_payload;
pub(crate) use crate::fleet_wire::{
    check_name, FleetError, FleetMsg, Query, QueryFilter, UserEvent, MAX_EVENTS_PER_MSG,
    MAX_PAYLOAD, MAX_QUERY_TIMEOUT, QUERY_BURST,
};

/// The queries: ours (tracking, acks, answers, status, timeout) and those open here.
mod query;
pub(crate) use query::default_query_timeout;

/// Default payload bound of an event or query (Serf's 512 bytes).
pub const DEFAULT_PAYLOAD_MAX: usize = 512;
/// Default bound of one query answer.
pub const DEFAULT_ANSWER_MAX: usize = 1024;
/// Recent events kept (listed, and offered in the event anti-entropy).
pub(crate) const RECENT_EVENTS: usize = 64;
/// Ids of events and queries remembered as seen (delivered once). Past it, the oldest is
/// forgotten and events at or below its Lamport time are refused as too old.
pub(crate) const SEEN_IDS: usize = 4096;
/// Items being spread at once (newer ones push out the oldest).
pub(crate) const MAX_SPREADING: usize = 64;
/// Offered ids this node asked for recently (not asked again until `WANT_RETRY` passed).
pub(crate) const MAX_WANTED: usize = 256;
/// Offers a node sends per round to members that just came up (a mass join cannot make
/// every spreading node offer to every joiner).
pub(crate) const NEW_MEMBER_OFFERS: u32 = 16;
/// Event names whose latest Lamport time is kept for coalescing.
pub(crate) const MAX_COALESCE_NAMES: usize = 1024;
/// Queries this node asked that are kept with their answers.
pub(crate) const MAX_OUR_QUERIES: usize = 16;
/// Queries received that may still be answered (handler running).
pub(crate) const MAX_OPEN_QUERIES: usize = 64;
/// Answers kept per query (past it they are counted, not kept).
pub(crate) const MAX_ANSWERS: usize = 10_000;
pub(crate) const QUERY_REFILL: Duration = Duration::from_secs(1);
/// Queries this node processes (relays, answers): a burst of this many, then one per
/// `QUERY_IN_REFILL`; past it they are dropped and counted (a storm stops here).
pub(crate) const QUERY_IN_BURST: u32 = 40;
pub(crate) const QUERY_IN_REFILL: Duration = Duration::from_millis(50);
/// Serf's query timeout multiplier: `gossip_interval x 16 x ceil(log10(N + 1))`.
pub(crate) const QUERY_TIMEOUT_MULT: u32 = 16;
/// How long after the last event the event anti-entropy keeps running.
pub(crate) const EVENT_SYNC_FOR: Duration = Duration::from_secs(3600);

/// Bounds an operator may set (config keys `event_payload_max`, `query_answer_max`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetConfig {
    /// Largest payload of an event or query this node sends.
    pub payload_max: usize,
    /// Largest answer this node sends to a query.
    pub answer_max: usize,
    /// Query names this node has a handler for (`*`: every name): it acks them saying an
    /// answer follows.
    pub query_handlers: Vec<String>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            payload_max: DEFAULT_PAYLOAD_MAX,
            answer_max: DEFAULT_ANSWER_MAX,
            query_handlers: Vec::new(),
        }
    }
}

impl FleetConfig {
    /// Checks the bounds; the error says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_PAYLOAD).contains(&self.payload_max) {
            return Err(format!("event_payload_max must be 1..={MAX_PAYLOAD} bytes"));
        }
        if !(1..=MAX_PAYLOAD).contains(&self.answer_max) {
            return Err(format!("query_answer_max must be 1..={MAX_PAYLOAD} bytes"));
        }
        Ok(())
    }

    fn answers(&self, name: &str) -> bool {
        self.query_handlers.iter().any(|h| h == "*" || h == name)
    }
}

/// A token bucket on the node's clock.
#[derive(Clone, Debug)]
struct Bucket {
    burst: u32,
    refill: Duration,
    tokens: u32,
    last: Time,
}

impl Bucket {
    fn new(burst: u32, refill: Duration) -> Self {
        Bucket {
            burst,
            refill,
            tokens: burst,
            last: Time::ZERO,
        }
    }

    /// Takes a token, or says in how many ms the next one comes.
    fn take(&mut self, now: Time) -> Result<(), u64> {
        let step = self.refill.as_millis().max(1) as u64;
        let gained = now.as_millis().saturating_sub(self.last.as_millis()) / step;
        if gained > 0 {
            self.tokens = self
                .tokens
                .saturating_add(gained.min(u64::from(u32::MAX)) as u32)
                .min(self.burst);
            self.last = Time(self.last.0 + gained * step);
        }
        if self.tokens == 0 {
            return Err(step - now.as_millis().saturating_sub(self.last.as_millis()));
        }
        if self.tokens == self.burst {
            self.last = now;
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// Something being pushed to random peers, for `rounds` more rounds.
#[derive(Clone, Debug)]
pub(crate) enum Spread {
    Event(UserEvent),
    Query(Query),
}

#[derive(Clone, Debug)]
struct Spreading {
    item: Spread,
    rounds: u32,
}

/// An event as this node received it (for listing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub at: Time,
    pub event: UserEvent,
}

/// What this node knows of a query it asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryStatus {
    /// The query's id.
    pub id: u64,
    /// The query's name.
    pub name: String,
    /// Members the served view has alive (or suspect) that match the filter.
    pub expected: usize,
    /// Members that match but are cut off (served `held` by the guard): not reached.
    pub cut_off: usize,
    /// Members that acknowledged the query.
    pub acks: usize,
    /// Answers kept (at most `MAX_ANSWERS`; `answers_dropped` counts the rest).
    pub answers: Vec<QueryAnswer>,
    /// Answers dropped past `MAX_ANSWERS`.
    pub answers_dropped: usize,
    /// Members that said an answer follows and have not answered yet.
    pub pending: usize,
    /// How long the query waits for answers (ms).
    pub timeout_ms: u64,
    /// Every expected member answered (or acked without a handler), or the timeout passed.
    pub done: bool,
    /// The timeout passed before every expected member answered.
    pub timed_out: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAnswer {
    pub from: String,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug)]
struct OurQuery {
    status: QueryStatus,
    deadline: Time,
    expected: BTreeSet<String>,
    acked: BTreeSet<String>,
    answering: BTreeSet<String>,
    answered: BTreeSet<String>,
}

/// A query received and matched here, answerable until its deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OpenQuery {
    pub origin: String,
    pub deadline: Time,
}

/// What receiving an event or query did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// New: deliver it and spread it.
    New,
    /// Seen before (or older than what is remembered): dropped.
    Seen,
    /// A newer same-name event was already delivered: not delivered (coalesced).
    Superseded,
    /// A query past the rate limit of queries processed: dropped.
    RateLimited,
}

/// What a node persists of its events (in its snapshot) so that a restart delivers nothing
/// twice and lists what it received (Serf's snapshot keeps its Lamport clocks the same way):
/// the clock, the ids seen with their Lamport times, the floor, the latest time per
/// coalescing name, and the recent events. Bounded as the tables are; `Fleet::restore`
/// checks it again (the file is input like a datagram).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetMemory {
    pub clock: u64,
    pub floor: u64,
    /// (id, Lamport time), oldest first.
    pub seen: Vec<(u64, u64)>,
    pub latest: Vec<(String, u64)>,
    /// Oldest first.
    pub recent: Vec<UserEvent>,
}

/// The node's fleet state: every table bounded.
pub(crate) struct Fleet {
    pub cfg: FleetConfig,
    clock: u64,
    seen: FixedHashSet<u64>,
    seen_order: VecDeque<(u64, u64)>,
    /// Lamport time at or below which events are refused as too old (forgotten ids).
    floor: u64,
    recent: VecDeque<Received>,
    latest: FixedHashMap<String, u64>,
    spreading: VecDeque<Spreading>,
    ours: BTreeMap<u64, OurQuery>,
    open: BTreeMap<u64, OpenQuery>,
    out_rate: Bucket,
    in_rate: Bucket,
    /// Offered ids asked for, and when (one `Want` per id per retry period).
    wanted: VecDeque<(u64, Time)>,
    /// When the last event arrived (the event anti-entropy runs for `EVENT_SYNC_FOR` after).
    pub last_event: Option<Time>,
    /// The memory changed since the node last handed out a snapshot.
    pub changed: bool,
    /// Queries of ours that ended at their timeout with acks or answers missing.
    pub timed_out: u64,
    /// Offers sent to members that just came up, this round.
    new_member_offers: u32,
}

impl Fleet {
    pub(crate) fn new(cfg: FleetConfig, hashes: HashSeed) -> Self {
        Fleet {
            cfg,
            clock: 0,
            seen: hashes.set(),
            seen_order: VecDeque::new(),
            floor: 0,
            recent: VecDeque::new(),
            latest: hashes.map(),
            spreading: VecDeque::new(),
            ours: BTreeMap::new(),
            open: BTreeMap::new(),
            out_rate: Bucket::new(QUERY_BURST, QUERY_REFILL),
            in_rate: Bucket::new(QUERY_IN_BURST, QUERY_IN_REFILL),
            wanted: VecDeque::new(),
            last_event: None,
            changed: false,
            timed_out: 0,
            new_member_offers: 0,
        }
    }

    /// What to persist (see `FleetMemory`); `None` when nothing happened yet.
    pub(crate) fn memory(&self) -> Option<FleetMemory> {
        if self.clock == 0 && self.seen_order.is_empty() {
            return None;
        }
        Some(FleetMemory {
            clock: self.clock,
            floor: self.floor,
            seen: self.seen_order.iter().copied().collect(),
            latest: self.latest.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            recent: self.recent.iter().map(|r| r.event.clone()).collect(),
        })
    }

    /// Takes back what a previous life persisted, before anything arrived: past the bounds
    /// the oldest entries are dropped, invalid events skipped. Returns how many recent
    /// events were restored.
    pub(crate) fn restore(&mut self, now: Time, mem: FleetMemory) -> usize {
        self.clock = self.clock.max(mem.clock);
        self.floor = self.floor.max(mem.floor);
        let skip = mem.seen.len().saturating_sub(SEEN_IDS);
        for (id, lt) in mem.seen.into_iter().skip(skip) {
            if self.seen.insert(id) {
                self.seen_order.push_back((id, lt));
            }
        }
        let skip = mem.latest.len().saturating_sub(MAX_COALESCE_NAMES);
        for (name, lt) in mem.latest.into_iter().skip(skip) {
            if check_name(&name).is_ok() {
                self.latest.insert(name, lt);
            }
        }
        let skip = mem.recent.len().saturating_sub(RECENT_EVENTS);
        for e in mem.recent.into_iter().skip(skip) {
            let events = FleetMsg::Events {
                events: vec![e.clone()],
            };
            if events.validate().is_ok() {
                self.recent.push_back(Received { at: now, event: e });
            }
        }
        self.recent.len()
    }

    /// The Lamport clock (the next time this node stamps).
    pub(crate) fn clock(&self) -> u64 {
        self.clock
    }

    /// Takes a Lamport time for something this node sends.
    pub(crate) fn tick_clock(&mut self) -> u64 {
        let t = self.clock;
        self.clock += 1;
        self.changed = true;
        t
    }

    /// Witnesses a received Lamport time.
    pub(crate) fn witness(&mut self, ltime: u64) {
        self.clock = self.clock.max(ltime.saturating_add(1));
    }

    /// Checks a local event before it is fired.
    pub(crate) fn check_event(&self, name: &str, payload: &[u8]) -> Result<(), FleetError> {
        check_name(name)?;
        check_payload(payload, self.cfg.payload_max)
    }

    /// Records `id` as seen; false when it was already (or is too old to tell).
    fn see(&mut self, id: u64, ltime: u64) -> bool {
        if ltime <= self.floor && self.floor > 0 {
            return false;
        }
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back((id, ltime));
        while self.seen_order.len() > SEEN_IDS {
            if let Some((old, lt)) = self.seen_order.pop_front() {
                self.seen.remove(&old);
                self.floor = self.floor.max(lt);
            }
        }
        true
    }

    /// A user event arrived (or was fired here): whether to deliver and spread it.
    pub(crate) fn receive_event(&mut self, now: Time, e: &UserEvent) -> Outcome {
        self.witness(e.ltime);
        if !self.see(e.id, e.ltime) {
            return Outcome::Seen;
        }
        if e.coalesce {
            if self.latest.get(&e.name).is_some_and(|&t| t > e.ltime) {
                return Outcome::Superseded;
            }
            if self.latest.len() >= MAX_COALESCE_NAMES && !self.latest.contains_key(&e.name) {
                // Forget the name with the oldest latest time.
                if let Some(k) = self
                    .latest
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
                {
                    self.latest.remove(&k);
                }
            }
            self.latest.insert(e.name.clone(), e.ltime);
            // An older same-name event stops spreading and leaves the recent list.
            let older = |x: &UserEvent| x.coalesce && x.name == e.name && x.ltime < e.ltime;
            self.recent.retain(|r| !older(&r.event));
            self.spreading
                .retain(|s| !matches!(&s.item, Spread::Event(x) if older(x)));
        }
        self.recent.push_back(Received {
            at: now,
            event: e.clone(),
        });
        while self.recent.len() > RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.last_event = Some(now);
        self.changed = true;
        Outcome::New
    }

    /// A query arrived (or was asked here): whether it is new and within the rate limit.
    pub(crate) fn receive_query(&mut self, now: Time, q: &Query) -> Outcome {
        self.witness(q.ltime);
        if self.seen.contains(&q.id) {
            return Outcome::Seen;
        }
        if self.in_rate.take(now).is_err() {
            return Outcome::RateLimited;
        }
        if !self.see(q.id, q.ltime) {
            return Outcome::Seen;
        }
        self.changed = true;
        Outcome::New
    }

    /// Spreads `item` for `rounds` rounds.
    pub(crate) fn spread(&mut self, item: Spread, rounds: u32) {
        self.spreading.push_back(Spreading { item, rounds });
        while self.spreading.len() > MAX_SPREADING {
            self.spreading.pop_front();
        }
    }

    pub(crate) fn is_spreading(&self) -> bool {
        !self.spreading.is_empty()
    }

    /// Ids of the events being spread, for a member that just came up, while this round's
    /// budget of such offers (`NEW_MEMBER_OFFERS`) lasts: a joiner hears of what is in
    /// flight from the first node that learns of it, not only from random rounds later.
    pub(crate) fn offer_to_new_member(&mut self) -> Vec<u64> {
        if self.new_member_offers >= NEW_MEMBER_OFFERS {
            return Vec::new();
        }
        let ids: Vec<u64> = self
            .spreading
            .iter()
            .filter_map(|s| match &s.item {
                Spread::Event(e) => Some(e.id),
                Spread::Query(_) => None,
            })
            .collect();
        if !ids.is_empty() {
            self.new_member_offers += 1;
        }
        ids
    }

    /// One push round: what to send to each peer this round (events, then queries).
    pub(crate) fn round(&mut self) -> (Vec<UserEvent>, Vec<Query>) {
        self.new_member_offers = 0;
        let mut events = Vec::new();
        let mut queries = Vec::new();
        for s in self.spreading.iter_mut() {
            s.rounds = s.rounds.saturating_sub(1);
            match &s.item {
                Spread::Event(e) => events.push(e.clone()),
                Spread::Query(q) => queries.push(q.clone()),
            }
        }
        self.spreading.retain(|s| s.rounds > 0);
        (events, queries)
    }

    /// Recent events, oldest first.
    pub(crate) fn recent(&self) -> impl Iterator<Item = &Received> {
        self.recent.iter()
    }

    /// (fingerprint, count) of the recent events.
    pub(crate) fn fingerprint(&self) -> (u64, u32) {
        let fp = self
            .recent
            .iter()
            .fold(0u64, |acc, r| acc ^ mix(r.event.id));
        (fp, self.recent.len() as u32)
    }

    pub(crate) fn recent_ids(&self) -> Vec<u64> {
        self.recent.iter().map(|r| r.event.id).collect()
    }

    /// Recent events whose id is not in `ids`.
    pub(crate) fn missing_from(&self, ids: &[u64]) -> Vec<UserEvent> {
        self.recent
            .iter()
            .filter(|r| !ids.contains(&r.event.id))
            .map(|r| r.event.clone())
            .collect()
    }

    /// Of the offered `ids`, those this node has not seen nor asked for within `retry`:
    /// what to ask the offerer for (each recorded as asked).
    pub(crate) fn want(&mut self, now: Time, ids: &[u64], retry: Duration) -> Vec<u64> {
        while self
            .wanted
            .front()
            .is_some_and(|(_, t)| now.since(*t) >= retry)
        {
            self.wanted.pop_front();
        }
        let mut want = Vec::new();
        for &id in ids {
            if self.seen.contains(&id) || self.wanted.iter().any(|(w, _)| *w == id) {
                continue;
            }
            want.push(id);
            self.wanted.push_back((id, now));
            while self.wanted.len() > MAX_WANTED {
                self.wanted.pop_front();
            }
        }
        want
    }

    /// The recent events among `ids` (what a `Want` asks for).
    pub(crate) fn events_by_id(&self, ids: &[u64]) -> Vec<UserEvent> {
        self.recent
            .iter()
            .filter(|r| ids.contains(&r.event.id))
            .map(|r| r.event.clone())
            .collect()
    }
}

/// Rounds each node pushes a new item: `2 + ceil(log10(N + 1))` (a node misses an item with
/// probability about `exp(-fanout x rounds)`: 1.5e-8 at N = 1,000, fanout 3).
pub(crate) fn spread_rounds(members: usize) -> u32 {
    2 + log10_ceil(members)
}

/// `ceil(log10(n + 1))`, at least 1.
pub(crate) fn log10_ceil(n: usize) -> u32 {
    let mut x = n as u64 + 1;
    let mut d = 0;
    let mut exact = true;
    while x >= 10 {
        if !x.is_multiple_of(10) {
            exact = false;
        }
        x /= 10;
        d += 1;
    }
    let d = if exact && x == 1 { d } else { d + 1 };
    d.max(1)
}

#[cfg(test)]
mod tests;
