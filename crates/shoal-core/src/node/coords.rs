//! The node's network coordinates (`core::coordinate`): timing its own probes, sending its
//! coordinate to the members that probe it, taking theirs, and the queries on estimated RTTs.
//!
//! Owns `CoordState` (the coordinate table, the pings in flight, what was last sent to whom)
//! and the `Node` methods around it: `handle_datagram_us` / `handle_timeout_us` (the inputs
//! with a microsecond clock, which RTTs on a LAN need), the drain of foca's probe marks after
//! each input, `ShoalMsg::Coord` in, and the read side (`coordinate`, `coordinates`,
//! `rtt_between`). It must not read a clock: the RTT of a probe is the driver's `now` when
//! the node saw the ack arrive minus its `now` when the node sent the ping.
//!
//! How coordinates travel: a member that answers a direct probe sends the prober its
//! coordinate in a `ShoalMsg::Coord` beside the ack (an older agent counts the kind as later
//! and ignores it), at most when it moved by `RESEND_MOVE_US` since the last it sent that
//! member, or `RESEND_EVERY` passed. Only a member we have pinged recently may give us its
//! coordinate (an unsolicited one is ignored), and a coordinate that is not finite or out of
//! bounds is refused at decode and counted (`Stats::coordinates_refused`).

use super::Node;
use crate::coordinate::{Coordinate, Coordinates, WireCoord};
use crate::identity::NodeId;
use crate::sync::ShoalMsg;
use crate::time::Time;
use foca::ProbeMark;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Pings in flight (or recently answered) kept to time acks and accept coordinates.
const PENDING: usize = 16;
/// A member's coordinate is sent again once ours moved this far since the last sent to it...
const RESEND_MOVE_US: u64 = 25;
/// ... or after this long.
const RESEND_EVERY: Duration = Duration::from_secs(30);

/// One ping of ours: to whom, its number, when it left (µs), and whether its ack came.
#[derive(Debug)]
struct Pending {
    to: NodeId,
    number: u8,
    sent_us: u64,
    acked: bool,
}

/// The node's coordinate state (one field of `Node`).
#[derive(Debug)]
pub(super) struct CoordState {
    table: Coordinates,
    pending: VecDeque<Pending>,
    /// What we last sent each member and when (bounded: cleared when it reaches the table's
    /// bound, which only costs a few early resends).
    sent: BTreeMap<Arc<str>, (Time, Coordinate)>,
}

impl CoordState {
    pub(super) fn new(seed: u64) -> CoordState {
        CoordState {
            table: Coordinates::new(seed ^ 0xC00D),
            pending: VecDeque::new(),
            sent: BTreeMap::new(),
        }
    }
}

/// An estimate between two members, for `shoal rtt` and the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RttEstimate {
    /// Estimated round-trip time in microseconds.
    pub rtt_us: u64,
    /// From this node's own probes of the member (the minimum of its recent round trips),
    /// not from coordinates: only between this node and a member it probed.
    pub measured: bool,
}

impl Node {
    /// `handle_datagram` with the driver's clock in microseconds (RTT samples on a LAN need
    /// better than the core's milliseconds). The agent calls this one.
    pub fn handle_datagram_us(&mut self, now_us: u64, from: SocketAddr, data: &[u8]) {
        self.now_us = Some(now_us);
        self.handle_datagram(Time(now_us / 1000), from, data);
        self.now_us = None;
    }

    /// `handle_timeout` with the driver's clock in microseconds (see `handle_datagram_us`).
    pub fn handle_timeout_us(&mut self, now_us: u64) {
        self.now_us = Some(now_us);
        self.handle_timeout(Time(now_us / 1000));
        self.now_us = None;
    }

    fn precise_now(&self, now: Time) -> u64 {
        self.now_us.unwrap_or(now.0.saturating_mul(1000))
    }

    /// After each input: time foca's direct probes and answer the members that probed us.
    pub(super) fn coord_marks(&mut self, now: Time) {
        let marks = self.foca.take_probe_marks();
        if marks.is_empty() {
            return;
        }
        let at = self.precise_now(now);
        for mark in marks {
            match mark {
                ProbeMark::PingSent(to, number) => {
                    let p = &mut self.coords.pending;
                    if p.len() >= PENDING {
                        p.pop_front();
                    }
                    p.push_back(Pending {
                        to,
                        number,
                        sent_us: at,
                        acked: false,
                    });
                }
                ProbeMark::AckReceived(from, number) => {
                    let Some(p) = self
                        .coords
                        .pending
                        .iter_mut()
                        .rev()
                        .find(|p| !p.acked && p.number == number && p.to == from)
                    else {
                        continue;
                    };
                    p.acked = true;
                    let rtt = at.saturating_sub(p.sent_us);
                    if self.coords.table.observe_rtt(from.name(), rtt) {
                        self.stats.coordinate_updates += 1;
                    }
                }
                ProbeMark::PingReceived(from) => self.send_coordinate(now, &from),
            }
        }
    }

    /// Sends our coordinate to a member that probed us, when it moved or got old.
    fn send_coordinate(&mut self, now: Time, to: &NodeId) {
        if self.left || **to.name() == *self.cfg.name {
            return;
        }
        let own = self.coords.table.own().clone();
        if let Some((at, last)) = self.coords.sent.get(to.name()) {
            let moved_us = own.moved_from(last) * 1e6;
            if now.since(*at) < RESEND_EVERY && moved_us <= RESEND_MOVE_US as f64 {
                return;
            }
        }
        if self.coords.sent.len() >= crate::coordinate::MAX_PEERS {
            self.coords.sent.clear();
        }
        self.coords
            .sent
            .insert(to.name().clone(), (now, own.clone()));
        self.stats.coordinates_sent += 1;
        self.send_shoal(to.addr(), &ShoalMsg::Coord(WireCoord::from_coord(&own)));
    }

    /// A member's coordinate: taken only from a member we pinged recently, validated.
    pub(super) fn receive_coordinate(&mut self, from: SocketAddr, wire: WireCoord) {
        let Some(name) = self
            .coords
            .pending
            .iter()
            .rev()
            .find(|p| p.to.addr() == from)
            .map(|p| p.to.name().clone())
        else {
            self.stats.coordinates_unsolicited += 1;
            return;
        };
        match wire.validate() {
            Ok(c) => {
                if self.coords.table.peer_coordinate(&name, c) {
                    self.stats.coordinate_updates += 1;
                }
            }
            Err(_) => self.stats.coordinates_refused += 1,
        }
    }

    /// This node's network coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        self.coords.table.own()
    }

    /// The coordinates this node knows: its own first, then its peers' (by name), each only
    /// for a member currently in the truth table.
    pub fn coordinates(&self) -> Vec<(Arc<str>, Coordinate)> {
        let mut out = vec![(self.cfg_name(), self.coordinate().clone())];
        out.extend(
            self.coords
                .table
                .peers()
                .filter(|(n, _)| self.truth.get(n).is_some())
                .map(|(n, c)| (n.clone(), c.clone())),
        );
        out
    }

    fn cfg_name(&self) -> Arc<str> {
        self.own.name.clone()
    }

    fn coordinate_of(&self, name: &str) -> Option<&Coordinate> {
        if *name == *self.cfg.name {
            Some(self.coordinate())
        } else {
            self.coords.table.peer(name)
        }
    }

    /// The estimated round trip between two members (`None` when either's coordinate is
    /// unknown here). Between this node and a member it probed, its own measurement (the
    /// minimum of its recent round trips: no model beats it); else from coordinates.
    pub fn rtt_between(&self, a: &str, b: &str) -> Option<RttEstimate> {
        let (ca, cb) = (self.coordinate_of(a)?, self.coordinate_of(b)?);
        let me = &*self.cfg.name;
        let other = match (a == me, b == me) {
            (true, false) => Some(b),
            (false, true) => Some(a),
            _ => None,
        };
        if let Some(rtt_us) = other.and_then(|o| self.coords.table.measured(o)) {
            return Some(RttEstimate {
                rtt_us,
                measured: true,
            });
        }
        Some(RttEstimate {
            rtt_us: ca.rtt_us(cb),
            measured: false,
        })
    }

    /// The estimated round trip from this node to `name`, for nearest-first ordering.
    pub fn rtt_to(&self, name: &str) -> Option<u64> {
        self.rtt_between(&self.cfg.name, name).map(|e| e.rtt_us)
    }
}
