//! shoal: a gossip-based membership agent that fails static.
//!
//! `core` is the deterministic state machine (SWIM via foca, metadata, the guard);
//! `agent` drives it with tokio, `api` serves local apps, `sim` drives many cores in
//! virtual time. `fuzzing` holds the fuzz targets (for `fuzz/` and the
//! test suite).

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod dev;
pub mod dev_live;
pub mod dns;
#[doc(hidden)]
pub mod fuzzing;
pub mod sim;
