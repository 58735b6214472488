//! The simulated network: synthetic addresses, latency, loss, duplication, partitions and
//! cut-off NICs.
//!
//! Owns the per-datagram fate (dropped, or delivered once or twice after a sampled delay)
//! and the fault state that decides it (active partition rules, cut counters, egress loss).
//! It draws randomness only from the RNG it is handed, so a run replays from its seed. Must
//! not know about nodes' state machines.

use rand::rngs::SmallRng;
use rand::RngExt;
use std::net::{Ipv4Addr, SocketAddr};

/// Port every simulated node "listens" on (nothing is ever bound).
pub const PORT: u16 = 7946;

/// The synthetic address of node `i`: 10.x.y.z:7946 with x.y.z = i + 1.
pub fn addr_of(i: usize) -> SocketAddr {
    let v = (i as u32).wrapping_add(1) & 0x00ff_ffff;
    let ip = Ipv4Addr::from(0x0a00_0000 | v);
    SocketAddr::from((ip, PORT))
}

/// The node index behind a synthetic address, if it is one.
pub fn index_of(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v4) if v4.port() == PORT => {
            let o = v4.ip().octets();
            if o[0] != 10 {
                return None;
            }
            let v = (u32::from(o[1]) << 16) | (u32::from(o[2]) << 8) | u32::from(o[3]);
            (v as usize).checked_sub(1)
        }
        _ => None,
    }
}

/// A partition: nodes with a group id; `u16::MAX` means not part of this rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub group: Vec<u16>,
    /// Only traffic from group 0 to the other groups is blocked.
    pub oneway: bool,
    pub active: bool,
}

impl Rule {
    fn blocks(&self, src: usize, dst: usize) -> bool {
        let gs = self.group.get(src).copied().unwrap_or(u16::MAX);
        let gd = self.group.get(dst).copied().unwrap_or(u16::MAX);
        if gs == u16::MAX || gd == u16::MAX || gs == gd {
            return false;
        }
        !self.oneway || gs == 0
    }
}

/// Why a datagram did not arrive (counted per run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Lost,
    Partitioned,
    Cut,
    /// Delivered after these delays (the second one for a duplicate).
    Deliver(u64, Option<u64>),
}

#[derive(Debug)]
pub struct Net {
    pub latency_us: u64,
    pub jitter_us: u64,
    pub loss: f64,
    pub duplicate: f64,
    pub rules: Vec<Rule>,
    /// Active isolations / flap-offs per node (a node is cut while > 0).
    pub cut: Vec<u16>,
    /// Extra egress loss per node.
    pub egress_loss: Vec<f64>,
    /// Extra ingress loss per node (what it receives).
    pub ingress_loss: Vec<f64>,
    /// Active ingress-only cuts per node (it sends but hears nothing while > 0).
    pub deaf: Vec<u16>,
    /// Bursty loss per node (`sim::bursty`), on what it sends and what it receives.
    pub burst_loss: Vec<f64>,
}

impl Net {
    pub fn new(n: usize, latency_us: u64, jitter_us: u64, loss: f64, duplicate: f64) -> Self {
        Net {
            latency_us,
            jitter_us,
            loss,
            duplicate,
            rules: Vec::new(),
            cut: vec![0; n],
            egress_loss: vec![0.0; n],
            ingress_loss: vec![0.0; n],
            deaf: vec![0; n],
            burst_loss: vec![0.0; n],
        }
    }

    pub fn is_cut(&self, i: usize) -> bool {
        self.cut.get(i).copied().unwrap_or(0) > 0
    }

    /// Whether `i` receives nothing now (cut, or deaf: an ingress-only cut).
    pub fn hears_nothing(&self, i: usize) -> bool {
        self.is_cut(i) || self.deaf.get(i).copied().unwrap_or(0) > 0
    }

    pub fn blocked(&self, src: usize, dst: usize) -> bool {
        self.rules.iter().any(|r| r.active && r.blocks(src, dst))
    }

    fn delay_us(&self, rng: &mut SmallRng) -> u64 {
        let mut d = self.latency_us;
        if self.jitter_us > 0 {
            // Exponential with mean `jitter`, capped at 20x: a long tail that reorders.
            let u: f64 = rng.random::<f64>().max(1e-12);
            let x = (-u.ln() * self.jitter_us as f64).min(20.0 * self.jitter_us as f64);
            d += x as u64;
        }
        d
    }

    /// Decides what happens to a datagram from `src` to `dst` sent now.
    pub fn fate(&self, src: usize, dst: usize, rng: &mut SmallRng) -> Fate {
        if self.is_cut(src) {
            return Fate::Cut;
        }
        if self.blocked(src, dst) {
            return Fate::Partitioned;
        }
        let extra = self.egress_loss.get(src).copied().unwrap_or(0.0);
        let inbound = self.ingress_loss.get(dst).copied().unwrap_or(0.0);
        let bs = self.burst_loss.get(src).copied().unwrap_or(0.0);
        let bd = self.burst_loss.get(dst).copied().unwrap_or(0.0);
        let p = 1.0 - (1.0 - self.loss) * (1.0 - extra) * (1.0 - inbound) * (1.0 - bs) * (1.0 - bd);
        if p > 0.0 && rng.random::<f64>() < p {
            return Fate::Lost;
        }
        let first = self.delay_us(rng);
        let second = if self.duplicate > 0.0 && rng.random::<f64>() < self.duplicate {
            Some(self.delay_us(rng))
        } else {
            None
        };
        Fate::Deliver(first, second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn addresses_round_trip() {
        for i in [0usize, 1, 255, 256, 9_999, 70_000] {
            assert_eq!(index_of(addr_of(i)), Some(i));
        }
        assert_eq!(index_of("127.0.0.1:7946".parse().unwrap()), None);
    }

    #[test]
    fn partitions_block_the_right_way() {
        let mut net = Net::new(4, 1000, 0, 0.0, 0.0);
        net.rules.push(Rule {
            group: vec![0, 0, 1, 1],
            oneway: true,
            active: true,
        });
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(net.fate(0, 2, &mut rng), Fate::Partitioned);
        assert_eq!(net.fate(2, 0, &mut rng), Fate::Deliver(1000, None));
        assert_eq!(net.fate(0, 1, &mut rng), Fate::Deliver(1000, None));
        net.rules[0].oneway = false;
        assert_eq!(net.fate(2, 0, &mut rng), Fate::Partitioned);
    }
}
