//! shoal: a gossip-based membership agent that fails static.
//!
//! The deterministic state machine (SWIM via foca, metadata, the guard) is the `shoal-core`
//! crate; `agent` drives it with tokio, `api` serves local apps; the `shoal-sim` crate drives
//! many cores in virtual time. `fuzzing` holds the fuzz targets (for `fuzz/` and the
//! test suite).

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod core_args;
pub mod dev;
pub mod dev_cluster;
pub mod dev_live;
pub mod dns;
#[doc(hidden)]
pub mod fuzzing;
