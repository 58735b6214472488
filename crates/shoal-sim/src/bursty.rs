//! Bursty loss: a Gilbert-Elliott model per host, with correlated storms across hosts.
//!
//! Owns the parameters of a `bursty` fault and the seeded schedule of its state changes.
//! Each selected host alternates between a *good* state (loss `good_loss`) and a *bad* one
//! (loss `bad_loss`); it stays in each for an exponentially distributed time (means
//! `good_for` and `bad_for`: the continuous-time form of the two-state Markov chain, whose
//! per-step transition probabilities are `step / good_for` and `step / bad_for`). On top of
//! that, *storms* arrive with mean gap `storm_every`: each one puts a random `storm_fraction`
//! of the selected hosts into the bad state together (a saturated switch, a busy hypervisor),
//! each for its own exponential time of mean `bad_for`. A host is bad while any of its own
//! bad periods or storms lasts. The loss applies to what the host sends and what it receives.
//!
//! The schedule is drawn from its own RNG (the scenario seed and the fault's index), so it is
//! the same in every guard mode and does not depend on the traffic. Must not touch the
//! network or the nodes: the world turns the schedule into timed actions.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Parameters of one bursty fault (times in µs).
#[derive(Clone, Debug, PartialEq)]
pub struct Burst {
    /// Mean time a host stays good between its own bursts; `None`: no independent bursts.
    pub good_for_us: Option<u64>,
    /// Mean time a host stays bad (its own bursts and storms alike).
    pub bad_for_us: u64,
    /// Mean gap between correlated storms; `None`: no storms.
    pub storm_every_us: Option<u64>,
    /// Share of the selected hosts a storm hits.
    pub storm_fraction: f64,
}

/// One change of a host's state: at `at_us`, host `host` enters (`+1`) or leaves (`-1`) one
/// bad period. A host is bad while its count is above zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub at_us: u64,
    pub host: usize,
    pub enter: bool,
}

fn exp_us(rng: &mut SmallRng, mean_us: u64) -> u64 {
    let u: f64 = rng.random::<f64>().max(1e-12);
    // Capped at 20 means so that one draw cannot swallow the run; at least 1 ms.
    ((-u.ln()).min(20.0) * mean_us as f64).max(1000.0) as u64
}

impl Burst {
    /// The schedule of state changes over `[t0, end)` for `hosts`, from `seed`. Every bad
    /// period that starts before `end` also ends (at the latest at `end`).
    pub fn schedule(&self, hosts: &[usize], t0: u64, end: u64, seed: u64) -> Vec<Step> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut out = Vec::new();
        let bad = self.bad_for_us.max(1000);
        let push = |out: &mut Vec<Step>, host: usize, from: u64, len: u64| {
            let to = from.saturating_add(len).min(end);
            if from < to {
                out.push(Step {
                    at_us: from,
                    host,
                    enter: true,
                });
                out.push(Step {
                    at_us: to,
                    host,
                    enter: false,
                });
            }
        };
        if let Some(good) = self.good_for_us {
            let good = good.max(1000);
            for &h in hosts {
                // Start in the stationary distribution: bad with probability bad/(good+bad).
                let mut t = t0;
                let mut is_bad = rng.random::<f64>() < bad as f64 / (good + bad) as f64;
                while t < end {
                    let len = exp_us(&mut rng, if is_bad { bad } else { good });
                    if is_bad {
                        push(&mut out, h, t, len);
                    }
                    t = t.saturating_add(len);
                    is_bad = !is_bad;
                }
            }
        }
        if let Some(every) = self.storm_every_us {
            let every = every.max(1000);
            let k = ((hosts.len() as f64) * self.storm_fraction).round() as usize;
            let mut pool: Vec<usize> = hosts.to_vec();
            let mut t = t0.saturating_add(exp_us(&mut rng, every));
            while t < end {
                let k = k.min(pool.len());
                for j in 0..k {
                    let pick = rng.random_range(j..pool.len());
                    pool.swap(j, pick);
                }
                for &h in &pool[..k] {
                    let len = exp_us(&mut rng, bad);
                    push(&mut out, h, t, len);
                }
                t = t.saturating_add(exp_us(&mut rng, every));
            }
        }
        // Leaves before entries at the same instant, so a count never dips below zero.
        out.sort_by_key(|s| (s.at_us, s.enter, s.host));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst() -> Burst {
        Burst {
            good_for_us: Some(20_000_000),
            bad_for_us: 2_000_000,
            storm_every_us: Some(10_000_000),
            storm_fraction: 0.3,
        }
    }

    #[test]
    fn schedule_is_seeded_balanced_and_bounded() {
        let hosts: Vec<usize> = (0..50).collect();
        let a = burst().schedule(&hosts, 1_000_000, 301_000_000, 7);
        assert_eq!(a, burst().schedule(&hosts, 1_000_000, 301_000_000, 7));
        assert_ne!(a, burst().schedule(&hosts, 1_000_000, 301_000_000, 8));
        let mut count = [0i32; 50];
        let mut last = 0;
        for s in &a {
            assert!(s.at_us >= last && s.at_us >= 1_000_000 && s.at_us <= 301_000_000);
            last = s.at_us;
            count[s.host] += if s.enter { 1 } else { -1 };
            assert!(count[s.host] >= 0);
        }
        assert!(count.iter().all(|c| *c == 0), "every bad period ends");
    }

    #[test]
    fn bad_share_matches_the_chain_and_storms_hit_many_hosts_at_once() {
        // Independent chain only: the share of bad time is bad / (good + bad) = 1/11.
        let hosts: Vec<usize> = (0..200).collect();
        let b = Burst {
            storm_every_us: None,
            ..burst()
        };
        let (t0, end) = (0u64, 600_000_000u64);
        let steps = b.schedule(&hosts, t0, end, 3);
        let mut bad_us = 0u64;
        let mut since = vec![0u64; 200];
        let mut count = vec![0u32; 200];
        for s in &steps {
            if s.enter {
                if count[s.host] == 0 {
                    since[s.host] = s.at_us;
                }
                count[s.host] += 1;
            } else {
                count[s.host] -= 1;
                if count[s.host] == 0 {
                    bad_us += s.at_us - since[s.host];
                }
            }
        }
        let share = bad_us as f64 / (200.0 * (end - t0) as f64);
        assert!((share - 1.0 / 11.0).abs() < 0.015, "bad share {share}");

        // Storms only: each storm enters 30 % of the hosts at the same instant.
        let s = Burst {
            good_for_us: None,
            ..burst()
        };
        let steps = s.schedule(&hosts, t0, end, 4);
        let first = steps.iter().find(|x| x.enter).map(|x| x.at_us);
        let together = steps
            .iter()
            .filter(|x| x.enter && Some(x.at_us) == first)
            .count();
        assert_eq!(together, 60);
    }
}
