//! Fleet events and queries on the node: firing an event, asking a query, answering one,
//! the push rounds that spread them (`NodeTimer::Fleet`, its own timer: nothing runs while
//! nothing spreads), the event anti-entropy that brings missed events across a healed
//! partition, and the `ShoalMsg::Fleet` messages in.
//!
//! Dissemination: whoever learns a new item pushes it at once to `gossip_fanout` random
//! active peers, then per `gossip_interval` for `fleet::spread_rounds(N) - 1` more rounds
//! pushes queries whole and offers event ids (a peer that lacks one asks for it: `Want`); events are also kept in a
//! bounded recent list whose fingerprint is exchanged with one random peer every
//! `EVENT_SYNC_EVERY x sync_interval` for an hour after the last event (docs/events.md).
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO.

use super::{EventKind, Node, NodeError, NodeTimer};
use crate::fleet::{
    FleetError, FleetMsg, Outcome, Query, QueryFilter, QueryStatus, Spread, UserEvent,
};
use crate::sync::ShoalMsg;
use crate::time::Time;
use crate::truth::{MemberView, ServedStatus};
use rand::RngExt;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// The event anti-entropy runs every this many `sync_interval`s (lan: 30 s, Serf's push-pull).
pub(super) const EVENT_SYNC_EVERY: u32 = 3;

/// A user event as the API and the watch stream show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserEventView {
    /// Unique per event (53 bits, safe in JSON).
    pub id: u64,
    /// The event's name.
    pub name: String,
    /// The payload as text (bytes that are not UTF-8 are replaced).
    pub payload: String,
    /// The sender's Lamport time.
    pub ltime: u64,
    /// The member that fired it.
    pub origin: String,
    /// A newer event of the same name replaces an older one.
    pub coalesce: bool,
}

impl UserEventView {
    /// The view of `e`.
    pub fn of(e: &UserEvent) -> Self {
        UserEventView {
            id: e.id,
            name: e.name.clone(),
            payload: String::from_utf8_lossy(&e.payload).into_owned(),
            ltime: e.ltime,
            origin: e.origin.clone(),
            coalesce: e.coalesce,
        }
    }
}

/// A query this node matched, as the watch stream and handlers see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueryView {
    /// The query's id.
    pub id: u64,
    /// The query's name.
    pub name: String,
    /// Its payload.
    pub payload: String,
    /// Lamport time at which it was asked.
    pub ltime: u64,
    /// The member that asked.
    pub origin: String,
    /// This node has a handler for it: its output is the answer.
    pub answering: bool,
    /// How long it waits for answers (ms).
    pub timeout_ms: u64,
}

/// A recent event with when this node received it (driver time, ms).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecentEvent {
    #[serde(flatten)]
    /// The event.
    pub event: UserEventView,
    /// When this node received it (driver clock, ms).
    pub received_ms: u64,
}

/// Ids fit in 53 bits, so that JSON readers keep them exact.
const ID_MASK: u64 = (1 << 53) - 1;

impl Node {
    /// Fires a user event: delivered here at once, then spread to every member.
    pub fn user_event(
        &mut self,
        now: Time,
        name: &str,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> Result<UserEventView, NodeError> {
        if self.left {
            return Err(NodeError::Left);
        }
        self.now = now;
        if let Err(e) = self.fleet.check_event(name, &payload) {
            if matches!(e, FleetError::PayloadTooLarge { .. }) {
                self.stats.events_too_big += 1;
            }
            return Err(e.into());
        }
        let e = UserEvent {
            id: self.rng.random::<u64>() & ID_MASK,
            ltime: self.fleet.tick_clock(),
            origin: self.cfg.name.clone(),
            name: name.to_string(),
            payload,
            coalesce,
        };
        self.stats.events_fired += 1;
        let fresh = self.take_event(now, e.clone());
        self.push_now(fresh.into_iter().collect(), Vec::new());
        self.after_input(now);
        Ok(UserEventView::of(&e))
    }

    /// Asks a query of the members that match `filter`; `timeout` defaults to Serf's
    /// (`fleet::default_query_timeout`). Follow it with `query_status`.
    pub fn query(
        &mut self,
        now: Time,
        name: &str,
        payload: Vec<u8>,
        filter: QueryFilter,
        timeout: Option<Duration>,
    ) -> Result<QueryStatus, NodeError> {
        if self.left {
            return Err(NodeError::Left);
        }
        self.now = now;
        let q = self.new_query(now, name, payload, filter, timeout)?;
        let members = self.members();
        let mut expected = BTreeSet::new();
        let mut cut_off = 0;
        for m in members.iter().filter(|m| matches_view(&q.filter, m)) {
            match m.status {
                ServedStatus::Alive | ServedStatus::Suspect | ServedStatus::Damped => {
                    expected.insert(m.name.clone());
                }
                ServedStatus::Held | ServedStatus::Restarting => cut_off += 1,
                ServedStatus::Left | ServedStatus::Down => {}
            }
        }
        let deadline = now.plus(Duration::from_millis(u64::from(q.timeout_ms)));
        self.fleet.track_query(&q, deadline, expected, cut_off);
        self.stats.queries_sent += 1;
        self.take_query(now, q.clone());
        self.after_input(now);
        Ok(self.fleet.query_status(now, q.id).expect("just tracked"))
    }

    fn new_query(
        &mut self,
        now: Time,
        name: &str,
        payload: Vec<u8>,
        filter: QueryFilter,
        timeout: Option<Duration>,
    ) -> Result<Query, NodeError> {
        let timeout = timeout.unwrap_or_else(|| {
            crate::fleet::default_query_timeout(
                self.cfg.timings.gossip_interval,
                self.active_peers() + 1,
            )
        });
        if timeout.is_zero() || timeout > crate::fleet::MAX_QUERY_TIMEOUT {
            return Err(FleetError::BadTimeout.into());
        }
        let q = Query {
            id: self.rng.random::<u64>() & ID_MASK,
            ltime: self.fleet.clock(),
            origin: self.cfg.name.clone(),
            name: name.to_string(),
            payload,
            filter,
            timeout_ms: timeout.as_millis() as u32,
        };
        FleetMsg::Query(q.clone()).validate()?;
        self.fleet.check_query(now, name, &q.payload)?;
        self.fleet.tick_clock();
        Ok(q)
    }

    /// What this node knows of a query it asked, as of `now` (past its deadline: done).
    /// Changes nothing but the query's own status.
    pub fn query_status(&mut self, now: Time, id: u64) -> Option<QueryStatus> {
        let st = self.fleet.query_status(now.max(self.now), id);
        self.stats.queries_timed_out = self.fleet.timed_out;
        st
    }

    /// Answers a query this node matched (its handler's output), once, before its deadline.
    pub fn query_answer(&mut self, now: Time, id: u64, payload: Vec<u8>) -> Result<(), NodeError> {
        self.now = now;
        if payload.len() > self.fleet.cfg.answer_max {
            return Err(FleetError::AnswerTooLarge {
                size: payload.len(),
                limit: self.fleet.cfg.answer_max,
            }
            .into());
        }
        let open = self.fleet.take_open(now, id)?;
        self.stats.queries_answered += 1;
        if open.origin == self.cfg.name {
            let me = self.cfg.name.clone();
            if self.fleet.on_answer(now, id, &me, payload) {
                self.stats.query_answers_received += 1;
            }
        } else if let Some(addr) = self.member_addr(&open.origin) {
            let from = self.cfg.name.clone();
            self.send_fleet(addr, FleetMsg::Answer { id, from, payload });
        }
        self.after_input(now);
        Ok(())
    }

    /// Recent user events, oldest first (at most `fleet::RECENT_EVENTS`).
    pub fn recent_events(&self) -> Vec<RecentEvent> {
        self.fleet
            .recent()
            .map(|r| RecentEvent {
                event: UserEventView::of(&r.event),
                received_ms: r.at.as_millis(),
            })
            .collect()
    }

    /// The Lamport clock of events and queries.
    pub fn event_clock(&self) -> u64 {
        self.fleet.clock()
    }

    fn member_addr(&self, name: &str) -> Option<SocketAddr> {
        self.truth
            .get(name)
            .filter(|m| m.state().is_active())
            .map(|m| m.id.addr())
    }

    /// An event fired here or received: delivered and spread when new (returned, for the
    /// caller to push at once: the first round does not wait for the timer).
    fn take_event(&mut self, now: Time, e: UserEvent) -> Option<UserEvent> {
        match self.fleet.receive_event(now, &e) {
            Outcome::New => {
                if *e.origin != *self.cfg.name {
                    self.stats.events_received += 1;
                }
                self.push_event(now, EventKind::UserEvent(UserEventView::of(&e)));
                let rounds = crate::fleet::spread_rounds(self.active_peers() + 1);
                self.fleet.spread(Spread::Event(e.clone()), rounds - 1);
                self.arm_fleet(now);
                return Some(e);
            }
            Outcome::Seen => self.stats.events_duplicate += 1,
            Outcome::Superseded => self.stats.events_coalesced += 1,
            Outcome::RateLimited => {}
        }
        None
    }

    /// A query asked here or received: spread when new, delivered and acked when it matches.
    fn take_query(&mut self, now: Time, q: Query) {
        match self.fleet.receive_query(now, &q) {
            Outcome::RateLimited => {
                self.stats.queries_dropped_rate += 1;
                return;
            }
            Outcome::New => {}
            Outcome::Seen | Outcome::Superseded => return,
        }
        if *q.origin != *self.cfg.name {
            self.stats.queries_received += 1;
        }
        let rounds = crate::fleet::spread_rounds(self.active_peers() + 1);
        self.fleet.spread(Spread::Query(q.clone()), rounds - 1);
        self.arm_fleet(now);
        self.push_now(Vec::new(), vec![q.clone()]);
        if !q.filter.matches(&self.cfg.name, &self.own.meta) {
            return;
        }
        let answering = self.fleet.answers(&q.name);
        let timeout = Duration::from_millis(u64::from(q.timeout_ms));
        if answering {
            self.fleet.open_query(q.id, &q.origin, now.plus(timeout));
        }
        self.push_event(
            now,
            EventKind::Query(QueryView {
                id: q.id,
                name: q.name.clone(),
                payload: String::from_utf8_lossy(&q.payload).into_owned(),
                ltime: q.ltime,
                origin: q.origin.clone(),
                answering,
                timeout_ms: u64::from(q.timeout_ms),
            }),
        );
        let from = self.cfg.name.clone();
        if *q.origin == *self.cfg.name {
            self.fleet.on_ack(now, q.id, &from, answering);
        } else if let Some(addr) = self.member_addr(&q.origin) {
            let ack = FleetMsg::Ack {
                id: q.id,
                from,
                answering,
            };
            self.send_fleet(addr, ack);
        }
    }

    pub(super) fn handle_fleet(&mut self, now: Time, from: SocketAddr, msg: FleetMsg) {
        match msg {
            FleetMsg::Events { events } => {
                let fresh: Vec<UserEvent> = events
                    .into_iter()
                    .filter_map(|e| self.take_event(now, e))
                    .collect();
                self.push_now(fresh, Vec::new());
            }
            FleetMsg::Query(q) => self.take_query(now, q),
            FleetMsg::Have {
                fingerprint,
                count,
                ids,
                replies,
            } => {
                if (fingerprint, count) == self.fleet.fingerprint() {
                    return;
                }
                if let Some(ids) = ids {
                    // One datagram of what the peer lacks, whatever it asked: a digest of a
                    // few bytes must not draw the whole recent list (the rest follows at the
                    // next rounds, which go on while the digests differ).
                    let missing = self.fleet.missing_from(&ids);
                    self.send_events_capped(from, missing, 1);
                }
                if replies > 0 {
                    let (fingerprint, count) = self.fleet.fingerprint();
                    let have = FleetMsg::Have {
                        fingerprint,
                        count,
                        ids: Some(self.fleet.recent_ids()),
                        replies: replies.min(2) - 1,
                    };
                    self.send_fleet(from, have);
                }
            }
            FleetMsg::Offer { ids } => {
                // Offers of one round come from several peers within milliseconds: one
                // `Want` for them. The next round's offer asks again (the answer may have
                // been lost): a loss costs one round, not two.
                let retry = self.cfg.timings.gossip_interval / 2;
                let ids = self.fleet.want(now, &ids, retry);
                if !ids.is_empty() {
                    self.stats.event_wants += 1;
                    self.send_fleet(from, FleetMsg::Want { ids });
                }
            }
            FleetMsg::Want { ids } => {
                let events = self.fleet.events_by_id(&ids);
                self.send_events_capped(from, events, 1);
            }
            FleetMsg::Ack {
                id,
                from: name,
                answering,
            } => {
                // A member speaks for itself: the ack must come from its own address.
                if self.member_addr(&name) != Some(from)
                    || !self.fleet.on_ack(now, id, &name, answering)
                {
                    self.stats.fleet_ignored += 1;
                }
            }
            FleetMsg::Answer {
                id,
                from: name,
                payload,
            } => {
                if self.member_addr(&name) != Some(from)
                    || !self.fleet.on_answer(now, id, &name, payload)
                {
                    self.stats.fleet_ignored += 1;
                } else {
                    self.stats.query_answers_received += 1;
                }
            }
        }
    }

    /// Sends one fleet message, its bytes counted in `stats.fleet_tx_bytes`.
    fn send_fleet(&mut self, dst: SocketAddr, msg: FleetMsg) {
        let before = self.stats.tx_bytes;
        self.send_shoal(dst, &ShoalMsg::Fleet(msg));
        self.stats.fleet_tx_bytes += self.stats.tx_bytes - before;
    }

    /// Sends `events` to `dst`, as few datagrams as fit.
    fn send_events(&mut self, dst: SocketAddr, events: Vec<UserEvent>) {
        self.send_events_capped(dst, events, usize::MAX);
    }

    /// Sends `events` to `dst` in at most `max_datagrams` datagrams (the first ones).
    fn send_events_capped(
        &mut self,
        dst: SocketAddr,
        events: Vec<UserEvent>,
        max_datagrams: usize,
    ) {
        let mut sent = 0usize;
        let budget = self.shoal_budget();
        let mut cur: Vec<UserEvent> = Vec::new();
        let mut len = 8;
        for e in events {
            let l = e.name.len() + e.origin.len() + e.payload.len() + 32;
            if !cur.is_empty()
                && (len + l > budget || cur.len() >= crate::fleet::MAX_EVENTS_PER_MSG)
            {
                let events = std::mem::take(&mut cur);
                self.send_fleet(dst, FleetMsg::Events { events });
                sent += 1;
                if sent >= max_datagrams {
                    return;
                }
                len = 8;
            }
            len += l;
            cur.push(e);
        }
        if !cur.is_empty() {
            self.send_fleet(dst, FleetMsg::Events { events: cur });
        }
    }

    /// One push round: what is spreading, to `gossip_fanout` random active peers.
    fn fleet_round(&mut self, _now: Time) {
        if !self.fleet.is_spreading() {
            return;
        }
        let (events, queries) = self.fleet.round();
        // Events: after the first push (on receipt), offer ids only; a peer that lacks one
        // asks for it. Queries are pushed whole every round (they are short-lived).
        self.push_now(Vec::new(), queries);
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        if !ids.is_empty() {
            for p in self.fanout_peers() {
                self.stats.event_offers += 1;
                self.send_fleet(p, FleetMsg::Offer { ids: ids.clone() });
            }
        }
    }

    /// A member came up (joined, or back): offer it the events in flight.
    pub(super) fn fleet_member_up(&mut self, addr: SocketAddr) {
        let ids = self.fleet.offer_to_new_member();
        if !ids.is_empty() {
            self.stats.event_offers += 1;
            self.send_fleet(addr, FleetMsg::Offer { ids });
        }
    }

    /// `gossip_fanout` random active peers.
    fn fanout_peers(&mut self) -> Vec<SocketAddr> {
        let mut peers = Vec::new();
        self.foca
            .random_members(self.cfg.timings.gossip_fanout, &mut peers, &mut self.rng);
        peers.iter().map(|m| m.id().addr()).collect()
    }

    /// Pushes these to `gossip_fanout` random active peers now.
    fn push_now(&mut self, events: Vec<UserEvent>, queries: Vec<Query>) {
        if events.is_empty() && queries.is_empty() {
            return;
        }
        for p in self.fanout_peers() {
            self.stats.fleet_pushes += 1;
            self.send_events(p, events.clone());
            for q in &queries {
                self.send_fleet(p, FleetMsg::Query(q.clone()));
            }
        }
    }

    /// At start: a node that restored its events (a restart) runs the event anti-entropy
    /// one second in, to catch up with what was fired while it was down.
    pub(super) fn fleet_start(&mut self, now: Time) {
        if self.fleet.last_event.is_some() {
            self.next_event_sync = now.plus(self.cfg.timings.gossip_interval * 5);
            self.arm_fleet(now);
        }
    }

    fn event_sync_every(&self) -> Duration {
        self.cfg.timings.sync_interval * EVENT_SYNC_EVERY
    }

    /// Whether the event anti-entropy is running (an event arrived within the last hour).
    fn event_sync_on(&self, now: Time) -> bool {
        self.fleet
            .last_event
            .is_some_and(|t| now.since(t) < crate::fleet::EVENT_SYNC_FOR)
    }

    /// Arms `NodeTimer::Fleet` for the next push round or event anti-entropy, if any.
    fn arm_fleet(&mut self, now: Time) {
        let mut next: Option<Time> = None;
        if self.fleet.is_spreading() {
            next = Some(now.plus(self.cfg.timings.gossip_interval));
        }
        if self.event_sync_on(now) {
            if self.next_event_sync <= now {
                self.next_event_sync = now.plus(self.event_sync_every());
            }
            next = Some(next.map_or(self.next_event_sync, |n| n.min(self.next_event_sync)));
        }
        if let Some(at) = next {
            if self.fleet_armed.is_none_or(|a| at < a || a <= now) {
                self.fleet_armed = Some(at);
                self.out.timers.push((at, NodeTimer::Fleet));
            }
        }
    }

    /// `NodeTimer::Fleet` fired: a push round, the event anti-entropy when due, expiry.
    pub(super) fn fleet_timer(&mut self, now: Time) {
        if self.fleet_armed.is_some_and(|a| a > now) {
            return; // a later timer stands; this one was superseded
        }
        self.fleet_armed = None;
        if self.left {
            return;
        }
        self.fleet_round(now);
        if self.event_sync_on(now) && now >= self.next_event_sync {
            if let Some(dst) = self.random_peer() {
                self.next_event_sync = now.plus(self.event_sync_every());
                self.stats.event_syncs += 1;
                let (fingerprint, count) = self.fleet.fingerprint();
                let have = FleetMsg::Have {
                    fingerprint,
                    count,
                    ids: None,
                    replies: 2,
                };
                self.send_fleet(dst, have);
            } else {
                // No peer yet (a restart still joining): try again next round.
                self.next_event_sync = now.plus(self.cfg.timings.gossip_interval);
            }
        }
        self.fleet.expire(now);
        self.stats.queries_timed_out = self.fleet.timed_out;
        self.arm_fleet(now);
    }
}

/// Whether a member as served matches a query's filter.
fn matches_view(f: &QueryFilter, m: &MemberView) -> bool {
    (f.nodes.is_empty() || f.nodes.contains(&m.name))
        && f.tags
            .iter()
            .all(|(k, v)| m.tags.get(k).is_some_and(|x| x == v))
        && f.service
            .as_ref()
            .is_none_or(|s| m.services.iter().any(|x| x.service.name == *s))
}
