//! Command-line parsers for the core's plain enums (`Profile`, `GuardMode`).
//!
//! shoal-core has no clap: these mirror its enums for clap (same names, same help) and map
//! onto them. Must not hold any state or decide anything beyond the spelling of a value.

use clap::builder::{EnumValueParser, TypedValueParser};
use shoal_core::{GuardMode, Profile};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ProfileArg {
    /// Serf/memberlist LAN defaults: probe 1 s, probe timeout 500 ms, gossip 200 ms to 3.
    Lan,
    /// memberlist WAN defaults: probe 5 s, probe timeout 3 s, gossip 500 ms to 4.
    Wan,
    /// Loopback / tests: everything 5x faster than LAN.
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GuardModeArg {
    /// Hold members the rules protect (default).
    Enforce,
    /// Compute and report what the guard would do, but serve the truth.
    Shadow,
    /// No guard: serve the truth.
    Off,
}

/// `--profile lan|wan|local`.
pub fn profile() -> impl TypedValueParser<Value = Profile> {
    EnumValueParser::<ProfileArg>::new().map(|p| match p {
        ProfileArg::Lan => Profile::Lan,
        ProfileArg::Wan => Profile::Wan,
        ProfileArg::Local => Profile::Local,
    })
}

/// `--guard-mode enforce|shadow|off`.
pub fn guard_mode() -> impl TypedValueParser<Value = GuardMode> {
    EnumValueParser::<GuardModeArg>::new().map(|m| match m {
        GuardModeArg::Enforce => GuardMode::Enforce,
        GuardModeArg::Shadow => GuardMode::Shadow,
        GuardModeArg::Off => GuardMode::Off,
    })
}
