//! shoal: a gossip-based membership agent that fails static.
//!
//! `core` is the deterministic state machine (SWIM via foca, metadata, the guard);
//! the agent and the simulator drive it.

pub mod core;
