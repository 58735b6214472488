//! Virtual time for the sans-IO core.
//!
//! Owns the `Time` type: milliseconds since an arbitrary epoch chosen by the driver (the agent
//! maps its monotonic clock onto it, the simulator uses virtual time). The core never reads a
//! clock itself.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A point in time, in milliseconds since the driver's epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// The start of the driver's clock.
    pub const ZERO: Time = Time(0);

    /// `ms` milliseconds.
    pub fn from_millis(ms: u64) -> Self {
        Time(ms)
    }

    /// In milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}
