//! Quantiles: the min / median / p90 / p99 / max / mean summary of a per-node figure
//! (`Quantiles`), and the nearest-rank quantile of a sorted list that builds it.
//!
//! Plain arithmetic over numbers the recorder hands in; a leaf that `result` and the
//! `measure_*` figures both import. Must not know any figure, run or node. Field names and
//! shapes are the report's contract (add, don't rename).

use serde::{Deserialize, Serialize};

pub(crate) fn quantile_u32(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)])
}

pub(crate) fn quantile_f64(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// min / median / p90 / p99 / max / mean of a per-node figure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Quantiles {
    pub fn of(mut v: Vec<f64>) -> Quantiles {
        if v.is_empty() {
            return Quantiles::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        Quantiles {
            min: v[0],
            p50: quantile_f64(&v, 0.5),
            p90: quantile_f64(&v, 0.9),
            p99: quantile_f64(&v, 0.99),
            max: v[v.len() - 1],
            mean,
        }
    }
}
