//! The deterministic, sans-IO core shared by the agent and the simulator.
//!
//! Nothing under this module reads a clock, draws OS randomness, or touches a socket or a
//! file: time, randomness and I/O come in from the driver.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod addr_budget;
mod baseline;
mod bindings;
mod cause;
mod cause_view;
mod codec;
mod coordinate;
mod damping;
mod drops;
mod due;
mod duration;
mod ext;
mod fields;
mod fleet;
mod fleet_wire;
mod formation;
mod gray;
mod guard;
mod guard_config;
mod hash;
mod health_damper;
mod health_guard;
mod health_rate;
mod identity;
mod instances;
mod intern;
mod keyops;
mod keyring;
mod lifeguard;
mod member_key;
mod meta;
mod meta_gossip;
mod meta_store;
mod names;
mod node;
mod node_meta;
mod operator;
mod outlier;
mod profile;
mod reach;
mod record_cache;
mod record_sig;
mod registrations;
mod replay;
mod restart;
mod shared;
mod snapshot;
mod status;
mod sync;
mod time;
mod timers;
mod trust;
mod truth;
mod wire;

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
mod testnet;
#[cfg(test)]
mod timer_tests;
#[cfg(test)]
mod trust_tests;

// The public API: everything the drivers (the agent in `src/`, the simulator in
// `crates/shoal-sim`, the tests and benches) use, re-exported here; every module is private.

// The node: the state machine a driver owns, what it takes in (datagrams, timeouts,
// commands) and what it gives out (transmits, deadlines, events, queries).
pub use node::{
    Event, EventKind, InstanceReport, KeysError, LocalEvent, MemberChange, Node, NodeConfig,
    NodeError, QueryView, RecentEvent, ReportError, RttEstimate, Stats, Transmit, UserEventView,
    DEFAULT_MAX_MEMBERS,
};
pub use time::Time;

// Configuration: timing profiles, the guard, outlier ejection, fleet queries, trust.
pub use fleet::{FleetConfig, DEFAULT_ANSWER_MAX, DEFAULT_PAYLOAD_MAX};
pub use guard::{GuardConfig, GuardMode};
pub use outlier::OutlierConfig;
pub use profile::{Profile, Timings};
pub use trust::TrustConfig;

// Names, metadata records and their checks (validated once, at decode or at the command).
pub use duration::parse_duration;
pub use fleet_wire::check_name;
pub use identity::{validate_name, NodeId, MAX_NAME_LEN};
pub use meta::MetaRecord;
pub use node_meta::{output_line, Health, MetaError, NodeMeta, Service};
pub use registrations::{merge_map, merge_meta};
pub use restart::{RestartIntent, MAX_GRACE, MIN_GRACE};

// The served view and what it says about members, services and the guard.
pub use cause::{Cause, CauseKind, Transition};
pub use guard::{Guard, GuardReport, GuardState, GuardTransition, ServiceGuard};
pub use health_damper::{bounded, CheckParams, CheckStatus, ChecksError, MAX_OUTPUT};
pub use health_guard::{HealthGuard, HealthTransition};
pub use health_rate::Published;
pub use truth::{Instance, MemberView, ServedStatus, ServiceView, TruthState};

// Outlier ejection: the outcomes apps report and what the node does with them.
pub use outlier::{
    Ejection, Outcomes, OutlierAction, OutlierCounters, OutlierStatus, OutlierTransition, MAX_COUNT,
};

// Fleet queries and user events.
pub use fleet::QueryStatus;
pub use fleet_wire::{FleetError, FleetMsg, Query, QueryFilter, UserEvent};

// The wire: the envelope, its versions and limits, shoal's own messages and record fields.
pub use fields::record as record_fields;
pub use sync::{DigestEntry, IntroEntry, ShoalMsg};
pub use wire::{
    open as open_datagram, write_header, Kind as DatagramKind, ProtocolRange, MAX_DATAGRAM,
    MAX_LABEL_LEN, PROTOCOL, PROTOCOL_V1,
};

// Trust: sealing and opening datagrams, the keyring and its rollout, member keys.
pub use keyops::{Confirm, KeyMsg, KeyOpKind};
pub use keyring::{Key, Keyring, KEY_LEN};
pub use member_key::{open_sealed, pair_keys, seal_to, MemberKeys, MemberPub, SECRET_LEN};
pub use record_sig::record_signer;
pub use trust::{Plaintext, Trust, TrustStats};

// Diagnostics: dropped datagrams, name bindings, network coordinates, seeds.
pub use bindings::Bindings;
pub use coordinate::Coordinate;
pub use drops::{DropReason, DropRecord, DropTable};
pub use hash::HashSeed;
pub use shared::Shared;

// Snapshots: the served view and known peers a driver persists and restores.
pub use snapshot::{Restored, Snapshot, SnapshotError, SNAPSHOT_EVERY, SNAPSHOT_VERSION};
