//! Queries in the simulator: each `query` fault's outcome as its origin's core reports it
//! (`Node::query_status`, what `shoal query` prints), against the nodes that could answer.
//!
//! Owns the figures only: the world asks the query, runs the handlers (every node answers
//! `sim-query` after `HANDLER_MS`, as the agent's handler task calls `query_answer`) and
//! hands over each status it reads after an input of the origin, as the agent's API does
//! after each flush. Must not decide anything the core does.

use crate::quantiles::Quantiles;
use serde::{Deserialize, Serialize};
use shoal_core::QueryStatus;
use std::collections::BTreeMap;

/// The query name every simulated node has a handler for.
pub const QUERY_NAME: &str = "sim-query";
/// How long a simulated handler runs before its answer is handed to the core.
pub const HANDLER_MS: u64 = 10;

/// One query's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryOutcome {
    pub from: u32,
    pub fired_s: f64,
    pub timeout_ms: u64,
    /// The origin's counts at the end (its timeout), as `shoal query` prints them.
    pub expected: usize,
    pub cut_off: usize,
    pub acks: usize,
    pub answers: usize,
    pub pending: usize,
    pub timed_out: bool,
    /// Nodes that matched and ran from the query to its end (the answers it could get).
    pub reachable: usize,
    /// When the origin's status said done (every expected ack and promised answer), ms
    /// after the query; `None`: it ran to its timeout.
    pub done_ms: Option<f64>,
    /// Arrival of each ack and answer at the origin, ms after the query.
    pub ack_latency_ms: Quantiles,
    pub answer_latency_ms: Quantiles,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryFigures {
    pub queries: Vec<QueryOutcome>,
    /// Bytes of fleet datagrams per node over the run (queries, acks, answers; events too).
    pub fleet_bytes_per_node: f64,
}

struct Tracked {
    from: u32,
    fired_ms: u64,
    last: QueryStatus,
    acks_ms: Vec<f64>,
    answers_ms: Vec<f64>,
    done_ms: Option<f64>,
    reachable: usize,
}

/// Queries asked, by id.
#[derive(Default)]
pub struct Queries {
    asked: BTreeMap<u64, Tracked>,
}

impl Queries {
    pub fn is_empty(&self) -> bool {
        self.asked.is_empty()
    }

    pub fn asked(&mut self, from: u32, at_ms: u64, status: QueryStatus) {
        let t = Tracked {
            from,
            fired_ms: at_ms,
            acks_ms: Vec::new(),
            answers_ms: Vec::new(),
            done_ms: None,
            reachable: 0,
            last: status,
        };
        self.asked.insert(t.last.id, t);
    }

    /// The queries `origin` asked that are still open (to read their status after an input).
    pub fn open_of(&self, origin: u32) -> Vec<u64> {
        self.asked
            .iter()
            .filter(|(_, t)| t.from == origin && !t.last.done)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A status the origin's core gave at `at_ms`.
    pub fn status(&mut self, at_ms: u64, s: QueryStatus) {
        let Some(t) = self.asked.get_mut(&s.id) else {
            return;
        };
        let since = at_ms.saturating_sub(t.fired_ms) as f64;
        let new_acks = s.acks.saturating_sub(t.last.acks);
        t.acks_ms.extend(std::iter::repeat_n(since, new_acks));
        let got = s.answers.len() + s.answers_dropped;
        let had = t.last.answers.len() + t.last.answers_dropped;
        t.answers_ms
            .extend(std::iter::repeat_n(since, got.saturating_sub(had)));
        if s.done && !s.timed_out && t.done_ms.is_none() {
            t.done_ms = Some(since);
        }
        t.last = s;
    }

    /// The nodes that could answer query `id` (matched and ran throughout).
    pub fn reachable(&mut self, id: u64, n: usize) {
        if let Some(t) = self.asked.get_mut(&id) {
            t.reachable = n;
        }
    }

    pub fn fired_ms(&self, id: u64) -> Option<(u32, u64, u64)> {
        self.asked
            .get(&id)
            .map(|t| (t.from, t.fired_ms, t.last.timeout_ms))
    }

    pub fn finish(self, fleet_bytes_per_node: f64) -> QueryFigures {
        let queries = self
            .asked
            .into_values()
            .map(|t| QueryOutcome {
                from: t.from,
                fired_s: t.fired_ms as f64 / 1000.0,
                timeout_ms: t.last.timeout_ms,
                expected: t.last.expected,
                cut_off: t.last.cut_off,
                acks: t.last.acks,
                answers: t.last.answers.len() + t.last.answers_dropped,
                pending: t.last.pending,
                timed_out: t.last.timed_out,
                reachable: t.reachable,
                done_ms: t.done_ms,
                ack_latency_ms: Quantiles::of(t.acks_ms),
                answer_latency_ms: Quantiles::of(t.answers_ms),
            })
            .collect();
        QueryFigures {
            queries,
            fleet_bytes_per_node,
        }
    }
}
