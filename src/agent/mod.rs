//! The agent: drives one core `Node` with real time, one UDP socket and the local API.

pub mod shared;
