//! The wire shapes of fleet events and queries (`ShoalMsg::Fleet`): events, the event
//! digest, queries, acks and answers, their errors, and their validation at decode (names,
//! sizes, counts). Re-exported by `core::fleet`, which owns the node's tables.
//!
//! Data and checks only: no state, no decisions.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

// The wire's limits (re-exported by `core::fleet`, which also bounds its tables with them).
/// Longest event or query name.
pub(crate) const MAX_NAME: usize = 128;
/// Largest payload on the wire (an event's, a query's or an answer's); the configured bounds
/// (`FleetConfig`) are at most this, so that any message fits one datagram.
pub(crate) const MAX_PAYLOAD: usize = 1024;
/// Most events in one `Events` message.
pub(crate) const MAX_EVENTS_PER_MSG: usize = 32;
/// Most ids a `Have` may list.
pub(crate) const MAX_HAVE_IDS: usize = 128;
/// Filter entries of a query (nodes, tags).
pub(crate) const MAX_FILTER_ENTRIES: usize = 32;
/// Longest query timeout.
pub(crate) const MAX_QUERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Queries this node may start: a burst of this many, then one per `fleet::QUERY_REFILL`.
pub(crate) const QUERY_BURST: u32 = 5;

/// A user event as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Random, from the sender's seeded rng: what "seen" means.
    pub id: u64,
    /// The sender's Lamport time when it fired the event.
    pub ltime: u64,
    /// The member that fired it.
    pub origin: String,
    /// The event's name (validated as a member name).
    pub name: String,
    /// The event's payload (bounded).
    pub payload: Vec<u8>,
    /// Same-name events coalesce: a newer one supersedes an older one not yet delivered.
    pub coalesce: bool,
}

/// Which members a query asks: all that match every given part (empty: everyone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryFilter {
    /// Member names (any of them).
    pub nodes: Vec<String>,
    /// `key=value` tags the member must all carry.
    pub tags: Vec<(String, String)>,
    /// A service the member must offer.
    pub service: Option<String>,
}

impl QueryFilter {
    /// Whether a member with this name and metadata matches.
    pub fn matches(&self, name: &str, meta: &crate::meta::NodeMeta) -> bool {
        (self.nodes.is_empty() || self.nodes.iter().any(|n| n == name))
            && self
                .tags
                .iter()
                .all(|(k, v)| meta.tags.get(k).is_some_and(|x| x == v))
            && self
                .service
                .as_ref()
                .is_none_or(|s| meta.services.values().any(|svc| svc.name == *s))
    }

    fn validate(&self) -> Result<(), FleetError> {
        if self.nodes.len() + self.tags.len() > MAX_FILTER_ENTRIES {
            return Err(FleetError::TooMany("filter entries", MAX_FILTER_ENTRIES));
        }
        for n in &self.nodes {
            crate::identity::validate_name(n).map_err(|_| FleetError::BadName(n.clone()))?;
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.len() > MAX_NAME || v.len() > MAX_NAME {
                return Err(FleetError::BadName(format!("{k}={v}")));
            }
        }
        if let Some(s) = &self.service {
            check_name(s)?;
        }
        Ok(())
    }
}

/// A query as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The query's id (unique per origin).
    pub id: u64,
    /// Lamport time at which it was asked.
    pub ltime: u64,
    /// The member that asks: answers go to its address as SWIM knows it.
    pub origin: String,
    /// The query's name.
    pub name: String,
    /// The query's payload (bounded).
    pub payload: Vec<u8>,
    /// Which members it is for.
    pub filter: QueryFilter,
    /// How long the origin collects answers.
    pub timeout_ms: u32,
}

/// `ShoalMsg::Fleet`: events, their anti-entropy, queries and answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FleetMsg {
    /// User events being spread (a push round, or what a `Have` lacked).
    Events {
        /// The events.
        events: Vec<UserEvent>,
    },
    /// Event anti-entropy: the fingerprint of the sender's recent events and, when `ids` is
    /// given, their ids. The receiver, when its fingerprint differs, pushes what `ids` lacks
    /// and while `replies > 0` answers with its own `Have` (ids listed, `replies - 1`).
    Have {
        /// Fingerprint of the sender's recent events.
        fingerprint: u64,
        /// How many recent events the sender holds.
        count: u32,
        /// Their ids, when listed.
        ids: Option<Vec<u64>>,
        /// Answers still wanted.
        replies: u8,
    },
    /// A query being spread.
    Query(Query),
    /// "I received query `id` and match it; an answer follows when `answering`."
    Ack {
        /// The query acknowledged.
        id: u64,
        /// The member acknowledging.
        from: String,
        /// An answer follows.
        answering: bool,
    },
    /// A member's answer to query `id`.
    Answer {
        /// The query answered.
        id: u64,
        /// The member answering.
        from: String,
        /// Its handler's output.
        payload: Vec<u8>,
    },
    /// Ids of events the sender is spreading (the later push rounds send ids, not events):
    /// the receiver asks for those it has not seen.
    Offer {
        /// The offered ids.
        ids: Vec<u64>,
    },
    /// Ids of offered events the sender lacks: answered with one datagram of them.
    Want {
        /// The wanted ids.
        ids: Vec<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
/// Why an event, a query or an answer was refused.
pub enum FleetError {
    #[error("name {0:?} is invalid: 1 to 128 bytes of letters, digits, '-', '_', '.' or ':'")]
    /// The name is not a valid name.
    BadName(String),
    #[error("payload is {size} bytes; the limit is {limit} (event_payload_max)")]
    /// The payload is over its bound.
    PayloadTooLarge {
        /// Its size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    #[error("answer is {size} bytes; the limit is {limit}")]
    /// The answer is over its bound.
    AnswerTooLarge {
        /// Its size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    #[error("more {0} than the limit of {1}")]
    /// A table is full (which, and its bound).
    TooMany(&'static str, usize),
    #[error("query timeout must be between 1 ms and {}s", MAX_QUERY_TIMEOUT.as_secs())]
    /// The query timeout is zero or too long.
    BadTimeout,
    #[error(
        "too many queries: at most {QUERY_BURST} at once, then one per second; retry in {0} ms"
    )]
    /// Too many queries: retry after this many ms.
    RateLimited(u64),
    #[error("no open query {0} on this node (it expired or never came)")]
    /// No query with this id.
    NoSuchQuery(u64),
}

/// Event and query names: 1 to `MAX_NAME` bytes of `[A-Za-z0-9_.:-]`.
pub fn check_name(name: &str) -> Result<(), FleetError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(FleetError::BadName(name.chars().take(MAX_NAME).collect()))
    }
}

pub(crate) fn check_payload(p: &[u8], limit: usize) -> Result<(), FleetError> {
    if p.len() > limit {
        return Err(FleetError::PayloadTooLarge {
            size: p.len(),
            limit,
        });
    }
    Ok(())
}

impl FleetMsg {
    /// Validates every name, size and count once, right after decode.
    pub fn validate(&self) -> Result<(), FleetError> {
        match self {
            FleetMsg::Events { events } => {
                if events.len() > MAX_EVENTS_PER_MSG {
                    return Err(FleetError::TooMany("events", MAX_EVENTS_PER_MSG));
                }
                for e in events {
                    check_name(&e.name)?;
                    crate::identity::validate_name(&e.origin)
                        .map_err(|_| FleetError::BadName(e.origin.clone()))?;
                    check_payload(&e.payload, MAX_PAYLOAD)?;
                }
            }
            FleetMsg::Have { ids, .. } => {
                if ids.as_ref().is_some_and(|i| i.len() > MAX_HAVE_IDS) {
                    return Err(FleetError::TooMany("ids", MAX_HAVE_IDS));
                }
            }
            FleetMsg::Offer { ids } | FleetMsg::Want { ids } => {
                if ids.len() > MAX_HAVE_IDS {
                    return Err(FleetError::TooMany("ids", MAX_HAVE_IDS));
                }
            }
            FleetMsg::Query(q) => {
                check_name(&q.name)?;
                crate::identity::validate_name(&q.origin)
                    .map_err(|_| FleetError::BadName(q.origin.clone()))?;
                check_payload(&q.payload, MAX_PAYLOAD)?;
                q.filter.validate()?;
                if q.timeout_ms == 0 || u128::from(q.timeout_ms) > MAX_QUERY_TIMEOUT.as_millis() {
                    return Err(FleetError::BadTimeout);
                }
            }
            FleetMsg::Ack { from, .. } => {
                crate::identity::validate_name(from)
                    .map_err(|_| FleetError::BadName(from.clone()))?;
            }
            FleetMsg::Answer { from, payload, .. } => {
                crate::identity::validate_name(from)
                    .map_err(|_| FleetError::BadName(from.clone()))?;
                check_payload(payload, MAX_PAYLOAD)?;
            }
        }
        Ok(())
    }
}
