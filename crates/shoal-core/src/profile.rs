//! Timing profiles (`lan`, `wan`, `local`) and how they map onto foca's configuration.
//!
//! Owns `Profile`, `Timings` (every timing knob of the core, with profile defaults) and the
//! translation to `foca::Config`, including rescaling with cluster size the way memberlist
//! does (suspicion grows with log10 N). Must not hold any state.

use serde::{Deserialize, Serialize};
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// A timing profile.
pub enum Profile {
    /// Serf/memberlist LAN defaults: probe 1 s, probe timeout 500 ms, gossip 200 ms to 3.
    #[default]
    Lan,
    /// memberlist WAN defaults: probe 5 s, probe timeout 3 s, gossip 500 ms to 4.
    Wan,
    /// Loopback / tests: everything 5x faster than LAN.
    Local,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
            Profile::Local => "local",
        })
    }
}

/// Every timing knob of the core. Durations are serialized as milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Time between two probes.
    pub probe_period: Duration,
    /// How long a probe waits for its ack before asking others.
    pub probe_rtt: Duration,
    /// Members asked to probe on this node's behalf.
    pub indirect_probes: usize,
    /// Suspicion timeout = `suspicion_mult x max(1, log10 N) x probe_period`.
    pub suspicion_mult: f64,
    /// Time between two gossip rounds.
    pub gossip_interval: Duration,
    /// Members gossiped to per round.
    pub gossip_fanout: usize,
    /// Periodic announce to one random member (discovers members faster after a join).
    pub announce_interval: Duration,
    /// Periodic announce to members believed down (heals partitions).
    pub announce_down_interval: Duration,
    /// Metadata anti-entropy exchange with one random peer.
    pub sync_interval: Duration,
    /// Period of the core's jobs that poll while they have work (the guard's evaluation, paced
    /// fetches); an idle node does not wake for it (docs/architecture.md, section 5).
    pub tick: Duration,
    /// First delay between re-announces when the node has no active peer; doubles each time.
    pub rejoin_min: Duration,
    /// Upper bound of the re-announce backoff.
    pub rejoin_max: Duration,
    /// How long a member we know has no metadata before we ask it directly.
    pub meta_fetch_after: Duration,
    /// How long failed and left members stay listed before they are forgotten.
    pub reap_after: Duration,
    /// Lifeguard (local health, dynamic suspicion, buddy system; `core::lifeguard`). On by
    /// default; `false` gives foca's plain SWIM back.
    #[serde(default = "default_lifeguard")]
    pub lifeguard: bool,
    /// Highest local health score: probes stretch up to `lhm_max + 1` times.
    #[serde(default = "default_lhm_max")]
    pub lhm_max: u8,
    /// A suspicion nobody confirms lasts this many times the suspicion timeout.
    #[serde(default = "default_suspicion_max_mult")]
    pub suspicion_max_mult: f64,
    /// With this many independent confirmations or more, the timeout shrinks below the
    /// suspicion timeout, down to `suspicion_floor` of it (0: never below it, as memberlist).
    #[serde(default = "default_fast_confirmations")]
    pub suspicion_fast_confirmations: usize,
    /// The share of the suspicion timeout a suspicion confirmed
    /// `suspicion_fast_confirmations` times lasts.
    #[serde(default = "default_floor")]
    pub suspicion_floor: f64,
}

fn default_lifeguard() -> bool {
    LIFEGUARD.0
}
fn default_fast_confirmations() -> usize {
    LIFEGUARD.3
}
fn default_floor() -> f64 {
    LIFEGUARD.4
}
fn default_lhm_max() -> u8 {
    8
}
fn default_suspicion_max_mult() -> f64 {
    6.0
}

/// Lifeguard's defaults, shared by every profile: on; memberlist's local health and 6x; below
/// the suspicion timeout (down to half of it) only with 5 independent confirmations from
/// healthy accusers (docs/detection.md and docs/results/ for the figures behind them).
const LIFEGUARD: (bool, u8, f64, usize, f64) = (true, 8, 6.0, 5, 0.5);

impl Profile {
    /// The profile's timings.
    pub fn timings(self) -> Timings {
        match self {
            Profile::Lan => Timings {
                probe_period: Duration::from_millis(1000),
                probe_rtt: Duration::from_millis(500),
                indirect_probes: 3,
                suspicion_mult: 4.0,
                gossip_interval: Duration::from_millis(200),
                gossip_fanout: 3,
                announce_interval: Duration::from_secs(30),
                announce_down_interval: Duration::from_secs(15),
                sync_interval: Duration::from_secs(10),
                tick: Duration::from_millis(250),
                rejoin_min: Duration::from_secs(1),
                rejoin_max: Duration::from_secs(30),
                meta_fetch_after: Duration::from_secs(2),
                reap_after: Duration::from_secs(24 * 3600),
                lifeguard: LIFEGUARD.0,
                lhm_max: LIFEGUARD.1,
                suspicion_max_mult: LIFEGUARD.2,
                suspicion_fast_confirmations: LIFEGUARD.3,
                suspicion_floor: LIFEGUARD.4,
            },
            Profile::Wan => Timings {
                probe_period: Duration::from_millis(5000),
                probe_rtt: Duration::from_millis(3000),
                indirect_probes: 3,
                suspicion_mult: 6.0,
                gossip_interval: Duration::from_millis(500),
                gossip_fanout: 4,
                announce_interval: Duration::from_secs(60),
                announce_down_interval: Duration::from_secs(60),
                sync_interval: Duration::from_secs(60),
                tick: Duration::from_millis(500),
                rejoin_min: Duration::from_secs(2),
                rejoin_max: Duration::from_secs(60),
                meta_fetch_after: Duration::from_secs(5),
                reap_after: Duration::from_secs(24 * 3600),
                lifeguard: LIFEGUARD.0,
                lhm_max: LIFEGUARD.1,
                suspicion_max_mult: LIFEGUARD.2,
                suspicion_fast_confirmations: LIFEGUARD.3,
                suspicion_floor: LIFEGUARD.4,
            },
            Profile::Local => Timings {
                probe_period: Duration::from_millis(200),
                probe_rtt: Duration::from_millis(100),
                indirect_probes: 3,
                suspicion_mult: 4.0,
                gossip_interval: Duration::from_millis(50),
                gossip_fanout: 3,
                announce_interval: Duration::from_secs(5),
                announce_down_interval: Duration::from_secs(3),
                sync_interval: Duration::from_secs(2),
                tick: Duration::from_millis(50),
                rejoin_min: Duration::from_millis(200),
                rejoin_max: Duration::from_secs(5),
                meta_fetch_after: Duration::from_millis(400),
                reap_after: Duration::from_secs(3600),
                lifeguard: LIFEGUARD.0,
                lhm_max: LIFEGUARD.1,
                suspicion_max_mult: LIFEGUARD.2,
                suspicion_fast_confirmations: LIFEGUARD.3,
                suspicion_floor: LIFEGUARD.4,
            },
        }
    }
}

impl Timings {
    /// Checks the relations foca relies on; names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let nz = |name: &str, d: Duration| {
            if d.is_zero() {
                Err(format!("timings.{name} must be greater than zero"))
            } else {
                Ok(())
            }
        };
        nz("probe_period", self.probe_period)?;
        nz("probe_rtt", self.probe_rtt)?;
        nz("gossip_interval", self.gossip_interval)?;
        nz("announce_interval", self.announce_interval)?;
        nz("announce_down_interval", self.announce_down_interval)?;
        nz("sync_interval", self.sync_interval)?;
        nz("tick", self.tick)?;
        nz("rejoin_min", self.rejoin_min)?;
        nz("rejoin_max", self.rejoin_max)?;
        if self.probe_rtt >= self.probe_period {
            return Err("timings.probe_rtt must be smaller than timings.probe_period".into());
        }
        if self.indirect_probes == 0 || self.gossip_fanout == 0 {
            return Err(
                "timings.indirect_probes and timings.gossip_fanout must be at least 1".into(),
            );
        }
        if !(self.suspicion_mult.is_finite()
            && self.suspicion_mult >= 1.0
            && self.suspicion_mult <= 100.0)
        {
            return Err("timings.suspicion_mult must be between 1 and 100".into());
        }
        if !(self.suspicion_max_mult.is_finite()
            && self.suspicion_max_mult >= 1.0
            && self.suspicion_max_mult <= 100.0)
        {
            return Err("timings.suspicion_max_mult must be between 1 and 100".into());
        }
        if !(self.suspicion_floor.is_finite()
            && self.suspicion_floor >= 0.25
            && self.suspicion_floor <= 1.0)
        {
            return Err("timings.suspicion_floor must be between 0.25 and 1".into());
        }
        if self.lhm_max > 32 || self.suspicion_fast_confirmations > 64 {
            return Err(
                "timings.lhm_max must be at most 32 and timings.suspicion_fast_confirmations at most 64"
                    .into(),
            );
        }
        if self.rejoin_min > self.rejoin_max {
            return Err("timings.rejoin_min must not exceed timings.rejoin_max".into());
        }
        Ok(())
    }

    /// Suspicion timeout for a cluster of `n` members.
    pub fn suspicion_timeout(&self, n: usize) -> Duration {
        let scale = (n.max(1) as f64).log10().max(1.0);
        self.probe_period.mul_f64(self.suspicion_mult * scale)
    }

    /// How many times each update is piggybacked, for a cluster of `n` members: memberlist's
    /// retransmit limit, `4 x ceil(log10(N+1))` (8 for 10 members, 16 for 1,000). The ceiling
    /// matters: with the plain logarithm a 10-node cluster sends each update 4 times, and about
    /// one node in fifty misses a failure notice and serves it seconds late.
    pub fn max_transmissions(&self, n: usize) -> u8 {
        let tx = 4.0 * ((n as f64) + 1.0).log10().ceil();
        tx.clamp(4.0, 255.0) as u8
    }

    /// foca's configuration for a cluster of `n` members and datagrams of `max_packet` bytes.
    pub fn foca_config(&self, n: usize, max_packet: usize) -> foca::Config {
        let one = NonZeroUsize::MIN;
        foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: NonZeroUsize::new(self.indirect_probes).unwrap_or(one),
            max_transmissions: NonZeroU8::new(self.max_transmissions(n)).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: self.suspicion_timeout(n),
            // Remember down identities for a day: a stale message from a dead generation must
            // not bring it back, and restarted nodes rejoin with a new generation anyway.
            remove_down_after: Some(Duration::from_secs(24 * 3600)),
            max_packet_size: NonZeroUsize::new(max_packet).unwrap_or(one),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: self.announce_interval,
                num_members: one,
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.announce_down_interval,
                num_members: NonZeroUsize::new(2).unwrap_or(one),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_interval,
                num_members: NonZeroUsize::new(self.gossip_fanout).unwrap_or(one),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_matches_memberlist() {
        let t = Profile::Lan.timings();
        assert!(t.validate().is_ok());
        assert_eq!(t.suspicion_timeout(10), Duration::from_secs(4));
        assert_eq!(t.suspicion_timeout(1000), Duration::from_secs(12));
        assert_eq!(t.suspicion_timeout(3), Duration::from_secs(4));
        assert_eq!(t.max_transmissions(10), 8);
        assert_eq!(t.max_transmissions(1000), 16);
        for p in [Profile::Wan, Profile::Local] {
            assert!(p.timings().validate().is_ok());
        }
    }

    #[test]
    fn bad_timings_are_named() {
        let mut t = Profile::Lan.timings();
        t.probe_rtt = t.probe_period;
        assert!(t.validate().unwrap_err().contains("probe_rtt"));
    }
}
