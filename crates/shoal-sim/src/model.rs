//! A mean-field model of join spread, crash detection and bytes per node, calibrated against
//! the simulator's own growth sweep, for sizes the simulator cannot run (#24, item 3).
//!
//! Each measure is one formula of N with the profile's timings and one or two constants fitted
//! to the simulated sizes (least squares):
//! - **join spread to 100 %**: push gossip to `fanout` peers every `gossip_interval` reaches
//!   everyone in about `log_{f+1} N + ln N / f` rounds (Pittel; 22.5 rounds for f = 1 at
//!   10,000): `t = c · gossip_interval · rounds(N)`, `c` fitted (a member is passed on as soon
//!   as it is received, not only at the next round, so `c` < 1).
//! - **crash seen down by 100 %**: one probe period until the first probe and its timeout,
//!   then the suspicion timeout (`suspicion_mult · max(1, log10 N)` probe periods, which
//!   Lifeguard's confirmations shorten: the factor `k` is fitted), then the down notice
//!   spreads like a join: `t = probe + rtt + k · suspicion(N) + join(N)`.
//! - **bytes sent per node and second**: `b0 + b1 · log2 N` (a constant probe and gossip
//!   rate; digests, filters and identities cover more names as N grows), both fitted.
//!
//! It reads growth points and the scenario's timings and computes; it must not run anything
//! nor read the clock.

use crate::growth::GrowthPoint;
use serde::{Deserialize, Serialize};
use shoal_core::Timings;

/// The constants of the model and what it says at each size it was calibrated at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Share of a gossip round a join takes per epidemic round.
    pub join_c: f64,
    /// Share of the suspicion timeout a crash waits (Lifeguard shortens it).
    pub crash_k: f64,
    /// Bytes per node and second: at N = 1, and added per doubling of N.
    pub bytes_b0: f64,
    pub bytes_b1: f64,
    /// The simulated sizes, each measured against the model.
    pub calibration: Vec<ModelRow>,
    gossip_s: f64,
    fanout: f64,
    probe_s: f64,
    rtt_s: f64,
    suspicion_mult: f64,
}

/// The model's figures at one size, beside the simulator's when it ran that size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    pub nodes: usize,
    pub join_s: f64,
    pub crash_s: f64,
    pub bytes_per_s: f64,
    /// (join, crash, bytes) measured by the simulator.
    pub measured: Option<(Option<f64>, Option<f64>, f64)>,
}

/// Push-gossip rounds to reach all of `n` with fan-out `f`.
fn rounds(n: f64, f: f64) -> f64 {
    let n = n.max(2.0);
    n.ln() / (f + 1.0).ln() + n.ln() / f
}

/// Least squares through the origin: the `c` of `y = c · x`.
fn through_origin(pairs: &[(f64, f64)]) -> f64 {
    let sxy: f64 = pairs.iter().map(|(x, y)| x * y).sum();
    let sxx: f64 = pairs.iter().map(|(x, _)| x * x).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

impl Model {
    /// Fits the model to the growth points of one guard mode (at least one size with each
    /// measure). `None` without any usable point.
    pub fn calibrate(points: &[&GrowthPoint], t: &Timings) -> Option<Model> {
        if points.is_empty() {
            return None;
        }
        let mut m = Model {
            join_c: 0.0,
            crash_k: 0.0,
            bytes_b0: 0.0,
            bytes_b1: 0.0,
            calibration: Vec::new(),
            gossip_s: t.gossip_interval.as_secs_f64(),
            fanout: t.gossip_fanout.max(1) as f64,
            probe_s: t.probe_period.as_secs_f64(),
            rtt_s: t.probe_rtt.as_secs_f64(),
            suspicion_mult: t.suspicion_mult,
        };
        let joins: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| Some((m.join_unit(p.nodes), p.join.t100_s?)))
            .collect();
        m.join_c = through_origin(&joins);
        let crashes: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| {
                let rest = p.crash.t100_s? - m.probe_s - m.rtt_s - m.join_s(p.nodes);
                Some((m.suspicion_s(p.nodes), rest))
            })
            .collect();
        m.crash_k = through_origin(&crashes).max(0.0);
        // Bytes: ordinary least squares against log2 N (a single size: flat).
        let xs: Vec<(f64, f64)> = points
            .iter()
            .map(|p| ((p.nodes.max(1) as f64).log2(), p.tx_bytes_per_s.p50))
            .collect();
        let n = xs.len() as f64;
        let mx = xs.iter().map(|(x, _)| x).sum::<f64>() / n;
        let my = xs.iter().map(|(_, y)| y).sum::<f64>() / n;
        let sxx: f64 = xs.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
        let sxy: f64 = xs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        m.bytes_b1 = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        m.bytes_b0 = my - m.bytes_b1 * mx;
        m.calibration = points
            .iter()
            .map(|p| {
                let mut row = m.predict(p.nodes);
                row.measured = Some((p.join.t100_s, p.crash.t100_s, p.tx_bytes_per_s.p50));
                row
            })
            .collect();
        Some(m)
    }

    fn join_unit(&self, n: usize) -> f64 {
        self.gossip_s * rounds(n as f64, self.fanout)
    }

    fn join_s(&self, n: usize) -> f64 {
        self.join_c * self.join_unit(n)
    }

    fn suspicion_s(&self, n: usize) -> f64 {
        self.suspicion_mult * (n.max(1) as f64).log10().max(1.0) * self.probe_s
    }

    /// The model's figures at `n` nodes.
    pub fn predict(&self, n: usize) -> ModelRow {
        let join = self.join_s(n);
        ModelRow {
            nodes: n,
            join_s: join,
            crash_s: self.probe_s + self.rtt_s + self.crash_k * self.suspicion_s(n) + join,
            bytes_per_s: self.bytes_b0 + self.bytes_b1 * (n.max(1) as f64).log2(),
            measured: None,
        }
    }

    /// The table printed beside the growth table: each calibrated size with the model's
    /// error, then the predictions at `extra` sizes.
    pub fn table(&self, extra: &[usize]) -> String {
        let pct = |model: f64, sim: Option<f64>| match sim {
            Some(s) if s > 0.0 => format!("{:+.0} %", (model - s) / s * 100.0),
            _ => "—".into(),
        };
        let mut out = format!(
            "\nMean-field model (join: {:.2} x gossip interval x (log_{}(N) + ln N / {}) ; crash: \
             probe + rtt + {:.2} x suspicion timeout + join ; bytes: {:.0} + {:.1} x log2 N)\n\
             | nodes | join → 100 % model (sim, error) | crash → 100 % model (sim, error) | B/s per node model (sim, error) |\n\
             | --- | --- | --- | --- |\n",
            self.join_c,
            self.fanout + 1.0,
            self.fanout,
            self.crash_k,
            self.bytes_b0,
            self.bytes_b1
        );
        let rows = self
            .calibration
            .iter()
            .cloned()
            .chain(extra.iter().map(|n| self.predict(*n)));
        for r in rows {
            let opt = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2} s"));
            let (join, crash, bytes) = match r.measured {
                Some((j, c, b)) => (
                    format!("({}, {})", opt(j), pct(r.join_s, j)),
                    format!("({}, {})", opt(c), pct(r.crash_s, c)),
                    format!("({b:.0}, {})", pct(r.bytes_per_s, Some(b))),
                ),
                None => (
                    "(prediction)".into(),
                    "(prediction)".into(),
                    "(prediction)".into(),
                ),
            };
            out.push_str(&format!(
                "| {} | {:.2} s {join} | {:.2} s {crash} | {:.0} {bytes} |\n",
                r.nodes, r.join_s, r.crash_s, r.bytes_per_s
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_match_the_textbook_figure() {
        // log2 N + ln N at fan-out 1 and N = 10,000: 22.5 rounds (#24).
        assert!((rounds(10_000.0, 1.0) - 22.5).abs() < 0.1);
        assert!(rounds(100_000.0, 3.0) > rounds(10_000.0, 3.0));
    }

    #[test]
    fn a_fit_through_points_on_the_model_recovers_its_constants() {
        let t = shoal_core::Profile::Lan.timings();
        let truth = Model {
            join_c: 0.5,
            crash_k: 0.4,
            bytes_b0: 100.0,
            bytes_b1: 20.0,
            calibration: Vec::new(),
            gossip_s: t.gossip_interval.as_secs_f64(),
            fanout: t.gossip_fanout as f64,
            probe_s: t.probe_period.as_secs_f64(),
            rtt_s: t.probe_rtt.as_secs_f64(),
            suspicion_mult: t.suspicion_mult,
        };
        let points: Vec<GrowthPoint> = [100, 1_000, 10_000]
            .iter()
            .map(|n| {
                let r = truth.predict(*n);
                crate::growth::test_point(*n, r.join_s, r.crash_s, r.bytes_per_s)
            })
            .collect();
        let refs: Vec<&GrowthPoint> = points.iter().collect();
        let m = Model::calibrate(&refs, &t).expect("a model");
        assert!((m.join_c - 0.5).abs() < 1e-9);
        assert!((m.crash_k - 0.4).abs() < 1e-9);
        assert!((m.bytes_b1 - 20.0).abs() < 1e-6);
        let far = m.predict(100_000);
        assert!((far.bytes_per_s - truth.predict(100_000).bytes_per_s).abs() < 1e-6);
        assert!(m.table(&[100_000]).contains("| 100000 |"));
    }
}
