//! The agent: drives one core `Node` with real time, one UDP socket and the local API.

pub mod alert;
pub mod shared;
pub mod snapshot;
