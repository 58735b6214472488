//! The agent: drives one core `Node` with real time, one UDP socket and the local API.
//!
//! `runtime` owns the event loop (socket, sleeping until the core's next timeout, flushing
//! outputs), `signals` what each signal does, `logging` the subscriber and its reload handle, `reload`
//! what SIGHUP does to tags and services, `shared` the seam with the local API, `snapshot` the
//! persisted served view, `seeds` resolving the configured seeds, `alert` the guard's alert
//! hook and its queue,
//! `checks` the services' health checks, `droplog` the rate-limited lines about refused
//! datagrams, `clock` the wall clock given to the core and the warning about peers' clocks,
//! `datadir` the data directory (mode, lock, temporary files) and the keyring file,
//! `member_keys` this agent's member key pair and the known members' keys,
//! `registrations` what apps registered through the API, persisted across restarts, `notify`
//! systemd's readiness notification.

pub mod alert;
pub mod checks;
pub mod clock;
pub mod datadir;
pub(crate) mod droplog;
pub mod handlers;
pub mod logging;
pub mod member_keys;
pub mod notify;
pub mod registrations;
pub mod reload;
pub mod runtime;
pub mod seeds;
pub mod shared;
pub mod signals;
pub mod snapshot;

pub use logging::{init_logging, LogError, LogHandle};
pub use runtime::{Agent, AgentError, IoStats};
pub use shared::AgentShared;
pub use signals::run_until_signal;
