//! What SIGHUP does to this node's tags and services: a three-way merge.
//!
//! The config file and the local API both set tags and services. A reload applies only what
//! changed **in the file** since it was last read: a tag or service added or changed in the
//! file is set (the file wins for that key); one removed from the file is removed, unless it
//! was changed through the API since (then the API's value stays); everything else (in
//! particular whatever was set or deleted through the API) stays as it is. The rule itself is
//! the core's (`shoal_core::registrations`), shared with a restart and with the simulator.

pub use shoal_core::{merge_map, merge_meta};
