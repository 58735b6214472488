//! The deterministic, sans-IO core shared by the agent and the simulator.
//!
//! Nothing under this module reads a clock, draws OS randomness, or touches a socket or a
//! file: time, randomness and I/O come in from the driver.

#![forbid(unsafe_code)]

pub mod addr_budget;
pub mod baseline;
pub mod bindings;
pub mod cause;
pub mod cause_view;
pub mod codec;
pub mod coordinate;
pub mod damping;
pub mod drops;
pub mod due;
pub mod duration;
pub mod ext;
pub mod fields;
pub mod fleet;
mod fleet_wire;
pub mod formation;
pub mod gray;
pub mod guard;
pub mod guard_config;
pub mod hash;
pub mod health_damper;
pub mod health_guard;
pub mod health_rate;
pub mod identity;
pub mod instances;
pub mod intern;
pub mod keyops;
pub mod keyring;
pub mod lifeguard;
pub mod member_key;
pub mod meta;
pub mod meta_gossip;
pub mod meta_store;
pub mod names;
pub mod node;
pub mod node_meta;
pub mod operator;
pub mod outlier;
pub mod profile;
pub mod reach;
pub mod record_cache;
pub mod record_sig;
pub mod registrations;
pub mod replay;
pub mod restart;
pub mod shared;
pub mod snapshot;
pub mod status;
pub mod sync;
pub mod time;
mod timers;
pub mod trust;
pub mod truth;
pub mod wire;

#[cfg(test)]
mod amplify_tests;
#[cfg(test)]
mod cause_tests;
#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod coords_tests;
#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod formation_tests;
#[cfg(test)]
mod guard_e2e_tests;
#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod lifeguard_tests;
#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod outlier_tests;
#[cfg(test)]
mod refute_tests;
#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod restart_tests;
#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
pub mod testnet;
#[cfg(test)]
mod timer_tests;
#[cfg(test)]
mod trust_tests;

pub use cause::{Cause, CauseKind, Transition};
pub use drops::{DropReason, DropRecord};
pub use guard::{
    Guard, GuardConfig, GuardMode, GuardReport, GuardState, GuardTransition, ServiceGuard,
};
pub use health_guard::{HealthGuard, HealthTransition};
pub use identity::NodeId;
pub use meta::{Health, MetaError, MetaRecord, NodeMeta, Service};
pub use node::{
    Event, EventKind, LocalEvent, MemberChange, Node, NodeConfig, NodeError, QueryView,
    RecentEvent, Stats, Transmit, UserEventView,
};
pub use outlier::{
    Ejection, Outcomes, OutlierAction, OutlierConfig, OutlierStatus, OutlierTransition,
};
pub use profile::{Profile, Timings};
pub use shared::Shared;
pub use snapshot::{Restored, Snapshot, SnapshotError, SNAPSHOT_EVERY};
pub use time::Time;
pub use truth::{Instance, MemberView, ServedStatus, ServiceView, TruthState};
