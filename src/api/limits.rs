//! What the HTTP listeners count under their bounds (connections and watch streams open,
//! refusals, timeouts), for `/metrics`. The bounds themselves are config
//! (`config::limits`, re-exported here).
//!
//! Must not serve anything itself (`api::serve` applies the connection bounds and timeouts,
//! `api::routes` the watch bound, `api::bind_unix` the socket access).

pub use crate::config::limits::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the listeners count, for `/metrics`.
#[derive(Debug, Default)]
pub struct ApiLoad {
    /// Connections open now (all HTTP listeners).
    pub connections: AtomicU64,
    /// Watch streams open now.
    pub watches: AtomicU64,
    /// Connections refused because the connection bound was reached.
    pub rejected_connections: AtomicU64,
    /// Watch requests refused because the watch bound was reached.
    pub rejected_watches: AtomicU64,
    /// Connections closed because they stayed idle (or sent a head too slowly).
    pub timed_out: AtomicU64,
}

/// A point-in-time copy of [`ApiLoad`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiLoadView {
    pub connections: u64,
    pub watches: u64,
    pub rejected_connections: u64,
    pub rejected_watches: u64,
    pub timed_out: u64,
}

impl ApiLoad {
    pub fn view(&self) -> ApiLoadView {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ApiLoadView {
            connections: g(&self.connections),
            watches: g(&self.watches),
            rejected_connections: g(&self.rejected_connections),
            rejected_watches: g(&self.rejected_watches),
            timed_out: g(&self.timed_out),
        }
    }
}

/// Adds the listeners' families to the `/metrics` exposition.
pub fn render_metrics(out: &mut crate::api::exposition::Exposition, v: &ApiLoadView) {
    out.gauge(
        "shoal_api_connections",
        "HTTP connections open now (local and Consul-compatible API).",
        v.connections,
    );
    out.gauge("shoal_api_watches", "Watch streams open now.", v.watches);
    out.counters(
        "shoal_api_rejected_total",
        "Requests answered 503 because a bound was reached (connections or watch streams).",
        "bound",
        [
            ("connections", v.rejected_connections),
            ("watches", v.rejected_watches),
        ],
    );
    out.counter(
        "shoal_api_timed_out_total",
        "Connections closed for idling or sending a request head too slowly.",
        v.timed_out,
    );
}
