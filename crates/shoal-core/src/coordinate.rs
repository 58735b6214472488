//! Network coordinates: Vivaldi (Dabek et al., SIGCOMM 2004) with a height and an adjustment
//! term, as HashiCorp Serf computes them, fed by the minimum of recent round-trip samples.
//!
//! Owns `Coordinate` (a point in 8 dimensions plus a height, in seconds, and its estimate of its
//! own error), `WireCoord` (its compact, validated form on the wire), `Vivaldi` (this node's
//! coordinate and the update rule) and `Coordinates` (the node's bounded table of peers: their
//! last coordinates and recent RTT samples). It must not read a clock or draw OS randomness:
//! the RTTs come from the node, which times its own probes with the driver's `now`, and the
//! one random direction Vivaldi needs (two nodes at the same point) comes from a seeded stream.
//!
//! Where it differs from Serf, and why (docs/coordinates.md): Serf filters each peer's samples
//! with a median of the last 3, so on a LAN every scheduling hiccup of either process stays in
//! the estimate (consul#8337: 0.46 ms read where ping read 0.10 ms). Here each peer's sample is
//! the minimum of its last `WINDOW` RTTs: queueing and wake-up delays only ever add to a
//! round trip, so the minimum is the best estimate of the path itself; it still follows a real
//! change of the path within `WINDOW` probes of that peer. The RTTs are timed in microseconds
//! (the core's `Time` is in milliseconds, too coarse for a LAN).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Dimensions of the Euclidean part (Serf's default).
pub(crate) const DIMS: usize = 8;
/// The largest error a coordinate claims (1.5: "no idea"), also a new node's error.
pub(crate) const ERROR_MAX: f64 = 1.5;
/// Vivaldi's error and coordinate gains (`c_e`, `c_c` in the paper; Serf's defaults).
const CE: f64 = 0.25;
const CC: f64 = 0.25;
/// Samples of the adjustment term's moving average.
const ADJUSTMENT_WINDOW: usize = 20;
/// The smallest height (10 µs): even two processes on one host pay a system call each way.
pub(crate) const HEIGHT_MIN: f64 = 10.0e-6;
/// Gravity's `rho`: pulls the whole system gently towards the origin so it does not drift.
const GRAVITY_RHO: f64 = 150.0;
/// Below this, a distance is zero.
const ZERO: f64 = 1.0e-6;
/// RTT samples kept per peer; its sample is their minimum.
pub(crate) const WINDOW: usize = 8;
/// Peers whose coordinate and samples are kept (the oldest-updated one goes past it).
pub(crate) const MAX_PEERS: usize = 16_384;
/// The largest magnitude a coordinate component, height or adjustment may have on the wire
/// (10 s: no round trip a membership protocol waits for is longer).
pub(crate) const MAX_SECONDS: f64 = 10.0;
/// An RTT sample longer than this is not a path, it is a stall: ignored.
pub(crate) const MAX_RTT_US: u64 = 10_000_000;

/// A point in Vivaldi space. Units are seconds (Serf's and Consul's, so the Consul API can show
/// it as is).
#[derive(Clone, Debug, PartialEq)]
pub struct Coordinate {
    /// The Euclidean part, in seconds.
    pub vec: [f64; DIMS],
    /// The coordinate's estimate of its own error.
    pub error: f64,
    /// The adjustment term (added to every distance).
    pub adjustment: f64,
    /// The height: the access link's delay, in seconds.
    pub height: f64,
}

impl Default for Coordinate {
    fn default() -> Self {
        Coordinate {
            vec: [0.0; DIMS],
            error: ERROR_MAX,
            adjustment: 0.0,
            height: HEIGHT_MIN,
        }
    }
}

impl Coordinate {
    /// The distance without the adjustment terms: Euclidean part plus both heights.
    fn raw_distance(&self, other: &Coordinate) -> f64 {
        let sq: f64 = self
            .vec
            .iter()
            .zip(other.vec.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        sq.sqrt() + self.height + other.height
    }

    /// The estimated round-trip time to `other`, in seconds (the adjustments added when that
    /// stays positive, as Serf does).
    pub fn distance(&self, other: &Coordinate) -> f64 {
        let raw = self.raw_distance(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        if adjusted > 0.0 {
            adjusted
        } else {
            raw
        }
    }

    /// The estimated round-trip time to `other` in microseconds.
    pub fn rtt_us(&self, other: &Coordinate) -> u64 {
        (self.distance(other) * 1e6).round().max(0.0) as u64
    }

    /// How far this coordinate moved from `earlier`, in seconds (Euclidean part, height and
    /// adjustment together).
    pub fn moved_from(&self, earlier: &Coordinate) -> f64 {
        let sq: f64 = self
            .vec
            .iter()
            .zip(earlier.vec.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        sq.sqrt()
            + (self.height - earlier.height).abs()
            + (self.adjustment - earlier.adjustment).abs()
    }

    fn is_sane(&self) -> bool {
        self.vec
            .iter()
            .all(|x| x.is_finite() && x.abs() <= MAX_SECONDS)
            && self.error.is_finite()
            && (0.0..=ERROR_MAX).contains(&self.error)
            && self.adjustment.is_finite()
            && self.adjustment.abs() <= MAX_SECONDS
            && self.height.is_finite()
            && (0.0..=MAX_SECONDS).contains(&self.height)
    }
}

/// A coordinate on the wire: `f32`s (44 bytes), validated once at decode. Equality is
/// bitwise (messages compare equal when their bytes do).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireCoord {
    pub vec: [f32; DIMS],
    pub error: f32,
    pub adjustment: f32,
    pub height: f32,
}

/// Why a peer's coordinate was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("coordinate not finite or out of bounds")]
pub struct BadCoordinate;

impl WireCoord {
    fn bits(&self) -> impl Iterator<Item = u32> + '_ {
        self.vec
            .iter()
            .chain([&self.error, &self.adjustment, &self.height])
            .map(|x| x.to_bits())
    }
}

impl PartialEq for WireCoord {
    fn eq(&self, other: &Self) -> bool {
        self.bits().eq(other.bits())
    }
}

impl Eq for WireCoord {}

impl WireCoord {
    pub fn from_coord(c: &Coordinate) -> WireCoord {
        let mut vec = [0f32; DIMS];
        for (w, x) in vec.iter_mut().zip(c.vec.iter()) {
            *w = *x as f32;
        }
        WireCoord {
            vec,
            error: c.error as f32,
            adjustment: c.adjustment as f32,
            height: c.height as f32,
        }
    }

    /// The coordinate, if every number is finite and within bounds (a peer that lies must
    /// not make anyone's coordinate NaN or huge).
    pub fn validate(&self) -> Result<Coordinate, BadCoordinate> {
        let mut vec = [0f64; DIMS];
        for (x, w) in vec.iter_mut().zip(self.vec.iter()) {
            *x = f64::from(*w);
        }
        let c = Coordinate {
            vec,
            error: f64::from(self.error),
            adjustment: f64::from(self.adjustment),
            height: f64::from(self.height),
        };
        if c.is_sane() {
            Ok(c)
        } else {
            Err(BadCoordinate)
        }
    }
}

/// This node's coordinate and Vivaldi's update rule.
#[derive(Clone, Debug)]
pub(crate) struct Vivaldi {
    coord: Coordinate,
    /// Where gravity pulls (the origin, with the minimum height).
    origin: Coordinate,
    adjustments: [f64; ADJUSTMENT_WINDOW],
    adjustment_at: usize,
    /// A seeded xorshift state for the random direction between coincident points.
    rng: u64,
    /// Updates applied since the start.
    pub updates: u64,
}

impl Vivaldi {
    pub(crate) fn new(seed: u64) -> Vivaldi {
        let origin = Coordinate {
            error: 0.0,
            ..Coordinate::default()
        };
        Vivaldi {
            coord: Coordinate::default(),
            origin,
            adjustments: [0.0; ADJUSTMENT_WINDOW],
            adjustment_at: 0,
            rng: seed | 1,
            updates: 0,
        }
    }

    pub(crate) fn coord(&self) -> &Coordinate {
        &self.coord
    }

    fn next_unit(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// The unit vector from `to` towards `from` and the distance between them (a random
    /// direction when they coincide, so two new nodes push each other apart).
    fn unit_vector(&mut self, from: &[f64; DIMS], to: &[f64; DIMS]) -> ([f64; DIMS], f64) {
        let d: [f64; DIMS] = std::array::from_fn(|i| from[i] - to[i]);
        let mag = d.iter().map(|x| x * x).sum::<f64>().sqrt();
        if mag > ZERO {
            return (d.map(|x| x / mag), mag);
        }
        for _ in 0..8 {
            let r: [f64; DIMS] = std::array::from_fn(|_| self.next_unit());
            let m = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            if m > ZERO {
                return (r.map(|x| x / m), 0.0);
            }
        }
        let mut first = [0f64; DIMS];
        first[0] = 1.0;
        (first, 0.0)
    }

    /// Moves `c` by `force` seconds along the line from `other` (away when positive).
    fn apply_force(&mut self, c: &Coordinate, force: f64, other: &Coordinate) -> Coordinate {
        let (unit, mag) = self.unit_vector(&c.vec, &other.vec);
        let mut out = c.clone();
        for (x, u) in out.vec.iter_mut().zip(unit.iter()) {
            *x += u * force;
        }
        if mag > ZERO {
            out.height = ((c.height + other.height) * force / mag + c.height).max(HEIGHT_MIN);
        }
        out
    }

    /// One observation: `rtt` seconds to a peer whose coordinate is `other`. Returns false
    /// (and changes nothing) when the result would not be a sane coordinate.
    pub(crate) fn observe(&mut self, other: &Coordinate, rtt: f64) -> bool {
        if !(rtt.is_finite() && rtt > 0.0 && rtt <= MAX_SECONDS && other.is_sane()) {
            return false;
        }
        let before = (self.coord.clone(), self.adjustments, self.adjustment_at);
        // Vivaldi: weigh by our error against theirs, move along the spring.
        let dist = self.coord.raw_distance(other);
        let rtt = rtt.max(ZERO);
        let wrongness = (dist - rtt).abs() / rtt;
        let total = (self.coord.error + other.error).max(ZERO);
        let weight = self.coord.error / total;
        let error = CE * weight * wrongness + self.coord.error * (1.0 - CE * weight);
        let force = CC * weight * (rtt - dist);
        let current = self.coord.clone();
        let mut next = self.apply_force(&current, force, other);
        next.error = error.min(ERROR_MAX);
        self.coord = next;
        // The adjustment: the mean of what the Euclidean model misses, halved (both ends add
        // theirs).
        self.adjustments[self.adjustment_at] = rtt - self.coord.raw_distance(other);
        self.adjustment_at = (self.adjustment_at + 1) % ADJUSTMENT_WINDOW;
        self.coord.adjustment =
            self.adjustments.iter().sum::<f64>() / (2.0 * ADJUSTMENT_WINDOW as f64);
        // Gravity towards the origin.
        let d = self.origin.raw_distance(&self.coord);
        let pull = -(d / GRAVITY_RHO).powi(2);
        let current = self.coord.clone();
        let origin = self.origin.clone();
        let mut pulled = self.apply_force(&current, pull, &origin);
        pulled.error = current.error;
        pulled.adjustment = current.adjustment;
        if !pulled.is_sane() {
            (self.coord, self.adjustments, self.adjustment_at) = before;
            return false;
        }
        self.coord = pulled;
        self.updates += 1;
        true
    }
}

/// What the node keeps about one peer.
#[derive(Clone, Debug, Default)]
struct Peer {
    coord: Option<Coordinate>,
    /// The last RTTs in microseconds, newest last.
    samples: VecDeque<u64>,
    /// When this entry last changed (an input counter: eviction order).
    touched: u64,
    /// A sample came that no coordinate of the peer's was there to use yet.
    fresh: bool,
}

/// This node's Vivaldi state and its bounded table of peers, by member name.
#[derive(Debug)]
pub(crate) struct Coordinates {
    vivaldi: Vivaldi,
    peers: BTreeMap<Arc<str>, Peer>,
    tick: u64,
}

impl Coordinates {
    pub(crate) fn new(seed: u64) -> Coordinates {
        Coordinates {
            vivaldi: Vivaldi::new(seed),
            peers: BTreeMap::new(),
            tick: 0,
        }
    }

    /// This node's coordinate.
    pub(crate) fn own(&self) -> &Coordinate {
        self.vivaldi.coord()
    }

    /// The last coordinate `name` sent us.
    pub(crate) fn peer(&self, name: &str) -> Option<&Coordinate> {
        self.peers.get(name).and_then(|p| p.coord.as_ref())
    }

    /// Every peer with a coordinate.
    pub(crate) fn peers(&self) -> impl Iterator<Item = (&Arc<str>, &Coordinate)> {
        self.peers
            .iter()
            .filter_map(|(n, p)| p.coord.as_ref().map(|c| (n, c)))
    }

    fn entry(&mut self, name: &Arc<str>) -> &mut Peer {
        self.tick += 1;
        if !self.peers.contains_key(name) && self.peers.len() >= MAX_PEERS {
            if let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, p)| p.touched)
                .map(|(n, _)| n.clone())
            {
                self.peers.remove(&oldest);
            }
        }
        let tick = self.tick;
        let p = self.peers.entry(name.clone()).or_default();
        p.touched = tick;
        p
    }

    /// A coordinate `name` sent us (validated at decode). A sample that waited for it is used
    /// now (returns whether our coordinate was updated).
    pub(crate) fn peer_coordinate(&mut self, name: &Arc<str>, coord: Coordinate) -> bool {
        let p = self.entry(name);
        p.coord = Some(coord.clone());
        let fresh = std::mem::take(&mut p.fresh);
        match p.samples.iter().min().copied() {
            Some(min) if fresh => self.vivaldi.observe(&coord, min as f64 / 1e6),
            _ => false,
        }
    }

    /// A round trip to `name` of `rtt_us` microseconds: the minimum of the peer's recent
    /// samples updates our coordinate, if we know the peer's (else once it comes). Returns
    /// whether it did.
    pub(crate) fn observe_rtt(&mut self, name: &Arc<str>, rtt_us: u64) -> bool {
        if rtt_us == 0 || rtt_us > MAX_RTT_US {
            return false;
        }
        let p = self.entry(name);
        if p.samples.len() >= WINDOW {
            p.samples.pop_front();
        }
        p.samples.push_back(rtt_us);
        let Some(min) = p.samples.iter().min().copied() else {
            return false;
        };
        let Some(other) = p.coord.clone() else {
            p.fresh = true;
            return false;
        };
        self.vivaldi.observe(&other, min as f64 / 1e6)
    }

    /// The minimum of this node's recent RTT samples to `name` in µs: a measurement, better
    /// than any model for a member this node probes itself (`None` before the first).
    pub(crate) fn measured(&self, name: &str) -> Option<u64> {
        self.peers
            .get(name)
            .and_then(|p| p.samples.iter().min().copied())
    }
}

#[cfg(test)]
#[path = "coordinate_tests.rs"]
mod tests;
