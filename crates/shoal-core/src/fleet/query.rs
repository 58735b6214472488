//! The queries of `core::fleet` (Serf's queries): starting and tracking a query of ours,
//! taking its acks and answers, its status and timeout, and the queries received here that
//! are answerable until their deadline.
//!
//! A child module of `fleet` (it reaches the fleet's tables). Pure state: must not read a
//! clock (times come in as `Time`) or do I/O; every table stays bounded by its constant.

use super::{
    check_name, log10_ceil, Fleet, FleetError, OpenQuery, OurQuery, Query, QueryAnswer,
    QueryStatus, MAX_ANSWERS, MAX_OPEN_QUERIES, MAX_OUR_QUERIES, MAX_QUERY_TIMEOUT,
    QUERY_TIMEOUT_MULT,
};
use crate::fleet_wire::check_payload;
use crate::time::Time;
use std::collections::BTreeSet;
use std::time::Duration;

impl Fleet {
    /// Starts a query of ours: checks the rate limit and bounds.
    pub(crate) fn check_query(
        &mut self,
        now: Time,
        name: &str,
        payload: &[u8],
    ) -> Result<(), FleetError> {
        check_name(name)?;
        check_payload(payload, self.cfg.payload_max)?;
        self.out_rate.take(now).map_err(FleetError::RateLimited)
    }

    /// Records a query of ours, with the members it expects answers from and how many
    /// matching members are cut off.
    pub(crate) fn track_query(
        &mut self,
        q: &Query,
        deadline: Time,
        expected: BTreeSet<String>,
        cut_off: usize,
    ) {
        while self.ours.len() >= MAX_OUR_QUERIES {
            self.ours.pop_first();
        }
        let status = QueryStatus {
            id: q.id,
            name: q.name.clone(),
            expected: expected.len(),
            cut_off,
            acks: 0,
            answers: Vec::new(),
            answers_dropped: 0,
            pending: 0,
            timeout_ms: u64::from(q.timeout_ms),
            done: expected.is_empty(),
            timed_out: false,
        };
        self.ours.insert(
            q.id,
            OurQuery {
                status,
                deadline,
                expected,
                acked: BTreeSet::new(),
                answering: BTreeSet::new(),
                answered: BTreeSet::new(),
            },
        );
    }

    /// An ack to a query of ours.
    pub(crate) fn on_ack(&mut self, now: Time, id: u64, from: &str, answering: bool) -> bool {
        let Some(q) = self.ours.get_mut(&id) else {
            return false;
        };
        if now >= q.deadline || q.acked.len() >= MAX_ANSWERS {
            return false;
        }
        if q.acked.insert(from.to_string()) {
            q.status.acks += 1;
            if answering && !q.answered.contains(from) {
                q.answering.insert(from.to_string());
            }
        }
        Self::settle(q, now);
        true
    }

    /// An answer to a query of ours (one per member).
    pub(crate) fn on_answer(&mut self, now: Time, id: u64, from: &str, payload: Vec<u8>) -> bool {
        let Some(q) = self.ours.get_mut(&id) else {
            return false;
        };
        if now >= q.deadline || q.answered.contains(from) {
            return false;
        }
        if q.answered.len() >= MAX_ANSWERS {
            q.status.answers_dropped += 1;
            return false;
        }
        q.answered.insert(from.to_string());
        q.answering.remove(from);
        q.status.answers.push(QueryAnswer {
            from: from.to_string(),
            payload,
        });
        Self::settle(q, now);
        true
    }

    /// Updates a query's status; true when it has just timed out (counted once).
    fn settle(q: &mut OurQuery, now: Time) -> bool {
        q.status.pending = q.answering.len();
        let all_acked = q.expected.iter().all(|n| q.acked.contains(n));
        if all_acked && q.answering.is_empty() {
            q.status.done = true;
        }
        if now >= q.deadline && !q.status.done {
            q.status.done = true;
            q.status.timed_out = true;
            return true;
        }
        false
    }

    /// The status of a query of ours, as of `now`.
    pub(crate) fn query_status(&mut self, now: Time, id: u64) -> Option<QueryStatus> {
        let q = self.ours.get_mut(&id)?;
        if Self::settle(q, now) {
            self.timed_out += 1;
        }
        Some(q.status.clone())
    }

    /// A query received and matched: answerable until its deadline.
    pub(crate) fn open_query(&mut self, id: u64, origin: &str, deadline: Time) {
        while self.open.len() >= MAX_OPEN_QUERIES {
            self.open.pop_first();
        }
        self.open.insert(
            id,
            OpenQuery {
                origin: origin.to_string(),
                deadline,
            },
        );
    }

    /// Takes an open query to answer it (once).
    pub(crate) fn take_open(&mut self, now: Time, id: u64) -> Result<OpenQuery, FleetError> {
        match self.open.remove(&id) {
            Some(o) if now < o.deadline => Ok(o),
            _ => Err(FleetError::NoSuchQuery(id)),
        }
    }

    /// Forgets open queries past their deadline, and our queries a minute past theirs.
    pub(crate) fn expire(&mut self, now: Time) {
        for q in self.ours.values_mut() {
            if Self::settle(q, now) {
                self.timed_out += 1;
            }
        }
        self.open.retain(|_, o| now < o.deadline);
        self.ours
            .retain(|_, q| now < q.deadline.plus(Duration::from_secs(60)));
    }

    /// Whether this node has a handler answering queries named `name`.
    pub(crate) fn answers(&self, name: &str) -> bool {
        self.cfg.answers(name)
    }
}

/// The default query timeout (Serf's): `gossip_interval x 16 x ceil(log10(N + 1))`.
pub(crate) fn default_query_timeout(gossip_interval: Duration, members: usize) -> Duration {
    (gossip_interval * QUERY_TIMEOUT_MULT * log10_ceil(members)).min(MAX_QUERY_TIMEOUT)
}
