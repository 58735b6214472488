//! The gray-failure figures of a run: how the faulty members (the hosts a `loss` or `flap`
//! fault chose) fared in every observer's served view, and what that cost the healthy ones.
//!
//! Owns the per-(faulty member, observer) presence-change counts, when every observer first
//! agreed a faulty member is not served, which healthy members were served down, and the
//! distinct served views seen at samples (an incremental hash per observer of the members it
//! serves). Fed by the recorder with what the API shows (served-status changes); must not
//! drive nodes or draw randomness.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Distinct views remembered at most (the count saturates there).
const MAX_VIEWS: usize = 100_000;

/// What the result says (present when the scenario has faulty members).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrayFigures {
    /// Members chosen by a `loss` or `flap` fault.
    pub faulty: usize,
    /// Times a faulty member went from served to not served or back, per observer (over
    /// every pair of faulty member and running healthy observer: a faulty host's own view is
    /// left out of every figure here): the most, and the mean.
    pub presence_changes_max: u32,
    pub presence_changes_mean: f64,
    /// Faulty members every running observer stopped serving at some point, and the longest
    /// time from the fault's start until the last observer did (`None`: not all of them).
    pub agreed: usize,
    pub agreed_after_s_max: Option<f64>,
    /// Healthy (running, not faulty) members served `down` or `held` by some observer in the
    /// measurement window, and how many such (member, observer) episodes.
    pub healthy_declared_down: usize,
    pub healthy_down_episodes: u32,
    /// Distinct served views (sets of members served) seen at the samples.
    pub distinct_views: usize,
}

#[derive(Debug, Default)]
pub struct GrayRecorder {
    /// Fault start (ms) per faulty member.
    faulty: BTreeMap<u32, u64>,
    presence: BTreeMap<(u32, u32), u32>,
    /// Observers not serving each faulty member now.
    not_serving: BTreeMap<u32, u32>,
    agreed_after_ms: BTreeMap<u32, u64>,
    healthy_down: BTreeSet<u32>,
    healthy_episodes: u32,
    view_hash: Vec<u64>,
    views: BTreeSet<u64>,
}

fn mix(x: u64) -> u64 {
    // splitmix64's finalizer: a member's contribution to a view's hash.
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl GrayRecorder {
    pub fn new(n: usize) -> GrayRecorder {
        GrayRecorder {
            view_hash: vec![0; n],
            ..GrayRecorder::default()
        }
    }

    pub fn mark_faulty(&mut self, nodes: &[usize], t_ms: u64) {
        for &i in nodes {
            self.faulty.entry(i as u32).or_insert(t_ms);
        }
    }

    pub fn is_faulty(&self, x: usize) -> bool {
        self.faulty.contains_key(&(x as u32))
    }

    /// Observer `o` changed what it serves for `x` (`was`/`is`: served before/after; `down`:
    /// the new status is `down` or `held`), `live` nodes running.
    #[allow(clippy::too_many_arguments)]
    pub fn change(
        &mut self,
        o: usize,
        x: usize,
        had: bool,
        was: bool,
        is: bool,
        down: bool,
        x_running: bool,
        live: u32,
        t_ms: u64,
        in_window: bool,
    ) {
        if was != is {
            if let Some(h) = self.view_hash.get_mut(o) {
                *h ^= mix(x as u64);
            }
        }
        let (xo, oo) = (x as u32, o as u32);
        // A faulty host's own view is no observer's (it cannot hear the others).
        if self.faulty.contains_key(&oo) {
            return;
        }
        match self.faulty.get(&xo).copied() {
            Some(start) => {
                if was != is && had && in_window {
                    *self.presence.entry((xo, oo)).or_default() += 1;
                }
                let c = self.not_serving.entry(xo).or_default();
                if was && !is {
                    *c += 1;
                } else if !was && is && had {
                    *c = c.saturating_sub(1);
                }
                let observers = live.saturating_sub(self.faulty.len() as u32);
                if *c >= observers && t_ms >= start && !self.agreed_after_ms.contains_key(&xo) {
                    self.agreed_after_ms.insert(xo, t_ms - start);
                }
            }
            None => {
                if down && x_running && in_window && was {
                    self.healthy_down.insert(xo);
                    self.healthy_episodes += 1;
                }
            }
        }
    }

    /// Observer `o` stopped (its view no longer counts) or started afresh.
    pub fn reset_observer(&mut self, o: usize) {
        if let Some(h) = self.view_hash.get_mut(o) {
            *h = 0;
        }
    }

    pub fn sample(&mut self, running: &[bool]) {
        for (o, r) in running.iter().enumerate() {
            if *r && self.views.len() < MAX_VIEWS && !self.faulty.contains_key(&(o as u32)) {
                if let Some(h) = self.view_hash.get(o) {
                    self.views.insert(*h);
                }
            }
        }
    }

    pub fn finish(&self, running: &[bool]) -> Option<GrayFigures> {
        if self.faulty.is_empty() {
            return None;
        }
        let observers: Vec<u32> = running
            .iter()
            .enumerate()
            .filter(|(o, r)| **r && !self.faulty.contains_key(&(*o as u32)))
            .map(|(o, _)| o as u32)
            .collect();
        let mut pairs = 0u64;
        let mut sum = 0u64;
        let mut max = 0u32;
        for &x in self.faulty.keys() {
            for &o in observers.iter().filter(|o| **o != x) {
                let c = self.presence.get(&(x, o)).copied().unwrap_or(0);
                pairs += 1;
                sum += u64::from(c);
                max = max.max(c);
            }
        }
        Some(GrayFigures {
            faulty: self.faulty.len(),
            presence_changes_max: max,
            presence_changes_mean: if pairs == 0 {
                0.0
            } else {
                (sum as f64 / pairs as f64 * 1000.0).round() / 1000.0
            },
            agreed: self.agreed_after_ms.len(),
            agreed_after_s_max: (self.agreed_after_ms.len() == self.faulty.len())
                .then(|| self.agreed_after_ms.values().max().copied().unwrap_or(0) as f64 / 1000.0),
            healthy_declared_down: self.healthy_down.len(),
            healthy_down_episodes: self.healthy_episodes,
            distinct_views: self.views.len(),
        })
    }
}
