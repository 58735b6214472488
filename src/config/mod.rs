//! The agent's configuration: one typed `Config`, loaded from defaults, a TOML file,
//! environment variables and command-line flags, in that order of precedence.
//!
//! Every key is declared once, in the table of `keys` (TOML path, environment variable, flag,
//! types, parser, range, default, doc); `table` generates from it the sources' schema, the
//! `shoal agent` flags (`AgentArgs`, an outside contract) and the reference (docs/configuration.md) is checked
//! against. `sources` reads and layers the file, environment and flags; `parse` holds the
//! parsers the table names; `validate` applies the defaults and the rules between keys.
//!
//! This module owns `Config` (what the agent runs with, fully resolved and validated) and its
//! translation to `core::NodeConfig`. Every bad value is refused with the name of its field. It
//! must not open sockets or start anything; the only I/O is reading the config file and the
//! host name.

#[macro_use]
mod table;
pub mod checks;
mod convert;
pub mod handlers;
pub mod keys;
pub mod limits;
mod parse;
#[cfg(test)]
mod reference_tests;
mod sources;
#[cfg(test)]
mod tests;
mod validate;

pub use keys::AgentArgs;
pub use parse::{parse_duration, sanitize_name, seed_with_port};

use serde::{Deserialize, Serialize};
use shoal_core::{GuardConfig, NodeConfig, NodeMeta, Profile, Service, Timings};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Default gossip port (Serf's).
pub const DEFAULT_PORT: u16 = 7946;
pub const DEFAULT_DATA_DIR: &str = "/var/lib/shoal";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// A service this node offers, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// The instance id, unique on this node (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Health checks (`[[services.checks]]`), run by this agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<checks::CheckSpec>,
}

impl ServiceConfig {
    /// The instance id: the one given, else the service's name.
    pub fn instance_id(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }
}

/// Everything the agent runs with, resolved and validated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Node name, unique in the cluster.
    pub name: String,
    /// Address the UDP socket binds.
    pub bind: SocketAddr,
    /// Address other members send to, when it differs from `bind`.
    pub advertise: Option<SocketAddr>,
    /// Seeds to join: `IP:PORT` or `host:PORT` (resolved at start, retried if unresolvable).
    pub join: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub services: Vec<ServiceConfig>,
    pub data_dir: PathBuf,
    /// Path of the local API's Unix socket.
    pub api: PathBuf,
    /// Optional TCP address of the local API (loopback unless `listen_remote`).
    pub api_http: Option<SocketAddr>,
    /// Optional TCP address of the Consul-compatible read API (`api::consul`).
    pub consul_api: Option<SocketAddr>,
    /// Optional address of the DNS interface (UDP and TCP, `dns`).
    pub dns: Option<SocketAddr>,
    /// The operator lets the three listeners above answer other hosts (`--listen-remote`);
    /// the local API then needs `trust.api_token_file`.
    pub listen_remote: bool,
    /// TTL of DNS answers (default 0: clients ask again each time).
    pub dns_ttl: Duration,
    /// The DNS zone answered, with its final dot (default `shoal.`).
    pub dns_domain: String,
    pub profile: Profile,
    pub cluster_label: String,
    /// A `tracing` filter directive (`info`, `debug`, `shoal=debug,warn`).
    pub log_level: String,
    pub log_format: LogFormat,
    /// The profile's timings with the `[timings]` overrides applied.
    pub timings: Timings,
    pub guard: GuardConfig,
    /// Ejection of instances apps report failing (`[outlier]`).
    pub outlier: shoal_core::OutlierConfig,
    /// Command run with the details when the guard changes state.
    pub alert_hook: Option<String>,
    /// Bounds of user events and queries (`event_payload_max`, `query_answer_max`).
    pub event_payload_max: usize,
    pub query_answer_max: usize,
    /// Event handlers from the config file (never from the API), their timeout and the quiet
    /// time that coalesces a burst into one run.
    pub event_handlers: Vec<handlers::HandlerSpec>,
    pub handler_timeout: Duration,
    pub handler_coalesce: Duration,
    /// How long peers serve this node `restarting` after SIGTERM (a restart) before they count
    /// it as failed.
    pub restart_grace: Duration,
    /// SIGTERM leaves the cluster (a decommission) instead of announcing a restart.
    pub leave_on_terminate: bool,
    /// Whether `exec` checks may come through the local API (Consul's `enable_script_checks`):
    /// off, only the config file runs commands.
    pub enable_api_exec_checks: bool,
    /// Most members the agent holds (`Node::set_max_members`).
    pub max_members: usize,
    /// The config file this was loaded from, if any (re-read on SIGHUP).
    pub config_file: Option<PathBuf>,
    /// Tests only: the agent's wall clock runs this far ahead (negative: behind), to run a
    /// real agent whose clock is off (`agent::clock`; hidden variable
    /// `SHOAL_TEST_CLOCK_OFFSET_MS`). Not a config key.
    #[serde(skip)]
    #[doc(hidden)]
    pub clock_offset_ms: i64,
    /// IP to advertise when `bind` is unspecified and no `advertise` is given (detected).
    #[serde(skip)]
    detected_ip: Option<IpAddr>,
    /// Encryption, keyring and replay protection (`[trust]`, `--encrypt`, `--insecure`).
    pub trust: TrustSettings,
    /// Bounds and timeouts of the HTTP listeners, mode and group of the API socket
    /// (`[api_server]`).
    pub api_server: ApiServerSettings,
}

/// The `[api_server]` table, resolved: bounds shared by the local and Consul-compatible
/// HTTP listeners, and who may open the Unix socket.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ApiServerSettings {
    pub limits: limits::ApiLimits,
    pub socket: limits::SocketAccess,
}

/// Encryption settings, resolved. The key itself is never printed or serialized.
#[derive(Clone, PartialEq, Serialize)]
pub struct TrustSettings {
    /// The `--encrypt` key (base64), if given.
    #[serde(skip)]
    pub encrypt: Option<String>,
    /// A file holding the key (`--encrypt-file`), read at start; never with `encrypt`.
    pub encrypt_file: Option<PathBuf>,
    pub insecure: bool,
    /// Where the keyring persists (`<data-dir>/keyring` unless set).
    pub keyring_file: PathBuf,
    pub plaintext: shoal_core::Plaintext,
    pub replay_window: Duration,
    pub max_sessions: usize,
    /// File holding the token API commands need (`--api-token-file`).
    pub api_token_file: Option<PathBuf>,
}

impl std::fmt::Debug for TrustSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustSettings")
            .field("encrypt", &self.encrypt.as_ref().map(|_| "<key>"))
            .field("encrypt_file", &self.encrypt_file)
            .field("insecure", &self.insecure)
            .field("keyring_file", &self.keyring_file)
            .field("plaintext", &self.plaintext)
            .field("replay_window", &self.replay_window)
            .field("max_sessions", &self.max_sessions)
            .field("api_token_file", &self.api_token_file)
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Loads the configuration: defaults < config file < environment (`SHOAL_*`) < flags.
    pub fn load(args: &AgentArgs) -> Result<Config, ConfigError> {
        Config::load_with_env(args, &|k| std::env::var(k).ok())
    }

    /// Like [`Config::load`], reading environment variables through `env` (for tests).
    pub fn load_with_env(
        args: &AgentArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let (raw, config_file) = sources::layered(args, env)?;
        let mut cfg = validate::resolve(raw.parse()?, env)?;
        cfg.config_file = config_file;
        Ok(cfg)
    }

    /// The address other members reach this node at (before the port of a `:0` bind is
    /// known: the runtime substitutes the bound port).
    pub fn advertise_addr(&self) -> SocketAddr {
        if let Some(a) = self.advertise {
            return a;
        }
        match self.detected_ip {
            Some(ip) if self.bind.ip().is_unspecified() => SocketAddr::new(ip, self.bind.port()),
            _ => self.bind,
        }
    }

    /// The core's configuration. Seeds are left empty: they are resolved by the runtime.
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig {
            name: self.name.clone(),
            advertise: self.advertise_addr(),
            cluster_label: self.cluster_label.clone(),
            timings: self.timings.clone(),
            seeds: Vec::new(),
            guard: self.guard.clone(),
            track_suspects: true,
            outlier: self.outlier.clone(),
            fleet: shoal_core::FleetConfig {
                payload_max: self.event_payload_max,
                answer_max: self.query_answer_max,
                query_handlers: self
                    .event_handlers
                    .iter()
                    .filter_map(|h| h.query_name())
                    .collect(),
            },
        }
    }

    /// The validated checks of every service that has some.
    pub fn service_checks(
        &self,
    ) -> Result<Vec<(String, Vec<checks::CheckDef>)>, checks::CheckError> {
        checks::resolve_services(
            self.services
                .iter()
                .map(|s| (s.instance_id(), s.checks.as_slice())),
        )
    }

    /// The checks of the configured services, as written, by service.
    pub fn check_specs(&self) -> BTreeMap<String, Vec<checks::CheckSpec>> {
        self.services
            .iter()
            .filter(|s| !s.checks.is_empty())
            .map(|s| (s.instance_id().to_string(), s.checks.clone()))
            .collect()
    }

    /// This node's tags and services as the core's metadata.
    pub fn node_meta(&self) -> NodeMeta {
        meta_of(&self.tags, &self.services)
    }
}

/// Tags and services as the core's metadata.
fn meta_of(tags: &BTreeMap<String, String>, services: &[ServiceConfig]) -> NodeMeta {
    NodeMeta {
        tags: tags.clone(),
        services: services
            .iter()
            .map(|s| {
                (
                    s.instance_id().to_string(),
                    Service {
                        name: s.name.clone(),
                        port: s.port,
                        tags: s.tags.clone(),
                        health: None,
                        health_output: None,
                    },
                )
            })
            .collect(),
    }
}
