//! Growth across cluster sizes: one scenario run at several sizes with the same seed.
//!
//! Owns the `--sizes` sweep (override `nodes`, keep everything else as configured, run each
//! size in each guard mode, smallest first), the per-size summary (`GrowthPoint`: join, crash
//! and leave spreads to 50/99/100%, full-view time, per-node load, speed and peak memory),
//! the fits of the spread times against log2 N, and the process memory figures (`VmHWM`).
//! Must not change how a run is driven: each size is an ordinary `sim::run`.

use crate::measure::{FullView, Quantiles, RunResult, SpreadStats};
use crate::scenario::{Scenario, ScenarioError};
use crate::world::{Progress, SimError};
use serde::{Deserialize, Serialize};
use shoal_core::GuardMode;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GrowthError {
    #[error("no sizes given")]
    NoSizes,
    #[error("scenario at {nodes} nodes: {source}")]
    Scenario { nodes: usize, source: ScenarioError },
    #[error("run at {nodes} nodes: {source}")]
    Sim { nodes: usize, source: SimError },
}

/// How far one kind of spread got at one size (medians over events of that kind).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpreadPoint {
    pub count: u32,
    pub complete: u32,
    pub t50_s: Option<f64>,
    pub t99_s: Option<f64>,
    pub t100_s: Option<f64>,
    /// Worst time to 100% over the events that completed.
    pub t100_max_s: Option<f64>,
}

impl SpreadPoint {
    fn of(s: &SpreadStats) -> SpreadPoint {
        let some = |v: f64, n: u32| (n > 0).then_some(v);
        SpreadPoint {
            count: s.count,
            complete: s.complete,
            t50_s: some(s.t50_s.p50, s.count),
            t99_s: some(s.t99_s.p50, s.count),
            t100_s: some(s.t100_s.p50, s.complete),
            t100_max_s: some(s.t100_s.max, s.complete),
        }
    }
}

/// Wall-clock and memory figures of one size: not part of the deterministic outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrowthPerf {
    pub events: u64,
    pub wall_s: f64,
    pub virtual_s_per_wall_s: f64,
    /// Peak resident memory of the process during this run (MiB), when the OS tells.
    pub peak_rss_mib: Option<f64>,
    /// The peak could not be reset before the run: it is the process's peak so far.
    pub peak_rss_is_process_peak: bool,
}

/// One size in one guard mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrowthPoint {
    pub nodes: usize,
    pub mode: GuardMode,
    pub join: SpreadPoint,
    pub crash: SpreadPoint,
    pub leave: SpreadPoint,
    pub full_view: FullView,
    pub tx_msgs_per_s: Quantiles,
    pub tx_bytes_per_s: Quantiles,
    pub rx_bytes_per_s: Quantiles,
    pub false_downs_declared: u64,
    pub false_downs_served: u64,
    pub perf: GrowthPerf,
}

impl GrowthPoint {
    fn of(r: &RunResult, perf: GrowthPerf) -> GrowthPoint {
        GrowthPoint {
            nodes: r.nodes,
            mode: r.mode,
            join: SpreadPoint::of(&r.spreads.join),
            crash: SpreadPoint::of(&r.spreads.crash),
            leave: SpreadPoint::of(&r.spreads.leave),
            full_view: r.full_view.clone(),
            tx_msgs_per_s: r.traffic.tx_msgs_per_s.clone(),
            tx_bytes_per_s: r.traffic.tx_bytes_per_s.clone(),
            rx_bytes_per_s: r.traffic.rx_bytes_per_s.clone(),
            false_downs_declared: r.false_downs.declared.count,
            false_downs_served: r.false_downs.served.count,
            perf,
        }
    }
}

/// A point with only the figures the model reads (`model` tests).
#[cfg(test)]
pub(crate) fn test_point(nodes: usize, join_s: f64, crash_s: f64, bytes: f64) -> GrowthPoint {
    let spread = |t: f64| SpreadPoint {
        count: 1,
        complete: 1,
        t100_s: Some(t),
        ..Default::default()
    };
    GrowthPoint {
        nodes,
        mode: GuardMode::Enforce,
        join: spread(join_s),
        crash: spread(crash_s),
        leave: SpreadPoint::default(),
        full_view: FullView::default(),
        tx_msgs_per_s: Quantiles::default(),
        tx_bytes_per_s: Quantiles {
            p50: bytes,
            ..Default::default()
        },
        rx_bytes_per_s: Quantiles::default(),
        false_downs_declared: 0,
        false_downs_served: 0,
        perf: GrowthPerf::default(),
    }
}

/// Least-squares fit `t = a + b·log2(N)` of one measure over the sizes of one mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogFit {
    pub measure: String,
    pub mode: GuardMode,
    /// Seconds at N = 1 (intercept) and seconds added per doubling of N.
    pub a_s: f64,
    pub per_doubling_s: f64,
    /// Coefficient of determination of the fit (1 = every point on the line).
    pub r2: f64,
    pub points: usize,
}

/// The whole sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Growth {
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub duration_s: f64,
    pub sizes: Vec<usize>,
    pub points: Vec<GrowthPoint>,
    pub fits: Vec<LogFit>,
}

/// Measures fitted against log2 N: (name, getter).
type Getter = fn(&GrowthPoint) -> Option<f64>;
pub const FITTED: [(&str, Getter); 5] = [
    ("join to 100%", |p| p.join.t100_s),
    ("join to 50%", |p| p.join.t50_s),
    ("full view after last start", |p| {
        p.full_view.after_last_start_s
    }),
    ("crash to 100%", |p| p.crash.t100_s),
    ("leave to 100%", |p| p.leave.t100_s),
];

/// `t = a + b·x` by least squares over (x, t); None with fewer than two distinct x.
pub fn fit_line(pts: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 1e-12 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let ss_tot: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let ss_res: f64 = pts.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let r2 = if ss_tot > 1e-12 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    Some((a, b, r2))
}

fn fits(points: &[GrowthPoint], modes: &[GuardMode]) -> Vec<LogFit> {
    let mut out = Vec::new();
    for &mode in modes {
        for (name, get) in FITTED {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.mode == mode && p.nodes > 0)
                .filter_map(|p| get(p).map(|t| ((p.nodes as f64).log2(), t)))
                .collect();
            if let Some((a, b, r2)) = fit_line(&pts) {
                out.push(LogFit {
                    measure: name.to_string(),
                    mode,
                    a_s: a,
                    per_doubling_s: b,
                    r2,
                    points: pts.len(),
                });
            }
        }
    }
    out
}

/// Runs `sc` at every size in `sizes` (sorted, deduplicated, smallest first) and in every
/// mode, with the scenario's seed. Returns the sweep and every full run result.
pub fn run_sizes(
    sc: &Scenario,
    sizes: &[usize],
    modes: &[GuardMode],
    progress: &mut dyn FnMut(usize, GuardMode, &Progress),
) -> Result<(Growth, Vec<RunResult>), GrowthError> {
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() || modes.is_empty() {
        return Err(GrowthError::NoSizes);
    }
    // Every size must be valid before the first (long) run starts.
    let scs: Vec<Scenario> = sizes
        .iter()
        .map(|&n| {
            let mut s = sc.clone();
            s.nodes = n;
            s.validate()
                .map(|_| s)
                .map_err(|source| GrowthError::Scenario { nodes: n, source })
        })
        .collect::<Result<_, _>>()?;
    let mut points = Vec::new();
    let mut runs = Vec::new();
    for s in &scs {
        for &mode in modes {
            let reset = reset_peak_rss();
            let mut sampled = rss_mib(Field::Current).unwrap_or(0.0);
            let t = Instant::now();
            let r = crate::run(s, mode, &mut |p| {
                if !reset {
                    sampled = sampled.max(rss_mib(Field::Current).unwrap_or(0.0));
                }
                progress(s.nodes, mode, p)
            })
            .map_err(|source| GrowthError::Sim {
                nodes: s.nodes,
                source,
            })?;
            let wall_s = t.elapsed().as_secs_f64();
            let peak = if reset {
                rss_mib(Field::Peak)
            } else {
                rss_mib(Field::Current).map(|c| c.max(sampled))
            };
            let perf = GrowthPerf {
                events: r.perf.events,
                wall_s,
                virtual_s_per_wall_s: r.perf.virtual_s_per_wall_s,
                peak_rss_mib: peak,
                peak_rss_is_process_peak: !reset && peak.is_some(),
            };
            points.push(GrowthPoint::of(&r, perf));
            runs.push(r);
        }
    }
    let growth = Growth {
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        seed: sc.seed,
        duration_s: sc.duration.ms() as f64 / 1000.0,
        fits: fits(&points, modes),
        sizes,
        points,
    };
    Ok((growth, runs))
}

/// The sweep as JSON without the wall-clock and memory figures: identical for identical seeds.
pub fn deterministic_json(g: &Growth) -> String {
    let mut g = g.clone();
    for p in &mut g.points {
        p.perf = GrowthPerf::default();
    }
    serde_json::to_string(&g).unwrap_or_default()
}

#[derive(Clone, Copy)]
enum Field {
    Current,
    Peak,
}

/// Resident memory of this process in MiB (`VmRSS` or `VmHWM` of /proc/self/status); None
/// where there is no such file.
fn rss_mib(f: Field) -> Option<f64> {
    let key = match f {
        Field::Current => "VmRSS:",
        Field::Peak => "VmHWM:",
    };
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line
        .trim_start_matches(key)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Peak resident memory of this process so far (MiB).
pub fn peak_rss_mib() -> Option<f64> {
    rss_mib(Field::Peak)
}

/// Resets the process's peak resident memory to its current value (Linux: "5" into
/// /proc/self/clear_refs). False where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_log_line() {
        // t = 1 + 0.5·log2 N exactly.
        let pts: Vec<(f64, f64)> = [100.0f64, 1000.0, 10000.0]
            .iter()
            .map(|n| (n.log2(), 1.0 + 0.5 * n.log2()))
            .collect();
        let (a, b, r2) = fit_line(&pts).expect("fit");
        assert!((a - 1.0).abs() < 1e-9 && (b - 0.5).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-9);
        assert!(fit_line(&pts[..1]).is_none());
    }
}
